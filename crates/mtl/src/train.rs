//! `mtl train`: a config file and flags that override it; progress on standard error, plots
//! of the run's log.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use mtl_bert::Pooling;
use mtl_model::HeadKind;

use mtl_train::train::config::{StepMode, TaskSpec, TrainConfig};
use mtl_train::train::runlog::read_records;
use mtl_train::train::{Start, Summary, train};

use crate::backend::BackendArgs;
use crate::plot::write_plots;
use crate::progress::{TrainProgress, summary_table};

/// Train a multi-task model: one shared encoder, one head per task.
///
/// With no arguments: Task A (BBC News topics) and Task B (3-class tweet sentiment) on
/// all-MiniLM-L6-v2, both fetched on first use, into `runs/default`. Settings come from the
/// defaults, then `--config FILE` (TOML; every key is a flag below, tasks are `[[tasks]]`
/// tables), then the flags.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// A TOML (or .json) configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the interrupted run in this directory from its last checkpoint (with its
    /// saved configuration; only --backend, --device, --encoder-lr and --head-lr may be given
    /// with it: new learning rates apply from the checkpoint's step on).
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["config", "output", "overwrite"])]
    pub resume: Option<PathBuf>,
    /// The run directory (config, metrics.jsonl, best model, checkpoint, plots). Default:
    /// runs/default.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Replace an earlier run in --output instead of refusing to start: deletes only the files
    /// mtl wrote there (never a directory without mtl's `.mtl-run` marker, nor the working
    /// directory or one of its ancestors).
    #[arg(long)]
    pub overwrite: bool,
    /// Pretrained encoder: `default` (all-MiniLM-L6-v2, fetched on first use), a model
    /// directory, or a Hugging Face hub id (owner/name, downloaded into the hub cache).
    #[arg(long)]
    pub model: Option<String>,
    /// Hub revision (branch, tag or commit) of a hub id in --model. Default: main.
    #[arg(long)]
    pub revision: Option<String>,
    /// Start from a model saved by mtl train (e.g. runs/default/best) instead of --model: its
    /// tasks that this run trains continue from their heads (same labels), new tasks get
    /// fresh heads, and its other tasks are kept unchanged in the new model (add a task to a
    /// trained model; with --freeze encoder their predictions stay the same).
    #[arg(long, value_name = "MODEL_DIR", conflicts_with_all = ["model", "revision"])]
    pub init: Option<PathBuf>,
    /// A task as NAME=DATA, DATA a data set name (bbc, tweets, polarity, amazon), a directory
    /// with a train file and optionally valid and test files (.jsonl, .csv or .tsv), or a
    /// single training file; without a valid file a stratified 10% of train is held out.
    /// Repeat for several tasks (replaces the configured tasks).
    #[arg(long = "task", value_name = "NAME=DATA")]
    pub tasks: Vec<String>,
    /// The field (JSONL) or column (CSV/TSV) holding the text, for the --task tasks.
    /// Default: text.
    #[arg(long, requires = "tasks")]
    pub text_field: Option<String>,
    /// The field or column holding the second text of sentence-pair tasks (encoded as BERT
    /// pairs with segment ids), for the --task tasks. Default: none.
    #[arg(long, requires = "tasks")]
    pub text_pair_field: Option<String>,
    /// The field or column holding the label, for the --task tasks. Default: label.
    #[arg(long, requires = "tasks")]
    pub label_field: Option<String>,
    /// The field or column holding each example's id, for the --task tasks. Default: the
    /// line number.
    #[arg(long, requires = "tasks")]
    pub id_field: Option<String>,
    /// The CSV/TSV field delimiter, for the --task tasks. Default: `,` for .csv, a tab for
    /// .tsv.
    #[arg(long, requires = "tasks")]
    pub delimiter: Option<char>,
    /// A task's labels as NAME=A,B,C: their order is the head's output order, and any other
    /// label in the data is an error. Default: the sorted distinct labels of the training
    /// file. Repeatable.
    #[arg(long = "labels", value_name = "NAME=A,B,C")]
    pub labels: Vec<String>,
    /// A task's loss weight as NAME=WEIGHT (default 1); repeatable.
    #[arg(long = "task-weight", value_name = "NAME=WEIGHT")]
    pub task_weights: Vec<String>,
    /// Head of every task: `linear` or `mlp:WIDTH` (one hidden layer). Default: linear.
    #[arg(long)]
    pub head: Option<String>,
    /// Number of epochs. Default: 8.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// What an epoch is: smallest (until the smallest task runs out), largest (smaller tasks
    /// cycle), all (every example once) or steps:N. Default: smallest.
    #[arg(long)]
    pub epoch: Option<String>,
    /// Task sampling per batch: round-robin, proportional, or temperature:T (p ∝ n^(1/T)).
    /// Default: round-robin.
    #[arg(long)]
    pub sampler: Option<String>,
    /// Examples per batch. Default: 32.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Truncation length in tokens. Default: 64.
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// Peak learning rate of the encoder. Default: 5e-5.
    #[arg(long)]
    pub encoder_lr: Option<f64>,
    /// Peak learning rate of the heads. Default: 1e-3.
    #[arg(long)]
    pub head_lr: Option<f64>,
    /// Layer-wise learning-rate decay per layer down the encoder, in (0, 1]. Default: 1.
    #[arg(long)]
    pub layer_lr_decay: Option<f64>,
    /// AdamW weight decay (none on biases and LayerNorm). Default: 0.01.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Share of steps with linear warmup (then linear decay). Default: 0.1.
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    /// Clip gradients to this global norm (0: off). Default: 1.
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// Batches accumulated per optimiser step. Default: 1.
    #[arg(long)]
    pub grad_accumulation: Option<usize>,
    /// task: one task's batch per step; joint: one batch of every task, losses summed.
    /// Default: task.
    #[arg(long, value_name = "task|joint")]
    pub step_mode: Option<StepMode>,
    /// Dropout before the heads. Default: 0.1.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Pooling for the heads: mean, cls, max or pooler. Default: mean.
    #[arg(long)]
    pub pooling: Option<Pooling>,
    /// Freeze a part: none, encoder, embeddings, layers:K (bottom K), layer:I, head:TASK or
    /// all (then nothing trains: the model is only evaluated). Repeatable.
    #[arg(long)]
    pub freeze: Vec<String>,
    /// Gradual unfreezing: heads first, then one more encoder layer from the top every N
    /// epochs (then the embeddings).
    #[arg(long, value_name = "N")]
    pub unfreeze_every: Option<usize>,
    /// Evaluate on the validation split every N optimiser steps (0: at epoch ends only).
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    /// Write a checkpoint every N optimiser steps (0: at epoch ends only). Default: 200.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<usize>,
    /// Stop after N evaluations without a better mean validation macro-F1.
    #[arg(long, value_name = "N")]
    pub patience: Option<usize>,
    /// Log training loss and accuracy every N steps. Default: 10.
    #[arg(long, value_name = "N")]
    pub log_every: Option<usize>,
    /// Length bucketing window in batches (0: off). Default: 50.
    #[arg(long)]
    pub bucket_window: Option<usize>,
    /// Run the frozen encoder at every step instead of caching its embeddings once (only
    /// matters with the whole encoder frozen; the results are the same, just slower).
    #[arg(long)]
    pub no_embedding_cache: bool,
    /// Seed of heads, batch order and dropout. Default: 42.
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub backend: BackendArgs,
}

