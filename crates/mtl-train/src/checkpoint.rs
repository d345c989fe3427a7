//! The training checkpoint: model, optimiser state and the loop's position, written together
//! and atomically so that `--resume` continues exactly where the run was.

use std::path::Path;

use crate::error::{Context, Error, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::Tensor;
use mtl_model::MultiTaskModel;
use serde::{Deserialize, Serialize};

use crate::metrics::TaskMetrics;
use crate::multitask::WeightingState;
use crate::optimizer::TrainOptimizer;

/// The checkpoint's directory name inside the run directory.
pub const CHECKPOINT_DIR: &str = "checkpoint";

/// The best evaluation so far.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Best {
    /// Mean macro-F1 over the tasks on the validation split.
    pub score: f64,
    /// Optimiser steps done when it was measured.
    pub step: usize,
    /// Its epoch (0-based).
    pub epoch: usize,
}

/// Where the training loop is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimiser steps done.
    pub step: usize,
    /// The current epoch (0-based).
    pub epoch: usize,
    /// Planned batches of the current epoch already used.
    pub batch_in_epoch: usize,
    /// The best evaluation so far.
    pub best: Option<Best>,
    /// The validation metrics of the best evaluation.
    #[serde(default)]
    pub best_valid: Vec<TaskMetrics>,
    /// Evaluations since the best one (for early stopping).
    pub evals_since_best: usize,
    /// Length of `metrics.jsonl` when the checkpoint was written.
    pub log_bytes: u64,
    /// Seconds of training before this checkpoint (over all resumed parts).
    pub seconds: f64,
    /// The loss weighting's state (learned log-variances, epoch losses); empty for `equal`
    /// and in checkpoints of older versions.
    #[serde(default, skip_serializing_if = "WeightingState::is_empty")]
    pub multitask: WeightingState,
}

impl TrainState {
    /// The state of a run that has not started.
    pub fn start() -> Self {
        Self {
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            best: None,
            best_valid: Vec::new(),
            evals_since_best: 0,
            log_bytes: 0,
            seconds: 0.0,
            multitask: WeightingState::default(),
        }
    }
}

/// The file in the checkpoint that lists each other file's sha256 (`sha256sum -c` reads it).
pub const CHECKSUMS: &str = "SHA256SUMS";

/// The files of a checkpoint, besides [`CHECKSUMS`].
const FILES: [&str; 3] = ["model.bpk", "optimizer.bpk", "state.json"];

/// Writes `run_dir/checkpoint/` (model as burnpack with parameter ids, optimiser state,
/// `state.json`, and `SHA256SUMS` of the three) into a staging directory that then replaces
/// the previous checkpoint in one atomic step (see [`mtl_fs::replace_dir`]). A model holding a
/// NaN or infinite parameter is never written: that is an error, and the previous checkpoint
/// stays.
pub fn save(
    run_dir: &Path,
    model: &MultiTaskModel,
    optimizer: &TrainOptimizer,
    state: &TrainState,
) -> Result<()> {
    ensure_finite(model)?;
    let target = run_dir.join(CHECKPOINT_DIR);
    let staging = mtl_fs::staging_dir(&target)
        .with_context(|| format!("creating a checkpoint in {}", run_dir.display()))?;
    model
        .clone()
        .save_file(staging.path().join("model.bpk"))
        .map_err(|e| Error::Tensor(format!("saving the model checkpoint: {e:?}")))?;
    optimizer.save(&staging.path().join("optimizer.bpk"))?;
    let state_json = serde_json::to_string_pretty(state).expect("the state serialises");
    let state_path = staging.path().join("state.json");
    std::fs::write(&state_path, state_json)
        .with_context(|| format!("writing {}", state_path.display()))?;
    let mut sums = String::new();
    for name in FILES {
        let path = staging.path().join(name);
        let digest =
            mtl_fs::sha256_file(&path).with_context(|| format!("reading {}", path.display()))?;
        sums.push_str(&format!("{digest}  {name}\n"));
    }
    let sums_path = staging.path().join(CHECKSUMS);
    std::fs::write(&sums_path, sums).with_context(|| format!("writing {}", sums_path.display()))?;
    mtl_fs::replace_dir(staging, &target)
        .with_context(|| format!("installing {}", target.display()))
}

/// Fails when a float parameter of `model` holds a NaN or an infinity.
pub fn ensure_finite(model: &MultiTaskModel) -> Result<()> {
    struct Finite(usize);
    impl ModuleVisitor for Finite {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let finite: bool = param.val().is_finite().all().into_scalar();
            if !finite {
                self.0 += 1;
            }
        }
    }
    let mut visitor = Finite(0);
    model.visit(&mut visitor);
    if visitor.0 > 0 {
        return Err(Error::NotFinite(format!(
            "{} parameter tensor(s) of the model hold NaN or infinite values: the training \
             diverged; try a lower learning rate (`--resume` accepts --encoder-lr and --head-lr)",
            visitor.0
        )));
    }
    Ok(())
}

/// Reads the loop position of `run_dir`'s checkpoint; `None` when the run has no checkpoint
/// yet (it was stopped before its first one, and starts again from step 0).
pub fn read_state(run_dir: &Path) -> Result<Option<TrainState>> {
    let dir = run_dir.join(CHECKPOINT_DIR);
    if !dir.exists() {
        return Ok(None);
    }
    verify(&dir)?;
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("reading {}", state_path.display()))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| Error::Checkpoint(format!("parsing {}: {e}", state_path.display())))
}

/// Checks every file of the checkpoint in `dir` against its `SHA256SUMS`.
fn verify(dir: &Path) -> Result<()> {
    let sums_path = dir.join(CHECKSUMS);
    let sums = std::fs::read_to_string(&sums_path).with_context(|| {
        format!(
            "{} has no {CHECKSUMS}: the checkpoint is incomplete or was written by an older mtl",
            dir.display()
        )
    })?;
    for name in FILES {
        let expected = sums
            .lines()
            .find_map(|line| line.strip_suffix(&format!("  {name}")))
            .ok_or_else(|| {
                Error::Checkpoint(format!("{} does not list {name}", sums_path.display()))
            })?;
        let path = dir.join(name);
        let found =
            mtl_fs::sha256_file(&path).with_context(|| format!("reading {}", path.display()))?;
        if found != expected {
            return Err(Error::Checkpoint(format!(
                "{} is corrupt: its sha256 is {found}, but {CHECKSUMS} says {expected}; the \
                 checkpoint cannot be trusted",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Reads `run_dir/checkpoint/` into `model` (built as for a new run); `optimizer` then makes
/// the optimiser for the loaded model (whose parameter ids are the checkpoint's), into which
/// the saved optimiser state is read. Call it after [`read_state`], which verified the files
/// (the run directory is locked, so they cannot change in between).
pub fn load(
    run_dir: &Path,
    model: MultiTaskModel,
    optimizer: impl FnOnce(&MultiTaskModel) -> TrainOptimizer,
) -> Result<(MultiTaskModel, TrainOptimizer)> {
    let dir = run_dir.join(CHECKPOINT_DIR);
    let model = model.try_load_file(dir.join("model.bpk")).map_err(|e| {
        Error::Checkpoint(format!(
            "loading {}: {e:?}",
            dir.join("model.bpk").display()
        ))
    })?;
    let optimizer = optimizer(&model).load(&dir.join("optimizer.bpk"))?;
    Ok((model, optimizer))
}
