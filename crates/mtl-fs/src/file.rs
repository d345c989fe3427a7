//! Output files: replaced whole, or written in place where replacing would be wrong.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::dir::sync_dir;
use crate::fault_point;

/// The suffix of the temporary files beside an output (`.NAME.PID.XXXXXX.mtl-partial`).
const PARTIAL_SUFFIX: &str = ".mtl-partial";

/// Writes `bytes` to `path` as [`OutputFile`] does: atomically for a regular file or a new
/// path, through a symlink to its target, in place for a device or FIFO.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OutputFile::create(path)?;
    file.write_all(bytes)?;
    file.commit()
}

/// A file being written to `path`; nothing is visible at `path` until [`OutputFile::commit`]
/// (dropped without it, the temporary file is removed and `path` is untouched).
///
/// - A regular file or a new path: written to a temporary file beside the target, fsynced,
///   then renamed over it and the directory fsynced. A replaced file keeps its permissions; a
///   new one gets `0o666` less the umask.
/// - A symlink (a chain of them too): the final target is written as above; the link stays.
/// - A character device, FIFO or socket (`/dev/null`, `/dev/stdout`, a named pipe): opened and
///   written directly; it is never replaced or removed.
/// - A directory: an error.
///
/// Temporary files left by a process killed before its commit are removed by the next
/// `create` of the same path (those whose process is gone).
#[derive(Debug)]
pub struct OutputFile {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Atomic {
        file: NamedTempFile,
        target: PathBuf,
    },
    Direct(File),
}

impl OutputFile {
    /// Starts writing `path` (see the type's documentation).
    pub fn create(path: &Path) -> io::Result<Self> {
        // The kernel follows every link here, `/proc/self/fd/N` ones included.
        let existing = match std::fs::metadata(path) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(meta) = &existing {
            if meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{} is a directory", path.display()),
                ));
            }
            if !meta.is_file() {
                let file = OpenOptions::new().write(true).open(path)?;
                return Ok(Self {
                    inner: Inner::Direct(file),
                });
            }
        }
        // A regular file or a new path: the temporary file goes beside the link's target.
        let target = resolve_symlinks(path)?;
        let dir = parent(&target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        remove_stale_partials(dir, &name);
        let file = tempfile::Builder::new()
            .prefix(&format!(".{name}.{}.", std::process::id()))
            .suffix(PARTIAL_SUFFIX)
            .permissions(new_file_permissions())
            .tempfile_in(dir)?;
        if let Some(meta) = existing {
            file.as_file().set_permissions(meta.permissions())?;
        }
        Ok(Self {
            inner: Inner::Atomic { file, target },
        })
    }

    /// Whether the output is written in place (a device, FIFO or socket), so it cannot seek.
    pub fn is_direct(&self) -> bool {
        matches!(self.inner, Inner::Direct(_))
    }

    /// The open file (the temporary one for a regular file), e.g. to seek back and rewrite a
    /// header before [`OutputFile::commit`].
    pub fn file_mut(&mut self) -> &mut File {
        match &mut self.inner {
            Inner::Atomic { file, .. } => file.as_file_mut(),
            Inner::Direct(file) => file,
        }
    }

    /// Finishes the output: flushes it to disk and puts it in place.
    pub fn commit(self) -> io::Result<()> {
        match self.inner {
            Inner::Atomic { mut file, target } => {
                file.flush()?;
                file.as_file().sync_all()?;
                fault_point();
                file.persist(&target).map_err(|e| e.error)?;
                sync_dir(parent(&target))
            }
            Inner::Direct(mut file) => file.flush(),
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file_mut().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file_mut().flush()
    }
}

/// The directory `path` is in (`.` for a bare file name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Follows `path` through symlinks (a dangling link gives the path it points to).
fn resolve_symlinks(path: &Path) -> io::Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let link = std::fs::read_link(&current)?;
                current = if link.is_absolute() {
                    link
                } else {
                    parent(&current).join(link)
                };
            }
            _ => return Ok(current),
        }
    }
    Err(io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// `0o666`: the kernel applies the umask when the file is created, as for `File::create`.
fn new_file_permissions() -> Permissions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Permissions::from_mode(0o666)
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(".")
            .map(|m| m.permissions())
            .unwrap_or_else(|_| unreachable!("the working directory exists"))
    }
}

