//! The backend extension, its reference (default) body and its flex implementation.
use super::PARALLEL_MACS;
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Backend, Bytes, DType, Flex, TensorMetadata};
use burn::backend::{backend_extension, tensor::FloatTensor};
use burn::tensor::Shape;

/// Backend extension for an inference linear layer, `x W + b` in one GEMM.
///
/// The default body is Burn's matmul and broadcast add; [`Flex`] overrides it.
/// `#[backend_extension(Flex)]` generates the `impl LinearBackend for Dispatch` that routes a call
/// to `Flex` and panics on any other backend (autodiff included), which is why
/// [`super::forward`] checks the device first.
#[backend_extension(Flex)]
pub(crate) trait LinearBackend: Backend {
    /// `x W + b`.
    ///
    /// # Shapes
    ///
    /// - `x`: `[..., k]` (any rank >= 2)
    /// - `weight`: `[k, n]`
    /// - `bias`: `[n]`
    /// - output: `[..., n]`
    fn linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::<Self>(x, weight, Some(bias))
    }

    /// `x W`: [`linear`](LinearBackend::linear) without a bias.
    fn matmul(x: FloatTensor<Self>, weight: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::<Self>(x, weight, None)
    }
}

/// Burn's own operations: the fallback for other dtypes and layouts.
fn reference<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
) -> FloatTensor<B> {
    let shape = x.shape();
    let rank = shape.num_dims();
    let k = shape[rank - 1];
    let rows = shape.num_elements() / k.max(1);
    let [_, n] = weight.shape().dims::<2>();
    let x = B::float_reshape(x, Shape::new([rows, k]));
    let mut y = B::float_matmul(x, weight);
    if let Some(bias) = bias {
        y = B::float_add(y, B::float_reshape(bias, Shape::new([1, n])));
    }
    let mut out_shape = shape;
    out_shape[rank - 1] = n;
    B::float_reshape(y, out_shape)
}

/// The tensor itself when contiguous (at any offset), else a contiguous copy.
fn contiguous(tensor: FlexTensor) -> FlexTensor {
    if tensor.layout().is_contiguous() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

impl LinearBackend for Flex {
    fn linear(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        fused(x, weight, Some(bias))
    }

    fn matmul(x: FlexTensor, weight: FlexTensor) -> FlexTensor {
        fused(x, weight, None)
    }
}

/// `x W (+ b)` as one GEMM whose output starts as the bias (or zeros).
fn fused(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>) -> FlexTensor {
    let f32s = [Some(&x), Some(&weight), bias.as_ref()]
        .iter()
        .flatten()
        .all(|t| t.dtype() == DType::F32);
    if !f32s || weight.shape().num_dims() != 2 || x.shape().num_dims() < 2 {
        return reference::<Flex>(x, weight, bias);
    }
    let shape = x.shape();
    let rank = shape.num_dims();
    let k = shape[rank - 1];
    let [wk, n] = weight.shape().dims::<2>();
    assert_eq!(
        wk, k,
        "linear: the input has {k} features, the weight {wk} rows"
    );
    let rows = shape.num_elements() / k.max(1);
    let (x, weight) = (contiguous(x), contiguous(weight));
    let xs = x.as_slice::<f32>().expect("contiguous f32");
    let ws = weight.as_slice::<f32>().expect("contiguous f32");
    let out: Vec<f32> = match bias.map(contiguous) {
        Some(bias) => {
            let bs = bias.as_slice::<f32>().expect("contiguous f32");
            assert_eq!(
                bs.len(),
                n,
                "linear: the bias is not as long as the weight's {n} columns"
            );
            let mut out = Vec::with_capacity(rows * n);
            for _ in 0..rows {
                out.extend_from_slice(bs);
            }
            out
        }
        None => vec![0.0; rows * n],
    };
    let mut out = out;
    if k > 0 && rows > 0 && n > 0 {
        let parallelism = if rows * n * k >= PARALLEL_MACS {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: `xs` is `[rows, k]`, `ws` `[k, n]` and `out` `[rows, n]`, all row-major and
        // contiguous (checked above), and `out` is borrowed by nothing else.
        unsafe {
            gemm::gemm(
                rows,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                true,
                xs.as_ptr(),
                1,
                k as isize,
                ws.as_ptr(),
                1,
                n as isize,
                1.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
    let mut out_shape = shape;
    out_shape[rank - 1] = n;
    FlexTensor::new(
        Bytes::from_elems(out),
        Layout::contiguous(out_shape),
        DType::F32,
    )
}
