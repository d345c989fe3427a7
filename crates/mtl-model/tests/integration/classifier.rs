//! Building, running, saving, loading and freezing a multi-task model on the tiny fixture BERT.

use std::collections::BTreeMap;
use std::path::PathBuf;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use mtl_model::mtl_bert::collect_tensors;
use mtl_model::mtl_bert::{Backend, SentenceEncoder};
use mtl_model::{Error, HeadKind, ModelPart, MtlConfig, MultiTaskClassifier, TaskConfig};

fn tiny_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-bert")
}

fn device() -> Device {
    Backend::default_compiled().device(0).unwrap()
}

fn config() -> MtlConfig {
    let mut config = MtlConfig::new(vec![
        TaskConfig::new(
            "topic",
            &["business", "entertainment", "politics", "sport", "tech"],
        ),
        TaskConfig::new("sentiment", &["negative", "neutral", "positive"]),
    ]);
    config.tasks[1].head = HeadKind::Mlp { width: 16 };
    config
}

const TEXTS: [&str; 4] = [
    "the market price was good",
    "",
    "the team did win the game , a very long game that was played in the old town",
    "new phone",
];

use crate::compare;
use compare::max_abs_diff;

/// A float tensor's values.
fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().convert::<f32>().try_into_vec().unwrap()
}

/// Every parameter's values by name (PyTorch names), as raw bytes.
fn parameters(model: &impl Module) -> BTreeMap<String, Vec<u8>> {
    collect_tensors(model, |p| p.to_owned())
        .into_iter()
        .map(|t| {
            let (name, _, _, _, bytes) = t.into_parts().unwrap();
            (name, bytes.to_vec())
        })
        .collect()
}

#[test]
fn same_seed_gives_same_heads() {
    let a = MultiTaskClassifier::from_pretrained(tiny_dir(), config(), 42, &device()).unwrap();
    let b = MultiTaskClassifier::from_pretrained(tiny_dir(), config(), 42, &device()).unwrap();
    let c = MultiTaskClassifier::from_pretrained(tiny_dir(), config(), 43, &device()).unwrap();
    assert_eq!(parameters(&a.model.heads), parameters(&b.model.heads));
    assert_ne!(parameters(&a.model.heads), parameters(&c.model.heads));
    assert_eq!(parameters(&a.model.encoder), parameters(&c.model.encoder));
}

#[test]
fn one_encoder_pass_gives_every_task_the_same_logits() {
    let classifier =
        MultiTaskClassifier::from_pretrained(tiny_dir(), config(), 1, &device()).unwrap();
    let tokenizer = classifier.tokenizer();
    let batch = tokenizer.pad(tokenizer.encode(&TEXTS).unwrap()).unwrap();
    let input = batch.to_input(&device());
    let all = classifier.model.forward_all(&input);
    assert_eq!(all.len(), 2);
    for (task, logits) in all.into_iter().enumerate() {
        let alone = classifier.model.forward(&input, task);
        assert_eq!(
            logits.dims(),
            [4, classifier.config().tasks[task].labels.len()]
        );
        let diff = max_abs_diff(&values(logits), &values(alone));
        assert_eq!(diff, 0.0);
    }
}

#[test]
fn predictions_come_in_text_order_with_probabilities() {
    let classifier =
        MultiTaskClassifier::from_pretrained(tiny_dir(), config(), 1, &device()).unwrap();
    let all = classifier.predict(&TEXTS, None, 3).unwrap();
    assert_eq!(all.len(), TEXTS.len());
    for (text, predictions) in TEXTS.iter().zip(&all) {
        assert_eq!(predictions.len(), 2);
        for p in predictions {
            assert!(
                p.probabilities.iter().all(|v| v.is_finite()),
                "{:?}",
                p.probabilities
            );
            let sum: f32 = p.probabilities.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");
            let max = p.probabilities.iter().copied().max_by(f32::total_cmp);
            assert_eq!(Some(p.probabilities[p.label_index]), max);
        }
        let one = classifier.predict(&[text], Some("sentiment"), 1).unwrap();
        assert_eq!(one[0].len(), 1);
        assert_eq!(one[0][0].task, "sentiment");
        let diff = max_abs_diff(&one[0][0].probabilities, &predictions[1].probabilities);
        assert!(
            diff < 1e-6,
            "batched and single predictions differ by {diff}"
        );
    }
    let err = classifier.predict(&TEXTS, Some("spam"), 2).unwrap_err();
    assert!(matches!(err, Error::UnknownTask { .. }), "{err}");
}

