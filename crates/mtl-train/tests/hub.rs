//! `--model OWNER/NAME` downloads from a Hugging Face hub: here a small server on 127.0.0.1
//! that serves model directories in the hub's URL layout, `{endpoint}/{repo}/resolve/{revision}/
//! {file}`, with the headers `hf-hub` reads (`x-repo-commit`, `etag`, `x-linked-etag`,
//! `Content-Range` for its one-byte metadata request) and the weights behind a redirect, as
//! the hub serves large files. `HF_ENDPOINT` points the binary at it and `HF_HOME` at a
//! temporary cache.

mod common;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use common::{
    assert_fails_with, assert_rows_close, library_embeddings, mtl, parse_jsonl, tiny_dir,
};
use mtl_bert::EncodeOptions;
use tiny_http::{Header, Response, Server};

/// A stand-in for the hub, serving `repos` (id -> directory) until dropped.
struct FakeHub {
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
    requests: Arc<Mutex<Vec<String>>>,
    url: String,
}

impl FakeHub {
    /// `hub_like: false` leaves out the hub's headers (a server that is not a hub).
    fn start(repos: &[(&str, &Path)], hub_like: bool) -> Self {
        let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let repos: HashMap<String, PathBuf> = repos
            .iter()
            .map(|(id, dir)| (id.to_string(), dir.to_path_buf()))
            .collect();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (server, requests, url) = (server.clone(), requests.clone(), url.clone());
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    requests.lock().unwrap().push(request.url().to_owned());
                    let response = respond(&request, &repos, &url, hub_like);
                    let _ = request.respond(response);
                }
            })
        };
        Self {
            server,
            thread: Some(thread),
            requests,
            url,
        }
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).unwrap()
}

fn digest(bytes: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// The commit a revision resolves to: 40 hex digits, one per revision.
fn commit(revision: &str) -> String {
    digest(revision.as_bytes()).repeat(3)[..40].to_owned()
}

type Reply = Response<std::io::Cursor<Vec<u8>>>;

fn respond(
    request: &tiny_http::Request,
    repos: &HashMap<String, PathBuf>,
    url: &str,
    hub_like: bool,
) -> Reply {
    let not_found = |code: &str| {
        Response::from_string(format!("{code}\n"))
            .with_status_code(404)
            .with_header(header("X-Error-Code", code))
    };
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
    let Ok(bytes) = std::fs::read(dir.join(file)) else {
        return not_found("EntryNotFound");
    };
    let etag = format!("\"{}\"", digest(&bytes));
    if !redirected && file.ends_with(".safetensors") {
        // Large files: a redirect that carries the commit and the blob's etag.
        let mut response = Response::from_string("")
            .with_status_code(302)
            .with_header(header("Location", &format!("{url}/blobs/{repo}/{file}")));
        if hub_like {
            response.add_header(header("X-Repo-Commit", &commit(revision)));
            response.add_header(header("X-Linked-Etag", &etag));
        }
        return response;
    }
    let range = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .and_then(|h| h.value.as_str().strip_prefix("bytes=").map(str::to_owned));
    let mut response = match range {
        Some(range) => {
            let (start, end) = range.split_once('-').unwrap();
            let start: usize = start.parse().unwrap();
            let end: usize = end.parse().unwrap_or(bytes.len() - 1).min(bytes.len() - 1);
            Response::from_data(bytes[start..=end].to_vec())
                .with_status_code(206)
                .with_header(header(
                    "Content-Range",
                    &format!("bytes {start}-{end}/{}", bytes.len()),
                ))
        }
        None => Response::from_data(bytes),
    };
    if hub_like && !redirected {
        response.add_header(header("X-Repo-Commit", &commit(revision)));
        response.add_header(header("ETag", &etag));
    }
    response
}

/// The tiny model as a sentence-transformers repository: CLS pooling, normalised, 16 tokens
/// (none of which the bare model directory says), so the result shows these files arrived.
fn sentence_transformers_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ] {
        std::fs::copy(tiny_dir().join(file), dir.path().join(file)).unwrap();
    }
    std::fs::write(
        dir.path().join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
 {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
 {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sentence_bert_config.json"),
        r#"{"max_seq_length": 16, "do_lower_case": false}"#,
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
    std::fs::write(
        dir.path().join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 32, "pooling_mode_cls_token": true,
 "pooling_mode_mean_tokens": false, "pooling_mode_max_tokens": false}"#,
    )
    .unwrap();
    dir
}

fn texts() -> Vec<String> {
    vec![
        "the cat sat on the mat".into(),
        "".into(),
        "what a long long long long long long long long long long long long long text".into(),
    ]
}

fn embed_rows(output: &std::process::Output) -> Vec<Vec<f32>> {
    assert!(output.status.success(), "{output:?}");
    parse_jsonl(&output.stdout)
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

#[test]
fn hub_id_downloads_into_the_hf_cache_and_works_offline_afterwards() {
    let repo = sentence_transformers_repo();
    let hub = FakeHub::start(&[("test-org/tiny-st", repo.path())], true);
    let home = tempfile::tempdir().unwrap();
    let texts = texts();
    let expected = library_embeddings(repo.path(), &texts, &EncodeOptions::default());

    let output = mtl()
        .env("HF_HOME", home.path())
        .env("HF_ENDPOINT", &hub.url)
        .args(["embed", "--model", "test-org/tiny-st"])
        .args(&texts)
        .output()
        .unwrap();
    assert_rows_close(&embed_rows(&output), &expected, 1e-6);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("(dim 32, pooling cls, normalize true, max 16 tokens)"),
        "{stderr}"
    );

    // hf-hub's standard layout: refs/main names the commit, snapshots/<commit>/ holds the files.
    let cached = home.path().join("hub/models--test-org--tiny-st");
    let main = std::fs::read_to_string(cached.join("refs/main")).unwrap();
    assert_eq!(main, commit("main"));
    let snapshot = cached.join("snapshots").join(&main);
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        assert!(snapshot.join(file).is_file(), "{file} not in the snapshot");
    }
    let requests = hub.requests();
    assert!(
        requests
            .iter()
            .any(|r| r == "/test-org/tiny-st/resolve/main/config.json"),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/blobs/test-org/tiny-st/model.safetensors")),
        "{requests:?}"
    );
    // An optional file the repository lacks is a 404, which is fine.
    assert!(
        requests
            .iter()
            .any(|r| r.ends_with("/special_tokens_map.json")),
        "{requests:?}"
    );

    // Cached: no hub needed any more.
    let output = mtl()
        .env("HF_HOME", home.path())
        .env("HF_ENDPOINT", "http://127.0.0.1:1")
        .args(["embed", "--model", "test-org/tiny-st"])
        .args(&texts)
        .output()
        .unwrap();
    assert_rows_close(&embed_rows(&output), &expected, 1e-6);
    assert!(String::from_utf8_lossy(&output.stderr).contains("cached in"));
}

