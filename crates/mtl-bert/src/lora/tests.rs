use std::path::PathBuf;

use burn::module::Param;

use super::*;
use crate::{Backend, BertInput, SentenceEncoder};

#[path = "../../../../tests/support/compare.rs"]
#[allow(
    unreachable_pub,
    reason = "shared with the integration tests, where it is reachable"
)]
mod compare;
use compare::max_abs_diff;

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-bert")
}

fn device() -> Device {
    Backend::default_compiled().device(0).unwrap()
}

fn input(encoder: &SentenceEncoder, device: &Device) -> BertInput {
    let tokenizer = encoder.tokenizer();
    let texts = [
        "the cat sat on the mat",
        "a much longer second text, with padding",
        "",
    ];
    let mut input = tokenizer
        .pad(tokenizer.encode(&texts).unwrap())
        .unwrap()
        .to_input(device);
    // Training's dropout (on an autodiff device) with the same masks in every forward.
    input.dropout = Some(crate::DropoutKey::new(9));
    input
}

fn values(tensor: Tensor<3>) -> Vec<f32> {
    tensor
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

fn config(targets: LoraTargets) -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        targets,
    }
}

/// Every `B` of `adapter` set to values drawn from `seed` (a new adapter's are zero).
fn with_random_b(adapter: LoraAdapter, seed: u64, device: &Device) -> LoraAdapter {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fill = |lora: Option<Lora>| {
        lora.map(|mut lora| {
            let dims = lora.lora_b.weight.dims();
            let b: Vec<f32> = (0..dims[0] * dims[1])
                .map(|_| (rng.random::<f64>() * 0.2 - 0.1) as f32)
                .collect();
            lora.lora_b.weight =
                Param::from_tensor(Tensor::from_data(TensorData::new(b, dims), device));
            lora
        })
    };
    LoraAdapter {
        layers: adapter
            .layers
            .into_iter()
            .map(|l| LayerLora {
                query: fill(l.query),
                key: fill(l.key),
                value: fill(l.value),
                attention_output: fill(l.attention_output),
                intermediate: fill(l.intermediate),
                output: fill(l.output),
            })
            .collect(),
        config: adapter.config,
    }
}

#[test]
fn a_new_adapter_changes_nothing() {
    for device in [device(), device().autodiff()] {
        let encoder = SentenceEncoder::load(tiny(), &device).unwrap();
        let input = input(&encoder, &device);
        let adapter = LoraAdapter::init(&config(LoraTargets::All), encoder.config(), 7, &device);
        let plain = values(encoder.model().forward(&input));
        let adapted = values(encoder.model().forward_adapted(&input, Some(&adapter)));
        let diff = max_abs_diff(&plain, &adapted);
        assert!(plain == adapted, "{device:?}: {diff}");
    }
}

#[test]
fn the_adapted_encoder_equals_the_merged_one() {
    // Inference (flex's fused kernels) and training (autodiff, Burn's operations).
    for device in [device(), device().autodiff()] {
        for targets in [LoraTargets::Attention, LoraTargets::All] {
            let encoder = SentenceEncoder::load(tiny(), &device).unwrap();
            let input = input(&encoder, &device);
            let adapter = with_random_b(
                LoraAdapter::init(&config(targets), encoder.config(), 3, &device),
                11,
                &device,
            );
            let adapted = values(encoder.model().forward_adapted(&input, Some(&adapter)));
            let plain = values(encoder.model().forward(&input));
            let reference = values(adapter.merge_into(encoder.model().clone()).forward(&input));
            // NaN or infinity fails: the difference is NaN then.
            let diff = max_abs_diff(&adapted, &reference);
            assert!(diff <= 1e-5, "{targets}: {diff}");
            let moved = adapted
                .iter()
                .zip(&plain)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                moved > 1e-3,
                "{targets}: the adapter moved the outputs by {moved}"
            );
        }
    }
}

