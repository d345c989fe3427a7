//! Writes that never lose a user's data: the one home of every file-system write of mtl.
//!
//! - [`write_file`] and [`OutputFile`]: a regular file (or a new path) is replaced in one step
//!   (temporary file beside it, fsync, rename, fsync of the directory); a symlink's target is
//!   written, not the link; a character device, FIFO or socket is written to directly, never
//!   replaced. New files get `0o666` less the umask, as `File::create` does; a replaced file
//!   keeps its mode.
//! - [`replace_dir`]: a finished staging directory takes the place of a directory in one atomic
//!   step (`renameat2(RENAME_EXCHANGE)` on Linux); [`recover_dir`] repairs what a process killed
//!   in the middle of a fallback replacement left behind.
//! - [`DirLock`]: an exclusive lock on a directory, held while a process writes into it.
//! - [`sha256_file`]: the digest that checkpoints record and verify.

mod dir;
mod file;
mod lock;

pub use dir::{recover_dir, remove_partials, replace_dir, staging_dir, sync_dir};
pub use file::{OutputFile, parent, write_file};
pub use lock::{DirLock, LOCK_FILE};

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The lowercase hex sha256 of the file at `path`.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Whether the process `pid` (decimal) may still run: false only where `/proc` shows it does
/// not (Linux); true for anything that is not a pid, and everywhere without `/proc`.
fn process_runs(pid: &str) -> bool {
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    !Path::new("/proc/self").exists() || Path::new("/proc").join(pid).exists()
}

/// Test hook for fault-injection tests: with `MTL_FAULT_AT_STEP=N` in the environment, the
/// process kills itself (SIGKILL, no clean-up) just before its `N`-th atomic step (1-based: a
/// rename of a file or a directory made by this crate). Without the variable it does nothing.
fn fault_point() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STEPS: AtomicU64 = AtomicU64::new(0);
    let Some(at) = std::env::var("MTL_FAULT_AT_STEP")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    if STEPS.fetch_add(1, Ordering::SeqCst) + 1 == at {
        // SIGKILL as `kill -9` would: no destructor, no flush, no temporary-file clean-up.
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sorted entry names of `dir` (for the tests of every module here).
    pub(crate) fn entry_names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn sha256_of_a_known_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
