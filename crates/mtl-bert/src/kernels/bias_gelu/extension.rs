//! The backend extension, its reference (default) bodies and its flex implementation.
use super::kernel;
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Backend, Bytes, DType, Flex, TensorMetadata};
use burn::backend::{backend_extension, tensor::FloatTensor};
use burn::tensor::Shape;

/// Backend extension for the fused `gelu(x + bias)`.
///
/// The default bodies compose Burn's own operations (a reshaped broadcast add, `gelu`,
/// `gelu_backward` and `sum_dim`); [`Flex`] overrides both with the fused kernels, and
/// `Autodiff<B, C>` overrides the forward to record a backward step calling
/// [`bias_gelu_backward`](BiasGeluBackend::bias_gelu_backward) on `B`.
///
/// `#[backend_extension(Autodiff, Flex)]` generates the `impl BiasGeluBackend for Dispatch`
/// that routes a call to `Flex` or to `Autodiff<Flex, C>` (one arm per checkpointing
/// strategy); on any other backend it panics, which is why [`super::bias_gelu`] checks the
/// device first.
#[backend_extension(Autodiff, Flex)]
pub(crate) trait BiasGeluBackend: Backend {
    /// `gelu(x + bias)`, the bias broadcast over the last dimension.
    ///
    /// # Shapes
    ///
    /// - `x`: `[..., width]` (any rank >= 1)
    /// - `bias`: `[width]`
    /// - output: the shape of `x`
    fn bias_gelu(x: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        reference_forward::<Self>(x, bias)
    }

    /// Gradients of `gelu(x + bias)`: `dx = grad * gelu'(x + bias)` and `dbias = sum(dx)` over
    /// every dimension but the last, with `gelu'(z) = Phi(z) + z phi(z)`.
    ///
    /// # Shapes
    ///
    /// - `x`, `grad`: `[..., width]`
    /// - `bias`: `[width]`
    /// - output: (`dx` shaped as `x`, `dbias` shaped `[width]`)
    fn bias_gelu_backward(
        x: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference_backward::<Self>(x, bias, grad)
    }
}

/// The bias reshaped to `[1, ..., 1, width]` so that it broadcasts against `x_shape`.
fn broadcast_bias<B: Backend>(bias: FloatTensor<B>, x_shape: &Shape) -> FloatTensor<B> {
    let rank = x_shape.num_dims();
    let width = x_shape[rank - 1];
    assert_eq!(
        bias.shape().num_elements(),
        width,
        "bias_gelu: bias must have as many elements as the last dimension of x"
    );
    let mut dims = vec![1usize; rank];
    dims[rank - 1] = width;
    B::float_reshape(bias, Shape::from(dims))
}

/// `gelu(x + bias)` with Burn's own operations: the fallback for other backends and dtypes.
fn reference_forward<B: Backend>(x: FloatTensor<B>, bias: FloatTensor<B>) -> FloatTensor<B> {
    let shape = x.shape();
    B::gelu(B::float_add(x, broadcast_bias::<B>(bias, &shape)))
}

/// Gradients of `gelu(x + bias)` with Burn's own operations.
fn reference_backward<B: Backend>(
    x: FloatTensor<B>,
    bias: FloatTensor<B>,
    grad: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let shape = x.shape();
    let rank = shape.num_dims();
    let width = shape[rank - 1];
    let rows = shape.num_elements() / width.max(1);
    let z = B::float_add(x, broadcast_bias::<B>(bias, &shape));
    let dx = B::gelu_backward(z, grad);
    let dx_rows = B::float_reshape(dx.clone(), Shape::new([rows, width]));
    let dbias = B::float_reshape(B::float_sum_dim(dx_rows, 0), Shape::new([width]));
    (dx, dbias)
}

// Flex: the fused kernels.

