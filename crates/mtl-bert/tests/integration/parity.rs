//! Parity with Hugging Face `transformers` on the committed fixtures (see
//! `scripts/make_fixtures.py`), on every CPU backend compiled in.
//!
//! Tolerances (max absolute difference): last hidden state, CLS and pooler outputs 2e-5;
//! normalised mean-pooled embeddings 1e-5; token ids exact. The fixtures themselves are
//! checked against the script that wrote them (`committed_fixtures_equal_what_the_script_writes`).

use crate::common;

/// Last hidden state, CLS and pooler outputs against `transformers` (max absolute difference):
/// 5x the largest measured (4.1e-6, MiniLM's last hidden state), with room for the last bits
/// that torch's and our kernels round differently on another instruction set.
const OUTPUT_TOLERANCE: f32 = 2e-5;

use crate::reference_venv;

use common::{
    Reference, assert_close, copy_dir, cpu_devices, fixtures, max_abs_diff, minilm_dir, tiny_dir,
};
use mtl_bert::burn::prelude::*;
use mtl_bert::{
    BertConfig, BertModel, EncodeOptions, ModelDir, Pooling, SentenceEncoder, TokenBatch, pool,
};

/// `[batch, seq, hidden]` values -> the rows of real tokens only.
fn real_tokens(values: &[f32], mask: &[i64], hidden: usize) -> Vec<f32> {
    values
        .chunks_exact(hidden)
        .zip(mask)
        .filter(|(_, m)| **m != 0)
        .flat_map(|(row, _)| row.iter().copied())
        .collect()
}

fn tensor_values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_into_vec().unwrap()
}

#[test]
fn tiny_token_ids_match_transformers() {
    let reference = Reference::load(&tiny_dir());
    let texts = reference.strings("texts");
    let expected_ids: Vec<i64> = reference.ids("input_ids").concat();
    let expected_mask: Vec<i64> = reference.ids("attention_mask").concat();
    let dir = ModelDir::new(tiny_dir()).unwrap();
    let tokenizer = dir.tokenizer(64).unwrap();
    let batch = tokenizer.pad(tokenizer.encode(&texts).unwrap()).unwrap();
    assert_eq!(batch.input_ids, expected_ids);
    assert_eq!(batch.attention_mask, expected_mask);

    let pair = reference.strings("pair");
    let encoded = tokenizer.encode_pairs(&[(&pair[0], &pair[1])]).unwrap();
    let batch = tokenizer.pad(encoded).unwrap();
    let expected_types: Vec<i64> =
        serde_json::from_value(reference.meta["pair_token_type_ids"].clone()).unwrap();
    let expected_pair: Vec<i64> =
        serde_json::from_value(reference.meta["pair_input_ids"].clone()).unwrap();
    assert_eq!(batch.input_ids, expected_pair);
    assert_eq!(batch.token_type_ids, expected_types);
    assert!(
        expected_types.contains(&1),
        "the pair fixture has a second segment"
    );
}

#[test]
fn vocab_txt_fallback_tokenizes_like_tokenizer_json() {
    let with_json = ModelDir::new(tiny_dir()).unwrap().tokenizer(64).unwrap();
    let copy = copy_dir(&tiny_dir());
    std::fs::remove_file(copy.path().join("tokenizer.json")).unwrap();
    let fallback = ModelDir::new(copy.path()).unwrap().tokenizer(64).unwrap();
    let texts = Reference::load(&tiny_dir()).strings("texts");
    let ids = |t: &mtl_bert::BertTokenizer| t.pad(t.encode(&texts).unwrap()).unwrap();
    assert_eq!(ids(&fallback), ids(&with_json));
}

fn tiny_outputs(
    activation: &str,
    device: &Device,
    weights: &str,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let reference = Reference::load(&tiny_dir());
    let dir = ModelDir::new(tiny_dir()).unwrap();
    let text = std::fs::read_to_string(dir.file("config.json"))
        .unwrap()
        .replace(
            "\"hidden_act\": \"gelu\"",
            &format!("\"hidden_act\": \"{activation}\""),
        );
    let config = BertConfig::from_json(&text, &dir.file("config.json")).unwrap();
    let model = BertModel::load(fixtures().join(weights), &config, device).unwrap();
    let tokenizer = dir.tokenizer(64).unwrap();

    let texts = reference.strings("texts");
    let batch = tokenizer.pad(tokenizer.encode(&texts).unwrap()).unwrap();
    let input = batch.to_input(device);
    let hidden = model.forward(&input);
    let pooled = model.pooler.as_ref().unwrap().forward(hidden.clone());
    let hidden = real_tokens(
        &tensor_values(hidden),
        &batch.attention_mask,
        config.hidden_size,
    );

    let pair = reference.strings("pair");
    let pair_batch = tokenizer
        .pad(tokenizer.encode_pairs(&[(&pair[0], &pair[1])]).unwrap())
        .unwrap();
    let pair_hidden = model.forward(&pair_batch.to_input(device));
    let pair_pooled = model.pooler.as_ref().unwrap().forward(pair_hidden.clone());
    (
        hidden,
        tensor_values(pooled),
        tensor_values(pair_hidden),
        tensor_values(pair_pooled),
    )
}

