//! Writes that never leave a half-written file or directory behind.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed to
/// disk, then renamed over `path`.
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = tempfile::NamedTempFile::new_in(parent(path))?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Moves the finished directory `staged` to `dir`, replacing what is there: `dir` holds either
/// the old or the new contents, never a mix. `staged` must be on the same file system (make it
/// beside `dir`, e.g. with `tempfile::Builder::tempdir_in(parent)`).
pub fn replace_dir(staged: &Path, dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        return std::fs::rename(staged, dir);
    }
    let mut old = staged.as_os_str().to_owned();
    old.push(".old");
    let old = PathBuf::from(old);
    std::fs::rename(dir, &old)?;
    std::fs::rename(staged, dir)?;
    std::fs::remove_dir_all(&old)
}

/// The directory `path` is in (`.` for a bare file name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_directories_are_replaced_whole() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f.txt");
        write_file(&file, b"one").unwrap();
        write_file(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");

        let dir = root.path().join("d");
        for content in ["old", "new"] {
            let staged = tempfile::tempdir_in(root.path()).unwrap().keep();
            std::fs::write(staged.join("x"), content).unwrap();
            replace_dir(&staged, &dir).unwrap();
            assert!(!staged.exists());
        }
        assert_eq!(std::fs::read_to_string(dir.join("x")).unwrap(), "new");
        let leftovers: Vec<_> = std::fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 2, "only f.txt and d remain");
    }
}
