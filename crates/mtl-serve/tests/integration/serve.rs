//! The server on loopback, called with a real HTTP client: every route's answers and errors,
//! embeddings equal to `SentenceEncoder`'s alone and batched with other requests, predictions
//! equal to `MultiTaskClassifier::predict`, 429 under a flood, the API key.

use crate::common;

use base64::Engine;
use common::compare::max_abs_diff;
use common::fixtures::tiny_dir;
use common::*;
use mtl_bert::SentenceEncoder;
use mtl_model::MultiTaskClassifier;
use mtl_serve::{Limits, ServeConfig};
use serde_json::{Value, json};

#[test]
fn embeddings_equal_the_sentence_encoders_alone_and_batched_with_other_requests() {
    let server = Server::start(ServeConfig::new(tiny_dir(), device()));
    let encoder = SentenceEncoder::load(tiny_dir(), &device()).unwrap();
    let texts = texts();

    let (status, body) = server.post_json(
        "/v1/embeddings",
        &json!({"input": texts, "model": "tiny-bert"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "tiny-bert");
    let data: Vec<Value> = body["data"].as_array().unwrap().clone();
    assert!(
        data.iter()
            .enumerate()
            .all(|(i, d)| d["index"] == i && d["object"] == "embedding")
    );
    let embeddings: Vec<Value> = data.iter().map(|d| d["embedding"].clone()).collect();
    assert_rows_close(
        &rows(&Value::Array(embeddings)),
        // Unit length always, as OpenAI's are (the tiny model has no Normalize module).
        &expected(&encoder, &texts, true),
    );
    let tokens: usize = encoder
        .tokenizer()
        .encode(&texts)
        .unwrap()
        .iter()
        .map(|e| e.len())
        .sum();
    assert_eq!(body["usage"]["prompt_tokens"], tokens);
    assert_eq!(body["usage"]["total_tokens"], tokens);

    for normalize in [true, false] {
        let (status, body) =
            server.post_json("/embed", &json!({"inputs": texts, "normalize": normalize}));
        assert_eq!(status, 200, "{body}");
        assert_rows_close(&rows(&body), &expected(&encoder, &texts, normalize));
    }
    let (_, one) = server.post_json("/embed", &json!({"inputs": "the team won the game"}));
    assert_rows_close(&rows(&one), &expected(&encoder, &texts[..1], true));

    // Eight clients at once, each with its own texts: batched together, answered apart.
    let server = &server;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|client| {
                let encoder = &encoder;
                let mine: Vec<String> = (0..1 + client % 4)
                    .map(|i| format!("{} {}", texts[(client + i) % texts.len()], "win ".repeat(i)))
                    .collect();
                scope.spawn(move || assert_embeds_unnormalised(server, encoder, &mine))
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
    });

    // Batched across requests, shown by the batch count: a large request alone takes `alone`
    // batches; sent again with eight small requests (1-4 texts each) sent once the model is at
    // work on it (a few hundred milliseconds of work left), the small ones wait in the queue
    // and share batches: fewer than eight more.
    let big = long_texts(2048);
    let batches = || metric(server, "mtl_batch_size_count");
    let before = batches();
    let (status, body) = server.post_json("/embed", &json!({"inputs": big}));
    assert_eq!(status, 200, "{body}");
    let alone = batches() - before;
    let before = batches();
    let texts_before = metric(server, "mtl_texts_total");
    std::thread::scope(|scope| {
        let large = scope.spawn(|| server.post_json("/embed", &json!({"inputs": big})).0);
        wait_for_model_work(server, texts_before);
        let small: Vec<_> = (0..8)
            .map(|client| {
                let mine: Vec<String> = (0..1 + client % 4)
                    .map(|i| format!("small request {client} text {i}"))
                    .collect();
                let encoder = &encoder;
                scope.spawn(move || assert_embeds_unnormalised(server, encoder, &mine))
            })
            .collect();
        small.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(large.join().unwrap(), 200);
    });
    let together = batches() - before;
    assert!(
        together - alone < 8.0,
        "eight small requests took {} batches of their own",
        together - alone
    );
}

#[test]
fn base64_dimensions_and_similarity() {
    let server = Server::start(ServeConfig::new(tiny_dir(), device()));
    let texts = texts();
    let (_, floats) = server.post_json("/v1/embeddings", &json!({"input": texts}));
    let (status, encoded) = server.post_json(
        "/v1/embeddings",
        &json!({"input": texts, "encoding_format": "base64"}),
    );
    assert_eq!(status, 200, "{encoded}");
    for (f, b) in floats["data"]
        .as_array()
        .unwrap()
        .iter()
        .zip(encoded["data"].as_array().unwrap())
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b["embedding"].as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let expected: Vec<f32> = f["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(decoded, expected);
    }
    let (status, short) = server.post_json(
        "/v1/embeddings",
        &json!({"input": "the team", "dimensions": 8}),
    );
    assert_eq!(status, 200, "{short}");
    assert_eq!(short["data"][0]["embedding"].as_array().unwrap().len(), 8);
    for bad in [0, 33] {
        let (status, body) = server.post_json(
            "/v1/embeddings",
            &json!({"input": "the team", "dimensions": bad}),
        );
        assert_openai_error(status, &body, 422, "dimensions");
        assert_eq!(body["error"]["param"], "dimensions");
    }
    // The cosines of the encoder's own embeddings (an identity or a symmetric matrix of other
    // values fails).
    let (status, matrix) = server.post_json("/similarity", &json!({"inputs": texts}));
    assert_eq!(status, 200, "{matrix}");
    let matrix = rows(&matrix);
    let encoder = SentenceEncoder::load(tiny_dir(), &device()).unwrap();
    let embeddings = expected(&encoder, &texts, false);
    let vectors: Vec<&[f32]> = embeddings.iter().map(Vec::as_slice).collect();
    let cosines = mtl_bert::cosine_matrix(&vectors);
    assert_eq!(matrix.len(), texts.len());
    assert_rows_close(&matrix, &cosines);
    assert!(
        cosines
            .iter()
            .flatten()
            .any(|c| c.abs() < 0.999 && c.abs() > 1e-3),
        "the texts' cosines are not all 0 or 1: {cosines:?}"
    );
}

#[test]
fn predictions_equal_the_classifiers_and_need_a_model_with_tasks() {
    let saved = tempfile::tempdir().unwrap();
    let dir = saved.path().join("two-tasks");
    save_two_task_model(&dir);
    let classifier = MultiTaskClassifier::load(&dir, &device()).unwrap();
    let texts = texts();
    let expected = classifier.predict(&texts, None, 32).unwrap();
    let server = Server::start(ServeConfig::new(&dir, device()));

    // Several texts are a batch of one-text lists (a list of two strings is a sentence pair).
    let batch: Vec<Vec<&String>> = texts.iter().map(|t| vec![t]).collect();
    let (status, body) = server.post_json("/predict", &json!({"inputs": batch}));
    assert_eq!(status, 200, "{body}");
    let answers = body.as_array().unwrap();
    assert_eq!(answers.len(), texts.len(), "{body}");
    for (answer, expected) in answers.iter().zip(&expected) {
        let answer = answer.as_array().unwrap();
        assert_eq!(
            answer.len(),
            expected.len(),
            "one prediction per task: {answer:?}"
        );
        for (task, p) in answer.iter().zip(expected) {
            assert_eq!(task["task"], p.task.as_str());
            assert_eq!(task["label"], p.label.as_str());
            let probabilities: Vec<f32> = task["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["probability"].as_f64().unwrap() as f32)
                .collect();
            assert!(max_abs_diff(&probabilities, &p.probabilities) <= 1e-6);
            assert_eq!(
                task["probability"].as_f64().unwrap() as f32,
                p.probabilities[p.label_index]
            );
        }
    }
    let (status, body) = server.post_json(
        "/predict",
        &json!({"inputs": "the team", "tasks": ["mood"]}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0].as_array().unwrap().len(), 1);
    assert_eq!(body[0][0]["task"], "mood");
    // `task` names one task: TEI's shape, most probable label first.
    let mood = &classifier.predict(&["the team"], None, 8).unwrap()[0][1];
    let (status, body) =
        server.post_json("/predict", &json!({"inputs": "the team", "task": "mood"}));
    assert_eq!(status, 200, "{body}");
    let labels = body.as_array().unwrap();
    assert_eq!(labels.len(), 2, "{body}");
    let top = usize::from(mood.probabilities[1] > mood.probabilities[0]);
    assert_eq!(labels[0]["label"], ["negative", "positive"][top], "{body}");
    let score = labels[0]["score"].as_f64().unwrap() as f32;
    assert!((score - mood.probabilities[top]).abs() <= 1e-6, "{body}");
    let (status, body) = server.post_json(
        "/predict",
        &json!({"inputs": "the team", "task": "mood", "tasks": ["mood"]}),
    );
    assert_error(status, &body, 422, "not both");
    let (status, body) = server.post_json(
        "/predict",
        &json!({"inputs": "the team", "parameters": {"top_k": 1}}),
    );
    assert_error(status, &body, 422, "top_k applies to TEI's answer");
    let (status, body) = server.post_json(
        "/predict",
        &json!({"inputs": "the team", "tasks": ["colour"]}),
    );
    assert_error(
        status,
        &body,
        422,
        "unknown task \"colour\" (this model's tasks: topic, mood)",
    );
    let (status, info) = server.post_json("/info", &json!({}));
    assert_eq!(status, 405, "{info}");
    let (_, info) = server.get("/info");
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(info["tasks"][1]["labels"], json!(["negative", "positive"]));
    // The embedding routes share the classifier's encoder: the same vectors as the directory
    // loaded on its own.
    let encoder = SentenceEncoder::load(&dir, &device()).unwrap();
    let (status, body) = server.post_json("/embed", &json!({"inputs": texts}));
    assert_eq!(status, 200, "{body}");
    assert_rows_close(&rows(&body), &self::expected(&encoder, &texts, true));
    drop(server);

    let embedding_only = Server::start(ServeConfig::new(tiny_dir(), device()));
    let (status, body) = embedding_only.post_json("/predict", &json!({"inputs": "the team"}));
    assert_error(status, &body, 424, "embedding model without tasks");
}

#[test]
fn bad_requests_get_json_errors_and_the_server_goes_on() {
    let mut config = ServeConfig::new(tiny_dir(), device());
    config.limits.max_inputs = 100;
    let server = Server::start(config);
    let json_error = |(status, text): (u16, String), expected: u16| {
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_error(status, &body, expected, "");
    };
    let openai_error = |(status, text): (u16, String), expected: u16| {
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_openai_error(status, &body, expected, "");
    };
    json_error(server.post("/embed", "{\"inputs\": [\"a\""), 400);
    json_error(server.post("/embed", "{\"inputs\": 3}"), 422);
    openai_error(server.post("/v1/embeddings", "{\"input\": [1, 2]}"), 422);
    openai_error(server.post("/v1/embeddings", "{}"), 422);
    json_error(server.get("/nowhere"), 404);
    openai_error(server.get("/v1/nowhere"), 404);
    let (status, body) = server.post_json("/embed", &json!({"inputs": []}));
    assert_error(status, &body, 400, "no input");
    assert_eq!(body["error_type"], "Empty");
    let (status, body) = server.post_json("/embed", &json!({"inputs": ["a", ""]}));
    assert_error(status, &body, 422, "input 1 is an empty string");
    let many: Vec<&str> = vec!["a"; 100_000];
    let (status, body) = server.post_json("/embed", &json!({"inputs": many}));
    assert!(status == 413, "{status} {body}");
    let (status, body) = server.post_json("/embed", &json!({"inputs": vec!["a"; 101]}));
    assert_error(status, &body, 413, "101 inputs, more than the limit of 100");
    // A 10 MB body: answered 413 once the limit (2 MiB) is passed.
    let response = server.raw_post("/embed", 10 << 20);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("\"error\""), "{response}");
    let long = "win ".repeat(200);
    let (status, body) = server.post_json("/embed", &json!({"inputs": [long], "truncate": false}));
    assert_error(status, &body, 422, "input 0 is longer than the model's");
    let (status, _) = server.post_json("/embed", &json!({"inputs": [long]}));
    assert_eq!(status, 200, "truncated by default");
    assert_eq!(server.get("/health").0, 200);
    let (status, metrics) = server.get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("mtl_requests_total{route=\"/embed\",status=\"413\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("mtl_texts_total"), "{metrics}");
    let (status, document) = server.get("/openapi.json");
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&document).unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/",
        "/embed",
        "/predict",
        "/similarity",
        "/tokenize",
        "/decode",
        "/rerank",
        "/v1/embeddings",
        "/embeddings",
        "/v1/models",
        "/health",
        "/info",
        "/metrics",
        "/openapi.json",
    ] {
        assert!(
            document["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    server.stop().unwrap();
}

#[test]
fn a_flood_beyond_the_limit_gets_429_while_health_answers() {
    let mut config = ServeConfig::new(tiny_dir(), device());
    config.limits = Limits {
        max_concurrent_requests: 1,
        ..Limits::default()
    };
    let server = Server::start(config);
    let texts = long_texts(2048);
    let texts_before = metric(&server, "mtl_texts_total");
    let served = std::sync::atomic::AtomicUsize::new(0);
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                scope.spawn(|| {
                    let status = server.post_json("/embed", &json!({"inputs": texts})).0;
                    if status == 200 {
                        served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    status
                })
            })
            .collect();
        // While the admitted request is on the model thread (it has embedded some texts and
        // not answered yet), /health answers.
        wait_for_model_work(&server, texts_before);
        let health = server.get("/health").0;
        assert_eq!(health, 200);
        assert_eq!(
            served.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "/health answered only after the flood's admitted request"
        );
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        statuses.iter().all(|s| [200, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "no request was refused: {statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    let (status, body) = server.post_json("/embed", &json!({"inputs": ["after the flood"]}));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn an_api_key_guards_every_route_but_health() {
    let mut config = ServeConfig::new(tiny_dir(), device());
    config.api_key = Some("secret".into());
    let server = Server::start(config);
    let (status, body) = server.post_json("/embed", &json!({"inputs": "a"}));
    assert_error(status, &body, 401, "API key");
    let with_key = |key: &str| {
        answer(
            ureq::post(&server.url("/embed"))
                .set("Authorization", &format!("Bearer {key}"))
                .set("Content-Type", "application/json")
                .send_string("{\"inputs\": \"a\"}"),
        )
        .0
    };
    assert_eq!(with_key("secret"), 200);
    assert_eq!(with_key("secreT"), 401);
    assert_eq!(server.get("/health").0, 200);
    assert_eq!(server.get("/info").0, 401);
    assert_eq!(server.get("/metrics").0, 401);
    let (status, body) = server.get("/v1/models");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_openai_error(status, &body, 401, "API key");
    assert_eq!(body["error"]["code"], "invalid_api_key");
    drop(server);

    // --public-metrics: /metrics needs no key, the rest still does.
    let mut config = ServeConfig::new(tiny_dir(), device());
    config.api_key = Some("secret".into());
    config.public_metrics = true;
    let server = Server::start(config);
    assert_eq!(server.get("/metrics").0, 200);
    assert_eq!(server.get("/info").0, 401);
    assert_eq!(server.post_json("/embed", &json!({"inputs": "a"})).0, 401);
}

#[test]
fn a_public_address_needs_a_key_and_a_missing_model_is_an_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let error = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
        let config = ServeConfig::new(tiny_dir(), device());
        mtl_serve::serve(config, listener, std::future::pending()).await
    });
    let message = error.unwrap_err().to_string();
    assert!(message.contains("needs an API key"), "{message}");
    let error = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = ServeConfig::new("/nonexistent/model", device());
        mtl_serve::serve(config, listener, std::future::pending()).await
    });
    let message = error.unwrap_err().to_string();
    assert!(
        message.contains("loading the model in /nonexistent/model"),
        "{message}"
    );
}

