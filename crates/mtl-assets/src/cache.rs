//! Where downloads and extracted assets live.

use std::path::PathBuf;

/// The cache directory: `$MTL_CACHE_DIR` if set (cargo sets it to the checkout's git-ignored
/// `.cache/` for `cargo run`, `cargo test` and `cargo xtask`), else `$XDG_CACHE_HOME/mtl`,
/// else `~/.cache/mtl`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MTL_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("mtl");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("mtl")
}
