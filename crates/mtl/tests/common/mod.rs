//! Shared helpers of the `mtl` command-line tests: fixtures, running the binary, reading its
//! outputs, and the library's embeddings to compare them with.
#![allow(dead_code)]

use std::path::Path;

use assert_cmd::Command;
use mtl_bert::{Backend, EncodeOptions, SentenceEncoder};

#[path = "../../../../tests/support/fixtures.rs"]
mod fixtures;

#[allow(unused_imports)]
pub use fixtures::{fixtures, minilm_dir, tiny_dir};

/// The `mtl` binary, with an environment that does not depend on the caller's: no proxy, no
/// hub token, the default backend.
pub fn mtl() -> Command {
    let mut cmd = Command::cargo_bin("mtl").unwrap();
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HF_TOKEN",
        "HF_ENDPOINT",
        "MTL_BACKEND",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Texts that exercise the tokenizer and padding: punctuation, the empty string, unknown
/// words, accents, and a text longer than the tiny model's 64 positions.
pub fn sample_texts() -> Vec<String> {
    let long = "the cat sat on the mat and the dog sat on the cat ".repeat(8);
    vec![
        "the cat sat on the mat".into(),
        "hello, world!".into(),
        String::new(),
        "What a terrible movie; the film was very long.".into(),
        "Café naïve Zürich 東京".into(),
        long.trim_end().into(),
        "good".into(),
    ]
}

/// The library's embeddings of `texts` with the model in `dir` (flex backend).
pub fn library_embeddings(dir: &Path, texts: &[String], options: &EncodeOptions) -> Vec<Vec<f32>> {
    let device = Backend::default_compiled().device(0).unwrap();
    let encoder = SentenceEncoder::load(dir, &device).unwrap();
    let embeddings = encoder.encode(texts, options).unwrap();
    embeddings.rows().map(<[f32]>::to_vec).collect()
}

/// Parses JSON-lines output into `(text, embedding)` rows.
pub fn parse_jsonl(stdout: &[u8]) -> Vec<(String, Vec<f32>)> {
    std::str::from_utf8(stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let keys: Vec<&str> = row
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys.len(), 2, "{line}");
            let text = row["text"].as_str().unwrap().to_owned();
            let embedding = row["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            (text, embedding)
        })
        .collect()
}

/// Parses a `.npy` file as numpy would, checking its header: magic, version 1.0, the header
/// length (data 64-byte aligned), little-endian float32 in C order. Returns the shape and
/// the values.
pub fn parse_npy(bytes: &[u8]) -> ((usize, usize), Vec<f32>) {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "magic");
    assert_eq!(&bytes[6..8], &[1, 0], "version 1.0");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let data_start = 10 + header_len;
    assert_eq!(data_start % 64, 0, "data is 64-byte aligned");
    let header = std::str::from_utf8(&bytes[10..data_start]).unwrap();
    assert!(header.ends_with('\n'), "{header:?}");
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape = header
        .split("'shape': (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap();
    let dims: Vec<usize> = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse().unwrap())
        .collect();
    assert_eq!(dims.len(), 2, "{header}");
    let data = &bytes[data_start..];
    assert_eq!(data.len(), dims[0] * dims[1] * 4, "float count");
    let values = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    ((dims[0], dims[1]), values)
}

#[path = "../../../../tests/support/compare.rs"]
mod compare;
#[allow(unused_imports)] // not every test binary compares values
pub use compare::max_abs_diff;

/// Asserts that two lists of embeddings agree within `tolerance`, element by element.
///
/// # Panics
/// Also when a value of either side is NaN or infinite, naming the embedding and the index.
pub fn assert_rows_close(actual: &[Vec<f32>], expected: &[Vec<f32>], tolerance: f32) {
    assert_eq!(actual.len(), expected.len(), "number of embeddings");
    let mut worst = 0.0f32;
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a.len(), e.len(), "width of embedding {i}");
        for (j, (x, y)) in a.iter().zip(e).enumerate() {
            assert!(
                x.is_finite() && y.is_finite(),
                "embedding {i}, value {j}: actual {x}, expected {y}: not a finite number"
            );
            worst = worst.max((x - y).abs());
        }
    }
    assert!(
        worst <= tolerance,
        "max abs difference {worst:e} exceeds {tolerance:e}"
    );
}

/// The largest absolute difference between two lists of named tensors (the same names in
/// the same order, equally long), as `(name, values)`.
///
/// # Panics
/// When the names or lengths differ, or a value of either side is NaN or infinite (naming the
/// tensor and the index).
pub fn max_tensor_difference(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    assert_eq!(a.len(), b.len(), "number of tensors");
    let mut worst = 0.0f32;
    for ((name_a, va), (name_b, vb)) in a.iter().zip(b) {
        assert_eq!(name_a, name_b, "tensor names");
        assert_eq!(va.len(), vb.len(), "length of tensor {name_a}");
        for (i, (x, y)) in va.iter().zip(vb).enumerate() {
            assert!(
                x.is_finite() && y.is_finite(),
                "tensor {name_a}[{i}]: {x} vs {y}: not a finite number"
            );
            worst = worst.max((x - y).abs());
        }
    }
    worst
}

/// Asserts that a finished command succeeded, showing its stderr when it did not.
pub fn assert_succeeded(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Asserts that a finished command failed, said `message` on stderr, and did not panic.
pub fn assert_fails_with(output: &std::process::Output, message: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "expected failure, got success; stderr: {stderr}"
    );
    assert!(
        stderr.contains(message),
        "stderr lacks {message:?}:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic:\n{stderr}");
}

/// The comparison helpers above must fail on NaN and infinity, never pass them. (These run in
/// every test binary that includes this module.)
mod comparison_tests {
    use super::*;

    fn named(values: &[&[f32]]) -> Vec<(String, Vec<f32>)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("t{i}"), v.to_vec()))
            .collect()
    }

    #[test]
    #[should_panic(expected = "embedding 1, value 0: actual NaN")]
    fn assert_rows_close_panics_on_nan() {
        assert_rows_close(&[vec![0.0], vec![f32::NAN]], &[vec![0.0], vec![0.0]], 1.0);
    }

    #[test]
    #[should_panic(expected = "embedding 0, value 1: actual 0, expected inf")]
    fn assert_rows_close_panics_on_infinity() {
        assert_rows_close(&[vec![0.0, 0.0]], &[vec![0.0, f32::INFINITY]], 1.0);
    }

    #[test]
    #[should_panic(expected = "exceeds")]
    fn assert_rows_close_panics_beyond_the_tolerance() {
        assert_rows_close(&[vec![0.0, 0.5]], &[vec![0.0, 0.0]], 0.25);
    }

    #[test]
    #[should_panic(expected = "tensor t1[2]: NaN vs 0: not a finite number")]
    fn max_tensor_difference_panics_on_nan() {
        max_tensor_difference(
            &named(&[&[1.0], &[0.0, 0.0, f32::NAN]]),
            &named(&[&[1.0], &[0.0, 0.0, 0.0]]),
        );
    }

    #[test]
    #[should_panic(expected = "tensor t0[0]: 0 vs -inf: not a finite number")]
    fn max_tensor_difference_panics_on_infinity() {
        max_tensor_difference(&named(&[&[0.0]]), &named(&[&[f32::NEG_INFINITY]]));
    }

    #[test]
    fn max_tensor_difference_measures_finite_differences() {
        let a = named(&[&[1.0, 2.0], &[3.0]]);
        let b = named(&[&[1.0, 2.25], &[3.0]]);
        assert_eq!(max_tensor_difference(&a, &b), 0.25);
    }
}
