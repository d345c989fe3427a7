//! Multi-head self-attention with a padding mask, and its output projection (post-LayerNorm).

use burn::nn::{
    Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig,
};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use crate::config::BertConfig;
use crate::dropout::{DropoutKey, dropout};
use crate::kernels;
use crate::lora::{LayerLora, Lora, adapted};

/// A linear layer `input -> output` with weights drawn from `init` and zero biases (as
/// `transformers` initialises BERT).
pub(crate) fn linear(input: usize, output: usize, init: &Initializer, device: &Device) -> Linear {
    let mut layer = LinearConfig::new(input, output)
        .with_initializer(init.clone())
        .init(device);
    layer.bias = Some(burn::module::Param::from_tensor(Tensor::zeros(
        [output],
        device,
    )));
    layer
}

/// The additive attention bias of a padded batch: 0 for real tokens and the most negative
/// finite float for padding, as `transformers` builds it from `attention_mask`.
///
/// `[batch, seq]` mask of 1.0 (token) and 0.0 (padding) -> `[batch, 1, 1, seq]`.
pub(crate) fn attention_bias(attention_mask: Tensor<2>) -> Tensor<4> {
    let [batch, seq_len] = attention_mask.dims();
    (attention_mask.neg() + 1.0)
        .mul_scalar(f32::MIN)
        .reshape([batch, 1, 1, seq_len])
}

/// Query, key and value projections and scaled dot-product attention over all heads
/// (`attention.self` in the checkpoint).
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    /// `[hidden, hidden]` query projection.
    pub query: Linear,
    /// `[hidden, hidden]` key projection.
    pub key: Linear,
    /// `[hidden, hidden]` value projection.
    pub value: Linear,
    /// `attention_probs_dropout_prob` on the attention probabilities, in training only.
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
}

impl BertSelfAttention {
    /// Builds projections for `config` on `device`, weights drawn from `init`.
    pub fn init(config: &BertConfig, init: &Initializer, device: &Device) -> Self {
        let linear = || linear(config.hidden_size, config.hidden_size, init, device);
        Self {
            query: linear(),
            key: linear(),
            value: linear(),
            dropout: DropoutConfig::new(config.attention_probs_dropout_prob).init(),
            num_heads: config.num_attention_heads,
        }
    }

    /// `[batch, seq, hidden]` with `[batch, 1, 1, seq]` bias -> `[batch, seq, hidden]`; dropout
    /// on the attention probabilities with masks from `dropout_key`.
    ///
    /// At inference on flex the fused kernel of `kernels/attention` runs; elsewhere Burn's
    /// `attention` (or, where dropout is active, the same product spelled out). `lora`'s
    /// query, key and value adapters add their updates to the projections.
    pub fn forward(
        &self,
        hidden: Tensor<3>,
        bias: Tensor<4>,
        dropout_key: Option<DropoutKey>,
        lora: Option<&LayerLora>,
    ) -> Tensor<3> {
        let pick = |f: fn(&LayerLora) -> &Option<Lora>| lora.and_then(|l| f(l).as_ref());
        let (query_lora, key_lora, value_lora) =
            (pick(|l| &l.query), pick(|l| &l.key), pick(|l| &l.value));
        if kernels::attention::runs_on(&hidden.device()) {
            // Inference on flex: the fused kernel reads the projections' rows in place.
            let project = |linear: &Linear, lora| {
                adapted(
                    kernels::linear::forward(linear, hidden.clone()),
                    lora,
                    hidden.clone(),
                )
            };
            return kernels::attention::attention_tensors(
                project(&self.query, query_lora),
                project(&self.key, key_lora),
                project(&self.value, value_lora),
                bias,
                self.num_heads,
            );
        }
        let [batch, seq_len, width] = hidden.dims();
        let heads = |linear: &Linear, lora| {
            adapted(linear.forward(hidden.clone()), lora, hidden.clone())
                .reshape([batch, seq_len, self.num_heads, width / self.num_heads])
                .swap_dims(1, 2)
        };
        let (query, key, value) = (
            heads(&self.query, query_lora),
            heads(&self.key, key_lora),
            heads(&self.value, value_lora),
        );
        let context = if self.dropout_active(&hidden) {
            // The fused kernel has no dropout: spell attention out when it must drop.
            let scale = ((width / self.num_heads) as f64).sqrt().recip();
            let scores = query.matmul(key.swap_dims(2, 3)).mul_scalar(scale) + bias;
            dropout(&self.dropout, softmax(scores, 3), dropout_key).matmul(value)
        } else {
            attention(
                query,
                key,
                value,
                None,
                Some(bias),
                AttentionModuleOptions::default(),
            )
        };
        context.swap_dims(1, 2).reshape([batch, seq_len, width])
    }

