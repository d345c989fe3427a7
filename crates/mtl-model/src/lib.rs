//! A multi-task text classifier: one shared BERT encoder, dropout, and one classification
//! head per task.
//!
//! This crate is what another Rust program links to run a trained model; it depends on the
//! encoder crate only (no command line, progress bars or trainer).
//!
//! ```no_run
//! use mtl_model::MultiTaskClassifier;
//! use mtl_model::mtl_bert::Backend;
//!
//! let device = Backend::Flex.device(0)?;
//! let model = MultiTaskClassifier::load("runs/default/best", &device)?;
//! for prediction in &model.predict(&["Shares rose 5% after the merger."], None, 32)?[0] {
//!     println!("{}: {} ({:.3})", prediction.task, prediction.label,
//!              prediction.probabilities[prediction.label_index]);
//! }
//! # Ok::<(), mtl_model::Error>(())
//! ```
//!
//! # Public items
//!
//! - [`MultiTaskClassifier`]: a saved model loaded from its directory (or built from an encoder
//!   and an [`MtlConfig`]), its [`Prediction`]s per text and task, and its `save`;
//!   [`CONFIG_FILE`] is the name of its config in the directory and [`read_saved_config`] reads
//!   that config alone.
//! - [`MtlConfig`], [`TaskConfig`], [`HeadKind`]: the saved configuration (tasks, labels,
//!   heads, pooling).
//! - [`MultiTaskModel`]: the Burn module (encoder, dropout, one [`ClassificationHead`] per
//!   task) that training updates.
//! - [`ModelPart`] and [`trainable_parameters`]: which parts of a model train (freezing).
//! - [`Error`], [`Result`]: what went wrong, with the file, task or text.
//! - [`mtl_bert`]: the encoder crate, for its [`Backend`](mtl_bert::Backend) and devices.

#![warn(unreachable_pub)]

mod classifier;
mod config;
mod error;
mod freeze;
mod head;
mod model;

pub use classifier::{
    ADAPTERS_DIR, CONFIG_FILE, MultiTaskClassifier, Prediction, read_saved_config,
};
pub use config::{AdapterConfig, AdapterScope, HeadKind, MtlConfig, SHARED_ADAPTER, TaskConfig};
pub use error::{Error, Result};
pub use freeze::{ModelPart, Unfrozen, trainable_parameters};
pub use head::ClassificationHead;
pub use model::MultiTaskModel;
pub use mtl_bert;