/// Removes `.NAME.PID.*.mtl-partial` files in `dir` whose process no longer runs (Linux, where
/// `/proc` tells; elsewhere nothing is removed).
fn remove_stale_partials(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file_name
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(PARTIAL_SUFFIX))
        else {
            continue;
        };
        let pid = rest.split('.').next().unwrap_or_default();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && !crate::process_runs(pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    use super::*;

    use crate::tests::entry_names as names;

    #[test]
    fn a_file_is_replaced_whole_and_keeps_its_mode() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f.txt");
        write_file(&file, b"one").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o640)).unwrap();
        let mut out = OutputFile::create(&file).unwrap();
        out.write_all(b"two").unwrap();
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"one",
            "untouched until commit"
        );
        out.commit().unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(names(root.path()), ["f.txt"]);
    }

    #[test]
    fn a_new_file_gets_the_umask_mode_not_0600() {
        let root = tempfile::tempdir().unwrap();
        let ours = root.path().join("ours");
        let theirs = root.path().join("theirs");
        write_file(&ours, b"x").unwrap();
        File::create(&theirs).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&ours), mode(&theirs), "same mode as File::create");
        assert_ne!(
            mode(&ours),
            0o600,
            "a umask of 077 is not the norm in tests"
        );
    }

    #[test]
    fn dropping_without_commit_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("f.txt");
        let mut out = OutputFile::create(&file).unwrap();
        out.write_all(b"half").unwrap();
        drop(out);
        assert!(names(root.path()).is_empty());
    }

    #[test]
    fn a_symlink_target_is_written_and_the_link_stays() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real.txt");
        std::fs::write(&real, b"old").unwrap();
        let link = root.path().join("link.txt");
        std::os::unix::fs::symlink("real.txt", &link).unwrap();
        write_file(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        // A dangling link creates its target.
        let dangling = root.path().join("dangling");
        std::os::unix::fs::symlink("created.txt", &dangling).unwrap();
        write_file(&dangling, b"made").unwrap();
        assert_eq!(
            std::fs::read(root.path().join("created.txt")).unwrap(),
            b"made"
        );
    }

    #[test]
    fn devices_and_fifos_are_written_not_replaced() {
        write_file(Path::new("/dev/null"), b"discarded").unwrap();
        // A link the kernel resolves through /proc (`/dev/stdout` -> `/proc/self/fd/1`).
        let null = File::options().write(true).open("/dev/null").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&null);
        write_file(Path::new(&format!("/proc/self/fd/{fd}")), b"discarded").unwrap();
        let meta = std::fs::symlink_metadata("/dev/null").unwrap();
        assert!(meta.file_type().is_char_device());

        let root = tempfile::tempdir().unwrap();
        let fifo = root.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || std::fs::read(&fifo).unwrap())
        };
        write_file(&fifo, b"through the pipe").unwrap();
        assert_eq!(reader.join().unwrap(), b"through the pipe");
        assert!(
            std::fs::symlink_metadata(&fifo)
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(names(root.path()), ["pipe"]);
    }

    #[test]
    fn a_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let err = write_file(root.path(), b"x").unwrap_err();
        assert!(err.to_string().contains("is a directory"), "{err}");
    }

    #[test]
    fn partials_of_dead_processes_are_cleaned() {
        let root = tempfile::tempdir().unwrap();
        // pid 0 never names a process in /proc.
        let stale = root.path().join(".f.txt.0.abcdef.mtl-partial");
        std::fs::write(&stale, b"left by a killed process").unwrap();
        let live = root
            .path()
            .join(format!(".f.txt.{}.zzzzzz.mtl-partial", std::process::id()));
        std::fs::write(&live, b"being written").unwrap();
        let other = root.path().join(".g.txt.0.abcdef.mtl-partial");
        std::fs::write(&other, b"another output's").unwrap();
        write_file(&root.path().join("f.txt"), b"x").unwrap();
        assert!(!stale.exists());
        assert!(live.exists() && other.exists());
    }
}
