//! mtl-bert's integration tests: one test binary, each file a module (one link
//! and one binary on disk instead of one per file).

#[path = "../common/mod.rs"]
mod common;
#[path = "../../../../tests/support/reference_venv.rs"]
mod reference_venv;

mod errors;
#[cfg(feature = "flex")]
mod int8;
mod parity;
mod peft;
mod text_errors;
