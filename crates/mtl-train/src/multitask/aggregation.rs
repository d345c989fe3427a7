//! Gradient aggregation in joint mode: how the tasks' gradients `g_1..g_k` with respect to the
//! shared encoder's parameters become one update direction.
//!
//! Every method here returns weights `c` with the update `sum_i c_i g_i`, computed from the
//! Gram matrix `G_ij = g_i . g_j` alone (TorchJD calls these Gramian-weighted aggregators):
//! `k x k` numbers whatever the encoder's size. [`gram_matrix`] and [`combine`] do the rest on
//! flat `f32` gradients (the trainer does the same per parameter tensor). The definitions
//! follow LibMTL (`LibMTL/weighting/{PCGrad,MGDA,CAGrad,IMTL}.py`) and TorchJD
//! (`torchjd/aggregation/_upgrad.py`); each method cites its paper.

use std::str::FromStr;

use mtl_data::{SplitMix64, derive_seed};

use super::{ensure_finite, number_param, split_setting};
use crate::error::Result;

/// CAGrad's default `c` (Liu et al. 2021; LibMTL's default).
pub const CAGRAD_C: f64 = 0.5;

/// Frank–Wolfe iterations of MGDA's min-norm solver at most (LibMTL's `MAX_ITER` is 250).
const MGDA_MAX_ITER: usize = 1000;
/// MGDA's solver stops when the weights change by less than this (L1; LibMTL's is 1e-5).
const MGDA_STOP: f64 = 1e-10;
/// Projected-gradient iterations of CAGrad's inner problem at most.
const CAGRAD_MAX_ITER: usize = 5000;
/// UPGrad's Gramian normalisation threshold and diagonal regularisation (TorchJD's
/// `norm_eps` and `reg_eps` defaults).
const UPGRAD_EPS: f64 = 1e-4;

/// How the tasks' gradients on the shared encoder are combined in a joint step.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum GradAggregation {
    /// `sum_i g_i`: the gradient of the summed loss (the default; one backward).
    #[default]
    Sum,
    /// PCGrad (Yu et al. 2020, "Gradient surgery for multi-task learning", Algorithm 1): each
    /// task's gradient, against the other tasks' in a random order (seeded by the run's seed
    /// and the step), loses its component along each original gradient it conflicts with
    /// (`g_i . g_j < 0`: `g_i -= (g_i . g_j / |g_j|^2) g_j`); the projected gradients are
    /// summed. Without conflicts it is `sum`.
    PcGrad,
    /// MGDA (Sener & Koltun 2018, "Multi-task learning as multi-objective optimization",
    /// eq. 3 and Algorithm 2): the minimum-norm point of the convex hull of the task
    /// gradients, found by Frank–Wolfe with the two-task closed form ([`min_norm_2`]) as the
    /// line search. Applied to the gradients of the shared parameters themselves (the MGDA
    /// variant; MGDA-UB's bound through the pooled representation is not used).
    Mgda,
    /// CAGrad (Liu et al. 2021, "Conflict-averse gradient descent for multi-task learning",
    /// eq. 3 and Algorithm 1, as LibMTL's `CAGrad` with `rescale = 1`): the update
    /// `(g_0 + (c |g_0| / |g_w|) g_w) / (1 + c^2)`, `g_0` the mean gradient and `g_w` the
    /// combination whose weights `w` on the simplex minimise
    /// `g_w . g_0 + c |g_0| |g_w|`.
    CaGrad {
        /// How far (relative to `|g_0|`) the update may move from the mean gradient to
        /// raise the worst task's improvement (>= 0; 0 is the mean). Default: 0.5.
        c: f64,
    },
    /// IMTL-G (Liu et al. 2021, "Towards impartial multi-task learning", ICLR, eq. 8): the
    /// combination `sum_i a_i g_i`, `sum_i a_i = 1`, whose projections on every task's unit
    /// gradient are equal. When a task's gradient is zero or the system is singular the mean
    /// is used.
    ImtlG,
    /// UPGrad (Quinton & Rey 2024, "Jacobian descent for multi-objective optimization",
    /// eq. 5; TorchJD's `UPGrad`): each task's gradient is projected onto the dual cone of
    /// the task gradients (`{x : g_j . x >= 0 for all j}`), and the projections are averaged:
    /// no task's loss increases to first order. As TorchJD, the Gram matrix is first divided
    /// by its trace (or set to 0 when the trace is below 1e-4) and 1e-4 is added to its
    /// diagonal; each projection is the quadratic program of [`dual_cone_weights`].
    UpGrad,
}

impl GradAggregation {
    /// The method's names, for error messages and help.
    pub const NAMES: &'static str = "sum, pcgrad, mgda, cagrad[:C], imtl-g, upgrad";

    /// The setting as written in a configuration (`"cagrad:0.5"`); [`FromStr`] reads it back.
    pub fn setting(&self) -> String {
        match self {
            Self::Sum => "sum".into(),
            Self::PcGrad => "pcgrad".into(),
            Self::Mgda => "mgda".into(),
            Self::CaGrad { c } => format!("cagrad:{c}"),
            Self::ImtlG => "imtl-g".into(),
            Self::UpGrad => "upgrad".into(),
        }
    }

