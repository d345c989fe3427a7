//! The training loop: one task's batch (or one batch of every task) per step, evaluation,
//! the best model, checkpoints, early stopping, and the run directory's logs and plots.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use mtl_bert::row_groups;
use mtl_bert::{BertInput, DropoutKey};
use mtl_bert::{collect_tensors, write_safetensors};
use mtl_data::derive_seed;
use mtl_data::{MultiTaskLoader, Split, TaskBatch};
use mtl_model::trainable_parameters;
use mtl_model::{ModelPart, MtlConfig, MultiTaskClassifier, MultiTaskModel};
use serde::Serialize;

use crate::evaluate::{argmax, cross_entropy, evaluate, evaluate_with};
use crate::metrics::TaskMetrics;
use crate::train::cache::EmbeddingCache;
use crate::train::checkpoint::{self, Best, TrainState};
use crate::train::config::{StepMode, TrainConfig};
use crate::train::data::{HELD_OUT_SHARE, RunData, SplitData, resolve_model, resolve_task};
use crate::train::observer::{Event, Observer, TaskInfo, TaskStats};
use crate::train::optimizer::TrainOptimizer;
use crate::train::row_groups::{LossTerm, backward_in_row_groups};
use crate::train::run_dir::RunDir;
use crate::train::runlog::{Record, RunLog};

/// What a finished run reports (also written to `summary.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Whether any parameter trained (false with `--freeze all`).
    pub trained: bool,
    /// Optimiser steps done.
    pub steps: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// The best validation evaluation (the model in `best/`).
    pub best: Option<Best>,
    /// Seconds spent training (all resumed parts together).
    pub train_seconds: f64,
    /// Whether the heads trained on cached embeddings of a frozen encoder.
    pub cached_embeddings: bool,
    /// Seconds spent computing those embeddings.
    pub cache_seconds: f64,
    /// The validation metrics of the model in `best/` (or of the final model).
    pub valid: Vec<TaskMetrics>,
    /// Its test metrics (of the tasks that have a test file).
    pub test: Vec<TaskMetrics>,
    /// The tasks without a validation file, each with the number of training examples held
    /// out for validation.
    pub held_out: std::collections::BTreeMap<String, usize>,
}

/// A training run in progress.
struct Run<'a> {
    config: &'a TrainConfig,
    observer: &'a mut dyn Observer,
    dir: PathBuf,
    classifier: MultiTaskClassifier,
    device: Device,
    plain: Device,
    loader: MultiTaskLoader,
    valid: SplitData,
    test: SplitData,
    held_out: Vec<(String, usize)>,
    frozen: Vec<ModelPart>,
    train_cache: Option<EmbeddingCache>,
    valid_cache: Option<EmbeddingCache>,
    loss: CrossEntropyLoss,
    log: RunLog,
    state: TrainState,
    /// Per task: `(summed loss, correct, examples)` since its last log record.
    interval: Vec<(f64, usize, usize)>,
    /// Per task: `(summed loss, correct, examples)` this epoch (for the progress bar).
    epoch_stats: Vec<(f64, usize, usize)>,
    last_grad_norm: Option<Tensor<1>>,
    started: Instant,
    seconds_before: f64,
}

/// How a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new run in `config.output`; with `overwrite`, an earlier run there (made by mtl) is
    /// replaced (see [`RunDir::create`]).
    New {
        /// Replace an earlier run in the directory.
        overwrite: bool,
    },
    /// Continue the run in `config.output` from its checkpoint (from step 0 when it was
    /// stopped before its first checkpoint).
    Resume,
}

