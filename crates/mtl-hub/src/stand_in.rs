//! A stand-in for the Hugging Face hub, for tests: a small server on 127.0.0.1 that serves
//! model directories in the hub's URL layout, `{url}/{owner}/{name}/resolve/{revision}/{file}`,
//! with the hub's headers (`x-repo-commit`, `etag`, `x-linked-etag`), byte ranges
//! (`Range: bytes=N-`, answered 206 with `Content-Range`), and large files (`*.safetensors`)
//! behind a redirect to `{url}/blobs/{owner}/{name}/{file}`, as the hub serves them. Its etags
//! are the hub's: the git blob sha1 of a small file, the sha256 of a large (LFS) one. A hostile
//! variant answers paths in its headers or tampered content.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tiny_http::{Header, Response, Server, StatusCode};

/// How the stand-in lies, for the tests of a hostile hub.
#[derive(Debug, Clone, Default)]
pub enum Tamper {
    /// An honest hub.
    #[default]
    None,
    /// This value (quotes included) as the etag and linked etag of every file.
    Etag(String),
    /// This value as the commit of every file.
    Commit(String),
    /// The file's bytes changed (still loadable), under the etag of the true bytes.
    Content(&'static str),
}

/// How the stand-in behaves; `Default` is an honest hub.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Whether it sends the hub's headers (false: a server that is not a hub).
    pub hub_like: bool,
    /// How it lies.
    pub tamper: Tamper,
    /// Answers a `Range` request with the whole file (200), as a server without ranges does.
    pub ignore_range: bool,
    /// Sends bodies chunked, without `Content-Length`.
    pub chunked: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            hub_like: true,
            tamper: Tamper::None,
            ignore_range: false,
            chunked: false,
        }
    }
}

/// A request as the stand-in received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The path and query.
    pub url: String,
    /// Its `Range` header, if any.
    pub range: Option<String>,
    /// Its `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// A stand-in for the hub, serving its repositories (id -> directory) until dropped.
pub struct FakeHub {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
    received: Arc<Mutex<Vec<Received>>>,
    /// Its address, `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub url: String,
}

impl FakeHub {
    /// An honest hub; `hub_like: false` leaves out the hub's headers (a server that is not a
    /// hub).
    pub fn start(repos: &[(&str, &Path)], hub_like: bool) -> Self {
        Self::with(
            repos,
            Behaviour {
                hub_like,
                ..Behaviour::default()
            },
        )
    }

    /// A hub that lies as `tamper` says.
    pub fn hostile(repos: &[(&str, &Path)], tamper: Tamper) -> Self {
        Self::with(
            repos,
            Behaviour {
                tamper,
                ..Behaviour::default()
            },
        )
    }

    /// A hub that behaves as `behaviour` says.
    pub fn with(repos: &[(&str, &Path)], behaviour: Behaviour) -> Self {
        let server = Arc::new(Server::http("127.0.0.1:0").expect("a local port"));
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let url = format!("http://127.0.0.1:{port}");
        let repos: HashMap<String, PathBuf> = repos
            .iter()
            .map(|(id, dir)| (id.to_string(), dir.to_path_buf()))
            .collect();
        let received = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (server, received, url) = (server.clone(), received.clone(), url.clone());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    let header = |name: &'static str| {
                        request
                            .headers()
                            .iter()
                            .find(|h| h.field.equiv(name))
                            .map(|h| h.value.as_str().to_owned())
                    };
                    received.lock().expect("not poisoned").push(Received {
                        url: request.url().to_owned(),
                        range: header("Range"),
                        authorization: header("Authorization"),
                    });
                    let response = respond(&request, &repos, &url, &behaviour);
                    let _ = request.respond(response);
                }
            })
        };
        Self {
            server,
            thread: Some(thread),
            received,
            url,
        }
    }

    /// The paths (and queries) requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.received().into_iter().map(|r| r.url).collect()
    }

    /// The requests so far, with their headers of interest.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("not poisoned").clone()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

