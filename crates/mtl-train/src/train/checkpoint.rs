//! The training checkpoint: model, optimiser state and the loop's position, written together
//! and atomically so that `--resume` continues exactly where the run was.

use std::path::Path;

use anyhow::{Context, Result};
use burn::module::Module;
use mtl_model::MultiTaskModel;
use serde::{Deserialize, Serialize};

use crate::metrics::TaskMetrics;
use crate::train::optimizer::TrainOptimizer;

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
        }
    }
}

/// Writes `run_dir/checkpoint/` (model as burnpack with parameter ids, optimiser state,
/// `state.json`) through a temporary directory, so the previous checkpoint stays whole until
/// the new one is complete.
pub fn save(
    run_dir: &Path,
    model: &MultiTaskModel,
    optimizer: &TrainOptimizer,
    state: &TrainState,
) -> Result<()> {
    let staging = tempfile::Builder::new()
        .prefix(".checkpoint.partial-")
        .tempdir_in(run_dir)
        .with_context(|| format!("creating a checkpoint in {}", run_dir.display()))?;
    model
        .clone()
        .save_file(staging.path().join("model.bpk"))
        .map_err(|e| anyhow::anyhow!("saving the model checkpoint: {e:?}"))?;
    optimizer.save(&staging.path().join("optimizer.bpk"))?;
    let state_json = serde_json::to_string_pretty(state).expect("the state serialises");
    std::fs::write(staging.path().join("state.json"), state_json)?;
    let target = run_dir.join(CHECKPOINT_DIR);
    mtl_bert::atomic::replace_dir(&staging.keep(), &target)
        .with_context(|| format!("installing {}", target.display()))
}

/// Reads the loop position of `run_dir`'s checkpoint.
pub fn read_state(run_dir: &Path) -> Result<TrainState> {
    let state_path = run_dir.join(CHECKPOINT_DIR).join("state.json");
    let text = std::fs::read_to_string(&state_path)
        .with_context(|| format!("{} has no checkpoint to resume from", run_dir.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", state_path.display()))
}

/// Reads `run_dir/checkpoint/` into `model` (built as for a new run); `optimizer` then makes
/// the optimiser for the loaded model (whose parameter ids are the checkpoint's), into which
/// the saved optimiser state is read.
pub fn load(
    run_dir: &Path,
    model: MultiTaskModel,
    optimizer: impl FnOnce(&MultiTaskModel) -> TrainOptimizer,
) -> Result<(MultiTaskModel, TrainOptimizer, TrainState)> {
    let dir = run_dir.join(CHECKPOINT_DIR);
    let state = read_state(run_dir)?;
    let model = model
        .try_load_file(dir.join("model.bpk"))
        .map_err(|e| anyhow::anyhow!("loading {}: {e:?}", dir.join("model.bpk").display()))?;
    let optimizer = optimizer(&model).load(&dir.join("optimizer.bpk"))?;
    Ok((model, optimizer, state))
}
