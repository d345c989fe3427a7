//! One transformer layer: attention, then the feed-forward block (post-LayerNorm).

use burn::nn::{Dropout, DropoutConfig, Initializer, LayerNorm, LayerNormConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::{gelu_approximate, relu};

use crate::attention::{BertAttention, linear};
use crate::kernels;
use crate::kernels::bias_gelu::{bias_gelu, gelu};
use std::sync::Arc;

use crate::config::{BertConfig, HiddenAct};
use crate::dropout::{DropoutKey, dropout};
use crate::lora::{LayerLora, Lora, adapted};
use crate::precision::Int8Layer;

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
    ///
    /// Exact GELU adds the bias inside one fused kernel on flex (`bias_gelu`). `lora` adds its
    /// update before the activation.
    pub fn forward(&self, hidden: Tensor<3>, lora: Option<&Lora>) -> Tensor<3> {
        if let (HiddenAct::Gelu, Some(bias)) = (self.activation, &self.dense.bias) {
            let [batch, seq_len, width] = hidden.dims();
            let weight = self.dense.weight.val();
            let out = weight.dims()[1];
            let expanded =
                kernels::linear::matmul(hidden.clone().reshape([batch * seq_len, width]), weight)
                    .reshape([batch, seq_len, out]);
            return bias_gelu(adapted(expanded, lora, hidden), bias.val());
        }
        let expanded = adapted(
            kernels::linear::forward(&self.dense, hidden.clone()),
            lora,
            hidden,
        );
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
    /// `LayerNorm(dropout(dense(expanded)) + residual)` -> `[batch, seq, hidden]`; dropout's
    /// masks from `key`; `lora` adds its update to the projection.
    pub fn forward(
        &self,
        expanded: Tensor<3>,
        residual: Tensor<3>,
        key: Option<DropoutKey>,
        lora: Option<&Lora>,
    ) -> Tensor<3> {
        let projected = adapted(
            kernels::linear::forward(&self.dense, expanded.clone()),
            lora,
            expanded,
        );
        let projected = dropout(&self.dropout, projected, key);
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
    /// The int8 copies of the linear layers, after [`BertModel::with_precision`]
    /// (`Precision::Int8`); their f32 weights are then gone.
    ///
    /// [`BertModel::with_precision`]: crate::BertModel::with_precision
    #[module(skip)]
    pub(crate) int8: Option<Arc<Int8Layer>>,
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
            int8: None,
        }
    }

    /// `[batch, seq, hidden]` with `[batch, 1, 1, seq]` attention bias -> `[batch, seq, hidden]`.
    ///
    /// In training, dropout's masks come from `key`: parts 0 and 1 (attention probabilities and
    /// output) for the attention block, part 2 for the feed-forward output. `lora`: the
    /// layer's adapters, if any.
    ///
    /// # Panics
    /// With adapters on an int8 layer (a model with adapters is refused int8 when it loads).
    pub fn forward(
        &self,
        hidden: Tensor<3>,
        bias: Tensor<4>,
        key: Option<DropoutKey>,
        lora: Option<&LayerLora>,
    ) -> Tensor<3> {
        if let Some(int8) = &self.int8 {
            assert!(lora.is_none(), "int8 layers run without LoRA adapters");
            return self.forward_int8(int8, hidden, bias);
        }
        let attended = self.attention.forward(hidden, bias, key, lora);
        let expanded = self
            .intermediate
            .forward(attended.clone(), lora.and_then(|l| l.intermediate.as_ref()));
        self.output.forward(
            expanded,
            attended,
            key.map(|key| key.part(2)),
            lora.and_then(|l| l.output.as_ref()),
        )
    }
}