#[test]
fn revision_and_vocab_only_tokenizer_are_fetched() {
    // A bare BERT repository with vocab.txt and no tokenizer.json.
    let repo = tempfile::tempdir().unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer_config.json",
        "vocab.txt",
    ] {
        std::fs::copy(tiny_dir().join(file), repo.path().join(file)).unwrap();
    }
    let hub = FakeHub::start(&[("test-org/tiny-vocab", repo.path())], true);
    let home = tempfile::tempdir().unwrap();
    let texts = texts();
    let output = mtl()
        .env("HF_HOME", home.path())
        .env("HF_ENDPOINT", &hub.url)
        .args([
            "embed",
            "--model",
            "test-org/tiny-vocab",
            "--revision",
            "v1.0",
        ])
        .args(&texts)
        .output()
        .unwrap();
    let expected = library_embeddings(repo.path(), &texts, &EncodeOptions::default());
    assert_rows_close(&embed_rows(&output), &expected, 1e-6);
    let requests = hub.requests();
    assert!(
        requests.iter().all(|r| !r.contains("/resolve/main/")),
        "{requests:?}"
    );
    assert!(
        requests
            .iter()
            .any(|r| r == "/test-org/tiny-vocab/resolve/v1.0/vocab.txt"),
        "{requests:?}"
    );
    let cached = home.path().join("hub/models--test-org--tiny-vocab");
    assert_eq!(
        std::fs::read_to_string(cached.join("refs/v1.0")).unwrap(),
        commit("v1.0")
    );
}

#[test]
fn hub_errors_say_what_is_wrong_and_what_to_do() {
    let repo = tempfile::tempdir().unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(tiny_dir().join(file), repo.path().join(file)).unwrap();
    }
    let hub = FakeHub::start(&[("test-org/no-weights", repo.path())], true);
    let not_hub = FakeHub::start(&[("test-org/tiny", &tiny_dir())], false);
    let home = tempfile::tempdir().unwrap();
    let cases = [
        (
            hub.url.as_str(),
            "test-org/missing",
            "test-org/missing@main not found on",
        ),
        (
            hub.url.as_str(),
            "test-org/no-weights",
            "has no model.safetensors or pytorch_model.bin",
        ),
        (
            "http://127.0.0.1:1",
            "test-org/tiny",
            "cannot reach the Hugging Face hub at http://127.0.0.1:1",
        ),
        (
            not_hub.url.as_str(),
            "test-org/tiny",
            "does not answer like a Hugging Face hub",
        ),
    ];
    for (endpoint, model, message) in cases {
        let output = mtl()
            .env("HF_HOME", home.path())
            .env("HF_ENDPOINT", endpoint)
            .args(["embed", "--model", model, "text"])
            .output()
            .unwrap();
        assert_fails_with(&output, message);
        if endpoint.ends_with(":1") {
            assert_fails_with(&output, "Offline alternatives");
            assert_fails_with(&output, "cargo xtask fetch-model");
        }
    }
}
