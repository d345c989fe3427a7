//! The GPU-capable backends compiled into this build (wgpu, tch, cuda) against the CPU
//! backend flex, on the tiny BERT fixture (two layers, hidden size 32: every code path of the
//! encoder and of training at a fraction of all-MiniLM-L6-v2's cost, which matters on Mesa's
//! software Vulkan; the MiniLM parity with `transformers` runs on the CPU backends in
//! mtl-bert's parity tests): encoder outputs (the rows of real tokens) and every pooling within
//! 1e-5, and five AdamW steps (dropout off, same seed) whose losses fall and agree within 1e-5,
//! whose first gradients agree within 1e-4 of each tensor's largest and whose parameters after
//! the five steps agree within 1e-2 of each tensor's largest update (the attention key biases,
//! whose gradient is rounding noise, left out).
//!
//! Build with the backend's feature to run them, e.g.
//! `cargo test -p mtl-train --features wgpu --test backends` (`cargo xtask test-backend wgpu
//! tch`; CI builds them into its one test build with `cargo xtask test --backends wgpu,tch`); a
//! build without any of these features compiles this file to nothing rather than passing it
//! without a comparison.
#![cfg(any(feature = "wgpu", feature = "tch", feature = "cuda"))]

#[path = "../../../tests/support/compare.rs"]
mod compare;
#[path = "../../../tests/support/fixtures.rs"]
mod fixtures;

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use compare::max_abs_diff;
use fixtures::tiny_dir;
use mtl_bert::{Backend, EncodeOptions, Pooling, SentenceEncoder};
use mtl_model::{MtlConfig, MultiTaskClassifier, MultiTaskModel, TaskConfig};
use mtl_train::TrainConfig;
use mtl_train::internals::TrainOptimizer;

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

/// The tiny fixture's reference texts (an empty one and one longer than the others among them).
fn texts() -> Vec<String> {
    let reference =
        std::fs::read_to_string(fixtures::fixtures().join("tiny-bert/reference.json")).unwrap();
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
    let reference = SentenceEncoder::load(tiny_dir(), &flex).unwrap();
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
        let encoder = SentenceEncoder::load(tiny_dir(), &device).unwrap();
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
            diff <= 1e-5,
            "{backend}: last hidden state differs from flex by {diff}"
        );
        for pooling in [Pooling::Mean, Pooling::Cls, Pooling::Max, Pooling::Pooler] {
            // One batch of every text: the forward pass's shapes again, whose kernels Mesa has
            // compiled already (each new shape costs a compile on the CPU).
            let options = EncodeOptions {
                pooling: Some(pooling),
                batch_size: texts.len(),
                ..EncodeOptions::default()
            };
            let ours = encoder.encode(&texts, &options).unwrap();
            let cpu = reference.encode(&texts, &options).unwrap();
            assert_eq!(ours.values.len(), cpu.values.len(), "{backend} {pooling}");
            let diff = max_abs_diff(&ours.values, &cpu.values);
            eprintln!("{backend}: {pooling} embeddings differ from flex by {diff:.2e}");
            assert!(diff <= 1e-5, "{backend} {pooling}: {diff}");
        }
    }
}

/// The tiny fixture with every dropout probability set to 0, in a temporary directory.
fn tiny_without_dropout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(tiny_dir()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::os::unix::fs::symlink(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    let config_path = dir.path().join("config.json");
    std::fs::remove_file(&config_path).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny_dir().join("config.json")).unwrap())
            .unwrap();
    config["hidden_dropout_prob"] = 0.0.into();
    config["attention_probs_dropout_prob"] = 0.0.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    dir
}

/// Every float parameter's values, in the module's visiting order.
fn parameters(model: &MultiTaskModel) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().into_data().try_into_vec().unwrap());
        }
    }
    let mut collect = Collect(Vec::new());
    model.visit(&mut collect);
    collect.0
}

/// Every float parameter's gradient (`None` for one without), in the module's visiting order.
fn gradients(model: &MultiTaskModel, grads: &GradientsParams) -> Vec<Option<Vec<f32>>> {
    struct Collect<'a>(&'a GradientsParams, Vec<Option<Vec<f32>>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let grad = self.0.get::<D>(param.id);
            self.1
                .push(grad.map(|g| g.into_data().try_into_vec().unwrap()));
        }
    }
    let mut collect = Collect(grads, Vec::new());
    model.visit(&mut collect);
    collect.1
}

/// What five AdamW steps on the same 8 texts (dropout off, seed 7) give on one backend.
struct FiveSteps {
    losses: Vec<f32>,
    first_gradients: Vec<Option<Vec<f32>>>,
    initial: Vec<Vec<f32>>,
    last: Vec<Vec<f32>>,
}

fn five_steps(model_dir: &Path, backend: Backend) -> FiveSteps {
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
    let initial = parameters(&classifier.model);
    let mut losses = Vec::new();
    let mut first_gradients = Vec::new();
    for step in 0..5 {
        let logits = classifier.model.forward(&batch.to_input(&device), 0);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels.to_vec(), [8]), &device);
        let loss = loss_fn.forward(logits, targets);
        losses.push(loss.clone().into_scalar::<f32>());
        let grads = GradientsParams::from_grads(loss.backward(), &classifier.model);
        if step == 0 {
            first_gradients = gradients(&classifier.model, &grads);
        }
        let (model, _) = optimizer.step(classifier.model, grads, step);
        classifier.model = model;
    }
    FiveSteps {
        losses,
        first_gradients,
        initial,
        last: parameters(&classifier.model),
    }
}

