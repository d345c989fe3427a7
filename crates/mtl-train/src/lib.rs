//! Multi-task training and evaluation as a library: [`train::train`] runs a training run
//! described by a [`train::TrainConfig`] and reports its progress to a
//! [`train::Observer`]; [`evaluate`] and [`metrics`] score a model on labelled data;
//! `mtl_hub` resolves a model name (a directory, a hub id or the default) to a directory. No
//! command-line, terminal or plotting code lives here: the `mtl` binary (crate `mtl`) turns
//! the observer's events into progress bars and the run's log into plots.

pub mod evaluate;
pub mod metrics;
pub mod train;
