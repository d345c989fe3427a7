//! The training loop of a prepared run: one task's batch (or one batch of every task) per
//! step, evaluation, the best model, checkpoints, early stopping, and the run's log.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::loss::CrossEntropyLoss;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use mtl_bert::row_groups;
use mtl_bert::{BertInput, DropoutKey};
use mtl_data::derive_seed;
use mtl_data::{MultiTaskLoader, Split, TaskBatch};
use mtl_model::{ModelPart, MultiTaskClassifier, MultiTaskModel, Unfrozen, trainable_parameters};

use crate::cache::EmbeddingCache;
use crate::checkpoint::{self, Best, TrainState};
use crate::config::{StepMode, TrainConfig};
use crate::data::SplitData;
use crate::error::{Context, Error, Result};
use crate::evaluate::{argmax, cross_entropy, evaluate, evaluate_with};
use crate::metrics::TaskMetrics;
use crate::multitask::aggregation::gram_from_upper;
use crate::multitask::weighting::StepOutcome;
use crate::multitask::{GradAggregation, LossWeighting};
use crate::observer::{Event, Observer, TaskStats};
use crate::optimizer::{TrainOptimizer, param_paths};
use crate::row_groups::{LossTerm, backward_in_row_groups};
use crate::runlog::{Record, RunLog};
use crate::train::{Summary, batches_per_step};

/// A training run in progress.
pub(crate) struct Run<'a> {
    pub(crate) config: &'a TrainConfig,
    pub(crate) observer: &'a mut dyn Observer,
    pub(crate) dir: PathBuf,
    pub(crate) classifier: MultiTaskClassifier,
    pub(crate) device: Device,
    pub(crate) plain: Device,
    pub(crate) loader: MultiTaskLoader,
    pub(crate) valid: SplitData,
    pub(crate) test: SplitData,
    pub(crate) held_out: Vec<(String, usize)>,
    pub(crate) frozen: Vec<ModelPart>,
    pub(crate) train_cache: Option<EmbeddingCache>,
    pub(crate) valid_cache: Option<EmbeddingCache>,
    pub(crate) loss: CrossEntropyLoss,
    pub(crate) log: RunLog,
    pub(crate) state: TrainState,
    /// Per task: `(summed loss, correct, examples)` since its last log record.
    pub(crate) interval: Vec<(f64, usize, usize)>,
    /// Per task: `(summed loss, correct, examples)` this epoch (for the progress bar).
    pub(crate) epoch_stats: Vec<(f64, usize, usize)>,
    pub(crate) last_grad_norm: Option<Tensor<1>>,
    /// What the multi-task methods chose at the last step (for the log).
    pub(crate) last_weights: StepWeights,
    pub(crate) started: Instant,
    pub(crate) seconds_before: f64,
}

