//! Reading files out of the archives that packages come in: a wheel is a zip file, an sdist or
//! an npm tarball is a gzipped tar.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// A file read out of an archive: its path inside the archive and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The path inside the archive, `/`-separated.
    pub path: String,
    /// The file's contents.
    pub bytes: Vec<u8>,
}

/// The kinds of archive a package comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArchiveKind {
    /// A zip file (a Python wheel).
    Zip,
    /// A gzipped tar (a Python sdist, an npm tarball).
    TarGz,
}

impl ArchiveKind {
    /// The kind of `path`, from its name (`.whl`/`.zip`, `.tar.gz`/`.tgz`).
    pub(crate) fn of(path: &Path) -> Result<Self> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".whl") || name.ends_with(".zip") {
            Ok(Self::Zip)
        } else if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            Ok(Self::TarGz)
        } else {
            Err(Error::Archive {
                path: path.to_path_buf(),
                message: "is neither a zip (.whl, .zip) nor a gzipped tar (.tar.gz, .tgz)".into(),
            })
        }
    }
}

/// Reads the regular files of `archive` whose path starts with `prefix` (a directory ending in
/// `/`, or one file's full path), sorted by path. Fails if there is none.
pub(crate) fn read_members(archive: &Path, prefix: &str) -> Result<Vec<Member>> {
    let mut members = match ArchiveKind::of(archive)? {
        ArchiveKind::Zip => read_zip(archive, prefix)?,
        ArchiveKind::TarGz => read_tar_gz(archive, prefix)?,
    };
    if members.is_empty() {
        return Err(Error::Archive {
            path: archive.to_path_buf(),
            message: format!("has no file {prefix}"),
        });
    }
    members.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(members)
}

/// Reads the one file `path` of `archive`. Only the tests call it.
#[cfg(test)]
pub(crate) fn read_member(archive: &Path, path: &str) -> Result<Vec<u8>> {
    let mut members = read_members(archive, path)?;
    match members.iter().position(|m| m.path == path) {
        Some(i) => Ok(members.swap_remove(i).bytes),
        None => Err(Error::Archive {
            path: archive.to_path_buf(),
            message: format!("has no file {path}"),
        }),
    }
}

fn read_zip(archive: &Path, prefix: &str) -> Result<Vec<Member>> {
    let corrupt = |message: String| Error::Archive {
        path: archive.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| corrupt(e.to_string()))?;
    let mut members = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| corrupt(e.to_string()))?;
        let path = entry
            .name()
            .map_err(|e| corrupt(e.to_string()))?
            .into_owned();
        if entry.is_dir() || !path.starts_with(prefix) {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(format!("{path}: {e}")))?;
        members.push(Member { path, bytes });
    }
    Ok(members)
}

fn read_tar_gz(archive: &Path, prefix: &str) -> Result<Vec<Member>> {
    let corrupt = |message: String| Error::Archive {
        path: archive.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(archive).map_err(|e| Error::io(archive, e))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut members = Vec::new();
    for entry in tar.entries().map_err(|e| corrupt(e.to_string()))? {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if !path.starts_with(prefix) {
            continue;
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .map_err(|e| corrupt(format!("{path}: {e}")))?;
        members.push(Member { path, bytes });
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn write_tar_gz(path: &Path, files: &[(&str, &[u8])]) {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        for (name, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, *bytes).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }

    fn write_zip(path: &Path, files: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        for (name, bytes) in files {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn reads_members_under_a_prefix_from_both_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let files: &[(&str, &[u8])] = &[
            ("pkg/data/b.txt", b"b"),
            ("pkg/data/a.txt", b"a"),
            ("pkg/other.txt", b"o"),
        ];
        for name in ["x.tgz", "x.whl"] {
            let path = dir.path().join(name);
            if name.ends_with(".tgz") {
                write_tar_gz(&path, files);
            } else {
                write_zip(&path, files);
            }
            let members = read_members(&path, "pkg/data/").unwrap();
            let paths: Vec<&str> = members.iter().map(|m| m.path.as_str()).collect();
            assert_eq!(paths, ["pkg/data/a.txt", "pkg/data/b.txt"], "{name}");
            assert_eq!(read_member(&path, "pkg/other.txt").unwrap(), b"o");
            let err = read_member(&path, "pkg/missing").unwrap_err().to_string();
            assert!(err.contains("has no file pkg/missing"), "{err}");
        }
    }

    #[test]
    fn unknown_archive_kinds_are_refused() {
        let err = ArchiveKind::of(Path::new("x.rar")).unwrap_err().to_string();
        assert!(err.contains("neither a zip"), "{err}");
    }
}
