//! Directories replaced in one step: a staging directory beside the target, fsynced, then
//! swapped with the target.

use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::fault_point;
use crate::file::parent;

/// A new, empty staging directory beside `dir` (`.NAME.partial-PID-XXXXXX`, mode `0o777` less
/// the umask), to fill and then hand to [`replace_dir`]. Dropped unused, it is removed; those
/// of killed processes are removed first (see [`remove_partials`]).
pub fn staging_dir(dir: &Path) -> io::Result<TempDir> {
    let parent = parent(dir);
    std::fs::create_dir_all(parent)?;
    remove_partials(dir)?;
    tempfile::Builder::new()
        .prefix(&format!("{}{}-", partial_prefix(dir), std::process::id()))
        .permissions(dir_permissions())
        .tempdir_in(parent)
}

/// Puts the finished `staged` directory (from [`staging_dir`]) in the place of `dir`, which
/// then holds either the old or the new contents, never a mix and never nothing: every file of
/// `staged` is fsynced, then on Linux the two are swapped by one `renameat2(RENAME_EXCHANGE)`
/// and the old contents removed. Where the file system cannot swap, `dir` is first renamed to
/// `.NAME.old` and [`recover_dir`] puts it back if the process dies before the new one is in
/// place.
pub fn replace_dir(staged: TempDir, dir: &Path) -> io::Result<()> {
    let staged = staged.keep();
    sync_tree(&staged)?;
    let parent = parent(dir);
    fault_point();
    if !dir.exists() {
        std::fs::rename(&staged, dir)?;
        return sync_dir(parent);
    }
    if exchange(&staged, dir)? {
        sync_dir(parent)?;
        // `staged` now holds the old contents.
        return std::fs::remove_dir_all(&staged);
    }
    let old = old_path(dir);
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    std::fs::rename(dir, &old)?;
    fault_point();
    std::fs::rename(&staged, dir)?;
    sync_dir(parent)?;
    std::fs::remove_dir_all(&old)
}

/// Repairs `dir` after a process was killed while replacing it: puts `.NAME.old` back if `dir`
/// is missing (a fallback replacement cut between its renames), else removes it. Staging
/// directories are left to [`remove_partials`].
pub fn recover_dir(dir: &Path) -> io::Result<()> {
    let old = old_path(dir);
    if !old.exists() {
        return Ok(());
    }
    if dir.exists() {
        std::fs::remove_dir_all(&old)
    } else {
        std::fs::rename(&old, dir)?;
        sync_dir(parent(dir))
    }
}

/// Removes the staging directories of `dir` (`.NAME.partial-PID-*`) whose process no longer
/// runs (Linux, where `/proc` tells; elsewhere nothing is removed), so a live process's
/// staging directory is never touched.
pub fn remove_partials(dir: &Path) -> io::Result<()> {
    let prefix = partial_prefix(dir);
    let Ok(entries) = std::fs::read_dir(parent(dir)) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir && !crate::process_runs(pid) {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// Flushes a directory's entries (new, renamed or removed files) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

fn partial_prefix(dir: &Path) -> String {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    format!(".{}.partial-", name.unwrap_or_default())
}

fn old_path(dir: &Path) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
    parent(dir).join(format!(".{}.old", name.unwrap_or_default()))
}

/// fsyncs every file and directory under `dir`, `dir` included.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            sync_tree(&entry.path())?;
        } else if kind.is_file() {
            std::fs::File::open(entry.path())?.sync_all()?;
        }
    }
    sync_dir(dir)
}

/// Swaps `a` and `b` in one step; `Ok(false)` where the platform or file system cannot.
fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        use rustix::io::Errno;
        match renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE) {
            Ok(()) => Ok(true),
            Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (a, b);
        Ok(false)
    }
}

fn dir_permissions() -> std::fs::Permissions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(0o777)
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(".")
            .map(|m| m.permissions())
            .unwrap_or_else(|_| unreachable!("the working directory exists"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::tests::entry_names as names;

    fn stage(dir: &Path, content: &str) -> TempDir {
        let staged = staging_dir(dir).unwrap();
        std::fs::write(staged.path().join("x"), content).unwrap();
        staged
    }

    #[test]
    fn directories_are_replaced_whole_and_nothing_is_left() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("d");
        for content in ["old", "new"] {
            replace_dir(stage(&dir, content), &dir).unwrap();
        }
        assert_eq!(std::fs::read_to_string(dir.join("x")).unwrap(), "new");
        assert_eq!(names(root.path()), ["d"]);
    }

    #[test]
    fn an_unused_staging_directory_is_removed() {
        let root = tempfile::tempdir().unwrap();
        drop(stage(&root.path().join("d"), "x"));
        assert!(names(root.path()).is_empty());
    }

    #[test]
    fn recovery_puts_back_a_directory_cut_between_two_renames() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("d");
        // What a fallback replacement killed between its renames leaves.
        let old = root.path().join(".d.old");
        std::fs::create_dir(&old).unwrap();
        std::fs::write(old.join("x"), "old").unwrap();
        // A killed process's staging directory (pid 0 is never a process in /proc).
        let partial = root.path().join(".d.partial-0-abcdef");
        std::fs::create_dir(&partial).unwrap();
        let live = stage(&dir, "live");
        recover_dir(&dir).unwrap();
        remove_partials(&dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("x")).unwrap(), "old");
        assert!(!partial.exists());
        assert!(live.path().exists(), "a live process's staging stays");
        drop(live);
        assert_eq!(names(root.path()), ["d"]);

        // With the directory in place, a leftover `.old` is only removed.
        std::fs::create_dir(&old).unwrap();
        recover_dir(&dir).unwrap();
        assert_eq!(names(root.path()), ["d"]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn linux_swaps_in_one_step() {
        let root = tempfile::tempdir().unwrap();
        let a = root.path().join("a");
        let b = root.path().join("b");
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(a.join("x"), "a").unwrap();
        assert!(exchange(&a, &b).unwrap(), "tmpfs and ext4 swap");
        assert_eq!(std::fs::read_to_string(b.join("x")).unwrap(), "a");
        assert!(!a.join("x").exists());
    }
}
