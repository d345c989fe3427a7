//! The encoder crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a BERT encoder.
///
/// Every variant names the file, tensor or setting at fault, so the message alone tells a user
/// what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A required file is not in a model directory.
    #[error("{} has no {file}{hint}", dir.display())]
    MissingFile {
        /// The model directory.
        dir: PathBuf,
        /// The file (or the alternatives) that was looked for.
        file: String,
        /// Extra advice, starting with "; " (empty when there is none).
        hint: String,
    },
    /// A JSON file is not valid or does not have the expected fields.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error, with line and column.
        source: serde_json::Error,
    },
    /// A configuration asks for something this implementation does not support.
    #[error("{}: unsupported {field} {value:?} (supported: {supported})", path.display())]
    UnsupportedConfig {
        /// The configuration file.
        path: PathBuf,
        /// The field, e.g. `hidden_act`.
        field: &'static str,
        /// The value found.
        value: String,
        /// What is supported.
        supported: &'static str,
    },
    /// A configuration is inconsistent, e.g. a hidden size not divisible by the head count.
    #[error("{}: invalid configuration: {message}", path.display())]
    InvalidConfig {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A weights file is not a valid checkpoint (truncated, corrupt or of another format).
    #[error("{}: not a valid checkpoint: {message}", path.display())]
    CorruptCheckpoint {
        /// The weights file.
        path: PathBuf,
        /// What the reader reported.
        message: String,
    },
    /// A tensor the model needs is not in the checkpoint.
    #[error("{}: missing tensor `{name}` (expected shape {expected:?})", path.display())]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name, as Hugging Face names it.
        name: String,
        /// The shape the model expects.
        expected: Vec<usize>,
    },
    /// The checkpoint holds a tensor the model does not have.
    #[error("{}: unexpected tensor `{name}` with shape {shape:?} (not part of the model)", path.display())]
    UnexpectedTensor {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name in the file.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// A tensor in the checkpoint has another shape than the model's configuration implies.
    #[error("{}: tensor `{name}` has shape {found:?}, expected {expected:?}", path.display())]
    ShapeMismatch {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name, as Hugging Face names it.
        name: String,
        /// The shape the model expects.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor has a data type that cannot hold weights (e.g. integers where floats belong).
    #[error("{}: tensor `{name}` has data type {dtype}, expected a float type", path.display())]
    UnsupportedDtype {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// The data type found.
        dtype: String,
    },
    /// The tokenizer files could not be loaded or configured.
    #[error("{}: tokenizer: {message}", path.display())]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Tokenizing input text failed.
    #[error("tokenizing input failed: {0}")]
    Encoding(String),
    /// The tokenizer has token ids that the model's word embeddings do not cover: the
    /// tokenizer and `config.json` belong to different models.
    #[error(
        "{}: the tokenizer has {tokens} tokens (ids up to {max_id}), but {} sets vocab_size \
         to {vocab_size}: ids from {vocab_size} on have no embedding; the tokenizer and the \
         config belong to different models",
        tokenizer.display(),
        config.display()
    )]
    VocabularyMismatch {
        /// The tokenizer file (`tokenizer.json` or `vocab.txt`).
        tokenizer: PathBuf,
        /// The model's `config.json`.
        config: PathBuf,
        /// The number of tokens, added tokens included.
        tokens: usize,
        /// The largest token id.
        max_id: u32,
        /// `vocab_size` in the config: the rows of the word-embedding table.
        vocab_size: usize,
    },
    /// One text of a batch could not be embedded.
    #[error("text at index {index}: {problem}")]
    Text {
        /// The text's index in the texts given to the encoder (0-based).
        index: usize,
        /// What was wrong.
        problem: TextError,
    },
    /// A backend was named that is unknown or not compiled into this build.
    #[error("{0}")]
    Backend(String),
    /// The model cannot run at the precision asked for: int8 on a backend without the int8
    /// kernels, or a weight that cannot be quantised (naming the tensor).
    #[error("{0}")]
    Precision(String),
}

/// What was wrong with one text's encoding (see [`Error::Text`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// The text was tokenized to an id that has no row in the model's embedding tables.
    #[error(
        "token {token:?} has {kind} {id}, but the model's {field} is {size} (ids 0 to {}); the \
         tokenizer does not belong to this model",
        size.saturating_sub(1)
    )]
    TokenOutOfRange {
        /// The token as the tokenizer wrote it.
        token: String,
        /// `"id"` (a token id) or `"type id"` (a segment id).
        kind: &'static str,
        /// The id found.
        id: u32,
        /// The config field that bounds it: `vocab_size` or `type_vocab_size`.
        field: &'static str,
        /// That field's value.
        size: usize,
    },
    /// The model produced NaN or an infinity for the text, e.g. from corrupt weights.
    #[error(
        "the model produced a non-finite embedding (NaN or infinity); its weights may be corrupt"
    )]
    NonFinite,
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