#[test]
fn the_same_seed_gives_the_same_adapter() {
    let device = device();
    let bert = SentenceEncoder::load(tiny(), &device)
        .unwrap()
        .config()
        .clone();
    let a = |seed| {
        let adapter = LoraAdapter::init(&config(LoraTargets::Attention), &bert, seed, &device);
        let query = adapter.layers[0].query.as_ref().unwrap();
        let values: Vec<f32> = query
            .lora_a
            .weight
            .val()
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let bound = 1.0 / (bert.hidden_size as f32).sqrt();
        assert!(values.iter().all(|v| v.abs() <= bound), "{values:?}");
        assert!(adapter.layers[0].intermediate.is_none());
        values
    };
    assert_eq!(a(1), a(1));
    assert_ne!(a(1), a(2));
}

#[test]
fn peft_names_and_targets() {
    assert_eq!(
        peft::peft_name("layers.3.query.lora_a.weight"),
        "base_model.model.encoder.layer.3.attention.self.query.lora_A.weight"
    );
    assert_eq!(
        peft::peft_name("layers.0.attention_output.lora_b.weight"),
        "base_model.model.encoder.layer.0.attention.output.dense.lora_B.weight"
    );
    assert_eq!(
        peft::peft_name("layers.11.output.lora_b.weight"),
        "base_model.model.encoder.layer.11.output.dense.lora_B.weight"
    );
}

#[test]
fn peft_files_round_trip_and_bad_configs_are_errors() {
    let device = device();
    let encoder = SentenceEncoder::load(tiny(), &device).unwrap();
    let bert = encoder.config();
    let adapter = with_random_b(
        LoraAdapter::init(&config(LoraTargets::All), bert, 5, &device),
        6,
        &device,
    );
    let dir = tempfile::tempdir().unwrap();
    adapter.save_peft(dir.path(), "tiny-bert").unwrap();
    let loaded = LoraAdapter::load_peft(dir.path(), bert, &device).unwrap();
    assert_eq!(loaded.config, adapter.config);
    let input = input(&encoder, &device);
    assert_eq!(
        values(encoder.model().forward_adapted(&input, Some(&adapter))),
        values(encoder.model().forward_adapted(&input, Some(&loaded)))
    );

    // PEFT's own spelling of the same targets loads too; ambiguous or other ones do not.
    let config_path = dir.path().join(peft::CONFIG_FILE);
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut config = original.clone();
        config[key] = value;
        std::fs::write(&config_path, config.to_string()).unwrap();
        LoraAdapter::load_peft(dir.path(), bert, &device)
    };
    let names = serde_json::json!([
        "query",
        "key",
        "value",
        "attention.output.dense",
        "intermediate.dense",
        "output.dense"
    ]);
    assert!(
        with("target_modules", names).is_err(),
        "`output.dense` is ambiguous"
    );
    let names = serde_json::json!([
        "query",
        "key",
        "value",
        "attention.output.dense",
        "intermediate.dense",
        "layer.0.output.dense"
    ]);
    assert!(with("target_modules", names).is_err(), "one layer's only");
    for (key, value, field) in [
        ("use_dora", serde_json::json!(true), "use_dora"),
        ("bias", serde_json::json!("all"), "bias"),
        (
            "target_modules",
            serde_json::json!(["query", "value"]),
            "target_modules",
        ),
        (
            "target_modules",
            serde_json::json!(["dense"]),
            "target_modules",
        ),
        (
            "layers_to_transform",
            serde_json::json!([0]),
            "layers_to_transform",
        ),
        ("r", serde_json::json!(0), "r"),
    ] {
        let err = with(key, value).unwrap_err().to_string();
        assert!(
            err.contains(field) && err.contains(peft::CONFIG_FILE),
            "{key}: {err}"
        );
    }
    // The attention targets in PEFT's list spelling.
    let mut config = original.clone();
    config["target_modules"] =
        serde_json::json!(["query", "key", "value", "attention.output.dense"]);
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = LoraAdapter::load_peft(dir.path(), bert, &device)
        .unwrap_err()
        .to_string();
    // The file holds the feed-forward adapters too: named as an unexpected tensor.
    assert!(err.contains("intermediate.dense.lora_A.weight"), "{err}");
}
