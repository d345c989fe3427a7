//! Errors of reading task data and planning epochs.

use std::path::PathBuf;

/// What can go wrong while reading, tokenizing or planning task data. Errors about a file name
/// the file and, where there is one, the 1-based line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file holds no example.
    #[error("{}: empty file: no examples", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// A line is not valid UTF-8.
    #[error("{}:{line}: invalid UTF-8", path.display())]
    InvalidUtf8 {
        /// The file.
        path: PathBuf,
        /// The line (for CSV, the line its record starts on).
        line: usize,
    },
    /// A line is not a JSON object, or a CSV record is broken.
    #[error("{}:{line}: malformed line: {message}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A line (JSONL) or the header (CSV, line 1) lacks a configured field.
    #[error("{}:{line}: missing field {field:?}", path.display())]
    MissingField {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// The field or column name.
        field: String,
    },
    /// A label is not among the task's labels.
    #[error("{}:{line}: unknown label {label:?} (known labels: {})", path.display(), known.join(", "))]
    UnknownLabel {
        /// The file.
        path: PathBuf,
        /// The line.
        line: usize,
        /// The label found.
        label: String,
        /// The task's labels, in order.
        known: Vec<String>,
    },
    /// A task's configuration is invalid.
    #[error("task {task}: {message}")]
    Config {
        /// The task's name.
        task: String,
        /// What is wrong.
        message: String,
    },
    /// An epoch plan cannot be made from the given configuration and tasks.
    #[error("epoch plan: {0}")]
    Plan(String),
    /// Tokenization failed.
    #[error(transparent)]
    Tokenizer(#[from] mtl_bert::Error),
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
