//! The int8 product and its epilogue, in chunks of rows on the current rayon pool.

use super::quantize::quantize_rows;
use super::{Epilogue, Int8Linear};
use crate::kernels::isa::{Isa, isa_variants};
use crate::kernels::math;
use rayon::prelude::*;
use rten_gemm::{GemmExecutor, GemmInputA, GemmInputB, GemmOptions};
use rten_tensor::NdTensorView;
use std::sync::OnceLock;

/// Rows (tokens) quantised, multiplied and finished together: a chunk's u8 input, i32
/// product and f32 output stay in the core's cache between the three steps.
pub(crate) const ROWS_PER_CHUNK: usize = 32;

thread_local! {
    /// The u8 x i8 -> i32 GEMM, the best kernel this CPU runs. `rten-gemm`'s executor is not
    /// `Sync`, so each thread has its own; all pick the same kernel, the one the weights were
    /// packed for.
    static EXECUTOR: GemmExecutor<u8, i8, i32> = GemmExecutor::default();
}

/// Runs `f` with this thread's GEMM executor.
pub(crate) fn with_executor<T>(f: impl FnOnce(&GemmExecutor<u8, i8, i32>) -> T) -> T {
    EXECUTOR.with(f)
}

/// The name of the GEMM kernel this CPU runs (for example `x86_64-u8i8i32-avx2`).
pub(crate) fn kernel_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| with_executor(|e| e.kernel_name().to_owned()))
}

/// What the epilogue needs of a chunk's rows and of the layer's columns.
struct Scales<'a> {
    /// Per row: the activation zero point and scale.
    row_zero: &'a [u8],
    row_scale: &'a [f32],
    /// Per column: the sum of the column's int8 weights, the weight scale and the bias.
    col_sum: &'a [i32],
    col_scale: &'a [f32],
    bias: &'a [f32],
}

/// `out[r][c] = f((acc[r][c] - zero[r] * col_sum[c]) * row_scale[r] * col_scale[c] + bias[c])`,
/// `f` the identity or GELU.
///
/// `acc` is the raw product `sum_k q[r][k] w[k][c]` of the u8 activations; subtracting
/// `zero[r] * sum_k w[k][c]` makes it `sum_k (q[r][k] - zero[r]) w[k][c]`, exactly. (rten-gemm
/// 0.27's own zero-point handling gave wrong sums for its second tile of rows: measured,
/// `tests::gemm_is_exact`, so its raw product is used.)
#[inline(always)]
fn epilogue_generic<const FMA: bool, const GELU: bool>(
    acc: &[i32],
    s: &Scales<'_>,
    out: &mut [f32],
) {
    let n = s.col_scale.len();
    for (((acc, out), &rs), &zero) in acc
        .chunks_exact(n)
        .zip(out.chunks_exact_mut(n))
        .zip(s.row_scale)
        .zip(s.row_zero)
    {
        let zero = i32::from(zero);
        for ((((o, &a), &sum), &cs), &b) in out
            .iter_mut()
            .zip(acc)
            .zip(s.col_sum)
            .zip(s.col_scale)
            .zip(s.bias)
        {
            let a = a - zero * sum;
            *o = if FMA {
                (a as f32).mul_add(rs * cs, b)
            } else {
                a as f32 * (rs * cs) + b
            };
        }
        if GELU {
            // A loop of its own, as the fused bias + GELU kernel's: it vectorises.
            for o in out.iter_mut() {
                *o = math::gelu::<FMA>(*o);
            }
        }
    }
}

#[inline(always)]
fn epilogue_bias<const FMA: bool>(acc: &[i32], s: &Scales<'_>, out: &mut [f32]) {
    epilogue_generic::<FMA, false>(acc, s, out)
}

#[inline(always)]
fn epilogue_gelu<const FMA: bool>(acc: &[i32], s: &Scales<'_>, out: &mut [f32]) {
    epilogue_generic::<FMA, true>(acc, s, out)
}

