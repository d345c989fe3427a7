//! One transformer layer: attention, then the feed-forward block (post-LayerNorm).

use burn::nn::{Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::{gelu, gelu_approximate, relu};

use crate::attention::{BertAttention, linear};
use crate::config::{BertConfig, HiddenAct};

/// The feed-forward expansion and its activation (`intermediate` in the checkpoint).
#[derive(Module, Debug)]
pub struct BertIntermediate {
    /// `[hidden, intermediate]` projection.
    pub dense: Linear,
    /// The activation (`hidden_act`).
    #[module(skip)]
    pub activation: HiddenAct,
}

impl BertIntermediate {
    /// `[batch, seq, hidden]` -> `[batch, seq, intermediate]`.
    pub fn forward(&self, hidden: Tensor<3>) -> Tensor<3> {
        let expanded = self.dense.forward(hidden);
        match self.activation {
            HiddenAct::Gelu => gelu(expanded),
            HiddenAct::GeluTanh => gelu_approximate(expanded),
            HiddenAct::Relu => relu(expanded),
        }
    }
}

/// The feed-forward contraction, dropout, residual and LayerNorm (`output` in the checkpoint).
///
/// Unlike Burn's `PositionWiseFeedForward`, there is no dropout between the activation and
/// this projection: BERT has none there.
#[derive(Module, Debug)]
pub struct BertOutput {
    /// `[intermediate, hidden]` projection.
    pub dense: Linear,
    /// `output.LayerNorm` in the checkpoint.
    pub layer_norm: LayerNorm,
    /// `hidden_dropout_prob`, in training only.
    pub dropout: Dropout,
}

impl BertOutput {
    /// `LayerNorm(dropout(dense(expanded)) + residual)` -> `[batch, seq, hidden]`.
    pub fn forward(&self, expanded: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let projected = self.dropout.forward(self.dense.forward(expanded));
        self.layer_norm.forward(projected + residual)
    }
}

/// One encoder layer (`encoder.layer.N` in the checkpoint).
#[derive(Module, Debug)]
pub struct BertLayer {
    /// Self-attention block.
    pub attention: BertAttention,
    /// Feed-forward expansion.
    pub intermediate: BertIntermediate,
    /// Feed-forward contraction.
    pub output: BertOutput,
}

impl BertLayer {
    /// Builds a layer for `config` on `device`, weights drawn from `init`.
    pub fn init(config: &BertConfig, init: &Initializer, device: &Device) -> Self {
        Self {
            attention: BertAttention::init(config, init, device),
            intermediate: BertIntermediate {
                dense: linear(config.hidden_size, config.intermediate_size, init, device),
                activation: config.hidden_act,
            },
            output: BertOutput {
                dense: linear(config.intermediate_size, config.hidden_size, init, device),
                layer_norm: LayerNormConfig::new(config.hidden_size)
                    .with_epsilon(config.layer_norm_eps)
                    .init(device),
                dropout: DropoutConfig::new(config.hidden_dropout_prob).init(),
            },
        }
    }

    /// `[batch, seq, hidden]` with `[batch, 1, 1, seq]` attention bias -> `[batch, seq, hidden]`.
    pub fn forward(&self, hidden: Tensor<3>, bias: Tensor<4>) -> Tensor<3> {
        let attended = self.attention.forward(hidden, bias);
        let expanded = self.intermediate.forward(attended.clone());
        self.output.forward(expanded, attended)
    }
}
