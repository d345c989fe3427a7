//! Inference precision: f32 throughout, or int8 linear layers.
//!
//! [`Precision::Int8`] quantises the six linear layers of every transformer layer once, when the
//! model is loaded (weights symmetric int8 per output column, activations u8 per token at each
//! call, an integer GEMM, see `kernels/int8`); the embeddings, attention's products, softmax,
//! LayerNorm and the pooler stay f32. The checkpoint on disk is never changed. It runs on the
//! [`INT8_BACKENDS`]; asking for it elsewhere is an [`Error::Precision`], never a silent f32 run.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use burn::module::Param;
use burn::nn::{Initializer, LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::activation::{gelu_approximate, relu};

use crate::attention::linear;
use crate::checkpoint::{Checkpoint, hf_name};
use crate::config::{BertConfig, HiddenAct};
use crate::embeddings::BertEmbeddings;
use crate::error::{Error, Result};
use crate::kernels::attention::{Dims, KeyMask, Rows, self_attention};
use crate::kernels::int8::{Epilogue, Int8Linear};
use crate::layer::BertLayer;
use crate::model::{BertEncoder, BertModel, BertPooler};

/// The backends that run [`Precision::Int8`].
pub const INT8_BACKENDS: &[&str] = &["flex"];

/// The environment variable that forces a slower int8 kernel than the best this CPU runs (for
/// comparisons, or to check a path on a machine that has a better one): `avx512-vnni`,
/// `avx512bw`, `avx2` or `generic`. Read when a model loads in int8; a kernel that is unknown
/// or that the CPU does not run makes the load an [`Error::Precision`].
pub const INT8_KERNEL_ENV: &str = crate::kernels::int8::KERNEL_ENV;

/// How a loaded encoder computes (`--quantize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// f32 throughout, as the checkpoint (the default).
    #[default]
    Fp32,
    /// int8 linear layers, quantised at load (flex backend only).
    Int8,
}

impl Precision {
    /// Every precision, as named on the command line.
    pub const ALL: [Precision; 2] = [Precision::Fp32, Precision::Int8];

    /// `"fp32"` or `"int8"`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }

    /// Whether `device` runs this precision: f32 everywhere, int8 on the flex CPU backend
    /// (without autodiff: the int8 path is inference only).
    pub fn runs_on(self, device: &Device) -> bool {
        match self {
            Precision::Fp32 => true,
            Precision::Int8 => {
                !device.is_autodiff() && crate::kernels::bias_gelu::uses_extension(device)
            }
        }
    }

    /// A line for logs and `/info`: `"fp32"`, or `"int8 (avx2)"` naming the
    /// integer GEMM kernel this CPU runs.
    pub fn describe(self) -> String {
        match self {
            Precision::Fp32 => "fp32".into(),
            Precision::Int8 => format!("int8 ({})", crate::kernels::int8::kernel_name()),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Precision::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| Error::Precision(format!("unknown precision {s:?} (fp32 or int8)")))
    }
}

/// A transformer layer's linear layers in int8; the rest of the layer stays in [`BertLayer`].
#[derive(Debug)]
pub(crate) struct Int8Layer {
    /// Query, key and value as one `[hidden, 3 hidden]` product (one quantisation of the input).
    qkv: Int8Linear,
    /// `attention.output.dense`.
    attention_output: Int8Linear,
    /// `intermediate.dense` (with exact GELU fused when the activation is `gelu`).
    intermediate: Int8Linear,
    /// `output.dense`.
    output: Int8Linear,
}

/// A linear layer's weight (`[in, out]`, row-major) and bias as f32 values.
fn linear_values(linear: &Linear) -> (Vec<f32>, Option<Vec<f32>>, usize, usize) {
    let [k, n] = linear.weight.dims();
    let values = |t: Tensor<2>| {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32")
    };
    let weight = values(linear.weight.val());
    let bias = linear.bias.as_ref().map(|b| {
        b.val()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32")
    });
    (weight, bias, k, n)
}

