//! Rust errors as Python exceptions: the message is the error and its causes joined by `: `
//! (as the `mtl` command prints them), the exception type says what kind of problem it is.

use std::error::Error as StdError;

use pyo3::PyErr;
use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError, PyValueError};

/// What kind of Python exception an error becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A file or model that does not exist: `FileNotFoundError`.
    NotFound,
    /// Bad input or settings from the caller: `ValueError`.
    Invalid,
    /// Anything else (I/O, a damaged checkpoint, a backend failure): `RuntimeError`.
    Runtime,
}

/// `error` as a Python exception (see the module documentation).
pub(crate) fn to_py(error: &(dyn StdError + 'static)) -> PyErr {
    let message = message(error);
    match kind(error) {
        Kind::NotFound => PyFileNotFoundError::new_err(message),
        Kind::Invalid => PyValueError::new_err(message),
        Kind::Runtime => PyRuntimeError::new_err(message),
    }
}

/// The error and its causes, `: `-separated, each said once.
fn message(error: &(dyn StdError + 'static)) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let text = e.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = e.source();
    }
    message
}

/// `NotFound` when any error of the chain is about a missing file or model (a data set's
/// missing file is a data error caused by one), else the outermost error's kind.
fn kind(error: &(dyn StdError + 'static)) -> Kind {
    let mut kinds = Vec::new();
    let mut cause = Some(error);
    while let Some(e) = cause {
        kinds.extend(kind_of(e));
        cause = e.source();
    }
    if kinds.contains(&Kind::NotFound) {
        return Kind::NotFound;
    }
    kinds.first().copied().unwrap_or(Kind::Runtime)
}

fn kind_of(e: &(dyn StdError + 'static)) -> Option<Kind> {
    if let Some(e) = e.downcast_ref::<std::io::Error>() {
        return (e.kind() == std::io::ErrorKind::NotFound).then_some(Kind::NotFound);
    }
    if let Some(e) = e.downcast_ref::<mtl_hub::Error>() {
        use mtl_hub::Error as E;
        return match e {
            E::NoSuchModel { .. } | E::RepoNotFound { .. } | E::MissingFile { .. } => {
                Some(Kind::NotFound)
            }
            E::RevisionWithoutHubId { .. }
            | E::NotADirectory { .. }
            | E::RevisionForLocalDir { .. }
            | E::InvalidRevision { .. }
            | E::InvalidHubId { .. } => Some(Kind::Invalid),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<mtl_bert::Error>() {
        use mtl_bert::Error as E;
        return match e {
            E::MissingFile { .. } => Some(Kind::NotFound),
            E::Encoding(_) | E::Text { .. } | E::Backend(_) | E::Precision(_) => {
                Some(Kind::Invalid)
            }
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<mtl_model::Error>() {
        use mtl_model::Error as E;
        return match e {
            E::MissingFile { .. } => Some(Kind::NotFound),
            E::UnknownTask { .. } | E::InvalidConfig(_) => Some(Kind::Invalid),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<mtl_train::Error>() {
        use mtl_train::Error as E;
        return match e {
            E::Config(_) | E::RunDir(_) | E::Data(_) => Some(Kind::Invalid),
            _ => None,
        };
    }
    None
}
