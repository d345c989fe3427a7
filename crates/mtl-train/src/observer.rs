//! What a training run reports while it runs: [`Event`]s, sent to an [`Observer`] that the
//! command line turns into progress bars and lines on standard error, and a test can record.
//!
//! ```
//! use mtl_train::{Event, Observer};
//!
//! let mut seen = Vec::new();
//! let mut record = |event: Event| seen.push(event);
//! record.event(Event::Note("hello".into()));
//! assert_eq!(seen, [Event::Note("hello".into())]);
//! ```

use std::path::PathBuf;

use mtl_data::Split;

use crate::metrics::TaskMetrics;

/// One task's training data, as a run reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    /// The task's name.
    pub name: String,
    /// Training examples.
    pub examples: usize,
    /// Each label with its number of training examples, in label order.
    pub label_counts: Vec<(String, usize)>,
}

/// A task's mean training loss and accuracy over some batches.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskStats {
    /// The task's name.
    pub task: String,
    /// Mean cross-entropy per example.
    pub loss: f64,
    /// Share of examples whose highest logit is their label.
    pub accuracy: f64,
    /// Examples seen.
    pub examples: usize,
}

/// Something that happened in a run, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A line for the user: what the run does and why (held-out validation data, a resume
    /// without checkpoint, gradual unfreezing, early stopping).
    Note(String),
    /// The data is read and the run directory is ready; training starts.
    Started {
        /// The run directory.
        run_dir: PathBuf,
        /// Each task's training data.
        tasks: Vec<TaskInfo>,
        /// How batches are made (the batch plan in words).
        batches: String,
        /// Optimiser steps of the whole run.
        total_steps: usize,
        /// The step a resumed run continues from (`None` for a run from step 0).
        resumed_at: Option<usize>,
    },
    /// The frozen encoder's embeddings of `texts` texts are being computed once.
    CacheStarted {
        /// Texts to embed (training and validation splits).
        texts: usize,
    },
    /// `texts` more texts of the cache are embedded.
    CacheProgress {
        /// Texts done since the last event.
        texts: usize,
    },
    /// The cache is ready.
    CacheFinished {
        /// Seconds it took.
        seconds: f64,
    },
    /// An epoch starts (or, resumed, continues).
    EpochStarted {
        /// The epoch, from 0.
        epoch: usize,
        /// Epochs in the run.
        epochs: usize,
        /// Batches planned in this epoch.
        batches: usize,
        /// Batches already done (non-zero when resumed mid-epoch).
        done: usize,
    },
    /// An optimiser step is done.
    Step {
        /// Steps done in the run.
        step: usize,
        /// Batches done in this epoch.
        batches_done: usize,
        /// Each task's loss and accuracy so far in this epoch (tasks with a batch).
        epoch_stats: Vec<TaskStats>,
    },
    /// An epoch is done.
    EpochFinished {
        /// The epoch, from 0.
        epoch: usize,
        /// Epochs in the run.
        epochs: usize,
        /// Each task's loss and accuracy over the epoch (tasks with a batch).
        stats: Vec<TaskStats>,
    },
    /// The model was evaluated.
    Evaluated {
        /// Steps done.
        step: usize,
        /// The split evaluated.
        split: Split,
        /// Each task's metrics.
        metrics: Vec<TaskMetrics>,
        /// Whether this is the best validation score so far (the model was saved to `best/`).
        best: bool,
    },
    /// A checkpoint was written.
    Checkpoint {
        /// Steps done.
        step: usize,
    },
}

/// Receives a run's events.
pub trait Observer {
    /// Called for each event, in order, on the training thread.
    fn event(&mut self, event: Event);

    /// Whether the run should stop, asked after each optimiser step: an observer that lets
    /// its user interrupt training (Python's Ctrl-C) answers true. The run then writes a
    /// checkpoint (at once mid-epoch, after the epoch's evaluation at its end) and returns
    /// [`Error::Interrupted`](crate::Error::Interrupted); resuming it continues from that
    /// step. Default: never.
    fn should_stop(&mut self) -> bool {
        false
    }
}

impl<F: FnMut(Event)> Observer for F {
    fn event(&mut self, event: Event) {
        self(event)
    }
}

/// An observer that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Observer for Silent {
    fn event(&mut self, _event: Event) {}
}