/// Eight clients each send a 2048-text request and hang up once the model is at work on
/// them: their remaining texts are dropped before the model runs them (the model stops within
/// about one request's worth, not after all eight), and a normal request is answered.
#[test]
fn the_work_of_clients_that_hang_up_is_dropped() {
    use std::io::Write;
    let server = Server::start(ServeConfig::new(tiny_dir(), device()));
    let before = metric(&server, "mtl_texts_total");
    let body = json!({ "inputs": long_texts(2048) }).to_string();
    let address = server.url("").trim_start_matches("http://").to_owned();
    let clients = 8;
    let streams: Vec<std::net::TcpStream> = (0..clients)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            write!(
                stream,
                "POST /embed HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            stream
        })
        .collect();
    wait_for_model_work(&server, before);
    drop(streams);
    let started = std::time::Instant::now();
    let (status, answer) = server.post_json("/embed", &json!({"inputs": ["still served"]}));
    assert_eq!(status, 200, "{answer}");
    eprintln!(
        "a normal request after the hang-ups: {:?}",
        started.elapsed()
    );
    // Settled: nothing queued, and no text embedded or dropped for a second.
    let seen = || metric(&server, "mtl_texts_total") + metric(&server, "mtl_texts_dropped_total");
    let mut last = seen();
    let mut still = std::time::Instant::now();
    while metric(&server, "mtl_queue_depth") > 0.0 || still.elapsed().as_secs_f64() < 1.0 {
        assert!(started.elapsed().as_secs() < 120, "the queue never emptied");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let now = seen();
        if now != last {
            last = now;
            still = std::time::Instant::now();
        }
    }
    let embedded = metric(&server, "mtl_texts_total") - before - 1.0;
    let dropped = metric(&server, "mtl_texts_dropped_total");
    eprintln!(
        "embedded {embedded} of {} texts of clients that had gone; dropped {dropped}",
        clients * 2048
    );
    assert!(
        embedded < 2.0 * 2048.0,
        "{embedded} texts of clients that had gone were embedded"
    );
    assert!(dropped > 0.0, "nothing was dropped");
}

