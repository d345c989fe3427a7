//! TEI's routes in TEI's shapes, field by field, over HTTP: `POST /` by model kind, `/embed`'s
//! `normalize`, `truncate`, `truncation_direction`, `prompt_name`, `dimensions` and
//! `parameters`, `/similarity`, `/predict` on a one-task model (string, pair, batch,
//! `raw_scores`, `top_k`), `/tokenize`, `/decode`, `/rerank`, unknown fields, and OpenAI's
//! `/embeddings` alias and `/v1/models`. Values are compared with the library's own
//! (`SentenceEncoder`, `MultiTaskClassifier`), as `mtl embed` and `mtl predict` compute them.

use crate::common;

use common::compare::max_abs_diff;
use common::fixtures::tiny_dir;
use common::*;
use mtl_bert::SentenceEncoder;
use mtl_model::MultiTaskClassifier;
use mtl_serve::ServeConfig;
use serde_json::{Value, json};

fn norm(row: &[f32]) -> f32 {
    row.iter().map(|v| v * v).sum::<f32>().sqrt()
}

fn unit(row: &[f32]) -> Vec<f32> {
    let n = norm(row);
    row.iter().map(|v| v / n).collect()
}

#[test]
fn embed_honours_every_tei_field() {
    let server = Server::start(ServeConfig::new(tiny_dir(), device()));
    let encoder = SentenceEncoder::load(tiny_dir(), &device()).unwrap();
    let texts = texts();
    let raw = expected(&encoder, &texts, false);
    let normalised = expected(&encoder, &texts, true);

    // `POST /` on an embedding model is `/embed`; `GET /` is the health check.
    let (status, body) = server.post_json("/", &json!({"inputs": texts}));
    assert_eq!(status, 200, "{body}");
    assert_rows_close(&rows(&body), &normalised);
    assert_eq!(server.get("/").0, 200);

    // dimensions: the first N values, then unit length when normalize is on.
    let (status, body) = server.post_json("/embed", &json!({"inputs": texts, "dimensions": 8}));
    assert_eq!(status, 200, "{body}");
    let short: Vec<Vec<f32>> = raw.iter().map(|r| unit(&r[..8])).collect();
    assert_rows_close(&rows(&body), &short);
    let (_, body) = server.post_json(
        "/embed",
        &json!({"inputs": texts, "dimensions": 8, "normalize": false}),
    );
    let cut: Vec<Vec<f32>> = raw.iter().map(|r| r[..8].to_vec()).collect();
    assert_rows_close(&rows(&body), &cut);
    for bad in [0, 33] {
        let (status, body) =
            server.post_json("/embed", &json!({"inputs": "the team", "dimensions": bad}));
        assert_error(status, &body, 422, "dimensions");
        assert_eq!(body["error_type"], "Validation");
    }

    // `parameters` (what InferenceClient sends) is honoured; a field in both places is a 422.
    let (status, body) = server.post_json(
        "/embed",
        &json!({"inputs": texts, "parameters": {"normalize": false}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_rows_close(&rows(&body), &raw);
    let (status, body) = server.post_json(
        "/embed",
        &json!({"inputs": "a", "normalize": true, "parameters": {"normalize": false}}),
    );
    assert_error(status, &body, 422, "`normalize` is given both");

    // truncation_direction: Left keeps a long text's end, Right its beginning.
    let max = encoder.tokenizer().max_length();
    let tail = "team game phone";
    let long = format!("{}{tail}", "win ".repeat(3 * max));
    let kept_end = format!("{}{tail}", "win ".repeat(max - 2 - 3));
    let kept_start = "win ".repeat(max - 2);
    let (_, tokens) = server.post_json("/tokenize", &json!({"inputs": [&kept_end, &kept_start]}));
    assert_eq!(tokens[0].as_array().unwrap().len(), max, "{tokens}");
    assert_eq!(tokens[1].as_array().unwrap().len(), max, "{tokens}");
    let pieces = [kept_end, kept_start];
    let ends = expected(&encoder, &pieces, true);
    for (direction, row) in [("left", &ends[0]), ("Left", &ends[0]), ("right", &ends[1])] {
        let (status, body) = server.post_json(
            "/embed",
            &json!({"inputs": [&long], "truncation_direction": direction}),
        );
        assert_eq!(status, 200, "{body}");
        assert_rows_close(&rows(&body), std::slice::from_ref(row));
    }
    assert!(
        max_abs_diff(&ends[0], &ends[1]) > 1e-3,
        "the two ends embed alike"
    );
    let (status, body) = server.post_json(
        "/embed",
        &json!({"inputs": [&long], "truncate": false, "truncation_direction": "left"}),
    );
    assert_error(status, &body, 422, "longer than the model's");
    assert_eq!(body["error_type"], "Tokenizer");

    // prompt_name on a model without prompts is refused.
    let (status, body) =
        server.post_json("/embed", &json!({"inputs": "a", "prompt_name": "query"}));
    assert_error(status, &body, 422, "this model has no prompts");

    // Unknown fields are refused by name, on every route.
    for (path, request) in [
        ("/embed", json!({"inputs": "a", "normalise": true})),
        ("/", json!({"inputs": "a", "normalise": true})),
        (
            "/similarity",
            json!({"inputs": {"source_sentence": "a", "sentences": ["b"]}, "normalise": true}),
        ),
        ("/tokenize", json!({"inputs": "a", "normalise": true})),
        ("/decode", json!({"ids": [1], "normalise": true})),
        (
            "/embed",
            json!({"inputs": "a", "parameters": {"normalise": true}}),
        ),
    ] {
        let (status, body) = server.post_json(path, &request);
        assert_error(status, &body, 422, "unknown field `normalise`");
    }
    let (status, body) =
        server.post_json("/v1/embeddings", &json!({"input": "a", "normalise": true}));
    assert_openai_error(status, &body, 422, "unknown field `normalise`");
}

#[test]
fn prompts_are_put_before_the_inputs() {
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(tiny_dir()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    std::fs::write(
        copy.path().join("config_sentence_transformers.json"),
        r#"{"prompts": {"query": "query: ", "passage": "passage: "}}"#,
    )
    .unwrap();
    let server = Server::start(ServeConfig::new(copy.path(), device()));
    let encoder = SentenceEncoder::load(tiny_dir(), &device()).unwrap();
    let texts = ["the team won", "a new phone"].map(String::from);
    let prompted = texts.clone().map(|t| format!("query: {t}"));
    let (status, body) =
        server.post_json("/embed", &json!({"inputs": texts, "prompt_name": "query"}));
    assert_eq!(status, 200, "{body}");
    assert_rows_close(&rows(&body), &expected(&encoder, &prompted, true));
    let (_, plain) = server.post_json("/embed", &json!({"inputs": texts}));
    assert!(max_abs_diff(&vector(&plain[0]), &vector(&body[0])) > 1e-4);
    let (status, body) =
        server.post_json("/embed", &json!({"inputs": texts, "prompt_name": "doc"}));
    assert_error(status, &body, 422, "this model's prompts: passage, query");
    // /similarity and /tokenize take it too.
    let (status, body) = server.post_json(
        "/similarity",
        &json!({"inputs": {"source_sentence": texts[0], "sentences": [texts[1]]},
                "parameters": {"prompt_name": "query"}}),
    );
    assert_eq!(status, 200, "{body}");
    let e = expected(&encoder, &prompted, true);
    let cosine: f32 = e[0].iter().zip(&e[1]).map(|(a, b)| a * b).sum();
    assert!(
        (body[0].as_f64().unwrap() as f32 - cosine).abs() <= 1e-6,
        "{body}"
    );
    let (_, tokens) = server.post_json(
        "/tokenize",
        &json!({"inputs": "a", "prompt_name": "query", "add_special_tokens": false}),
    );
    // The input's token comes after the prompt's, its offsets in the prompted text.
    let last = tokens[0].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["text"], "a", "{tokens}");
    assert_eq!(last["start"], "query: ".len(), "{tokens}");
}

#[test]
fn similarity_tokenize_decode_rerank_and_the_openai_extras() {
    let server = Server::start(ServeConfig::new(tiny_dir(), device()));
    let encoder = SentenceEncoder::load(tiny_dir(), &device()).unwrap();
    let texts = texts();
    let e = expected(&encoder, &texts, true);

    let (status, body) = server.post_json(
        "/similarity",
        &json!({"inputs": {"source_sentence": texts[0], "sentences": texts[1..]}}),
    );
    assert_eq!(status, 200, "{body}");
    let scores = vector(&body);
    let cosines: Vec<f32> = e[1..]
        .iter()
        .map(|row| e[0].iter().zip(row).map(|(a, b)| a * b).sum())
        .collect();
    assert_eq!(scores.len(), texts.len() - 1);
    assert!(
        max_abs_diff(&scores, &cosines) <= 1e-6,
        "{scores:?} {cosines:?}"
    );
    assert!(cosines.iter().any(|c| c.abs() < 0.999), "{cosines:?}");
    let (status, body) = server.post_json(
        "/similarity",
        &json!({"inputs": {"source_sentence": "a", "sentences": []}}),
    );
    assert_error(status, &body, 400, "cannot be empty");
    assert_eq!(body["error_type"], "Empty");

    // /tokenize: special tokens by their text without offsets, words by byte offsets.
    let (status, body) = server.post_json("/tokenize", &json!({"inputs": "the team"}));
    assert_eq!(status, 200, "{body}");
    let ids: Vec<u64> = encoder.tokenizer().encode(&["the team"]).unwrap()[0]
        .get_ids()
        .iter()
        .map(|&id| u64::from(id))
        .collect();
    let tokens = body[0].as_array().unwrap();
    let got: Vec<u64> = tokens.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(got, ids);
    assert_eq!(
        tokens[0],
        json!({"id": ids[0], "text": "[CLS]", "special": true, "start": null, "stop": null})
    );
    assert_eq!(
        tokens[2],
        json!({"id": ids[2], "text": "team", "special": false, "start": 4, "stop": 8})
    );
    let (_, bare) = server.post_json(
        "/tokenize",
        &json!({"inputs": ["the team", "it"], "add_special_tokens": false}),
    );
    assert_eq!(bare[0].as_array().unwrap().len(), ids.len() - 2, "{bare}");
    assert_eq!(bare.as_array().unwrap().len(), 2);

    // /decode: the ids back to text, special tokens skipped unless asked for.
    let (status, body) = server.post_json("/decode", &json!({"ids": ids}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!(["the team"]));
    let (_, body) = server.post_json(
        "/decode",
        &json!({"ids": [ids.clone(), ids[1..2].to_vec()], "skip_special_tokens": false}),
    );
    assert_eq!(body, json!(["[CLS] the team [SEP]", "the"]));
    let (status, body) = server.post_json("/decode", &json!({"ids": [1_000_000]}));
    assert_error(status, &body, 422, "not a token id");

    // /rerank: this model cannot rank.
    let (status, body) = server.post_json("/rerank", &json!({"query": "a", "texts": ["b", "c"]}));
    assert_error(status, &body, 424, "cannot rank");

    // /embeddings is /v1/embeddings; /v1/models lists the model.
    let request = json!({"input": texts, "model": "tiny-bert", "user": "someone"});
    let (status, alias) = server.post_json("/embeddings", &request);
    assert_eq!(status, 200, "{alias}");
    let (_, original) = server.post_json("/v1/embeddings", &request);
    assert_eq!(alias["data"], original["data"]);
    let (status, body) = server.post_json("/embeddings", &json!({"input": []}));
    assert_openai_error(status, &body, 400, "no input");
    let (status, models) = server.get("/v1/models");
    assert_eq!(status, 200);
    let models: Value = serde_json::from_str(&models).unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny-bert");
    assert_eq!(models["data"][0]["object"], "model");
}

#[test]
fn predict_answers_as_tei_on_a_one_task_model() {
    let saved = tempfile::tempdir().unwrap();
    let dir = saved.path().join("one-task");
    save_one_task_model(&dir);
    let classifier = MultiTaskClassifier::load(&dir, &device()).unwrap();
    let server = Server::start(ServeConfig::new(&dir, device()));
    let labels_of = |value: &Value| -> Vec<(String, f32)> {
        value
            .as_array()
            .unwrap_or_else(|| panic!("not a list: {value}"))
            .iter()
            .map(|l| {
                (
                    l["label"].as_str().unwrap().to_owned(),
                    l["score"].as_f64().unwrap() as f32,
                )
            })
            .collect()
    };
    // The classifier's probabilities as TEI lists them: most probable first.
    let tei = |p: &mtl_model::Prediction| -> Vec<(String, f32)> {
        let mut labels: Vec<(String, f32)> = ["negative", "positive"]
            .iter()
            .map(|l| l.to_string())
            .zip(p.probabilities.iter().copied())
            .collect();
        labels.sort_by(|a, b| b.1.total_cmp(&a.1));
        labels
    };
    let assert_labels_close = |actual: Vec<(String, f32)>, expected: Vec<(String, f32)>| {
        assert_eq!(actual.len(), expected.len());
        for ((la, sa), (le, se)) in actual.iter().zip(&expected) {
            assert_eq!(la, le);
            assert!((sa - se).abs() <= 1e-6, "{sa} vs {se}");
        }
    };

    let single = classifier.predict(&["the team won"], None, 8).unwrap();
    for path in ["/predict", "/"] {
        let (status, body) = server.post_json(path, &json!({"inputs": "the team won"}));
        assert_eq!(status, 200, "{body}");
        assert_labels_close(labels_of(&body), tei(&single[0][0]));
    }
    let pair = classifier
        .predict_pairs(&[("the team won", "a bad day")], None, 8)
        .unwrap();
    let (status, body) = server.post_json(
        "/predict",
        &json!({"inputs": ["the team won", "a bad day"]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_labels_close(labels_of(&body), tei(&pair[0][0]));
    assert!(
        max_abs_diff(&pair[0][0].probabilities, &single[0][0].probabilities) > 1e-6,
        "a pair and its first text predict alike"
    );
    let (status, body) = server.post_json(
        "/predict",
        &json!({"inputs": [["the team won"], ["the team won", "a bad day"]]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_labels_close(labels_of(&body[0]), tei(&single[0][0]));
    assert_labels_close(labels_of(&body[1]), tei(&pair[0][0]));
    let (status, body) = server.post_json(
        "/predict",
        &json!({"inputs": "the team won", "parameters": {"top_k": 1, "function_to_apply": "softmax"}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_labels_close(labels_of(&body), tei(&single[0][0])[..1].to_vec());
    // Naming the task gives the richer shape.
    let (_, body) = server.post_json(
        "/predict",
        &json!({"inputs": "the team won", "tasks": ["mood"]}),
    );
    assert_eq!(body[0][0]["task"], "mood", "{body}");
    for (request, message) in [
        (json!({"inputs": "a", "raw_scores": true}), "raw_scores"),
        (
            json!({"inputs": "a", "truncation_direction": "left"}),
            "truncation_direction",
        ),
        (
            json!({"inputs": "a", "parameters": {"function_to_apply": "sigmoid"}}),
            "function_to_apply",
        ),
        (json!({"inputs": ["a", "b", "c"]}), "a batch"),
        (
            json!({"inputs": "a", "colour": 1}),
            "unknown field `colour`",
        ),
    ] {
        let (status, body) = server.post_json("/predict", &request);
        assert_error(status, &body, 422, message);
    }
    let (status, body) = server.post_json("/predict", &json!({"inputs": []}));
    assert_error(status, &body, 400, "cannot be empty");
    let (status, body) = server.post_json("/rerank", &json!({"query": "a", "texts": ["b"]}));
    assert_error(status, &body, 424, "multi-task classifier");
}
