//! `mtl serve` as a process: the official `openai` Python client against it, and a graceful
//! stop on SIGTERM.

use crate::common;

use crate::reference_venv;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{max_abs_diff, tiny_dir};
use mtl_bert::{Backend, EncodeOptions, SentenceEncoder};

/// `mtl serve` on the tiny model and a free port; returns the process and its base URL.
fn serve(extra: &[&str]) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mtl"));
    command
        .args([
            "serve",
            "--port",
            "0",
            "--model",
            tiny_dir().to_str().unwrap(),
        ])
        .args(extra);
    start(command)
}

/// Starts `command` (an `mtl serve`) and waits until it answers `/health`; returns the process
/// and its base URL.
fn start(mut command: Command) -> (Child, String) {
    let mut child = command
        .env_remove("MTL_API_KEY")
        .env_remove("MTL_BACKEND")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let base = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| Some(line.strip_prefix("listening on ")?.trim().to_owned()));
    // Keep draining the logs so the server never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let ready = base.as_ref().is_some_and(|base| {
        (0..600).any(|_| {
            let up = ureq::get(&format!("{base}/health")).call().is_ok();
            if !up {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            up
        })
    });
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        panic!("mtl serve did not become ready within 30 s (listening on: {base:?})");
    }
    (child, base.expect("checked above"))
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().unwrap()
}

const CLIENT: &str = r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused")
texts = json.loads(sys.argv[2])
default = client.embeddings.create(input=texts, model="tiny-bert")
floats = client.embeddings.create(input=texts[0], model="tiny-bert", encoding_format="float")
print(json.dumps({
    "default": [d.embedding for d in default.data],
    "float": floats.data[0].embedding,
    "model": default.model,
    "tokens": default.usage.prompt_tokens,
}))
"#;

