//! The BERT encoder: embeddings, a stack of layers and the optional pooler.
//!
//! Paper: Devlin et al., "BERT: Pre-training of Deep Bidirectional Transformers for Language
//! Understanding" (2019), <https://arxiv.org/abs/1810.04805>. Upstream implementation:
//! `transformers/models/bert/modeling_bert.py` (`BertModel`). The module tree follows the
//! checkpoint's key tree, so `encoder.layer.3.attention.output.dense.weight` in a Hugging Face
//! file is `encoder.layer[3].attention.output.dense.weight` here (see `checkpoint` for the two
//! names Rust cannot spell).

use std::path::Path;

use burn::nn::{Initializer, Linear};
use burn::prelude::*;
use burn::tensor::activation::tanh;

use crate::attention::{attention_bias, linear};
use crate::backend::row_groups;
use crate::checkpoint::{Checkpoint, hf_name};
use crate::config::BertConfig;
use crate::dropout::DropoutKey;
use crate::embeddings::BertEmbeddings;
use crate::error::Result;
use crate::layer::BertLayer;
use crate::lora::LoraAdapter;

/// A tokenized batch on a device, right-padded to its longest member.
#[derive(Debug, Clone)]
pub struct BertInput {
    /// `[batch, seq]` token ids.
    pub input_ids: Tensor<2, Int>,
    /// `[batch, seq]` segment ids (0 for the first text of a pair, 1 for the second).
    pub token_type_ids: Tensor<2, Int>,
    /// `[batch, seq]` 1.0 for tokens, 0.0 for padding.
    pub attention_mask: Tensor<2>,
    /// Where training's dropout masks come from (see [`DropoutKey`]); `None` draws them from
    /// the backend's generator, as Burn's `Dropout` does. Ignored at inference.
    pub dropout: Option<DropoutKey>,
}

impl BertInput {
    /// Rows `range` of the batch.
    pub fn rows(&self, range: std::ops::Range<usize>) -> Self {
        Self {
            input_ids: self.input_ids.clone().slice(s![range.clone(), ..]),
            token_type_ids: self.token_type_ids.clone().slice(s![range.clone(), ..]),
            attention_mask: self.attention_mask.clone().slice(s![range.clone(), ..]),
            dropout: self.dropout.map(|key| key.from_row(range.start)),
        }
    }
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
    /// Builds a randomly initialised encoder (with a pooler when `with_pooler`) on `device`,
    /// as `transformers` initialises BERT: weights from N(0, 0.02), biases 0, LayerNorm 1 and 0.
    pub fn init(config: &BertConfig, with_pooler: bool, device: &Device) -> Self {
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        Self::init_with(config, with_pooler, &init, device)
    }

    /// An encoder whose weights are all zero, to be overwritten by a checkpoint (drawing random
    /// weights first would cost a noticeable part of the loading time).
    fn zeroed(config: &BertConfig, with_pooler: bool, device: &Device) -> Self {
        Self::init_with(config, with_pooler, &Initializer::Zeros, device)
    }

    fn init_with(
        config: &BertConfig,
        with_pooler: bool,
        init: &Initializer,
        device: &Device,
    ) -> Self {
        Self {
            embeddings: BertEmbeddings::init(config, init, device),
            encoder: BertEncoder {
                layer: (0..config.num_hidden_layers)
                    .map(|_| BertLayer::init(config, init, device))
                    .collect(),
            },
            pooler: with_pooler.then(|| BertPooler {
                dense: linear(config.hidden_size, config.hidden_size, init, device),
            }),
        }
    }

    /// The last hidden state, `[batch, seq, hidden]`.
    ///
    /// Padding positions get values too (they attend to the real tokens) but never influence
    /// the real tokens' values; pooling must mask them (see [`pool`](crate::pool)).
    ///
    /// At inference (no autodiff) on the pure-Rust CPU backends, the batch's rows are split
    /// into groups run concurrently on the thread pool (see
    /// [`crate::backend::row_groups`]): rows are independent, so the result is the
    /// same, and the element-wise work those backends do on one thread runs on all of them
    /// (measured: 1.4-1.6x the texts/s on 2 cores, docs/BENCHMARKS.md). On an autodiff device
    /// the batch runs whole: a training step splits its batches itself, each group with a
    /// graph of its own (mtl-train's `row_groups`), and the dropout masks of
    /// [`BertInput::dropout`] do not depend on the split.
    pub fn forward(&self, input: &BertInput) -> Tensor<3> {
        self.forward_adapted(input, None)
    }

    /// [`forward`](Self::forward) with a LoRA adapter set on the layers (none: the encoder
    /// alone).
    ///
    /// # Panics
    /// If the adapter set is for another number of layers (checked when a model is built with
    /// one).
    pub fn forward_adapted(&self, input: &BertInput, adapter: Option<&LoraAdapter>) -> Tensor<3> {
        if let Some(adapter) = adapter {
            adapter.assert_fits(self);
        }
        let [batch, _] = input.input_ids.dims();
        let device = input.input_ids.device();
        let groups = if device.is_autodiff() {
            1
        } else {
            row_groups(&device).min(batch)
        };
        if groups <= 1 {
            return self.run(input, adapter);
        }
        let bounds: Vec<usize> = (0..=groups).map(|g| g * batch / groups).collect();
        let parts: Vec<BertInput> = bounds.windows(2).map(|w| input.rows(w[0]..w[1])).collect();
        let mut outputs: Vec<Option<Tensor<3>>> = vec![None; groups];
        rayon::scope(|scope| {
            for (part, output) in parts.iter().zip(outputs.iter_mut()) {
                scope.spawn(move |_| *output = Some(self.run(part, adapter)));
            }
        });
        Tensor::cat(
            outputs
                .into_iter()
                .map(|o| o.expect("every group ran"))
                .collect(),
            0,
        )
    }

    /// [`forward`](Self::forward) on the whole batch at once, never split into row groups.
    pub fn forward_whole(&self, input: &BertInput) -> Tensor<3> {
        self.run(input, None)
    }

    fn run(&self, input: &BertInput, adapter: Option<&LoraAdapter>) -> Tensor<3> {
        let bias = attention_bias(input.attention_mask.clone());
        let key = |part: usize| input.dropout.map(|key| key.part(part as u64));
        let mut hidden = self.embeddings.forward(
            input.input_ids.clone(),
            input.token_type_ids.clone(),
            key(0),
        );
        for (index, layer) in self.encoder.layer.iter().enumerate() {
            let lora = adapter.map(|adapter| &adapter.layers[index]);
            hidden = layer.forward(hidden, bias.clone(), key(1 + index), lora);
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
        checkpoint.load_into(Self::zeroed(config, with_pooler, device), hf_name)
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
