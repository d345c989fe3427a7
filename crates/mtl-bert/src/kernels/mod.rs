//! Our CPU kernels for Burn's flex backend, on plain slices.
//!
//! - [`attention`]: inference-only self-attention over a padded batch, fused (heads read in
//!   place, padding keys skipped, softmax vectorised); fp32 inference and int8 both run it.
//! - [`bias_gelu`]: the feed-forward block's `gelu(x + bias)`, forward and backward, fused and
//!   multi-threaded (training and fp32 inference).
//! - [`int8`]: inference-only int8 linear layers (`--quantize int8`): weights quantised once,
//!   activations per row, a u8 x i8 -> i32 GEMM and a fused f32 epilogue (scales, bias, GELU).
//! - [`linear`]: inference-only linear layers on flex, `x W + b` as one GEMM on every thread
//!   (Burn's flex adds the bias in a second pass and keeps small products on one thread).
//! - [`math`]: the branch-free `erf`, `exp` and GELU both use; [`isa`]: which instruction-set
//!   variant of a kernel runs (chosen at run time, forced by the tests).
//!
//! Everything here is private to the crate: the model calls [`attention::attention_tensors`],
//! [`attention::self_attention`], [`bias_gelu::bias_gelu`], [`bias_gelu::gelu`],
//! [`linear::forward`] and [`int8::Int8Linear`].

pub(crate) mod attention;
pub(crate) mod bias_gelu;
pub(crate) mod int8;
pub(crate) mod isa;
pub(crate) mod linear;
#[cfg_attr(
    not(feature = "flex"),
    allow(dead_code, reason = "the flex extension runs them")
)]
pub(crate) mod math;

pub(crate) use isa::Isa;
#[cfg(test)]
pub(crate) mod test_support;
