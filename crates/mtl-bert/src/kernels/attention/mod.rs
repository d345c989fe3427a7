//! Inference-only self-attention over a padded batch, fused (`softmax(Q K^T * scale + bias) V`).
//!
//! Burn's attention on flex wants `[batch, heads, seq, head_dim]` tensors: the projections'
//! `[batch, seq, hidden]` rows are copied into that layout and back, the `[batch, 1, 1, seq]`
//! bias is broadcast to a full score tile, the padding keys are scored and exponentiated (each
//! an underflow through libm's slow path), and softmax runs scalar. Here every head reads its
//! columns of the projections' rows in place (query, key and value may share one `[rows, 3
//! hidden]` buffer, as the int8 layer writes them), attends only to the keys up to its text's
//! last token, and writes its columns of the `[rows, hidden]` context; softmax is vectorised
//! ([`math::exp`](crate::kernels::math::exp), about 1 ulp). The two products per head are the
//! `gemm` crate's (the kernels Burn's flex runs).
//!
//! # Exactness and determinism
//!
//! A padding key's bias is `f32::MIN` (see `attention_bias`): its weight in `transformers`'
//! softmax underflows to exactly 0, so leaving it out changes nothing. A key masked before its
//! text's last token (a hole) keeps its bias and is computed. Each (text, head) pair is one
//! task on the rayon pool with single-threaded products, so the result does not depend on the
//! number of threads or on the other texts of the batch.

mod kernel;
#[cfg(test)]
mod tests;

use burn::prelude::*;
use burn::tensor::TensorData;

pub(crate) use kernel::self_attention;

/// Where a head finds its query, key or value: row `r`, head `h`, column `c` is
/// `data[r * stride + offset + h * head_dim + c]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rows<'a> {
    /// Row-major values.
    pub(crate) data: &'a [f32],
    /// Elements from one row to the next.
    pub(crate) stride: usize,
    /// Column of head 0's first value.
    pub(crate) offset: usize,
}

/// The dimensions of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Dims {
    /// Texts.
    pub(crate) batch: usize,
    /// Tokens per text (padded).
    pub(crate) seq: usize,
    /// Heads.
    pub(crate) heads: usize,
    /// Values per head.
    pub(crate) head_dim: usize,
}

/// The additive bias on each text's keys, and how many keys each text attends to.
#[derive(Clone, Debug)]
pub(crate) struct KeyMask {
    /// `[batch, seq]`: 0 for a token, `f32::MIN` for padding.
    bias: Vec<f32>,
    /// Per text: 1 + the position of its last key whose bias is not `f32::MIN` (every key when
    /// there is none: all of them then get the same weight, as in `transformers`).
    lens: Vec<usize>,
    /// Per text: whether a key before `lens` has a bias other than 0.
    holes: Vec<bool>,
}

impl KeyMask {
    /// From a row-major `[batch, seq]` additive bias.
    pub(crate) fn new(bias: Vec<f32>, batch: usize, seq: usize) -> Self {
        assert_eq!(
            bias.len(),
            batch * seq,
            "attention: the bias is not [{batch}, {seq}]"
        );
        let mut lens = Vec::with_capacity(batch);
        let mut holes = Vec::with_capacity(batch);
        for row in bias.chunks_exact(seq.max(1)).take(batch) {
            let len = row
                .iter()
                .rposition(|&b| b != f32::MIN)
                .map_or(seq, |last| last + 1);
            lens.push(len);
            holes.push(row[..len].iter().any(|&b| b != 0.0));
        }
        Self { bias, lens, holes }
    }

    /// From the `[batch, 1, 1, seq]` bias tensor the layers receive.
    pub(crate) fn from_tensor(bias: Tensor<4>) -> Self {
        let [batch, _, _, seq] = bias.dims();
        let values = bias
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("converted to f32");
        Self::new(values, batch, seq)
    }
}

/// `[batch, seq, hidden]` query, key and value (as the linear layers return them) with the
/// `[batch, 1, 1, seq]` bias -> the `[batch, seq, hidden]` context of `heads` heads.
///
/// Reads the tensors in place when no one else holds them (flex then hands its buffers over).
pub(crate) fn attention_tensors(
    query: Tensor<3>,
    key: Tensor<3>,
    value: Tensor<3>,
    bias: Tensor<4>,
    heads: usize,
) -> Tensor<3> {
    let [batch, seq, width] = query.dims();
    let device = query.device();
    let data = |t: Tensor<3>| t.into_data().convert::<f32>();
    let (q, k, v) = (data(query), data(key), data(value));
    fn rows(data: &TensorData, width: usize) -> Rows<'_> {
        Rows {
            data: data.as_slice::<f32>().expect("converted to f32"),
            stride: width,
            offset: 0,
        }
    }
    let dims = Dims {
        batch,
        seq,
        heads,
        head_dim: width / heads,
    };
    let mask = KeyMask::from_tensor(bias);
    let context = self_attention(
        rows(&q, width),
        rows(&k, width),
        rows(&v, width),
        &mask,
        dims,
    );
    Tensor::from_data(TensorData::new(context, [batch, seq, width]), &device)
}

/// Whether [`attention_tensors`] runs on `device`: the flex backend without autodiff (it has
/// no backward pass and no dropout).
pub(crate) fn runs_on(device: &Device) -> bool {
    !device.is_autodiff() && crate::kernels::bias_gelu::uses_extension(device)
}
