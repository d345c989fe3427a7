//! Where a model comes from, and the Hugging Face hub download that gets it: the one home of
//! every hub request of mtl.
//!
//! - [`ModelSource`]: a model named by a string and a revision (a local directory, a hub id
//!   `owner/name` at a branch, tag or commit, or the default all-MiniLM-L6-v2 from the
//!   project's cache), resolved to a local directory.
//! - [`HubModel`]: one hub repository at one revision, fetched into the standard hub cache
//!   (`refs/REVISION`, `snapshots/COMMIT/FILE` relative links to `blobs/HASH`, shared with
//!   Python's `huggingface_hub`); only the files a BERT sentence encoder reads; a model
//!   complete in the cache is used without touching the network. The hub's answers are
//!   checked before they name anything (the etag must be a git blob sha1 or a sha256, the
//!   commit a sha1, the revision a plain name); the bytes must hash to the etag before they are
//!   renamed into `blobs/`; an interrupted download resumes from `blobs/HASH.incomplete`
//!   (a `Range` request; a 200 answer starts over), which is locked while it is written, so
//!   processes fetching the same file take turns; files larger than a cap are refused.
//! - [`HubOptions`]: the endpoint, cache, token, offline flag and size cap, defaulting from
//!   `HF_ENDPOINT`, `HF_HUB_CACHE` / `HF_HOME`, `HF_TOKEN`, `HF_HUB_OFFLINE` and
//!   `MTL_HUB_MAX_FILE_BYTES` as `huggingface_hub` reads them.
//! - [`Event`]: what resolving reports (cached, downloading, resuming, progress, fetching the
//!   default model); nothing here prints. [`trace_event`] turns events into `tracing` lines.
//! - [`Error`]: what went wrong and what to do, naming the model and revision, never a
//!   command-line flag.
//! - [`is_hub_id`], [`is_revision`]: the shapes of hub ids and revisions accepted.
//! - `stand_in` (feature `stand-in`): a local server in the hub's URL layout, for tests.

mod blob;
mod cache;
mod client;
mod error;
mod event;
mod model;
mod options;
mod source;
#[cfg(feature = "stand-in")]
pub mod stand_in;

pub use error::{Error, Result};
pub use event::{Event, trace_event};
pub use model::HubModel;
pub use options::{DEFAULT_ENDPOINT, DEFAULT_MAX_FILE_BYTES, HubOptions};
pub use source::{DEFAULT_REVISION, ModelSource, is_hub_id, is_revision};
