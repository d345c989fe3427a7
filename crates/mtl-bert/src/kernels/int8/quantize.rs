//! Quantisation: weights once (symmetric, per output column) and activations per row
//! (asymmetric u8).

use super::Int8Linear;
use super::kernel::{Int8Kernel, PackedWeights};
use crate::kernels::isa::isa_variants;

/// Per column `j` of a row-major `[k, n]` matrix: `max_i |w[i][j]|`, or `None` if any weight
/// is NaN or infinite (with its row and column).
fn column_max(w: &[f32], n: usize) -> Result<Vec<f32>, (usize, usize)> {
    let mut max = vec![0.0f32; n];
    for (i, row) in w.chunks_exact(n).enumerate() {
        for (j, (m, &v)) in max.iter_mut().zip(row).enumerate() {
            if !v.is_finite() {
                return Err((i, j));
            }
            *m = m.max(v.abs());
        }
    }
    Ok(max)
}

/// Why a weight matrix could not be quantised.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum QuantizeError {
    /// A weight or bias is NaN or infinite.
    NonFinite {
        /// `"weight"` or `"bias"`.
        tensor: &'static str,
        /// Row (input index; 0 for the bias).
        row: usize,
        /// Column (output index).
        column: usize,
    },
    /// The shapes do not fit `[k, n]` and `[n]`.
    Shape(String),
    /// The kernel `MTL_INT8_KERNEL` names is unknown or does not run on this CPU.
    Kernel(String),
}

impl std::fmt::Display for QuantizeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NonFinite {
                tensor,
                row,
                column,
            } => write!(
                f,
                "the {tensor} holds a NaN or infinite value (row {row}, column {column})"
            ),
            Self::Shape(problem) | Self::Kernel(problem) => f.write_str(problem),
        }
    }
}

/// The largest weight magnitude: symmetric 8 bits.
const Q_MAX: f32 = 127.0;

/// Symmetric per-column int8 of a row-major `[k, n]` matrix, at most [`Q_MAX`] in magnitude:
/// the quantised values (row-major) and one scale per column (`w ≈ q * scale`; 0 for a column
/// of zeros).
pub(crate) fn quantize_weights(w: &[f32], n: usize) -> Result<(Vec<i8>, Vec<f32>), QuantizeError> {
    let max = column_max(w, n).map_err(|(row, column)| QuantizeError::NonFinite {
        tensor: "weight",
        row,
        column,
    })?;
    let scales: Vec<f32> = max.iter().map(|&m| m / Q_MAX).collect();
    let inverse: Vec<f32> = scales
        .iter()
        .map(|&s| if s > 0.0 { s.recip() } else { 0.0 })
        .collect();
    let mut q = vec![0i8; w.len()];
    for (q, w) in q.chunks_exact_mut(n).zip(w.chunks_exact(n)) {
        for ((q, &w), &inv) in q.iter_mut().zip(w).zip(&inverse) {
            *q = (w * inv).round_ties_even().clamp(-Q_MAX, Q_MAX) as i8;
        }
    }
    Ok((q, scales))
}

impl Int8Linear {
    /// Quantises `y = x W + b`, `W` row-major `[k, n]` (Burn's `Linear` layout: input rows,
    /// output columns), `b` `[n]` (zeros when `None`), for `kernel`; the model smooths some
    /// layers first ([`Self::quantize_smoothed`]).
    #[cfg(test)]
    pub(crate) fn quantize(
        kernel: Int8Kernel,
        weight: &[f32],
        bias: Option<&[f32]>,
        k: usize,
        n: usize,
    ) -> Result<Self, QuantizeError> {
        Self::quantize_for(kernel, weight, bias, k, n, None)
    }

    /// [`Self::quantize`] with per-input-channel smoothing (SmoothQuant, Xiao et al. 2023):
    /// `x W = (x / s) (s W)`, so channel `k` of the input is divided by `smooth[k]` before it is
    /// quantised and row `k` of `W` multiplied by it. Channels whose activations have outliers
    /// get `s > 1`: their range moves into the weights, where each output column has its own
    /// scale, and the other channels of a token keep more of the 8 bits.
    ///
    /// For the best GEMM kernel this CPU runs, or the one `MTL_INT8_KERNEL` names.
    pub(crate) fn quantize_smoothed(
        weight: &[f32],
        bias: Option<&[f32]>,
        k: usize,
        n: usize,
        smooth: Option<&[f32]>,
    ) -> Result<Self, QuantizeError> {
        let kernel = super::kernel().map_err(QuantizeError::Kernel)?;
        Self::quantize_for(kernel, weight, bias, k, n, smooth)
    }