/// Replaces a linear layer's weights by empty tensors: the int8 copy replaces them.
fn drop_weights(linear: &mut Linear, device: &Device) {
    linear.weight = Param::from_tensor(Tensor::zeros([0, 0], device));
    linear.bias = linear
        .bias
        .as_ref()
        .map(|_| Param::from_tensor(Tensor::zeros([0], device)));
}

/// How large a LayerNorm's outputs get per channel, `|beta| + 3 |gamma|`: the normalised
/// values are mostly within 3 of zero, and the channels where BERT's activations have their
/// outliers are those with large `gamma` or `beta` (Kovaleva et al. 2021).
fn layer_norm_range(norm: &LayerNorm) -> Vec<f32> {
    let values = |t: Tensor<1>| {
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32")
    };
    let gamma = values(norm.gamma.val());
    let beta = norm
        .beta
        .as_ref()
        .map_or_else(|| vec![0.0; gamma.len()], |b| values(b.val()));
    gamma
        .iter()
        .zip(&beta)
        .map(|(g, b)| b.abs() + 3.0 * g.abs())
        .collect()
}

/// SmoothQuant's factors (alpha 0.5) for a layer whose input channels reach `range` and whose
/// row-major `[k, n]` weight is `weight`: `s_k = sqrt(range_k / max_j |W[k][j]|)`, 1 where either
/// is 0 or not finite, divided by their geometric mean (a common factor changes nothing).
fn smoothing(range: &[f32], weight: &[f32], n: usize) -> Vec<f32> {
    let mut factors: Vec<f32> = weight
        .chunks_exact(n)
        .zip(range)
        .map(|(row, &r)| {
            let w = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            let s = (r / w).sqrt();
            if s.is_finite() && s > 0.0 { s } else { 1.0 }
        })
        .collect();
    let log_mean = factors.iter().map(|s| f64::from(*s).ln()).sum::<f64>() / factors.len() as f64;
    let mean = log_mean.exp() as f32;
    if mean.is_finite() && mean > 0.0 {
        factors.iter_mut().for_each(|s| *s /= mean);
    }
    factors
}

fn quantize_one(linear: &Linear, name: &str, input_range: Option<&[f32]>) -> Result<Int8Linear> {
    let (weight, bias, k, n) = linear_values(linear);
    let smooth = input_range.map(|range| smoothing(range, &weight, n));
    Int8Linear::quantize_smoothed(&weight, bias.as_deref(), k, n, smooth.as_deref())
        .map_err(|e| Error::Precision(format!("cannot quantise `{name}` to int8: {e}")))
}

impl Int8Layer {
    /// Quantises layer `index`'s linear layers (checkpoint names in errors); `input_range` is
    /// the per-channel range of the layer's input (the LayerNorm before it), for smoothing.
    fn quantize(layer: &BertLayer, index: usize, input_range: &[f32]) -> Result<Self> {
        let prefix = format!("encoder.layer.{index}");
        let attention = &layer.attention.self_attention;
        let parts = [&attention.query, &attention.key, &attention.value];
        let names = ["query", "key", "value"];
        let mut columns = Vec::new();
        for (linear, name) in parts.iter().zip(names) {
            let (weight, bias, k, n) = linear_values(linear);
            let bias = bias.unwrap_or_else(|| vec![0.0; n]);
            columns.push((weight, bias, k, n, name));
        }
        let k = columns[0].2;
        let n: usize = columns.iter().map(|c| c.3).sum();
        let mut weight = Vec::with_capacity(k * n);
        for row in 0..k {
            for (w, _, _, width, _) in &columns {
                weight.extend_from_slice(&w[row * width..(row + 1) * width]);
            }
        }
        let bias: Vec<f32> = columns.iter().flat_map(|c| c.1.iter().copied()).collect();
        let smooth = smoothing(input_range, &weight, n);
        let qkv = Int8Linear::quantize_smoothed(&weight, Some(&bias), k, n, Some(&smooth))
            .map_err(|e| {
                Error::Precision(format!(
                    "cannot quantise `{prefix}.attention.self.{{query,key,value}}` to int8: {e}"
                ))
            })?;
        Ok(Self {
            qkv,
            attention_output: quantize_one(
                &layer.attention.output.dense,
                &format!("{prefix}.attention.output.dense"),
                None,
            )?,
            intermediate: quantize_one(
                &layer.intermediate.dense,
                &format!("{prefix}.intermediate.dense"),
                Some(&layer_norm_range(&layer.attention.output.layer_norm)),
            )?,
            output: quantize_one(&layer.output.dense, &format!("{prefix}.output.dense"), None)?,
        })
    }