#[test]
fn tiny_outputs_match_transformers_for_every_activation() {
    let reference = Reference::load(&tiny_dir());
    let mask: Vec<i64> = reference.ids("attention_mask").concat();
    for (backend, device) in cpu_devices() {
        for activation in reference.strings("activations") {
            let what = |part: &str| format!("{backend} {activation} {part}");
            let (hidden, pooled, pair_hidden, pair_pooled) =
                tiny_outputs(&activation, &device, "tiny-bert/model.safetensors");
            let (_, expected) = reference.tensor(&format!("{activation}.last_hidden_state"));
            assert_close(
                &what("last hidden state"),
                &hidden,
                &real_tokens(&expected, &mask, 32),
                OUTPUT_TOLERANCE,
            );
            let (_, expected) = reference.tensor(&format!("{activation}.pooler_output"));
            assert_close(&what("pooler"), &pooled, &expected, OUTPUT_TOLERANCE);
            let (_, expected) = reference.tensor(&format!("{activation}.pair_last_hidden_state"));
            assert_close(
                &what("pair last hidden state"),
                &pair_hidden,
                &expected,
                OUTPUT_TOLERANCE,
            );
            let (_, expected) = reference.tensor(&format!("{activation}.pair_pooler_output"));
            assert_close(
                &what("pair pooler"),
                &pair_pooled,
                &expected,
                OUTPUT_TOLERANCE,
            );
        }
    }
}

#[test]
fn pytorch_bin_with_bert_prefix_and_pretraining_heads_loads_the_same_encoder() {
    for (backend, device) in cpu_devices() {
        let (hidden, pooled, _, _) = tiny_outputs("gelu", &device, "tiny-bert/model.safetensors");
        let (bin_hidden, bin_pooled, _, _) =
            tiny_outputs("gelu", &device, "tiny-bert-pretraining/pytorch_model.bin");
        assert_close(&format!("{backend} hidden"), &bin_hidden, &hidden, 0.0);
        assert_close(&format!("{backend} pooled"), &bin_pooled, &pooled, 0.0);
    }
}

