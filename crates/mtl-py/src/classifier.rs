//! `mtl._mtl.Classifier`: a trained multi-task model, wrapped by `mtl.MultiTaskClassifier`.

use std::path::PathBuf;

use mtl_model::MultiTaskClassifier;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyByteArray;

use crate::errors::to_py;
use crate::load;
use crate::texts;

/// A multi-task model loaded from the directory `mtl train` saved it in.
#[pyclass(frozen, module = "mtl._mtl")]
pub(crate) struct Classifier {
    /// Boxed: the model holds 64-byte aligned fields, and Python allocates objects at 16.
    inner: Box<MultiTaskClassifier>,
    dir: PathBuf,
}

/// One task's probabilities: `(task, labels, values, rows)`, the float32 values row-major in a
/// bytearray (`rows x len(labels)`).
type TaskProbabilities<'py> = (String, Vec<String>, Bound<'py, PyByteArray>, usize);

#[pymethods]
impl Classifier {
    #[new]
    #[pyo3(signature = (model, backend="flex", quantize=None, device=0))]
    fn new(
        py: Python<'_>,
        model: PathBuf,
        backend: &str,
        quantize: Option<&str>,
        device: usize,
    ) -> PyResult<Self> {
        let device = load::device(backend, device)?;
        let precision = load::precision(quantize)?;
        let inner = py
            .detach(|| MultiTaskClassifier::load_with_precision(&model, &device, precision))
            .map_err(|e| to_py(&e))?;
        Ok(Self {
            inner: Box::new(inner),
            dir: model,
        })
    }

    /// Every task's (or `task`'s) probabilities for `texts` (a sequence of str, or of pairs
    /// of str with `pairs=True`).
    #[pyo3(signature = (texts, task=None, batch_size=32, pairs=false))]
    fn predict_proba<'py>(
        &self,
        py: Python<'py>,
        texts: &Bound<'py, PyAny>,
        task: Option<&str>,
        batch_size: usize,
        pairs: bool,
    ) -> PyResult<Vec<TaskProbabilities<'py>>> {
        if batch_size == 0 {
            return Err(PyValueError::new_err("batch_size must be at least 1"));
        }
        let tasks: Vec<usize> = match task {
            Some(name) => vec![self.inner.task_index(name).map_err(|e| to_py(&e))?],
            None => (0..self.inner.config().tasks.len()).collect(),
        };
        let predictions = if pairs {
            let pairs = texts::extract_pairs(texts)?;
            py.detach(|| self.inner.predict_pairs(&pairs, task, batch_size))
        } else {
            let texts = texts::extract(texts)?;
            py.detach(|| self.inner.predict(&texts, task, batch_size))
        }
        .map_err(|e| to_py(&e))?;
        let rows = predictions.len();
        Ok(tasks
            .iter()
            .enumerate()
            .map(|(column, &index)| {
                let config = &self.inner.config().tasks[index];
                let values: Vec<f32> = predictions
                    .iter()
                    .flat_map(|text| text[column].probabilities.iter().copied())
                    .collect();
                (
                    config.name.clone(),
                    config.labels.clone(),
                    PyByteArray::new(py, bytemuck::cast_slice(&values)),
                    rows,
                )
            })
            .collect())
    }

    /// The tasks, in the model's order, with their labels.
    #[getter]
    fn tasks(&self) -> Vec<(String, Vec<String>)> {
        self.inner
            .config()
            .tasks
            .iter()
            .map(|t| (t.name.clone(), t.labels.clone()))
            .collect()
    }

    /// The model's directory.
    #[getter]
    fn model_dir(&self) -> PathBuf {
        self.dir.clone()
    }

    /// `fp32` or `int8`.
    #[getter]
    fn precision(&self) -> &'static str {
        self.inner.model.encoder.precision().name()
    }
}
