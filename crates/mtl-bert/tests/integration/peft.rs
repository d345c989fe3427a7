//! Our LoRA adapters in Hugging Face PEFT (`scripts/peft_reference.py`, peft 0.22.0 from the
//! reference environment): an adapter of ours, saved in PEFT's format, loaded by
//! `PeftModel.from_pretrained` onto `transformers.BertModel`, gives our adapted encoder's last
//! hidden states within 1e-5, and so does PEFT's `merge_and_unload()`.

use burn::module::Param;
use mtl_bert::burn;
use mtl_bert::burn::prelude::*;
use mtl_bert::{Backend, LoraAdapter, LoraConfig, LoraTargets, SentenceEncoder};
use serde_json::{Value, json};

use crate::common::{max_abs_diff, tiny_dir};
use crate::reference_venv;

/// `adapter` with every `B` set to `value * (1 + index % 7)` (a new adapter's are zero and
/// would change nothing).
fn with_nonzero_b(mut adapter: LoraAdapter, value: f32) -> LoraAdapter {
    let mut index = 0;
    for layer in &mut adapter.layers {
        for lora in [
            &mut layer.query,
            &mut layer.key,
            &mut layer.value,
            &mut layer.attention_output,
            &mut layer.intermediate,
            &mut layer.output,
        ]
        .into_iter()
        .flatten()
        {
            let weight = lora.lora_b.weight.val();
            let [rows, cols] = weight.dims();
            let values: Vec<f32> = (0..rows * cols)
                .map(|i| value * (1 + (index + i) % 7) as f32 * if i % 2 == 0 { 1.0 } else { -1.0 })
                .collect();
            index += 1;
            lora.lora_b.weight = Param::from_tensor(Tensor::from_data(
                TensorData::new(values, [rows, cols]),
                &weight.device(),
            ));
        }
    }
    adapter
}

#[test]
fn peft_loads_our_adapters() {
    let device = Backend::default_compiled().device(0).unwrap();
    let encoder = SentenceEncoder::load(tiny_dir(), &device).unwrap();
    let texts = [
        "the cat sat on the mat",
        "LoRA adapters, shared or per task",
        "a",
    ];
    let tokenizer = encoder.tokenizer();
    let batch = tokenizer.pad(tokenizer.encode(&texts).unwrap()).unwrap();
    for targets in [LoraTargets::Attention, LoraTargets::All] {
        let config = LoraConfig {
            rank: 4,
            alpha: 8.0,
            targets,
        };
        let adapter = with_nonzero_b(
            LoraAdapter::init(&config, encoder.config(), 1, &device),
            0.02,
        );
        let dir = tempfile::tempdir().unwrap();
        adapter.save_peft(dir.path(), "tiny-bert").unwrap();

        let ours: Vec<f32> = encoder
            .model()
            .forward_adapted(&batch.to_input(&device), Some(&adapter))
            .into_data()
            .try_into_vec()
            .unwrap();
        let plain: Vec<f32> = encoder
            .model()
            .forward(&batch.to_input(&device))
            .into_data()
            .try_into_vec()
            .unwrap();

        let request = json!({
            "model": tiny_dir(),
            "adapter": dir.path(),
            "texts": texts,
        });
        let output = reference_venv::run_script(
            "peft_reference.py",
            "torch, transformers, peft",
            &request.to_string(),
        );
        let answer: Value = serde_json::from_str(&output).unwrap();
        eprintln!("peft {}", answer["peft"]);
        let ids: Vec<Vec<u32>> = serde_json::from_value(answer["input_ids"].clone()).unwrap();
        let our_ids: Vec<u32> = batch.input_ids.iter().map(|&id| id as u32).collect();
        assert_eq!(ids.concat(), our_ids, "the tokenisations differ");
        let width = encoder.config().hidden_size;
        // Real tokens only: padding rows hold values that nothing reads.
        let mask: Vec<bool> = batch.attention_mask.iter().map(|&m| m > 0).collect();
        let real = |values: &[f32]| -> Vec<f32> {
            values
                .chunks(width)
                .zip(&mask)
                .filter(|(_, keep)| **keep)
                .flat_map(|(row, _)| row.to_vec())
                .collect()
        };
        for key in ["adapted", "merged"] {
            let theirs: Vec<Vec<Vec<f32>>> = serde_json::from_value(answer[key].clone()).unwrap();
            let theirs: Vec<f32> = theirs.concat().concat();
            let diff = max_abs_diff(&real(&ours), &real(&theirs));
            eprintln!("{targets}, {key}: max difference {diff:e}");
            assert!(diff <= 1e-5, "{targets}, PEFT's {key}: {diff}");
        }
        let moved = max_abs_diff(&real(&ours), &real(&plain));
        assert!(
            moved > 1e-2,
            "{targets}: the adapter moved the outputs by {moved}"
        );
    }
}
