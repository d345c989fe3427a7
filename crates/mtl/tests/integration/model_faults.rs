//! Models that cannot give a meaningful answer fail with a message naming the text and the
//! cause, exit non-zero and print no NaN: a tokenizer larger than `vocab_size` (ids beyond the
//! embedding table), and weights holding NaN (`mtl embed`, `mtl similarity`, `mtl predict`).

use crate::common;

use std::path::Path;

use common::{assert_fails_with, mtl, tiny_dir};
use mtl_bert::Backend;
use mtl_model::{MtlConfig, MultiTaskClassifier, TaskConfig};
use serde_json::{Value, json};

/// Copies `from` (with its subdirectories) into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of the tiny model in `root/tiny`.
fn tiny_copy(root: &Path) -> std::path::PathBuf {
    let dir = root.join("tiny");
    copy_tree(&tiny_dir(), &dir);
    dir
}

/// A multi-task model saved from the tiny encoder in `root/model`: tasks `topic` (3 labels)
/// and `mood` (2).
fn saved_model(root: &Path) -> std::path::PathBuf {
    let config = MtlConfig::new(vec![
        TaskConfig::new("topic", &["world", "sport", "tech"]),
        TaskConfig::new("mood", &["positive", "negative"]),
    ]);
    let device = Backend::default_compiled().device(0).unwrap();
    let model = MultiTaskClassifier::from_pretrained(tiny_dir(), config, 3, &device).unwrap();
    let dir = root.join("model");
    model.save(&dir).unwrap();
    dir
}

/// Sets `field` of `dir/config.json` to `value`.
fn edit_config(dir: &Path, field: &str, value: u64) {
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config[field] = value.into();
    std::fs::write(&path, config.to_string()).unwrap();
}

