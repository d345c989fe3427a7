//! A model repository on the hub at one revision, fetched into the hub cache: only the files
//! a BERT sentence encoder reads, a model already complete in the cache used without touching
//! the network.

use std::path::{Path, PathBuf};

use mtl_bert::{ModuleEntry, is_plain_relative, pooling_module_dir};

use crate::blob::{BlobFile, BlobHash, BlobSource, fetch_blob, is_commit_hash};
use crate::cache::{RepoCache, link_blob};
use crate::client::{FileError, HubClient, MAX_HUB_REDIRECTS};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::options::HubOptions;
use crate::source::{is_hub_id, is_revision};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubModel {
    /// `owner/name`.
    pub id: String,
    /// Branch, tag or commit.
    pub revision: String,
}

/// One fetch: the model, its client, its cache, its options and observer.
struct Fetch<'o> {
    model: &'o HubModel,
    client: HubClient,
    repo: RepoCache,
    options: &'o HubOptions,
    observer: &'o mut dyn FnMut(Event<'_>),
}

impl HubModel {
    /// `id` at `revision`.
    pub fn new(id: &str, revision: &str) -> Self {
        Self {
            id: id.to_owned(),
            revision: revision.to_owned(),
        }
    }

    /// The URL of `file` at the revision, `{endpoint}/{id}/resolve/{revision}/{file}`, with
    /// the revision's `/` escaped as the hub expects.
    fn url(&self, endpoint: &str, file: &str) -> String {
        let revision = self.revision.replace('/', "%2F");
        format!("{endpoint}/{}/resolve/{revision}/{file}", self.id)
    }

    /// The cached snapshot in `options.cache`, if it has the config, a tokenizer and weights
    /// (fetched last).
    pub fn cached(&self, options: &HubOptions) -> Option<PathBuf> {
        if !is_hub_id(&self.id) || !is_revision(&self.revision) {
            return None;
        }
        let dir = RepoCache::new(&options.cache, &self.id).snapshot_dir(&self.revision)?;
        let complete = [&["config.json"][..], TOKENIZER_FILES, WEIGHT_FILES]
            .iter()
            .all(|names| names.iter().any(|n| dir.join(n).is_file()));
        complete.then_some(dir)
    }

    /// The snapshot directory of the model in the hub cache, downloading what is missing,
    /// reporting to `observer`.
    ///
    /// A snapshot that already has a config, weights and a tokenizer is used as it is, so a
    /// model downloaded once works offline. With `options.offline` nothing else is tried.
    pub fn fetch(
        &self,
        options: &HubOptions,
        observer: &mut dyn FnMut(Event<'_>),
    ) -> Result<PathBuf> {
        // Both become paths in the cache; `ModelSource::parse` checked them for the CLI.
        if !is_hub_id(&self.id) {
            return Err(Error::InvalidHubId {
                id: self.id.clone(),
            });
        }
        if !is_revision(&self.revision) {
            return Err(Error::InvalidRevision {
                revision: self.revision.clone(),
            });
        }
        if let Some(dir) = self.cached(options) {
            observer(Event::Cached {
                id: &self.id,
                revision: &self.revision,
                dir: &dir,
            });
            return Ok(dir);
        }
        if options.offline {
            return Err(Error::Offline {
                id: self.id.clone(),
                revision: self.revision.clone(),
                cache: options.cache.clone(),
            });
        }
        observer(Event::Downloading {
            id: &self.id,
            revision: &self.revision,
            endpoint: &options.endpoint,
            cache: &options.cache,
        });
        let mut fetch = Fetch {
            model: self,
            client: HubClient::new(
                &options.endpoint,
                options.token.clone(),
                &self.id,
                &self.revision,
            ),
            repo: RepoCache::new(&options.cache, &self.id),
            options,
            observer,
        };
        // The config first (its directory is the snapshot), then the small optional files,
        // then the tokenizer and the weights: a snapshot with weights was fetched in full.
        let config = fetch.required(&["config.json"])?;
        let dir = config
            .parent()
            .expect("a snapshot file has a directory")
            .to_path_buf();
        for file in OPTIONAL_FILES {
            fetch.optional(file)?;
        }
        fetch.optional(&pooling_config(&dir))?;
        fetch.required(TOKENIZER_FILES)?;
        fetch.required(WEIGHT_FILES)?;
        Ok(dir)
    }
}

impl Fetch<'_> {
    /// Downloads `name` (from the cache when it is there); `None` when the repository does
    /// not have it.
    fn optional(&mut self, name: &str) -> Result<Option<PathBuf>> {
        if !is_plain_relative(name) {
            return Err(Error::NotPlainRelative {
                name: name.to_owned(),
            });
        }
        if let Some(path) = self
            .repo
            .snapshot_dir(&self.model.revision)
            .map(|dir| dir.join(name))
            && path.is_file()
        {
            return Ok(Some(path));
        }
        match self.download(name) {
            Ok(path) => Ok(Some(path)),
            Err(FileError::NotFound) => Ok(None),
            Err(FileError::Failed(e)) => Err(e),
        }
    }

