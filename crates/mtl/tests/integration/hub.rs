//! `--model OWNER/NAME` downloads from a Hugging Face hub: here mtl-hub's stand-in
//! (`mtl_hub::stand_in`, a small server on 127.0.0.1 in the hub's URL layout, with its headers,
//! etags and redirects). `HF_ENDPOINT` points the binary at it and `HF_HOME` at a temporary
//! cache. A hostile variant answers paths in its headers or tampered content. The library's
//! own behaviour (resuming, size cap, offline, HF_HUB_CACHE) is tested in crates/mtl-hub.

use crate::common;

use std::path::PathBuf;
use std::process::Output;

use common::{
    assert_fails_with, assert_rows_close, assert_succeeded, library_embeddings, mtl, parse_jsonl,
    tiny_dir,
};
use mtl_bert::EncodeOptions;
use mtl_hub::stand_in::{FakeHub, Tamper, commit, git_blob_sha1};

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

/// A hub cache two directories below a temporary root, `root/a/b/home`: hf-hub's files lie
/// six levels below the root (`home/hub/models--OWNER--NAME/blobs/FILE`), so `../` six times
/// from there climbs to the root, where the test looks for what escaped.
struct Sandbox {
    root: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("a/b/home")).unwrap();
        Self { root }
    }

    fn home(&self) -> PathBuf {
        self.root.path().join("a/b/home")
    }

    /// The repository's directory in the cache.
    fn repo(&self, id: &str) -> PathBuf {
        self.home()
            .join("hub")
            .join(format!("models--{}", id.replace('/', "--")))
    }

    /// `name` six levels up from a file of the repository's cache: in the root.
    fn climb(name: &str) -> String {
        format!("{}{name}", "../".repeat(6))
    }

    /// Asserts that nothing but the cache's ancestors exists under the root, and that nothing
    /// called `name` exists beside the root (in its parent, the system's temporary directory).
    fn assert_nothing_outside_the_cache(&self, name: &str) {
        let root = self.root.path();
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path == self.home() {
                    continue;
                }
                if path.is_dir() && !path.is_symlink() && self.home().starts_with(&path) {
                    stack.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        assert!(found.is_empty(), "written outside the cache: {found:?}");
        let beside = root.parent().unwrap().join(name);
        assert!(
            beside.symlink_metadata().is_err(),
            "written outside the cache: {}",
            beside.display()
        );
    }

    /// Asserts that every blob in the repository's cache is named by the hash of its content
    /// (no partial or unverified file is kept), and returns the files of its snapshots.
    fn assert_blobs_verified(&self, id: &str) -> Vec<String> {
        let repo = self.repo(id);
        if let Ok(entries) = std::fs::read_dir(repo.join("blobs")) {
            for entry in entries {
                let path = entry.unwrap().path();
                let bytes = std::fs::read(&path).unwrap();
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                assert!(
                    name == git_blob_sha1(&bytes) || name == mtl_assets::sha256_bytes(&bytes),
                    "blob {} does not hold what its name says",
                    path.display()
                );
            }
        }
        let mut files = Vec::new();
        if let Ok(snapshots) = std::fs::read_dir(repo.join("snapshots")) {
            for snapshot in snapshots {
                for file in std::fs::read_dir(snapshot.unwrap().path()).unwrap() {
                    files.push(file.unwrap().file_name().to_string_lossy().into_owned());
                }
            }
        }
        files
    }
}

/// Runs `mtl embed` on the hostile `hub` for `model` (at `revision`) with the sandbox's cache.
fn embed_from(sandbox: &Sandbox, hub: &FakeHub, model: &str, revision: Option<&str>) -> Output {
    let mut command = mtl();
    command
        .env("HF_HOME", sandbox.home())
        .env("HF_ENDPOINT", &hub.url)
        .args(["embed", "--model", model]);
    if let Some(revision) = revision {
        command.args(["--revision", revision]);
    }
    command.arg("text").output().unwrap()
}

#[test]
fn an_etag_that_is_a_path_is_refused_and_nothing_is_written_outside_the_cache() {
    let repo = sentence_transformers_repo();
    let sandbox = Sandbox::new();
    let absolute = sandbox.root.path().join("absolute-etag");
    for etag in [
        format!("\"{}\"", Sandbox::climb("escaped-etag")),
        format!("\"{}\"", absolute.display()),
        "\"not-a-hash\"".to_owned(),
    ] {
        let hub = FakeHub::hostile(&[("test-org/tiny-st", repo.path())], Tamper::Etag(etag));
        let output = embed_from(&sandbox, &hub, "test-org/tiny-st", None);
        assert_fails_with(&output, "neither a git blob sha1");
        sandbox.assert_nothing_outside_the_cache("escaped-etag");
        assert!(sandbox.assert_blobs_verified("test-org/tiny-st").is_empty());
    }
}

