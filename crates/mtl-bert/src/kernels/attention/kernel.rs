//! One task per (text, head): scores, softmax over the text's keys, context.

use super::{Dims, KeyMask, Rows};
use crate::kernels::isa::{Isa, isa_variants};
use crate::kernels::math;
use gemm::Parallelism;
use rayon::prelude::*;

/// Lanes of the softmax's reductions: enough independent accumulators for LLVM to vectorise
/// them (16 f32 fill an AVX-512 register, two AVX2 ones).
const LANES: usize = 16;

/// `softmax(Q K^T / sqrt(head_dim) + bias) V` for every text and head: the `[batch * seq,
/// heads * head_dim]` row-major context.
///
/// # Panics
///
/// If a view is too short for `dims`, or `mask` is not `[dims.batch, dims.seq]`.
pub(crate) fn self_attention(
    query: Rows<'_>,
    key: Rows<'_>,
    value: Rows<'_>,
    mask: &KeyMask,
    dims: Dims,
) -> Vec<f32> {
    self_attention_with(Isa::detect(), query, key, value, mask, dims)
}

/// [`self_attention`] with an explicit variant of the softmax. Panics if the CPU lacks `isa`.
pub(crate) fn self_attention_with(
    isa: Isa,
    query: Rows<'_>,
    key: Rows<'_>,
    value: Rows<'_>,
    mask: &KeyMask,
    dims: Dims,
) -> Vec<f32> {
    assert!(isa.is_supported(), "{isa:?} is not supported by this CPU");
    let Dims {
        batch,
        seq,
        heads,
        head_dim,
    } = dims;
    let width = heads * head_dim;
    let rows = batch * seq;
    for (name, view) in [("query", query), ("key", key), ("value", value)] {
        assert!(
            rows == 0
                || (view.stride >= view.offset + width
                    && view.data.len() >= (rows - 1) * view.stride + view.offset + width),
            "attention: the {name} is not {rows} rows of {width} values"
        );
    }
    assert_eq!(
        mask.lens.len(),
        batch,
        "attention: the mask is not for {batch} texts"
    );
    assert_eq!(
        mask.bias.len(),
        rows,
        "attention: the mask is not [{batch}, {seq}]"
    );
    let mut context = vec![0.0f32; rows * width];
    if rows == 0 || head_dim == 0 {
        return context;
    }
    let out = SendPtr(context.as_mut_ptr());
    let scale = (head_dim as f32).sqrt().recip();
    (0..batch * heads).into_par_iter().for_each(|task| {
        let (text, head) = (task / heads, task % heads);
        let mut scores = SCORES.take();
        let len = mask.lens[text];
        scores.resize(seq * len, 0.0);
        let first = text * seq;
        let column = head * head_dim;
        // SAFETY: the asserts above keep every row `first..first + seq` of each view, at columns
        // `offset + column..+head_dim`, inside its slice; `scores` holds `seq * len` values; the
        // context rows `first..first + seq`, columns `column..column + head_dim`, are this
        // task's alone (one task per text and head) and inside `context`.
        unsafe {
            // scores = scale * Q K^T: [seq, head_dim] x [head_dim, len].
            gemm::gemm(
                seq,
                len,
                head_dim,
                scores.as_mut_ptr(),
                1,
                len as isize,
                false,
                query
                    .data
                    .as_ptr()
                    .add(first * query.stride + query.offset + column),
                1,
                query.stride as isize,
                key.data
                    .as_ptr()
                    .add(first * key.stride + key.offset + column),
                key.stride as isize,
                1,
                0.0,
                scale,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        let bias = mask.holes[text].then(|| &mask.bias[first..first + len]);
        softmax_rows_isa(isa, &mut scores, len, bias);
        // SAFETY: as above.
        unsafe {
            // context = P V: [seq, len] x [len, head_dim].
            gemm::gemm(
                seq,
                head_dim,
                len,
                out.get().add(first * width + column),
                1,
                width as isize,
                false,
                scores.as_ptr(),
                1,
                len as isize,
                value
                    .data
                    .as_ptr()
                    .add(first * value.stride + value.offset + column),
                1,
                value.stride as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                Parallelism::None,
            );
        }
        SCORES.set(scores);
    });
    context
}

/// The context's buffer, written by every task at its own rows and columns.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

impl SendPtr {
    /// The pointer (a method, so that closures capture the `Send` wrapper, not its field).
    fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: the tasks write disjoint elements (see `self_attention_with`).
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

thread_local! {
    /// A thread's score tile, kept between tasks (taken out while in use).
    static SCORES: std::cell::Cell<Vec<f32>> = std::cell::Cell::default();
}

/// Each row of `len` scores (plus `bias` when given) becomes its softmax:
/// `exp(x - max) / sum exp(x - max)`.
///
/// A NaN score makes its whole row NaN (the maximum skips it, its exponential does not).
#[inline(always)]
fn softmax_rows<const FMA: bool>(scores: &mut [f32], len: usize, bias: Option<&[f32]>) {
    for row in scores.chunks_exact_mut(len) {
        if let Some(bias) = bias {
            row.iter_mut().zip(bias).for_each(|(x, b)| *x += b);
        }
        let mut max = [f32::NEG_INFINITY; LANES];
        let mut chunks = row.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (m, &x) in max.iter_mut().zip(chunk) {
                *m = m.max(x);
            }
        }
        let max = chunks
            .remainder()
            .iter()
            .chain(&max)
            .fold(f32::NEG_INFINITY, |m, &x| m.max(x));
        let mut sum = [0.0f32; LANES];
        let mut chunks = row.chunks_exact_mut(LANES);
        for chunk in &mut chunks {
            for (s, x) in sum.iter_mut().zip(chunk) {
                *x = math::exp::<FMA>(*x - max);
                *s += *x;
            }
        }
        let mut total = 0.0f32;
        for x in chunks.into_remainder() {
            *x = math::exp::<FMA>(*x - max);
            total += *x;
        }
        let total = sum.iter().fold(total, |t, s| t + s);
        let inverse = total.recip();
        row.iter_mut().for_each(|x| *x *= inverse);
    }
}

isa_variants!(softmax_rows_isa, softmax_rows, (scores: &mut [f32], len: usize, bias: Option<&[f32]>));
