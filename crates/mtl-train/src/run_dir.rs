//! The run directory: its marker, its lock, and the only files `--overwrite` may delete.
//!
//! mtl writes a marker file (`.mtl-run`) into every run directory before anything else, and
//! holds an exclusive lock (`.lock`) on it while a run writes there. `--overwrite` replaces a
//! run only where the marker is, deletes only the entries mtl writes (listed in [`ENTRIES`] and
//! the staging directories of `best/` and `checkpoint/`), keeps every other file, and never
//! touches the working directory or one of its ancestors.

use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use mtl_fs::DirLock;

use crate::checkpoint::CHECKPOINT_DIR;

/// The marker file that says mtl made the directory.
pub const MARKER: &str = ".mtl-run";

/// The best model's directory inside the run directory.
pub const BEST_DIR: &str = "best";

/// Every entry mtl writes in a run directory (files and directories).
pub const ENTRIES: [&str; 12] = [
    "config.toml",
    "metrics.jsonl",
    "plan.jsonl",
    "summary.json",
    "init_heads.safetensors",
    "plots",
    BEST_DIR,
    CHECKPOINT_DIR,
    ".best.old",
    ".checkpoint.old",
    MARKER,
    mtl_fs::LOCK_FILE,
];

/// A run directory this process writes, locked until dropped.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    _lock: DirLock,
}

impl RunDir {
    /// Makes `path` the directory of a new run: creates it (or uses an existing directory
    /// that holds no run), or with `overwrite` deletes the previous run's entries first (only
    /// where mtl's marker is). Writes the marker and takes the lock.
    pub fn create(path: &Path, overwrite: bool) -> Result<Self> {
        if path.exists() && !path.is_dir() {
            return Err(Error::RunDir(format!(
                "--output {} is a file, not a directory",
                path.display()
            )));
        }
        // A marker without config.toml is a run killed before it started: it holds nothing.
        let holds_run = path.join("config.toml").exists();
        if holds_run && !overwrite {
            return Err(Error::RunDir(format!(
                "{} already holds a run: --resume {} continues it, --overwrite replaces it, \
                 --output DIR starts elsewhere",
                path.display(),
                path.display()
            )));
        }
        if holds_run {
            if !path.join(MARKER).exists() {
                return Err(Error::RunDir(format!(
                    "{} holds a config.toml but no {MARKER} marker, so mtl did not make it: \
                     --overwrite deletes only mtl's own run directories. Remove it yourself or \
                     choose another --output",
                    path.display()
                )));
            }
            refuse_working_directory(path)?;
        }
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        let lock = lock(path)?;
        if holds_run {
            remove_run_entries(path)?;
        }
        mtl_fs::write_file(&path.join(MARKER), b"mtl run directory\n")
            .with_context(|| format!("writing {}", path.join(MARKER).display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// Opens the run in `path` to continue it: takes the lock and repairs what a killed
    /// process left (a `best/` or `checkpoint/` cut between two renames, staging directories).
    pub fn resume(path: &Path) -> Result<Self> {
        if !path.join("config.toml").is_file() {
            return Err(Error::RunDir(format!(
                "{} is not a run directory to resume (it has no config.toml){}",
                path.display(),
                if path.join(MARKER).exists() {
                    "; the run was killed before it started: run the same command again"
                } else {
                    ""
                }
            )));
        }
        let lock = lock(path)?;
        for name in [BEST_DIR, CHECKPOINT_DIR] {
            let dir = path.join(name);
            mtl_fs::recover_dir(&dir)
                .and_then(|()| mtl_fs::remove_partials(&dir))
                .with_context(|| format!("repairing {}", dir.display()))?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn lock(path: &Path) -> Result<DirLock> {
    DirLock::acquire(path).with_context(|| {
        format!(
            "locking {}: another mtl process is training in it",
            path.display()
        )
    })
}

/// Refuses `path` when it is the working directory or one of its ancestors.
fn refuse_working_directory(path: &Path) -> Result<()> {
    let target = path
        .canonicalize()
        .with_context(|| format!("resolving {}", path.display()))?;
    let cwd = std::env::current_dir()
        .and_then(|d| d.canonicalize())
        .context("reading the working directory")?;
    if cwd.starts_with(&target) {
        return Err(Error::RunDir(format!(
            "--overwrite refuses {}: it is the working directory or holds it",
            path.display()
        )));
    }
    Ok(())
}

/// Deletes the entries mtl writes in a run directory (and staging directories of `best/` and
/// `checkpoint/`), leaving every other file where it is.
fn remove_run_entries(path: &Path) -> Result<()> {
    for name in ENTRIES {
        if name == mtl_fs::LOCK_FILE {
            continue;
        }
        let entry = path.join(name);
        let Ok(meta) = std::fs::symlink_metadata(&entry) else {
            continue;
        };
        let removed = if meta.is_dir() {
            std::fs::remove_dir_all(&entry)
        } else {
            std::fs::remove_file(&entry)
        };
        removed.with_context(|| format!("removing {}", entry.display()))?;
    }
    for name in [BEST_DIR, CHECKPOINT_DIR] {
        mtl_fs::remove_partials(&path.join(name))
            .with_context(|| format!("removing staging directories in {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn overwrite_deletes_only_what_mtl_wrote() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        drop(RunDir::create(&run, false).unwrap());
        std::fs::write(run.join("config.toml"), "x").unwrap();
        std::fs::create_dir_all(run.join("best")).unwrap();
        std::fs::create_dir_all(run.join(".checkpoint.partial-0-abc")).unwrap();
        std::fs::create_dir_all(run.join("src")).unwrap();
        std::fs::write(run.join("src/main.rs"), "fn main() {}").unwrap();
        std::fs::write(run.join("notes.txt"), "mine").unwrap();

        let err = RunDir::create(&run, false).unwrap_err().to_string();
        assert!(err.contains("already holds a run"), "{err}");
        drop(RunDir::create(&run, true).unwrap());
        assert_eq!(names(&run), [".lock", MARKER, "notes.txt", "src"]);
        assert!(run.join("src/main.rs").is_file());
    }

    #[test]
    fn a_directory_without_the_marker_is_never_deleted() {
        let root = tempfile::tempdir().unwrap();
        let project = root.path().join("project");
        std::fs::create_dir_all(project.join("src")).unwrap();
        std::fs::write(project.join("config.toml"), "[package]").unwrap();
        std::fs::write(project.join("src/main.rs"), "fn main() {}").unwrap();
        let err = RunDir::create(&project, true).unwrap_err().to_string();
        assert!(err.contains("no .mtl-run marker"), "{err}");
        assert_eq!(names(&project), ["config.toml", "src"]);
    }

    #[test]
    fn the_working_directory_and_its_ancestors_are_refused() {
        let cwd = std::env::current_dir().unwrap();
        for dir in [Path::new("."), Path::new("..")] {
            let err = refuse_working_directory(dir).unwrap_err().to_string();
            assert!(err.contains("working directory"), "{err}");
        }
        assert!(refuse_working_directory(&cwd.join("src")).is_ok());
    }

    #[test]
    fn a_locked_run_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let run = root.path().join("run");
        let first = RunDir::create(&run, false).unwrap();
        std::fs::write(run.join("config.toml"), "x").unwrap();
        let err = format!("{:#}", RunDir::resume(&run).unwrap_err());
        assert!(err.contains("another mtl process"), "{err}");
        drop(first);
        RunDir::resume(&run).unwrap();
    }
}
