//! The BERT encoder: embeddings, a stack of layers and the optional pooler.
//!
//! Paper: Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
//! Understanding" (2019), <https://arxiv.org/abs/1810.04805>. Upstream implementation:
//! `transformers/models/bert/modeling_bert.py` (`BertModel`). The module tree follows the
//! checkpoint's key tree, so `encoder.layer.3.attention.output.dense.weight` in a Hugging Face
//! file is `encoder.layer[3].attention.output.dense.weight` here (see `checkpoint` for the two
//! names Rust cannot spell).

use std::path::Path;

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::tanh;

use crate::attention::attention_bias;
use crate::checkpoint::{Checkpoint, hf_name};
use crate::config::BertConfig;
use crate::embeddings::BertEmbeddings;
use crate::error::Result;
use crate::layer::BertLayer;

/// A tokenized batch on a device, right-padded to its longest member.
#[derive(Debug, Clone)]
pub struct BertInput {
    /// `[batch, seq]` token ids.
    pub input_ids: Tensor<2, Int>,
    /// `[batch, seq]` segment ids (0 for the first text of a pair, 1 for the second).
    pub token_type_ids: Tensor<2, Int>,
    /// `[batch, seq]` 1.0 for tokens, 0.0 for padding.
    pub attention_mask: Tensor<2>,
}

/// The stack of transformer layers (`encoder` in the checkpoint).
#[derive(Module, Debug)]
pub struct BertEncoder {
    /// `encoder.layer.N`, bottom (closest to the embeddings) first.
    pub layer: Vec<BertLayer>,
}

/// Dense + tanh on the first (`[CLS]`) token (`pooler` in the checkpoint).
#[derive(Module, Debug)]
pub struct BertPooler {
    /// `[hidden, hidden]` projection.
    pub dense: Linear,
}

impl BertPooler {
    /// `[batch, seq, hidden]` -> `[batch, hidden]`.
    pub fn forward(&self, last_hidden_state: Tensor<3>) -> Tensor<2> {
        let [batch, _, width] = last_hidden_state.dims();
        let cls = last_hidden_state
            .slice(s![.., 0..1, ..])
            .reshape([batch, width]);
        tanh(self.dense.forward(cls))
    }
}

/// A BERT encoder (`transformers.BertModel`).
#[derive(Module, Debug)]
pub struct BertModel {
    /// Input embeddings.
    pub embeddings: BertEmbeddings,
    /// Transformer layers.
    pub encoder: BertEncoder,
    /// The pooler; `None` for checkpoints saved without one.
    pub pooler: Option<BertPooler>,
}

impl BertModel {
    /// Builds a randomly initialised encoder (with a pooler when `with_pooler`) on `device`.
    ///
    /// Weights are then usually loaded with [`crate::checkpoint::Checkpoint`].
    pub fn init(config: &BertConfig, with_pooler: bool, device: &Device) -> Self {
        Self {
            embeddings: BertEmbeddings::init(config, device),
            encoder: BertEncoder {
                layer: (0..config.num_hidden_layers)
                    .map(|_| BertLayer::init(config, device))
                    .collect(),
            },
            pooler: with_pooler.then(|| BertPooler {
                dense: LinearConfig::new(config.hidden_size, config.hidden_size).init(device),
            }),
        }
    }

    /// The last hidden state, `[batch, seq, hidden]`.
    ///
    /// Padding positions get values too (they attend to the real tokens) but never influence
    /// the real tokens' values; pooling must mask them (see [`crate::pooling`]).
    pub fn forward(&self, input: &BertInput) -> Tensor<3> {
        let bias = attention_bias(input.attention_mask.clone());
        let mut hidden = self
            .embeddings
            .forward(input.input_ids.clone(), input.token_type_ids.clone());
        for layer in &self.encoder.layer {
            hidden = layer.forward(hidden, bias.clone());
        }
        hidden
    }

    /// Number of transformer layers.
    pub fn num_layers(&self) -> usize {
        self.encoder.layer.len()
    }
}

impl BertModel {
    /// Builds the encoder described by `config` from `checkpoint`, taking its tensors out.
    ///
    /// The model has a pooler when the checkpoint does. Other tensors stay in `checkpoint`
    /// (call [`Checkpoint::finish`] to reject leftovers).
    pub fn from_checkpoint(
        checkpoint: &mut Checkpoint,
        config: &BertConfig,
        device: &Device,
    ) -> Result<Self> {
        let with_pooler = checkpoint.has_prefix("pooler.");
        checkpoint.load_into(Self::init(config, with_pooler, device), hf_name)
    }

    /// Loads the encoder from a weights file (`.safetensors` or PyTorch `.bin`) that holds
    /// nothing else (pre-training heads and the `position_ids` buffer excepted).
    pub fn load(weights: impl AsRef<Path>, config: &BertConfig, device: &Device) -> Result<Self> {
        let mut checkpoint = Checkpoint::open(weights)?;
        let model = Self::from_checkpoint(&mut checkpoint, config, device)?;
        checkpoint.finish(&[])?;
        Ok(model)
    }
}
