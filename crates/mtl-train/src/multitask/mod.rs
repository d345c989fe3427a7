//! Multi-task optimisation in joint mode (one batch of every task per optimiser step): how
//! the tasks' losses are weighted, and how their gradients on the shared encoder are
//! combined.
//!
//! Two independent choices, each a setting of [`TrainConfig`](crate::TrainConfig) and a flag
//! of `mtl train`, both for `step_mode = "joint"` only:
//!
//! - [`LossWeighting`] (`loss_weighting`, `--loss-weighting NAME[:PARAMS]`), in
//!   [`weighting`]: the weight `w_i` of each task's loss in the step's loss
//!   `sum_i w_i * weight_i * L_i` (`weight_i` the task's fixed `weight`, `L_i` its mean
//!   cross-entropy). `equal` (the default: `w_i = 1`), `uncertainty` (Kendall et al. 2018),
//!   `dwa[:T]` (Liu et al. 2019), `rlw` (Lin et al. 2022) and `gradnorm[:ALPHA]` (Chen et al.
//!   2018). State that a method carries from step to step ([`WeightingState`]: learned
//!   log-variances or weight logits and their Adam moments, the epochs' mean losses) is part
//!   of the checkpoint, so `--resume` continues exactly.
//! - [`GradAggregation`] (`grad_aggregation`, `--grad-aggregation NAME[:PARAMS]`), in
//!   [`aggregation`]: how the tasks' gradients `g_i` with respect to the shared encoder's
//!   trainable parameters become one update direction. `sum` (the default: `sum_i g_i`, one
//!   backward of the summed loss), `pcgrad` (Yu et al. 2020), `mgda` (Sener & Koltun 2018),
//!   `cagrad[:C]` (Liu et al. 2021), `imtl-g` (Liu et al. 2021) and `upgrad` (Quinton & Rey
//!   2024, TorchJD). Every one of these returns weights `c_i` with the update
//!   `sum_i c_i g_i`, computed from the Gram matrix `G_ij = g_i . g_j` alone (the approach of
//!   TorchJD's `GramianWeightedAggregator`): the trainer reads back `k(k+1)/2` inner products,
//!   never the gradients themselves, and writes `sum_i c_i g_i` back as the encoder's
//!   gradient. Each head keeps the gradient of its own task's loss.
//!
//! With any aggregation but `sum` (or with GradNorm, which needs each task's gradient norm),
//! each task's loss has its own backward (the row-group
//! backward of [`backward_in_row_groups`](crate::row_groups::backward_in_row_groups) with one
//! term; the tasks' batches are different inputs, so this costs about what the joint backward
//! of the summed loss costs). Gradient accumulation sums each task's gradients over the
//! step's micro-steps before they are combined; clipping applies to the combined gradient.
//! With the whole encoder frozen (cached embeddings) there is nothing shared to combine and
//! the gradients are summed.
//!
//! The two compose: an aggregation combines the gradients of the weighted losses
//! `w_i * weight_i * L_i`. (LibMTL treats each as a "weighting" and runs one at a time.)
//!
//! Every function here is pure (slices of `f64`, a seed where a method draws random numbers,
//! derived from the run's seed and the step so that a run is reproducible and resumable) and
//! refuses non-finite input with [`Error::NotFinite`](crate::Error::NotFinite).

pub mod aggregation;
pub mod weighting;

pub use aggregation::GradAggregation;
pub use weighting::{LossWeighting, WeightingState};

use crate::error::{Error, Result};

/// Fails with [`Error::NotFinite`] naming `what` when a value of `values` is NaN or infinite.
pub(crate) fn ensure_finite(values: &[f64], what: &str) -> Result<()> {
    match values.iter().find(|v| !v.is_finite()) {
        Some(v) => Err(Error::NotFinite(format!("{what} holds {v} (not finite)"))),
        None => Ok(()),
    }
}

/// Splits `NAME[:PARAMS]` into the name and its parameter, if any.
fn split_setting(text: &str) -> (&str, Option<&str>) {
    match text.split_once(':') {
        Some((name, param)) => (name, Some(param)),
        None => (text, None),
    }
}

/// Parses the parameter `param` of setting `name` as a number accepted by `valid`, else
/// `default`; the error names the setting and what it expects.
fn number_param(
    name: &str,
    param: Option<&str>,
    default: f64,
    expected: &str,
    valid: impl Fn(f64) -> bool,
) -> std::result::Result<f64, String> {
    let Some(param) = param else {
        return Ok(default);
    };
    match param.parse::<f64>() {
        Ok(value) if value.is_finite() && valid(value) => Ok(value),
        _ => Err(format!("{name}:{param}: the parameter must be {expected}")),
    }
}

/// `k * softmax(x)`: weights that sum to `scale`; stable for large `x`.
fn scaled_softmax(x: &[f64], scale: f64) -> Vec<f64> {
    let max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = x.iter().map(|v| (v - max).exp()).collect();
    let total: f64 = exps.iter().sum();
    exps.iter().map(|e| scale * e / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_its_scale_and_survives_large_inputs() {
        let w = scaled_softmax(&[0.0, 0.0], 2.0);
        assert_eq!(w, [1.0, 1.0]);
        let w = scaled_softmax(&[1000.0, 1000.0 + 2f64.ln()], 3.0);
        assert!(
            (w[0] - 1.0).abs() < 1e-12 && (w[1] - 2.0).abs() < 1e-12,
            "{w:?}"
        );
    }

    #[test]
    fn settings_split_and_numbers_are_checked() {
        assert_eq!(split_setting("dwa:2"), ("dwa", Some("2")));
        assert_eq!(split_setting("rlw"), ("rlw", None));
        assert_eq!(
            number_param("dwa", None, 2.0, "positive", |t| t > 0.0),
            Ok(2.0)
        );
        assert_eq!(
            number_param("dwa", Some("0.5"), 2.0, "positive", |t| t > 0.0),
            Ok(0.5)
        );
        let err = number_param("dwa", Some("-1"), 2.0, "a positive number", |t| t > 0.0);
        assert_eq!(
            err.unwrap_err(),
            "dwa:-1: the parameter must be a positive number"
        );
        assert!(number_param("dwa", Some("nan"), 2.0, "x", |_| true).is_err());
        assert!(ensure_finite(&[1.0, f64::NAN], "the losses").is_err());
        assert!(ensure_finite(&[1.0, 2.0], "the losses").is_ok());
    }
}
