//! A training run from its configuration: the model and data read and checked, then the run
//! directory opened (new or resumed) and written, then the loop of [`Run`] trained.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::nn::loss::CrossEntropyLossConfig;
use burn::prelude::*;
use mtl_bert::{collect_tensors, write_safetensors};
use mtl_data::MultiTaskLoader;
use mtl_model::trainable_parameters;
use mtl_model::{ModelPart, MtlConfig, MultiTaskClassifier};
use serde::Serialize;

use crate::checkpoint::{self, Best, TrainState};
use crate::config::{StepMode, TaskSpec, TrainConfig};
use crate::data::{HELD_OUT_SHARE, RunData, SplitData, resolve_model, resolve_task};
use crate::error::{Context, Result};
use crate::metrics::TaskMetrics;
use crate::observer::{Event, Observer, TaskInfo};
use crate::optimizer::TrainOptimizer;
use crate::run::Run;
use crate::run_dir::RunDir;
use crate::runlog::RunLog;

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

/// How a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// A new run in `config.output`; with `overwrite`, an earlier run there is replaced:
    /// only if mtl made it (its `.mtl-run` marker), deleting only the names in
    /// [`RUN_DIR_ENTRIES`](crate::RUN_DIR_ENTRIES), and never the working directory or one of
    /// its ancestors.
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
    let prepared = Prepared::new(config, device)?;
    // Everything is read and checked: only now is the run directory touched.
    let run_dir = match start {
        Start::New { overwrite } => RunDir::create(&config.output, overwrite)?,
        Start::Resume => RunDir::resume(&config.output)?,
    };
    let summary = prepared.run(config, &run_dir, start, observer)?;
    drop(run_dir);
    Ok(summary)
}

/// A run's model and data, read and checked, before anything is written.
struct Prepared {
    /// The model, on the autodiff device.
    classifier: MultiTaskClassifier,
    /// Where it came from (`--init`'s directory or the pretrained encoder's).
    model_dir: PathBuf,
    /// Tasks of the `--init` model that this run does not train (kept unchanged).
    carried: Vec<String>,
    device: Device,
    plain: Device,
    loader: MultiTaskLoader,
    /// Each task's training example ids (for `plan.jsonl`).
    train_ids: Vec<Vec<String>>,
    valid: SplitData,
    test: SplitData,
    held_out: Vec<(String, usize)>,
    /// Optimiser steps of each epoch.
    steps_per_epoch: Vec<usize>,
}