impl TrainArgs {
    /// The configuration these arguments describe.
    pub fn config(&self) -> Result<TrainConfig> {
        let mut config = match &self.config {
            Some(path) => TrainConfig::from_file(path)?,
            None => TrainConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => {$(
                if let Some(value) = &self.$field {
                    config.$field = value.clone();
                }
            )*};
        }
        set!(
            output,
            model,
            epochs,
            epoch,
            sampler,
            batch_size,
            max_seq_length,
            encoder_lr,
            head_lr,
            layer_lr_decay,
            weight_decay,
            warmup_ratio,
            max_grad_norm,
            grad_accumulation,
            step_mode,
            dropout,
            pooling,
            eval_every,
            checkpoint_every,
            log_every,
            bucket_window,
            seed
        );
        if self.revision.is_some() {
            config.revision = self.revision.clone();
        }
        if self.init.is_some() {
            config.init = self.init.clone();
        }
        if self.no_embedding_cache {
            config.cache_frozen_embeddings = false;
        }
        if self.unfreeze_every.is_some() {
            config.unfreeze_every = self.unfreeze_every;
        }
        if self.patience.is_some() {
            config.patience = self.patience;
        }
        if !self.freeze.is_empty() {
            config.freeze = self.freeze.clone();
        }
        if !self.tasks.is_empty() {
            config.tasks = self
                .tasks
                .iter()
                .map(|t| {
                    let (name, data) = t
                        .split_once('=')
                        .with_context(|| format!("--task {t:?}: expected NAME=DATA"))?;
                    let mut task = TaskSpec::new(name, data);
                    if let Some(field) = &self.text_field {
                        task.text_field = field.clone();
                    }
                    if let Some(field) = &self.label_field {
                        task.label_field = field.clone();
                    }
                    task.text_pair_field = self.text_pair_field.clone();
                    task.id_field = self.id_field.clone();
                    task.delimiter = self.delimiter;
                    Ok(task)
                })
                .collect::<Result<_>>()?;
        }
        for labels in &self.labels {
            let (name, list) = labels
                .split_once('=')
                .with_context(|| format!("--labels {labels:?}: expected NAME=A,B,C"))?;
            let task = config
                .tasks
                .iter_mut()
                .find(|t| t.name == name)
                .with_context(|| format!("--labels: no task named {name:?}"))?;
            task.labels = Some(list.split(',').map(String::from).collect());
        }
        if let Some(head) = &self.head {
            let head = parse_head(head)?;
            config.tasks.iter_mut().for_each(|t| t.head = head);
        }
        for weight in &self.task_weights {
            let (name, value) = weight
                .split_once('=')
                .with_context(|| format!("--task-weight {weight:?}: expected NAME=WEIGHT"))?;
            let task = config
                .tasks
                .iter_mut()
                .find(|t| t.name == name)
                .with_context(|| format!("--task-weight: no task named {name:?}"))?;
            task.weight = value
                .parse()
                .with_context(|| format!("--task-weight {weight:?}: not a number"))?;
        }
        config.validate()?;
        Ok(config)
    }
}