    /// [`Self::quantize_smoothed`] for a given GEMM kernel (which must run on this CPU).
    pub(crate) fn quantize_for(
        kernel: Int8Kernel,
        weight: &[f32],
        bias: Option<&[f32]>,
        k: usize,
        n: usize,
        smooth: Option<&[f32]>,
    ) -> Result<Self, QuantizeError> {
        assert!(kernel.is_supported(), "{kernel:?} does not run on this CPU");
        if k == 0 || n == 0 || weight.len() != k * n {
            return Err(QuantizeError::Shape(format!(
                "a weight of {} values is not a non-empty [{k}, {n}] matrix",
                weight.len()
            )));
        }
        let bias = match bias {
            Some(b) if b.len() != n => {
                return Err(QuantizeError::Shape(format!(
                    "a bias of {} values for {n} outputs",
                    b.len()
                )));
            }
            Some(b) => {
                if let Some(column) = b.iter().position(|v| !v.is_finite()) {
                    return Err(QuantizeError::NonFinite {
                        tensor: "bias",
                        row: 0,
                        column,
                    });
                }
                b.to_vec()
            }
            None => vec![0.0; n],
        };
        let smoothed;
        let (weight, input_scale) = match smooth {
            Some(s) if s.len() != k || s.iter().any(|&v| !(v.is_finite() && v > 0.0)) => {
                return Err(QuantizeError::Shape(format!(
                    "{} smoothing factors for {k} inputs, or one not finite and positive",
                    s.len()
                )));
            }
            Some(s) => {
                smoothed = weight
                    .chunks_exact(n)
                    .zip(s)
                    .flat_map(|(row, &f)| row.iter().map(move |&w| w * f))
                    .collect::<Vec<f32>>();
                (&smoothed[..], Some(s.iter().map(|&f| f.recip()).collect()))
            }
            None => (weight, None),
        };
        let (q, scales) = quantize_weights(weight, n)?;
        let mut col_sums = vec![0i32; n];
        for row in q.chunks_exact(n) {
            for (sum, &v) in col_sums.iter_mut().zip(row) {
                *sum += i32::from(v);
            }
        }
        Ok(Self {
            packed: PackedWeights::pack(kernel, &q, k, n),
            kernel,
            scales,
            col_sums,
            bias,
            input_scale,
            k,
            n,
        })
    }

    /// Per input channel: what the input is multiplied by before it is quantised (`1 / s`).
    pub(super) fn input_scale(&self) -> Option<&[f32]> {
        self.input_scale.as_deref()
    }

    /// Per column: the sum of the int8 weights, the weight scale and the bias.
    pub(super) fn columns(&self) -> (&[i32], &[f32], &[f32]) {
        (&self.col_sums, &self.scales, &self.bias)
    }
}

/// Where [`quantize_rows`] writes: `[rows, width]` u8 values, and per row the zero point, the
/// scale (`x ≈ (q - zero) * scale`) and whether the row held NaN or an infinity.
pub(crate) struct RowsOut<'a> {
    pub(crate) q: &'a mut [u8],
    pub(crate) zero: &'a mut [u8],
    pub(crate) scale: &'a mut [f32],
    pub(crate) non_finite: &'a mut [bool],
}

/// Per-row u8 quantisation of `rows` row-major rows of width `k`.
///
/// Fills `out` (`width >= k`, the padding zero); a row holding NaN or an infinity is flagged and
/// its `q` is all zero point.
#[inline(always)]
fn quantize_rows_generic<const FMA: bool>(x: &[f32], k: usize, width: usize, out: RowsOut<'_>) {
    for ((((x, q), zero), scale), bad) in x
        .chunks_exact(k)
        .zip(out.q.chunks_exact_mut(width))
        .zip(out.zero.iter_mut())
        .zip(out.scale.iter_mut())
        .zip(out.non_finite.iter_mut())
    {
        // Lane-wise min, max and a NaN probe (`v * 0` is NaN for NaN and infinities), folded
        // across 8 lanes so that LLVM keeps them in vector registers.
        let mut lo = [0.0f32; 8];
        let mut hi = [0.0f32; 8];
        let mut probe = [0.0f32; 8];
        let mut chunks = x.chunks_exact(8);
        for c in &mut chunks {
            for l in 0..8 {
                lo[l] = lo[l].min(c[l]);
                hi[l] = hi[l].max(c[l]);
                probe[l] += c[l] * 0.0;
            }
        }
        for &v in chunks.remainder() {
            lo[0] = lo[0].min(v);
            hi[0] = hi[0].max(v);
            probe[0] += v * 0.0;
        }
        let (q, padding) = q.split_at_mut(k);
        padding.fill(0);
        let min = lo.iter().copied().fold(0.0f32, f32::min);
        let max = hi.iter().copied().fold(0.0f32, f32::max);
        *bad = probe.iter().any(|p| !p.is_finite()) || !(max - min).is_finite();
        let range = max - min;
        if *bad || range == 0.0 {
            // All zeros (or unusable): every value maps to the zero point 0.
            *scale = 1.0;
            *zero = 0;
            q.fill(0);
            continue;
        }
        let s = range / 255.0;
        let inv = s.recip();
        let z = (-min * inv).round_ties_even().clamp(0.0, 255.0);
        *scale = s;
        *zero = z as u8;
        for (q, &v) in q.iter_mut().zip(x) {
            *q = round_to_u8(v * inv + z);
        }
    }
}

/// `v` rounded to the nearest integer (ties to even) and clamped to `[0, 255]`.
///
/// Adding `1.5 * 2^23` to a float in `[0, 255]` leaves its rounded value (the FPU's
/// round-to-nearest-even) in the low bits of the sum's mantissa: a vectorisable float add and
/// bit cast, where `round_ties_even() as u8` is a saturating conversion LLVM keeps scalar.
#[inline(always)]
pub(crate) fn round_to_u8(v: f32) -> u8 {
    const MAGIC: f32 = 12_582_912.0;
    (v.clamp(0.0, 255.0) + MAGIC).to_bits() as u8
}

isa_variants!(
    quantize_rows_isa,
    quantize_rows_generic,
    (x: &[f32], k: usize, width: usize, out: RowsOut<'_>)
);

/// [`quantize_rows_generic`] compiled for `isa` (which the CPU must support).
pub(crate) fn quantize_rows(
    isa: crate::kernels::Isa,
    x: &[f32],
    k: usize,
    width: usize,
    out: RowsOut<'_>,
) {
    assert!(isa.is_supported(), "{isa:?} is not supported by this CPU");
    let rows = x.len() / k;
    assert_eq!(x.len(), rows * k, "whole rows");
    assert!(width >= k && out.q.len() == rows * width);
    assert!(out.zero.len() == rows && out.scale.len() == rows && out.non_finite.len() == rows);
    quantize_rows_isa(isa, x, k, width, out)
}