    /// The weights `c_i` of the task gradients whose Gram matrix is `gram` (`k x k`,
    /// `gram[i][j] = g_i . g_j`) at step `step` (0-based) of a run seeded with `seed` (PCGrad's
    /// order). A NaN or infinite inner product is an error.
    ///
    /// # Panics
    /// If `gram` is not square.
    pub fn weights(&self, gram: &[Vec<f64>], seed: u64, step: usize) -> Result<Vec<f64>> {
        let k = gram.len();
        for row in gram {
            assert_eq!(row.len(), k, "the Gram matrix is square");
            ensure_finite(row, "the inner products of the task gradients")?;
        }
        let weights = match self {
            Self::Sum => vec![1.0; k],
            Self::PcGrad => pcgrad_weights(gram, derive_seed(seed, &[26, 2, step as u64])),
            Self::Mgda => mgda_weights(gram),
            Self::CaGrad { c } => cagrad_weights(gram, *c),
            Self::ImtlG => imtl_g_weights(gram),
            Self::UpGrad => upgrad_weights(gram),
        };
        ensure_finite(&weights, "the gradient aggregation's weights")?;
        Ok(weights)
    }
}

impl FromStr for GradAggregation {
    type Err = String;

    /// Parses `sum`, `pcgrad`, `mgda`, `cagrad[:C]`, `imtl-g` or `upgrad`.
    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let (name, param) = split_setting(text);
        let no_param = |method: Self| match param {
            None => Ok(method),
            Some(p) => Err(format!("{name}:{p}: {name} takes no parameter")),
        };
        match name {
            "sum" => no_param(Self::Sum),
            "pcgrad" => no_param(Self::PcGrad),
            "mgda" => no_param(Self::Mgda),
            "imtl-g" => no_param(Self::ImtlG),
            "upgrad" => no_param(Self::UpGrad),
            "cagrad" => Ok(Self::CaGrad {
                c: number_param(name, param, CAGRAD_C, "a number >= 0", |c| c >= 0.0)?,
            }),
            _ => Err(format!(
                "unknown gradient aggregation {text:?} (expected one of {})",
                Self::NAMES
            )),
        }
    }
}

/// The Gram matrix of flat gradients, `[i][j] = g_i . g_j`, summed in `f64`.
///
/// # Panics
/// If the gradients differ in length.
pub fn gram_matrix(grads: &[&[f32]]) -> Vec<Vec<f64>> {
    let k = grads.len();
    let mut gram = vec![vec![0.0; k]; k];
    for i in 0..k {
        for j in i..k {
            assert_eq!(grads[i].len(), grads[j].len(), "gradients of one length");
            let dot: f64 = grads[i]
                .iter()
                .zip(grads[j])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            gram[i][j] = dot;
            gram[j][i] = dot;
        }
    }
    gram
}

/// The `k x k` Gram matrix from its upper triangle `dots`, listed row by row:
/// `(0,0), (0,1), .., (0,k-1), (1,1), .., (k-1,k-1)` (`k (k + 1) / 2` inner products).
///
/// # Panics
/// If `dots` does not hold `k (k + 1) / 2` values.
pub fn gram_from_upper(dots: &[f64], k: usize) -> Vec<Vec<f64>> {
    assert_eq!(
        dots.len(),
        k * (k + 1) / 2,
        "the upper triangle of a {k} x {k} matrix"
    );
    // Row i of the triangle starts after k + (k - 1) + .. + (k - i + 1) values.
    let index = |i: usize, j: usize| {
        let (i, j) = (i.min(j), i.max(j));
        i * k - i * i.saturating_sub(1) / 2 + (j - i)
    };
    (0..k)
        .map(|i| (0..k).map(|j| dots[index(i, j)]).collect())
        .collect()
}

/// `sum_i weights[i] * grads[i]`, accumulated in `f64`.
pub fn combine(grads: &[&[f32]], weights: &[f64]) -> Vec<f32> {
    let n = grads.first().map_or(0, |g| g.len());
    (0..n)
        .map(|p| {
            grads
                .iter()
                .zip(weights)
                .map(|(g, &w)| w * f64::from(g[p]))
                .sum::<f64>() as f32
        })
        .collect()
}

/// PCGrad's weights (Yu et al. 2020, Algorithm 1, as LibMTL's `PCGrad`): for each task `i`,
/// the coefficients of its projected gradient over the original ones, projected against every
/// task `j` in an order shuffled by SplitMix64 from `seed` (one shuffle per `i`), then summed.
pub fn pcgrad_weights(gram: &[Vec<f64>], seed: u64) -> Vec<f64> {
    let k = gram.len();
    let mut rng = SplitMix64::new(seed);
    let mut total = vec![0.0; k];
    for i in 0..k {
        // The projected g_i as a combination of the original gradients.
        let mut coefficients = vec![0.0; k];
        coefficients[i] = 1.0;
        let mut order: Vec<usize> = (0..k).collect();
        rng.shuffle(&mut order);
        for j in order {
            let dot: f64 = (0..k).map(|l| coefficients[l] * gram[l][j]).sum();
            if dot < 0.0 && gram[j][j] > 0.0 {
                coefficients[j] -= dot / gram[j][j];
            }
        }
        total
            .iter_mut()
            .zip(&coefficients)
            .for_each(|(t, c)| *t += c);
    }
    total
}

/// The two-vector min-norm problem (Sener & Koltun 2018, Algorithm 1): the `gamma` in `[0, 1]`
/// that minimises `|gamma v1 + (1 - gamma) v2|^2`, given `v1v1 = v1 . v1`, `v1v2` and `v2v2`.
pub fn min_norm_2(v1v1: f64, v1v2: f64, v2v2: f64) -> f64 {
    if v1v2 >= v1v1 {
        return 1.0;
    }
    if v1v2 >= v2v2 {
        return 0.0;
    }
    (v2v2 - v1v2) / (v1v1 + v2v2 - 2.0 * v1v2)
}

