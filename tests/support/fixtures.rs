//! Where the test fixtures are: included by each crate's integration tests with
//! `#[path = ".../tests/support/fixtures.rs"] mod fixtures;` (one home for these paths).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `tests/fixtures` at the workspace root (written by `scripts/make_fixtures.py`).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The tiny random BERT (hidden size 32, 64 positions, a vocabulary of small English words).
pub fn tiny_dir() -> PathBuf {
    fixtures().join("tiny-bert")
}

/// The all-MiniLM-L6-v2 directory that `cargo xtask fetch-model` writes (in `MTL_CACHE_DIR`,
/// else the workspace's `.cache`).
///
/// # Panics
/// With instructions when the model has not been fetched.
pub fn minilm_dir() -> PathBuf {
    let cache = std::env::var_os("MTL_CACHE_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache"),
        PathBuf::from,
    );
    let dir = cache.join("models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run `cargo xtask fetch-model` first",
        dir.display()
    );
    dir
}
