//! Loss weighting in joint mode: the weight `w_i` of each task's loss in the step's loss
//! `sum_i w_i * weight_i * L_i` (`weight_i` the task's fixed `weight`, 1 unless set; `L_i`
//! its mean cross-entropy over its batch).
//!
//! The methods follow LibMTL's definitions (`LibMTL/weighting/{EW,UW,DWA,RLW}.py`), each cited
//! with the paper's equation where it has one.

use std::str::FromStr;

use mtl_data::{SplitMix64, derive_seed};
use serde::{Deserialize, Serialize};

use super::{ensure_finite, number_param, scaled_softmax, split_setting};
use crate::error::{Error, Result};

/// DWA's default temperature `T` (Liu et al. 2019, section 3.2; LibMTL's default).
pub const DWA_TEMPERATURE: f64 = 2.0;

/// GradNorm's default asymmetry `alpha` (LibMTL's default).
pub const GRADNORM_ALPHA: f64 = 1.5;

/// Adam's first-moment decay for uncertainty weighting's log-variances (PyTorch's default).
pub const ADAM_BETA1: f64 = 0.9;
/// Adam's second-moment decay (PyTorch's default).
pub const ADAM_BETA2: f64 = 0.999;
/// Adam's epsilon (PyTorch's default).
pub const ADAM_EPSILON: f64 = 1e-8;

/// How the tasks' losses are weighted in a joint step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum LossWeighting {
    /// `w_i = 1`: the tasks' fixed `weight`s alone (the default).
    #[default]
    Equal,
    /// Uncertainty weighting (Kendall, Gal & Cipolla 2018, "Multi-task learning using
    /// uncertainty to weigh losses for scene geometry and semantics", eq. 10): each task has a
    /// learned log-variance `s_i` (0 at the start) and the loss is
    /// `sum_i exp(-s_i) L_i + s_i`, so `w_i = exp(-s_i)`. After each step, `s_i` takes an Adam
    /// step (betas 0.9/0.999, epsilon 1e-8, no weight decay) on its analytic gradient
    /// `1 - exp(-s_i) L_i` ([`uncertainty_gradient`]), at the heads' learning rate and
    /// schedule. (LibMTL's `UW` halves both terms, `L_i / (2 exp(s_i)) + s_i / 2`: the same
    /// optimum, half the weight.)
    Uncertainty,
    /// Dynamic weight average (Liu, Johns & Davison 2019, "End-to-end multi-task learning
    /// with attention", eq. 7): `w_i = K softmax_i(r_i / T)` with
    /// `r_i = L_i(e-1) / L_i(e-2)`, the ratio of the task's mean training loss over the two
    /// previous epochs, `K` tasks; `w_i = 1` in the first two epochs. The weights sum to `K`.
    Dwa {
        /// The temperature `T` (> 0; larger is more even). Default: 2.
        temperature: f64,
    },
    /// Random loss weighting (Lin et al. 2022, "Reasonable effectiveness of random weighting:
    /// a litmus test for multi-task learning", TMLR; eq. 3 with a standard normal): each step
    /// `w = softmax(z)`, `z_i` independent standard normal draws seeded by the run's seed and
    /// the step (the weights sum to 1, as in LibMTL's `RLW`).
    Rlw,
    /// GradNorm (Chen et al. 2018, "GradNorm: gradient normalization for adaptive loss
    /// balancing in deep multitask networks", eqs. 1-2, as LibMTL's `GradNorm`): learned
    /// weights `w = K softmax(z)` (`z = 0` at the start) balance the norms
    /// `G_i = |grad w_i L_i|` of the tasks' weighted gradients on the shared encoder (LibMTL
    /// takes all shared parameters, not only the last layer): after each step `z` takes an
    /// Adam step (as uncertainty's) on the gradient of `sum_i |G_i - mean(G) r_i^alpha|`, `r_i`
    /// the task's loss ratio `L_i(t) / L_i(0)` over its mean across tasks, `L_i(0)` its mean
    /// loss over the first epoch, and `mean(G) r_i^alpha` held constant
    /// ([`gradnorm_gradient`]). Equal weights in the first epoch. Needs each task's own
    /// backward, as a gradient aggregation does; with the encoder frozen the weights stay.
    GradNorm {
        /// The asymmetry `alpha` (>= 0): how strongly tasks that train slower are pulled up.
        /// Default: 1.5.
        alpha: f64,
    },
}

