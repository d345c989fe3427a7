//! What the server's integration tests share: a server on loopback, HTTP calls, the
//! encoder's expected embeddings, and the saved multi-task models they serve.
#![allow(dead_code)]

#[path = "../../../../tests/support/compare.rs"]
pub mod compare;
#[path = "../../../../tests/support/fixtures.rs"]
pub mod fixtures;

use std::path::Path;
use std::sync::mpsc;

use compare::max_abs_diff;
use fixtures::tiny_dir;
use mtl_bert::{Backend, EncodeOptions, SentenceEncoder};
use mtl_model::{MtlConfig, MultiTaskClassifier, TaskConfig};
use mtl_serve::ServeConfig;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A server on a free loopback port, stopped (gracefully) when dropped.
pub struct Server {
    base: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<(), mtl_serve::Error>>>,
}

impl Server {
    pub fn start(config: ServeConfig) -> Self {
        let (address, bound) = mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                address.send(listener.local_addr().unwrap()).unwrap();
                mtl_serve::serve(config, listener, async {
                    let _ = stopped.await;
                })
                .await
            })
        });
        let base = format!("http://{}", bound.recv().unwrap());
        let server = Self {
            base,
            stop: Some(stop),
            thread: Some(thread),
        };
        for _ in 0..600 {
            if server.get("/health").0 == 200 {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the server was not ready within 30 s");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        answer(ureq::get(&self.url(path)).call())
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        answer(
            ureq::post(&self.url(path))
                .set("Content-Type", "application/json")
                .send_string(body),
        )
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let (status, text) = self.post(path, &body.to_string());
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{path} answered {status} with no JSON ({e}): {text}"));
        (status, value)
    }

    /// POSTs a JSON body of `length` bytes from one thread while reading the response on
    /// another (the server may answer, and close, before the body is all sent); returns the
    /// whole response.
    pub fn raw_post(&self, path: &str, length: usize) -> String {
        use std::io::{Read, Write};
        let address = self.base.trim_start_matches("http://").to_owned();
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: {length}\r\nConnection: close\r\n\r\n"
        );
        let sender = std::thread::spawn(move || {
            let mut body = b"{\"inputs\": [\"".to_vec();
            body.resize(length - 3, b'a');
            body.extend(b"\"]}");
            let _ = writer.write_all(head.as_bytes());
            let _ = writer.write_all(&body);
        });
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let _ = sender.join();
        String::from_utf8_lossy(&response).into_owned()
    }

    /// Stops the server and returns how `serve` ended.
    pub fn stop(mut self) -> Result<(), mtl_serve::Error> {
        let _ = self.stop.take().unwrap().send(());
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A sample's value in `/metrics` (`name` with its labels, e.g. `mtl_batch_size_count`).
pub fn metric(server: &Server, name: &str) -> f64 {
    let (status, text) = server.get("/metrics");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} is not in /metrics:\n{text}"))
}

/// Waits until the model thread has embedded a text since `before` texts (a request is being
/// worked on), for at most 60 s.
pub fn wait_for_model_work(server: &Server, before: f64) {
    let started = std::time::Instant::now();
    while metric(server, "mtl_texts_total") <= before {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the model embedded nothing in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// `n` texts of the tiny model's longest kind (about 60 tokens), numbered.
pub fn long_texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("the team won game {i} after a very long and close match ").repeat(3))
        .collect()
}

pub fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match result {
        Ok(r) => (r.status(), r.into_string().unwrap()),
        Err(ureq::Error::Status(status, r)) => (status, r.into_string().unwrap()),
        Err(e) => panic!("request failed: {e}"),
    }
}

pub fn device() -> mtl_bert::burn::prelude::Device {
    Backend::default_compiled().device(0).unwrap()
}

pub fn texts() -> Vec<String> {
    [
        "the team won the game",
        "a new phone from the market",
        "it is a bad day",
        "the",
        "play win win team good great new tech phone the of to",
    ]
    .map(String::from)
    .to_vec()
}

/// `encoder`'s embeddings of `texts`, with `normalize`.
pub fn expected(encoder: &SentenceEncoder, texts: &[String], normalize: bool) -> Vec<Vec<f32>> {
    let options = EncodeOptions {
        normalize: Some(normalize),
        ..EncodeOptions::default()
    };
    let embeddings = encoder.encode(texts, &options).unwrap();
    embeddings.rows().map(<[f32]>::to_vec).collect()
}

/// A JSON list of numbers as f32 values (panics on anything else).
pub fn vector(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

pub fn rows(value: &Value) -> Vec<Vec<f32>> {
    value.as_array().unwrap().iter().map(vector).collect()
}

/// `/embed` of `texts` (not normalised) answers `encoder`'s embeddings.
pub fn assert_embeds_unnormalised(server: &Server, encoder: &SentenceEncoder, texts: &[String]) {
    let (status, body) = server.post_json("/embed", &json!({"inputs": texts, "normalize": false}));
    assert_eq!(status, 200, "{body}");
    assert_rows_close(&rows(&body), &expected(encoder, texts, false));
}

pub fn assert_rows_close(actual: &[Vec<f32>], expected: &[Vec<f32>]) {
    assert_eq!(actual.len(), expected.len());
    for (a, e) in actual.iter().zip(expected) {
        assert_eq!(a.len(), e.len());
        let difference = max_abs_diff(a, e);
        assert!(difference <= 1e-6, "embeddings differ by {difference}");
    }
}

/// An error in TEI's shape (`{"error": "...", "error_type": "..."}`) with this status and
/// `message` in its text.
pub fn assert_error(status: u16, body: &Value, expected_status: u16, message: &str) {
    assert_eq!(status, expected_status, "{body}");
    let text = body["error"].as_str().unwrap_or_default();
    assert!(text.contains(message), "{message:?} not in {body}");
    assert!(body["error_type"].is_string(), "{body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
}

/// An error in OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`) with this
/// status and `message` in its text.
pub fn assert_openai_error(status: u16, body: &Value, expected_status: u16, message: &str) {
    assert_eq!(status, expected_status, "{body}");
    let text = body["error"]["message"].as_str().unwrap_or_default();
    assert!(text.contains(message), "{message:?} not in {body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    for key in ["param", "code"] {
        assert!(body["error"].get(key).is_some(), "no {key}: {body}");
    }
}

/// A two-task model with seeded heads on the tiny encoder, saved in `dir`.
pub fn save_two_task_model(dir: &Path) {
    let config = MtlConfig::new(vec![
        TaskConfig::new("topic", &["sport", "tech", "world"]),
        TaskConfig::new("mood", &["negative", "positive"]),
    ]);
    MultiTaskClassifier::from_pretrained(tiny_dir(), config, 7, &device())
        .unwrap()
        .save(dir)
        .unwrap();
}

/// A one-task model (`mood`: negative, positive) with seeded heads on the tiny encoder, saved
/// in `dir`.
pub fn save_one_task_model(dir: &Path) {
    let config = MtlConfig::new(vec![TaskConfig::new("mood", &["negative", "positive"])]);
    MultiTaskClassifier::from_pretrained(tiny_dir(), config, 11, &device())
        .unwrap()
        .save(dir)
        .unwrap();
}