/// Trains as `config` says on `device` (a plain device; autodiff is added here), reporting
/// progress to `observer`.
///
/// The model, the tasks and every split are read and checked first: bad data or a bad
/// setting fails before anything is written. Then the run directory is locked (one process
/// at a time), and written.
pub fn train(
    config: &TrainConfig,
    device: &Device,
    start: Start,
    observer: &mut dyn Observer,
) -> Result<Summary> {
    config.validate()?;
    let init = config
        .init
        .as_ref()
        .map(|dir| {
            mtl_model::read_saved_config(dir).with_context(|| {
                format!("--init {}: not a model saved by mtl train", dir.display())
            })
        })
        .transpose()?;
    let model_dir = match &config.init {
        Some(dir) => dir.clone(),
        None => resolve_model(&config.model, config.revision.as_deref())?,
    };
    let mut tasks: Vec<mtl_data::TaskConfig> = config
        .tasks
        .iter()
        .map(resolve_task)
        .collect::<Result<_>>()?;
    if let Some(init) = &init {
        keep_saved_label_order(&mut tasks, &config.tasks, init);
    }
    let mut mtl = MtlConfig::new(
        tasks
            .iter()
            .zip(&config.tasks)
            .map(|(task, spec)| mtl_model::TaskConfig {
                name: task.name.clone(),
                labels: task.labels.clone(),
                head: spec.head,
            })
            .collect(),
    );
    mtl.dropout = config.dropout;
    mtl.pooling = config.pooling;
    mtl.max_seq_length = Some(config.max_seq_length);
    let train_device = device.clone().autodiff();
    let plain = device.clone().without_autodiff();
    let classifier = match init {
        Some(_) => MultiTaskClassifier::from_trained(&model_dir, mtl, config.seed, &train_device),
        None => MultiTaskClassifier::from_pretrained(&model_dir, mtl, config.seed, &train_device),
    }
    .with_context(|| format!("building the model from {}", model_dir.display()))?;
    // Tasks of the --init model that this run does not train: carried over unchanged.
    let carried: Vec<String> = classifier.config().task_names()[tasks.len()..].to_vec();

    let tokenizer = classifier.tokenizer();
    let RunData {
        train,
        valid,
        test,
        held_out,
    } = RunData::load(&tasks, config.seed, tokenizer)?;
    let train_ids = train.ids.clone();
    let loader = MultiTaskLoader::new(train.tokens, config.plan()?)?;
    let steps_per_epoch: Vec<usize> = (0..config.epochs)
        .map(|e| Ok(steps_in(loader.plan(e as u64)?.len(), config, tasks.len())))
        .collect::<Result<_>>()?;
    let total_steps: usize = steps_per_epoch.iter().sum();

    // Everything is read and checked: only now is the run directory touched.
    let run_dir = match start {
        Start::New { overwrite } => RunDir::create(&config.output, overwrite)?,
        Start::Resume => RunDir::resume(&config.output)?,
    };
    let dir = run_dir.path().to_path_buf();
    mtl_fs::write_file(&dir.join("config.toml"), config.to_toml().as_bytes())
        .with_context(|| format!("writing {}", dir.join("config.toml").display()))?;
    // Read the position first: the log must be cut back to it, not to zero.
    let resumed_state = match start {
        Start::Resume => checkpoint::read_state(&dir)?,
        Start::New { .. } => None,
    };
    let resume = resumed_state.is_some();
    for (task, examples) in &held_out {
        observer.event(Event::Note(format!(
            "task {task}: no validation file: {examples} training examples (a stratified {}%, \
             seed {}) are held out for validation",
            HELD_OUT_SHARE * 100.0,
            config.seed
        )));
    }
    if start == Start::Resume && !resume {
        observer.event(Event::Note(format!(
            "{} has no checkpoint yet: the run starts again from step 0",
            dir.display()
        )));
    }
    observer.event(Event::Started {
        run_dir: dir.clone(),
        tasks: loader
            .tasks()
            .iter()
            .map(|data| {
                let mut counts = vec![0; data.labels().len()];
                data.targets().iter().for_each(|&t| counts[t] += 1);
                TaskInfo {
                    name: data.name().to_owned(),
                    examples: data.len(),
                    label_counts: data.labels().iter().cloned().zip(counts).collect(),
                }
            })
            .collect(),
        batches: format!(
            "{}; {} epochs x {} = {total_steps} optimiser steps ({:?} mode, {} batch(es) per step)",
            loader.config(),
            config.epochs,
            steps_per_epoch.first().copied().unwrap_or(0),
            config.step_mode,
            config.grad_accumulation
        ),
        total_steps,
        resumed_at: resumed_state.as_ref().map(|s| s.step),
    });
    if !resume {
        write_plan(&dir, &loader, &train_ids, config)?;
        let heads = classifier
            .config()
            .tasks
            .iter()
            .zip(&classifier.model.heads)
            .flat_map(|(task, head)| collect_tensors(head, |p| format!("heads.{}.{p}", task.name)))
            .collect();
        write_safetensors(&dir.join("init_heads.safetensors"), heads)?;
    }

    let mut frozen = config.frozen_parts()?;
    for task in &carried {
        observer.event(Event::Note(format!(
            "task {task} of {} is not trained here: its head is kept unchanged",
            model_dir.display()
        )));
        frozen.push(ModelPart::Head(task.clone()));
    }
    // Read the position first: the log must be cut back to it, not to zero.
    let log_bytes = resumed_state.as_ref().map_or(0, |s| s.log_bytes);
    let mut run = Run {
        config,
        observer,
        dir: dir.clone(),
        classifier,
        device: train_device,
        plain,
        loader,
        valid,
        test,
        held_out,
        frozen,
        train_cache: None,
        valid_cache: None,
        loss: CrossEntropyLossConfig::new().init(&device.clone().autodiff()),
        log: RunLog::open(&dir.join("metrics.jsonl"), log_bytes)?,
        state: TrainState::start(),
        interval: Vec::new(),
        epoch_stats: Vec::new(),
        last_grad_norm: None,
        started: Instant::now(),
        seconds_before: 0.0,
    };
    run.interval = vec![(0.0, 0, 0); tasks.len()];
    run.epoch_stats = run.interval.clone();
    run.apply_freezing(0)?;

    if trainable_parameters(&run.classifier.model) == 0 {
        run.observer.event(Event::Note(
            "nothing trains: every parameter is frozen (--freeze all); evaluating the model as it is"
                .into(),
        ));
        let summary = run.finish(false, 0.0)?;
        drop(run_dir);
        return Ok(summary);
    }
    let cache_seconds = run.prepare_cache()?;
    // The training time starts after the frozen encoder's embeddings are cached (reported
    // apart, as `cache_seconds`).
    run.started = Instant::now();
    let make_optimizer = |model: &MultiTaskModel| TrainOptimizer::new(model, config, total_steps);
    let mut optimizer = if let Some(state) = resumed_state {
        let fresh = run.classifier.model.clone();
        let (model, optimizer) = checkpoint::load(&dir, fresh, make_optimizer)?;
        run.classifier.model = model;
        run.observer.event(Event::Note(format!(
            "resuming at step {} (epoch {}, batch {})",
            state.step,
            state.epoch + 1,
            state.batch_in_epoch
        )));
        run.seconds_before = state.seconds;
        run.state = state;
        let note = run.apply_freezing(run.state.epoch)?;
        // Mid-epoch, the epoch loop does not apply it again: say it here.
        if let Some(note) = note.filter(|_| run.state.batch_in_epoch != 0) {
            run.observer.event(Event::Note(note));
        }
        optimizer
    } else {
        make_optimizer(&run.classifier.model)
    };
    let stopped_early = run.train_epochs(&mut optimizer)?;
    let summary = run.finish(stopped_early, cache_seconds)?;
    drop(run_dir);
    Ok(summary)
}

