//! The Hugging Face hub cache's layout, shared with Python's `huggingface_hub`:
//! `models--OWNER--NAME/refs/REVISION` holds the commit, `snapshots/COMMIT/FILE` links to
//! `blobs/HASH`.

use std::path::{Path, PathBuf};

use crate::blob::is_commit_hash;
use crate::error::{Error, Result};

/// One repository's directory in the hub cache.
#[derive(Debug, Clone)]
pub(crate) struct RepoCache {
    /// `CACHE/models--OWNER--NAME`.
    pub dir: PathBuf,
}

impl RepoCache {
    /// The directory of model `id` (`owner/name`, already checked) in the hub cache `cache`.
    pub fn new(cache: &Path, id: &str) -> Self {
        Self {
            dir: cache.join(format!("models--{}", id.replace('/', "--"))),
        }
    }

    /// `blobs/`.
    pub fn blobs(&self) -> PathBuf {
        self.dir.join("blobs")
    }

    /// The revision's snapshot directory, `snapshots/COMMIT` with the commit that
    /// `refs/REVISION` names, if that is a commit hash.
    pub fn snapshot_dir(&self, revision: &str) -> Option<PathBuf> {
        let commit = std::fs::read_to_string(self.dir.join("refs").join(revision)).ok()?;
        let commit = commit.trim();
        is_commit_hash(commit).then(|| self.dir.join("snapshots").join(commit))
    }

    /// `snapshots/COMMIT/NAME`.
    pub fn pointer(&self, commit: &str, name: &str) -> PathBuf {
        self.dir.join("snapshots").join(commit).join(name)
    }

    /// Writes `refs/REVISION` (in subdirectories when the revision has a `/`).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        let reference = self.dir.join("refs").join(revision);
        std::fs::create_dir_all(reference.parent().expect("refs/ is a parent"))
            .and_then(|()| std::fs::write(&reference, commit))
            .map_err(Error::io("writing", reference))
    }
}

/// Makes `pointer` (`snapshots/COMMIT/NAME`) a relative link to the blob `blobs/HASH`, as
/// `huggingface_hub` does, replacing what was there; a copy where links are not available.
pub(crate) fn link_blob(blob: &Path, pointer: &Path, hash: &str, name: &str) -> Result<()> {
    let failed = Error::io("linking", pointer);
    let parent = pointer.parent().expect("a snapshot file has a directory");
    if let Err(e) = std::fs::create_dir_all(parent) {
        return Err(failed(e));
    }
    // Another process may remove the same link meanwhile.
    if pointer.symlink_metadata().is_ok()
        && let Err(e) = std::fs::remove_file(pointer)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        return Err(failed(e));
    }
    #[cfg(unix)]
    let linked = {
        // From snapshots/COMMIT/DIRS/ up to the repository directory: one `..` per part of
        // NAME (its directories, and COMMIT for the file itself) and one for snapshots/.
        let up = "../".repeat(Path::new(name).components().count() + 1);
        std::os::unix::fs::symlink(format!("{up}blobs/{hash}"), pointer)
    };
    #[cfg(not(unix))]
    let linked = std::fs::copy(blob, pointer).map(drop);
    #[cfg(unix)]
    let _ = blob;
    match linked {
        // Another process linked the same blob meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(failed(e)),
        Ok(()) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn snapshot_files_link_to_their_blob_relatively() {
        let repo = tempfile::tempdir().unwrap();
        let blob = repo.path().join("blobs/abc");
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::write(&blob, b"x").unwrap();
        for name in ["config.json", "1_Pooling/config.json"] {
            let pointer = repo.path().join("snapshots/c0mmit").join(name);
            link_blob(&blob, &pointer, "abc", name).unwrap();
            // Again: the link is replaced, not an error.
            link_blob(&blob, &pointer, "abc", name).unwrap();
            assert_eq!(std::fs::read(&pointer).unwrap(), b"x");
            let target = std::fs::read_link(&pointer).unwrap();
            assert!(target.is_relative(), "{}", target.display());
        }
    }
}
