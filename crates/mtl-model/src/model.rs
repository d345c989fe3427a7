//! The multi-task model as a Burn module: a shared encoder, dropout, and one head per task.

use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;
use mtl_bert::{BertConfig, BertInput, BertModel, DropoutKey, LoraAdapter, Pooling, dropout, pool};

use crate::config::MtlConfig;
use crate::head::ClassificationHead;

/// One BERT encoder shared by every task, dropout on its pooled output, and one
/// [`ClassificationHead`] per task (in the order of [`MtlConfig::tasks`]); with
/// [`MtlConfig::adapter`], LoRA adapter sets on the encoder, each task running it with its own
/// (or the shared) set.
#[derive(Module, Debug)]
pub struct MultiTaskModel {
    /// The shared encoder.
    pub encoder: BertModel,
    /// Dropout on the pooled vector, in training only.
    pub dropout: Dropout,
    /// One head per task.
    pub heads: Vec<ClassificationHead>,
    /// The LoRA adapter sets, in the order of [`MtlConfig::adapter_sets`] (none without
    /// adapters).
    pub adapters: Vec<LoraAdapter>,
    /// For each task, the index of its set in [`adapters`](Self::adapters) (`None`: the
    /// encoder alone).
    #[module(skip)]
    pub task_adapters: Vec<Option<usize>>,
    /// How the encoder's token vectors become the heads' input.
    #[module(skip)]
    pub pooling: Pooling,
}

impl MultiTaskModel {
    /// Puts heads initialised from `seed` (task `i` from `seed + i`) on `encoder` (of `bert`'s
    /// shape), and new adapter sets as the tasks name them (set `j` of
    /// [`MtlConfig::adapter_sets`] from `seed + 2^20 + j`).
    pub fn new(
        encoder: BertModel,
        bert: &BertConfig,
        config: &MtlConfig,
        seed: u64,
        device: &Device,
    ) -> Self {
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
        let sets = config.adapter_sets();
        let adapters = match config.adapter {
            Some(adapter) => (0..sets.len())
                .map(|j| {
                    let seed = seed.wrapping_add(ADAPTER_SEEDS + j as u64);
                    LoraAdapter::init(&adapter.lora, bert, seed, device)
                })
                .collect(),
            None => Vec::new(),
        };
        Self {
            encoder,
            dropout: DropoutConfig::new(config.dropout).init(),
            heads,
            adapters,
            task_adapters: task_adapters(config),
            pooling: config.pooling,
        }
    }

    /// The adapter set task `task` runs the encoder with.
    pub fn adapter(&self, task: usize) -> Option<&LoraAdapter> {
        self.task_adapters[task].map(|j| &self.adapters[j])
    }

    /// The pooled sentence vectors the heads see, before dropout: `[batch, hidden]`.
    ///
    /// # Panics
    /// If the pooling is `pooler` and the encoder has no pooler (checked when the model is
    /// built by [`crate::MultiTaskClassifier`]).
    pub fn pooled(&self, input: &BertInput) -> Tensor<2> {
        self.pooled_with(input, None)
    }

    /// [`pooled`](Self::pooled) with the encoder running `adapter` (task `i`'s is
    /// [`adapter`](Self::adapter)`(i)`).
    pub fn pooled_with(&self, input: &BertInput, adapter: Option<&LoraAdapter>) -> Tensor<2> {
        let hidden = self.encoder.forward_adapted(input, adapter);
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

    /// Logits of one task's batch (the encoder with the task's adapter set):
    /// `[batch, labels]`.
    pub fn forward(&self, input: &BertInput, task: usize) -> Tensor<2> {
        let pooled = self.pooled_with(input, self.adapter(task));
        self.head_logits(pooled, task, input.dropout)
    }

    /// Logits of every task for one batch, running the encoder once per adapter set (once
    /// without adapters).
    pub fn forward_all(&self, input: &BertInput) -> Vec<Tensor<2>> {
        let tasks: Vec<usize> = (0..self.heads.len()).collect();
        self.pooled_per_task(input, &tasks)
            .into_iter()
            .zip(tasks)
            .map(|(pooled, task)| self.head_logits(pooled, task, input.dropout))
            .collect()
    }

    /// The pooled vectors each of `tasks` sees (its adapter set's), in the order of `tasks`,
    /// running the encoder once per distinct set (once without adapters).
    pub fn pooled_per_task(&self, input: &BertInput, tasks: &[usize]) -> Vec<Tensor<2>> {
        let mut by_set: Vec<(Option<usize>, Tensor<2>)> = Vec::new();
        tasks
            .iter()
            .map(|&task| {
                let set = self.task_adapters[task];
                if let Some((_, pooled)) = by_set.iter().find(|(s, _)| *s == set) {
                    return pooled.clone();
                }
                let pooled = self.pooled_with(input, self.adapter(task));
                by_set.push((set, pooled.clone()));
                pooled
            })
            .collect()
    }
}

/// Where the adapter sets' seeds start, past the heads' (`seed + i` for task `i`).
pub(crate) const ADAPTER_SEEDS: u64 = 1 << 20;

/// Each task's index in [`MtlConfig::adapter_sets`].
pub(crate) fn task_adapters(config: &MtlConfig) -> Vec<Option<usize>> {
    let sets = config.adapter_sets();
    config
        .tasks
        .iter()
        .map(|task| {
            task.adapter.as_ref().map(|name| {
                sets.iter()
                    .position(|s| s == name)
                    .expect("listed by adapter_sets")
            })
        })
        .collect()
}
