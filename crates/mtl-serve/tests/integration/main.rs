//! mtl-serve's integration tests: one test binary, each file a module (one link
//! and one binary on disk instead of one per file).

#[path = "../common/mod.rs"]
mod common;
#[path = "../../../../tests/support/reference_venv.rs"]
mod reference_venv;

mod clients;
mod serve;
mod tei;