/// A client that sends its headers and part of its body, then stalls, holds no permit: with a
/// limit of one request in flight, a normal request is still answered (the permit is taken
/// once the body is read).
#[test]
fn a_slow_upload_holds_no_permit() {
    use std::io::Write;
    let mut config = ServeConfig::new(tiny_dir(), device());
    config.limits.max_concurrent_requests = 1;
    let server = Server::start(config);
    let address = server.url("").trim_start_matches("http://").to_owned();
    let stalled: Vec<std::net::TcpStream> = ["/embed", "/predict", "/v1/embeddings"]
        .iter()
        .map(|path| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            write!(
                stream,
                "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000\r\n\r\n{{\"inputs\": [\"a"
            )
            .unwrap();
            stream
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    for _ in 0..3 {
        let (status, body) = server.post_json("/embed", &json!({"inputs": ["not kept waiting"]}));
        assert_eq!(status, 200, "{body}");
    }
    drop(stalled);
}

/// 32 connections that send half a request's headers and stall neither block a normal request
/// nor stay open: the server closes each once its header-read timeout passes.
#[test]
fn stalled_headers_do_not_block_and_are_closed_by_the_timeout() {
    use std::io::{Read, Write};
    let mut config = ServeConfig::new(tiny_dir(), device());
    config.timeouts.header_read = std::time::Duration::from_secs(1);
    let server = Server::start(config);
    let address = server.url("").trim_start_matches("http://").to_owned();
    let started = std::time::Instant::now();
    let stalled: Vec<std::net::TcpStream> = (0..32)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            write!(
                stream,
                "POST /embed HTTP/1.1\r\nHost: {address}\r\nContent-Ty"
            )
            .unwrap();
            stream
        })
        .collect();
    let (status, body) = server.post_json("/embed", &json!({"inputs": ["not kept waiting"]}));
    assert_eq!(status, 200, "{body}");
    for mut stream in stalled {
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut rest = Vec::new();
        // The server closes the connection: the read ends (at EOF, or reset), not timed out.
        match stream.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "a stalled connection stayed open: {e}"
            ),
        }
    }
    let closed_after = started.elapsed();
    assert!(
        closed_after >= std::time::Duration::from_millis(900),
        "closed before the timeout: {closed_after:?}"
    );
    assert!(
        closed_after < std::time::Duration::from_secs(20),
        "closed only after {closed_after:?}"
    );
}

