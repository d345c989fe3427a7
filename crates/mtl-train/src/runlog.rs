//! `metrics.jsonl`: one JSON object per logged training interval or evaluation.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};
use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// Training loss and accuracy of one task over the steps since its last record.
    Train {
        /// Optimiser steps done.
        step: usize,
        /// The epoch (0-based).
        epoch: usize,
        /// The task.
        task: String,
        /// Mean (unweighted) cross-entropy over the interval's examples.
        loss: f64,
        /// Share of the interval's examples predicted right.
        accuracy: f64,
        /// Examples in the interval.
        examples: usize,
        /// Learning rate of the encoder's top layer at the last step.
        lr_encoder: f64,
        /// Learning rate of the heads at the last step.
        lr_heads: f64,
        /// Global gradient norm (before clipping) at the last step.
        grad_norm: f64,
        /// The task's loss weight from the loss weighting at the last step (it multiplies the
        /// task's fixed weight; absent with `equal`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        loss_weight: Option<f64>,
        /// Uncertainty weighting: the task's log-variance `s` at the last step (its loss
        /// weight is `exp(-s)`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_variance: Option<f64>,
        /// The weight of the task's gradient in the shared encoder's combined gradient at the
        /// last step (absent with `sum`, or when the task had no batch in that step).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grad_weight: Option<f64>,
        /// Seconds since the run (or the resumed part of it) started.
        seconds: f64,
    },
    /// One task's evaluation on one split.
    Eval {
        /// Optimiser steps done.
        step: usize,
        /// The epoch (0-based).
        epoch: usize,
        /// `valid` or `test`.
        split: String,
        /// The task.
        task: String,
        /// Mean cross-entropy.
        loss: f64,
        /// Accuracy.
        accuracy: f64,
        /// Macro-averaged F1.
        macro_f1: f64,
    },
}

/// Appends records to `metrics.jsonl`, flushing each line.
pub struct RunLog {
    path: PathBuf,
    file: File,
}

impl RunLog {
    /// Opens `path` for appending, first cutting it to `keep_bytes` (what a checkpoint saw) so
    /// a resumed run's log reads as if it had never stopped.
    pub fn open(path: &Path, keep_bytes: u64) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let found = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        if found < keep_bytes {
            return Err(Error::Checkpoint(format!(
                "{} holds {found} bytes, fewer than the {keep_bytes} its checkpoint recorded",
                path.display()
            )));
        }
        file.set_len(keep_bytes)
            .with_context(|| format!("truncating {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &Record) -> Result<()> {
        let line = serde_json::to_string(record).expect("records serialise");
        writeln!(self.file, "{line}")
            .and_then(|()| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }

    /// Flushes the log to disk (before a checkpoint records its length).
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("syncing {}", self.path.display()))
    }

    /// Bytes written so far.
    pub fn len(&self) -> Result<u64> {
        let meta = self
            .file
            .metadata()
            .with_context(|| format!("reading {}", self.path.display()))?;
        Ok(meta.len())
    }
}

/// Reads every record of a `metrics.jsonl`.
pub fn read_records(path: &Path) -> Result<Vec<Record>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    BufReader::new(file)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&line).map_err(|e| {
                Error::Checkpoint(format!(
                    "{}:{}: not a metrics record: {e}",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}