impl LossWeighting {
    /// The method's names, for error messages and help.
    pub const NAMES: &'static str = "equal, uncertainty, dwa[:T], rlw, gradnorm[:ALPHA]";

    /// Whether the method needs each task's gradient norm on the shared encoder (so each
    /// task's own backward).
    pub fn needs_task_gradients(&self) -> bool {
        matches!(self, Self::GradNorm { .. })
    }

    /// The setting as written in a configuration (`"dwa:2"`); [`FromStr`] reads it back.
    pub fn setting(&self) -> String {
        match self {
            Self::Equal => "equal".into(),
            Self::Uncertainty => "uncertainty".into(),
            Self::Dwa { temperature } => format!("dwa:{temperature}"),
            Self::Rlw => "rlw".into(),
            Self::GradNorm { alpha } => format!("gradnorm:{alpha}"),
        }
    }

    /// The weights `w_i` of step `step` (0-based) of a run seeded with `seed`, over `tasks`
    /// tasks, from the method's `state`.
    pub fn weights(
        &self,
        state: &WeightingState,
        tasks: usize,
        seed: u64,
        step: usize,
    ) -> Result<Vec<f64>> {
        let weights = match self {
            Self::Equal => vec![1.0; tasks],
            Self::Uncertainty => {
                let s = state.log_variances(tasks);
                ensure_finite(&s, "uncertainty weighting's log-variances")?;
                s.iter().map(|s| (-s).exp()).collect()
            }
            Self::Dwa { temperature } => match state.epoch_losses.as_slice() {
                [.., before, last] => dwa_weights(before, last, *temperature)?,
                _ => vec![1.0; tasks],
            },
            Self::Rlw => rlw_weights(tasks, derive_seed(seed, &[26, 1, step as u64])),
            Self::GradNorm { .. } => {
                if state.initial_losses.is_empty() {
                    vec![1.0; tasks]
                } else {
                    let mut z = state.gradnorm_logits.clone();
                    z.resize(tasks, 0.0);
                    ensure_finite(&z, "GradNorm's weight logits")?;
                    scaled_softmax(&z, tasks as f64)
                }
            }
        };
        ensure_finite(&weights, "the loss weights")?;
        Ok(weights)
    }

    /// Adds one batch of task `task` to the state: `loss_sum`, its summed (unweighted)
    /// cross-entropy over `examples` examples (DWA's epoch means, GradNorm's first epoch's;
    /// nothing for the others).
    pub fn observe_batch(
        &self,
        state: &mut WeightingState,
        tasks: usize,
        task: usize,
        loss_sum: f64,
        examples: usize,
    ) {
        let records = match self {
            Self::Dwa { .. } => true,
            Self::GradNorm { .. } => state.initial_losses.is_empty(),
            _ => false,
        };
        if records {
            state.epoch_loss_sums.resize(tasks, 0.0);
            state.epoch_examples.resize(tasks, 0);
            state.epoch_loss_sums[task] += loss_sum;
            state.epoch_examples[task] += examples;
        }
    }

    /// Ends an epoch: DWA keeps each task's mean loss over it (the two latest epochs),
    /// GradNorm the first epoch's.
    pub fn end_epoch(&self, state: &mut WeightingState, tasks: usize) {
        if let Self::GradNorm { .. } = self
            && state.initial_losses.is_empty()
        {
            let sums = std::mem::take(&mut state.epoch_loss_sums);
            let examples = std::mem::take(&mut state.epoch_examples);
            state.initial_losses = (0..tasks)
                .map(|i| match (sums.get(i), examples.get(i)) {
                    (Some(&sum), Some(&n)) if n > 0 => sum / n as f64,
                    _ => 1.0,
                })
                .collect();
        }
        if let Self::Dwa { .. } = self {
            let sums = std::mem::take(&mut state.epoch_loss_sums);
            let examples = std::mem::take(&mut state.epoch_examples);
            let previous = state.epoch_losses.last().cloned();
            let means = (0..tasks)
                .map(|i| match (sums.get(i), examples.get(i)) {
                    (Some(&sum), Some(&n)) if n > 0 => sum / n as f64,
                    // No batch of the task this epoch: its ratio is 1.
                    _ => previous.as_ref().map_or(1.0, |p| p[i]),
                })
                .collect();
            state.epoch_losses.push(means);
            if state.epoch_losses.len() > 2 {
                state.epoch_losses.remove(0);
            }
        }
    }

