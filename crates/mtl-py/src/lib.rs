//! Python bindings of mtl: the extension module `mtl._mtl`, which the Python package `mtl`
//! (`python/mtl/`) wraps in sentence-transformers' conventions.
//!
//! - `Encoder` ([`encoder`]): a sentence encoder; `encode` returns float32 bytes that the
//!   Python side turns into a numpy array.
//! - `Classifier` ([`classifier`]): a trained multi-task model's probabilities per task.
//! - `train` ([`train`](train::train)): a training run, its events sent to a Python callback.
//! - `set_num_threads`: the size of the thread pool the CPU backends compute on.
//!
//! Every model call runs without the GIL (other Python threads go on meanwhile); errors become
//! `FileNotFoundError`, `ValueError`, `TypeError` or `RuntimeError` ([`errors`]).

mod classifier;
mod encoder;
mod errors;
mod load;
mod texts;
mod train;

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// The Rust side's allocations (tensors, tokens) go to mimalloc, which keeps freed memory
/// ([`mtl_alloc`]); Python's own objects keep Python's allocator.
#[global_allocator]
static GLOBAL: mtl_alloc::MiMalloc = mtl_alloc::MiMalloc;

/// Sets the number of threads the CPU backends (flex, ndarray) compute on. Only before the
/// first model is loaded or used; default: one per core (or `RAYON_NUM_THREADS`).
#[pyfunction]
fn set_num_threads(threads: usize) -> PyResult<()> {
    if threads == 0 {
        return Err(PyValueError::new_err("threads must be at least 1"));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|_| {
            PyRuntimeError::new_err(
                "the thread pool is already running (a model was loaded or used): call \
                 set_num_threads first, or set RAYON_NUM_THREADS before starting Python",
            )
        })
}

/// The number of threads the CPU backends compute on.
#[pyfunction]
fn num_threads() -> usize {
    rayon::current_num_threads()
}

/// The backends compiled into this module.
#[pyfunction]
fn backends() -> Vec<&'static str> {
    mtl_bert::Backend::compiled()
        .into_iter()
        .map(mtl_bert::Backend::name)
        .collect()
}

#[pymodule]
#[pyo3(name = "_mtl")]
fn extension(m: &Bound<'_, PyModule>) -> PyResult<()> {
    mtl_alloc::keep_freed_memory();
    m.add_class::<encoder::Encoder>()?;
    m.add_class::<classifier::Classifier>()?;
    m.add_function(wrap_pyfunction!(train::train, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(backends, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
