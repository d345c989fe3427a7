//! Texts from Python: a sequence of `str` (or UTF-8 `bytes`), checked one by one so that an
//! error names the text.

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// The texts of `sequence` (any iterable: a list, a tuple, a numpy array of strings), each a
/// `str` or UTF-8 `bytes`.
///
/// `TypeError` for a single `str` or `bytes` given where a sequence is expected and for an item
/// of another type; `ValueError` for a `str` that cannot be UTF-8 (a lone surrogate) or `bytes`
/// that are not UTF-8. Each message names the text by its index.
pub(crate) fn extract(sequence: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if sequence.is_instance_of::<PyString>() || sequence.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "expected a sequence of texts, got a single string; wrap it in a list",
        ));
    }
    let items = sequence.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "expected a sequence of texts (str), got {}",
            type_name(sequence)
        ))
    })?;
    let mut texts = Vec::with_capacity(sequence.len().unwrap_or(0));
    for (index, item) in items.enumerate() {
        texts.push(text(&item?, index)?);
    }
    Ok(texts)
}

/// Pairs of texts: a sequence of two-item sequences.
pub(crate) fn extract_pairs(sequence: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let items = sequence.try_iter().map_err(|_| {
        PyTypeError::new_err(format!(
            "expected a sequence of text pairs, got {}",
            type_name(sequence)
        ))
    })?;
    let mut pairs = Vec::new();
    for (index, item) in items.enumerate() {
        let item = item?;
        let pair = extract(&item)
            .ok()
            .filter(|pair| pair.len() == 2)
            .ok_or_else(|| {
                PyTypeError::new_err(format!(
                    "pair {index}: expected two texts, got {}",
                    type_name(&item)
                ))
            })?;
        let [a, b]: [String; 2] = pair.try_into().expect("two texts");
        pairs.push((a, b));
    }
    Ok(pairs)
}

fn text(item: &Bound<'_, PyAny>, index: usize) -> PyResult<String> {
    if let Ok(s) = item.cast::<PyString>() {
        return s.to_str().map(str::to_owned).map_err(|_| {
            PyValueError::new_err(format!(
                "text {index} cannot be encoded as UTF-8 (it holds a lone surrogate, as \
                 text decoded with errors='surrogateescape' does)"
            ))
        });
    }
    if let Ok(b) = item.cast::<PyBytes>() {
        return String::from_utf8(b.as_bytes().to_vec()).map_err(|e| {
            PyValueError::new_err(format!(
                "text {index} is bytes that are not UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        });
    }
    Err(PyTypeError::new_err(format!(
        "text {index} is {}, not str",
        type_name(item)
    )))
}

fn type_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map_or_else(|_| "an object".to_owned(), |n| format!("{n}"))
}