/// MGDA's weights: the point of the simplex that minimises `w^T G w` (Sener & Koltun 2018,
/// eq. 3), by Frank–Wolfe (their Algorithm 2) started from the best pair of tasks (as
/// LibMTL's `MinNormSolver`), each step's line search solved by [`min_norm_2`].
pub fn mgda_weights(gram: &[Vec<f64>]) -> Vec<f64> {
    let k = gram.len();
    if k <= 1 {
        return vec![1.0; k];
    }
    let mut best = (f64::INFINITY, 0, 1, 1.0);
    for i in 0..k {
        for j in i + 1..k {
            let gamma = min_norm_2(gram[i][i], gram[i][j], gram[j][j]);
            let cost = gamma * gamma * gram[i][i]
                + 2.0 * gamma * (1.0 - gamma) * gram[i][j]
                + (1.0 - gamma) * (1.0 - gamma) * gram[j][j];
            if cost < best.0 {
                best = (cost, i, j, gamma);
            }
        }
    }
    let mut w = vec![0.0; k];
    w[best.1] = best.3;
    w[best.2] = 1.0 - best.3;
    for _ in 0..MGDA_MAX_ITER {
        let gw = mat_vec(gram, &w);
        let t = (0..k)
            .min_by(|&a, &b| gw[a].total_cmp(&gw[b]))
            .expect("k >= 2");
        let v1v1: f64 = w.iter().zip(&gw).map(|(a, b)| a * b).sum();
        let gamma = min_norm_2(v1v1, gw[t], gram[t][t]);
        let mut change = 0.0;
        for (i, wi) in w.iter_mut().enumerate() {
            let new = gamma * *wi + if i == t { 1.0 - gamma } else { 0.0 };
            change += (new - *wi).abs();
            *wi = new;
        }
        if change < MGDA_STOP {
            break;
        }
    }
    w
}

/// CAGrad's weights (Liu et al. 2021, Algorithm 1; LibMTL's `CAGrad`, `rescale = 1`):
/// `(1/k + lambda w_i) / (1 + c^2)` with `w` from [`cagrad_direction`] and
/// `lambda = c |g_0| / |g_w|` (LibMTL's 1e-8 guards kept).
pub fn cagrad_weights(gram: &[Vec<f64>], c: f64) -> Vec<f64> {
    let k = gram.len();
    if k == 0 {
        return Vec::new();
    }
    let w = cagrad_direction(gram, c);
    let scaled_c = cagrad_radius(gram, c);
    let gw_norm = quadratic(gram, &w).max(0.0).sqrt();
    let lambda = scaled_c / (gw_norm + 1e-8);
    w.iter()
        .map(|wi| (1.0 / k as f64 + lambda * wi) / (1.0 + c * c))
        .collect()
}

/// CAGrad's radius as LibMTL computes it: `c |g_0| = c sqrt(mean(G) + 1e-8) + 1e-8`, with
/// `g_0` the mean gradient (`|g_0|^2` is the mean of the Gram matrix's entries).
fn cagrad_radius(gram: &[Vec<f64>], c: f64) -> f64 {
    let k = gram.len();
    let mean = gram.iter().flatten().sum::<f64>() / (k * k) as f64;
    c * (mean.max(0.0) + 1e-8).sqrt() + 1e-8
}

/// CAGrad's inner problem: the `w` on the simplex that minimises
/// `w^T G b + r sqrt(w^T G w + 1e-8)` with `b = 1/k` and `r` from [`cagrad_radius`] (Liu et
/// al. 2021, the dual of eq. 3, as LibMTL states it, its 1e-8 guards included), by projected
/// gradient descent with a backtracking step. It runs on the objective divided by the Gram
/// matrix's trace `T` (numbers of order 1 whatever the gradients' scale):
/// `w^T (G/T) b + (r / sqrt(T)) sqrt(w^T (G/T) w + 1e-8 / T)`, the same minimiser.
pub fn cagrad_direction(gram: &[Vec<f64>], c: f64) -> Vec<f64> {
    let k = gram.len();
    let trace: f64 = (0..k).map(|i| gram[i][i]).sum();
    let mut x = vec![1.0 / k as f64; k];
    if trace <= 0.0 || k == 1 {
        return x;
    }
    let g: Vec<Vec<f64>> = gram
        .iter()
        .map(|row| row.iter().map(|v| v / trace).collect())
        .collect();
    let scaled_c = cagrad_radius(gram, c) / trace.sqrt();
    let guard = 1e-8 / trace;
    let gb = mat_vec(&g, &x);
    let objective = |x: &[f64]| {
        let linear: f64 = x.iter().zip(&gb).map(|(a, b)| a * b).sum();
        linear + scaled_c * (quadratic(&g, x).max(0.0) + guard).sqrt()
    };
    let mut step = 1.0;
    let mut f = objective(&x);
    'descent: for _ in 0..CAGRAD_MAX_ITER {
        let gx = mat_vec(&g, &x);
        let root = (quadratic(&g, &x).max(0.0) + guard).sqrt();
        let grad: Vec<f64> = gb
            .iter()
            .zip(&gx)
            .map(|(b, q)| b + scaled_c * q / root)
            .collect();
        loop {
            let candidate = project_simplex(
                &x.iter()
                    .zip(&grad)
                    .map(|(xi, gi)| xi - step * gi)
                    .collect::<Vec<_>>(),
            );
            let d: Vec<f64> = candidate.iter().zip(&x).map(|(a, b)| a - b).collect();
            let f_new = objective(&candidate);
            let bound = f
                + d.iter().zip(&grad).map(|(a, b)| a * b).sum::<f64>()
                + d.iter().map(|v| v * v).sum::<f64>() / (2.0 * step);
            if f_new <= bound + 1e-15 || step < 1e-12 {
                let moved = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
                x = candidate;
                f = f_new;
                step *= 2.0;
                if moved < 1e-13 {
                    break 'descent;
                }
                break;
            }
            step /= 2.0;
        }
    }
    polish_cagrad(&g, &gb, scaled_c, guard, x)
}