    /// Updates the state after an optimiser step: uncertainty weighting's and GradNorm's Adam
    /// step on their parameters; nothing for the others.
    pub fn after_step(&self, state: &mut WeightingState, step: &StepOutcome) -> Result<()> {
        let tasks = step.losses.len();
        match self {
            Self::Uncertainty => {
                let mut s = state.log_variances(tasks);
                let grads: Vec<f64> = s
                    .iter()
                    .zip(step.losses.iter().zip(step.task_weights))
                    .map(|(&s, (loss, weight))| {
                        loss.map_or(0.0, |l| uncertainty_gradient(s, weight * l))
                    })
                    .collect();
                ensure_finite(&grads, "uncertainty weighting's gradient (the task losses)")?;
                let adam = state.adam.get_or_insert_with(|| AdamState::new(tasks));
                adam.step(&mut s, &grads, step.lr);
                state.log_variances = s;
            }
            Self::GradNorm { alpha } => {
                // The first epoch, a step without every task, or no shared gradient: no update.
                let (Some(norms), false) = (step.grad_norms, state.initial_losses.is_empty())
                else {
                    return Ok(());
                };
                let (Some(losses), Some(norms)) = (
                    step.losses.iter().copied().collect::<Option<Vec<f64>>>(),
                    norms.iter().copied().collect::<Option<Vec<f64>>>(),
                ) else {
                    return Ok(());
                };
                let mut z = state.gradnorm_logits.clone();
                z.resize(tasks, 0.0);
                let grads = gradnorm_gradient(&z, &norms, &losses, &state.initial_losses, *alpha)?;
                let adam = state.adam.get_or_insert_with(|| AdamState::new(tasks));
                adam.step(&mut z, &grads, step.lr);
                state.gradnorm_logits = z;
            }
            _ => {}
        }
        Ok(())
    }
}

/// What an optimiser step's tasks did, for the loss weightings that learn from it.
#[derive(Debug, Clone, Copy)]
pub struct StepOutcome<'a> {
    /// Each task's mean (unweighted) cross-entropy over the step's batches; `None` for a task
    /// without a batch in the step (uncertainty then counts its gradient as 0).
    pub losses: &'a [Option<f64>],
    /// Each task's fixed `weight` (uncertainty's `L_i` is `weight_i` times the loss).
    pub task_weights: &'a [f64],
    /// Each task's weighted gradient norm on the shared encoder, `|grad w_i weight_i L_i|`
    /// (GradNorm's `G_i`), when each task had its own backward.
    pub grad_norms: Option<&'a [Option<f64>]>,
    /// The learning rate of the step (the heads').
    pub lr: f64,
}

impl FromStr for LossWeighting {
    type Err = String;

    /// Parses `equal`, `uncertainty`, `dwa[:T]`, `rlw` or `gradnorm[:ALPHA]`.
    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let (name, param) = split_setting(text);
        let no_param = |method: Self| match param {
            None => Ok(method),
            Some(p) => Err(format!("{name}:{p}: {name} takes no parameter")),
        };
        match name {
            "equal" => no_param(Self::Equal),
            "uncertainty" => no_param(Self::Uncertainty),
            "rlw" => no_param(Self::Rlw),
            "dwa" => Ok(Self::Dwa {
                temperature: number_param(
                    name,
                    param,
                    DWA_TEMPERATURE,
                    "a positive temperature",
                    |t| t > 0.0,
                )?,
            }),
            "gradnorm" => Ok(Self::GradNorm {
                alpha: number_param(name, param, GRADNORM_ALPHA, "a number >= 0", |a| a >= 0.0)?,
            }),
            _ => Err(format!(
                "unknown loss weighting {text:?} (expected one of {})",
                Self::NAMES
            )),
        }
    }
}

