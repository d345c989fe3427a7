//! mtl's integration tests: one test binary, each file a module (one link
//! and one binary on disk instead of one per file).

#[path = "../common/mod.rs"]
mod common;
#[path = "../../../../tests/support/reference_venv.rs"]
mod reference_venv;
#[path = "../../../../tests/support/tasks.rs"]
mod tasks;

mod embed;
mod hub;
mod init;
mod minilm;
mod model_faults;
mod own_data;
mod serve;
mod similarity;
mod train;
