//! The multi-task model's error type.

use std::path::PathBuf;

/// What can go wrong building, loading, running or saving a multi-task model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error of the encoder crate: files, checkpoint, tokenizer.
    #[error(transparent)]
    Encoder(#[from] mtl_bert::Error),
    /// A task name that the model does not have.
    #[error("unknown task {name:?} (this model's tasks: {})", known.join(", "))]
    UnknownTask {
        /// The name asked for.
        name: String,
        /// The model's tasks.
        known: Vec<String>,
    },
    /// A file a model directory needs is absent.
    #[error("{} has no {file}: not a model saved by mtl-model", dir.display())]
    MissingFile {
        /// The directory.
        dir: PathBuf,
        /// The missing file.
        file: &'static str,
    },
    /// A task's label list does not match its head's output size in the weights.
    #[error(
        "{}: task {task:?} lists {labels} labels but its head has {outputs} outputs",
        path.display()
    )]
    LabelMismatch {
        /// The weights file.
        path: PathBuf,
        /// The task.
        task: String,
        /// Number of labels in `mtl.json`.
        labels: usize,
        /// Output size of the head in the weights.
        outputs: usize,
    },
    /// A saved model cannot start this model (`MultiTaskClassifier::from_trained`): a task
    /// with other labels or another head, or another pooling.
    #[error("{}: cannot continue from this model: {message}", dir.display())]
    InitMismatch {
        /// The saved model's directory.
        dir: PathBuf,
        /// What differs.
        message: String,
    },
    /// `mtl.json` was written by a version whose format this one cannot read.
    #[error(
        "{}: saved in format version {found} (by mtl-model {saved_by}); this is mtl-model {}, \
         which reads format version {supported}",
        path.display(),
        env!("CARGO_PKG_VERSION")
    )]
    IncompatibleVersion {
        /// The `mtl.json` file.
        path: PathBuf,
        /// The format version found.
        found: u32,
        /// The crate version that saved it.
        saved_by: String,
        /// The format version this build reads.
        supported: u32,
    },
    /// A head gave NaN or infinite probabilities for a text, e.g. from corrupt weights.
    #[error(
        "text at index {text}, task {task:?}: the model produced non-finite probabilities \
         (NaN or infinity); its weights may be corrupt"
    )]
    NonFinite {
        /// The text's index in the batch given to `predict` (0-based).
        text: usize,
        /// The task whose head produced them.
        task: String,
    },
    /// The multi-task configuration is invalid (no tasks, duplicate names, empty labels, ...).
    #[error("invalid multi-task configuration: {0}")]
    InvalidConfig(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `mtl.json` is not valid.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