#[test]
fn a_revision_that_climbs_out_of_the_cache_is_refused_before_any_request() {
    let repo = sentence_transformers_repo();
    let sandbox = Sandbox::new();
    let hub = FakeHub::start(&[("test-org/tiny-st", repo.path())], true);
    let absolute = sandbox.root.path().join("absolute-ref");
    for revision in [
        Sandbox::climb("escaped-ref"),
        "refs/../../../../../../../escaped-ref".to_owned(),
        absolute.display().to_string(),
        "..".to_owned(),
        "main/".to_owned(),
        "main\\..\\x".to_owned(),
    ] {
        let output = embed_from(&sandbox, &hub, "test-org/tiny-st", Some(&revision));
        assert_fails_with(&output, "is not a branch, tag or commit name");
        sandbox.assert_nothing_outside_the_cache("escaped-ref");
    }
    assert_eq!(hub.requests(), Vec::<String>::new());
    // A branch with a slash, as the hub's pull-request refs have, is fine.
    let output = embed_from(&sandbox, &hub, "test-org/tiny-st", Some("refs/pr/1"));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        std::fs::read_to_string(sandbox.repo("test-org/tiny-st").join("refs/refs/pr/1")).unwrap(),
        commit("refs%2Fpr%2F1")
    );
    sandbox.assert_nothing_outside_the_cache("escaped-ref");
}

#[test]
fn a_commit_header_that_is_a_path_is_refused_and_nothing_is_written_outside_the_cache() {
    let repo = sentence_transformers_repo();
    let sandbox = Sandbox::new();
    let absolute = sandbox.root.path().join("absolute-commit");
    for commit in [
        Sandbox::climb("escaped-commit"),
        absolute.display().to_string(),
        "main".to_owned(),
        format!("{}/x", "a".repeat(40)),
    ] {
        let hub = FakeHub::hostile(&[("test-org/tiny-st", repo.path())], Tamper::Commit(commit));
        let output = embed_from(&sandbox, &hub, "test-org/tiny-st", None);
        assert_fails_with(&output, "is not a commit hash");
        sandbox.assert_nothing_outside_the_cache("escaped-commit");
        assert!(sandbox.assert_blobs_verified("test-org/tiny-st").is_empty());
        assert!(!sandbox.repo("test-org/tiny-st").join("refs").exists());
    }
}

#[test]
fn content_that_does_not_match_the_hubs_hash_is_refused_and_not_kept() {
    let repo = sentence_transformers_repo();
    // config.json has a git sha1 etag, the weights (behind a redirect) a sha256 one.
    for (file, hash) in [
        ("config.json", "git blob sha1"),
        ("model.safetensors", "sha256"),
    ] {
        let sandbox = Sandbox::new();
        let hub = FakeHub::hostile(&[("test-org/tiny-st", repo.path())], Tamper::Content(file));
        let output = embed_from(&sandbox, &hub, "test-org/tiny-st", None);
        assert_fails_with(
            &output,
            &format!("{file}: the downloaded bytes have {hash}"),
        );
        assert_fails_with(&output, "but the hub's etag is");
        let kept = sandbox.assert_blobs_verified("test-org/tiny-st");
        assert!(!kept.iter().any(|f| f == file), "{file} kept: {kept:?}");
        sandbox.assert_nothing_outside_the_cache(file);
    }
}

#[test]
fn train_takes_a_hub_id_as_embed_does() {
    let repo = sentence_transformers_repo();
    let hub = FakeHub::start(&[("test-org/tiny-st", repo.path())], true);
    let home = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("mood.csv");
    let mut rows = String::from("text,label\n");
    for i in 0..40 {
        let (text, label) = if i % 2 == 0 {
            ("the good cat", "good")
        } else {
            ("a bad dog", "bad")
        };
        rows += &format!("{text} {i},{label}\n");
    }
    std::fs::write(&file, rows).unwrap();
    let run = data.path().join("run");
    let output = mtl()
        .env("HF_HOME", home.path())
        .env("HF_ENDPOINT", &hub.url)
        .args(["train", "--model", "test-org/tiny-st", "--revision", "main"])
        .args([
            "--task",
            &format!("mood={}", file.display()),
            "--epochs",
            "1",
        ])
        .args(["--output", run.to_str().unwrap()])
        .output()
        .unwrap();
    assert_succeeded(&output);
    assert!(run.join("best/mtl.json").is_file());
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("model = \"test-org/tiny-st\""), "{config}");
    assert!(config.contains("revision = \"main\""), "{config}");
}