    /// Bytes of int8 weights, scales and biases.
    fn bytes(&self) -> usize {
        [
            &self.qkv,
            &self.attention_output,
            &self.intermediate,
            &self.output,
        ]
        .iter()
        .map(|l| l.bytes())
        .sum()
    }
}

impl BertLayer {
    /// [`BertLayer::forward`] at inference with the int8 linear layers of `int8`.
    pub(crate) fn forward_int8(
        &self,
        int8: &Int8Layer,
        hidden: Tensor<3>,
        bias: Tensor<4>,
    ) -> Tensor<3> {
        let [batch, seq_len, width] = hidden.dims();
        let rows = batch * seq_len;
        let device = hidden.device();
        // Flex hands the buffer over: `hidden` is read in place, and becomes a tensor again
        // for the residual.
        let hidden = hidden.into_data().convert::<f32>();
        let input = hidden.as_slice::<f32>().expect("converted to f32");
        let heads = self.attention.self_attention.num_heads;
        let dims = Dims {
            batch,
            seq: seq_len,
            heads,
            head_dim: width / heads,
        };
        // In a block of its own: the `[rows, 3 hidden]` projections and the context are freed
        // before the feed-forward block's `[rows, intermediate]` activations exist.
        let projected = {
            let qkv = int8.qkv.forward(input, rows, Epilogue::Bias);
            let part = |index: usize| Rows {
                data: &qkv,
                stride: 3 * width,
                offset: index * width,
            };
            let mask = KeyMask::from_tensor(bias);
            let context = self_attention(part(0), part(1), part(2), &mask, dims);
            int8.attention_output
                .forward(&context, rows, Epilogue::Bias)
        };
        let tensor = |values: Vec<f32>| {
            Tensor::<3>::from_data(TensorData::new(values, [batch, seq_len, width]), &device)
        };
        let hidden = Tensor::<3>::from_data(hidden, &device);
        let attended = self
            .attention
            .output
            .layer_norm
            .forward(tensor(projected) + hidden);
        // Read in place (flex hands the buffer over), then a tensor again for the residual:
        // no copy of the activations.
        let attended = attended.into_data().convert::<f32>();
        let epilogue = match self.intermediate.activation {
            HiddenAct::Gelu => Epilogue::BiasGelu,
            HiddenAct::GeluTanh | HiddenAct::Relu => Epilogue::Bias,
        };
        let inner = int8.intermediate.forward(
            attended.as_slice::<f32>().expect("converted to f32"),
            rows,
            epilogue,
        );
        let inner_width = inner.len() / rows.max(1);
        let expanded = Tensor::<3>::from_data(
            TensorData::new(inner, [batch, seq_len, inner_width]),
            &device,
        );
        let expanded = match self.intermediate.activation {
            HiddenAct::Gelu => expanded,
            HiddenAct::GeluTanh => gelu_approximate(expanded),
            HiddenAct::Relu => relu(expanded),
        };
        let attended = Tensor::<3>::from_data(attended, &device);
        let out = int8.output.forward_tensor(expanded, Epilogue::Bias);
        self.output.layer_norm.forward(out + attended)
    }
}

/// Fails unless `device` runs `precision`.
fn check_runs_on(precision: Precision, device: &Device) -> Result<()> {
    if precision.runs_on(device) {
        return Ok(());
    }
    Err(Error::Precision(format!(
        "{precision} inference runs on these backends: {} (without autodiff); the model is on \
         {device:?}",
        INT8_BACKENDS.join(", ")
    )))
}

