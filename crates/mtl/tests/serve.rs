//! `mtl serve` as a process: the official `openai` Python client against it, and a graceful
//! stop on SIGTERM.

mod common;

#[path = "../../../tests/support/reference_venv.rs"]
mod reference_venv;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{max_abs_diff, tiny_dir};
use mtl_bert::{Backend, EncodeOptions, SentenceEncoder};

/// `mtl serve` on the tiny model and a free port; returns the process and its base URL.
fn serve(extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mtl"))
        .args([
            "serve",
            "--port",
            "0",
            "--model",
            tiny_dir().to_str().unwrap(),
        ])
        .args(extra)
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
    let expected = encoder.encode(&texts, &EncodeOptions::default()).unwrap();
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