isa_variants!(epilogue_bias_isa, epilogue_bias, (acc: &[i32], s: &Scales<'_>, out: &mut [f32]));
isa_variants!(epilogue_gelu_isa, epilogue_gelu, (acc: &[i32], s: &Scales<'_>, out: &mut [f32]));

impl Int8Linear {
    /// `y = epilogue(x W + b)` for `rows` row-major rows of `x`: `[rows, n]`, row-major.
    pub(crate) fn forward(&self, x: &[f32], rows: usize, epilogue: Epilogue) -> Vec<f32> {
        self.forward_with(Isa::detect(), x, rows, epilogue)
    }

    /// [`Self::forward`] with an explicit variant of our kernels (quantisation and epilogue;
    /// the GEMM's kernel is `rten-gemm`'s choice). Panics if the CPU lacks `isa`.
    pub(crate) fn forward_with(
        &self,
        isa: Isa,
        x: &[f32],
        rows: usize,
        epilogue: Epilogue,
    ) -> Vec<f32> {
        let (k, n) = (self.k, self.n);
        assert!(isa.is_supported(), "{isa:?} is not supported by this CPU");
        assert_eq!(x.len(), rows * k, "int8 linear: input is not [{rows}, {k}]");
        let mut out = vec![0.0; rows * n];
        // One task per chunk of rows.
        out.par_chunks_mut(ROWS_PER_CHUNK * n)
            .zip(x.par_chunks(ROWS_PER_CHUNK * k))
            .for_each(|(out, x)| self.chunk(isa, x, x.len() / k, epilogue, out));
        out
    }

    /// One chunk of rows: quantise, multiply, finish.
    fn chunk(&self, isa: Isa, x: &[f32], rows: usize, epilogue: Epilogue, out: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        // Taken out, not borrowed: while the GEMM waits for its own parallel work, rayon may run
        // another chunk on this thread, which then finds an empty scratch of its own.
        let mut scratch = SCRATCH.take();
        {
            let Scratch {
                q,
                zero,
                row_scale,
                non_finite,
                acc,
                smoothed,
            } = &mut scratch;
            q.resize(rows * k, 0);
            zero.resize(rows, 0);
            row_scale.resize(rows, 0.0);
            non_finite.resize(rows, false);
            acc.resize(rows * n, 0);
            let (q, zero, row_scale, non_finite, acc) = (
                &mut q[..rows * k],
                &mut zero[..rows],
                &mut row_scale[..rows],
                &mut non_finite[..rows],
                &mut acc[..rows * n],
            );
            let x = match self.input_scale() {
                Some(inv) => {
                    smoothed.clear();
                    for row in x.chunks_exact(k) {
                        smoothed.extend(row.iter().zip(inv).map(|(&v, &f)| v * f));
                    }
                    &smoothed[..]
                }
                None => x,
            };
            quantize_rows(isa, x, k, q, zero, row_scale, non_finite);
            with_executor(|exec| {
                // Packed once here: unpacked, rten-gemm would pack it again for every block of
                // columns.
                let a = exec.prepack_a(NdTensorView::from_data([rows, k], &*q));
                exec.gemm(
                    acc,
                    GemmInputA::Packed(&a),
                    GemmInputB::Packed(self.packed()),
                    GemmOptions::default(),
                )
            })
            .expect("int8 linear: the shapes were checked");
            let (col_sum, col_scale, bias) = self.columns();
            let scales = Scales {
                row_zero: zero,
                row_scale,
                col_sum,
                col_scale,
                bias,
            };
            match epilogue {
                Epilogue::Bias => epilogue_bias_isa(isa, acc, &scales, out),
                Epilogue::BiasGelu => epilogue_gelu_isa(isa, acc, &scales, out),
            }
            // A row that held NaN or an infinity has no meaningful product: it is NaN
            // throughout, whatever the epilogue would make of it.
            for (r, _) in non_finite.iter().enumerate().filter(|(_, bad)| **bad) {
                out[r * n..(r + 1) * n].fill(f32::NAN);
            }
        }
        SCRATCH.set(scratch);
    }
}

/// A thread's buffers for one chunk, kept between calls (no allocation or zeroing per chunk).
#[derive(Default)]
struct Scratch {
    q: Vec<u8>,
    zero: Vec<u8>,
    row_scale: Vec<f32>,
    non_finite: Vec<bool>,
    acc: Vec<i32>,
    /// The chunk's input divided by the smoothing factors.
    smoothed: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::Cell<Scratch> = std::cell::Cell::default();
}
