//! The int8 layer's forward pass on the current rayon pool: the rows quantised in chunks, then
//! the product and its epilogue in tiles of rows x columns.

use super::kernel::{BLOCK, PANEL, gemm};
use super::quantize::{RowsOut, quantize_rows};
use super::{Epilogue, Int8Linear};
use crate::kernels::isa::{Isa, isa_variants};
use crate::kernels::math;
use rayon::prelude::*;
use std::cell::Cell;

/// Rows (tokens) quantised together, and multiplied and finished together: a tile's u8 input,
/// i32 sums and f32 output stay in the core's cache between the steps.
pub(crate) const ROWS_PER_CHUNK: usize = 32;

/// Tiles per thread the work is split into when the rows alone give too few (a short text's
/// columns are then shared out).
const TILES_PER_THREAD: usize = 4;

/// The columns of a tile: per column, the sum of its int8 weights, the weight scale and the
/// bias.
struct Columns<'a> {
    sum: &'a [i32],
    scale: &'a [f32],
    bias: &'a [f32],
}

/// `out[c] = f((acc[c] - zero * sum[c]) * row_scale * scale[c] + bias[c])` for one row, `f` the
/// identity or GELU.
///
/// `acc` is the raw product `sum_k q[k] w[k][c]` of the row's u8 activations; subtracting
/// `zero * sum_k w[k][c]` makes it `sum_k (q[k] - zero) w[k][c]`, exactly.
#[inline(always)]
fn epilogue_generic<const FMA: bool, const GELU: bool>(
    acc: &[i32],
    zero: u8,
    row_scale: f32,
    cols: &Columns<'_>,
    out: &mut [f32],
) {
    let zero = i32::from(zero);
    for ((((o, &a), &sum), &cs), &b) in out
        .iter_mut()
        .zip(acc)
        .zip(cols.sum)
        .zip(cols.scale)
        .zip(cols.bias)
    {
        let a = a - zero * sum;
        *o = if FMA {
            (a as f32).mul_add(row_scale * cs, b)
        } else {
            a as f32 * (row_scale * cs) + b
        };
    }
    if GELU {
        // A loop of its own, as the fused bias + GELU kernel's: it vectorises.
        for o in out.iter_mut() {
            *o = math::gelu::<FMA>(*o);
        }
    }
}

#[inline(always)]
fn epilogue_bias<const FMA: bool>(
    acc: &[i32],
    zero: u8,
    row_scale: f32,
    cols: &Columns<'_>,
    out: &mut [f32],
) {
    epilogue_generic::<FMA, false>(acc, zero, row_scale, cols, out)
}

#[inline(always)]
fn epilogue_gelu<const FMA: bool>(
    acc: &[i32],
    zero: u8,
    row_scale: f32,
    cols: &Columns<'_>,
    out: &mut [f32],
) {
    epilogue_generic::<FMA, true>(acc, zero, row_scale, cols, out)
}

