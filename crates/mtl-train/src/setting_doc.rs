//! The one text of each training setting: the documentation of its [`TrainConfig`] field and
//! the help of its `mtl train` flag.
//!
//! [`TrainConfig`]: crate::TrainConfig

/// The documentation of a training setting, by its [`TrainConfig`](crate::TrainConfig) field
/// name, as a string literal (usable in `#[doc = ...]` and in clap's `help = ...`).
///
/// ```
/// assert!(mtl_train::setting_doc!(epochs).contains("Default: 8"));
/// ```
#[macro_export]
macro_rules! setting_doc {
    (model) => {
        "Pretrained encoder: `default` (all-MiniLM-L6-v2, fetched on first use), a model \
         directory, or a Hugging Face hub id (owner/name, downloaded into the hub cache)."
    };
    (revision) => {
        "Hub revision (branch, tag or commit) of a hub id in the model. Default: main."
    };
    (init) => {
        "Start from a model saved by mtl train (e.g. runs/default/best) instead of the model: \
         its tasks that this run trains continue from their heads (same labels), new tasks get \
         fresh heads, and its other tasks are kept unchanged in the new model (add a task to a \
         trained model; with the encoder frozen their predictions stay the same). Default: \
         none."
    };
    (output) => {
        "The run directory (config, metrics.jsonl, best model, checkpoint, plots). Default: \
         runs/default."
    };
    (seed) => {
        "Seed of the heads' initialisation, the batch order and dropout. Default: 42."
    };
    (epochs) => {
        "Number of epochs. Default: 8."
    };
    (epoch) => {
        "What an epoch is: smallest (until the smallest task runs out), largest (until the \
         largest does; smaller tasks cycle), all (every example once) or steps:N. Default: \
         smallest."
    };
    (sampler) => {
        "Task sampling per batch: round-robin, proportional, or temperature:T (p ∝ n^(1/T)). \
         Default: round-robin."
    };
    (batch_size) => {
        "Examples per batch. Default: 32."
    };
    (max_seq_length) => {
        "Truncation length in tokens. Default: 64 (99% of BBC and tweet texts fit)."
    };
    (encoder_lr) => {
        "Peak learning rate of the encoder (its top layer). Default: 5e-5."
    };
    (head_lr) => {
        "Peak learning rate of the heads. Default: 1e-3."
    };
    (layer_lr_decay) => {
        "Layer-wise learning-rate decay, in (0, 1]: layer i of L gets encoder_lr * \
         decay^(L-1-i), the embeddings encoder_lr * decay^L. Default: 1 (no decay)."
    };
    (weight_decay) => {
        "AdamW weight decay (none on biases and LayerNorm). Default: 0.01."
    };
    (warmup_ratio) => {
        "Share of the optimiser steps spent warming the learning rate up linearly from 0; then \
         it decays linearly to 0. Default: 0.1."
    };
    (max_grad_norm) => {
        "Clip gradients to this global L2 norm (0: off). Default: 1."
    };
    (grad_accumulation) => {
        "Batches whose gradients are summed per optimiser step. Default: 1."
    };
    (step_mode) => {
        "task: one task's batch per step (tasks chosen by the sampler); joint: one batch of \
         every task per step, the weighted losses summed (round-robin only). Default: task."
    };
    (loss_weighting) => {
        "Loss weighting of a joint step (step_mode joint only), multiplying each task's \
         weight: equal (1 each), uncertainty (learned log-variances s: weight exp(-s), loss \
         + s; s trains by Adam at the heads' learning rate), dwa[:T] (dynamic weight average \
         of the two previous epochs' loss ratios, temperature T, default 2; equal in the first \
         two epochs; weights sum to the number of tasks) or rlw (random: softmax of standard \
         normal draws each step, seeded) or gradnorm[:ALPHA] (learned weights that balance the \
         tasks' gradient norms on the encoder by their training rates, ALPHA default 1.5; \
         equal in the first epoch; each task gets its own backward). Default: equal."
    };
    (grad_aggregation) => {
        "How the tasks' gradients on the shared encoder are combined in a joint step \
         (step_mode joint only; each task gets its own backward, heads keep their own \
         gradient): sum, pcgrad (project away conflicting components), mgda (min-norm \
         convex combination), cagrad[:C] (conflict-averse, C default 0.5), imtl-g (equal \
         projections on every task's gradient) or upgrad (average of projections onto the \
         dual cone: no task's loss rises to first order). Default: sum."
    };
    (dropout) => {
        "Dropout before the heads. Default: 0.1."
    };
    (pooling) => {
        "Pooling of the encoder output for the heads: mean, cls, max or pooler. Default: mean."
    };
    (freeze) => {
        "Parts to freeze: none, encoder, embeddings, layers:K (bottom K), layer:I, head:TASK \
         or all (then nothing trains: the model is only evaluated). Default: none."
    };
    (unfreeze_every) => {
        "Gradual unfreezing: the heads first, then one more encoder layer from the top every N \
         epochs (then the embeddings). Default: off."
    };
    (eval_every) => {
        "Evaluate on the validation split every N optimiser steps (0: at epoch ends only). \
         Default: 0."
    };
    (checkpoint_every) => {
        "Write a checkpoint every N optimiser steps (0: at epoch ends only). Default: 200."
    };
    (patience) => {
        "Stop after N evaluations without a better mean validation macro-F1. Default: off."
    };
    (log_every) => {
        "Log training loss and accuracy every N optimiser steps. Default: 10."
    };
    (bucket_window) => {
        "Length bucketing window, in batches (0: off). Default: 50."
    };
    (eval_batch_size) => {
        "Batch size for evaluation. Default: 64."
    };
    (adapter) => {
        "LoRA adapters on the frozen encoder: none, or lora:RANK[:ALPHA] (alpha default: the \
         rank; updates scaled by alpha/rank). Only the adapters and the heads train, at \
         head_lr; the encoder's weights stay as loaded. Default: none."
    };
    (adapter_targets) => {
        "The layers that get adapters: attention (query, key, value and the attention \
         output) or all (those and the feed-forward layers). Default: attention."
    };
    (adapter_scope) => {
        "per-task (each task its own adapter set: tasks do not interfere, and a task added \
         with --init leaves the others' outputs unchanged) or shared (one set for every task: \
         the encoder runs once per text). Default: per-task."
    };
    (cache_frozen_embeddings) => {
        "When the encoder is frozen for the whole run, compute its embeddings once and train \
         the heads on them (the same results, far faster). Default: true."
    };
    (data) => {
        "A data set fetched by name (bbc, tweets, polarity, amazon), a directory with a train \
         file and optionally valid and test files (.jsonl, .csv or .tsv), or a single training \
         file; without a valid file a seeded stratified 10% of train is held out."
    };
    (labels) => {
        "The labels, in head-output order; any other label in the data is an error. Default: \
         the named data set's labels, else the sorted distinct labels of the training file."
    };
    (weight) => {
        "Weight of the task's loss. Default: 1."
    };
    (head) => {
        "The head: linear or mlp:WIDTH (one hidden layer). Default: linear."
    };
    (text_field) => {
        "The field (JSONL) or column (CSV/TSV) holding the text. Default: text."
    };
    (text_pair_field) => {
        "The field or column holding the second text of a sentence-pair task (encoded as a \
         BERT pair with segment ids). Default: none."
    };
    (label_field) => {
        "The field or column holding the label. Default: label."
    };
    (id_field) => {
        "The field or column holding each example's id (written to plan.jsonl). Default: the \
         line number (id for the named data sets)."
    };
    (delimiter) => {
        "The CSV/TSV field delimiter. Default: `,` for .csv, a tab for .tsv."
    };
}
