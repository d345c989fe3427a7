//! Errors of fetching and unpacking assets.

use std::path::PathBuf;

/// What can go wrong while fetching an asset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The package client (pip or npm) could not be run or failed.
    #[error("`{command}` failed: {message}")]
    Client {
        /// The command line.
        command: String,
        /// Its exit status and error output, or why it could not start.
        message: String,
    },
    /// A downloaded or extracted file does not have the pinned digest.
    #[error("{}: sha256 {found} does not match the pinned {expected}", path.display())]
    DigestMismatch {
        /// The file.
        path: PathBuf,
        /// The pinned digest.
        expected: String,
        /// The digest of the file.
        found: String,
    },
    /// An archive is corrupt or lacks an expected member.
    #[error("{}: {message}", path.display())]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A data set's source file does not have the expected format.
    #[error("{file} line {line}: {message}")]
    Source {
        /// The file inside the package.
        file: String,
        /// The line (1-based; 0 when the whole file is concerned).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The data sets' manifest cannot be read or does not fit the code.
    #[error("{}: {message}", path.display())]
    Manifest {
        /// The manifest, or the data set directory concerned.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A produced data set file does not have the digest the manifest records.
    #[error("{}: sha256 {found} does not match {expected} recorded in the manifest", file.display())]
    ManifestMismatch {
        /// The produced file.
        file: PathBuf,
        /// The digest in the manifest.
        expected: String,
        /// The digest of the file.
        found: String,
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