/// Gives each task that the `--init` model already has, and whose labels are not given, the
/// saved label order when the data has the same labels (a continued head's outputs keep
/// their meaning); other differences are refused by [`MultiTaskClassifier::from_trained`].
fn keep_saved_label_order(
    tasks: &mut [mtl_data::TaskConfig],
    specs: &[crate::train::TaskSpec],
    init: &MtlConfig,
) {
    for (task, spec) in tasks.iter_mut().zip(specs) {
        let Some(saved) = init.tasks.iter().find(|t| t.name == task.name) else {
            continue;
        };
        let sorted = |labels: &[String]| {
            let mut labels = labels.to_vec();
            labels.sort();
            labels
        };
        if spec.labels.is_none() && sorted(&saved.labels) == sorted(&task.labels) {
            task.labels = saved.labels.clone();
        }
    }
}

/// Optimiser steps of an epoch of `batches` planned batches.
fn steps_in(batches: usize, config: &TrainConfig, tasks: usize) -> usize {
    batches.div_ceil(batches_per_step(config, tasks))
}

/// Planned batches one optimiser step consumes.
fn batches_per_step(config: &TrainConfig, tasks: usize) -> usize {
    let per_micro_step = match config.step_mode {
        StepMode::Task => 1,
        StepMode::Joint => tasks,
    };
    per_micro_step * config.grad_accumulation
}

