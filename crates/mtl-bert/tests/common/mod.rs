//! Shared helpers of the encoder's integration tests: fixtures and comparisons.
#![allow(dead_code)]

use std::path::Path;

use mtl_bert::Backend;
use mtl_bert::burn::prelude::Device;

#[path = "../../../../tests/support/fixtures.rs"]
mod fixtures;

#[allow(unused_imports)]
pub use fixtures::{fixtures, minilm_dir, tiny_dir};

/// A device of every CPU backend compiled in (flex, and ndarray when built with it).
pub fn cpu_devices() -> Vec<(Backend, Device)> {
    Backend::compiled()
        .into_iter()
        .filter(|b| matches!(b, Backend::Flex | Backend::Ndarray))
        .map(|b| (b, b.device(0).unwrap()))
        .collect()
}

/// The JSON and tensors that the reference script wrote to `dir`.
pub struct Reference {
    pub meta: serde_json::Value,
    bytes: Vec<u8>,
}

impl Reference {
    pub fn load(dir: &Path) -> Self {
        let meta = std::fs::read_to_string(dir.join("reference.json")).unwrap();
        Self {
            meta: serde_json::from_str(&meta).unwrap(),
            bytes: std::fs::read(dir.join("reference.safetensors")).unwrap(),
        }
    }

    /// A float32 tensor: its shape and values.
    pub fn tensor(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let tensors = safetensors::SafeTensors::deserialize(&self.bytes).unwrap();
        let view = tensors
            .tensor(name)
            .unwrap_or_else(|e| panic!("reference tensor {name}: {e}"));
        assert_eq!(view.dtype(), safetensors::Dtype::F32);
        let values = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (view.shape().to_vec(), values)
    }

    /// A list of lists of integers from the JSON.
    pub fn ids(&self, key: &str) -> Vec<Vec<i64>> {
        serde_json::from_value(self.meta[key].clone()).unwrap()
    }

    /// A list of strings from the JSON.
    pub fn strings(&self, key: &str) -> Vec<String> {
        serde_json::from_value(self.meta[key].clone()).unwrap()
    }
}

#[path = "../../../../tests/support/compare.rs"]
mod compare;
#[allow(unused_imports)] // not every test binary compares values
pub use compare::max_abs_diff;

/// Panics, naming `what`, `side` and the index, at the first value of `values` that is NaN or
/// infinite.
pub fn assert_finite(what: &str, side: &str, values: &[f32]) {
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        panic!("{what}: {side}[{i}] is {}, not a finite number", values[i]);
    }
}

/// Asserts that both slices are finite and `max |a - b| <= tolerance`, naming what was
/// compared (and, for a NaN or an infinity, which side and index).
pub fn assert_close(what: &str, actual: &[f32], expected: &[f32], tolerance: f32) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    assert_finite(what, "actual", actual);
    assert_finite(what, "expected", expected);
    let diff = max_abs_diff(actual, expected);
    eprintln!("{what}: max abs difference {diff:.2e} (tolerance {tolerance:.0e})");
    assert!(
        diff <= tolerance,
        "{what}: max abs difference {diff:e} exceeds {tolerance:e}"
    );
}

/// The comparison helpers above must fail on NaN and infinity, never pass them. (These run in
/// every test binary that includes this module.)
mod comparison_tests {
    use super::*;

    #[test]
    #[should_panic(expected = "hidden: actual[1] is NaN")]
    fn assert_close_panics_on_nan() {
        assert_close("hidden", &[0.0, f32::NAN], &[0.0, 0.0], 1.0);
    }

    #[test]
    #[should_panic(expected = "hidden: expected[2] is -inf")]
    fn assert_close_panics_on_infinity() {
        assert_close(
            "hidden",
            &[0.0, 0.0, 0.0],
            &[0.0, 0.0, f32::NEG_INFINITY],
            1.0,
        );
    }

    #[test]
    #[should_panic(expected = "exceeds")]
    fn assert_close_panics_beyond_the_tolerance() {
        assert_close("hidden", &[0.0, 0.5], &[0.0, 0.0], 0.25);
    }
}

/// Copies a fixture directory to a fresh temporary directory.
pub fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
        }
    }
    to
}

/// One tensor of a safetensors file, owned.
pub struct RawTensor {
    pub name: String,
    pub dtype: safetensors::Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// Rewrites a safetensors file after `edit` has changed its tensor list.
pub fn rewrite_safetensors(path: &Path, edit: impl FnOnce(&mut Vec<RawTensor>)) {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<RawTensor> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| RawTensor {
            name,
            dtype: view.dtype(),
            shape: view.shape().to_vec(),
            data: view.data().to_vec(),
        })
        .collect();
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|t| {
            let view =
                safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data).unwrap();
            (t.name.clone(), view)
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}
