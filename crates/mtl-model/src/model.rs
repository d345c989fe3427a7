//! The multi-task model as a Burn module: a shared encoder, dropout, and one head per task.

use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use mtl_bert::{BertInput, BertModel, DropoutKey, Pooling, dropout, pool};

use crate::config::MtlConfig;
use crate::head::ClassificationHead;

/// One BERT encoder shared by every task, dropout on its pooled output, and one
/// [`ClassificationHead`] per task (in the order of [`MtlConfig::tasks`]).
#[derive(Module, Debug)]
pub struct MultiTaskModel {
    /// The shared encoder.
    pub encoder: BertModel,
    /// Dropout on the pooled vector, in training only.
    pub dropout: Dropout,
    /// One head per task.
    pub heads: Vec<ClassificationHead>,
    /// How the encoder's token vectors become the heads' input.
    #[module(skip)]
    pub pooling: Pooling,
}

impl MultiTaskModel {
    /// Puts heads initialised from `seed` (task `i` from `seed + i`) on `encoder`.
    pub fn new(encoder: BertModel, config: &MtlConfig, seed: u64, device: &Device) -> Self {
        let hidden = encoder.embeddings.word_embeddings.weight.dims()[1];
        let heads = config
            .tasks
            .iter()
            .enumerate()
            .map(|(i, task)| {
                let seed = seed.wrapping_add(i as u64);
                ClassificationHead::init(
                    task.head,
                    hidden,
                    task.labels.len(),
                    config.dropout,
                    seed,
                    device,
                )
            })
            .collect();
        Self {
            encoder,
            dropout: DropoutConfig::new(config.dropout).init(),
            heads,
            pooling: config.pooling,
        }
    }

    /// The pooled sentence vectors the heads see, before dropout: `[batch, hidden]`.
    ///
    /// # Panics
    /// If the pooling is `pooler` and the encoder has no pooler (checked when the model is
    /// built by [`crate::MultiTaskClassifier`]).
    pub fn pooled(&self, input: &BertInput) -> Tensor<2> {
        let hidden = self.encoder.forward(input);
        pool(
            self.pooling,
            hidden,
            input.attention_mask.clone(),
            self.encoder.pooler.as_ref(),
        )
        .expect("pooling `pooler` needs an encoder with a pooler")
    }

    /// Logits of task `task` from pooled vectors: dropout, then the head. `[batch, labels]`.
    ///
    /// In training, dropout's masks come from `key` (the batch's [`BertInput::dropout`]):
    /// parts [`DropoutKey::POOLED_PART`] and [`DropoutKey::head_part`]`(task)`.
    pub fn head_logits(
        &self,
        pooled: Tensor<2>,
        task: usize,
        key: Option<DropoutKey>,
    ) -> Tensor<2> {
        let pooled = dropout(
            &self.dropout,
            pooled,
            key.map(|k| k.part(DropoutKey::POOLED_PART)),
        );
        self.heads[task].forward(pooled, key.map(|k| k.part(DropoutKey::head_part(task))))
    }

    /// Logits of one task's batch: `[batch, labels]`.
    pub fn forward(&self, input: &BertInput, task: usize) -> Tensor<2> {
        self.head_logits(self.pooled(input), task, input.dropout)
    }

    /// Logits of every task for one batch, running the encoder once.
    pub fn forward_all(&self, input: &BertInput) -> Vec<Tensor<2>> {
        let pooled = self.pooled(input);
        (0..self.heads.len())
            .map(|task| self.head_logits(pooled.clone(), task, input.dropout))
            .collect()
    }
}
