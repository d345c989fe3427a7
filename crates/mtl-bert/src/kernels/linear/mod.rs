//! Inference-only linear layers for Burn's flex backend: `y = x W + b` as one GEMM.
//!
//! Burn 0.22.1's flex runs a linear layer as a matmul, then a broadcast add of the bias on one
//! thread, and hands the matmul to one thread whenever it is under 192^3 multiply-adds: at batch
//! 1 that is every projection of a short text but the feed-forward ones (a 25-token tweet's
//! query projection is 3.7M). Here the output starts as the bias and the `gemm` crate (the one
//! Burn's flex uses) adds the product to it, on every thread of the pool from
//! [`PARALLEL_MACS`] multiply-adds.
//!
//! # Exactness and determinism
//!
//! Each output is the same dot product as Burn's, with the bias added before the last blocks of
//! the sum instead of after it: within an ulp or two of the value. The `gemm` crate splits the
//! rows and columns among threads, never a dot product, so the result does not depend on the
//! number of threads.

use burn::nn::Linear;
use burn::prelude::*;

#[cfg(feature = "flex")]
mod extension;
#[cfg(all(test, feature = "flex"))]
mod tests;

/// Multiply-adds from which a product runs on every thread of the pool (below it, on the
/// calling thread: the hand-off would cost more than it saves).
#[cfg_attr(
    not(feature = "flex"),
    allow(dead_code, reason = "the flex extension uses it")
)]
pub(crate) const PARALLEL_MACS: usize = 1 << 20;

/// `linear.forward(x)`, as one fused GEMM on flex at inference (see the module's doc), else
/// Burn's own `Linear::forward`.
pub(crate) fn forward<const D: usize>(linear: &Linear, x: Tensor<D>) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if let Some(bias) = &linear.bias
        && crate::kernels::attention::runs_on(&x.device())
    {
        use burn::backend::Dispatch;
        use extension::LinearBackend;
        let out = <Dispatch as LinearBackend>::linear(
            x.into_dispatch(),
            linear.weight.val().into_dispatch(),
            bias.val().into_dispatch(),
        );
        return Tensor::from_dispatch(out);
    }
    linear.forward(x)
}

/// `x W` (no bias; `weight` is `[k, n]`), as one GEMM on every thread on flex at inference, else
/// Burn's `matmul`.
pub(crate) fn matmul(x: Tensor<2>, weight: Tensor<2>) -> Tensor<2> {
    #[cfg(feature = "flex")]
    if crate::kernels::attention::runs_on(&x.device()) {
        use burn::backend::Dispatch;
        use extension::LinearBackend;
        let out = <Dispatch as LinearBackend>::matmul(x.into_dispatch(), weight.into_dispatch());
        return Tensor::from_dispatch(out);
    }
    x.matmul(weight)
}