/// The largest absolute value of `values` (NaN if any is not finite).
fn largest(values: &[f32]) -> f32 {
    max_abs_diff(values, &vec![0.0; values.len()])
}

#[test]
fn five_training_steps_match_the_cpu_backend() {
    let backends = accelerated();
    let model = tiny_without_dropout();
    let expected = five_steps(model.path(), Backend::Flex);
    eprintln!("flex losses: {:?}", expected.losses);
    assert!(
        expected.losses[4] < expected.losses[0],
        "flex: the loss falls"
    );
    // Every parameter the loss reaches (all but the pooler's, which mean pooling skips).
    let trained = expected.first_gradients.iter().flatten().count();
    assert!(
        trained >= expected.initial.len() - 2 && trained > 20,
        "flex: only {trained} of {} parameters have a gradient",
        expected.initial.len()
    );
    // Parameters whose gradient is zero but for rounding (below 1e-6 of the largest): the
    // attention key biases, to which softmax is invariant. Their values on two backends are
    // rounding noise, and AdamW's updates of them follow its sign; they are left out of the
    // comparisons (one per layer at most).
    let largest_values: Vec<f32> = expected
        .first_gradients
        .iter()
        .flatten()
        .map(|g| largest(g))
        .collect();
    // `largest` is NaN for a gradient holding a NaN or an infinity; f32::max would drop it.
    assert!(
        largest_values.iter().all(|v| v.is_finite()),
        "flex: a gradient is not finite"
    );
    let scale = largest_values.iter().fold(0.0f32, |m, &v| m.max(v));
    let noise: Vec<usize> = (0..expected.first_gradients.len())
        .filter(|&i| {
            expected.first_gradients[i]
                .as_ref()
                .is_some_and(|g| largest(g) < 1e-6 * scale)
        })
        .collect();
    eprintln!("flex: gradients of rounding size only: parameters {noise:?}");
    assert!(noise.len() <= 2, "{noise:?}");
    for backend in backends {
        let run = five_steps(model.path(), backend);
        eprintln!("{backend} losses: {:?}", run.losses);
        assert!(
            run.losses[4] < run.losses[0],
            "{backend}: the loss falls: {:?}",
            run.losses
        );
        let diff = max_abs_diff(&run.losses, &expected.losses);
        eprintln!("{backend}: losses differ from flex by {diff:.2e}");
        assert!(
            diff <= 1e-5,
            "{backend}: losses differ from flex by {diff}: {:?} vs {:?}",
            run.losses,
            expected.losses
        );

        // The first step's gradients, each tensor against its largest value: an error in one
        // backend's backward shows here before the optimiser's normalisation hides it.
        assert_eq!(run.first_gradients.len(), expected.first_gradients.len());
        let mut worst_gradient = 0.0f32;
        for (i, (ours, cpu)) in run
            .first_gradients
            .iter()
            .zip(&expected.first_gradients)
            .enumerate()
        {
            let (ours, cpu) = match (ours, cpu) {
                (Some(ours), Some(cpu)) => (ours, cpu),
                (None, None) => continue,
                _ => panic!("{backend}: parameter {i} has a gradient on one backend only"),
            };
            if noise.contains(&i) {
                continue;
            }
            let relative = max_abs_diff(ours, cpu) / largest(cpu);
            if relative.is_nan() || relative > worst_gradient {
                worst_gradient = relative;
            }
            assert!(
                relative <= 1e-4,
                "{backend}: parameter {i}'s gradient differs from flex by {relative:e} of its \
                 largest ({:e})",
                largest(cpu)
            );
        }

        // The parameters after five steps, each tensor against the largest change flex made to
        // it: AdamW moves each weight by about the learning rate per step, so a wrong update
        // direction shows here, however small against the weights themselves (rounding the
        // weights, near 0.3, costs about 1e-3 of an update of 1.5e-4).
        assert_eq!(run.last.len(), expected.last.len());
        let mut worst_parameter = 0.0f32;
        for (i, ((ours, cpu), start)) in run
            .last
            .iter()
            .zip(&expected.last)
            .zip(&expected.initial)
            .enumerate()
        {
            if expected.first_gradients[i].is_none() {
                assert_eq!(
                    max_abs_diff(ours, cpu),
                    0.0,
                    "{backend}: untrained parameter {i}"
                );
                continue;
            }
            if noise.contains(&i) {
                continue;
            }
            let moved = max_abs_diff(cpu, start);
            assert!(moved > 0.0, "flex: parameter {i} did not change");
            let relative = max_abs_diff(ours, cpu) / moved;
            if relative.is_nan() || relative > worst_parameter {
                worst_parameter = relative;
            }
            assert!(
                relative <= 1e-2,
                "{backend}: parameter {i} differs from flex by {relative:e} of its largest \
                 update ({moved:e})"
            );
        }
        eprintln!(
            "{backend}: first gradients within {worst_gradient:.2e} of each tensor's largest, \
             parameters after five steps within {worst_parameter:.2e} of each tensor's largest \
             update"
        );
    }
}