/// A body that does not arrive within the body-read timeout is answered 408, in the route
/// family's error shape.
#[test]
fn a_stalled_body_gets_408() {
    use std::io::{Read, Write};
    let mut config = ServeConfig::new(tiny_dir(), device());
    config.timeouts.body_read = std::time::Duration::from_millis(500);
    let server = Server::start(config);
    let address = server.url("").trim_start_matches("http://").to_owned();
    let mut stream = std::net::TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "POST /v1/embeddings HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\nConnection: close\r\n\r\n{{\"input\": [\"a"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.contains("\"type\""),
        "not OpenAI's shape: {response}"
    );
}

/// A request that is not answered within the request timeout gets 503, and its texts leave the
/// queue.
#[test]
fn a_request_past_its_deadline_gets_503_and_its_texts_are_dropped() {
    let mut config = ServeConfig::new(tiny_dir(), device());
    config.timeouts.request = std::time::Duration::from_millis(500);
    // Batches of one text: 2,048 of them take well over 500 ms, tokenizing them well under.
    config.limits.max_batch_tokens = 1;
    let server = Server::start(config);
    let (status, body) = server.post_json("/embed", &json!({ "inputs": long_texts(2048) }));
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("within 0.5 s"),
        "{body}"
    );
    let started = std::time::Instant::now();
    while metric(&server, "mtl_queue_depth") > 0.0 {
        assert!(started.elapsed().as_secs() < 30, "the queue never emptied");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (embedded, dropped) = (
        metric(&server, "mtl_texts_total"),
        metric(&server, "mtl_texts_dropped_total"),
    );
    assert!(
        embedded > 0.0 && dropped > 0.0,
        "embedded {embedded}, dropped {dropped}"
    );
    assert!(embedded < 2048.0, "embedded {embedded}");
}