impl Prepared {
    /// Resolves the model and the tasks, builds the model and reads, checks and tokenizes
    /// every split.
    fn new(config: &TrainConfig, device: &Device) -> Result<Self> {
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
        let mut tasks: Vec<mtl_data::TaskSource> = config
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
                    adapter: None,
                })
                .collect(),
        );
        mtl.dropout = config.dropout;
        mtl.pooling = config.pooling;
        mtl.max_seq_length = Some(config.max_seq_length);
        mtl.adapter = config.adapter_config();
        let train_device = device.clone().autodiff();
        let classifier = match init {
            Some(_) => {
                MultiTaskClassifier::from_trained(&model_dir, mtl, config.seed, &train_device)
            }
            None => {
                MultiTaskClassifier::from_pretrained(&model_dir, mtl, config.seed, &train_device)
            }
        }
        .with_context(|| format!("building the model from {}", model_dir.display()))?;
        let carried = classifier.config().task_names()[tasks.len()..].to_vec();

        let RunData {
            train,
            valid,
            test,
            held_out,
        } = RunData::load(&tasks, config.seed, classifier.tokenizer())?;
        let loader = MultiTaskLoader::new(train.tokens, config.plan())?;
        let steps_per_epoch = (0..config.epochs)
            .map(|e| Ok(steps_in(loader.plan(e as u64)?.len(), config, tasks.len())))
            .collect::<Result<_>>()?;
        Ok(Self {
            classifier,
            model_dir,
            carried,
            device: train_device,
            plain: device.clone().without_autodiff(),
            loader,
            train_ids: train.ids,
            valid,
            test,
            held_out,
            steps_per_epoch,
        })
    }

    /// Writes the run's configuration, plan and initial heads into `run_dir` (or reads where a
    /// resumed run stopped), then trains and evaluates.
    fn run(
        self,
        config: &TrainConfig,
        run_dir: &RunDir,
        start: Start,
        observer: &mut dyn Observer,
    ) -> Result<Summary> {
        let dir = run_dir.path().to_path_buf();
        let total_steps: usize = self.steps_per_epoch.iter().sum();
        mtl_fs::write_file(&dir.join("config.toml"), config.to_toml().as_bytes())
            .with_context(|| format!("writing {}", dir.join("config.toml").display()))?;
        // Read the position first: the log must be cut back to it, not to zero.
        let resumed_state = match start {
            Start::Resume => checkpoint::read_state(&dir)?,
            Start::New { .. } => None,
        };
        let resume = resumed_state.is_some();
        for (task, examples) in &self.held_out {
            observer.event(Event::Note(format!(
                "task {task}: no validation file: {examples} training examples (a stratified \
                 {}%, seed {}) are held out for validation",
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
        observer.event(self.started(config, &dir, total_steps, resumed_state.as_ref()));
        if !resume {
            write_plan(&dir, &self.loader, &self.train_ids, config)?;
            let heads = self
                .classifier
                .config()
                .tasks
                .iter()
                .zip(&self.classifier.model.heads)
                .flat_map(|(task, head)| {
                    collect_tensors(head, |p| format!("heads.{}.{p}", task.name))
                })
                .collect();
            write_safetensors(&dir.join("init_heads.safetensors"), heads)?;
        }

        let mut frozen = config.freeze.clone();
        for task in &self.carried {
            observer.event(Event::Note(format!(
                "task {task} of {} is not trained here: its head is kept unchanged",
                self.model_dir.display()
            )));
            frozen.push(ModelPart::Head(task.clone()));
        }
        let log_bytes = resumed_state.as_ref().map_or(0, |s| s.log_bytes);
        let tasks = self.loader.tasks().len();
        let mut run = Run {
            config,
            observer,
            dir: dir.clone(),
            classifier: self.classifier,
            loss: CrossEntropyLossConfig::new().init(&self.device),
            device: self.device,
            plain: self.plain,
            loader: self.loader,
            valid: self.valid,
            test: self.test,
            held_out: self.held_out,
            frozen,
            train_cache: None,
            valid_cache: None,
            log: RunLog::open(&dir.join("metrics.jsonl"), log_bytes)?,
            state: TrainState::start(),
            interval: vec![(0.0, 0, 0); tasks],
            epoch_stats: vec![(0.0, 0, 0); tasks],
            last_grad_norm: None,
            last_weights: Default::default(),
            started: Instant::now(),
            seconds_before: 0.0,
        };
        run.apply_freezing(0)?;
        if trainable_parameters(&run.classifier.model) == 0 {
            run.observer.event(Event::Note(
                "nothing trains: every parameter is frozen (--freeze all); evaluating the model \
                 as it is"
                    .into(),
            ));
            return run.finish(false, 0.0);
        }
        let cache_seconds = run.prepare_cache()?;
        // The training time starts after the frozen encoder's embeddings are cached (reported
        // apart, as `cache_seconds`).
        run.started = Instant::now();
        let mut optimizer = match resumed_state {
            Some(state) => run.resume(state, total_steps)?,
            None => TrainOptimizer::new(&run.classifier.model, config, total_steps),
        };
        let stopped_early = run.train_epochs(&mut optimizer)?;
        run.finish(stopped_early, cache_seconds)
    }

    /// The [`Event::Started`] of this run.
    fn started(
        &self,
        config: &TrainConfig,
        dir: &Path,
        total_steps: usize,
        resumed: Option<&TrainState>,
    ) -> Event {
        Event::Started {
            run_dir: dir.to_path_buf(),
            tasks: self
                .loader
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
                "{}; {} epochs x {} = {total_steps} optimiser steps ({:?} mode, {} batch(es) per \
                 step)",
                self.loader.config(),
                config.epochs,
                self.steps_per_epoch.first().copied().unwrap_or(0),
                config.step_mode,
                config.grad_accumulation
            ),
            total_steps,
            resumed_at: resumed.map(|s| s.step),
        }
    }
}

/// Gives each task that the `--init` model already has, and whose labels are not given, the
/// saved label order when the data has the same labels (a continued head's outputs keep
/// their meaning); other differences are refused by [`MultiTaskClassifier::from_trained`].
fn keep_saved_label_order(
    tasks: &mut [mtl_data::TaskSource],
    specs: &[TaskSpec],
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
pub(crate) fn batches_per_step(config: &TrainConfig, tasks: usize) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_takes_one_batch_or_one_per_task_times_the_accumulation() {
        let config = |step_mode, grad_accumulation| TrainConfig {
            step_mode,
            grad_accumulation,
            ..TrainConfig::default()
        };
        assert_eq!(batches_per_step(&config(StepMode::Task, 1), 3), 1);
        assert_eq!(batches_per_step(&config(StepMode::Task, 4), 3), 4);
        assert_eq!(batches_per_step(&config(StepMode::Joint, 1), 3), 3);
        assert_eq!(batches_per_step(&config(StepMode::Joint, 2), 3), 6);
        // A last, partial step still counts.
        assert_eq!(steps_in(10, &config(StepMode::Task, 4), 2), 3);
        assert_eq!(steps_in(12, &config(StepMode::Joint, 1), 2), 6);
        assert_eq!(steps_in(0, &config(StepMode::Task, 1), 2), 0);
    }

    #[test]
    fn a_continued_task_keeps_the_saved_label_order_unless_labels_are_given() {
        let saved = MtlConfig::new(vec![
            mtl_model::TaskConfig::new("topic", &["tech", "sport"]),
            mtl_model::TaskConfig::new("other", &["x", "y"]),
        ]);
        let data = |name: &str, labels: &[&str]| {
            mtl_data::TaskSource::new(name, "unused", labels.iter().copied())
        };
        let mut tasks = vec![
            data("topic", &["sport", "tech"]),
            data("new", &["a", "b"]),
            data("other", &["x", "y", "z"]),
        ];
        let specs = vec![
            TaskSpec::new("topic", "d"),
            TaskSpec::new("new", "d"),
            TaskSpec::new("other", "d"),
        ];
        keep_saved_label_order(&mut tasks, &specs, &saved);
        assert_eq!(tasks[0].labels, ["tech", "sport"], "the saved order");
        assert_eq!(tasks[1].labels, ["a", "b"], "a new task as it is");
        assert_eq!(
            tasks[2].labels,
            ["x", "y", "z"],
            "other labels: refused later, not here"
        );

        let mut tasks = vec![data("topic", &["sport", "tech"])];
        let mut given = TaskSpec::new("topic", "d");
        given.labels = Some(vec!["sport".into(), "tech".into()]);
        keep_saved_label_order(&mut tasks, &[given], &saved);
        assert_eq!(tasks[0].labels, ["sport", "tech"], "given labels win");
    }
}
