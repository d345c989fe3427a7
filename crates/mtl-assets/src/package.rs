//! Packages on the Python and npm registries, fetched with pip's index machinery / `npm pack`.
//!
//! No code of a package ever runs: `pip download` of an sdist would run its `setup.py` (or
//! its build backend, after installing the build requirements from the index) to read its
//! metadata, before anything compared its digest. So for Python, pip only finds the file
//! ([`PIP_FETCH`]: pip's own `PackageFinder`, with the user's index, find-links, proxy and
//! certificate settings) and its HTTP session downloads it, unopened; npm packs with
//! `--ignore-scripts`. The file is then checked against the pinned sha256 before anything
//! uses it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::digest::verify_file;
use crate::error::{Error, Result};

/// The registry a package comes from, and so the client that fetches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registry {
    /// The Python package index, through pip's index machinery ([`PIP_FETCH`], run by
    /// `python3`; `$MTL_PYTHON` overrides the interpreter). pip's configuration applies
    /// (`PIP_INDEX_URL`, `PIP_FIND_LINKS`, `pip.conf`, ...).
    Python,
    /// The npm registry, through `npm pack --ignore-scripts`.
    Npm,
}

/// A pinned package: name, version and the sha256 of the downloaded file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Package {
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
    pub(crate) fn spec(&self) -> String {
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
    pub(crate) fn fetch(&self, cache: &Path) -> Result<PathBuf> {
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
        let staging = mtl_fs::staging_dir(&dir).map_err(|e| Error::io(&dir, e))?;
        download(staging.path())?;
        let file = single_file(staging.path())?.ok_or_else(|| Error::Client {
            command: self.command(staging.path()).join(" "),
            message: "finished without writing exactly one file".into(),
        })?;
        verify_file(&file, self.sha256)?;
        let name = file.file_name().expect("a file has a name").to_owned();
        mtl_fs::replace_dir(staging, &dir).map_err(|e| Error::io(&dir, e))?;
        Ok(dir.join(name))
    }

    /// The client's command line that writes the package file into `into`.
    fn command(&self, into: &Path) -> Vec<String> {
        self.command_with(into, &[])
    }

    /// [`Package::command`], with `pip_options` added to pip's (for Python).
    fn command_with(&self, into: &Path, pip_options: &[String]) -> Vec<String> {
        let into = into.display().to_string();
        match self.registry {
            Registry::Python => {
                let python = std::env::var("MTL_PYTHON").unwrap_or_else(|_| "python3".into());
                [python, "-c".into(), PIP_FETCH.into()]
                    .into_iter()
                    .chain([self.name, self.version, self.sha256].map(String::from))
                    .chain([into])
                    .chain(pip_options.iter().cloned())
                    .collect()
            }
            Registry::Npm => [
                "npm",
                "pack",
                "--silent",
                "--ignore-scripts",
                "--pack-destination",
            ]
            .into_iter()
            .map(String::from)
            .chain([into, self.spec()])
            .collect(),
        }
    }

    fn download_into(&self, into: &Path) -> Result<()> {
        self.run_client(self.command(into), into)
    }

    /// Runs `command` in `into`; its error output's tail becomes the error.
    fn run_client(&self, command: Vec<String>, into: &Path) -> Result<()> {
        let shown = match command.iter().position(|a| a == PIP_FETCH) {
            Some(i) => [
                &command[..i],
                &["<mtl's pip fetch>".to_owned()],
                &command[i + 1..],
            ]
            .concat()
            .join(" "),
            None => command.join(" "),
        };
        let failed = |message: String| Error::Client {
            command: shown.clone(),
            message,
        };
        tracing::info!("fetching {} with {}", self.spec(), command[0]);
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

/// The Python program behind [`Registry::Python`]: `python -c PIP_FETCH NAME VERSION SHA256
/// DIR [PIP_OPTIONS]` writes the file of `NAME==VERSION` into `DIR`, found as `pip download`
/// finds it (pip's option parser, so pip's configuration and environment apply, and its
/// `PackageFinder`, which prefers the file whose index hash is `SHA256`) and downloaded with
/// pip's HTTP session, without unpacking, building or importing anything from it. It uses
/// pip's internal API, unchanged from pip 21.3 to 26.3 (checked); the digest is checked by
/// the caller.
const PIP_FETCH: &str = r#"
import os, sys

def fail(message):
    sys.stderr.write("error: %s\n" % message)
    sys.exit(1)

name, version, sha256, dest = sys.argv[1:5]
try:
    import pip
    from pip._internal.commands import create_command
    from pip._internal.utils.hashes import Hashes
    from pip._vendor.packaging.specifiers import SpecifierSet
except ImportError as error:
    fail("%s cannot import pip (%s): install pip for it, or set MTL_PYTHON to a Python "
         "that has it" % (sys.executable, error))

try:
    command = create_command("download")
    options, _ = command.parse_args(sys.argv[5:])
    if options.cache_dir:
        options.cache_dir = os.path.abspath(os.path.expanduser(options.cache_dir))
    with command.main_context():
        session = command.get_default_session(options)
        finder = command._build_package_finder(options=options, session=session)
        found = finder.find_best_candidate(
            name, SpecifierSet("==" + version), hashes=Hashes({"sha256": [sha256]})
        )
        if found.best_candidate is None:
            fail("pip finds no file of %s==%s (%s)" % (
                name, version, finder.search_scope.get_formatted_locations() or "no index"))
        link = found.best_candidate.link
        filename = link.filename
        if filename.startswith(".") or "/" in filename or "\\" in filename:
            fail("the index names its file of %s==%s %r, which is not a plain file name"
                 % (name, version, filename))
        sys.stderr.write("downloading %s\n" % filename)
        response = session.get(
            link.url_without_fragment, stream=True, headers={"Accept-Encoding": "identity"}
        )
        response.raise_for_status()
        with open(os.path.join(dest, filename), "xb") as out:
            try:
                chunks = response.raw.stream(1 << 20, decode_content=False)
            except AttributeError:  # a local file (find-links), not urllib3
                chunks = iter(lambda: response.raw.read(1 << 20), b"")
            for chunk in chunks:
                out.write(chunk)
except SystemExit:
    raise
except Exception as error:
    fail("with pip %s: %s: %s" % (pip.__version__, type(error).__name__, error))
"#;

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
        let npm = npm.command(Path::new("/d"));
        assert_eq!(npm[..2], ["npm", "pack"]);
        assert!(npm.iter().any(|a| a == "--ignore-scripts"), "{npm:?}");
        // Python: pip only finds and downloads the file (no `pip download`, which builds).
        let python = WHEEL.command_with(Path::new("/d"), &["--no-index".into()]);
        assert_eq!(python[1..3], ["-c", PIP_FETCH]);
        assert_eq!(
            python[3..],
            ["example", "1.0", WHEEL.sha256, "/d", "--no-index"]
        );
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

/// A pip index on the local disk (`--no-index --find-links DIR`) holding one sdist whose build
/// code, `setup.py` or the in-tree backend its `pyproject.toml` names, creates a marker file.
#[cfg(test)]
mod sdist_tests {
    use super::*;

    struct LocalIndex {
        dir: tempfile::TempDir,
        sha256: &'static str,
    }

    impl LocalIndex {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let marker = dir.path().join("MARKER");
            let script = format!(
                "import pathlib\npathlib.Path({:?}).write_text('package code ran')\n",
                marker.display().to_string()
            );
            let files = [
                (
                    "PKG-INFO",
                    "Metadata-Version: 2.1\nName: markerpkg\nVersion: 1.0\n".to_owned(),
                ),
                (
                    "pyproject.toml",
                    "[build-system]\nrequires = []\nbuild-backend = \"marker_backend\"\n\
                     backend-path = [\".\"]\n"
                        .to_owned(),
                ),
                ("marker_backend.py", script.clone()),
                ("setup.py", script),
            ];
            let links = dir.path().join("links");
            std::fs::create_dir(&links).unwrap();
            let archive = links.join("markerpkg-1.0.tar.gz");
            let gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&archive).unwrap(),
                flate2::Compression::default(),
            );
            let mut tar = tar::Builder::new(gz);
            for (name, text) in files {
                let mut header = tar::Header::new_gnu();
                header.set_size(text.len() as u64);
                header.set_mode(0o644);
                header.set_cksum();
                tar.append_data(
                    &mut header,
                    format!("markerpkg-1.0/{name}"),
                    text.as_bytes(),
                )
                .unwrap();
            }
            tar.into_inner().unwrap().finish().unwrap();
            let sha256 = crate::digest::sha256_file(&archive).unwrap().leak();
            Self { dir, sha256 }
        }

        fn package(&self, sha256: &'static str) -> Package {
            Package {
                registry: Registry::Python,
                name: "markerpkg",
                version: "1.0",
                sha256,
            }
        }

        fn pip_options(&self) -> Vec<String> {
            let links = self.dir.path().join("links");
            vec![
                "--no-index".into(),
                "--find-links".into(),
                links.display().to_string(),
            ]
        }

        fn marker(&self) -> PathBuf {
            self.dir.path().join("MARKER")
        }

        fn fetch(&self, package: Package, cache: &Path) -> Result<PathBuf> {
            let options = self.pip_options();
            package.fetch_with(cache, |into| {
                package.run_client(package.command_with(into, &options), into)
            })
        }
    }

    #[test]
    fn an_sdist_is_fetched_without_running_its_code() {
        let index = LocalIndex::new();
        let cache = tempfile::tempdir().unwrap();
        let fetched = index.fetch(index.package(index.sha256), cache.path());
        assert!(!index.marker().exists(), "the sdist's build code ran");
        let file = fetched.unwrap();
        assert_eq!(file.file_name().unwrap(), "markerpkg-1.0.tar.gz");
        crate::digest::verify_file(&file, index.sha256).unwrap();
    }

    #[test]
    fn an_sdist_with_another_hash_is_refused_without_running_its_code() {
        let index = LocalIndex::new();
        let cache = tempfile::tempdir().unwrap();
        let pinned = "0000000000000000000000000000000000000000000000000000000000000000";
        let fetched = index.fetch(index.package(pinned), cache.path());
        assert!(!index.marker().exists(), "the sdist's build code ran");
        let err = fetched.unwrap_err().to_string();
        assert!(err.contains("does not match the pinned"), "{err}");
        let downloads = cache.path().join("downloads");
        assert_eq!(std::fs::read_dir(downloads).unwrap().count(), 0);
    }
}
