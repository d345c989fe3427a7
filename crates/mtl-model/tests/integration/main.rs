//! mtl-model's integration tests: one test binary, each file a module (one link
//! and one binary on disk instead of one per file).

#[path = "../../../../tests/support/compare.rs"]
mod compare;
#[path = "../../../../tests/support/reference_venv.rs"]
mod reference_venv;

mod classifier;
mod hf_compat;
