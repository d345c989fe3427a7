//! Fused bias + GELU for Burn's flex backend.
//!
//! BERT's feed-forward block applies `gelu(x + bias)` (exact erf GELU, as PyTorch's
//! `gelu(approximate = "none")`) to the output of its inner linear layer. Burn 0.22.1 runs that as
//! two passes on the flex backend (a broadcast add, then `gelu`), both on one thread with scalar
//! `erff`, and the backward pass again as `gelu_backward` plus a `sum_dim` for the bias.
//!
//! This module fuses the whole thing into one multi-threaded, vectorised pass each way:
//!
//! - forward: `y = gelu(x + b)`, one read of `x`, one write of `y` (in place when `x` is uniquely
//!   owned);
//! - backward: `dx = dy * gelu'(x + b)` and `db = sum(dx)` over every dimension but the last, in
//!   one read of `x` and `dy` (the bias is re-added, nothing is saved but the inputs), writing `dx`
//!   over `dy` when `dy` is uniquely owned, with per-chunk partial sums for `db`.
//!
//! It is wired in through Burn's backend-extension mechanism ([`BiasGeluBackend`], declared with
//! `#[backend_extension(Autodiff, Flex)]`): the flex implementation runs the kernels, and the
//! implementation for `Autodiff<B, C>` records a
//! [`Backward`](burn::backend::autodiff::ops::Backward) step whose backward calls
//! [`BiasGeluBackend::bias_gelu_backward`] on the inner backend. The entry point is
//! [`bias_gelu`], which runs the extension on flex devices (with or without autodiff) and falls
//! back to Burn's own `gelu(x + bias)` on every other device.
//!
//! # Accuracy
//!
//! `erf` is a branch-free piecewise polynomial (three Chebyshev-fitted pieces, selected per
//! lane), max error 0.81 ulp on `[0, 5]` with FMA (0.89 ulp without). Measured by the tests:
//!
//! - against `0.5 x (1 + erf(x / sqrt 2))` in f64 on `[-10, 10]`: 4.6e-7 absolute, 1.2e-7
//!   relative where `gelu(x) > 1` (Burn's own `gelu` is at 4.5e-7 absolute on the same grid);
//! - against Burn's flex `gelu(x + b)` (libm `erff`) on 1.5M N(0, 1) activations: 97% bit-identical,
//!   the rest one ulp of the result apart. That is within 2e-7 absolute wherever `|y| < 2`; where
//!   `y >= 2` one ulp is 2.4e-7 (4.8e-7 from 4), and 0.02% of the inputs land there one ulp off.
//!   No other `erf` can do better there: Burn's `erff` is itself not correctly rounded (1.5% of
//!   the inputs in `[1.45, 2)`, i.e. `x` in `[2.05, 2.83]`);
//! - `dx` and `dbias` against f64: closer than Burn's own autodiff (see
//!   `backward_matches_burn_autodiff`); against Burn within `1e-5 |b| + 1e-6` (`dx`) and
//!   `1e-5 |b| + 1e-5` (`dbias`). A purely relative 1e-5 cannot hold for either implementation
//!   near the zero of `gelu'` (z = -0.75) or in its tail, where `Phi(z) + z phi(z)` cancels.
//!
//! # Threads and determinism
//!
//! The kernels run on the current rayon pool (Burn's flex backend uses the global one) in chunks
//! of whole rows of at least [`MIN_CHUNK_ELEMS`] elements. Chunk boundaries do not depend on the
//! number of threads and the bias gradient's partial sums are combined in chunk order, so results
//! are bit-identical for any pool size.
//!
//! # Features
//!
//! The crate's `flex` feature compiles the extension and its autodiff implementation; without
//! it [`bias_gelu`] is always Burn's `gelu(x + bias)`.
//!
//! # Instruction sets
//!
//! The kernels are straight-line `f32` code over slices that LLVM vectorises; they are compiled
//! three times (`avx512f`, `avx2 + fma`, baseline) and chosen at run time on x86-64, so no
//! `RUSTFLAGS` are needed. Without FMA (baseline x86-64) the multiply-adds round twice and the
//! results differ in the last bit from the FMA variants, within the same error bounds.

