//! Bad model directories give clear errors (never a panic or a wrong model).

use crate::common;

use common::{RawTensor, copy_dir, fixtures, rewrite_safetensors};
use mtl_bert::{Backend, Error, SentenceEncoder};

fn load_error(dir: &std::path::Path) -> String {
    let device = Backend::default_compiled().device(0).unwrap();
    SentenceEncoder::load(dir, &device).unwrap_err().to_string()
}

fn tiny_copy() -> tempfile::TempDir {
    copy_dir(&fixtures().join("tiny-bert"))
}

#[test]
fn missing_directory_is_named() {
    let err = load_error(std::path::Path::new("/no/such/model"));
    assert!(err.starts_with("/no/such/model: "), "{err}");
}

#[test]
fn missing_files_are_named() {
    for (file, expected) in [
        ("config.json", "has no config.json"),
        (
            "model.safetensors",
            "has no model.safetensors or pytorch_model.bin",
        ),
    ] {
        let dir = tiny_copy();
        std::fs::remove_file(dir.path().join(file)).unwrap();
        let err = load_error(dir.path());
        assert!(err.contains(expected), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }
    let dir = tiny_copy();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    std::fs::remove_file(dir.path().join("vocab.txt")).unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("has no tokenizer.json or vocab.txt"), "{err}");
}

#[test]
fn corrupt_safetensors_is_reported() {
    let dir = tiny_copy();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains("model.safetensors: not a valid checkpoint"),
        "{err}"
    );

    std::fs::write(&path, b"not a safetensors file at all").unwrap();
    let err = load_error(dir.path());
    assert!(err.contains("not a valid checkpoint"), "{err}");
}

#[test]
fn corrupt_pytorch_bin_is_reported() {
    let dir = tiny_copy();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("pytorch_model.bin"), b"PK\x03\x04 garbage").unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains("pytorch_model.bin: not a valid checkpoint"),
        "{err}"
    );
}

#[test]
fn shape_mismatch_names_tensor_and_shapes() {
    let dir = tiny_copy();
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"intermediate_size\": 64", "\"intermediate_size\": 65"),
    )
    .unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains("tensor `encoder.layer.0.intermediate.dense.weight` has shape [64, 32], expected [65, 32]"),
        "{err}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = tiny_copy();
    rewrite_safetensors(&dir.path().join("model.safetensors"), |tensors| {
        tensors.retain(|t| t.name != "encoder.layer.1.output.LayerNorm.bias");
    });
    let err = load_error(dir.path());
    assert!(
        err.contains(
            "missing tensor `encoder.layer.1.output.LayerNorm.bias` (expected shape [32])"
        ),
        "{err}"
    );
}

#[test]
fn unexpected_tensor_is_named() {
    let dir = tiny_copy();
    rewrite_safetensors(&dir.path().join("model.safetensors"), |tensors| {
        tensors.push(RawTensor {
            name: "encoder.layer.2.output.dense.bias".into(),
            dtype: safetensors::Dtype::F32,
            shape: vec![32],
            data: vec![0; 128],
        });
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("unexpected tensor `encoder.layer.2.output.dense.bias` with shape [32]"),
        "{err}"
    );
}

#[test]
fn integer_weights_are_rejected() {
    let dir = tiny_copy();
    rewrite_safetensors(&dir.path().join("model.safetensors"), |tensors| {
        let t = tensors
            .iter_mut()
            .find(|t| t.name == "pooler.dense.bias")
            .unwrap();
        t.dtype = safetensors::Dtype::I32;
    });
    let err = load_error(dir.path());
    assert!(
        err.contains("tensor `pooler.dense.bias` has data type I32"),
        "{err}"
    );
}

#[test]
fn unsupported_config_is_explained() {
    let dir = tiny_copy();
    let config = dir.path().join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("\"hidden_act\": \"gelu\"", "\"hidden_act\": \"swish\""),
    )
    .unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains(
            "unsupported hidden_act \"swish\" (supported: gelu, gelu_new, gelu_pytorch_tanh, relu)"
        ),
        "{err}"
    );
    std::fs::write(
        &config,
        text.replace("\"model_type\": \"bert\"", "\"model_type\": \"distilbert\""),
    )
    .unwrap();
    let err = load_error(dir.path());
    assert!(
        err.contains("unsupported model_type \"distilbert\""),
        "{err}"
    );
}

#[test]
fn pooler_pooling_without_pooler_weights_is_an_error() {
    let dir = tiny_copy();
    rewrite_safetensors(&dir.path().join("model.safetensors"), |tensors| {
        tensors.retain(|t| !t.name.starts_with("pooler."));
    });
    let device = Backend::default_compiled().device(0).unwrap();
    let encoder = SentenceEncoder::load(dir.path(), &device).unwrap();
    assert!(encoder.model().pooler.is_none());
    let options = mtl_bert::EncodeOptions {
        pooling: Some(mtl_bert::Pooling::Pooler),
        ..Default::default()
    };
    let err = encoder.encode(&["hello"], &options).unwrap_err();
    assert!(matches!(err, Error::Encoding(_)));
    assert!(
        err.to_string()
            .contains("needs a checkpoint with pooler weights"),
        "{err}"
    );
}

#[test]
fn too_long_max_length_is_an_error() {
    let device = Backend::default_compiled().device(0).unwrap();
    let encoder = SentenceEncoder::load(fixtures().join("tiny-bert"), &device).unwrap();
    let options = mtl_bert::EncodeOptions {
        max_seq_length: Some(65),
        ..Default::default()
    };
    let err = encoder
        .encode(&["hello"], &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("exceeds the model's 64 positions"), "{err}");
}
