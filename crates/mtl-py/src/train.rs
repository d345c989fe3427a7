//! `mtl._mtl.train`: a training run from Python, its events handed to a Python callback, Ctrl-C
//! honoured between steps.

use std::path::{Path, PathBuf};

use mtl_train::{Event, Observer, Start, TrainConfig};
use pyo3::exceptions::{PyFileNotFoundError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use serde_json::{Value, json};

use crate::errors::to_py;
use crate::load;

/// Trains as `config` says (a dict of `mtl train`'s TOML keys, or the path of a TOML or JSON
/// file); with `resume`, `config` is the run directory to continue. Calls `progress` with each
/// event as a JSON string. Returns the run's summary as JSON.
#[pyfunction]
#[pyo3(signature = (config, resume=false, overwrite=false, backend="flex", device=0, progress=None))]
pub(crate) fn train(
    py: Python<'_>,
    config: &Bound<'_, PyAny>,
    resume: bool,
    overwrite: bool,
    backend: &str,
    device: usize,
    progress: Option<Py<PyAny>>,
) -> PyResult<String> {
    let device = load::device(backend, device)?;
    let (config, start) = if resume {
        let dir: PathBuf = config.extract().map_err(|_| {
            PyTypeError::new_err("with resume=True, config is the run directory (a path)")
        })?;
        (saved_config(py, &dir)?, Start::Resume)
    } else {
        let mut config = read_config(py, config)?;
        config.absolutize_paths().map_err(|e| to_py(&e))?;
        (config, Start::New { overwrite })
    };
    let mut observer = PyObserver {
        progress,
        error: None,
    };
    let result = py.detach(|| mtl_train::train(&config, &device, start, &mut observer));
    // A Python exception (Ctrl-C, or one raised by the callback) stopped the run: raise it.
    if let Some(error) = observer.error {
        return Err(error);
    }
    let summary = result.map_err(|e| to_py(&e))?;
    Ok(serde_json::to_string(&summary).expect("a summary serialises"))
}

/// The configuration of `config`: a path to a TOML (or `.json`) file, or a dict.
fn read_config(py: Python<'_>, config: &Bound<'_, PyAny>) -> PyResult<TrainConfig> {
    if let Ok(dict) = config.cast::<PyDict>() {
        let json = py.import("json")?.call_method1("dumps", (dict,))?;
        let json = json.cast::<PyString>()?.to_str()?.to_owned();
        return serde_json::from_str(&json)
            .map_err(|e| PyValueError::new_err(format!("invalid training configuration: {e}")));
    }
    let path: PathBuf = config.extract().map_err(|_| {
        PyTypeError::new_err("config must be a dict or the path of a TOML or JSON file")
    })?;
    TrainConfig::from_file(&path).map_err(|e| to_py(&e))
}

/// The saved configuration of the run in `dir`, to resume it.
fn saved_config(py: Python<'_>, dir: &Path) -> PyResult<TrainConfig> {
    let mut config = TrainConfig::from_file(&dir.join("config.toml")).map_err(|e| {
        let message = format!(
            "{} is not a run directory to resume: {}",
            dir.display(),
            to_py(&e).value(py)
        );
        if to_py(&e).is_instance_of::<PyFileNotFoundError>(py) {
            PyFileNotFoundError::new_err(message)
        } else {
            PyValueError::new_err(message)
        }
    })?;
    config.output = dir.to_path_buf();
    Ok(config)
}

/// Hands events to the Python callback and notices Ctrl-C.
struct PyObserver {
    progress: Option<Py<PyAny>>,
    /// The first Python exception: a KeyboardInterrupt, or one the callback raised.
    error: Option<PyErr>,
}

impl Observer for PyObserver {
    fn event(&mut self, event: Event) {
        if self.error.is_some() {
            return;
        }
        Python::attach(|py| {
            if let Some(progress) = &self.progress
                && let Err(e) = progress.call1(py, (event_json(&event).to_string(),))
            {
                self.error = Some(e);
                return;
            }
            if let Err(e) = py.check_signals() {
                self.error = Some(e);
            }
        });
    }

    fn should_stop(&mut self) -> bool {
        if self.error.is_none()
            && let Err(e) = Python::attach(|py| py.check_signals())
        {
            self.error = Some(e);
        }
        self.error.is_some()
    }
}

/// An event as JSON: `{"event": KIND, ...fields}`.
fn event_json(event: &Event) -> Value {
    let stats = |stats: &[mtl_train::TaskStats]| -> Value {
        stats
            .iter()
            .map(|s| json!({"task": s.task, "loss": s.loss, "accuracy": s.accuracy, "examples": s.examples}))
            .collect()
    };
    match event {
        Event::Note(message) => json!({"event": "note", "message": message}),
        Event::Started {
            run_dir,
            tasks,
            batches,
            total_steps,
            resumed_at,
        } => json!({
            "event": "started",
            "run_dir": run_dir,
            "tasks": tasks.iter().map(|t| json!({"name": t.name, "examples": t.examples, "label_counts": t.label_counts})).collect::<Vec<_>>(),
            "batches": batches,
            "total_steps": total_steps,
            "resumed_at": resumed_at,
        }),
        Event::CacheStarted { texts } => json!({"event": "cache_started", "texts": texts}),
        Event::CacheProgress { texts } => json!({"event": "cache_progress", "texts": texts}),
        Event::CacheFinished { seconds } => json!({"event": "cache_finished", "seconds": seconds}),
        Event::EpochStarted {
            epoch,
            epochs,
            batches,
            done,
        } => {
            json!({"event": "epoch_started", "epoch": epoch, "epochs": epochs, "batches": batches, "done": done})
        }
        Event::Step {
            step,
            batches_done,
            epoch_stats,
        } => {
            json!({"event": "step", "step": step, "batches_done": batches_done, "epoch_stats": stats(epoch_stats)})
        }
        Event::EpochFinished {
            epoch,
            epochs,
            stats: s,
        } => {
            json!({"event": "epoch_finished", "epoch": epoch, "epochs": epochs, "stats": stats(s)})
        }
        Event::Evaluated {
            step,
            split,
            metrics,
            best,
        } => {
            json!({"event": "evaluated", "step": step, "split": split, "metrics": metrics, "best": best})
        }
        Event::Checkpoint { step } => json!({"event": "checkpoint", "step": step}),
    }
}
