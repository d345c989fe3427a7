//! A file's bytes in `blobs/`: named by the hash the hub's etag gives, verified before they
//! take that name, resumed from `blobs/HASH.incomplete` after an interruption, capped in size.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::client::HubClient;
use crate::error::{Error, Result};
use crate::event::Event;

/// The hash a hub etag names: the git blob id (sha1 of `blob LEN\0` and the bytes) of a file
/// kept in git, the sha256 of one kept in LFS. It names the file in `blobs/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BlobHash {
    /// 40 lower-case hex digits.
    GitSha1(String),
    /// 64 lower-case hex digits.
    Sha256(String),
}

impl BlobHash {
    /// Reads an etag header (`"HASH"`, weak `W/"HASH"`, or bare); `None` unless the hash is
    /// 40 or 64 lower-case hex digits.
    pub(crate) fn from_etag(etag: &str) -> Option<Self> {
        let etag = etag.trim();
        let hash = etag.strip_prefix("W/").unwrap_or(etag).trim_matches('"');
        match hash.len() {
            40 if is_lower_hex(hash) => Some(Self::GitSha1(hash.to_owned())),
            64 if is_lower_hex(hash) => Some(Self::Sha256(hash.to_owned())),
            _ => None,
        }
    }

    /// The hex digits.
    pub(crate) fn hex(&self) -> &str {
        match self {
            Self::GitSha1(hex) | Self::Sha256(hex) => hex,
        }
    }

    /// The kind of hash, in words.
    fn kind(&self) -> &'static str {
        match self {
            Self::GitSha1(_) => "git blob sha1",
            Self::Sha256(_) => "sha256",
        }
    }

    /// The same kind of hash of the file at `path`.
    fn of_file(&self, path: &Path) -> std::io::Result<String> {
        match self {
            Self::GitSha1(_) => {
                let mut file = File::open(path)?;
                let len = file.metadata()?.len();
                let mut hasher = sha1_smol::Sha1::new();
                hasher.update(format!("blob {len}\0").as_bytes());
                let mut buffer = vec![0u8; 1 << 20];
                loop {
                    let n = file.read(&mut buffer)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buffer[..n]);
                }
                Ok(hasher.digest().to_string())
            }
            Self::Sha256(_) => mtl_fs::sha256_file(path),
        }
    }
}

/// Whether `s` is all lower-case hex digits (and not empty).
fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is a git commit hash, as the hub's `x-repo-commit` must be.
pub(crate) fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && is_lower_hex(s)
}

/// Where a file's bytes come from: the hub's own answer (`body`, when it carried them) or a
/// GET of `url` (the storage a large file redirects to, or the hub again to resume).
pub(crate) struct BlobSource {
    /// The URL to GET the bytes from (with a `Range` to resume).
    pub url: String,
    /// Whether `url` is the storage of large files (redirects followed, no token).
    pub storage: bool,
    /// The hub's answer when it holds the bytes (a small file), used when nothing is resumed.
    pub body: Option<ureq::Response>,
}

/// What a download is of, for messages and events.
pub(crate) struct BlobFile<'a> {
    /// The hub URL of the file, named in errors.
    pub url: &'a str,
    /// The file's name in the repository.
    pub name: &'a str,
    /// What its bytes must hash to.
    pub hash: &'a BlobHash,
}

/// The partial download of `hash` in `blobs`.
pub(crate) fn incomplete_path(blobs: &Path, hash: &BlobHash) -> PathBuf {
    blobs.join(format!("{}.incomplete", hash.hex()))
}