/// Requests take turns on the model: a one-text request sent while four 2,048-text requests
/// are at work is answered before any of them (before, the model took every queued request
/// at once and ran the short one after them all).
#[test]
fn a_short_request_is_not_starved_by_big_ones() {
    let mut config = ServeConfig::new(tiny_dir(), device());
    // Small batches: each big request needs many turns.
    config.limits.max_batch_tokens = 512;
    let server = std::sync::Arc::new(Server::start(config));
    let before = metric(&server, "mtl_texts_total");
    let big: Vec<_> = (0..4)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || {
                let (status, body) =
                    server.post_json("/embed", &json!({ "inputs": long_texts(2048) }));
                assert_eq!(status, 200, "{body}");
                std::time::Instant::now()
            })
        })
        .collect();
    wait_for_model_work(&server, before);
    let (status, body) = server.post_json("/embed", &json!({"inputs": ["a short one"]}));
    assert_eq!(status, 200, "{body}");
    let short_done = std::time::Instant::now();
    let big_done: Vec<std::time::Instant> = big.into_iter().map(|t| t.join().unwrap()).collect();
    let first_big = big_done.iter().min().unwrap();
    assert!(
        short_done < *first_big,
        "the short request was answered {:?} after the first big one",
        short_done - *first_big
    );
}

