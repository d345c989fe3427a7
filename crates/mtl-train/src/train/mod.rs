//! Multi-task training: the configuration, the data a run reads, the training loop, its
//! optimiser groups, checkpoints and run directory, and the events it reports.

pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod observer;
pub mod optimizer;
pub mod row_groups;
pub mod run_dir;
pub mod runlog;
pub mod trainer;

pub use config::{StepMode, TaskSpec, TrainConfig};
pub use observer::{Event, Observer, Silent, TaskInfo, TaskStats};
pub use trainer::{Start, Summary, train};