/// CAGrad's minimiser made exact on the face of the simplex that the descent found: Newton's
/// method on the stationarity conditions over the free coordinates `F`
/// (`(grad f)_F = mu 1`, `sum_F w = 1`; `f` is smooth there). A coordinate that Newton drives
/// to zero or below leaves the face and Newton starts again. Kept when it ends inside the face
/// with `(grad f)_j >= mu` off it (the point is then the minimiser, `f` being convex), else `x`
/// as it came. The descent alone stops up to ~1e-8 from the minimiser on badly scaled
/// gradients (norms of 100 and 0.01), and CAGrad's update multiplies that error by
/// `lambda = c |g_0| / |g_w|`, thousands there.
fn polish_cagrad(g: &[Vec<f64>], gb: &[f64], s: f64, guard: f64, x: Vec<f64>) -> Vec<f64> {
    let k = x.len();
    let gradient = |w: &[f64]| -> Vec<f64> {
        let q = mat_vec(g, w);
        let r = (q.iter().zip(w).map(|(a, b)| a * b).sum::<f64>().max(0.0) + guard).sqrt();
        gb.iter().zip(&q).map(|(b, q)| b + s * q / r).collect()
    };
    let mut free: Vec<usize> = (0..k).filter(|&i| x[i] > 0.0).collect();
    while free.len() >= 2 {
        let n = free.len();
        let mut w = vec![0.0; k];
        free.iter().for_each(|&i| w[i] = x[i]);
        let total: f64 = w.iter().sum();
        w.iter_mut().for_each(|v| *v /= total);
        let mut mu = free.iter().map(|&i| gradient(&w)[i]).sum::<f64>() / n as f64;
        for _ in 0..50 {
            let q = mat_vec(g, &w);
            let r = (quadratic(g, &w).max(0.0) + guard).sqrt();
            let grad = gradient(&w);
            // [H_FF -1; 1^T 0] [dw; dmu] = -[grad_F - mu; sum_F w - 1], with the Hessian
            // H = s (G / r - (G w)(G w)^T / r^3).
            let mut system = vec![vec![0.0; n + 1]; n + 1];
            let mut rhs = vec![0.0; n + 1];
            for (a, &i) in free.iter().enumerate() {
                for (b, &j) in free.iter().enumerate() {
                    system[a][b] = s * (g[i][j] / r - q[i] * q[j] / (r * r * r));
                }
                system[a][n] = -1.0;
                system[n][a] = 1.0;
                rhs[a] = mu - grad[i];
            }
            rhs[n] = 1.0 - free.iter().map(|&i| w[i]).sum::<f64>();
            let Some(delta) = solve(system, rhs) else {
                return x;
            };
            free.iter().zip(&delta).for_each(|(&i, d)| w[i] += d);
            mu += delta[n];
            if delta[..n].iter().all(|d| d.abs() <= 1e-16) {
                break;
            }
        }
        if let Some(out) = free.iter().position(|&i| w[i] <= 0.0) {
            free.remove(out);
            continue;
        }
        let grad = gradient(&w);
        let tolerance = 1e-12 * (1.0 + mu.abs());
        let optimal = w.iter().chain([&mu]).all(|v| v.is_finite())
            && (0..k).all(|j| free.contains(&j) || grad[j] >= mu - tolerance);
        return if optimal { w } else { x };
    }
    x
}

/// The Euclidean projection of `v` onto the probability simplex (Duchi et al. 2008, Fig. 1).
fn project_simplex(v: &[f64]) -> Vec<f64> {
    let mut sorted = v.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut cumulative = 0.0;
    let mut theta = 0.0;
    for (j, &u) in sorted.iter().enumerate() {
        cumulative += u;
        let t = (cumulative - 1.0) / (j + 1) as f64;
        if u - t > 0.0 {
            theta = t;
        }
    }
    v.iter().map(|x| (x - theta).max(0.0)).collect()
}

/// IMTL-G's weights (Liu et al. 2021, eq. 8, as LibMTL's `IMTL` gradient part): with unit
/// gradients `u_i = g_i / |g_i|`, `D` the rows `g_1 - g_i` and `U` the rows `u_1 - u_i`
/// (`i = 2..k`), `a_{2..k} = g_1 U^T (D U^T)^-1` and `a_1 = 1 - sum a_{2..k}`; from the Gram
/// matrix alone. The mean when a gradient is zero or `D U^T` is singular.
pub fn imtl_g_weights(gram: &[Vec<f64>]) -> Vec<f64> {
    let k = gram.len();
    let mean = vec![1.0 / k as f64; k];
    let norms: Vec<f64> = (0..k).map(|i| gram[i][i].max(0.0).sqrt()).collect();
    if k <= 1 || norms.contains(&0.0) {
        return mean;
    }
    // g_a . u_b from the Gram matrix.
    let dot_unit = |a: usize, b: usize| gram[a][b] / norms[b];
    // r_j = g_1 . (u_1 - u_j); M_ij = (g_1 - g_i) . (u_1 - u_j), for i, j in 2..k.
    let r: Vec<f64> = (1..k).map(|j| dot_unit(0, 0) - dot_unit(0, j)).collect();
    // a M = r  <=>  M^T a^T = r^T: row j of the system is column j of M.
    let system: Vec<Vec<f64>> = (1..k)
        .map(|j| {
            (1..k)
                .map(|i| dot_unit(0, 0) - dot_unit(0, j) - dot_unit(i, 0) + dot_unit(i, j))
                .collect()
        })
        .collect();
    let Some(alpha) = solve(system, r) else {
        return mean;
    };
    let mut weights = Vec::with_capacity(k);
    weights.push(1.0 - alpha.iter().sum::<f64>());
    weights.extend(alpha);
    if weights.iter().all(|w| w.is_finite()) {
        weights
    } else {
        mean
    }
}

