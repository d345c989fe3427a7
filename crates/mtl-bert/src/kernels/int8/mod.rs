//! Inference-only int8 linear layers (`--quantize int8`).
//!
//! Burn 0.22.1 quantises weights but computes in float (its `q_matmul` dequantises, then runs
//! the f32 matmul), which saves memory, not time. This module runs the six linear layers of
//! each transformer layer in integers, as ONNX Runtime's dynamic quantisation does:
//!
//! - **Weights**, once at load ([`Int8Linear::quantize`]): symmetric int8, one scale per output
//!   column (`scale = max |w| / 127`), prepacked for the GEMM kernel. 8 bits on every CPU: the
//!   kernels without VNNI multiply in 16 bits rather than use `vpmaddubsw`, whose saturating
//!   pair sums need 7-bit weights (ONNX Runtime's `reduce_range`), which cost all-MiniLM-L6-v2's
//!   worst test text a cosine of 0.9897 to f32.
//! - **Smoothing** of the layers fed by a LayerNorm (query/key/value and the intermediate
//!   layer): SmoothQuant's per-input-channel factors, estimated from the LayerNorm's `gamma` and
//!   `beta` (no calibration data), move the outlier channels' range into the weights
//!   ([`Int8Linear::quantize_smoothed`]). Measured on all-MiniLM-L6-v2: the worst cosine to f32
//!   of the test texts went from 0.9939 to 0.9952, of the one-token text `"!"` from 0.982 to 0.989.
//! - **Activations**, per row (one token) at every call: asymmetric u8 over `[min(x, 0),
//!   max(x, 0)]`, `scale = (max - min) / 255` and an integer zero point, so that 0 is exact.
//!   Per row rather than ONNX Runtime's one scale per tensor: an outlier token costs only its own
//!   precision.
//! - **GEMM**: our u8 x i8 -> i32 kernels ([`kernel`]: AVX-512 VNNI, AVX-512BW, AVX2 or
//!   portable, chosen at run time, each forced by the tests) compute the raw products in tiles of
//!   rows x columns, the columns of a short input shared out among the threads; the epilogue
//!   subtracts each row's zero point times the column's weight sum, exactly.
//! - **Epilogue**, in the same pass over a chunk of rows while it is in cache:
//!   `y = acc * (row scale * column scale) + bias`, then exact-erf GELU for the intermediate
//!   layer.
//!
//! Attention's activation x activation products, softmax, LayerNorm, the embeddings and the
//! pooler stay f32.
//!
//! # Exactness and determinism
//!
//! The integer products are exact. Rows are quantised independently and each output element is
//! finished on its own, so the result depends neither on the tiling nor on the number of
//! threads.
//! Non-finite activations cannot be quantised: such a row's outputs are NaN, which the
//! encoder reports as an error naming the text (never returned as an embedding). Non-finite
//! weights are an error at quantisation.

mod gemm;
mod kernel;
mod quantize;
#[cfg(test)]
mod tests;

use burn::tensor::{Tensor, TensorData};
use kernel::{Int8Kernel, PackedWeights};

/// The environment variable that forces another (slower) int8 GEMM kernel than the best this
/// CPU runs, for comparisons and for checking a path on a machine that has a better one:
/// `avx512-vnni`, `avx512bw`, `avx2` or `generic`.
pub(crate) const KERNEL_ENV: &str = "MTL_INT8_KERNEL";

/// The GEMM kernel layers are quantised for: the one [`KERNEL_ENV`] names, else the best this
/// CPU runs. Read at each call (at load, and to describe the precision).
fn kernel() -> Result<Int8Kernel, String> {
    let Ok(name) = std::env::var(KERNEL_ENV) else {
        return Ok(Int8Kernel::detect());
    };
    let runs: Vec<&str> = Int8Kernel::ALL
        .iter()
        .filter(|k| k.is_supported())
        .map(|k| k.name())
        .collect();
    match Int8Kernel::ALL.iter().find(|k| k.name() == name) {
        Some(k) if k.is_supported() => Ok(*k),
        Some(_) => Err(format!(
            "{KERNEL_ENV}={name}: this CPU does not run that kernel (it runs {})",
            runs.join(", ")
        )),
        None => Err(format!(
            "{KERNEL_ENV}={name:?} is not an int8 kernel (this CPU runs {})",
            runs.join(", ")
        )),
    }
}

/// The name of the GEMM kernel layers are quantised for (for example `avx512-vnni`).
pub(crate) fn kernel_name() -> &'static str {
    kernel().map_or("no kernel", Int8Kernel::name)
}

/// What follows the product of an [`Int8Linear`], in the same pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Epilogue {
    /// `y = x W + b`.
    Bias,
    /// `y = gelu(x W + b)`, exact (erf) GELU.
    BiasGelu,
}

/// A linear layer `y = x W + b` with int8 weights, for inference.
pub(crate) struct Int8Linear {
    /// `W` quantised, packed for the GEMM kernel: `[k, n]`.
    packed: PackedWeights,
    /// The GEMM kernel the weights were quantised for.
    kernel: Int8Kernel,
    /// Per output column: the weight scale (`w ≈ q * scale`).
    scales: Vec<f32>,
    /// Per output column: the sum of its int8 weights (for the activations' zero points).
    col_sums: Vec<i32>,
    /// Per output column.
    bias: Vec<f32>,
    /// Per input channel, the smoothing's `1 / s` (see [`Int8Linear::quantize_smoothed`]).
    input_scale: Option<Vec<f32>>,
    /// Input width.
    k: usize,
    /// Output width.
    n: usize,
}

impl std::fmt::Debug for Int8Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Int8Linear")
            .field("k", &self.k)
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

impl Int8Linear {
    /// Bytes held (weights, scales, sums and biases).
    pub(crate) fn bytes(&self) -> usize {
        self.packed.bytes() + 12 * self.n + 4 * self.input_scale.as_ref().map_or(0, Vec::len)
    }

    /// `[batch, seq, k]` -> `[batch, seq, n]`, on the input's device.
    ///
    /// The input is read in place when it is a contiguous f32 tensor no one else holds (Burn's
    /// flex backend then hands its buffer over), and the output is built from our buffer.
    pub(crate) fn forward_tensor(&self, x: Tensor<3>, epilogue: Epilogue) -> Tensor<3> {
        let [batch, seq, width] = x.dims();
        assert_eq!(width, self.k, "int8 linear: input width");
        let device = x.device();
        let data = x.into_data().convert::<f32>();
        let values = data.as_slice::<f32>().expect("converted to f32");
        let out = self.forward(values, batch * seq, epilogue);
        Tensor::from_data(TensorData::new(out, [batch, seq, self.n]), &device)
    }
}