/// `plan.jsonl`: the example ids of every batch of every epoch, in training order, so another
/// implementation (`scripts/train_pytorch.py`) can train on exactly the same batches.
fn write_plan(
    dir: &Path,
    loader: &MultiTaskLoader,
    ids: &[Vec<String>],
    config: &TrainConfig,
) -> Result<()> {
    let path = dir.join("plan.jsonl");
    let mut out = std::io::BufWriter::new(
        mtl_fs::OutputFile::create(&path).with_context(|| format!("writing {}", path.display()))?,
    );
    for epoch in 0..config.epochs {
        for (index, batch) in loader.plan(epoch as u64)?.batches.iter().enumerate() {
            let line = serde_json::json!({
                "epoch": epoch,
                "batch": index,
                "task": loader.tasks()[batch.task].name(),
                "ids": batch.examples.iter().map(|&i| &ids[batch.task][i]).collect::<Vec<_>>(),
            });
            writeln!(out, "{line}").with_context(|| format!("writing {}", path.display()))?;
        }
    }
    out.into_inner()
        .map_err(|e| e.into_error())
        .and_then(mtl_fs::OutputFile::commit)
        .with_context(|| format!("writing {}", path.display()))
}

impl Run<'_> {
    fn task_names(&self) -> Vec<String> {
        self.classifier.config().task_names()
    }

    /// Sets what trains in `epoch`: everything but the frozen parts, and with gradual
    /// unfreezing only the top `epoch / unfreeze_every` encoder layers (then the embeddings);
    /// returns, with gradual unfreezing, the line that says what trains.
    fn apply_freezing(&mut self, epoch: usize) -> Result<Option<String>> {
        let config = self.classifier.config().clone();
        let mut model = self
            .classifier
            .model
            .clone()
            .unfreeze(&ModelPart::All, &config)?;
        let mut note = None;
        if let Some(every) = self.config.unfreeze_every {
            let layers = model.encoder.num_layers();
            let thawed = epoch / every;
            model = model.freeze(&ModelPart::Encoder, &config)?;
            for layer in layers.saturating_sub(thawed)..layers {
                model = model.unfreeze(&ModelPart::Layer(layer), &config)?;
            }
            if thawed > layers {
                model = model
                    .unfreeze(&ModelPart::Embeddings, &config)?
                    .unfreeze(&ModelPart::Encoder, &config)?;
            }
            note = Some(format!(
                "epoch {}: gradual unfreezing: top {} of {layers} encoder layers train{}",
                epoch + 1,
                thawed.min(layers),
                if thawed > layers {
                    ", and the embeddings"
                } else {
                    ""
                }
            ));
        }
        for part in &self.frozen {
            model = model.freeze(part, &config)?;
        }
        self.classifier.model = model;
        Ok(note)
    }

    /// When no encoder parameter can train during the whole run, computes the pooled
    /// embeddings once (train and validation splits); returns the seconds it took.
    fn prepare_cache(&mut self) -> Result<f64> {
        let encoder_frozen = trainable_parameters(&self.classifier.model.encoder) == 0;
        if !encoder_frozen
            || self.config.unfreeze_every.is_some()
            || !self.config.cache_frozen_embeddings
        {
            return Ok(0.0);
        }
        let started = Instant::now();
        let total: usize = self.loader.tasks().iter().map(|t| t.len()).sum::<usize>()
            + self.valid.tokens.iter().map(|t| t.len()).sum::<usize>();
        self.observer.event(Event::Note(format!(
            "the encoder is frozen: computing its embeddings once ({total} texts); only the heads train"
        )));
        self.observer.event(Event::CacheStarted { texts: total });
        let batch = self.config.eval_batch_size;
        let model = &self.classifier.model;
        let observer = &mut *self.observer;
        self.train_cache = Some(EmbeddingCache::compute(
            model,
            self.loader.tasks(),
            batch,
            &self.device,
            |texts| observer.event(Event::CacheProgress { texts }),
        )?);
        self.valid_cache = Some(EmbeddingCache::compute(
            model,
            &self.valid.tokens,
            batch,
            &self.plain,
            |texts| observer.event(Event::CacheProgress { texts }),
        )?);
        let seconds = started.elapsed().as_secs_f64();
        self.observer.event(Event::CacheFinished { seconds });
        Ok(seconds)
    }

    /// Runs the remaining epochs; returns whether early stopping ended them.
    fn train_epochs(&mut self, optimizer: &mut TrainOptimizer) -> Result<bool> {
        let tasks = self.loader.tasks().len();
        let per_step = batches_per_step(self.config, tasks);
        for epoch in self.state.epoch..self.config.epochs {
            if (epoch != self.state.epoch || self.state.batch_in_epoch == 0)
                && let Some(note) = self.apply_freezing(epoch)?
            {
                self.observer.event(Event::Note(note));
            }
            self.state.epoch = epoch;
            self.epoch_stats = vec![(0.0, 0, 0); tasks];
            let batches: Vec<TaskBatch> = self
                .loader
                .resume(epoch as u64, self.state.batch_in_epoch)?
                .collect();
            let planned = batches.len() + self.state.batch_in_epoch;
            self.observer.event(Event::EpochStarted {
                epoch,
                epochs: self.config.epochs,
                batches: planned,
                done: self.state.batch_in_epoch,
            });
            for chunk in batches.chunks(per_step) {
                self.step(optimizer, chunk)?;
                self.state.batch_in_epoch += chunk.len();
                let step = self.state.step;
                self.observer.event(Event::Step {
                    step,
                    batches_done: self.state.batch_in_epoch,
                    epoch_stats: self.epoch_stats(),
                });
                if step.is_multiple_of(self.config.log_every) {
                    self.write_train_records(optimizer)?;
                }
                let last = self.state.batch_in_epoch == planned;
                if !last
                    && self.config.eval_every > 0
                    && step.is_multiple_of(self.config.eval_every)
                    && self.evaluate_and_keep_best()?
                {
                    return Ok(true);
                }
                if !last
                    && self.config.checkpoint_every > 0
                    && step.is_multiple_of(self.config.checkpoint_every)
                {
                    self.checkpoint(optimizer)?;
                }
            }
            self.write_train_records(optimizer)?;
            self.observer.event(Event::EpochFinished {
                epoch,
                epochs: self.config.epochs,
                stats: self.epoch_stats(),
            });
            let stop = self.evaluate_and_keep_best()?;
            self.state.epoch = epoch + 1;
            self.state.batch_in_epoch = 0;
            self.checkpoint(optimizer)?;
            if stop {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One optimiser step on `batches` (one or more micro-steps whose gradients are summed).
    ///
    /// With the whole encoder in the graph, each batch is split into row groups run on every
    /// core (see [`row_groups`](crate::train::row_groups)); dropout's masks are keyed by the
    /// run's seed, the step, the micro-step and the batch, so they do not depend on the split.
    fn step(&mut self, optimizer: &mut TrainOptimizer, batches: &[TaskBatch]) -> Result<()> {
        let micro = match self.config.step_mode {
            StepMode::Task => 1,
            StepMode::Joint => self.loader.tasks().len(),
        };
        let micro_steps = batches.len().div_ceil(micro);
        let mut accumulator = GradientsAccumulator::<MultiTaskModel>::new();
        for (index, group) in batches.chunks(micro).enumerate() {
            let keys: Vec<DropoutKey> = (0..group.len())
                .map(|j| {
                    let parts = [3, self.state.step as u64, index as u64, j as u64];
                    DropoutKey::new(derive_seed(self.config.seed, &parts))
                })
                .collect();
            let weights: Vec<f64> = group
                .iter()
                .map(|batch| self.config.tasks[batch.task].weight / micro_steps as f64)
                .collect();
            let model = &self.classifier.model;
            let (grads, logits) = match &self.train_cache {
                Some(cache) => {
                    let mut total: Option<Tensor<1>> = None;
                    let mut all_logits = Vec::with_capacity(group.len());
                    for ((batch, key), weight) in group.iter().zip(&keys).zip(&weights) {
                        let pooled = cache.batch(batch.task, &batch.examples);
                        let logits = model.head_logits(pooled, batch.task, Some(*key));
                        let targets = batch.targets(&self.device);
                        let weighted = self
                            .loss
                            .forward(logits.clone(), targets)
                            .mul_scalar(*weight);
                        total = Some(match total {
                            Some(t) => t + weighted,
                            None => weighted,
                        });
                        all_logits.push(logits.detach());
                    }
                    let total = total.expect("a micro-step has a batch");
                    (
                        GradientsParams::from_grads(total.backward(), model),
                        all_logits,
                    )
                }
                None => {
                    let inputs: Vec<BertInput> = group
                        .iter()
                        .zip(&keys)
                        .map(|(batch, key)| BertInput {
                            dropout: Some(*key),
                            ..batch.tokens.to_input(&self.device)
                        })
                        .collect();
                    let terms: Vec<LossTerm> = group
                        .iter()
                        .zip(&inputs)
                        .zip(&weights)
                        .map(|((batch, input), weight)| LossTerm {
                            input,
                            task: batch.task,
                            labels: &batch.labels,
                            weight: *weight,
                        })
                        .collect();
                    let groups = row_groups(&self.device);
                    backward_in_row_groups(model, &self.loss, &terms, groups)
                }
            };
            for (batch, logits) in group.iter().zip(logits) {
                self.record(batch, logits)?;
            }
            accumulator.accumulate(&self.classifier.model, grads);
        }
        let grads = accumulator.grads();
        let model = self.classifier.model.clone();
        let (model, norm) = optimizer.step(model, grads, self.state.step);
        self.classifier.model = model;
        self.last_grad_norm = Some(norm);
        self.state.step += 1;
        Ok(())
    }

    /// Adds a batch's loss and accuracy to the running statistics; a non-finite loss stops the
    /// run, naming the step and task.
    fn record(&mut self, batch: &TaskBatch, logits: Tensor<2>) -> Result<()> {
        let labels = self.loader.tasks()[batch.task].labels().len();
        let values: Vec<f32> = logits
            .into_data()
            .try_into_vec()
            .map_err(|e| anyhow::anyhow!("reading logits back: {e:?}"))?;
        let (mut loss, mut correct) = (0.0, 0);
        for (row, &truth) in values.chunks_exact(labels).zip(&batch.labels) {
            loss += cross_entropy(row, truth as usize);
            correct += usize::from(argmax(row, None) == truth as usize);
        }
        if !loss.is_finite() {
            let checkpoint = self.dir.join(checkpoint::CHECKPOINT_DIR);
            bail!(
                "step {}: task {}: the loss is {loss} (not finite); stopping. The last good checkpoint \
                 (if any) is in {}; try a lower learning rate",
                self.state.step + 1,
                self.loader.tasks()[batch.task].name(),
                checkpoint.display()
            );
        }
        for stats in [
            &mut self.interval[batch.task],
            &mut self.epoch_stats[batch.task],
        ] {
            stats.0 += loss;
            stats.1 += correct;
            stats.2 += batch.labels.len();
        }
        Ok(())
    }

    /// Each task's loss and accuracy so far this epoch (tasks with a batch).
    fn epoch_stats(&self) -> Vec<TaskStats> {
        self.task_names()
            .into_iter()
            .zip(&self.epoch_stats)
            .filter(|(_, s)| s.2 > 0)
            .map(|(task, s)| TaskStats {
                task,
                loss: s.0 / s.2 as f64,
                accuracy: s.1 as f64 / s.2 as f64,
                examples: s.2,
            })
            .collect()
    }

    fn write_train_records(&mut self, optimizer: &TrainOptimizer) -> Result<()> {
        let (lr_encoder, lr_heads) = optimizer.lrs(self.state.step.saturating_sub(1));
        let grad_norm = match &self.last_grad_norm {
            Some(norm) => norm.clone().into_scalar::<f32>() as f64,
            None => 0.0,
        };
        let seconds = self.seconds();
        for (task, stats) in self.task_names().into_iter().zip(self.interval.iter_mut()) {
            if stats.2 == 0 {
                continue;
            }
            let record = Record::Train {
                step: self.state.step,
                epoch: self.state.epoch,
                task,
                loss: stats.0 / stats.2 as f64,
                accuracy: stats.1 as f64 / stats.2 as f64,
                examples: stats.2,
                lr_encoder,
                lr_heads,
                grad_norm,
                seconds,
            };
            self.log.write(&record)?;
            *stats = (0.0, 0, 0);
        }
        Ok(())
    }

    fn seconds(&self) -> f64 {
        self.seconds_before + self.started.elapsed().as_secs_f64()
    }

    /// The current model's metrics on `split` (valid or test) of each task that has it.
    fn evaluate_split(&self, split: Split) -> Result<Vec<TaskMetrics>> {
        let model = self.classifier.model.valid();
        let data = match split {
            Split::Test => &self.test,
            _ => &self.valid,
        };
        let batch = self.config.eval_batch_size;
        data.tokens
            .iter()
            .zip(data.tasks.iter().copied())
            .map(|(tokens, task)| match (&self.valid_cache, split) {
                (Some(cache), Split::Valid) => evaluate_with(tokens, task, batch, None, |b| {
                    model.head_logits(cache.batch(task, &b.examples), task, None)
                }),
                _ => evaluate(&model, &self.plain, tokens, task, batch, None),
            })
            .collect()
    }

    fn log_eval(&mut self, split: Split, metrics: &[TaskMetrics]) -> Result<()> {
        for m in metrics {
            self.log.write(&Record::Eval {
                step: self.state.step,
                epoch: self.state.epoch,
                split: split.name().into(),
                task: m.task.clone(),
                loss: m.loss,
                accuracy: m.accuracy,
                macro_f1: m.macro_f1,
            })?;
        }
        Ok(())
    }

    /// Evaluates on the validation split, saves the model to `best/` when the mean macro-F1
    /// improves; returns whether early stopping says to stop.
    fn evaluate_and_keep_best(&mut self) -> Result<bool> {
        let metrics = self.evaluate_split(Split::Valid)?;
        self.log_eval(Split::Valid, &metrics)?;
        let score = metrics.iter().map(|m| m.macro_f1).sum::<f64>() / metrics.len() as f64;
        let improved = self.state.best.is_none_or(|b| score > b.score);
        if improved {
            self.state.best = Some(Best {
                score,
                step: self.state.step,
                epoch: self.state.epoch,
            });
            self.state.evals_since_best = 0;
            self.state.best_valid = metrics.clone();
            checkpoint::ensure_finite(&self.classifier.model)?;
            self.classifier
                .save(self.dir.join("best"))
                .context("saving the best model")?;
        } else {
            self.state.evals_since_best += 1;
        }
        self.observer.event(Event::Evaluated {
            step: self.state.step,
            split: Split::Valid,
            metrics,
            best: improved,
        });
        let stop = self
            .config
            .patience
            .is_some_and(|p| self.state.evals_since_best >= p);
        if stop {
            self.observer.event(Event::Note(format!(
                "early stopping: {} evaluations without a better mean macro-F1",
                self.state.evals_since_best
            )));
        }
        Ok(stop)
    }

    fn checkpoint(&mut self, optimizer: &TrainOptimizer) -> Result<()> {
        self.log.sync()?;
        self.state.log_bytes = self.log.len()?;
        self.state.seconds = self.seconds();
        checkpoint::save(&self.dir, &self.classifier.model, optimizer, &self.state)?;
        self.observer.event(Event::Checkpoint {
            step: self.state.step,
        });
        Ok(())
    }

    /// Final evaluation of the best model (or the current one) on both splits, and
    /// `summary.json`.
    fn finish(mut self, stopped_early: bool, cache_seconds: f64) -> Result<Summary> {
        let trained = self.state.step > 0;
        let train_seconds = self.seconds();
        let best_dir = self.dir.join("best");
        if best_dir.join(mtl_model::CONFIG_FILE).is_file() {
            let best = MultiTaskClassifier::load(&best_dir, &self.plain)
                .context("loading the best model")?;
            self.classifier.model = best.model.fork(&self.device);
            self.valid_cache = None;
        }
        let valid = self.evaluate_split(Split::Valid)?;
        let test = self.evaluate_split(Split::Test)?;
        self.log_eval(Split::Test, &test)?;
        let summary = Summary {
            run_dir: self.dir.clone(),
            trained,
            steps: self.state.step,
            stopped_early,
            best: self.state.best,
            train_seconds,
            cached_embeddings: self.train_cache.is_some(),
            cache_seconds,
            valid,
            test,
            held_out: self.held_out.iter().cloned().collect(),
        };
        let json = serde_json::to_string_pretty(&summary).expect("the summary serialises");
        mtl_fs::write_file(&self.dir.join("summary.json"), json.as_bytes())
            .with_context(|| format!("writing {}", self.dir.join("summary.json").display()))?;
        Ok(summary)
    }
}