/// What a loss weighting carries from step to step; saved in the checkpoint's `state.json`
/// (every field defaults to empty, so an older checkpoint loads). Its numbers are written as
/// text (Rust's shortest round-trip form) so that they read back bit for bit: serde_json's
/// default number parser may be one unit in the last place off, and a resumed run would then
/// drift from the uninterrupted one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WeightingState {
    /// Uncertainty weighting: each task's log-variance `s_i` (empty: all 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "exact_floats")]
    pub log_variances: Vec<f64>,
    /// Uncertainty weighting's and GradNorm's Adam state of their parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adam: Option<AdamState>,
    /// GradNorm: the logits `z` of its weights `K softmax(z)` (empty: all 0).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "exact_floats")]
    pub gradnorm_logits: Vec<f64>,
    /// GradNorm: each task's mean training loss over the first epoch, `L_i(0)` (empty during
    /// it).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "exact_floats")]
    pub initial_losses: Vec<f64>,
    /// DWA: each task's mean training loss over each of the (up to) two latest finished
    /// epochs, oldest first.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        with = "exact_float_rows"
    )]
    pub epoch_losses: Vec<Vec<f64>>,
    /// DWA: each task's summed cross-entropy so far in the current epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "exact_floats")]
    pub epoch_loss_sums: Vec<f64>,
    /// DWA: each task's examples so far in the current epoch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epoch_examples: Vec<usize>,
}

/// Serde for `f64`s as their shortest round-trip text (`"-0.109"`), read back exactly.
mod exact_floats {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(values.iter().map(|v| format!("{v:?}")))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| {
                text.parse()
                    .map_err(|_| D::Error::custom(format!("{text:?} is not a number")))
            })
            .collect()
    }
}

/// [`exact_floats`] for rows of `f64`s.
mod exact_float_rows {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(rows: &[Vec<f64>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            rows.iter()
                .map(|row| row.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>()),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<f64>>, D::Error> {
        Vec::<Vec<String>>::deserialize(d)?
            .iter()
            .map(|row| {
                row.iter()
                    .map(|text| {
                        text.parse()
                            .map_err(|_| D::Error::custom(format!("{text:?} is not a number")))
                    })
                    .collect()
            })
            .collect()
    }
}

impl WeightingState {
    /// Whether the state holds nothing (as for `equal` and `rlw`).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Uncertainty weighting's log-variances over `tasks` tasks (0 where not yet learned).
    pub fn log_variances(&self, tasks: usize) -> Vec<f64> {
        let mut s = self.log_variances.clone();
        s.resize(tasks, 0.0);
        s
    }
}

/// Adam (Kingma & Ba 2015, Algorithm 1) over a few scalars, with bias correction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamState {
    /// First moments.
    #[serde(with = "exact_floats")]
    pub m: Vec<f64>,
    /// Second moments.
    #[serde(with = "exact_floats")]
    pub v: Vec<f64>,
    /// Steps taken.
    pub t: u64,
}

impl AdamState {
    /// Zero moments for `n` parameters.
    pub fn new(n: usize) -> Self {
        Self {
            m: vec![0.0; n],
            v: vec![0.0; n],
            t: 0,
        }
    }