#[test]
fn save_then_load_gives_the_same_model() {
    let classifier =
        MultiTaskClassifier::from_pretrained(tiny_dir(), config(), 5, &device()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("model");
    classifier.save(&saved).unwrap();
    for file in [
        "config.json",
        "tokenizer.json",
        "vocab.txt",
        "model.safetensors",
        "mtl.json",
    ] {
        assert!(saved.join(file).is_file(), "{file} saved");
    }
    let loaded = MultiTaskClassifier::load(&saved, &device()).unwrap();
    assert_eq!(loaded.config(), classifier.config());
    assert_eq!(parameters(&loaded.model), parameters(&classifier.model));
    assert_eq!(
        loaded.predict(&TEXTS, None, 2).unwrap(),
        classifier.predict(&TEXTS, None, 2).unwrap()
    );

    // The tensors carry Hugging Face's names; heads are under `heads.<task>`.
    let bytes = std::fs::read(saved.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = file.names().into_iter().map(String::from).collect();
    assert!(names.contains(&"encoder.layer.1.attention.self.query.weight".to_owned()));
    assert!(names.contains(&"embeddings.LayerNorm.weight".to_owned()));
    assert_eq!(
        file.tensor("heads.topic.output.weight").unwrap().shape(),
        [5, 32]
    );
    assert_eq!(
        file.tensor("heads.sentiment.hidden.weight")
            .unwrap()
            .shape(),
        [16, 32]
    );

    // Saving again replaces the saved model; a saved model also loads as a sentence encoder.
    classifier.save(&saved).unwrap();
    SentenceEncoder::load(&saved, &device()).unwrap();
}

#[test]
fn save_refuses_to_replace_other_directories() {
    let classifier =
        MultiTaskClassifier::from_pretrained(tiny_dir(), config(), 5, &device()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "keep me").unwrap();
    let err = classifier.save(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("is not a saved model; refusing to replace it"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("notes.txt")).unwrap(),
        "keep me"
    );
}

fn saved_model() -> (tempfile::TempDir, PathBuf) {
    let classifier =
        MultiTaskClassifier::from_pretrained(tiny_dir(), config(), 5, &device()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("model");
    classifier.save(&saved).unwrap();
    (dir, saved)
}

fn edit_mtl_json(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("mtl.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut value);
    std::fs::write(path, value.to_string()).unwrap();
}

#[test]
fn loading_errors_are_typed_and_clear() {
    let (_keep, saved) = saved_model();
    std::fs::remove_file(saved.join("mtl.json")).unwrap();
    let err = MultiTaskClassifier::load(&saved, &device()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::MissingFile {
                file: "mtl.json",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("has no mtl.json"), "{err}");

    let (_keep, saved) = saved_model();
    edit_mtl_json(&saved, |v| {
        v["tasks"][1]["labels"]
            .as_array_mut()
            .unwrap()
            .push("mixed".into())
    });
    let err = MultiTaskClassifier::load(&saved, &device()).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LabelMismatch {
                labels: 4,
                outputs: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("task \"sentiment\" lists 4 labels but its head has 3 outputs"),
        "{err}"
    );

    let (_keep, saved) = saved_model();
    edit_mtl_json(&saved, |v| {
        v["format_version"] = 2.into();
        v["crate_version"] = "9.0.0".into();
    });
    let err = MultiTaskClassifier::load(&saved, &device()).unwrap_err();
    assert!(
        matches!(err, Error::IncompatibleVersion { found: 2, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("format version 2 (by mtl-model 9.0.0)"),
        "{err}"
    );

    let (_keep, saved) = saved_model();
    edit_mtl_json(&saved, |v| v["tasks"][0]["name"] = "genre".into());
    let err = MultiTaskClassifier::load(&saved, &device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing tensor `heads.genre.output.weight`"),
        "{err}"
    );

    let (_keep, saved) = saved_model();
    std::fs::remove_file(saved.join("model.safetensors")).unwrap();
    let err = MultiTaskClassifier::load(&saved, &device())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("has no model.safetensors or pytorch_model.bin"),
        "{err}"
    );
}

/// Runs a few AdamW steps on every task's loss with `frozen` frozen; returns the parameters
/// before and after.
fn train_steps(frozen: &[ModelPart]) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, Vec<u8>>) {
    let device = device().autodiff();
    let mut classifier =
        MultiTaskClassifier::from_pretrained(tiny_dir(), config(), 3, &device).unwrap();
    let config = classifier.config().clone();
    let batch = {
        let tokenizer = classifier.tokenizer();
        tokenizer.pad(tokenizer.encode(&TEXTS).unwrap()).unwrap()
    };
    let mut model = classifier.model;
    for part in frozen {
        model = model.freeze(part, &config).unwrap();
    }
    let before = parameters(&model);
    if model.trainable_parameters() == 0 {
        classifier.model = model;
        return (before, parameters(&classifier.model));
    }
    let mut optim = AdamWConfig::new().init();
    let loss_fn = CrossEntropyLossConfig::new().init(&device);
    for _ in 0..3 {
        let input = batch.to_input(&device);
        let targets = Tensor::<1, Int>::from_ints([0, 1, 2, 1], &device);
        let losses: Vec<Tensor<1>> = model
            .forward_all(&input)
            .into_iter()
            .map(|logits| loss_fn.forward(logits, targets.clone()))
            .collect();
        let loss = Tensor::cat(losses, 0).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(1e-2, model, grads);
    }
    classifier.model = model;
    (before, parameters(&classifier.model))
}

#[test]
fn frozen_parameters_stay_bit_for_bit_and_the_rest_train() {
    /// Parts to freeze, and which parameters (by name) that freezes.
    type Case<'a> = (&'a [ModelPart], fn(&str) -> bool);
    let cases: [Case; 6] = [
        (&[], |_| false),
        (&[ModelPart::Encoder], |n| n.starts_with("encoder.")),
        (&[ModelPart::Embeddings], |n| {
            n.starts_with("encoder.embeddings.")
        }),
        (&[ModelPart::BottomLayers(1)], |n| {
            n.starts_with("encoder.encoder.layer.0.")
        }),
        (&[ModelPart::Head("sentiment".into())], |n| {
            n.starts_with("heads.1.")
        }),
        (&[ModelPart::All], |_| true),
    ];
    for (frozen, is_frozen) in cases {
        let (before, after) = train_steps(frozen);
        for (name, values) in &before {
            // The pooler is not used by mean pooling: it gets no gradient either way.
            let unused = name.starts_with("encoder.pooler.");
            if is_frozen(name) || unused {
                assert_eq!(&after[name], values, "{frozen:?}: {name} must not change");
            } else {
                // Changed, and to finite values (NaN weights differ from any before).
                assert_ne!(&after[name], values, "{frozen:?}: {name} must train");
                assert!(
                    after[name]
                        .chunks_exact(4)
                        .all(|b| f32::from_le_bytes(b.try_into().unwrap()).is_finite()),
                    "{frozen:?}: {name} trained to a NaN or an infinity"
                );
            }
        }
    }
}

#[test]
fn trainable_parameter_counts_follow_freezing() {
    let device = device().autodiff();
    let classifier =
        MultiTaskClassifier::from_pretrained(tiny_dir(), config(), 3, &device).unwrap();
    let config = classifier.config().clone();
    let model = classifier.model;
    let total = model.num_params();
    assert_eq!(model.trainable_parameters(), total);
    let heads: usize = model.heads.iter().map(Module::num_params).sum();
    let model = model.freeze(&ModelPart::Encoder, &config).unwrap();
    assert_eq!(model.trainable_parameters(), heads);
    let model = model.unfreeze(&ModelPart::Layer(1), &config).unwrap();
    let layer = model.encoder.encoder.layer[1].num_params();
    assert_eq!(model.trainable_parameters(), heads + layer);
    let model = model.freeze(&ModelPart::All, &config).unwrap();
    assert_eq!(model.trainable_parameters(), 0);
    let model = model.unfreeze(&ModelPart::All, &config).unwrap();
    assert_eq!(model.trainable_parameters(), total);
}

#[test]
fn freezing_unknown_parts_is_an_error() {
    let classifier =
        MultiTaskClassifier::from_pretrained(tiny_dir(), config(), 3, &device()).unwrap();
    let config = classifier.config().clone();
    let err = classifier
        .model
        .freeze(&ModelPart::Head("spam".into()), &config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown task \"spam\""), "{err}");
    let classifier =
        MultiTaskClassifier::from_pretrained(tiny_dir(), config.clone(), 3, &device()).unwrap();
    let err = classifier
        .model
        .freeze(&ModelPart::BottomLayers(3), &config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("the encoder has 2 layers"), "{err}");
}