/// The verified blob `blobs/HASH`, downloaded from `source` unless it is already there.
///
/// The bytes go to `blobs/HASH.incomplete` (continued with a `Range` request when an earlier
/// download left one; started over when the server answers 200), and are renamed to
/// `blobs/HASH` only once the whole file hashes to `HASH`. A file larger than `max_bytes` is
/// refused (before the download when the server says its size). When the connection breaks,
/// the partial file is kept to resume from; on any other failure it is removed. The partial
/// file is locked while this process writes it: a second process waits, then finds the blob
/// done (or the partial file to continue).
pub(crate) fn fetch_blob(
    client: &HubClient,
    mut source: BlobSource,
    file: &BlobFile<'_>,
    blobs: &Path,
    max_bytes: u64,
    observer: &mut dyn FnMut(Event<'_>),
) -> Result<PathBuf> {
    std::fs::create_dir_all(blobs).map_err(Error::io("creating", blobs))?;
    let blob = blobs.join(file.hash.hex());
    if blob.symlink_metadata().is_ok_and(|m| m.is_file())
        && file.hash.of_file(&blob).ok().as_deref() == Some(file.hash.hex())
    {
        return Ok(blob);
    }
    let partial = incomplete_path(blobs, file.hash);
    // Only a regular file of ours is continued; anything else in its place is removed.
    match partial.symlink_metadata() {
        Ok(meta) if meta.is_dir() => {
            std::fs::remove_dir_all(&partial).map_err(Error::io("removing", &partial))?
        }
        Ok(meta) if !meta.is_file() => {
            std::fs::remove_file(&partial).map_err(Error::io("removing", &partial))?
        }
        _ => {}
    }
    let mut out = lock_partial(&partial)?;
    // An error before any byte arrived leaves no empty partial file behind.
    let download = || -> Result<PathBuf> {
        // Another process may have finished the blob while this one waited for the lock.
        if blob.symlink_metadata().is_ok_and(|m| m.is_file())
            && file.hash.of_file(&blob).ok().as_deref() == Some(file.hash.hex())
        {
            remove_partial(&partial);
            return Ok(blob);
        }
        let mut offset = out
            .metadata()
            .map_err(Error::io("reading", &partial))?
            .len();
        if offset > max_bytes {
            offset = 0;
        }
        let response = if offset > 0 {
            observer(Event::Resuming {
                file: file.name,
                from: offset,
            });
            source.body = None;
            match client.get(&source.url, source.storage, Some(offset)) {
                Ok(response) => response,
                // The partial file is as long as the file or longer: start over.
                Err(e) if matches!(*e, ureq::Error::Status(416, _)) => {
                    offset = 0;
                    client
                        .get(&source.url, source.storage, None)
                        .map_err(|e| client.storage_error(*e, file.url))?
                }
                Err(e) => return Err(client.storage_error(*e, file.url)),
            }
        } else {
            match source.body.take() {
                Some(body) => body,
                None => client
                    .get(&source.url, source.storage, None)
                    .map_err(|e| client.storage_error(*e, file.url))?,
            }
        };
        let length = response
            .header("Content-Length")
            .and_then(|n| n.trim().parse::<u64>().ok());
        let total = if offset > 0 && response.status() == 206 {
            let range = response.header("Content-Range").unwrap_or("").to_owned();
            if !range.starts_with(&format!("bytes {offset}-")) {
                return Err(Error::BadRange {
                    url: file.url.to_owned(),
                    from: offset,
                    content_range: range,
                });
            }
            range
                .rsplit_once('/')
                .and_then(|(_, total)| total.parse::<u64>().ok())
                .or(length.map(|n| n + offset))
        } else {
            // A 200: the whole file, from the start.
            offset = 0;
            length
        };
        if let Some(size) = total.filter(|&size| size > max_bytes) {
            remove_partial(&partial);
            return Err(Error::TooLarge {
                url: file.url.to_owned(),
                size: Some(size),
                max: max_bytes,
            });
        }
        if offset > 0 {
            out.seek(SeekFrom::End(0)).map(drop)
        } else {
            out.set_len(0).and_then(|()| out.rewind())
        }
        .map_err(Error::io("writing", &partial))?;
        let received = copy_capped(
            response.into_reader(),
            &mut out,
            offset,
            max_bytes,
            |bytes| {
                observer(Event::Progress {
                    file: file.name,
                    bytes,
                    total,
                })
            },
        );
        let bytes = match received {
            Ok(bytes) => bytes,
            Err(CopyError::Read(source, bytes)) => {
                return Err(Error::Interrupted {
                    url: file.url.to_owned(),
                    bytes,
                    source,
                });
            }
            Err(CopyError::Write(source)) => {
                remove_partial(&partial);
                return Err(Error::Io {
                    action: "writing",
                    path: partial.clone(),
                    source,
                });
            }
        };
        if bytes > max_bytes {
            remove_partial(&partial);
            return Err(Error::TooLarge {
                url: file.url.to_owned(),
                size: None,
                max: max_bytes,
            });
        }
        out.flush()
            .and_then(|()| out.sync_all())
            .map_err(Error::io("writing", &partial))?;
        let found = file
            .hash
            .of_file(&partial)
            .map_err(Error::io("reading", &partial))?;
        if found != file.hash.hex() {
            remove_partial(&partial);
            return Err(Error::HashMismatch {
                url: file.url.to_owned(),
                kind: file.hash.kind(),
                found,
                expected: file.hash.hex().to_owned(),
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644))
                .map_err(Error::io("setting the mode of", &partial))?;
        }
        std::fs::rename(&partial, &blob).map_err(Error::io("moving the download to", &blob))?;
        Ok(blob)
    };
    let result = download();
    if result.is_err() && partial.metadata().is_ok_and(|m| m.len() == 0) {
        remove_partial(&partial);
    }
    result
}

/// Opens (creating it if missing) and locks `partial` for this process alone: two processes
/// fetching the same file take turns, the second finding the blob done or the partial file as
/// the first left it.
fn lock_partial(partial: &Path) -> Result<File> {
    for _ in 0..10 {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(partial)
            .map_err(Error::io("opening", partial))?;
        file.lock().map_err(Error::io("locking", partial))?;
        // The process that held the lock may have renamed or removed the file meanwhile.
        if same_file(&file, partial) {
            return Ok(file);
        }
    }
    Err(Error::Io {
        action: "locking",
        path: partial.to_path_buf(),
        source: std::io::Error::other("the file was replaced ten times while waiting for it"),
    })
}

/// Whether `file` is the file at `path` still.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), path.symlink_metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Whether `file` is the file at `path` still (where it cannot be told: yes).
#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> bool {
    true
}

