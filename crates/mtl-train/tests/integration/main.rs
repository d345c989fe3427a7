//! mtl-train's integration tests: one test binary, each file a module (one link
//! and one binary on disk instead of one per file).

#[path = "../../../../tests/support/compare.rs"]
mod compare;
#[path = "../../../../tests/support/fixtures.rs"]
mod fixtures;
#[path = "../../../../tests/support/reference_venv.rs"]
mod reference_venv;
#[path = "../../../../tests/support/tasks.rs"]
mod tasks;

mod adapters;
mod aggregation_reference;
mod library;
mod multitask;