/// With `cors_allow_origins`, a browser's preflight is answered (before the API key is asked
/// for) and answers carry `Access-Control-Allow-Origin`; without, no CORS headers.
#[test]
fn cors_preflight_and_headers() {
    let mut config = ServeConfig::new(tiny_dir(), device());
    config.cors_allow_origins = vec!["https://app.example".into()];
    config.api_key = Some("secret".into());
    let server = Server::start(config);
    let preflight = ureq::request("OPTIONS", &server.url("/v1/embeddings"))
        .set("Origin", "https://app.example")
        .set("Access-Control-Request-Method", "POST")
        .set(
            "Access-Control-Request-Headers",
            "content-type, authorization",
        )
        .call()
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let methods = preflight.header("access-control-allow-methods").unwrap();
    assert!(methods.contains("POST"), "{methods}");
    let answer = ureq::post(&server.url("/embed"))
        .set("Origin", "https://app.example")
        .set("Authorization", "Bearer secret")
        .set("Content-Type", "application/json")
        .send_string(r#"{"inputs": ["hello"]}"#)
        .unwrap();
    assert_eq!(
        answer.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    let other = ureq::post(&server.url("/embed"))
        .set("Origin", "https://elsewhere.example")
        .set("Authorization", "Bearer secret")
        .set("Content-Type", "application/json")
        .send_string(r#"{"inputs": ["hello"]}"#)
        .unwrap();
    assert_eq!(other.header("access-control-allow-origin"), None);
    drop(server);

    let server = Server::start(ServeConfig::new(tiny_dir(), device()));
    let answer = ureq::post(&server.url("/embed"))
        .set("Origin", "https://app.example")
        .set("Content-Type", "application/json")
        .send_string(r#"{"inputs": ["hello"]}"#)
        .unwrap();
    assert_eq!(answer.header("access-control-allow-origin"), None);
}

/// 200 clients each send a 64-text request and hang up right after sending: within seconds
/// nothing is queued, most of their texts were never embedded, and a normal request sent
/// meanwhile is answered.
#[test]
fn two_hundred_clients_that_hang_up_right_after_sending_leave_nothing_queued() {
    use std::io::Write;
    let server = Server::start(ServeConfig::new(tiny_dir(), device()));
    let body = json!({ "inputs": long_texts(64) }).to_string();
    let address = server.url("").trim_start_matches("http://").to_owned();
    for _ in 0..200 {
        let mut stream = std::net::TcpStream::connect(&address).unwrap();
        write!(
            stream,
            "POST /embed HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        // Dropped here: the connection closes right after the request is sent.
    }
    let (status, answer) = server.post_json("/embed", &json!({"inputs": ["still served"]}));
    assert_eq!(status, 200, "{answer}");
    let started = std::time::Instant::now();
    while metric(&server, "mtl_queue_depth") > 0.0 {
        assert!(
            started.elapsed().as_secs() < 10,
            "requests of clients that had gone were still queued after 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let embedded = metric(&server, "mtl_texts_total") - 1.0;
    eprintln!("embedded {embedded} of the 12,800 texts of clients that had gone");
    assert!(
        embedded < 12_800.0 / 2.0,
        "{embedded} of 12,800 texts of clients that had gone were embedded"
    );
}

/// At shutdown the requests in flight get the shutdown timeout to finish; then their
/// connections are cut and `serve` returns, without waiting for the model to get through them.
#[test]
fn shutdown_cuts_what_is_left_after_its_deadline() {
    let mut config = ServeConfig::new(tiny_dir(), device());
    config.timeouts.shutdown = std::time::Duration::from_millis(500);
    // Batches of one text: eight 2,048-text requests take many seconds.
    config.limits.max_batch_tokens = 1;
    let server = Server::start(config);
    let before = metric(&server, "mtl_texts_total");
    let url = server.url("/embed");
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                ureq::post(&url)
                    .set("Content-Type", "application/json")
                    .send_string(&json!({ "inputs": long_texts(2048) }).to_string())
                    .is_ok()
            })
        })
        .collect();
    wait_for_model_work(&server, before);
    let started = std::time::Instant::now();
    server.stop().unwrap();
    let took = started.elapsed();
    let answered = clients
        .into_iter()
        .filter_map(|c| c.join().unwrap().then_some(()))
        .count();
    assert!(
        took >= std::time::Duration::from_millis(400),
        "serve returned after {took:?}, before the deadline"
    );
    assert!(
        took < std::time::Duration::from_secs(5),
        "serve returned after {took:?}"
    );
    assert_eq!(answered, 0, "requests finished: the deadline cut nothing");
}