impl TrainArgs {
    /// Whether any training setting is given besides the backend and the learning rates (the
    /// settings `--resume` accepts).
    fn has_settings(&self) -> bool {
        let options = [
            self.model.is_some(),
            self.revision.is_some(),
            self.init.is_some(),
            self.head.is_some(),
            self.epochs.is_some(),
            self.epoch.is_some(),
            self.sampler.is_some(),
            self.batch_size.is_some(),
            self.max_seq_length.is_some(),
            self.layer_lr_decay.is_some(),
            self.weight_decay.is_some(),
            self.warmup_ratio.is_some(),
            self.max_grad_norm.is_some(),
            self.grad_accumulation.is_some(),
            self.step_mode.is_some(),
            self.dropout.is_some(),
            self.pooling.is_some(),
            self.unfreeze_every.is_some(),
            self.eval_every.is_some(),
            self.checkpoint_every.is_some(),
            self.patience.is_some(),
            self.log_every.is_some(),
            self.bucket_window.is_some(),
            self.seed.is_some(),
            self.no_embedding_cache,
        ];
        options.into_iter().any(|given| given)
            || !self.tasks.is_empty()
            || !self.labels.is_empty()
            || !self.task_weights.is_empty()
            || !self.freeze.is_empty()
    }
}

/// Parses `linear` or `mlp:WIDTH`.
pub fn parse_head(text: &str) -> Result<HeadKind> {
    match text.split_once(':') {
        None if text == "linear" => Ok(HeadKind::Linear),
        Some(("mlp", width)) => Ok(HeadKind::Mlp {
            width: width
                .parse()
                .with_context(|| format!("--head {text:?}: bad width"))?,
        }),
        _ => bail!("unknown head {text:?} (expected linear or mlp:WIDTH)"),
    }
}

/// Runs `mtl train`.
pub fn run(args: &TrainArgs) -> Result<Summary> {
    if let Some(dir) = &args.resume {
        if args.has_settings() {
            bail!(
                "--resume continues a run with its saved configuration: give only --backend, \
                 --device, --encoder-lr and --head-lr with it"
            );
        }
        let device = args.backend.device()?;
        let path = dir.join("config.toml");
        let mut config = TrainConfig::from_file(&path)
            .with_context(|| format!("{} is not a run directory to resume", dir.display()))?;
        config.output = dir.clone();
        for (name, saved, given) in [
            ("encoder", &mut config.encoder_lr, args.encoder_lr),
            ("head", &mut config.head_lr, args.head_lr),
        ] {
            if let Some(lr) = given.filter(|lr| lr != saved) {
                eprintln!("{name} learning rate: {saved} -> {lr} from this step on");
                *saved = lr;
            }
        }
        return run_and_report(&config, &device, Start::Resume);
    }
    let mut config = args.config()?;
    config.absolutize_paths()?;
    let device = args.backend.device()?;
    let start = Start::New {
        overwrite: args.overwrite,
    };
    run_and_report(&config, &device, start)
}

/// Trains with progress bars on standard error, then draws the run's plots and prints the
/// summary table.
fn run_and_report(
    config: &TrainConfig,
    device: &burn::prelude::Device,
    start: Start,
) -> Result<Summary> {
    let summary = train(config, device, start, &mut TrainProgress::new())?;
    let dir = &summary.run_dir;
    write_plots(
        &read_records(&dir.join("metrics.jsonl"))?,
        &dir.join("plots"),
    )?;
    eprintln!("{}", summary_table(&summary));
    Ok(summary)
}
