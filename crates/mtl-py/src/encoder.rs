//! `mtl._mtl.Encoder`: a sentence encoder, wrapped by `mtl.SentenceEncoder` (Python).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use mtl_bert::{EncodeOptions, Pooling, SentenceEncoder};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyByteArray;

use crate::errors::to_py;
use crate::load;
use crate::texts;

/// A sentence encoder loaded from a model directory, the default model or a hub id.
#[pyclass(frozen, module = "mtl._mtl")]
pub(crate) struct Encoder {
    /// Boxed: the model holds 64-byte aligned fields, and Python allocates objects at 16.
    inner: Box<SentenceEncoder>,
    dir: PathBuf,
    backend: String,
    /// Truncation length in tokens (sentence-transformers' settable `max_seq_length`).
    max_seq_length: AtomicUsize,
}

#[pymethods]
impl Encoder {
    #[new]
    #[pyo3(signature = (model=None, revision=None, backend="flex", quantize=None, device=0))]
    fn new(
        py: Python<'_>,
        model: Option<&str>,
        revision: Option<&str>,
        backend: &str,
        quantize: Option<&str>,
        device: usize,
    ) -> PyResult<Self> {
        let dir = load::model_dir(py, model, revision)?;
        let device = load::device(backend, device)?;
        let precision = load::precision(quantize)?;
        let inner = py
            .detach(|| SentenceEncoder::load_with_precision(&dir, &device, precision))
            .map_err(|e| to_py(&e))?;
        let max_seq_length = AtomicUsize::new(inner.defaults().max_seq_length);
        Ok(Self {
            inner: Box::new(inner),
            dir,
            backend: backend.to_owned(),
            max_seq_length,
        })
    }

    /// Embeds `texts` (a sequence of str): `(values, rows, dim)`, the float32 values row-major
    /// in a bytearray. `normalize=None` and `pooling=None` take the model's defaults.
    #[pyo3(signature = (texts, batch_size=32, normalize=None, pooling=None))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        batch_size: usize,
        normalize: Option<bool>,
        pooling: Option<&str>,
    ) -> PyResult<(Bound<'py, PyByteArray>, usize, usize)> {
        let texts = texts::extract(texts)?;
        if batch_size == 0 {
            return Err(PyValueError::new_err("batch_size must be at least 1"));
        }
        let options = EncodeOptions {
            batch_size,
            pooling: pooling
                .map(|p| p.parse::<Pooling>().map_err(PyValueError::new_err))
                .transpose()?,
            normalize,
            max_seq_length: Some(self.max_seq_length.load(Ordering::Relaxed)),
        };
        let embeddings = py
            .detach(|| self.inner.encode(&texts, &options))
            .map_err(|e| to_py(&e))?;
        Ok((
            PyByteArray::new(py, bytemuck::cast_slice(&embeddings.values)),
            embeddings.len(),
            embeddings.dim,
        ))
    }

    /// Width of the embeddings.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// Truncation length in tokens (default: the model's `max_seq_length`).
    #[getter]
    fn get_max_seq_length(&self) -> usize {
        self.max_seq_length.load(Ordering::Relaxed)
    }

    #[setter]
    fn set_max_seq_length(&self, value: usize) -> PyResult<()> {
        let positions = self.inner.config().max_position_embeddings;
        if value == 0 || value > positions {
            return Err(PyValueError::new_err(format!(
                "max_seq_length must be between 1 and the model's {positions} positions, got {value}"
            )));
        }
        self.max_seq_length.store(value, Ordering::Relaxed);
        Ok(())
    }

    /// The model's default pooling (`cls`, `pooler`, `mean` or `max`).
    #[getter]
    fn pooling(&self) -> &'static str {
        self.inner.defaults().pooling.name()
    }

    /// Whether the model normalises its embeddings by default (a `Normalize` module).
    #[getter]
    fn normalize(&self) -> bool {
        self.inner.defaults().normalize
    }

    /// The model's local directory.
    #[getter]
    fn model_dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// The backend it runs on.
    #[getter]
    fn backend(&self) -> &str {
        &self.backend
    }

    /// `fp32` or `int8`.
    #[getter]
    fn precision(&self) -> &'static str {
        self.inner.precision().name()
    }
}
