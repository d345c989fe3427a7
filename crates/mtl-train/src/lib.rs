//! Multi-task training and evaluation as a library.
//!
//! [`train`] runs a training run described by a [`TrainConfig`] and reports its progress to
//! an [`Observer`]; [`evaluate`] scores a model on labelled data. No command-line, terminal or
//! plotting code lives here, and nothing is printed: the `mtl` binary (crate `mtl`) turns the
//! observer's [`Event`]s into progress bars and the run's log into plots.
//!
//! - [`train()`]: trains, checkpoints and evaluates; every input is checked before the run
//!   directory is written; a run killed at any instant resumes ([`Start::Resume`]) to the
//!   result of the uninterrupted run.
//! - [`TrainConfig`], [`TaskSpec`], [`StepMode`]: the run's settings (TOML or JSON, defaults
//!   for every key), each documented once in [`setting_doc!`] (also `mtl train --help`).
//! - [`Start`]: a new run (optionally replacing an earlier one made by mtl) or a resumed one.
//! - [`Observer`], [`Event`], [`TaskInfo`], [`TaskStats`], [`Silent`]: what a run reports.
//! - [`Summary`], [`Best`]: what a finished run returns (also its `summary.json`).
//! - [`evaluate()`], [`TaskMetrics`], [`ClassScores`]: a model's loss, accuracy, macro-F1,
//!   per-class scores and confusion matrix on one task's split.
//! - [`LossWeighting`], [`GradAggregation`]: joint mode's multi-task methods (loss weighting,
//!   gradient aggregation); [`multitask`] holds them, each a pure function with its tests.
//! - [`Record`], [`read_records`]: the run's log, `metrics.jsonl`.
//! - [`RUN_DIR_ENTRIES`]: every name mtl writes in a run directory (the only ones
//!   `--overwrite` deletes).
//! - [`Error`], [`Result`]: what can go wrong, typed.
//!
//! The model a run starts from is resolved by `mtl-hub` (a directory, a hub id or the
//! default); its steps are `tracing` events, which the `mtl` binary shows.

mod cache;
mod checkpoint;
mod config;
mod data;
mod error;
mod evaluate;
mod metrics;
pub mod multitask;
mod observer;
mod optimizer;
mod row_groups;
mod run;
mod run_dir;
mod runlog;
mod setting_doc;
mod train;

pub use checkpoint::Best;
pub use config::{Adapter, MAX_PLANNED_EXAMPLES, StepMode, TaskSpec, TrainConfig};
pub use error::{Error, Result};
pub use evaluate::evaluate;
pub use metrics::{ClassScores, TaskMetrics};
pub use multitask::{GradAggregation, LossWeighting};
pub use observer::{Event, Observer, Silent, TaskInfo, TaskStats};
pub use run_dir::ENTRIES as RUN_DIR_ENTRIES;
pub use runlog::{Record, read_records};
pub use train::{Start, Summary, train};

/// The pieces of a training step, for `mtl-bench` (which times them) and the tests; not a
/// stable API.
#[doc(hidden)]
pub mod internals {
    pub use crate::cache::EmbeddingCache;
    pub use crate::optimizer::TrainOptimizer;
    pub use crate::row_groups::{LossTerm, backward_in_row_groups};
}
