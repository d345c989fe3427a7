//! The fused kernels on plain slices, parallel over rows on the current rayon pool.
//!
//! All slices are row-major `[rows, width]` with `width = bias.len()`.
use super::MIN_CHUNK_ELEMS;
use crate::kernels::isa::{Isa, isa_variants};
use crate::kernels::math;
use core::mem::MaybeUninit;
use rayon::prelude::*;

fn rows_per_chunk(width: usize) -> usize {
    MIN_CHUNK_ELEMS.div_ceil(width.max(1)).max(1)
}

fn check(len: usize, width: usize) {
    assert!(
        width > 0 || len == 0,
        "bias_gelu: empty bias with a non-empty input"
    );
    assert!(
        width == 0 || len.is_multiple_of(width),
        "bias_gelu: {len} elements are not whole rows of width {width}"
    );
}

// One row (or a few) of each kernel, generic over fused multiply-add; monomorphised per ISA
// below. Straight-line f32 code over zipped slices: LLVM vectorises the inner loops.

#[inline(always)]
fn forward_rows<const FMA: bool>(x: &[f32], bias: &[f32], out: &mut [MaybeUninit<f32>]) {
    for (x, out) in x
        .chunks_exact(bias.len())
        .zip(out.chunks_exact_mut(bias.len()))
    {
        for ((o, &x), &b) in out.iter_mut().zip(x).zip(bias) {
            o.write(math::gelu::<FMA>(x + b));
        }
    }
}

#[inline(always)]
fn forward_rows_inplace<const FMA: bool>(x: &mut [f32], bias: &[f32]) {
    for x in x.chunks_exact_mut(bias.len()) {
        for (x, &b) in x.iter_mut().zip(bias) {
            *x = math::gelu::<FMA>(*x + b);
        }
    }
}

/// `g <- g * gelu'(x + b)` over a few rows, adding each row into `acc`.
#[inline(always)]
fn backward_rows<const FMA: bool>(x: &[f32], bias: &[f32], g: &mut [f32], acc: &mut [f32]) {
    for (x, g) in x
        .chunks_exact(bias.len())
        .zip(g.chunks_exact_mut(bias.len()))
    {
        for (((g, &x), &b), acc) in g.iter_mut().zip(x).zip(bias).zip(acc.iter_mut()) {
            let dx = *g * math::gelu_grad::<FMA>(x + b);
            *g = dx;
            *acc += dx;
        }
    }
}

isa_variants!(forward_chunk, forward_rows, (x: &[f32], bias: &[f32], out: &mut [MaybeUninit<f32>]));
isa_variants!(forward_chunk_inplace, forward_rows_inplace, (x: &mut [f32], bias: &[f32]));
isa_variants!(backward_chunk, backward_rows, (x: &[f32], bias: &[f32], g: &mut [f32], acc: &mut [f32]));

/// `out = gelu(x + bias)`, writing every element of `out`.
///
/// # Shapes
///
/// - `x`, `out`: `[rows, width]`, row-major
/// - `bias`: `[width]`
pub(crate) fn forward(x: &[f32], bias: &[f32], out: &mut [MaybeUninit<f32>]) {
    forward_with(Isa::detect(), x, bias, out)
}

/// [`forward`] with an explicit kernel variant.
///
/// # Panics
///
/// If the CPU does not support `isa`.
pub(crate) fn forward_with(isa: Isa, x: &[f32], bias: &[f32], out: &mut [MaybeUninit<f32>]) {
    assert!(isa.is_supported(), "{isa:?} is not supported by this CPU");
    check(x.len(), bias.len());
    assert_eq!(x.len(), out.len(), "bias_gelu: output length");
    if x.is_empty() {
        return;
    }
    let chunk = rows_per_chunk(bias.len()) * bias.len();
    out.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(out, x)| forward_chunk(isa, x, bias, out));
}

/// `x = gelu(x + bias)` in place.
///
/// # Shapes
///
/// - `x`: `[rows, width]`, row-major
/// - `bias`: `[width]`
pub(crate) fn forward_inplace(x: &mut [f32], bias: &[f32]) {
    forward_inplace_with(Isa::detect(), x, bias)
}

/// [`forward_inplace`] with an explicit kernel variant (panics if the CPU lacks `isa`).
pub(crate) fn forward_inplace_with(isa: Isa, x: &mut [f32], bias: &[f32]) {
    assert!(isa.is_supported(), "{isa:?} is not supported by this CPU");
    check(x.len(), bias.len());
    if x.is_empty() {
        return;
    }
    let chunk = rows_per_chunk(bias.len()) * bias.len();
    x.par_chunks_mut(chunk)
        .for_each(|x| forward_chunk_inplace(isa, x, bias));
}

/// Backward of `gelu(x + bias)`: overwrites `grad` with `dx = grad * gelu'(x + bias)` and
/// returns `dbias`, the sum of `dx` over rows.
///
/// Each chunk of rows sums its rows in `f32`; the chunk sums are added in `f64`, in chunk
/// order, so the result does not depend on the number of threads.
///
/// # Shapes
///
/// - `x`, `grad`: `[rows, width]`, row-major
/// - `bias`, returned `dbias`: `[width]`
pub(crate) fn backward_inplace(x: &[f32], bias: &[f32], grad: &mut [f32]) -> Vec<f32> {
    backward_inplace_with(Isa::detect(), x, bias, grad)
}

/// [`backward_inplace`] with an explicit kernel variant (panics if the CPU lacks `isa`).
pub(crate) fn backward_inplace_with(
    isa: Isa,
    x: &[f32],
    bias: &[f32],
    grad: &mut [f32],
) -> Vec<f32> {
    assert!(isa.is_supported(), "{isa:?} is not supported by this CPU");
    let width = bias.len();
    check(x.len(), width);
    assert_eq!(x.len(), grad.len(), "bias_gelu_backward: grad length");
    if x.is_empty() {
        return vec![0.0; width];
    }
    let chunk = rows_per_chunk(width) * width;
    let partials: Vec<Vec<f32>> = grad
        .par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .map(|(g, x)| {
            let mut acc = vec![0.0f32; width];
            backward_chunk(isa, x, bias, g, &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0.0f64; width];
    for partial in &partials {
        for (t, &p) in total.iter_mut().zip(partial) {
            *t += p as f64;
        }
    }
    total.into_iter().map(|t| t as f32).collect()
}