/// Removes a partial download that must not be resumed (best effort: it is only ever ours).
fn remove_partial(partial: &Path) {
    let _ = std::fs::remove_file(partial);
}

/// Why [`copy_capped`] stopped early.
enum CopyError {
    /// Reading the body failed, after this many bytes in all.
    Read(std::io::Error, u64),
    /// Writing the file failed.
    Write(std::io::Error),
}

/// Copies `reader` to `out`, reporting the bytes in all (`offset` plus those copied) after
/// each chunk, and stops once more than `max` bytes in all arrived; returns the bytes in all.
fn copy_capped(
    mut reader: impl Read,
    out: &mut impl Write,
    offset: u64,
    max: u64,
    mut progress: impl FnMut(u64),
) -> std::result::Result<u64, CopyError> {
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = offset;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(bytes),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e, bytes)),
        };
        out.write_all(&buffer[..n]).map_err(CopyError::Write)?;
        bytes += n as u64;
        progress(bytes);
        if bytes > max {
            return Ok(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_must_be_hashes() {
        let sha1 = "ce013625030ba8dba906f756967f9e9ca394464a";
        let sha256 = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
        for etag in [
            sha1.to_owned(),
            format!("\"{sha1}\""),
            format!("W/\"{sha1}\""),
        ] {
            assert_eq!(
                BlobHash::from_etag(&etag),
                Some(BlobHash::GitSha1(sha1.into()))
            );
        }
        assert_eq!(
            BlobHash::from_etag(&format!("\"{sha256}\"")),
            Some(BlobHash::Sha256(sha256.into()))
        );
        for etag in [
            "",
            "\"\"",
            "\"../../../tmp/x\"",
            "/etc/passwd",
            &format!("{}/x", &sha256[..62]),
            &sha1.to_uppercase(),
            &sha1[..39],
            &format!("{sha1}0"),
            &format!("../{}", &sha1[..37]),
        ] {
            assert_eq!(BlobHash::from_etag(etag), None, "{etag}");
        }
        assert!(is_commit_hash(sha1));
        for commit in ["main", "", sha256, &format!("../{}", &sha1[3..])] {
            assert!(!is_commit_hash(commit), "{commit}");
        }
    }

    #[test]
    fn blob_hashes_are_gits_and_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"hello\n").unwrap();
        // `printf 'hello\n' | git hash-object --stdin` and `sha256sum`.
        let sha1 = BlobHash::GitSha1(String::new()).of_file(&file).unwrap();
        assert_eq!(sha1, "ce013625030ba8dba906f756967f9e9ca394464a");
        let sha256 = BlobHash::Sha256(String::new()).of_file(&file).unwrap();
        assert_eq!(
            sha256,
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
    }

    #[test]
    fn copies_stop_past_the_cap() {
        let data = vec![7u8; 200_000];
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let n = copy_capped(&data[..], &mut out, 10, 1_000_000, |b| seen.push(b)).ok();
        assert_eq!(n, Some(200_010));
        assert_eq!(out.len(), 200_000);
        assert_eq!(seen.last(), Some(&200_010));
        let mut out = Vec::new();
        let n = copy_capped(&data[..], &mut out, 0, 1000, |_| {}).ok();
        assert!(n.is_some_and(|n| n > 1000), "{n:?}");
        assert!(out.len() < data.len());
    }
}