#[cfg(feature = "flex")]
use burn::backend::Dispatch;
use burn::tensor::{Device, Tensor, activation};

#[cfg(feature = "flex")]
mod autodiff;
#[cfg(feature = "flex")]
mod extension;
#[cfg_attr(
    not(feature = "flex"),
    allow(dead_code, reason = "the flex extension runs them")
)]
pub(crate) mod kernel;

#[cfg(feature = "flex")]
pub(crate) use extension::BiasGeluBackend;

// ---------------------------------------------------------------------------------------------
// Public entry point.
// ---------------------------------------------------------------------------------------------

/// Applies `gelu(x + bias)` (exact erf GELU) with the bias broadcast over the last dimension.
///
/// On a flex device, with or without autodiff, this runs the fused kernel of
/// [`BiasGeluBackend`] (and its fused backward). On any other device it is exactly
/// `activation::gelu(x + bias.unsqueeze())`.
///
/// # Shapes
///
/// - `x`: `[batch, seq, width]`
/// - `bias`: `[width]`
/// - output: `[batch, seq, width]`
///
/// # Panics
///
/// If `bias` is not as long as the last dimension of `x`.
pub(crate) fn bias_gelu(x: Tensor<3>, bias: Tensor<1>) -> Tensor<3> {
    let [_, _, width] = x.dims();
    let [bias_len] = bias.dims();
    assert_eq!(
        bias_len, width,
        "bias_gelu: bias has {bias_len} elements, the last dimension of x has {width}"
    );

    #[cfg(feature = "flex")]
    if uses_extension(&x.device()) {
        let output =
            <Dispatch as BiasGeluBackend>::bias_gelu(x.into_dispatch(), bias.into_dispatch());
        return Tensor::from_dispatch(output);
    }
    gelu(x + bias.unsqueeze::<3>())
}

/// Exact (erf) GELU, `x · Φ(x)`, with an exact gradient on every backend.
///
/// Burn 0.22.1's default `gelu_backward`, which ndarray and the CubeCL backends (wgpu, cuda)
/// inherit, is the derivative of GELU's tanh approximation: every gradient below a GELU is off
/// by about 1e-3 of its size (measured on wgpu: `crates/mtl-train/tests/backends.rs`). flex
/// (the fused kernel above) and libtorch have exact ones. So under autodiff GELU is composed
/// from `erf`, whose backward is exact, and at inference Burn's `gelu` (an exact forward) runs.
pub(crate) fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !x.device().is_autodiff() {
        return activation::gelu(x);
    }
    let cdf = x
        .clone()
        .mul_scalar(core::f64::consts::FRAC_1_SQRT_2)
        .erf()
        .add_scalar(1.0)
        .mul_scalar(0.5);
    x * cdf
}

/// Whether [`bias_gelu`] runs the fused extension on this device: a flex device, with or without
/// autodiff.
///
/// `Device`'s equality compares the compute resource and ignores autodiff and checkpointing, so
/// `Device::flex().autodiff()` counts as flex.
#[cfg_attr(
    not(feature = "flex"),
    allow(dead_code, reason = "bias_gelu asks it on flex only")
)]
pub(crate) fn uses_extension(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    return *device == Device::flex();
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}

/// Smallest number of elements a parallel chunk holds (whole rows, so rounded up to a row).
#[cfg_attr(
    not(feature = "flex"),
    allow(dead_code, reason = "the flex extension runs them")
)]
pub(crate) const MIN_CHUNK_ELEMS: usize = 16 * 1024;

#[cfg(all(test, feature = "flex"))]
mod tests;