    /// One step of `params` down `grads` at learning rate `lr` (betas 0.9/0.999, epsilon 1e-8).
    pub fn step(&mut self, params: &mut [f64], grads: &[f64], lr: f64) {
        self.m.resize(params.len(), 0.0);
        self.v.resize(params.len(), 0.0);
        self.t += 1;
        let t = self.t as i32;
        let (c1, c2) = (1.0 - ADAM_BETA1.powi(t), 1.0 - ADAM_BETA2.powi(t));
        for (((p, &g), m), v) in params
            .iter_mut()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
        {
            *m = ADAM_BETA1 * *m + (1.0 - ADAM_BETA1) * g;
            *v = ADAM_BETA2 * *v + (1.0 - ADAM_BETA2) * g * g;
            *p -= lr * (*m / c1) / ((*v / c2).sqrt() + ADAM_EPSILON);
        }
    }
}

/// `d/ds (exp(-s) L + s) = 1 - exp(-s) L`: the gradient of uncertainty weighting's loss term
/// with respect to the log-variance `s` (Kendall et al. 2018, eq. 10).
pub fn uncertainty_gradient(s: f64, loss: f64) -> f64 {
    1.0 - (-s).exp() * loss
}

/// The gradient of GradNorm's loss `sum_i |G_i - mean(G) r_i^alpha|` (Chen et al. 2018, eq. 2;
/// the target `mean(G) r_i^alpha` held constant) with respect to the logits `z` of the weights
/// `w = K softmax(z)`, given the weighted gradient norms `G_i = w_i n_i` (`norms`), the step's
/// losses and the first epoch's (`initial`): with `s_i = sign(G_i - target_i)`,
/// `dL/dz_j = K p_j (s_j n_j - sum_i s_i n_i p_i)`, `p = softmax(z)`.
pub fn gradnorm_gradient(
    logits: &[f64],
    norms: &[f64],
    losses: &[f64],
    initial: &[f64],
    alpha: f64,
) -> Result<Vec<f64>> {
    for values in [logits, norms, losses, initial] {
        ensure_finite(values, "GradNorm's inputs (gradient norms and losses)")?;
    }
    let k = logits.len();
    if initial.iter().any(|&l| l <= 0.0) {
        return Err(Error::NotFinite(
            "GradNorm: a task's mean loss over the first epoch is 0, so its loss ratio is not \
             finite"
                .into(),
        ));
    }
    let p = scaled_softmax(logits, 1.0);
    let ratios: Vec<f64> = losses.iter().zip(initial).map(|(l, l0)| l / l0).collect();
    let mean_ratio = ratios.iter().sum::<f64>() / k as f64;
    let mean_norm = norms.iter().sum::<f64>() / k as f64;
    // n_i = G_i / w_i: the norm of the task's unweighted gradient.
    let unweighted: Vec<f64> = norms
        .iter()
        .zip(&p)
        .map(|(g, p)| g / (k as f64 * p))
        .collect();
    let signs: Vec<f64> = norms
        .iter()
        .zip(&ratios)
        .map(|(g, r)| {
            let target = mean_norm * (r / mean_ratio).powf(alpha);
            if *g > target {
                1.0
            } else if *g < target {
                -1.0
            } else {
                0.0
            }
        })
        .collect();
    let weighted: f64 = (0..k).map(|i| signs[i] * unweighted[i] * p[i]).sum();
    let grads: Vec<f64> = (0..k)
        .map(|j| k as f64 * p[j] * (signs[j] * unweighted[j] - weighted))
        .collect();
    ensure_finite(&grads, "GradNorm's gradient")?;
    Ok(grads)
}

/// DWA's weights (Liu et al. 2019, eq. 7) from each task's mean loss over the epoch before
/// last (`before`) and the last epoch (`last`): `K softmax(last_i / before_i / T)`.
pub fn dwa_weights(before: &[f64], last: &[f64], temperature: f64) -> Result<Vec<f64>> {
    ensure_finite(before, "DWA's epoch losses")?;
    ensure_finite(last, "DWA's epoch losses")?;
    if before.iter().any(|&l| l <= 0.0) {
        return Err(Error::NotFinite(
            "DWA: a task's mean loss over an epoch is 0, so the ratio of its losses is not \
             finite"
                .into(),
        ));
    }
    let ratios: Vec<f64> = last
        .iter()
        .zip(before)
        .map(|(l, b)| l / b / temperature)
        .collect();
    Ok(scaled_softmax(&ratios, last.len() as f64))
}

/// RLW's weights (Lin et al. 2022): the softmax of `tasks` standard normal draws
/// (Box–Muller on SplitMix64 seeded with `seed`); they sum to 1.
pub fn rlw_weights(tasks: usize, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    let draws: Vec<f64> = (0..tasks)
        .map(|_| {
            // 1 - u lies in (0, 1]: its logarithm is finite.
            let (u1, u2) = (1.0 - rng.next_f64(), rng.next_f64());
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        })
        .collect();
    scaled_softmax(&draws, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    /// A step of two tasks of weight 1 with `losses`, at learning rate `lr`.
    fn outcome(losses: &[Option<f64>], lr: f64) -> StepOutcome<'_> {
        StepOutcome {
            losses,
            task_weights: &[1.0, 1.0],
            grad_norms: None,
            lr,
        }
    }

    #[test]
    fn gradnorms_gradient_matches_a_central_difference() {
        // L(z) = sum_i |w_i(z) n_i - c_i| with the targets c_i held at z's values.
        let (z, n) = ([0.3, -0.2, 0.1], [2.0, 0.5, 1.0]);
        let (losses, initial, alpha) = ([0.5, 0.9, 0.7], [1.0, 1.0, 0.8], 1.5);
        let w = |z: &[f64]| scaled_softmax(z, 3.0);
        let g: Vec<f64> = w(&z).iter().zip(&n).map(|(w, n)| w * n).collect();
        let grads = gradnorm_gradient(&z, &g, &losses, &initial, alpha).unwrap();
        let ratios: Vec<f64> = losses.iter().zip(&initial).map(|(l, l0)| l / l0).collect();
        let mean_ratio = ratios.iter().sum::<f64>() / 3.0;
        let mean_g = g.iter().sum::<f64>() / 3.0;
        let targets: Vec<f64> = ratios
            .iter()
            .map(|r| mean_g * (r / mean_ratio).powf(alpha))
            .collect();
        let loss = |z: &[f64]| -> f64 {
            w(z).iter()
                .zip(&n)
                .zip(&targets)
                .map(|((w, n), c)| (w * n - c).abs())
                .sum()
        };
        for j in 0..3 {
            let h = 1e-6;
            let (mut up, mut down) = (z, z);
            up[j] += h;
            down[j] -= h;
            let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
            assert!(
                (grads[j] - numeric).abs() < 1e-6,
                "{j}: {} vs {numeric}",
                grads[j]
            );
        }
        // Balanced norms at equal ratios: nothing to change.
        let flat = gradnorm_gradient(&[0.0, 0.0], &[1.0, 1.0], &[1.0, 1.0], &[1.0, 1.0], 1.5);
        assert_eq!(flat.unwrap(), [0.0, 0.0]);
        assert!(gradnorm_gradient(&[0.0], &[f64::NAN], &[1.0], &[1.0], 1.5).is_err());
    }

    #[test]
    fn gradnorm_weights_are_equal_in_the_first_epoch_then_learned() {
        let method = LossWeighting::GradNorm { alpha: 1.5 };
        let mut state = WeightingState::default();
        method.observe_batch(&mut state, 2, 0, 2.0, 2);
        method.observe_batch(&mut state, 2, 1, 1.0, 2);
        assert_eq!(method.weights(&state, 2, 0, 0).unwrap(), [1.0, 1.0]);
        let norms = [Some(2.0), Some(0.5)];
        let mut step = StepOutcome {
            losses: &[Some(1.0), Some(0.5)],
            task_weights: &[1.0, 1.0],
            grad_norms: Some(&norms),
            lr: 0.1,
        };
        method.after_step(&mut state, &step).unwrap();
        assert!(
            state.gradnorm_logits.is_empty(),
            "no update in the first epoch"
        );
        method.end_epoch(&mut state, 2);
        assert_eq!(state.initial_losses, [1.0, 0.5]);
        // Same loss ratios, task 0's gradient norm is the larger: its weight falls.
        method.after_step(&mut state, &step).unwrap();
        let w = method.weights(&state, 2, 0, 1).unwrap();
        assert!(
            w[0] < 1.0 && w[1] > 1.0 && (w[0] + w[1] - 2.0).abs() < 1e-12,
            "{w:?}"
        );
        // A step without every task leaves the weights.
        step.losses = &[Some(1.0), None];
        let before = state.clone();
        method.after_step(&mut state, &step).unwrap();
        assert_eq!(state, before);
        // Epoch losses are no longer recorded.
        method.observe_batch(&mut state, 2, 0, 2.0, 2);
        assert!(state.epoch_loss_sums.is_empty());
    }

    #[test]
    fn settings_parse_and_print_back() {
        for text in [
            "equal",
            "uncertainty",
            "dwa:2",
            "dwa:0.5",
            "rlw",
            "gradnorm:1.5",
        ] {
            let method: LossWeighting = text.parse().unwrap();
            assert_eq!(method.setting(), text);
        }
        assert_eq!(
            "dwa".parse::<LossWeighting>(),
            Ok(LossWeighting::Dwa { temperature: 2.0 })
        );
        let err = "famo".parse::<LossWeighting>().unwrap_err();
        assert!(
            err.contains("equal, uncertainty, dwa[:T], rlw, gradnorm[:ALPHA]"),
            "{err}"
        );
        assert_eq!(
            "gradnorm".parse::<LossWeighting>(),
            Ok(LossWeighting::GradNorm { alpha: 1.5 })
        );
        let err = "dwa:0".parse::<LossWeighting>().unwrap_err();
        assert!(err.contains("dwa:0") && err.contains("positive"), "{err}");
        assert!(
            "rlw:3"
                .parse::<LossWeighting>()
                .unwrap_err()
                .contains("no parameter")
        );
    }

    #[test]
    fn uncertaintys_gradient_is_the_derivative_of_its_loss() {
        // d/ds (e^-s L + s) at s = 0, L = 3: 1 - 3 = -2; at s = ln 2, L = 3: 1 - 1.5 = -0.5.
        assert_eq!(uncertainty_gradient(0.0, 3.0), -2.0);
        assert!((uncertainty_gradient(2f64.ln(), 3.0) + 0.5).abs() < 1e-15);
        // Against a central difference at an arbitrary point.
        let f = |s: f64| (-s).exp() * 0.7 + s;
        let (s, h) = (0.3, 1e-6);
        let numeric = (f(s + h) - f(s - h)) / (2.0 * h);
        assert!((uncertainty_gradient(s, 0.7) - numeric).abs() < 1e-9);
        // The optimum s = ln L: the gradient vanishes.
        assert!(uncertainty_gradient(0.7f64.ln(), 0.7).abs() < 1e-15);
    }

    #[test]
    fn uncertainty_weights_follow_the_learned_log_variances() {
        let method = LossWeighting::Uncertainty;
        let mut state = WeightingState::default();
        assert_eq!(method.weights(&state, 2, 0, 0).unwrap(), [1.0, 1.0]);
        // Adam's first step moves each s by lr * sign(gradient): task 0's loss 3 > 1 = e^0
        // raises s_0 (gradient -2), task 1's loss 0.5 lowers s_1 (gradient 0.5).
        method
            .after_step(&mut state, &outcome(&[Some(3.0), Some(0.5)], 0.1))
            .unwrap();
        assert!(close(&state.log_variances, &[0.1, -0.1], 1e-6), "{state:?}");
        let w = method.weights(&state, 2, 0, 1).unwrap();
        assert!(close(
            &w,
            &[
                (-state.log_variances[0]).exp(),
                (-state.log_variances[1]).exp()
            ],
            0.0
        ));
        // A task without a batch has gradient 0.
        let before = state.log_variances.clone();
        method
            .after_step(&mut state, &outcome(&[Some(3.0), None], 0.1))
            .unwrap();
        assert!(state.log_variances[0] > before[0]);
        assert_eq!(state.adam.as_ref().unwrap().t, 2);
        // A NaN loss is an error, not a NaN weight.
        let err = method.after_step(&mut state, &outcome(&[Some(f64::NAN), None], 0.1));
        assert!(matches!(err, Err(Error::NotFinite(_))), "{err:?}");
    }

    #[test]
    fn adam_matches_a_hand_computed_second_step() {
        // Two steps of Adam on one scalar with gradients 1 then -1, lr 0.5.
        let mut adam = AdamState::new(1);
        let mut p = [0.0];
        adam.step(&mut p, &[1.0], 0.5);
        assert!((p[0] + 0.5).abs() < 1e-7, "{p:?}");
        let first = p[0];
        adam.step(&mut p, &[-1.0], 0.5);
        // m = 0.9*0.1 - 0.1 = -0.01, m^ = -0.01/0.19; v = 0.999e-3 + 1e-3, v^ = v/(1-0.999^2).
        let m_hat = -0.01 / (1.0 - 0.81);
        let v_hat = (0.999e-3 + 1e-3) / (1.0 - 0.999f64.powi(2));
        let expected = first - 0.5 * m_hat / (v_hat.sqrt() + 1e-8);
        assert!((p[0] - expected).abs() < 1e-12, "{} vs {expected}", p[0]);
    }

    #[test]
    fn dwa_weights_come_from_the_two_previous_epochs() {
        let method = LossWeighting::Dwa { temperature: 2.0 };
        let mut state = WeightingState::default();
        // Epoch 0: task 0 has two batches (loss sums 4 and 2 over 2 + 2 examples: mean 1.5),
        // task 1 one (loss sum 2 over 2: mean 1).
        method.observe_batch(&mut state, 2, 0, 4.0, 2);
        method.observe_batch(&mut state, 2, 0, 2.0, 2);
        method.observe_batch(&mut state, 2, 1, 2.0, 2);
        assert_eq!(method.weights(&state, 2, 0, 0).unwrap(), [1.0, 1.0]);
        method.end_epoch(&mut state, 2);
        assert_eq!(state.epoch_losses, [[1.5, 1.0]]);
        // Epoch 1: still equal weights.
        assert_eq!(method.weights(&state, 2, 0, 5).unwrap(), [1.0, 1.0]);
        method.observe_batch(&mut state, 2, 0, 3.0, 4); // mean 0.75: half of epoch 0's
        method.observe_batch(&mut state, 2, 1, 2.0, 2); // mean 1: unchanged
        method.end_epoch(&mut state, 2);
        // r = (0.5, 1); w = 2 softmax(r / 2) = 2 e^{r_i/2} / (e^0.25 + e^0.5).
        let (a, b) = (0.25f64.exp(), 0.5f64.exp());
        let expected = [2.0 * a / (a + b), 2.0 * b / (a + b)];
        let w = method.weights(&state, 2, 0, 9).unwrap();
        assert!(close(&w, &expected, 1e-15), "{w:?}");
        assert!((w.iter().sum::<f64>() - 2.0).abs() < 1e-15);
        // A third epoch: only the latest two are kept.
        method.observe_batch(&mut state, 2, 0, 1.0, 2);
        method.observe_batch(&mut state, 2, 1, 1.0, 2);
        method.end_epoch(&mut state, 2);
        assert_eq!(state.epoch_losses, [[0.75, 1.0], [0.5, 0.5]]);
        // A NaN loss is an error.
        assert!(dwa_weights(&[1.0, f64::NAN], &[1.0, 1.0], 2.0).is_err());
        assert!(dwa_weights(&[0.0, 1.0], &[1.0, 1.0], 2.0).is_err());
    }

    #[test]
    fn rlw_is_a_seeded_softmax_of_normal_draws() {
        let method = LossWeighting::Rlw;
        let state = WeightingState::default();
        let a = method.weights(&state, 3, 42, 7).unwrap();
        assert_eq!(a, method.weights(&state, 3, 42, 7).unwrap(), "reproducible");
        assert_ne!(
            a,
            method.weights(&state, 3, 42, 8).unwrap(),
            "a new draw each step"
        );
        assert!((a.iter().sum::<f64>() - 1.0).abs() < 1e-12 && a.iter().all(|&w| w > 0.0));
        // The draws are standard normal: mean ~0 and variance ~1 over many.
        let mut rng = SplitMix64::new(1);
        let n = 20_000;
        let z: Vec<f64> = (0..n)
            .map(|_| {
                let w = rlw_weights(2, rng.next_u64());
                // softmax of two: w0 / w1 = e^{z0 - z1}, z0 - z1 ~ N(0, 2).
                (w[0] / w[1]).ln()
            })
            .collect();
        let mean = z.iter().sum::<f64>() / n as f64;
        let var = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.05 && (var - 2.0).abs() < 0.1, "{mean} {var}");
    }

    #[test]
    fn the_state_reads_back_bit_for_bit() {
        let mut state = WeightingState::default();
        assert!(state.is_empty());
        LossWeighting::Uncertainty
            .after_step(
                &mut state,
                &outcome(&[Some(0.1f64.sqrt()), Some(1.0 / 3.0)], 1e-3),
            )
            .unwrap();
        state.epoch_losses = vec![vec![-0.10942761516874722, 1e-300], vec![0.6, 5e-324]];
        state.epoch_loss_sums = vec![std::f64::consts::PI, 0.0];
        state.epoch_examples = vec![3, 0];
        let json = serde_json::to_string(&state).unwrap();
        let back: WeightingState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state, "{json}");
        let err = serde_json::from_str::<WeightingState>(r#"{"log_variances": ["x"]}"#);
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("\"x\" is not a number")
        );
        let old: WeightingState = serde_json::from_str("{}").unwrap();
        assert!(old.is_empty());
    }

    #[test]
    fn equal_weights_are_one() {
        let state = WeightingState::default();
        assert_eq!(
            LossWeighting::Equal.weights(&state, 3, 1, 2).unwrap(),
            [1.0; 3]
        );
        assert_eq!(LossWeighting::default(), LossWeighting::Equal);
    }
}