#[test]
fn the_official_openai_client_gets_the_sentence_encoders_embeddings() {
    let python = reference_venv::python("openai");
    let (child, base) = serve(&[]);
    let texts = ["the team won the game", "a new phone", "it is a bad day"];
    let output = Command::new(python)
        .args(["-c", CLIENT, &base, &serde_json::to_string(&texts).unwrap()])
        .output()
        .unwrap();
    let status = stop(child);
    assert!(
        output.status.success(),
        "the openai client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        status.success(),
        "mtl serve exited with {status} after SIGTERM"
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let device = Backend::default_compiled().device(0).unwrap();
    let encoder = SentenceEncoder::load(tiny_dir(), &device).unwrap();
    // Unit length, as OpenAI's embeddings always are (the tiny model has no Normalize module).
    let options = EncodeOptions {
        normalize: Some(true),
        ..EncodeOptions::default()
    };
    let expected = encoder.encode(&texts, &options).unwrap();
    let vector = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    let default = answer["default"].as_array().unwrap();
    assert_eq!(default.len(), texts.len());
    for (i, row) in default.iter().enumerate() {
        let difference = max_abs_diff(&vector(row), expected.row(i));
        assert!(difference <= 1e-6, "text {i}: {difference}");
    }
    let difference = max_abs_diff(&vector(&answer["float"]), expected.row(0));
    assert!(difference <= 1e-6, "float format: {difference}");
    assert_eq!(answer["model"], "tiny-bert");
    assert!(answer["tokens"].as_u64().unwrap() > 0);
}

/// `--quantize int8`: `/info` says so (naming the kernel) and the embeddings are the library's
/// int8 ones.
#[test]
fn a_quantised_server_reports_its_precision_and_serves_int8_embeddings() {
    let (child, base) = serve(&["--quantize", "int8"]);
    let info: serde_json::Value = serde_json::from_str(
        &ureq::get(&format!("{base}/info"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    let texts = ["the team won the game", "a new phone"];
    let answer: serde_json::Value = serde_json::from_str(
        &ureq::post(&format!("{base}/embed"))
            .set("content-type", "application/json")
            .send_string(&serde_json::json!({ "inputs": texts, "normalize": false }).to_string())
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    assert!(stop(child).success());
    let precision = info["precision"].as_str().unwrap();
    assert!(precision.starts_with("int8 ("), "{info}");
    let device = Backend::Flex.device(0).unwrap();
    let encoder =
        SentenceEncoder::load_with_precision(tiny_dir(), &device, mtl_bert::Precision::Int8)
            .unwrap();
    let expected = encoder.encode(&texts, &EncodeOptions::default()).unwrap();
    for (i, row) in answer.as_array().unwrap().iter().enumerate() {
        let row: Vec<f32> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let difference = max_abs_diff(&row, expected.row(i));
        assert!(difference <= 1e-6, "text {i}: {difference}");
    }
}

#[test]
fn sigterm_stops_the_server_with_status_0() {
    let (child, base) = serve(&[]);
    let status = stop(child);
    assert!(status.success(), "{status}");
    assert!(
        ureq::get(&format!("{base}/health")).call().is_err(),
        "still answering"
    );
}

/// `mtl_texts_total` in `/metrics`: texts the model thread has taken into a batch.
fn texts_embedded(base: &str) -> f64 {
    let text = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("mtl_texts_total ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no mtl_texts_total in /metrics:\n{text}"))
}

#[test]
fn sigterm_finishes_the_requests_in_flight() {
    let (child, base) = serve(&[]);
    let requests = 4;
    let per_request = 2048;
    let texts: Vec<String> = (0..per_request)
        .map(|i| format!("the team won game {i} after a very long and close match ").repeat(3))
        .collect();
    let body = serde_json::json!({ "inputs": texts }).to_string();
    let status = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..requests)
            .map(|_| {
                scope.spawn(|| {
                    let response = ureq::post(&format!("{base}/embed"))
                        .set("Content-Type", "application/json")
                        .send_string(&body)
                        .unwrap();
                    let status = response.status();
                    let rows: Vec<Vec<f32>> =
                        serde_json::from_str(&response.into_string().unwrap()).unwrap();
                    (status, rows.len())
                })
            })
            .collect();
        // SIGTERM once the model is at work on them, well before it is done.
        let started = std::time::Instant::now();
        let done = loop {
            let done = texts_embedded(&base);
            if done > 0.0 {
                break done;
            }
            assert!(started.elapsed().as_secs() < 60, "nothing embedded in 60 s");
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        let total = (requests * per_request) as f64;
        assert!(
            done < total / 2.0,
            "{done} of {total} texts done before SIGTERM"
        );
        let status = stop(child);
        for client in clients {
            assert_eq!(client.join().unwrap(), (200, per_request));
        }
        status
    });
    assert!(
        status.success(),
        "mtl serve exited with {status} after SIGTERM"
    );
}

#[test]
fn a_public_address_without_an_api_key_is_refused() {
    let output = common::mtl()
        .args(["serve", "--host", "0.0.0.0", "--port", "0"])
        .args(["--model", tiny_dir().to_str().unwrap()])
        .env_remove("MTL_API_KEY")
        .output()
        .unwrap();
    common::assert_fails_with(&output, "needs an API key (--api-key or MTL_API_KEY)");
}

/// Every flag of `mtl serve` can come from the environment (as TEI's do, for containers), and
/// a flag on the command line wins.
#[test]
fn flags_can_come_from_the_environment() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mtl"));
    command
        .args(["serve", "--max-inputs", "3"])
        .env("MTL_PORT", "0")
        .env("MTL_MODEL", tiny_dir())
        .env("MTL_SERVED_MODEL_NAME", "from-the-environment")
        .env("MTL_MAX_INPUTS", "2")
        .env("MTL_MAX_BATCH_TOKENS", "512");
    let (child, base) = start(command);
    let info: serde_json::Value = serde_json::from_str(
        &ureq::get(&format!("{base}/info"))
            .call()
            .unwrap()
            .into_string()
            .unwrap(),
    )
    .unwrap();
    assert!(stop(child).success());
    assert_eq!(info["model"], "from-the-environment", "{info}");
    assert_eq!(info["max_batch_tokens"], 512, "{info}");
    assert_eq!(info["max_inputs"], 3, "the command line wins: {info}");
}

/// A model thread that dies (a panic, as running out of GPU memory raises; injected with the
/// test hook `MTL_SERVE_FAULT_AT_BATCH`): the request in flight gets a 500, and the process
/// stops on its own with a non-zero status, so that a supervisor restarts it.
#[test]
fn a_dead_model_thread_ends_the_process_with_an_error() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mtl"));
    command
        .args([
            "serve",
            "--port",
            "0",
            "--model",
            tiny_dir().to_str().unwrap(),
        ])
        .env("MTL_SERVE_FAULT_AT_BATCH", "1");
    let (mut child, base) = start(command);
    let status = match ureq::post(&format!("{base}/embed"))
        .set("Content-Type", "application/json")
        .send_string(r#"{"inputs": ["the team won"]}"#)
    {
        Ok(response) => response.status(),
        Err(ureq::Error::Status(status, _)) => status,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(status, 500);
    let started = std::time::Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        if started.elapsed().as_secs() > 30 {
            let _ = child.kill();
            panic!("mtl serve went on after its model thread died");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!exit.success(), "{exit}");
}