/// Quantises layer `index` (its input reaching `input_range` per channel) and frees its f32
/// linear weights; returns the range of its output (its last LayerNorm's), the next layer's input.
fn quantize_layer(
    layer: &mut BertLayer,
    index: usize,
    input_range: &[f32],
    device: &Device,
) -> Result<Vec<f32>> {
    let int8 = Int8Layer::quantize(layer, index, input_range)?;
    let attention = &mut layer.attention.self_attention;
    for linear in [
        &mut attention.query,
        &mut attention.key,
        &mut attention.value,
    ] {
        drop_weights(linear, device);
    }
    drop_weights(&mut layer.attention.output.dense, device);
    drop_weights(&mut layer.intermediate.dense, device);
    drop_weights(&mut layer.output.dense, device);
    layer.int8 = Some(Arc::new(int8));
    Ok(layer_norm_range(&layer.output.layer_norm))
}

impl BertModel {
    /// The model at `precision`, for inference: [`Precision::Fp32`] returns it unchanged;
    /// [`Precision::Int8`] quantises every transformer layer's linear layers (taking
    /// milliseconds) and frees their f32 weights, so the result can only run inference (it is
    /// never saved or trained; [`Self::precision`] tells).
    ///
    /// Fails with [`Error::Precision`] on a device without the int8 kernels (see
    /// [`INT8_BACKENDS`]) or an autodiff device, and when a weight is NaN or infinite (naming the
    /// tensor).
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        if precision == Precision::Fp32 || self.precision() == precision {
            return Ok(self);
        }
        let device = self
            .devices()
            .into_iter()
            .next()
            .expect("a BERT model has parameters");
        check_runs_on(precision, &device)?;
        let mut input_range = layer_norm_range(&self.embeddings.layer_norm);
        for (index, layer) in self.encoder.layer.iter_mut().enumerate() {
            input_range = quantize_layer(layer, index, &input_range, &device)?;
        }
        Ok(self)
    }

    /// [`Self::from_checkpoint`] at `precision`. At [`Precision::Int8`] each transformer layer
    /// is quantised as soon as it is read, so that only one layer's f32 weights are ever held
    /// besides the embeddings: the peak memory of loading is below f32's.
    pub fn from_checkpoint_with_precision(
        checkpoint: &mut Checkpoint,
        config: &BertConfig,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        if precision == Precision::Fp32 {
            return Self::from_checkpoint(checkpoint, config, device);
        }
        check_runs_on(precision, device)?;
        let zeros = Initializer::Zeros;
        let embeddings = checkpoint
            .load_into(BertEmbeddings::init(config, &zeros, device), |p| {
                hf_name(&format!("embeddings.{p}"))
            })?;
        let pooler = if checkpoint.has_prefix("pooler.") {
            let dense = linear(config.hidden_size, config.hidden_size, &zeros, device);
            Some(checkpoint.load_into(BertPooler { dense }, |p| hf_name(&format!("pooler.{p}")))?)
        } else {
            None
        };
        let mut input_range = layer_norm_range(&embeddings.layer_norm);
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for index in 0..config.num_hidden_layers {
            let mut layer = checkpoint.load_into(BertLayer::init(config, &zeros, device), |p| {
                hf_name(&format!("encoder.layer.{index}.{p}"))
            })?;
            input_range = quantize_layer(&mut layer, index, &input_range, device)?;
            layers.push(layer);
        }
        Ok(Self {
            embeddings,
            encoder: BertEncoder { layer: layers },
            pooler,
        })
    }

    /// How the model computes: [`Precision::Int8`] after [`Self::with_precision`] made it so.
    pub fn precision(&self) -> Precision {
        match self.encoder.layer.first() {
            Some(layer) if layer.int8.is_some() => Precision::Int8,
            _ => Precision::Fp32,
        }
    }

    /// Bytes held by the int8 linear layers (0 at f32).
    pub fn int8_bytes(&self) -> usize {
        self.encoder
            .layer
            .iter()
            .filter_map(|l| l.int8.as_ref())
            .map(|q| q.bytes())
            .sum()
    }
}
