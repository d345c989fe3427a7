//! `mtl train`: a config file and flags that override it; progress on standard error, plots
//! of the run's log.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use mtl_bert::{LoraTargets, Pooling};
use mtl_data::{EpochMode, TaskSampler};
use mtl_model::{AdapterScope, HeadKind, ModelPart};
use mtl_train::{
    Adapter, GradAggregation, LossWeighting, Start, StepMode, Summary, TaskSpec, TrainConfig,
    read_records, train,
};

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
    #[arg(long, help = mtl_train::setting_doc!(output))]
    pub output: Option<PathBuf>,
    /// Replace an earlier run in --output instead of refusing to start: deletes only the files
    /// mtl wrote there (never a directory without mtl's `.mtl-run` marker, nor the working
    /// directory or one of its ancestors).
    #[arg(long)]
    pub overwrite: bool,
    #[arg(long, help = mtl_train::setting_doc!(model))]
    pub model: Option<String>,
    #[arg(long, help = mtl_train::setting_doc!(revision))]
    pub revision: Option<String>,
    #[arg(long, value_name = "MODEL_DIR", conflicts_with_all = ["model", "revision"], help = mtl_train::setting_doc!(init))]
    pub init: Option<PathBuf>,
    /// A task as NAME=DATA, DATA a data set name (bbc, tweets, polarity, amazon), a directory
    /// with a train file and optionally valid and test files (.jsonl, .csv or .tsv), or a
    /// single training file; without a valid file a stratified 10% of train is held out.
    /// Repeat for several tasks (replaces the configured tasks).
    #[arg(long = "task", value_name = "NAME=DATA")]
    pub tasks: Vec<String>,
    #[arg(long, requires = "tasks", help = concat!(mtl_train::setting_doc!(text_field), " For the --task tasks."))]
    pub text_field: Option<String>,
    #[arg(long, requires = "tasks", help = concat!(mtl_train::setting_doc!(text_pair_field), " For the --task tasks."))]
    pub text_pair_field: Option<String>,
    #[arg(long, requires = "tasks", help = concat!(mtl_train::setting_doc!(label_field), " For the --task tasks."))]
    pub label_field: Option<String>,
    #[arg(long, requires = "tasks", help = concat!(mtl_train::setting_doc!(id_field), " For the --task tasks."))]
    pub id_field: Option<String>,
    #[arg(long, requires = "tasks", help = concat!(mtl_train::setting_doc!(delimiter), " For the --task tasks."))]
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
    pub head: Option<HeadKind>,
    #[arg(long, help = mtl_train::setting_doc!(epochs))]
    pub epochs: Option<usize>,
    #[arg(long, help = mtl_train::setting_doc!(epoch))]
    pub epoch: Option<EpochMode>,
    #[arg(long, help = mtl_train::setting_doc!(sampler))]
    pub sampler: Option<TaskSampler>,
    #[arg(long, help = mtl_train::setting_doc!(batch_size))]
    pub batch_size: Option<usize>,
    #[arg(long, help = mtl_train::setting_doc!(max_seq_length))]
    pub max_seq_length: Option<usize>,
    #[arg(long, help = mtl_train::setting_doc!(encoder_lr))]
    pub encoder_lr: Option<f64>,
    #[arg(long, help = mtl_train::setting_doc!(head_lr))]
    pub head_lr: Option<f64>,
    #[arg(long, help = mtl_train::setting_doc!(layer_lr_decay))]
    pub layer_lr_decay: Option<f64>,
    #[arg(long, help = mtl_train::setting_doc!(weight_decay))]
    pub weight_decay: Option<f64>,
    #[arg(long, help = mtl_train::setting_doc!(warmup_ratio))]
    pub warmup_ratio: Option<f64>,
    #[arg(long, help = mtl_train::setting_doc!(max_grad_norm))]
    pub max_grad_norm: Option<f64>,
    #[arg(long, help = mtl_train::setting_doc!(grad_accumulation))]
    pub grad_accumulation: Option<usize>,
    #[arg(long, value_name = "task|joint", help = mtl_train::setting_doc!(step_mode))]
    pub step_mode: Option<StepMode>,
    #[arg(long, value_name = "NAME[:PARAMS]", help = mtl_train::setting_doc!(loss_weighting))]
    pub loss_weighting: Option<LossWeighting>,
    #[arg(long, value_name = "NAME[:PARAMS]", help = mtl_train::setting_doc!(grad_aggregation))]
    pub grad_aggregation: Option<GradAggregation>,
    #[arg(long, help = mtl_train::setting_doc!(dropout))]
    pub dropout: Option<f64>,
    #[arg(long, help = mtl_train::setting_doc!(pooling))]
    pub pooling: Option<Pooling>,
    #[arg(long, help = concat!(mtl_train::setting_doc!(freeze), " Repeatable."))]
    pub freeze: Vec<String>,
    #[arg(long, value_name = "N", help = mtl_train::setting_doc!(unfreeze_every))]
    pub unfreeze_every: Option<usize>,
    #[arg(long, value_name = "none|lora:RANK[:ALPHA]", help = mtl_train::setting_doc!(adapter))]
    pub adapter: Option<Adapter>,
    #[arg(long, value_name = "attention|all", help = mtl_train::setting_doc!(adapter_targets))]
    pub adapter_targets: Option<LoraTargets>,
    #[arg(long, value_name = "per-task|shared", help = mtl_train::setting_doc!(adapter_scope))]
    pub adapter_scope: Option<AdapterScope>,
    #[arg(long, value_name = "N", help = mtl_train::setting_doc!(eval_every))]
    pub eval_every: Option<usize>,
    #[arg(long, value_name = "N", help = mtl_train::setting_doc!(checkpoint_every))]
    pub checkpoint_every: Option<usize>,
    #[arg(long, value_name = "N", help = mtl_train::setting_doc!(patience))]
    pub patience: Option<usize>,
    #[arg(long, value_name = "N", help = mtl_train::setting_doc!(log_every))]
    pub log_every: Option<usize>,
    #[arg(long, help = mtl_train::setting_doc!(bucket_window))]
    pub bucket_window: Option<usize>,
    /// Run the frozen encoder at every step instead of caching its embeddings once (only
    /// matters with the whole encoder frozen; the results are the same, just slower).
    #[arg(long)]
    pub no_embedding_cache: bool,
    #[arg(long, help = mtl_train::setting_doc!(seed))]
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
            loss_weighting,
            grad_aggregation,
            dropout,
            pooling,
            adapter,
            adapter_targets,
            adapter_scope,
            eval_every,
            checkpoint_every,
            log_every,
            bucket_window,
            seed
        );
        if (self.adapter_targets.is_some() || self.adapter_scope.is_some())
            && config.adapter == Adapter::None
        {
            bail!("--adapter-targets and --adapter-scope shape LoRA adapters: give --adapter too");
        }
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
            config.freeze = ModelPart::parse_list(&self.freeze).map_err(anyhow::Error::msg)?;
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
        if let Some(head) = self.head {
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
            self.loss_weighting.is_some(),
            self.grad_aggregation.is_some(),
            self.dropout.is_some(),
            self.pooling.is_some(),
            self.adapter.is_some(),
            self.adapter_targets.is_some(),
            self.adapter_scope.is_some(),
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