    fn dropout_active(&self, hidden: &Tensor<3>) -> bool {
        self.dropout.prob > 0.0
            && self.dropout.training.is_enabled()
            && hidden.device().is_autodiff()
    }
}

/// Output projection, dropout, residual and LayerNorm (`attention.output` in the checkpoint).
#[derive(Module, Debug)]
pub struct BertSelfOutput {
    /// `[hidden, hidden]` projection.
    pub dense: Linear,
    /// `attention.output.LayerNorm` in the checkpoint.
    pub layer_norm: LayerNorm,
    /// `hidden_dropout_prob`, in training only.
    pub dropout: Dropout,
}

impl BertSelfOutput {
    /// Builds an output block for `config` on `device`, weights drawn from `init`.
    pub fn init(config: &BertConfig, init: &Initializer, device: &Device) -> Self {
        Self {
            dense: linear(config.hidden_size, config.hidden_size, init, device),
            layer_norm: LayerNormConfig::new(config.hidden_size)
                .with_epsilon(config.layer_norm_eps)
                .init(device),
            dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
        }
    }

    /// `LayerNorm(dropout(dense(context)) + residual)`, all `[batch, seq, hidden]`; dropout's
    /// masks from `key`; `lora` adds its update to the projection.
    pub fn forward(
        &self,
        context: Tensor<3>,
        residual: Tensor<3>,
        key: Option<DropoutKey>,
        lora: Option<&Lora>,
    ) -> Tensor<3> {
        let projected = adapted(
            kernels::linear::forward(&self.dense, context.clone()),
            lora,
            context,
        );
        let projected = dropout(&self.dropout, projected, key);
        self.layer_norm.forward(projected + residual)
    }
}

/// Self-attention followed by its output block (`attention` in the checkpoint).
#[derive(Module, Debug)]
pub struct BertAttention {
    /// `attention.self` in the checkpoint (`self` is a Rust keyword).
    pub self_attention: BertSelfAttention,
    /// `attention.output` in the checkpoint.
    pub output: BertSelfOutput,
}

impl BertAttention {
    /// Builds an attention block for `config` on `device`, weights drawn from `init`.
    pub fn init(config: &BertConfig, init: &Initializer, device: &Device) -> Self {
        Self {
            self_attention: BertSelfAttention::init(config, init, device),
            output: BertSelfOutput::init(config, init, device),
        }
    }

    /// `[batch, seq, hidden]` with `[batch, 1, 1, seq]` bias -> `[batch, seq, hidden]`; dropout
    /// masks from `key`'s parts 0 (probabilities) and 1 (output); `lora`: the layer's
    /// adapters, if any.
    pub fn forward(
        &self,
        hidden: Tensor<3>,
        bias: Tensor<4>,
        key: Option<DropoutKey>,
        lora: Option<&LayerLora>,
    ) -> Tensor<3> {
        let part = |index| key.map(|key: DropoutKey| key.part(index));
        let context = self
            .self_attention
            .forward(hidden.clone(), bias, part(0), lora);
        let output_lora = lora.and_then(|l| l.attention_output.as_ref());
        self.output.forward(context, hidden, part(1), output_lora)
    }
}
