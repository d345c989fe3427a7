//! The server with the clients TEI and OpenAI users have: `huggingface_hub`'s
//! `InferenceClient` (`feature_extraction` at the server's URL and at `/embed`,
//! `sentence_similarity`, `text_classification` on a one-task model) and the `openai` client,
//! from the reference Python environment (`scripts/requirements.txt` pins both). Their
//! answers equal the library's (`SentenceEncoder`, `MultiTaskClassifier`: what `mtl embed` and
//! `mtl predict` compute) within 1e-6.

use crate::common;

use crate::reference_venv;

use std::process::Command;

use common::compare::max_abs_diff;
use common::fixtures::tiny_dir;
use common::*;
use mtl_bert::SentenceEncoder;
use mtl_model::MultiTaskClassifier;
use mtl_serve::ServeConfig;
use serde_json::Value;

/// Calls both servers with each client and prints what they answered, as JSON.
const CLIENTS: &str = r#"
import json, sys
from huggingface_hub import InferenceClient
from openai import OpenAI

base, classifier, texts = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
out = {}
# InferenceClient(model=URL) posts {"inputs": ..., "parameters": {...}} to that URL.
out["root"] = InferenceClient(model=base).feature_extraction(texts[0]).tolist()
embed = InferenceClient(model=base + "/embed")
out["embed"] = embed.feature_extraction(texts[0]).tolist()
out["embed_raw"] = embed.feature_extraction(
    texts[0], normalize=False, truncate=True, truncation_direction="Right"
).tolist()
out["similarity"] = InferenceClient(model=base + "/similarity").sentence_similarity(
    texts[0], other_sentences=texts[1:]
)
# TEI answers one string with [{label, score}, ...], most probable first; this client version
# returns that list's first element (as it does against TEI itself).
for name, url, top_k in [
    ("classify_root", classifier, None),
    ("classify", classifier + "/predict", None),
    ("classify_top", classifier + "/predict", 1),
]:
    top = InferenceClient(model=url).text_classification(texts[0], top_k=top_k)
    out[name] = [top.label, top.score]

openai = OpenAI(base_url=base + "/v1", api_key="unused")
default = openai.embeddings.create(input=texts, model="tiny-bert")  # base64 underneath
out["openai"] = [d.embedding for d in default.data]
short = openai.embeddings.create(
    input=texts[0], model="tiny-bert", encoding_format="float", dimensions=8, user="u"
)
out["openai_short"] = short.data[0].embedding
out["openai_model"] = default.model
out["models"] = [m.id for m in openai.models.list()]
print(json.dumps(out))
"#;

fn assert_close(name: &str, actual: &[f32], expected: &[f32]) {
    assert_eq!(actual.len(), expected.len(), "{name}: lengths differ");
    let difference = max_abs_diff(actual, expected);
    assert!(difference <= 1e-6, "{name}: differs by {difference}");
}

#[test]
fn huggingface_hub_and_openai_clients_get_the_librarys_answers() {
    let python = reference_venv::python("huggingface_hub, openai, numpy");
    let saved = tempfile::tempdir().unwrap();
    let one_task = saved.path().join("one-task");
    save_one_task_model(&one_task);
    let embedder = Server::start(ServeConfig::new(tiny_dir(), device()));
    let classifier_server = Server::start(ServeConfig::new(&one_task, device()));
    let texts = texts();
    let output = Command::new(python)
        .args([
            "-c",
            CLIENTS,
            &embedder.url(""),
            &classifier_server.url(""),
            &serde_json::to_string(&texts).unwrap(),
        ])
        // The clients call the two local servers only (a URL as `model` needs no hub; its
        // offline mode would refuse even these).
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN")
        .env("HF_HUB_DISABLE_TELEMETRY", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the clients failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();

    let encoder = SentenceEncoder::load(tiny_dir(), &device()).unwrap();
    let normalised = expected(&encoder, &texts, true);
    let raw = expected(&encoder, &texts, false);
    assert_close(
        "feature_extraction at /",
        &vector(&answer["root"][0]),
        &normalised[0],
    );
    assert_close(
        "feature_extraction at /embed",
        &vector(&answer["embed"][0]),
        &normalised[0],
    );
    assert_close("normalize=False", &vector(&answer["embed_raw"][0]), &raw[0]);
    let cosines: Vec<f32> = normalised[1..]
        .iter()
        .map(|row| normalised[0].iter().zip(row).map(|(a, b)| a * b).sum())
        .collect();
    assert_close(
        "sentence_similarity",
        &vector(&answer["similarity"]),
        &cosines,
    );

    let openai = answer["openai"].as_array().unwrap();
    assert_eq!(openai.len(), texts.len());
    for (i, row) in openai.iter().enumerate() {
        assert_close(&format!("openai text {i}"), &vector(row), &normalised[i]);
    }
    let first_eight = &raw[0][..8];
    let length = first_eight.iter().map(|v| v * v).sum::<f32>().sqrt();
    let short: Vec<f32> = first_eight.iter().map(|v| v / length).collect();
    assert_close(
        "openai dimensions=8",
        &vector(&answer["openai_short"]),
        &short,
    );
    assert_eq!(answer["openai_model"], "tiny-bert");
    assert_eq!(answer["models"], serde_json::json!(["tiny-bert"]));

    let classifier = MultiTaskClassifier::load(&one_task, &device()).unwrap();
    let p = &classifier.predict(&texts[..1], None, 8).unwrap()[0][0];
    let mut labels: Vec<(&str, f32)> = ["negative", "positive"]
        .into_iter()
        .zip(p.probabilities.iter().copied())
        .collect();
    labels.sort_by(|a, b| b.1.total_cmp(&a.1));
    let (label, score) = labels[0];
    for name in ["classify_root", "classify", "classify_top"] {
        assert_eq!(answer[name][0], label, "{name}: {}", answer[name]);
        let got = answer[name][1].as_f64().unwrap() as f32;
        assert!((got - score).abs() <= 1e-6, "{name}: {got} vs {score}");
    }
}
