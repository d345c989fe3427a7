//! What the Python classes share when they load a model: the model's directory from a name
//! (the default model, a directory or a hub id), and the device and precision from their names.

use std::path::PathBuf;

use mtl_bert::burn::prelude::Device;
use mtl_bert::{Backend, Precision};
use mtl_hub::ModelSource;
use pyo3::prelude::*;

use crate::errors::to_py;

/// The local directory of `model` at `revision`: `"default"` (or `None`) is the default
/// all-MiniLM-L6-v2, fetched into mtl's cache on first use; an existing path is a directory;
/// `owner/name` is a Hugging Face hub id, downloaded into the hub cache. Runs without the GIL.
pub(crate) fn model_dir(
    py: Python<'_>,
    model: Option<&str>,
    revision: Option<&str>,
) -> PyResult<PathBuf> {
    let model = model.filter(|m| *m != "default" || std::path::Path::new(m).exists());
    let source = ModelSource::parse(model, revision).map_err(|e| to_py(&e))?;
    py.detach(|| source.resolve()).map_err(|e| to_py(&e))
}

/// Device `index` of the backend called `backend` (`flex`, `ndarray`, `wgpu`, `tch`, `cuda`:
/// those compiled into the module).
pub(crate) fn device(backend: &str, index: usize) -> PyResult<Device> {
    let backend: Backend = backend.parse().map_err(|e| to_py(&e))?;
    backend.device(index).map_err(|e| to_py(&e))
}

/// The precision called `quantize`: `None` is fp32, `"int8"` int8 (as `--quantize`).
pub(crate) fn precision(quantize: Option<&str>) -> PyResult<Precision> {
    quantize.map_or(Ok(Precision::Fp32), |name| {
        name.parse().map_err(|e| to_py(&e))
    })
}
