//! Multi-task text classification data: reading each task's splits, tokenizing them once,
//! padded batches for the encoder, and the choice of task for each training batch.
//!
//! ```no_run
//! use mtl_bert::BertTokenizer;
//! use mtl_data::{EpochMode, MultiTaskLoader, PlanConfig, Split, TaskSource, TaskSampler, TokenizedTask};
//!
//! let tokenizer = BertTokenizer::from_file(".cache/models/all-MiniLM-L6-v2/tokenizer.json", 128)?;
//! let topic = TaskSource::new("topic", "datasets/bbc", ["business", "entertainment", "politics", "sport", "tech"]);
//! let sentiment = TaskSource::new("sentiment", "datasets/tweets", ["negative", "neutral", "positive"]);
//! let tasks = vec![
//!     TokenizedTask::load(&topic, Split::Train, &tokenizer)?,
//!     TokenizedTask::load(&sentiment, Split::Train, &tokenizer)?,
//! ];
//! let config = PlanConfig {
//!     batch_size: 32,
//!     sampler: TaskSampler::Temperature { t: 2.0 },
//!     epoch_mode: EpochMode::UntilLargestExhausted,
//!     bucket_window: 50,
//!     ..PlanConfig::default()
//! };
//! println!("batches: {config}");
//! let loader = MultiTaskLoader::new(tasks, config)?;
//! for batch in loader.resume(3, 100)? {
//!     // batch.task, batch.tokens.to_input(&device), batch.targets(&device), batch.examples
//! }
//! # Ok::<(), mtl_data::Error>(())
//! ```
//!
//! A crate is a layer: [`TaskSource`] and [`TaskData`] read files, [`TokenizedTask`] tokenizes
//! and pads, [`TaskSampler`], [`EpochMode`] and [`EpochPlan`] decide the order, and
//! [`MultiTaskLoader`] puts them together. The order depends on nothing but the data, the
//! [`PlanConfig`] and the epoch number ([`SplitMix64`] is this crate's own generator).
//!
//! # Public items
//!
//! Reading:
//! - [`TaskSource`]: one task's name, labels, data directory or file, [`DataFormat`] and fields.
//! - [`TaskData`]: a task's [`Split`] read and checked into [`Example`]s (file and line in every
//!   error).
//! - [`TokenizedTask`]: a split tokenized once; its padded [`TaskBatch`]es.
//!
//! Ordering:
//! - [`PlanConfig`]: batch size, [`TaskSampler`], [`EpochMode`], bucketing and seed.
//! - [`EpochPlan`] of [`PlannedBatch`]es: one epoch's batches in order, from the data sizes and
//!   the epoch number alone.
//! - [`MultiTaskLoader`]: the tasks and the plan together; an epoch's [`EpochBatches`], resumable
//!   at any batch.
//! - [`SplitMix64`] and [`derive_seed`]: the generator and the seed derivation every order here
//!   comes from.
//!
//! - [`Error`], [`Result`]: what went wrong, with the file and line.

#![warn(unreachable_pub)]

mod config;
mod error;
mod loader;
mod plan;
mod rng;
mod sampler;
mod task_data;
mod tokenized;

pub use config::{DataFormat, Split, TaskSource};
pub use error::{Error, Result};
pub use loader::{EpochBatches, MultiTaskLoader};
pub use plan::{EpochPlan, PlanConfig, PlannedBatch};
pub use rng::{SplitMix64, derive_seed};
pub use sampler::{EpochMode, TaskSampler};
pub use task_data::{Example, TaskData};
pub use tokenized::{TaskBatch, TokenizedTask};