/// UPGrad's weights (Quinton & Rey 2024, eq. 5; TorchJD's `UPGrad` with its default mean
/// preference): `sum_i v_i`, `v_i` the weights of the projection of `g_i / k` onto the dual
/// cone ([`dual_cone_weights`] with `u = e_i / k`), on the Gram matrix normalised and
/// regularised as TorchJD does (divided by its trace, or 0 when the trace is below 1e-4;
/// plus 1e-4 on the diagonal).
pub fn upgrad_weights(gram: &[Vec<f64>]) -> Vec<f64> {
    let k = gram.len();
    let trace: f64 = (0..k).map(|i| gram[i][i]).sum();
    let g: Vec<Vec<f64>> = (0..k)
        .map(|i| {
            (0..k)
                .map(|j| {
                    let normalised = if trace < UPGRAD_EPS {
                        0.0
                    } else {
                        gram[i][j] / trace
                    };
                    normalised + if i == j { UPGRAD_EPS } else { 0.0 }
                })
                .collect()
        })
        .collect();
    let mut total = vec![0.0; k];
    for i in 0..k {
        let mut u = vec![0.0; k];
        u[i] = 1.0 / k as f64;
        let v = dual_cone_weights(&g, &u);
        total.iter_mut().zip(&v).for_each(|(t, v)| *t += v);
    }
    total
}

/// The weights `v` of the projection of `J^T u` onto the dual cone of the rows of `J`
/// (`{x : J x >= 0}`), given the Gram matrix `G = J J^T` (positive definite): the solution of
/// `min v^T G v` subject to `v >= u` (Quinton & Rey 2024, Proposition 1).
///
/// Solved by projected Gauss–Seidel (exact minimisation over one coordinate at a time, clipped
/// at its bound; it converges for a positive definite `G`), then made exact on the active set
/// it found: the free coordinates solve `G_FF v_F = -G_FA u_A`, kept when that point satisfies
/// the optimality conditions (`v_F >= u_F` and `(G v)_A >= 0`).
pub fn dual_cone_weights(gram: &[Vec<f64>], u: &[f64]) -> Vec<f64> {
    let k = gram.len();
    let mut v = u.to_vec();
    let scale = gram.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
    for _ in 0..100_000 {
        let mut change = 0.0f64;
        for i in 0..k {
            if gram[i][i] <= 0.0 {
                continue;
            }
            let gv: f64 = (0..k).map(|j| gram[i][j] * v[j]).sum();
            let new = (v[i] - gv / gram[i][i]).max(u[i]);
            change = change.max((new - v[i]).abs());
            v[i] = new;
        }
        if change <= 1e-15 * (1.0 + v.iter().fold(0.0f64, |m, x| m.max(x.abs()))) {
            break;
        }
    }
    // Make it exact on the active set.
    let free: Vec<usize> = (0..k).filter(|&i| v[i] > u[i]).collect();
    if free.is_empty() {
        return v;
    }
    let system: Vec<Vec<f64>> = free
        .iter()
        .map(|&i| free.iter().map(|&j| gram[i][j]).collect())
        .collect();
    let rhs: Vec<f64> = free
        .iter()
        .map(|&i| {
            -(0..k)
                .filter(|j| !free.contains(j))
                .map(|j| gram[i][j] * u[j])
                .sum::<f64>()
        })
        .collect();
    let Some(solution) = solve(system, rhs) else {
        return v;
    };
    let mut exact = u.to_vec();
    for (&i, &value) in free.iter().zip(&solution) {
        exact[i] = value;
    }
    let gv = mat_vec(gram, &exact);
    let tolerance = 1e-12 * scale.max(1e-300);
    let feasible = free.iter().all(|&i| exact[i] >= u[i] - 1e-12)
        && (0..k)
            .filter(|i| !free.contains(i))
            .all(|i| gv[i] >= -tolerance);
    if feasible { exact } else { v }
}

/// `G x`.
fn mat_vec(gram: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
    gram.iter()
        .map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum())
        .collect()
}

/// `x^T G x`.
fn quadratic(gram: &[Vec<f64>], x: &[f64]) -> f64 {
    mat_vec(gram, x).iter().zip(x).map(|(a, b)| a * b).sum()
}