/// The tensor as a contiguous buffer that starts at offset 0 and holds exactly its elements,
/// copying only when it is not one already.
fn into_dense(tensor: FlexTensor) -> FlexTensor {
    let n = tensor.layout().num_elements();
    if is_dense(&tensor, n) {
        tensor
    } else {
        // A fresh, uniquely owned copy (the clone `to_contiguous` takes is dropped with `tensor`).
        tensor.to_contiguous()
    }
}

fn is_dense(tensor: &FlexTensor, n: usize) -> bool {
    tensor.layout().is_contiguous()
        && tensor.layout().start_offset() == 0
        && tensor.bytes().len() == n * core::mem::size_of::<f32>()
}

/// The bias as a contiguous `f32` slice, checked against the width of `x`.
fn bias_slice(bias: &FlexTensor, width: usize) -> &[f32] {
    let values = bias
        .as_slice::<f32>()
        .expect("bias_gelu: bias must be contiguous (checked by the caller)");
    assert_eq!(
        values.len(),
        width,
        "bias_gelu: bias has {} elements, the last dimension of x has {width}",
        values.len()
    );
    values
}

/// The tensor itself when contiguous (at any offset), else a contiguous copy.
fn contiguous(tensor: FlexTensor) -> FlexTensor {
    if tensor.layout().is_contiguous() {
        tensor
    } else {
        tensor.to_contiguous()
    }
}

fn f32_tensor(values: Vec<f32>, shape: Shape) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(shape),
        DType::F32,
    )
}

impl BiasGeluBackend for Flex {
    fn bias_gelu(x: FlexTensor, bias: FlexTensor) -> FlexTensor {
        if x.dtype() != DType::F32 || bias.dtype() != DType::F32 {
            return reference_forward::<Flex>(x, bias);
        }
        let shape = x.shape();
        let width = shape[shape.num_dims() - 1];
        let n = shape.num_elements();
        let bias = contiguous(bias);
        let b = bias_slice(&bias, width);

        if x.layout().is_contiguous() && !(x.is_unique() && is_dense(&x, n)) {
            // Shared (typically: autodiff keeps `x` for the backward pass): write a new buffer.
            let src = x.as_slice::<f32>().expect("contiguous f32");
            let mut out = Vec::<f32>::with_capacity(n);
            kernel::forward(src, b, &mut out.spare_capacity_mut()[..n]);
            // SAFETY: `kernel::forward` initialised all `n` elements.
            unsafe { out.set_len(n) };
            return f32_tensor(out, shape);
        }

        // Uniquely owned, or a strided view that has to be copied anyway: work in place.
        let mut x = into_dense(x);
        kernel::forward_inplace(x.storage_mut::<f32>(), b);
        x
    }

    fn bias_gelu_backward(
        x: FlexTensor,
        bias: FlexTensor,
        grad: FlexTensor,
    ) -> (FlexTensor, FlexTensor) {
        if x.dtype() != DType::F32 || bias.dtype() != DType::F32 || grad.dtype() != DType::F32 {
            return reference_backward::<Flex>(x, bias, grad);
        }
        let shape = x.shape();
        assert_eq!(
            grad.shape(),
            shape,
            "bias_gelu_backward: grad and x must have the same shape"
        );
        let width = shape[shape.num_dims() - 1];
        let n = shape.num_elements();
        let bias_shape = bias.shape();
        let bias = contiguous(bias);
        let b = bias_slice(&bias, width);

        let x = contiguous(x);
        let xs = x.as_slice::<f32>().expect("contiguous f32");

        // `dx` overwrites `grad` when `grad` is ours alone (the usual case: a fresh gradient).
        let mut dx = if grad.is_unique() && is_dense(&grad, n) {
            grad
        } else if let Some(values) = grad.as_slice::<f32>() {
            f32_tensor(values.to_vec(), shape.clone())
        } else {
            grad.to_contiguous()
        };
        let dbias = kernel::backward_inplace(xs, b, dx.storage_mut::<f32>());
        (dx, f32_tensor(dbias, bias_shape))
    }
}
