//! The hub download as a library, against `mtl_hub::stand_in` (a local server in the hub's
//! URL layout): the cache layout, cached reuse, offline, resuming a partial file, the size cap,
//! hostile headers and content, and where the cache is. Options are set per test, never
//! through the process environment.

use std::path::{Path, PathBuf};

use mtl_hub::stand_in::{Behaviour, FakeHub, Tamper, commit, git_blob_sha1, sha256};
use mtl_hub::{Error, Event, HubOptions, ModelSource};

const ID: &str = "test-org/tiny";

/// A repository with the files a sentence encoder reads; the weights are large enough to come
/// in several chunks.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let files: [(&str, Vec<u8>); 5] = [
        ("config.json", br#"{"hidden_size": 32}"#.to_vec()),
        ("tokenizer.json", br#"{"model": {}}"#.to_vec()),
        (
            "model.safetensors",
            (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect(),
        ),
        (
            "modules.json",
            br#"[{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#
                .to_vec(),
        ),
        ("1_Pooling/config.json", br#"{"pooling_mode_cls_token": true}"#.to_vec()),
    ];
    for (name, bytes) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    dir
}

fn options(hub: &FakeHub, cache: &Path) -> HubOptions {
    HubOptions {
        endpoint: hub.url.clone(),
        cache: cache.to_path_buf(),
        token: None,
        offline: false,
        max_file_bytes: mtl_hub::DEFAULT_MAX_FILE_BYTES,
    }
}

fn source() -> ModelSource {
    ModelSource::Hub {
        id: ID.into(),
        revision: "main".into(),
    }
}

/// Resolves the model, returning the result and the events as lines.
fn resolve(options: &HubOptions) -> (Result<PathBuf, Error>, Vec<String>) {
    let mut events = Vec::new();
    let result = source().resolve_with(options, &mut |event: Event<'_>| {
        events.push(match event {
            Event::Progress { file, total, .. } => format!("progress {file} {total:?}"),
            other => other.to_string(),
        })
    });
    (result, events)
}

fn repo_dir(cache: &Path) -> PathBuf {
    cache.join("models--test-org--tiny")
}

fn weights_blob(cache: &Path, repo: &Path) -> PathBuf {
    let bytes = std::fs::read(repo.join("model.safetensors")).unwrap();
    repo_dir(cache).join("blobs").join(sha256(&bytes))
}

/// The names in `blobs/`, sorted.
fn blobs(cache: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_dir(cache).join("blobs"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Asserts that the snapshot holds the repository's files, each a relative link to a blob
/// named by its hash.
fn assert_snapshot_matches(dir: &Path, repo: &Path) {
    for name in [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
        "modules.json",
        "1_Pooling/config.json",
    ] {
        let expected = std::fs::read(repo.join(name)).unwrap();
        assert_eq!(std::fs::read(dir.join(name)).unwrap(), expected, "{name}");
        let target = std::fs::read_link(dir.join(name)).unwrap();
        assert!(target.is_relative(), "{}", target.display());
        let blob = target.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(
            blob == git_blob_sha1(&expected) || blob == sha256(&expected),
            "{name} links to {blob}"
        );
    }
}

#[test]
fn a_hub_model_downloads_into_the_cache_layout_and_reports_its_steps() {
    let repo = repo();
    let hub = FakeHub::start(&[(ID, repo.path())], true);
    let cache = tempfile::tempdir().unwrap();
    let (dir, events) = resolve(&options(&hub, cache.path()));
    let dir = dir.unwrap();
    assert_eq!(
        dir,
        repo_dir(cache.path())
            .join("snapshots")
            .join(commit("main"))
    );
    assert_snapshot_matches(&dir, repo.path());
    assert_eq!(
        std::fs::read_to_string(repo_dir(cache.path()).join("refs/main")).unwrap(),
        commit("main")
    );
    assert!(!blobs(cache.path()).iter().any(|b| b.contains("incomplete")));
    assert_eq!(
        events[0],
        format!(
            "model {ID}@main: downloading from {} into {}",
            hub.url,
            cache.path().display()
        )
    );
    assert!(
        events.contains(&"progress model.safetensors Some(300000)".to_owned()),
        "{events:?}"
    );
}

#[test]
fn a_cached_model_is_used_without_the_network_and_offline() {
    let repo = repo();
    let hub = FakeHub::start(&[(ID, repo.path())], true);
    let cache = tempfile::tempdir().unwrap();
    let first = resolve(&options(&hub, cache.path())).0.unwrap();
    let requests = hub.requests().len();
    let mut unreachable = options(&hub, cache.path());
    unreachable.endpoint = "http://127.0.0.1:1".into();
    let (again, events) = resolve(&unreachable);
    assert_eq!(again.unwrap(), first);
    assert_eq!(
        events,
        [format!("model {ID}@main: cached in {}", first.display())]
    );
    let mut offline = options(&hub, cache.path());
    offline.offline = true;
    assert_eq!(resolve(&offline).0.unwrap(), first);
    assert_eq!(hub.requests().len(), requests);
}

#[test]
fn offline_refuses_a_model_missing_from_the_cache_without_a_request() {
    let repo = repo();
    let hub = FakeHub::start(&[(ID, repo.path())], true);
    let cache = tempfile::tempdir().unwrap();
    let mut offline = options(&hub, cache.path());
    offline.offline = true;
    let error = resolve(&offline).0.unwrap_err();
    assert!(matches!(error, Error::Offline { .. }), "{error}");
    assert!(error.to_string().contains("HF_HUB_OFFLINE"), "{error}");
    assert_eq!(hub.requests(), Vec::<String>::new());
}

/// Leaves `bytes` as the weights' partial download, as an interrupted download would.
fn leave_partial(cache: &Path, repo: &Path, bytes: &[u8]) -> PathBuf {
    let blob = weights_blob(cache, repo);
    let partial = blob.with_extension("incomplete");
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, bytes).unwrap();
    partial
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let repo = repo();
    let hub = FakeHub::start(&[(ID, repo.path())], true);
    let cache = tempfile::tempdir().unwrap();
    let weights = std::fs::read(repo.path().join("model.safetensors")).unwrap();
    let partial = leave_partial(cache.path(), repo.path(), &weights[..100_000]);
    let (dir, events) = resolve(&options(&hub, cache.path()));
    assert_snapshot_matches(&dir.unwrap(), repo.path());
    assert!(!partial.exists());
    assert!(
        events.contains(
            &"model.safetensors: resuming the interrupted download at byte 100000".to_owned()
        ),
        "{events:?}"
    );
    let ranged: Vec<_> = hub
        .received()
        .into_iter()
        .filter(|r| r.range.is_some())
        .collect();
    assert_eq!(ranged.len(), 1, "{ranged:?}");
    assert!(
        ranged[0]
            .url
            .starts_with("/blobs/test-org/tiny/model.safetensors"),
        "{ranged:?}"
    );
    assert_eq!(ranged[0].range.as_deref(), Some("bytes=100000-"));
}

#[test]
fn a_server_that_ignores_the_range_makes_the_download_start_over() {
    let repo = repo();
    let hub = FakeHub::with(
        &[(ID, repo.path())],
        Behaviour {
            ignore_range: true,
            ..Behaviour::default()
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let weights = std::fs::read(repo.path().join("model.safetensors")).unwrap();
    let partial = leave_partial(cache.path(), repo.path(), &weights[..100_000]);
    let dir = resolve(&options(&hub, cache.path())).0.unwrap();
    assert_snapshot_matches(&dir, repo.path());
    assert!(!partial.exists());
}

#[test]
fn a_partial_file_with_wrong_bytes_fails_the_hash_and_is_removed() {
    let repo = repo();
    let hub = FakeHub::start(&[(ID, repo.path())], true);
    let cache = tempfile::tempdir().unwrap();
    let partial = leave_partial(cache.path(), repo.path(), &[0u8; 1000]);
    let error = resolve(&options(&hub, cache.path())).0.unwrap_err();
    assert!(matches!(error, Error::HashMismatch { .. }), "{error}");
    assert!(!partial.exists());
    assert!(!weights_blob(cache.path(), repo.path()).exists());
    // The next try downloads the whole file.
    let dir = resolve(&options(&hub, cache.path())).0.unwrap();
    assert_snapshot_matches(&dir, repo.path());
}

#[test]
fn a_file_over_the_size_cap_is_refused_and_nothing_of_it_kept() {
    let repo = repo();
    for chunked in [false, true] {
        let hub = FakeHub::with(
            &[(ID, repo.path())],
            Behaviour {
                chunked,
                ..Behaviour::default()
            },
        );
        let cache = tempfile::tempdir().unwrap();
        let mut capped = options(&hub, cache.path());
        capped.max_file_bytes = 200_000;
        let error = resolve(&capped).0.unwrap_err();
        match &error {
            // Announced: refused before the download; chunked: stopped past the cap.
            Error::TooLarge { size, max, .. } => {
                assert_eq!(*max, 200_000);
                assert_eq!(*size, (!chunked).then_some(300_000), "{error}");
            }
            other => panic!("{other}"),
        }
        assert!(
            error.to_string().contains("MTL_HUB_MAX_FILE_BYTES"),
            "{error}"
        );
        let weights = weights_blob(cache.path(), repo.path());
        assert!(!weights.exists());
        assert!(!weights.with_extension("incomplete").exists());
        // The small files came, and they are within the cap.
        assert!(blobs(cache.path()).len() >= 2, "{:?}", blobs(cache.path()));
    }
}

#[test]
fn hostile_etags_commits_and_content_are_refused_and_nothing_unverified_kept() {
    let repo = repo();
    let cases = [
        (
            Tamper::Etag("\"../../../escaped\"".into()),
            "neither a git blob sha1",
        ),
        (
            Tamper::Etag("\"not-a-hash\"".into()),
            "neither a git blob sha1",
        ),
        (
            Tamper::Commit("../../escaped".into()),
            "is not a commit hash",
        ),
        (
            Tamper::Content("config.json"),
            "the downloaded bytes have git blob sha1",
        ),
        (
            Tamper::Content("model.safetensors"),
            "the downloaded bytes have sha256",
        ),
    ];
    for (tamper, message) in cases {
        let hub = FakeHub::hostile(&[(ID, repo.path())], tamper.clone());
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let error = resolve(&options(&hub, &cache)).0.unwrap_err().to_string();
        assert!(error.contains(message), "{tamper:?}: {error}");
        for blob in blobs(&cache) {
            let bytes = std::fs::read(repo_dir(&cache).join("blobs").join(&blob)).unwrap();
            assert!(
                blob == git_blob_sha1(&bytes) || blob == sha256(&bytes),
                "{tamper:?}: blob {blob} does not hold what its name says"
            );
        }
        let outside: Vec<_> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "cache")
            .collect();
        assert!(outside.is_empty(), "{tamper:?}: {outside:?}");
    }
}

#[test]
fn hf_hub_cache_wins_over_hf_home_and_the_token_goes_to_the_hub() {
    let repo = repo();
    let hub = FakeHub::start(&[(ID, repo.path())], true);
    let home = tempfile::tempdir().unwrap();
    let hub_cache = tempfile::tempdir().unwrap();
    let vars = [
        ("HF_HOME", home.path().to_str().unwrap().to_owned()),
        (
            "HF_HUB_CACHE",
            hub_cache.path().to_str().unwrap().to_owned(),
        ),
        ("HF_ENDPOINT", hub.url.clone()),
        ("HF_TOKEN", "hf_secret".to_owned()),
    ];
    let options = HubOptions::from_vars(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    });
    let dir = resolve(&options).0.unwrap();
    assert!(dir.starts_with(hub_cache.path()), "{}", dir.display());
    assert!(!home.path().join("hub").exists());
    let received = hub.received();
    let config = received
        .iter()
        .find(|r| r.url.ends_with("/resolve/main/config.json"))
        .unwrap();
    assert_eq!(config.authorization.as_deref(), Some("Bearer hf_secret"));
}

#[test]
fn downloads_of_the_same_model_at_once_take_turns_and_all_succeed() {
    let repo = repo();
    let hub = FakeHub::start(&[(ID, repo.path())], true);
    let cache = tempfile::tempdir().unwrap();
    let options = options(&hub, cache.path());
    let dirs: Vec<PathBuf> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| resolve(&options).0.unwrap()))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for dir in &dirs {
        assert_snapshot_matches(dir, repo.path());
    }
    let blobs = blobs(cache.path());
    assert!(!blobs.iter().any(|b| b.contains("incomplete")), "{blobs:?}");
    assert_eq!(blobs.len(), 5, "{blobs:?}");
}