/// Solves `a x = b` by Gaussian elimination with partial pivoting; `None` when `a` is
/// singular (a pivot below 1e-12 of the largest entry).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    let largest = a.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
    if largest == 0.0 || !largest.is_finite() {
        return None;
    }
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() <= 1e-12 * largest {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        let (top, bottom) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for (offset, target) in bottom.iter_mut().enumerate() {
            let factor = target[col] / pivot_row[col];
            for (t, p) in target[col..].iter_mut().zip(&pivot_row[col..]) {
                *t -= factor * p;
            }
            b[col + 1 + offset] -= factor * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let rest: f64 = (row + 1..n).map(|c| a[row][c] * x[c]).sum();
        x[row] = (b[row] - rest) / a[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    /// Two conflicting gradients: g1 = (1, 0), g2 = (-1, 1), g1 . g2 = -1.
    fn conflicting() -> Vec<Vec<f64>> {
        gram_matrix(&[&[1.0, 0.0], &[-1.0, 1.0]])
    }

    #[test]
    fn settings_parse_and_print_back() {
        for text in [
            "sum",
            "pcgrad",
            "mgda",
            "cagrad:0.5",
            "cagrad:0",
            "imtl-g",
            "upgrad",
        ] {
            let method: GradAggregation = text.parse().unwrap();
            assert_eq!(method.setting(), text);
        }
        assert_eq!(
            "cagrad".parse::<GradAggregation>(),
            Ok(GradAggregation::CaGrad { c: 0.5 })
        );
        let err = "nash-mtl".parse::<GradAggregation>().unwrap_err();
        assert!(
            err.contains("sum, pcgrad, mgda, cagrad[:C], imtl-g, upgrad"),
            "{err}"
        );
        let err = "cagrad:-1".parse::<GradAggregation>().unwrap_err();
        assert!(err.contains("cagrad:-1") && err.contains(">= 0"), "{err}");
        assert!("pcgrad:2".parse::<GradAggregation>().is_err());
    }

    #[test]
    fn pcgrad_projects_two_conflicting_gradients() {
        // g1 loses its part along g2: (1,0) + 0.5 (-1,1) = (0.5, 0.5); g2 loses its part along
        // g1: (-1,1) + (1,0) = (0, 1). Their sum is (0.5, 1.5) = 2 g1 + 1.5 g2.
        let w = GradAggregation::PcGrad
            .weights(&conflicting(), 1, 0)
            .unwrap();
        assert!(close(&w, &[2.0, 1.5], 1e-15), "{w:?}");
        let update = combine(&[&[1.0, 0.0], &[-1.0, 1.0]], &w);
        assert_eq!(update, [0.5, 1.5]);
        // Without a conflict it is the sum.
        let g = gram_matrix(&[&[1.0, 0.0], &[1.0, 1.0], &[0.0, 2.0]]);
        assert_eq!(GradAggregation::PcGrad.weights(&g, 1, 0).unwrap(), [1.0; 3]);
    }

    #[test]
    fn pcgrad_from_the_gram_matrix_equals_projecting_the_vectors() {
        // LibMTL's PCGrad on the vectors themselves, with the same shuffles.
        let grads: [&[f32]; 3] = [&[1.0, 0.1, -0.3], &[-0.6, 1.0, 0.2], &[-0.5, -0.9, 0.4]];
        let seed = 11;
        let mut rng = SplitMix64::new(seed);
        let mut total = [0.0f64; 3];
        for i in 0..3 {
            let mut projected: Vec<f64> = grads[i].iter().map(|&v| f64::from(v)).collect();
            let mut order: Vec<usize> = (0..3).collect();
            rng.shuffle(&mut order);
            for j in order {
                let gj: Vec<f64> = grads[j].iter().map(|&v| f64::from(v)).collect();
                let dot: f64 = projected.iter().zip(&gj).map(|(a, b)| a * b).sum();
                let norm2: f64 = gj.iter().map(|v| v * v).sum();
                if dot < 0.0 {
                    projected
                        .iter_mut()
                        .zip(&gj)
                        .for_each(|(p, g)| *p -= dot / norm2 * g);
                }
            }
            total.iter_mut().zip(&projected).for_each(|(t, p)| *t += p);
        }
        let w = pcgrad_weights(&gram_matrix(&grads), seed);
        let update: Vec<f64> = combine(&grads, &w).iter().map(|&v| f64::from(v)).collect();
        assert!(close(&update, &total, 1e-6), "{update:?} vs {total:?}");
    }

    #[test]
    fn mgda_matches_a_search_over_the_simplex() {
        let grads: [&[f32]; 3] = [&[1.0, 0.2, 0.0], &[-0.4, 1.0, 0.3], &[0.3, -0.5, 0.8]];
        let g = gram_matrix(&grads);
        let w = mgda_weights(&g);
        let best = (0..=400)
            .flat_map(|a| (0..=400 - a).map(move |b| [a, b, 400 - a - b]))
            .map(|p| quadratic(&g, &p.map(|v| f64::from(v) / 400.0)))
            .fold(f64::INFINITY, f64::min);
        assert!(quadratic(&g, &w) <= best + 1e-9, "{w:?}");
        assert!(w.iter().all(|&v| v >= 0.0) && (w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn pcgrad_order_is_seeded() {
        // Three pairwise conflicting gradients: the order matters, the seed decides it.
        let g = gram_matrix(&[&[1.0, 0.1], &[-0.6, 1.0], &[-0.5, -0.9]]);
        let a = GradAggregation::PcGrad.weights(&g, 7, 3).unwrap();
        assert_eq!(a, GradAggregation::PcGrad.weights(&g, 7, 3).unwrap());
        let differs = (0..20).any(|s| GradAggregation::PcGrad.weights(&g, 7, s).unwrap() != a);
        assert!(differs, "the order never changed");
    }

    #[test]
    fn mgda_has_the_two_task_closed_form() {
        // g1 = (2, 0), g2 = (0, 1): gamma = (1 - 0) / (4 + 1) = 0.2; 0.2 g1 + 0.8 g2 = (0.4, 0.8).
        assert!((min_norm_2(4.0, 0.0, 1.0) - 0.2).abs() < 1e-15);
        let g = gram_matrix(&[&[2.0, 0.0], &[0.0, 1.0]]);
        let w = GradAggregation::Mgda.weights(&g, 0, 0).unwrap();
        assert!(close(&w, &[0.2, 0.8], 1e-15), "{w:?}");
        // One gradient inside the other's half-space beyond it: the shorter one alone.
        assert_eq!(min_norm_2(1.0, 2.0, 5.0), 1.0);
        assert_eq!(min_norm_2(5.0, 2.0, 1.0), 0.0);
        // Conflicting: gamma = (2 + 1) / (1 + 2 + 2) = 0.6; 0.6 g1 + 0.4 g2 = (0.2, 0.4).
        let w = GradAggregation::Mgda.weights(&conflicting(), 0, 0).unwrap();
        assert!(close(&w, &[0.6, 0.4], 1e-15), "{w:?}");
    }

    #[test]
    fn mgda_finds_the_min_norm_point_of_three() {
        // Orthogonal gradients of squared norms 1, 4, 4: w_i ∝ 1 / |g_i|^2 = (2/3, 1/6, 1/6).
        let g = gram_matrix(&[&[1.0, 0.0, 0.0], &[0.0, 2.0, 0.0], &[0.0, 0.0, 2.0]]);
        let w = GradAggregation::Mgda.weights(&g, 0, 0).unwrap();
        assert!(close(&w, &[2.0 / 3.0, 1.0 / 6.0, 1.0 / 6.0], 1e-6), "{w:?}");
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn cagrad_is_the_mean_at_c_0_and_matches_the_symmetric_case() {
        let g = conflicting();
        let w = GradAggregation::CaGrad { c: 0.0 }
            .weights(&g, 0, 0)
            .unwrap();
        assert!(close(&w, &[0.5, 0.5], 1e-7), "{w:?}");
        // Orthogonal unit gradients, c = 0.5: w = (1/2, 1/2) by symmetry, |g_0| = sqrt(1/2) =
        // |g_w|, lambda = 0.5, weights (1/2 + 1/4) / (1 + 1/4) = 0.6.
        let g = gram_matrix(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let w = GradAggregation::CaGrad { c: 0.5 }
            .weights(&g, 0, 0)
            .unwrap();
        assert!(close(&w, &[0.6, 0.6], 1e-7), "{w:?}");
    }

    #[test]
    fn cagrads_inner_problem_matches_a_grid_search() {
        let g = gram_matrix(&[&[1.0, 0.2], &[-0.8, 0.9]]);
        let c = 0.5;
        let x = cagrad_direction(&g, c);
        let mean = g.iter().flatten().sum::<f64>() / 4.0;
        let f = |w: f64| {
            let x = [w, 1.0 - w];
            let gb = mat_vec(&g, &[0.5, 0.5]);
            x[0] * gb[0] + x[1] * gb[1] + c * mean.sqrt() * (quadratic(&g, &x) + 1e-8).sqrt()
        };
        let best = (0..=1_000_000)
            .map(|i| i as f64 / 1e6)
            .min_by(|a, b| f(*a).total_cmp(&f(*b)))
            .unwrap();
        assert!((x[0] - best).abs() < 1e-5, "{x:?} vs {best}");
        assert!(f(x[0]) <= f(best) + 1e-12);
    }

    #[test]
    fn cagrads_inner_problem_holds_on_badly_scaled_gradients() {
        // Norms of about 100, 1 and 0.01: the guard stays LibMTL's 1e-8 on this scale (not on
        // the trace-normalised one, where it would outweigh the smallest gradient).
        // (The minimiser lies on an edge of the simplex, where the descent alone stopped
        // ~1e-8 short.)
        let mut rng = SplitMix64::new(3);
        let grads: Vec<Vec<f32>> = [100.0f32, 1.0, 0.01]
            .iter()
            .map(|scale| {
                (0..16)
                    .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32 * scale)
                    .collect()
            })
            .collect();
        let g = gram_matrix(&grads.iter().map(Vec::as_slice).collect::<Vec<_>>());
        let c = 0.5;
        let x = cagrad_direction(&g, c);
        let r = cagrad_radius(&g, c);
        let f = |x: &[f64]| {
            let gb = mat_vec(&g, &[1.0 / 3.0; 3]);
            x.iter().zip(&gb).map(|(a, b)| a * b).sum::<f64>()
                + r * (quadratic(&g, x).max(0.0) + 1e-8).sqrt()
        };
        let steps = 1000;
        let mut best = f64::INFINITY;
        for i in 0..=steps {
            for j in 0..=steps - i {
                let w = [i, j, steps - i - j].map(|n| n as f64 / steps as f64);
                best = best.min(f(&w));
            }
        }
        assert!(f(&x) <= best + 1e-12, "{x:?}: {} vs {best}", f(&x));
        // Exact: the stationarity conditions hold to rounding (equal partial derivatives on
        // the free coordinates, no smaller one off them), not just near the grid's best.
        let q = mat_vec(&g, &x);
        let root = (quadratic(&g, &x) + 1e-8).sqrt();
        let gb = mat_vec(&g, &[1.0 / 3.0; 3]);
        let grad: Vec<f64> = (0..3).map(|i| gb[i] + r * q[i] / root).collect();
        let free: Vec<usize> = (0..3).filter(|&i| x[i] > 0.0).collect();
        assert_eq!(free, [1, 2], "{x:?}");
        let mu = grad[free[0]];
        for i in 0..3 {
            if free.contains(&i) {
                assert!(
                    (grad[i] - mu).abs() <= 1e-12 * mu.abs(),
                    "{grad:?} on {free:?}"
                );
            } else {
                assert!(grad[i] >= mu, "{grad:?} on {free:?}");
            }
        }
    }

    #[test]
    fn imtl_g_equalises_the_projections_on_unit_gradients() {
        // g1 = (2, 0), g2 = (0, 1): a1 * 2 = a2 * 1 with a1 + a2 = 1: (1/3, 2/3).
        let g = gram_matrix(&[&[2.0, 0.0], &[0.0, 1.0]]);
        let w = GradAggregation::ImtlG.weights(&g, 0, 0).unwrap();
        assert!(close(&w, &[1.0 / 3.0, 2.0 / 3.0], 1e-12), "{w:?}");
        // Three tasks: the update's projections on each unit gradient are equal.
        let grads: [&[f32]; 3] = [&[1.0, 0.2, 0.0], &[-0.5, 1.0, 0.3], &[0.1, -0.4, 2.0]];
        let w = GradAggregation::ImtlG
            .weights(&gram_matrix(&grads), 0, 0)
            .unwrap();
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        let update = combine(&grads, &w);
        let projections: Vec<f64> = grads
            .iter()
            .map(|g| {
                let norm = g.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
                g.iter()
                    .zip(&update)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum::<f64>()
                    / norm
            })
            .collect();
        assert!(
            close(&projections, &[projections[0]; 3], 1e-6),
            "{projections:?}"
        );
        // A zero gradient: the mean.
        let g = gram_matrix(&[&[0.0, 0.0], &[0.0, 1.0]]);
        assert_eq!(
            GradAggregation::ImtlG.weights(&g, 0, 0).unwrap(),
            [0.5, 0.5]
        );
    }

    #[test]
    fn the_dual_cone_projection_of_conflicting_gradients() {
        // Projecting g1 onto {x: g1.x >= 0, g2.x >= 0} gives g1 + 0.5 g2 = (0.5, 0.5); g2 gives
        // g2 + g1 = (0, 1).
        let g = conflicting();
        assert!(close(
            &dual_cone_weights(&g, &[1.0, 0.0]),
            &[1.0, 0.5],
            1e-15
        ));
        assert!(close(
            &dual_cone_weights(&g, &[0.0, 1.0]),
            &[1.0, 1.0],
            1e-15
        ));
        // Already in the cone: unchanged.
        let g = gram_matrix(&[&[1.0, 0.0], &[1.0, 1.0]]);
        assert_eq!(dual_cone_weights(&g, &[0.3, 0.0]), [0.3, 0.0]);
    }

    #[test]
    fn upgrad_averages_the_projections() {
        // Unregularised, the mean of the two projections above would be (1, 0.75) / 2 per
        // task's 1/2 share: (1/2, 1/4) + (1/2, 1/2) = (1, 0.75). TorchJD's 1e-4 regularisation
        // of the trace-normalised Gram matrix moves it slightly.
        let w = GradAggregation::UpGrad
            .weights(&conflicting(), 0, 0)
            .unwrap();
        assert!(close(&w, &[1.0, 0.75], 1e-3), "{w:?}");
        // The update conflicts with neither task.
        let update = combine(&[&[1.0, 0.0], &[-1.0, 1.0]], &w);
        assert!(
            update[0] >= 0.0 && update[1] - update[0] >= -1e-6,
            "{update:?}"
        );
        // Without a conflict, the mean.
        let g = gram_matrix(&[&[1.0, 0.0], &[1.0, 1.0]]);
        let w = GradAggregation::UpGrad.weights(&g, 0, 0).unwrap();
        assert!(close(&w, &[0.5, 0.5], 1e-15), "{w:?}");
    }

    #[test]
    fn every_method_takes_one_task_and_refuses_nan() {
        let one = vec![vec![4.0]];
        for method in ["sum", "pcgrad", "mgda", "cagrad:0.5", "imtl-g", "upgrad"] {
            let method: GradAggregation = method.parse().unwrap();
            let w = method.weights(&one, 0, 0).unwrap();
            assert_eq!(w.len(), 1, "{method:?}");
            let nan = vec![vec![1.0, f64::NAN], vec![f64::NAN, 1.0]];
            let err = method.weights(&nan, 0, 0);
            assert!(
                matches!(err, Err(Error::NotFinite(_))),
                "{method:?}: {err:?}"
            );
        }
    }

    #[test]
    fn the_gram_matrix_is_rebuilt_from_its_upper_triangle() {
        let grads: [&[f32]; 4] = [&[1.0, 2.0], &[-3.0, 0.5], &[0.25, 4.0], &[2.0, -1.0]];
        let gram = gram_matrix(&grads);
        let mut upper = Vec::new();
        for i in 0..4 {
            upper.extend_from_slice(&gram[i][i..]);
        }
        assert_eq!(gram_from_upper(&upper, 4), gram);
        assert_eq!(gram_from_upper(&[2.0], 1), [[2.0]]);
        assert!(gram_from_upper(&[], 0).is_empty());
    }

    #[test]
    fn the_linear_solver_solves_and_refuses_singular_systems() {
        let x = solve(vec![vec![0.0, 2.0], vec![1.0, 1.0]], vec![4.0, 3.0]).unwrap();
        assert!(close(&x, &[1.0, 2.0], 1e-15), "{x:?}");
        assert!(solve(vec![vec![1.0, 2.0], vec![2.0, 4.0]], vec![1.0, 2.0]).is_none());
        let p = project_simplex(&[0.5, 0.5, 0.5]);
        assert!(close(&p, &[1.0 / 3.0; 3], 1e-15), "{p:?}");
        assert_eq!(project_simplex(&[2.0, 0.0]), [1.0, 0.0]);
    }
}