fn digest(bytes: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The hub's etag of a small file: its git blob id, the sha1 of `blob <len>\0<bytes>`.
pub fn git_blob_sha1(bytes: &[u8]) -> String {
    let mut hasher = sha1_smol::Sha1::new();
    hasher.update(format!("blob {}\0", bytes.len()).as_bytes());
    hasher.update(bytes);
    hasher.digest().to_string()
}

/// The hub's etag of a large (LFS) file: its sha256.
pub fn sha256(bytes: &[u8]) -> String {
    mtl_assets::sha256_bytes(bytes)
}

/// The commit the stand-in resolves `revision` to (as it appears in the URL, `/` escaped as
/// `%2F`): 40 hex digits, one per revision.
pub fn commit(revision: &str) -> String {
    digest(revision.as_bytes()).repeat(3)[..40].to_owned()
}

type Reply = Response<std::io::Cursor<Vec<u8>>>;

fn respond(
    request: &tiny_http::Request,
    repos: &HashMap<String, PathBuf>,
    url: &str,
    behaviour: &Behaviour,
) -> Reply {
    let not_found = |code: &str| {
        Response::from_string(format!("{code}\n"))
            .with_status_code(404)
            .with_header(header("X-Error-Code", code))
    };
    let hub_like = behaviour.hub_like;
    let path = request.url().split('?').next().unwrap_or("");
    // `/blobs/{owner}/{name}/{file}`: where weights redirect to, like the hub's CDN.
    let (redirected, rest) = match path.strip_prefix("/blobs/") {
        Some(rest) => (true, rest.to_owned()),
        None => (false, path.trim_start_matches('/').to_owned()),
    };
    let parts: Vec<&str> = rest.splitn(if redirected { 3 } else { 5 }, '/').collect();
    let (repo, revision, file) = match (redirected, parts.as_slice()) {
        (true, [owner, name, file]) => (format!("{owner}/{name}"), "", *file),
        (false, [owner, name, "resolve", revision, file]) => {
            (format!("{owner}/{name}"), *revision, *file)
        }
        _ => return not_found("InvalidPath"),
    };
    let Some(dir) = repos.get(&repo) else {
        return not_found("RepositoryNotFound");
    };
    if file.split('/').any(|c| c == ".." || c.is_empty()) {
        return not_found("InvalidPath");
    }
    let Ok(mut bytes) = std::fs::read(dir.join(file)) else {
        return not_found("EntryNotFound");
    };
    let lfs = file.ends_with(".safetensors");
    let mut etag = if lfs {
        format!("\"{}\"", sha256(&bytes))
    } else {
        format!("\"{}\"", git_blob_sha1(&bytes))
    };
    let mut commit = commit(revision);
    match &behaviour.tamper {
        Tamper::None => {}
        Tamper::Etag(value) => etag = value.clone(),
        Tamper::Commit(value) => commit = value.clone(),
        // Changed so that the file still loads: a weight's last byte flipped, a space added.
        Tamper::Content(name) if *name == file && lfs => {
            if let Some(last) = bytes.last_mut() {
                *last ^= 1;
            }
        }
        Tamper::Content(name) if *name == file => bytes.push(b' '),
        Tamper::Content(_) => {}
    }
    if !redirected && lfs {
        // Large files: a redirect that carries the commit and the blob's etag.
        let mut response = Response::from_string("")
            .with_status_code(302)
            .with_header(header("Location", &format!("{url}/blobs/{repo}/{file}")));
        if hub_like {
            response.add_header(header("X-Repo-Commit", &commit));
            response.add_header(header("X-Linked-Etag", &etag));
        }
        return response;
    }
    let range = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .and_then(|h| h.value.as_str().strip_prefix("bytes=").map(str::to_owned))
        .filter(|_| !behaviour.ignore_range);
    let len = bytes.len();
    let (status, body, content_range) = match range.as_deref().and_then(|r| r.split_once('-')) {
        Some((start, end)) => {
            let start: usize = start.parse().unwrap_or(0);
            if start >= len {
                return Response::from_string("")
                    .with_status_code(416)
                    .with_header(header("Content-Range", &format!("bytes */{len}")));
            }
            let end: usize = end.parse().unwrap_or(len - 1).min(len - 1);
            (
                206,
                bytes[start..=end].to_vec(),
                Some(format!("bytes {start}-{end}/{len}")),
            )
        }
        None => (200, bytes, None),
    };
    let size = (!behaviour.chunked).then_some(body.len());
    let mut response = Response::new(
        StatusCode(status),
        Vec::new(),
        std::io::Cursor::new(body),
        size,
        None,
    )
    // With its size known, always as the hub sends it: with `Content-Length` (tiny_http
    // otherwise chunks bodies of 32 KiB and more).
    .with_chunked_threshold(if behaviour.chunked { 0 } else { usize::MAX });
    if let Some(content_range) = content_range {
        response.add_header(header("Content-Range", &content_range));
    }
    if hub_like && !redirected {
        response.add_header(header("X-Repo-Commit", &commit));
        response.add_header(header("ETag", &etag));
    }
    response
}