impl Run<'_> {
    fn task_names(&self) -> Vec<String> {
        self.classifier.config().task_names()
    }

    /// Loads the checkpoint at `state` into the model and a new optimiser, which it returns.
    pub(crate) fn resume(
        &mut self,
        state: TrainState,
        total_steps: usize,
    ) -> Result<TrainOptimizer> {
        let config = self.config;
        let fresh = self.classifier.model.clone();
        let (model, optimizer) = checkpoint::load(&self.dir, fresh, |model| {
            TrainOptimizer::new(model, config, total_steps)
        })?;
        self.classifier.model = model;
        self.observer.event(Event::Note(format!(
            "resuming at step {} (epoch {}, batch {})",
            state.step,
            state.epoch + 1,
            state.batch_in_epoch
        )));
        self.seconds_before = state.seconds;
        self.state = state;
        let note = self.apply_freezing(self.state.epoch)?;
        // Mid-epoch, the epoch loop does not apply it again: say it here.
        if let Some(note) = note.filter(|_| self.state.batch_in_epoch != 0) {
            self.observer.event(Event::Note(note));
        }
        Ok(optimizer)
    }

    /// Sets what trains in `epoch`: everything but the frozen parts, and with gradual
    /// unfreezing only the top `epoch / unfreeze_every` encoder layers (then the embeddings);
    /// returns, with gradual unfreezing, the line that says what trains.
    pub(crate) fn apply_freezing(&mut self, epoch: usize) -> Result<Option<String>> {
        let config = self.classifier.config().clone();
        let mut model = self
            .classifier
            .model
            .clone()
            .unfreeze(&ModelPart::All, &config)?;
        let mut note = None;
        if let Some(every) = self.config.unfreeze_every {
            let layers = model.encoder.num_layers();
            let unfrozen = Unfrozen::at(epoch, every, layers);
            model = unfrozen.apply(model, &config)?;
            note = Some(format!(
                "epoch {}: gradual unfreezing: top {} of {layers} encoder layers train{}",
                epoch + 1,
                unfrozen.layers,
                if unfrozen.embeddings {
                    ", and the embeddings"
                } else {
                    ""
                }
            ));
        }
        for part in &self.frozen {
            model = model.freeze(part, &config)?;
        }
        if config.adapter.is_some() {
            // Under LoRA adapters the encoder's weights stay as loaded; its dropout stays on
            // (as PEFT trains).
            model.encoder = model.encoder.no_grad();
        }
        self.classifier.model = model;
        Ok(note)
    }

    /// When no encoder parameter can train during the whole run, computes the pooled
    /// embeddings once (train and validation splits); returns the seconds it took.
    pub(crate) fn prepare_cache(&mut self) -> Result<f64> {
        let encoder_frozen = trainable_parameters(&self.classifier.model.encoder) == 0;
        // With adapters the encoder's outputs change as they train: nothing to cache.
        if !encoder_frozen
            || !self.classifier.model.adapters.is_empty()
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
    pub(crate) fn train_epochs(&mut self, optimizer: &mut TrainOptimizer) -> Result<bool> {
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
                let stop = !last && self.observer.should_stop();
                if !last
                    && (stop
                        || self.config.checkpoint_every > 0
                            && step.is_multiple_of(self.config.checkpoint_every))
                {
                    self.checkpoint(optimizer)?;
                }
                if stop {
                    return Err(self.interrupted());
                }
            }
            self.config
                .loss_weighting
                .end_epoch(&mut self.state.multitask, tasks);
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
            if self.observer.should_stop() {
                return Err(self.interrupted());
            }
        }
        Ok(false)
    }

    /// The error of a run its observer stopped, after its checkpoint.
    fn interrupted(&self) -> Error {
        Error::Interrupted {
            step: self.state.step,
            run_dir: self.dir.clone(),
        }
    }

    /// One optimiser step on `batches` (one or more micro-steps whose gradients are summed).
    ///
    /// With the whole encoder in the graph, each batch is split into row groups run on every
    /// core (see [`row_groups`](crate::row_groups)); dropout's masks are keyed by the
    /// run's seed, the step, the micro-step and the batch, so they do not depend on the split.
    ///
    /// In joint mode the loss weighting's weights multiply the tasks' fixed weights; with a
    /// gradient aggregation other than `sum` each task's loss has its own backward, and
    /// [`aggregate`](Self::aggregate) combines the tasks' encoder gradients.
    fn step(&mut self, optimizer: &mut TrainOptimizer, batches: &[TaskBatch]) -> Result<()> {
        let tasks = self.loader.tasks().len();
        let micro = match self.config.step_mode {
            StepMode::Task => 1,
            StepMode::Joint => tasks,
        };
        let micro_steps = batches.len().div_ceil(micro);
        let weighting = self.config.loss_weighting;
        let loss_weights = weighting
            .weights(
                &self.state.multitask,
                tasks,
                self.config.seed,
                self.state.step,
            )
            .map_err(|e| self.at_step(e))?;
        // Each task's gradients apart when they are to be combined or measured (the encoder
        // is in the graph: with cached embeddings only the heads train, each with one task).
        let per_task = (self.config.grad_aggregation != GradAggregation::Sum
            || weighting.needs_task_gradients())
            && self.train_cache.is_none();
        let mut accumulators: Vec<GradientsAccumulator<MultiTaskModel>> =
            (0..if per_task { tasks } else { 1 })
                .map(|_| GradientsAccumulator::new())
                .collect();
        // Each task's mean cross-entropy over the step's batches.
        let mut step_losses: Vec<Option<f64>> = vec![None; tasks];
        for (index, group) in batches.chunks(micro).enumerate() {
            let keys: Vec<DropoutKey> = (0..group.len())
                .map(|j| {
                    let parts = [3, self.state.step as u64, index as u64, j as u64];
                    DropoutKey::new(derive_seed(self.config.seed, &parts))
                })
                .collect();
            let weights: Vec<f64> = group
                .iter()
                .map(|batch| {
                    self.config.tasks[batch.task].weight * loss_weights[batch.task]
                        / micro_steps as f64
                })
                .collect();
            let (grads, logits) = self.micro_step(group, &keys, &weights, per_task);
            for (batch, logits) in group.iter().zip(logits) {
                let loss_sum = self.record(batch, logits)?;
                let examples = batch.labels.len();
                weighting.observe_batch(
                    &mut self.state.multitask,
                    tasks,
                    batch.task,
                    loss_sum,
                    examples,
                );
                let mean = loss_sum / examples as f64 / micro_steps as f64;
                *step_losses[batch.task].get_or_insert(0.0) += mean;
            }
            for (slot, grads) in grads {
                accumulators[slot].accumulate(&self.classifier.model, grads);
            }
        }
        let (grads, grad_norms) = if per_task {
            let present: Vec<usize> = (0..tasks).filter(|&t| step_losses[t].is_some()).collect();
            self.aggregate(accumulators, &present)?
        } else {
            let grads = accumulators
                .pop()
                .expect("one accumulator for the summed loss")
                .grads();
            (grads, None)
        };
        let model = self.classifier.model.clone();
        let (model, norm) = optimizer.step(model, grads, self.state.step);
        self.classifier.model = model;
        self.last_grad_norm = Some(norm);
        if weighting != LossWeighting::Equal {
            self.last_weights.loss = Some(loss_weights);
        }
        if weighting == LossWeighting::Uncertainty {
            self.last_weights.log_variances = Some(self.state.multitask.log_variances(tasks));
        }
        let (_, lr_heads) = optimizer.lrs(self.state.step);
        let task_weights: Vec<f64> = self.config.tasks.iter().map(|t| t.weight).collect();
        let outcome = StepOutcome {
            losses: &step_losses,
            task_weights: &task_weights,
            grad_norms: grad_norms.as_deref(),
            lr: lr_heads,
        };
        weighting
            .after_step(&mut self.state.multitask, &outcome)
            .map_err(|e| self.at_step(e))?;
        self.state.step += 1;
        Ok(())
    }

    /// One micro-step's forward and backward: `group`'s batches with their dropout `keys`
    /// and loss `weights`. Returns the gradients as `(accumulator, gradients)` pairs, one
    /// (accumulator 0) for the summed loss or, with `per_task`, one per batch from its own
    /// backward (accumulator: its task), and each batch's logits (detached).
    fn micro_step(
        &self,
        group: &[TaskBatch],
        keys: &[DropoutKey],
        weights: &[f64],
        per_task: bool,
    ) -> (Vec<(usize, GradientsParams)>, Vec<Tensor<2>>) {
        let model = &self.classifier.model;
        if let Some(cache) = &self.train_cache {
            let mut total: Option<Tensor<1>> = None;
            let mut all_logits = Vec::with_capacity(group.len());
            for ((batch, key), weight) in group.iter().zip(keys).zip(weights) {
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
            let grads = GradientsParams::from_grads(total.backward(), model);
            return (vec![(0, grads)], all_logits);
        }
        let inputs: Vec<BertInput> = group
            .iter()
            .zip(keys)
            .map(|(batch, key)| BertInput {
                dropout: Some(*key),
                ..batch.tokens.to_input(&self.device)
            })
            .collect();
        let terms: Vec<LossTerm> = group
            .iter()
            .zip(&inputs)
            .zip(weights)
            .map(|((batch, input), weight)| LossTerm {
                input,
                task: batch.task,
                labels: &batch.labels,
                weight: *weight,
            })
            .collect();
        let groups = row_groups(&self.device);
        if !per_task {
            let (grads, logits) = backward_in_row_groups(model, &self.loss, &terms, groups);
            return (vec![(0, grads)], logits);
        }
        let mut parts = Vec::with_capacity(terms.len());
        let mut all_logits = Vec::with_capacity(terms.len());
        for term in &terms {
            let (grads, logits) =
                backward_in_row_groups(model, &self.loss, std::slice::from_ref(term), groups);
            parts.push((term.task, grads));
            all_logits.extend(logits);
        }
        (parts, all_logits)
    }

    /// Combines the tasks' gradients as the run's [`GradAggregation`] says: `per_task[i]`
    /// holds task `i`'s gradients summed over the step's micro-steps, `present` the tasks
    /// that had a batch in the step. The shared encoder's gradient becomes `sum_i c_i g_i`
    /// (the weights `c` from the Gram matrix of the present tasks' encoder gradients, read
    /// back as one inner product per parameter tensor and pair of tasks, summed in `f64`);
    /// every other parameter (each head) keeps the sum, i.e. its own task's gradient. Also
    /// returns each task's gradient norm on the encoder (`None` for a task without a batch;
    /// all `None` when no encoder parameter trains).
    fn aggregate(
        &mut self,
        per_task: Vec<GradientsAccumulator<MultiTaskModel>>,
        present: &[usize],
    ) -> Result<(GradientsParams, Option<Vec<Option<f64>>>)> {
        let model = &self.classifier.model;
        let all: Vec<GradientsParams> = per_task.into_iter().map(|mut a| a.grads()).collect();
        let task_grads: Vec<&GradientsParams> = present.iter().map(|&t| &all[t]).collect();
        let k = task_grads.len();
        let mut products = TaskProducts {
            grads: &task_grads,
            pairs: vec![Vec::new(); k * (k + 1) / 2],
        };
        model.encoder.visit(&mut products);
        let shared = products.pairs.iter().any(|p| !p.is_empty());
        // One inner product per pair, in the order (0,0), (0,1), .., (1,1), ..
        let mut dots = Vec::with_capacity(products.pairs.len());
        for sums in std::mem::take(&mut products.pairs) {
            if sums.is_empty() {
                dots.push(0.0);
                continue;
            }
            let values: Vec<f32> = Tensor::cat(sums, 0)
                .into_data()
                .try_into_vec()
                .map_err(|e| Error::Tensor(format!("reading gradients back: {e:?}")))?;
            dots.push(values.iter().map(|&v| f64::from(v)).sum::<f64>());
        }
        let gram = gram_from_upper(&dots, k);
        let mut weights = vec![1.0; k];
        let mut norms = None;
        if shared {
            let mut per_task = vec![None; self.loader.tasks().len()];
            for (i, &t) in present.iter().enumerate() {
                per_task[t] = Some(gram[i][i].max(0.0).sqrt());
            }
            norms = Some(per_task);
        }
        if shared && self.config.grad_aggregation != GradAggregation::Sum {
            weights = self
                .config
                .grad_aggregation
                .weights(&gram, self.config.seed, self.state.step)
                .map_err(|e| self.at_step(e))?;
            let mut logged = vec![None; self.loader.tasks().len()];
            for (&t, &w) in present.iter().zip(&weights) {
                logged[t] = Some(w);
            }
            self.last_weights.grads = Some(logged);
        }
        let encoder: HashSet<ParamId> = param_paths(&model.encoder)
            .into_iter()
            .map(|p| p.id)
            .collect();
        let mut combine = Combine {
            grads: &task_grads,
            weights: &weights,
            encoder: &encoder,
            combined: GradientsParams::new(),
        };
        model.visit(&mut combine);
        Ok((combine.combined, norms))
    }

    /// `error` with the step it happened at (an aggregation's or weighting's non-finite
    /// input).
    fn at_step(&self, error: Error) -> Error {
        match error {
            Error::NotFinite(what) => Error::NotFinite(format!(
                "step {}: {what}; stopping. The last good checkpoint (if any) is in {}; try a \
                 lower learning rate",
                self.state.step + 1,
                self.dir.join(checkpoint::CHECKPOINT_DIR).display()
            )),
            other => other,
        }
    }

    /// Adds a batch's loss and accuracy to the running statistics and returns its summed
    /// cross-entropy; a non-finite loss stops the run, naming the step and task.
    fn record(&mut self, batch: &TaskBatch, logits: Tensor<2>) -> Result<f64> {
        let labels = self.loader.tasks()[batch.task].labels().len();
        let values: Vec<f32> = logits
            .into_data()
            .try_into_vec()
            .map_err(|e| Error::Tensor(format!("reading logits back: {e:?}")))?;
        let (mut loss, mut correct) = (0.0, 0);
        for (row, &truth) in values.chunks_exact(labels).zip(&batch.labels) {
            loss += cross_entropy(row, truth as usize);
            correct += usize::from(argmax(row, None) == truth as usize);
        }
        if !loss.is_finite() {
            let checkpoint = self.dir.join(checkpoint::CHECKPOINT_DIR);
            return Err(Error::NotFinite(format!(
                "step {}: task {}: the loss is {loss} (not finite); stopping. The last good \
                 checkpoint (if any) is in {}; try a lower learning rate",
                self.state.step + 1,
                self.loader.tasks()[batch.task].name(),
                checkpoint.display()
            )));
        }
        for stats in [
            &mut self.interval[batch.task],
            &mut self.epoch_stats[batch.task],
        ] {
            stats.0 += loss;
            stats.1 += correct;
            stats.2 += batch.labels.len();
        }
        Ok(loss)
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
        let last = &self.last_weights;
        let names = self.task_names();
        for (t, (task, stats)) in names.into_iter().zip(self.interval.iter_mut()).enumerate() {
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
                loss_weight: last.loss.as_ref().map(|w| w[t]),
                log_variance: last.log_variances.as_ref().map(|s| s[t]),
                grad_weight: last.grads.as_ref().and_then(|w| w[t]),
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
    pub(crate) fn finish(mut self, stopped_early: bool, cache_seconds: f64) -> Result<Summary> {
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

/// What the multi-task methods chose at the last step, for the log's train records.
#[derive(Debug, Default)]
pub(crate) struct StepWeights {
    /// Each task's loss weight (absent with `equal`).
    pub(crate) loss: Option<Vec<f64>>,
    /// Uncertainty weighting's log-variances used at the step.
    pub(crate) log_variances: Option<Vec<f64>>,
    /// Each task's weight in the encoder's combined gradient (absent with `sum`; `None` for a
    /// task without a batch in the step).
    pub(crate) grads: Option<Vec<Option<f64>>>,
}

/// Collects, per parameter tensor of the visited module, the inner product of every pair
/// `(i, j)`, `i <= j`, of the tasks' gradients (`[1]` tensors, one list per pair, in the order
/// `(0,0), (0,1), .., (1,1), ..`); parameters without a gradient (frozen) are skipped, and a
/// task without one counts as zero.
struct TaskProducts<'a> {
    grads: &'a [&'a GradientsParams],
    pairs: Vec<Vec<Tensor<1>>>,
}

impl ModuleVisitor for TaskProducts<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let grads: Vec<Option<Tensor<D>>> =
            self.grads.iter().map(|g| g.get::<D>(param.id)).collect();
        let k = grads.len();
        let mut pair = 0;
        for i in 0..k {
            for j in i..k {
                if let (Some(a), Some(b)) = (&grads[i], &grads[j]) {
                    self.pairs[pair].push((a.clone() * b.clone()).sum());
                }
                pair += 1;
            }
        }
    }
}

/// Writes, for every parameter with a gradient, `sum_i weights[i] * grads[i]` when it is one
/// of the `encoder`'s and the plain sum otherwise (a head's: only its own task has one).
struct Combine<'a> {
    grads: &'a [&'a GradientsParams],
    weights: &'a [f64],
    encoder: &'a HashSet<ParamId>,
    combined: GradientsParams,
}

impl ModuleVisitor for Combine<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let shared = self.encoder.contains(&param.id);
        let mut total: Option<Tensor<D>> = None;
        for (grads, &weight) in self.grads.iter().zip(self.weights) {
            let Some(grad) = grads.get::<D>(param.id) else {
                continue;
            };
            let term = if shared {
                grad.mul_scalar(weight)
            } else {
                grad
            };
            total = Some(match total {
                Some(total) => total + term,
                None => term,
            });
        }
        if let Some(total) = total {
            self.combined.register(param.id, total);
        }
    }
}