    /// Downloads the first of `names` that the repository has; an error if it has none.
    fn required(&mut self, names: &[&str]) -> Result<PathBuf> {
        for name in names {
            if let Some(path) = self.optional(name)? {
                return Ok(path);
            }
        }
        let (id, revision) = (self.model.id.clone(), self.model.revision.clone());
        let endpoint = self.client.endpoint.clone();
        let files = names.join(" or ");
        Err(if names.contains(&"config.json") {
            Error::RepoNotFound {
                id,
                revision,
                endpoint,
                files,
            }
        } else {
            Error::MissingFile {
                id,
                revision,
                endpoint,
                files,
            }
        })
    }

    /// Downloads `name` into the cache and returns its path in the snapshot,
    /// `snapshots/COMMIT/NAME`, a link to `blobs/HASH`.
    ///
    /// The commit and etag the hub answers are checked to be hashes before they name anything;
    /// the bytes are verified against the etag before they are kept (see
    /// [`fetch_blob`]). `name` must be a plain relative path.
    fn download(&mut self, name: &str) -> Result<PathBuf, FileError> {
        let client = &self.client;
        let endpoint = client.endpoint.clone();
        let mut url = self.model.url(&endpoint, name);
        let mut response = client
            .get(&url, false, None)
            .map_err(|e| client.classify(*e, &url))?;
        // A renamed repository redirects within the hub (a path without a host).
        for _ in 0..MAX_HUB_REDIRECTS {
            match response.header("Location") {
                Some(path) if (300..400).contains(&response.status()) && path.starts_with('/') => {
                    url = format!("{endpoint}{path}");
                    response = client
                        .get(&url, false, None)
                        .map_err(|e| client.classify(*e, &url))?;
                }
                _ => break,
            }
        }
        let commit = client
            .required_header(&response, "x-repo-commit", &url)?
            .trim()
            .to_owned();
        if !is_commit_hash(&commit) {
            return Err(Error::BadCommit {
                endpoint,
                url,
                commit,
            }
            .into());
        }
        let etag = match response.header("x-linked-etag") {
            Some(etag) => etag,
            None => client.required_header(&response, "etag", &url)?,
        };
        let hash = BlobHash::from_etag(etag).ok_or_else(|| Error::BadEtag {
            endpoint: endpoint.clone(),
            url: url.clone(),
            etag: etag.to_owned(),
        })?;
        let source = if (300..400).contains(&response.status()) {
            // A large file: the bytes are elsewhere, and must be there.
            let location = client.required_header(&response, "Location", &url)?;
            BlobSource {
                url: location.to_owned(),
                storage: true,
                body: None,
            }
        } else {
            BlobSource {
                url: url.clone(),
                storage: false,
                body: Some(response),
            }
        };
        let file = BlobFile {
            url: &url,
            name,
            hash: &hash,
        };
        let blob = fetch_blob(
            client,
            source,
            &file,
            &self.repo.blobs(),
            self.options.max_file_bytes,
            &mut *self.observer,
        )?;
        let pointer = self.repo.pointer(&commit, name);
        link_blob(&blob, &pointer, hash.hex(), name)?;
        self.repo.write_ref(&self.model.revision, &commit)?;
        Ok(pointer)
    }
}

/// The pooling module's config file, as `modules.json` places it (`1_Pooling/config.json` by
/// default), relative to the model directory.
fn pooling_config(dir: &Path) -> String {
    let modules: Vec<ModuleEntry> = std::fs::read_to_string(dir.join("modules.json"))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    format!("{}/config.json", pooling_module_dir(&modules))
}

#[cfg(test)]
mod tests {
    use super::*;

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
