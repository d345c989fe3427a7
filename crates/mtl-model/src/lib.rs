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

pub mod classifier;
pub mod config;
pub mod error;
pub mod freeze;
pub mod head;
pub mod model;

pub use classifier::{CONFIG_FILE, MultiTaskClassifier, Prediction, read_saved_config};
pub use config::{FORMAT_VERSION, HeadKind, MtlConfig, TaskConfig};
pub use error::{Error, Result};
pub use freeze::{ModelPart, Unfrozen};
pub use head::ClassificationHead;
pub use model::MultiTaskModel;
pub use mtl_bert;