isa_variants!(epilogue_bias_isa, epilogue_bias, (acc: &[i32], zero: u8, row_scale: f32, cols: &Columns<'_>, out: &mut [f32]));
isa_variants!(epilogue_gelu_isa, epilogue_gelu, (acc: &[i32], zero: u8, row_scale: f32, cols: &Columns<'_>, out: &mut [f32]));

/// Quantised rows: `[rows, row_width]` u8 and per row the zero point, the scale and whether
/// the row held NaN or an infinity (the vectors may be longer than the rows held).
#[derive(Default)]
struct QuantizedRows {
    q: Vec<u8>,
    zero: Vec<u8>,
    scale: Vec<f32>,
    non_finite: Vec<bool>,
}

/// The output matrix, written by the tiles in parallel, each its own rows x columns.
struct SharedOut {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the tiles write disjoint parts of the buffer (see `Int8Linear::tile`).
unsafe impl Sync for SharedOut {}

impl Int8Linear {
    /// `y = epilogue(x W + b)` for `rows` row-major rows of `x`: `[rows, n]`, row-major.
    pub(crate) fn forward(&self, x: &[f32], rows: usize, epilogue: Epilogue) -> Vec<f32> {
        self.forward_with(Isa::detect(), x, rows, epilogue)
    }

    /// [`Self::forward`] with an explicit variant of the f32 kernels (quantisation and
    /// epilogue; the GEMM's kernel was chosen when the weights were quantised). Panics if the
    /// CPU lacks `isa`.
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
        let shared = SharedOut {
            ptr: out.as_mut_ptr(),
            len: out.len(),
        };
        let chunks = rows.div_ceil(ROWS_PER_CHUNK);
        let panels = self.packed.blocks() / PANEL;
        let parts = (TILES_PER_THREAD * rayon::current_num_threads())
            .div_ceil(chunks.max(1))
            .clamp(1, panels);
        if parts == 1 {
            // Enough rows: a tile is a chunk of rows with every column, quantised in the tile
            // (a chunk's u8 rows in the thread's scratch, never the whole input's).
            x.par_chunks(ROWS_PER_CHUNK * k)
                .enumerate()
                .for_each(|(chunk, x)| {
                    let mut input = QUANTIZED.take();
                    self.quantize_into(isa, x, &mut input);
                    let rows = x.len() / k;
                    let first = chunk * ROWS_PER_CHUNK;
                    self.tile(
                        isa,
                        &input,
                        0..rows,
                        first,
                        0..self.packed.blocks(),
                        epilogue,
                        &shared,
                    );
                    QUANTIZED.set(input);
                });
        } else {
            // A short input: quantised once, then tiles of a chunk of rows x a range of panels,
            // so that every thread has work.
            let mut input = QuantizedRows::default();
            self.quantize_into(isa, x, &mut input);
            (0..chunks * parts).into_par_iter().for_each(|t| {
                let (chunk, part) = (t / parts, t % parts);
                let rows = chunk * ROWS_PER_CHUNK..rows.min((chunk + 1) * ROWS_PER_CHUNK);
                let blocks = part * panels / parts * PANEL..(part + 1) * panels / parts * PANEL;
                self.tile(
                    isa,
                    &input,
                    rows.clone(),
                    rows.start,
                    blocks,
                    epilogue,
                    &shared,
                );
            });
        }
        out
    }

    /// Quantises the rows of `x` (smoothed first where the layer is) into `into`, in parallel
    /// chunks when there are several.
    fn quantize_into(&self, isa: Isa, x: &[f32], into: &mut QuantizedRows) {
        let k = self.k;
        let rows = x.len() / k;
        let width = self.packed.row_width();
        into.q.resize(rows * width, 0);
        into.zero.resize(rows, 0);
        into.scale.resize(rows, 0.0);
        into.non_finite.resize(rows, false);
        into.q[..rows * width]
            .par_chunks_mut(ROWS_PER_CHUNK * width)
            .zip(x.par_chunks(ROWS_PER_CHUNK * k))
            .zip(into.zero[..rows].par_chunks_mut(ROWS_PER_CHUNK))
            .zip(into.scale[..rows].par_chunks_mut(ROWS_PER_CHUNK))
            .zip(into.non_finite[..rows].par_chunks_mut(ROWS_PER_CHUNK))
            .for_each(|((((q, x), zero), scale), non_finite)| {
                let out = RowsOut {
                    q,
                    zero,
                    scale,
                    non_finite,
                };
                match self.input_scale() {
                    Some(inv) => {
                        let mut smoothed = SMOOTHED.take();
                        smoothed.clear();
                        for row in x.chunks_exact(k) {
                            smoothed.extend(row.iter().zip(inv).map(|(&v, &f)| v * f));
                        }
                        quantize_rows(isa, &smoothed, k, width, out);
                        SMOOTHED.set(smoothed);
                    }
                    None => quantize_rows(isa, x, k, width, out),
                }
            });
    }

    /// One tile: the product of the input's `rows` with the columns of `blocks`, finished into
    /// `out`'s rows from `first_out`.
    #[allow(clippy::too_many_arguments)]
    fn tile(
        &self,
        isa: Isa,
        input: &QuantizedRows,
        rows: std::ops::Range<usize>,
        first_out: usize,
        blocks: std::ops::Range<usize>,
        epilogue: Epilogue,
        out: &SharedOut,
    ) {
        let n = self.n;
        let width = self.packed.row_width();
        let columns = blocks.start * BLOCK..n.min(blocks.end * BLOCK);
        if columns.is_empty() {
            return;
        }
        let stride = blocks.len() * BLOCK;
        let mut acc = ACC.take();
        acc.resize(rows.len() * stride, 0);
        let q = &input.q[rows.start * width..rows.end * width];
        gemm(self.kernel, q, rows.len(), &self.packed, blocks, &mut acc);
        let (sum, scale, bias) = self.columns();
        let cols = Columns {
            sum: &sum[columns.clone()],
            scale: &scale[columns.clone()],
            bias: &bias[columns.clone()],
        };
        for (i, r) in rows.enumerate() {
            let o = first_out + i;
            assert!(o * n + columns.end <= out.len);
            // SAFETY: in bounds (checked above); output row `o`'s `columns` belong to this tile
            // alone, as the tiles partition the rows x the column ranges.
            let out = unsafe {
                std::slice::from_raw_parts_mut(out.ptr.add(o * n + columns.start), columns.len())
            };
            if input.non_finite[r] {
                // A row that held NaN or an infinity has no meaningful product: it is NaN
                // throughout, whatever the epilogue would make of it.
                out.fill(f32::NAN);
                continue;
            }
            let acc = &acc[i * stride..i * stride + columns.len()];
            let (zero, row_scale) = (input.zero[r], input.scale[r]);
            match epilogue {
                Epilogue::Bias => epilogue_bias_isa(isa, acc, zero, row_scale, &cols, out),
                Epilogue::BiasGelu => epilogue_gelu_isa(isa, acc, zero, row_scale, &cols, out),
            }
        }
        ACC.set(acc);
    }
}

thread_local! {
    /// A thread's sums for one tile, kept between calls (no allocation per tile).
    static ACC: Cell<Vec<i32>> = const { Cell::new(Vec::new()) };
    /// A thread's quantised rows for one tile.
    static QUANTIZED: Cell<QuantizedRows> = Cell::new(QuantizedRows::default());
    /// A thread's smoothed input rows for one chunk.
    static SMOOTHED: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}
