//! `mtl train`: multi-task training.

pub mod args;
pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod optimizer;
pub mod plot;
pub mod run_dir;
pub mod runlog;
pub mod trainer;

pub use config::{StepMode, TaskSpec, TrainConfig};
pub use trainer::{Start, Summary, train};