/// Rewrites the safetensors file `path` after `edit` has changed the shape and the
/// (little-endian float32) values of tensor `name`. Written from the format's definition: a
/// little-endian u64 header length, the JSON header (dtype, shape, data_offsets per tensor),
/// then the tensors' bytes back to back.
fn edit_tensor(path: &Path, name: &str, edit: impl FnOnce(&mut Vec<usize>, &mut Vec<f32>)) {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    let offsets = |info: &Value| {
        let o = info["data_offsets"].as_array().unwrap();
        (
            o[0].as_u64().unwrap() as usize,
            o[1].as_u64().unwrap() as usize,
        )
    };
    let mut tensors: Vec<(String, Value)> = header
        .clone()
        .into_iter()
        .filter(|(key, _)| key != "__metadata__")
        .collect();
    tensors.sort_by_key(|(_, info)| offsets(info));
    let mut new_header = serde_json::Map::new();
    if let Some(metadata) = header.get("__metadata__") {
        new_header.insert("__metadata__".into(), metadata.clone());
    }
    let mut new_data = Vec::new();
    let mut edit = Some(edit);
    for (key, mut info) in tensors {
        let (begin, end) = offsets(&info);
        let mut tensor_bytes = data[begin..end].to_vec();
        if key == name {
            assert_eq!(info["dtype"], "F32");
            let mut shape: Vec<usize> = info["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let mut values: Vec<f32> = tensor_bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (edit.take().unwrap())(&mut shape, &mut values);
            assert_eq!(values.len(), shape.iter().product::<usize>());
            info["shape"] = json!(shape);
            tensor_bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        }
        info["data_offsets"] = json!([new_data.len(), new_data.len() + tensor_bytes.len()]);
        new_data.extend_from_slice(&tensor_bytes);
        new_header.insert(key, info);
    }
    assert!(edit.is_none(), "{} has no tensor {name}", path.display());
    let mut header_bytes = serde_json::to_vec(&new_header).unwrap();
    while !header_bytes.len().is_multiple_of(8) {
        header_bytes.push(b' ');
    }
    let mut file = (header_bytes.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&header_bytes);
    file.extend_from_slice(&new_data);
    std::fs::write(path, file).unwrap();
}

/// The tiny vocabulary's id of "dog".
const DOG: usize = 41;

/// Sets the word embedding of "dog" to NaN in `weights`: only texts holding that word get a
/// NaN embedding.
fn poison_dog(weights: &Path) {
    edit_tensor(
        weights,
        "embeddings.word_embeddings.weight",
        |shape, values| {
            let width = shape[1];
            values[DOG * width..(DOG + 1) * width].fill(f32::NAN);
        },
    );
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_tokenizer_larger_than_vocab_size_is_refused_when_the_model_loads() {
    let root = tempfile::tempdir().unwrap();
    let dir = tiny_copy(root.path());
    edit_config(&dir, "vocab_size", 100);
    let expected = format!(
        "{}: the tokenizer has 155 tokens (ids up to 154), but {} sets vocab_size to 100",
        dir.join("tokenizer.json").display(),
        dir.join("config.json").display()
    );
    let model = dir.to_str().unwrap();
    for args in [
        vec!["embed", "-m", model, "the cat"],
        vec!["similarity", "-m", model, "the cat", "the dog"],
    ] {
        let output = mtl().args(&args).output().unwrap();
        assert_fails_with(&output, &expected);
        assert!(output.stdout.is_empty(), "{}", stdout(&output));
    }
}

#[test]
fn predict_names_the_line_of_a_token_beyond_vocab_size() {
    let root = tempfile::tempdir().unwrap();
    let model = saved_model(root.path());
    // An encoder of 118 words (its table cut to match) with the tokenizer of 155, where "9" is
    // id 118: loading succeeds, the text holding "9" cannot be embedded.
    edit_config(&model, "vocab_size", 118);
    edit_tensor(
        &model.join("model.safetensors"),
        "embeddings.word_embeddings.weight",
        |shape, values| {
            values.truncate(118 * shape[1]);
            shape[0] = 118;
        },
    );
    let (input, output) = predict_file(&model, root.path(), "the cat\nthe cat 9\n");
    assert_fails_with(
        &output,
        &format!(
            "line 2 of {} (\"the cat 9\"): token \"9\" has id 118, but the model's vocab_size is \
             118",
            input.display()
        ),
    );
    assert!(output.stdout.is_empty(), "{}", stdout(&output));
}

#[test]
fn embed_and_similarity_name_the_line_of_a_nan_embedding() {
    let root = tempfile::tempdir().unwrap();
    let dir = tiny_copy(root.path());
    poison_dog(&dir.join("model.safetensors"));
    let model = dir.to_str().unwrap();
    let input = root.path().join("texts.txt");
    std::fs::write(&input, "the cat\ngood\nthe dog sat\nthe cat\n").unwrap();
    let at_line_3 = format!(
        "line 3 of {} (\"the dog sat\"): the model produced a non-finite embedding (NaN or \
         infinity)",
        input.display()
    );
    let out = root.path().join("out.npy");
    std::fs::write(&out, b"old").unwrap();
    for format in ["jsonl", "csv", "npy"] {
        let output = mtl()
            .args(["embed", "-m", model, "--format", format, "--input"])
            .arg(&input)
            .output()
            .unwrap();
        assert_fails_with(&output, &at_line_3);
        assert!(output.stdout.is_empty(), "{format}: {}", stdout(&output));

        let output = mtl()
            .args(["embed", "-m", model, "--format", format, "--input"])
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert_fails_with(&output, &at_line_3);
        assert_eq!(std::fs::read(&out).unwrap(), b"old", "{format}");
    }
    let output = mtl()
        .args(["embed", "-m", model, "the cat", "a dog"])
        .output()
        .unwrap();
    assert_fails_with(
        &output,
        "text argument 2 (\"a dog\"): the model produced a non-finite",
    );
    let output = mtl()
        .args(["embed", "-m", model])
        .write_stdin("good\na dog\n")
        .output()
        .unwrap();
    assert_fails_with(
        &output,
        "line 2 of standard input (\"a dog\"): the model produced",
    );

    let output = mtl()
        .args(["similarity", "-m", model, "--input"])
        .arg(&input)
        .output()
        .unwrap();
    assert_fails_with(&output, &at_line_3);
    assert!(output.stdout.is_empty(), "{}", stdout(&output));
    let output = mtl()
        .args(["similarity", "-m", model, "--json", "the cat", "good"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn predict_refuses_nan_probabilities_naming_the_text_and_task() {
    let root = tempfile::tempdir().unwrap();
    let model = saved_model(root.path());
    edit_tensor(
        &model.join("model.safetensors"),
        "heads.mood.output.weight",
        |_, values| values.fill(f32::NAN),
    );
    for format in ["table", "jsonl"] {
        let output = mtl()
            .args(["predict", "--format", format, "--model"])
            .arg(&model)
            .args(["the cat", "good"])
            .output()
            .unwrap();
        assert_fails_with(
            &output,
            "text argument 1 (\"the cat\"), task mood: the model produced non-finite \
             probabilities (NaN or infinity)",
        );
        let printed = stdout(&output);
        assert!(
            !printed.contains("NaN") && !printed.contains("null"),
            "{printed}"
        );
    }
    let (input, output) = predict_file(&model, root.path(), "the cat\ngood\n");
    assert_fails_with(
        &output,
        &format!("line 1 of {} (\"the cat\"), task mood:", input.display()),
    );

    // The other task's head is sound: predicting it alone works.
    let output = mtl()
        .args(["predict", "--task", "topic", "--model"])
        .arg(&model)
        .args(["the cat", "good"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = stdout(&output);
    assert_eq!(printed.lines().count(), 2, "{printed}");
    assert!(!printed.contains("NaN"), "{printed}");
}

/// `mtl predict --model MODEL --input DIR/texts.txt` with `texts` in that file; the file's
/// path and the finished command.
fn predict_file(
    model: &std::path::Path,
    dir: &std::path::Path,
    texts: &str,
) -> (std::path::PathBuf, std::process::Output) {
    let input = dir.join("texts.txt");
    std::fs::write(&input, texts).unwrap();
    let output = mtl()
        .args(["predict", "--model"])
        .arg(model)
        .arg("--input")
        .arg(&input)
        .output()
        .unwrap();
    (input, output)
}
