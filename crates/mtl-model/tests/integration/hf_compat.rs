//! A saved model's encoder loads in Hugging Face `transformers` (`BertModel.from_pretrained`)
//! and gives the outputs our encoder gives.
//!
//! Needs the PyTorch reference environment (torch and transformers, `scripts/requirements.txt`):
//! the virtual environment `$MTL_TORCH_VENV` names, else `.cache/torch-venv`. `cargo xtask test`
//! creates it (with `scripts/ensure_venv.py`) and passes its directory in `MTL_TORCH_VENV`;
//! without it this test fails, saying how to create it, rather than passing unchecked.

use std::process::Command;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use mtl_model::mtl_bert::{Backend, EncodeOptions, Pooling, SentenceEncoder};
use mtl_model::{MtlConfig, MultiTaskClassifier, TaskConfig};

use crate::compare;
use crate::reference_venv;

use compare::max_abs_diff;

/// Every float parameter of an encoder, concatenated in visiting order.
fn encoder_weights(encoder: &SentenceEncoder) -> Vec<f32> {
    struct Collect(Vec<f32>);
    impl burn::module::ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
            let values: Vec<f32> = param.val().into_data().try_into_vec().unwrap();
            self.0.extend(values);
        }
    }
    let mut collect = Collect(Vec::new());
    encoder.model().visit(&mut collect);
    collect.0
}

const CHECK: &str = r#"
import json, sys, torch
from transformers import BertModel
model_dir, inputs = sys.argv[1], json.load(open(sys.argv[2]))
model, info = BertModel.from_pretrained(model_dir, output_loading_info=True)
assert not info["missing_keys"], f"missing: {info['missing_keys']}"
assert all(k.startswith("heads.") for k in info["unexpected_keys"]), info["unexpected_keys"]
model.eval()
attention = torch.tensor(inputs["attention_mask"])
with torch.no_grad():
    out = model(input_ids=torch.tensor(inputs["input_ids"]), attention_mask=attention)
mask = attention.bool()
weights = attention.unsqueeze(-1).float()
mean = (out.last_hidden_state * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
worst = 0.0
finite = True
for name, theirs, ours in [
    ("last_hidden_state", out.last_hidden_state[mask], torch.tensor(inputs["last_hidden_state"])[mask]),
    ("mean pooling", mean, torch.tensor(inputs["mean"])),
    ("pooler", out.pooler_output, torch.tensor(inputs["pooler"])),
]:
    # torch's max propagates NaN, and NaN <= tolerance is false; the finiteness check says so plainly.
    finite = finite and bool(torch.isfinite(theirs).all()) and bool(torch.isfinite(ours).all())
    diff = (theirs - ours).abs().max().item()
    worst = max(worst, diff)
    print(f"{name}: max abs difference {diff:.2e}")
print(f"all finite: {finite}")
sys.exit(0 if finite and worst <= 1e-5 else 1)
"#;

#[test]
fn fine_tuned_encoder_loads_in_transformers() {
    let python = reference_venv::python("torch, transformers");
    let device = Backend::default_compiled().device(0).unwrap().autodiff();
    let config = MtlConfig::new(vec![TaskConfig::new("topic", &["a", "b", "c"])]);
    let tiny =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-bert");
    let mut classifier = MultiTaskClassifier::from_pretrained(&tiny, config, 0, &device).unwrap();
    let texts = ["the cat sat on the mat", "hello world", ""];
    let batch = classifier
        .tokenizer()
        .pad(classifier.tokenizer().encode(&texts).unwrap())
        .unwrap();

    // One real optimisation step, so the saved encoder differs from the fixture's.
    let logits = classifier.model.forward(&batch.to_input(&device), 0);
    let targets = Tensor::<1, Int>::from_ints([0, 1, 2], &device);
    let loss = CrossEntropyLossConfig::new()
        .init(&device)
        .forward(logits, targets);
    let grads = GradientsParams::from_grads(loss.backward(), &classifier.model);
    classifier.model = AdamWConfig::new()
        .init()
        .step(1e-2, classifier.model, grads);

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("model");
    classifier.save(&saved).unwrap();

    // The step moved the encoder: transformers must load the trained weights, not the fixture's.
    let cpu = device.clone().without_autodiff();
    let fixture = SentenceEncoder::load(&tiny, &cpu).unwrap();
    let trained = SentenceEncoder::load(&saved, &cpu).unwrap();
    let moved = max_abs_diff(&encoder_weights(&fixture), &encoder_weights(&trained));
    assert!(
        moved > 1e-4,
        "the saved encoder is the fixture's (moved {moved})"
    );

    // Our pooled embeddings of the saved model (mean and pooler, not normalised).
    let pooled = |pooling| {
        let options = EncodeOptions {
            pooling: Some(pooling),
            normalize: Some(false),
            ..EncodeOptions::default()
        };
        let embeddings = trained.encode(&texts, &options).unwrap();
        embeddings
            .rows()
            .map(<[f32]>::to_vec)
            .collect::<Vec<Vec<f32>>>()
    };
    let hidden = classifier
        .model
        .valid()
        .encoder
        .forward(&batch.to_input(&device.clone().without_autodiff()));
    let shape = [batch.batch_size, batch.seq_len];
    let rows = |v: &[i64]| v.chunks(shape[1]).map(<[i64]>::to_vec).collect::<Vec<_>>();
    let values: Vec<f32> = hidden.into_data().try_into_vec().unwrap();
    let hidden_size = values.len() / (shape[0] * shape[1]);
    let nested: Vec<Vec<Vec<f32>>> = values
        .chunks(shape[1] * hidden_size)
        .map(|row| row.chunks(hidden_size).map(<[f32]>::to_vec).collect())
        .collect();
    let inputs = serde_json::json!({
        "input_ids": rows(&batch.input_ids),
        "attention_mask": rows(&batch.attention_mask),
        "last_hidden_state": nested,
        "mean": pooled(Pooling::Mean),
        "pooler": pooled(Pooling::Pooler),
    });
    let inputs_path = dir.path().join("inputs.json");
    std::fs::write(&inputs_path, inputs.to_string()).unwrap();
    let output = Command::new(python)
        .args(["-c", CHECK])
        .arg(&saved)
        .arg(&inputs_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("transformers: {stdout}");
    assert!(
        output.status.success(),
        "transformers check failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
