//! The GPU-capable backends compiled into this build (wgpu, tch, cuda) against the CPU
//! backend flex: encoder outputs (the rows of real tokens) within 1e-4 on the MiniLM fixtures,
//! and five training steps (dropout off, same seed) whose losses fall and stay within 1e-3 of
//! flex's.
//!
//! Build with the backend's feature to run them, e.g.
//! `cargo test -p mtl-train --features wgpu --test backends` (`cargo xtask test-backend wgpu
//! tch`, which CI runs); a build without any of these features compiles this file to nothing
//! rather than passing it without a comparison.
#![cfg(any(feature = "wgpu", feature = "tch", feature = "cuda"))]

#[path = "../../../tests/support/compare.rs"]
mod compare;
#[path = "../../../tests/support/fixtures.rs"]
mod fixtures;

use std::path::Path;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use compare::max_abs_diff;
use fixtures::minilm_dir;
use mtl_bert::{Backend, EncodeOptions, Pooling, SentenceEncoder};
use mtl_model::{MtlConfig, MultiTaskClassifier, TaskConfig};
use mtl_train::train::config::TrainConfig;
use mtl_train::train::optimizer::TrainOptimizer;

/// The backends under test: every compiled one that is not a pure-Rust CPU backend.
fn accelerated() -> Vec<Backend> {
    let backends: Vec<Backend> = Backend::compiled()
        .into_iter()
        .filter(|b| matches!(b, Backend::Wgpu | Backend::Tch | Backend::Cuda))
        .collect();
    assert!(
        !backends.is_empty(),
        "built with a wgpu, tch or cuda feature, yet Backend::compiled() lists none of them: {:?}",
        Backend::compiled()
    );
    backends
}

fn texts() -> Vec<String> {
    let reference =
        std::fs::read_to_string(fixtures::fixtures().join("minilm/reference.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&reference).unwrap();
    serde_json::from_value(value["texts"].clone()).unwrap()
}

/// `[batch, seq, hidden]` values -> the rows of real tokens only.
fn real_tokens(values: &[f32], mask: &[i64], hidden: usize) -> Vec<f32> {
    values
        .chunks_exact(hidden)
        .zip(mask)
        .filter(|(_, m)| **m != 0)
        .flat_map(|(row, _)| row.iter().copied())
        .collect()
}

#[test]
fn encoder_outputs_match_the_cpu_backend() {
    let flex = Backend::Flex.device(0).unwrap();
    let texts = texts();
    let reference = SentenceEncoder::load(minilm_dir(), &flex).unwrap();
    let tokenizer = reference.tokenizer();
    let batch = tokenizer.pad(tokenizer.encode(&texts).unwrap()).unwrap();
    let expected_hidden: Vec<f32> = reference
        .model()
        .forward(&batch.to_input(&flex))
        .into_data()
        .try_into_vec()
        .unwrap();
    for backend in accelerated() {
        let device = backend.device(0).unwrap();
        let encoder = SentenceEncoder::load(minilm_dir(), &device).unwrap();
        let hidden: Vec<f32> = encoder
            .model()
            .forward(&batch.to_input(&device))
            .into_data()
            .try_into_vec()
            .unwrap();
        // Real tokens only, as the parity tests with transformers compare: the rows of padding
        // positions feed nothing (every pooling masks them).
        let hidden_size = hidden.len() / batch.attention_mask.len();
        let diff = max_abs_diff(
            &real_tokens(&hidden, &batch.attention_mask, hidden_size),
            &real_tokens(&expected_hidden, &batch.attention_mask, hidden_size),
        );
        eprintln!(
            "{backend}: last hidden state (real tokens) differs from flex by {diff:.2e} \
             (padding rows included: {:.2e})",
            max_abs_diff(&hidden, &expected_hidden)
        );
        assert!(
            diff <= 1e-4,
            "{backend}: last hidden state differs from flex by {diff}"
        );
        for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Max, Pooling::Pooler] {
            let options = EncodeOptions {
                pooling: Some(pooling),
                batch_size: 4,
                ..EncodeOptions::default()
            };
            let ours = encoder.encode(&texts, &options).unwrap();
            let cpu = reference.encode(&texts, &options).unwrap();
            let diff = max_abs_diff(&ours.values, &cpu.values);
            eprintln!("{backend}: {pooling} embeddings differ from flex by {diff:.2e}");
            assert!(diff <= 1e-4, "{backend} {pooling}: {diff}");
        }
    }
}

/// all-MiniLM-L6-v2 with every dropout probability set to 0, in a temporary directory.
fn minilm_without_dropout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(minilm_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::os::unix::fs::symlink(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let config_path = dir.path().join("config.json");
    std::fs::remove_file(&config_path).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(minilm_dir().join("config.json")).unwrap())
            .unwrap();
    config["hidden_dropout_prob"] = 0.0.into();
    config["attention_probs_dropout_prob"] = 0.0.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    dir
}

/// The losses of five AdamW steps on the same 8 BBC-like texts, dropout off, seed 7.
fn five_step_losses(model_dir: &Path, backend: Backend) -> Vec<f32> {
    let device = backend.device(0).unwrap().autodiff();
    let mut config = MtlConfig::new(vec![TaskConfig::new(
        "topic",
        &["business", "sport", "tech"],
    )]);
    config.dropout = 0.0;
    config.max_seq_length = Some(64);
    let mut classifier =
        MultiTaskClassifier::from_pretrained(model_dir, config, 7, &device).unwrap();
    let texts = [
        "Shares in the bank rose after profits beat forecasts.",
        "The striker scored twice as the team won the cup final.",
        "A new phone chip promises longer battery life.",
        "Oil prices fell as demand slowed in Asia.",
        "The tennis champion retired after a long injury.",
        "Software makers face new rules on data privacy.",
        "The central bank kept interest rates unchanged.",
        "The coach praised the young players after the match.",
    ];
    let labels = [0i64, 1, 2, 0, 1, 2, 0, 1];
    let tokenizer = classifier.tokenizer();
    let batch = tokenizer.pad(tokenizer.encode(&texts).unwrap()).unwrap();
    let train = TrainConfig {
        warmup_ratio: 0.0,
        ..TrainConfig::default()
    };
    let mut optimizer = TrainOptimizer::new(&classifier.model, &train, 5);
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    let mut losses = Vec::new();
    for step in 0..5 {
        let logits = classifier.model.forward(&batch.to_input(&device), 0);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [8]), &device);
        let loss = loss_fn.forward(logits, targets);
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &classifier.model);
        let (model, _) = optimizer.step(classifier.model, grads, step);
        classifier.model = model;
    }
    losses
}

#[test]
fn five_training_steps_match_the_cpu_backend() {
    let backends = accelerated();
    let model = minilm_without_dropout();
    let expected = five_step_losses(model.path(), Backend::Flex);
    eprintln!("flex losses: {expected:?}");
    assert!(expected[4] < expected[0], "flex: the loss falls");
    for backend in backends {
        let losses = five_step_losses(model.path(), backend);
        eprintln!("{backend} losses: {losses:?}");
        assert!(
            losses[4] < losses[0],
            "{backend}: the loss falls: {losses:?}"
        );
        let diff = max_abs_diff(&losses, &expected);
        assert!(
            diff <= 1e-3,
            "{backend}: losses differ from flex by {diff}: {losses:?} vs {expected:?}"
        );
    }
}