/// Rewrites the tiny model's weights in another float type.
fn tiny_weights_as(dtype: safetensors::Dtype) -> tempfile::TempDir {
    let dir = copy_dir(&tiny_dir());
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let converted: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let data = view
                .data()
                .chunks_exact(4)
                .flat_map(|b| {
                    let x = f32::from_le_bytes(b.try_into().unwrap());
                    match dtype {
                        safetensors::Dtype::F16 => half::f16::from_f32(x).to_le_bytes(),
                        _ => half::bf16::from_f32(x).to_le_bytes(),
                    }
                })
                .collect();
            (name, view.shape().to_vec(), data)
        })
        .collect();
    let views: Vec<_> = converted
        .iter()
        .map(|(name, shape, data)| {
            (
                name.clone(),
                safetensors::tensor::TensorView::new(dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), out).unwrap();
    dir
}

#[test]
fn half_precision_weights_load_as_f32() {
    let reference = Reference::load(&tiny_dir());
    let (_, expected) = reference.tensor("gelu.pooler_output");
    for dtype in [safetensors::Dtype::F16, safetensors::Dtype::BF16] {
        let dir = tiny_weights_as(dtype);
        let device = mtl_bert::Backend::default_compiled().device(0).unwrap();
        let encoder = SentenceEncoder::load(dir.path(), &device).unwrap();
        let texts = reference.strings("texts");
        let options = EncodeOptions {
            pooling: Some(Pooling::Pooler),
            ..EncodeOptions::default()
        };
        let pooled = encoder.encode(&texts, &options).unwrap();
        // Rounding every weight to 11 (f16) or 8 (bf16) significant bits moves outputs by
        // about that relative precision; a wrong conversion would move them by O(1).
        let tolerance = if dtype == safetensors::Dtype::F16 {
            0.02
        } else {
            0.15
        };
        assert_close(
            &format!("{dtype:?} pooler"),
            &pooled.values,
            &expected,
            tolerance,
        );
    }
}

fn minilm_reference() -> Reference {
    Reference::load(&fixtures().join("minilm"))
}

#[test]
fn minilm_token_ids_match_transformers() {
    let reference = minilm_reference();
    let texts = reference.strings("texts");
    let dir = ModelDir::new(minilm_dir()).unwrap();
    let config = dir.config().unwrap();
    let defaults = dir.sentence_defaults(&config).unwrap();
    assert_eq!(defaults.max_seq_length, 256);
    assert_eq!(defaults.pooling, Pooling::Mean);
    assert!(defaults.normalize);
    let tokenizer = dir.tokenizer(defaults.max_seq_length).unwrap();
    let encodings = tokenizer.encode(&texts).unwrap();
    for (i, (encoding, expected)) in encodings.iter().zip(reference.ids("input_ids")).enumerate() {
        let ids: Vec<i64> = encoding.get_ids().iter().map(|&id| i64::from(id)).collect();
        assert_eq!(ids, expected, "text {i}: {:?}", texts[i]);
    }
    let longest = encodings.iter().map(|e| e.len()).max().unwrap();
    assert_eq!(longest, 256, "the long text is truncated to max_seq_length");
    assert_eq!(
        encodings.iter().find(|e| e.len() == 256).unwrap().get_ids()[255],
        102
    );

    let copy = copy_dir(&minilm_dir());
    std::fs::remove_file(copy.path().join("tokenizer.json")).unwrap();
    let fallback = ModelDir::new(copy.path()).unwrap().tokenizer(256).unwrap();
    let fallback_ids: Vec<Vec<u32>> = fallback
        .encode(&texts)
        .unwrap()
        .iter()
        .map(|e| e.get_ids().to_vec())
        .collect();
    let json_ids: Vec<Vec<u32>> = encodings.iter().map(|e| e.get_ids().to_vec()).collect();
    assert_eq!(fallback_ids, json_ids, "vocab.txt fallback");
}

#[test]
fn minilm_outputs_match_transformers() {
    let reference = minilm_reference();
    let texts = reference.strings("texts");
    for (backend, device) in cpu_devices() {
        let encoder = SentenceEncoder::load(minilm_dir(), &device).unwrap();
        for (i, text) in texts.iter().enumerate() {
            let what = |part: &str| format!("{backend} text {i} {part}");
            let batch = encoder
                .tokenizer()
                .pad(encoder.tokenizer().encode(&[text]).unwrap())
                .unwrap();
            let input = batch.to_input(encoder.device());
            let hidden = encoder.model().forward(&input);
            let (_, expected) = reference.tensor(&format!("{i}.last_hidden_state"));
            assert_close(
                &what("last hidden state"),
                &tensor_values(hidden.clone()),
                &expected,
                OUTPUT_TOLERANCE,
            );
            let (_, expected) = reference.tensor(&format!("{i}.cls"));
            assert_close(
                &what("cls"),
                &tensor_values(
                    pool(
                        Pooling::Cls,
                        hidden.clone(),
                        input.attention_mask.clone(),
                        None,
                    )
                    .unwrap(),
                ),
                &expected,
                OUTPUT_TOLERANCE,
            );
            let pooled = encoder.model().pooler.as_ref().unwrap().forward(hidden);
            let (_, expected) = reference.tensor(&format!("{i}.pooler_output"));
            assert_close(
                &what("pooler"),
                &tensor_values(pooled),
                &expected,
                OUTPUT_TOLERANCE,
            );
        }
        let options = EncodeOptions {
            batch_size: 4,
            ..EncodeOptions::default()
        };
        let embeddings = encoder.encode(&texts, &options).unwrap();
        let (shape, expected) = reference.tensor("mean_normalized");
        assert_eq!(shape, [texts.len(), 384]);
        assert_close(
            &format!("{backend} normalised mean"),
            &embeddings.values,
            &expected,
            1e-5,
        );
    }
}

#[test]
fn embeddings_do_not_depend_on_batch_companions() {
    let texts = minilm_reference().strings("texts");
    for (backend, device) in cpu_devices() {
        let encoder = SentenceEncoder::load(minilm_dir(), &device).unwrap();
        for pooling in [Pooling::Mean, Pooling::Max, Pooling::Cls, Pooling::Pooler] {
            let options = EncodeOptions {
                batch_size: texts.len(),
                pooling: Some(pooling),
                normalize: Some(true),
                ..EncodeOptions::default()
            };
            let together = encoder.encode(&texts, &options).unwrap();
            for (i, text) in texts.iter().enumerate() {
                let alone = encoder.encode(&[text], &options).unwrap();
                assert_close(
                    &format!("{backend} {pooling} text {i} alone vs in a padded batch"),
                    &alone.values,
                    together.row(i),
                    1e-5,
                );
            }
        }
    }
}

#[test]
fn results_come_back_in_input_order() {
    let device = mtl_bert::Backend::default_compiled().device(0).unwrap();
    let encoder = SentenceEncoder::load(tiny_dir(), &device).unwrap();
    let texts = [
        "a",
        "the cat sat on the mat and the dog sat on the cat",
        "",
        "hello world",
    ];
    let options = EncodeOptions {
        batch_size: 2,
        ..EncodeOptions::default()
    };
    let all = encoder.encode(&texts, &options).unwrap();
    assert_eq!(all.len(), 4);
    for (i, text) in texts.iter().enumerate() {
        let one = encoder.encode(&[text], &options).unwrap();
        assert_close(&format!("text {i}"), &one.values, all.row(i), 1e-5);
    }
    assert!(encoder.encode::<&str>(&[], &options).unwrap().is_empty());
}

#[test]
fn token_batch_lengths_count_real_tokens() {
    let tokenizer = ModelDir::new(tiny_dir()).unwrap().tokenizer(8).unwrap();
    let batch: TokenBatch = tokenizer
        .pad(
            tokenizer
                .encode(&["hello", "the cat sat on the mat . . . ."])
                .unwrap(),
        )
        .unwrap();
    assert_eq!(batch.seq_len, 8, "truncated to max length");
    assert_eq!(batch.lengths(), [3, 8]);
    assert_eq!(batch.input_ids[7], i64::from(tokenizer.pad_id()));
    assert_eq!(batch.input_ids[15], 3, "truncation keeps the final [SEP]");
}

/// A batch split into row groups at inference gives the whole batch's result bit for bit
/// (docs/BENCHMARKS.md says so), on 2 and 3 threads whatever the machine's core count: each
/// group holds the whole batch's padded length, and every operation works row by row.
#[test]
fn row_groups_at_inference_give_the_whole_batch_result() {
    let texts = minilm_reference().strings("texts");
    for (backend, device) in cpu_devices() {
        let encoder = SentenceEncoder::load(minilm_dir(), &device).unwrap();
        let tokenizer = encoder.tokenizer();
        let batch = tokenizer.pad(tokenizer.encode(&texts).unwrap()).unwrap();
        let input = batch.to_input(&device);
        let whole = tensor_values(encoder.model().forward_whole(&input));
        assert!(whole.iter().all(|v| v.is_finite()), "{backend}");
        for threads in [2, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (groups, split) = pool.install(|| {
                (
                    mtl_bert::row_groups(&device),
                    tensor_values(encoder.model().forward(&input)),
                )
            });
            assert_eq!(groups, threads, "{backend}: one row group per thread");
            assert!(texts.len() >= groups, "{backend}: a group per text at most");
            let differing = split
                .iter()
                .zip(&whole)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(split.len(), whole.len());
            assert_eq!(
                differing,
                0,
                "{backend}, {groups} row groups: {differing} values differ from the whole \
                 batch's (largest difference {:e})",
                max_abs_diff(&split, &whole)
            );
        }
    }
}

/// The committed fixtures are what `scripts/make_fixtures.py` writes today (its `--check`:
/// regenerated in a temporary directory with the pinned torch and transformers, and compared:
/// weights and token ids exactly, reference outputs within 1e-5 of each tensor's largest value).
#[test]
fn committed_fixtures_equal_what_the_script_writes() {
    let python = reference_venv::python("torch, transformers, sentence_transformers");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/make_fixtures.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg("--check")
        .arg("--model")
        .arg(minilm_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{}{stderr}", String::from_utf8_lossy(&output.stdout));
    assert!(
        output.status.success(),
        "the committed fixtures differ from what scripts/make_fixtures.py writes:\n{stderr}"
    );
}
