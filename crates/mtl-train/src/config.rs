//! The training configuration: defaults, a TOML file, and command-line overrides.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mtl_bert::Pooling;
use mtl_data::{DataFormat, EpochMode, PlanConfig, TaskSampler};
use mtl_model::{HeadKind, ModelPart};
use serde::{Deserialize, Serialize};

/// One task to train: its data, labels, head and loss weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The task's name (the head is `heads.<name>`).
    pub name: String,
    /// A data set fetched by name (`bbc`, `tweets`, `polarity`, `amazon`), a directory
    /// holding a `train` file and optionally `valid` and `test` files (`.jsonl`, `.csv` or
    /// `.tsv`), or a single training file. Without a validation file, a seeded stratified 10%
    /// of the training examples is held out for validation.
    pub data: String,
    /// The labels, in head-output order; any other label in the data is an error. Default:
    /// the named data set's labels, else the sorted distinct labels of the training split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Weight of this task's loss. Default: 1.
    #[serde(default = "one")]
    pub weight: f64,
    /// The head. Default: linear.
    #[serde(default)]
    pub head: HeadKind,
    /// File format of the splits. Default: each file's extension's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
    /// Field or column with the text. Default: `text`.
    #[serde(default = "text_field")]
    pub text_field: String,
    /// Field or column with the second text of a sentence-pair task (encoded as a BERT pair).
    /// Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_pair_field: Option<String>,
    /// Field or column with the label. Default: `label`.
    #[serde(default = "label_field")]
    pub label_field: String,
    /// Field or column with each example's id (written to `plan.jsonl`). Default: the line
    /// number (`id` for the named data sets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_field: Option<String>,
    /// CSV/TSV field delimiter. Default: `,` for `.csv`, a tab for `.tsv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<char>,
}

fn one() -> f64 {
    1.0
}

fn text_field() -> String {
    "text".into()
}

fn label_field() -> String {
    "label".into()
}

impl TaskSpec {
    /// A task on a named data set or directory, with the defaults.
    pub fn new(name: &str, data: &str) -> Self {
        Self {
            name: name.into(),
            data: data.into(),
            labels: None,
            weight: 1.0,
            head: HeadKind::Linear,
            format: None,
            text_field: text_field(),
            text_pair_field: None,
            label_field: label_field(),
            id_field: None,
            delimiter: None,
        }
    }
}

/// Whether each optimiser step sees one task's batch or one batch of every task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepMode {
    /// One task's batch per step, its weighted loss alone (tasks chosen by the sampler).
    Task,
    /// One batch of every task per step; the weighted losses are summed (round-robin plan).
    Joint,
}

impl std::str::FromStr for StepMode {
    type Err = String;

    /// Parses `task` or `joint`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "task" => Ok(Self::Task),
            "joint" => Ok(Self::Joint),
            _ => Err(format!(
                "unknown step mode {text:?} (expected task or joint)"
            )),
        }
    }
}

/// The most examples a run may plan over all its epochs with `steps:N` epochs (the plan holds
/// each example's index, 8 bytes, and a line of `plan.jsonl`): 20 million, about 11 days of
/// training at 20 examples per second.
pub const MAX_PLANNED_EXAMPLES: usize = 20_000_000;

/// Everything a training run needs; written to the run directory as `config.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The pretrained encoder: `default` (all-MiniLM-L6-v2, fetched on first use), a model
    /// directory, or a Hugging Face hub id (`owner/name`, downloaded into the hub cache).
    pub model: String,
    /// The hub revision (branch, tag or commit) of a hub id in `model`. Default: `main`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Start from a model saved by `mtl train` (its encoder and heads) instead of `model`:
    /// tasks it has continue from their heads (same labels), new tasks get fresh heads, and
    /// its tasks that this run does not train are kept unchanged in the saved model.
    /// Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    /// The run directory. Default: `runs/default`.
    pub output: PathBuf,
    /// Seed of the heads' initialisation, the batch order and dropout. Default: 42.
    pub seed: u64,
    /// The tasks. Default: topic (BBC News) and sentiment (CrowdFlower tweets, 3 classes).
    pub tasks: Vec<TaskSpec>,
    /// Number of epochs. Default: 8.
    pub epochs: usize,
    /// What an epoch is: `smallest` (until the smallest task runs out), `largest` (until the
    /// largest does; smaller ones cycle), `all` (every example once) or `steps:N`.
    /// Default: `smallest`.
    pub epoch: String,
    /// Task sampling: `round-robin`, `proportional` or `temperature:T`. Default: round-robin.
    pub sampler: String,
    /// Examples per batch. Default: 32.
    pub batch_size: usize,
    /// Truncation length in tokens. Default: 64 (99% of BBC and tweet texts fit).
    pub max_seq_length: usize,
    /// Peak learning rate of the encoder (its top layer). Default: 5e-5.
    pub encoder_lr: f64,
    /// Peak learning rate of the heads. Default: 1e-3.
    pub head_lr: f64,
    /// Layer-wise decay: layer `i` of `L` gets `encoder_lr * decay^(L-1-i)`, the embeddings
    /// `encoder_lr * decay^L`. Default: 1 (no decay).
    pub layer_lr_decay: f64,
    /// AdamW weight decay (not on biases and LayerNorm). Default: 0.01.
    pub weight_decay: f64,
    /// Share of the optimiser steps spent warming the learning rate up linearly from 0; then
    /// it decays linearly to 0. Default: 0.1.
    pub warmup_ratio: f64,
    /// Clip gradients to this global L2 norm; 0 turns clipping off. Default: 1.
    pub max_grad_norm: f64,
    /// Batches whose gradients are summed per optimiser step. Default: 1.
    pub grad_accumulation: usize,
    /// `task` or `joint`. Default: task.
    pub step_mode: StepMode,
    /// Dropout before the heads. Default: 0.1.
    pub dropout: f64,
    /// Pooling of the encoder output for the heads. Default: mean.
    pub pooling: Pooling,
    /// Parts to freeze: `encoder`, `embeddings`, `layers:K`, `layer:I`, `head:TASK`, `all`.
    /// Default: none.
    pub freeze: Vec<String>,
    /// Gradual unfreezing: start with the encoder frozen and unfreeze one more layer, from the
    /// top down, every this many epochs (then the embeddings). Default: off.
    pub unfreeze_every: Option<usize>,
    /// Evaluate on the validation split every this many optimiser steps (0: only at epoch
    /// ends). Default: 0.
    pub eval_every: usize,
    /// Write a checkpoint every this many optimiser steps (0: only at epoch ends).
    /// Default: 200.
    pub checkpoint_every: usize,
    /// Stop after this many evaluations without a better mean macro-F1. Default: off.
    pub patience: Option<usize>,
    /// Log training loss and accuracy every this many optimiser steps. Default: 10.
    pub log_every: usize,
    /// Length bucketing window, in batches (0: off). Default: 50.
    pub bucket_window: usize,
    /// Batch size for evaluation. Default: 64.
    pub eval_batch_size: usize,
    /// When the encoder is frozen for the whole run, compute its embeddings once and train the
    /// heads on them (same result, far faster). Default: true.
    pub cache_frozen_embeddings: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            model: "default".into(),
            revision: None,
            init: None,
            output: PathBuf::from("runs/default"),
            seed: 42,
            tasks: vec![
                TaskSpec::new("topic", "bbc"),
                TaskSpec::new("sentiment", "tweets"),
            ],
            epochs: 8,
            epoch: "smallest".into(),
            sampler: "round-robin".into(),
            batch_size: 32,
            max_seq_length: 64,
            encoder_lr: 5e-5,
            head_lr: 1e-3,
            layer_lr_decay: 1.0,
            weight_decay: 0.01,
            warmup_ratio: 0.1,
            max_grad_norm: 1.0,
            grad_accumulation: 1,
            step_mode: StepMode::Task,
            dropout: 0.1,
            pooling: Pooling::Mean,
            freeze: Vec::new(),
            unfreeze_every: None,
            eval_every: 0,
            checkpoint_every: 200,
            patience: None,
            log_every: 10,
            bucket_window: 50,
            eval_batch_size: 64,
            cache_frozen_embeddings: true,
        }
    }
}

/// Parses `round-robin`, `proportional`, `temperature:T`.
pub fn parse_sampler(text: &str) -> Result<TaskSampler> {
    Ok(match text.split_once(':') {
        None if text == "round-robin" => TaskSampler::RoundRobin,
        None if text == "proportional" => TaskSampler::Proportional,
        Some(("temperature", t)) => TaskSampler::Temperature {
            t: t.parse()
                .with_context(|| format!("sampler {text:?}: bad temperature"))?,
        },
        _ => {
            bail!("unknown sampler {text:?} (expected round-robin, proportional or temperature:T)")
        }
    })
}

/// Parses `smallest`, `largest`, `all`, `steps:N`.
pub fn parse_epoch(text: &str) -> Result<EpochMode> {
    Ok(match text.split_once(':') {
        None if text == "smallest" => EpochMode::UntilSmallestExhausted,
        None if text == "largest" => EpochMode::UntilLargestExhausted,
        None if text == "all" => EpochMode::UntilAllExhausted,
        Some(("steps", n)) => EpochMode::FixedSteps(
            n.parse()
                .with_context(|| format!("epoch {text:?}: bad step count"))?,
        ),
        _ => bail!("unknown epoch {text:?} (expected smallest, largest, all or steps:N)"),
    })
}

impl TrainConfig {
    /// Reads a TOML (or, by extension, JSON) configuration; missing keys take the defaults.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        } else {
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        };
        Ok(config)
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a TrainConfig serialises")
    }

    /// The batch plan (without the seed's epoch offset, which the loader adds).
    pub fn plan(&self) -> Result<PlanConfig> {
        Ok(PlanConfig {
            batch_size: self.batch_size,
            sampler: parse_sampler(&self.sampler)?,
            epoch_mode: parse_epoch(&self.epoch)?,
            bucket_window: self.bucket_window,
            drop_last: false,
            seed: self.seed,
        })
    }

    /// The freeze list as model parts.
    pub fn frozen_parts(&self) -> Result<Vec<ModelPart>> {
        self.freeze
            .iter()
            .filter(|p| p.as_str() != "none")
            .map(|p| p.parse::<ModelPart>().map_err(anyhow::Error::msg))
            .collect()
    }

    /// Makes the model and task data that name existing local directories absolute paths, so
    /// the run's `config.toml` works with `--resume` from any working directory.
    pub fn absolutize_paths(&mut self) -> Result<()> {
        let absolute = |path: &str| -> Result<String> {
            let dir = Path::new(path)
                .canonicalize()
                .with_context(|| format!("resolving {path}"))?;
            Ok(dir.to_string_lossy().into_owned())
        };
        if self.model != "default" && Path::new(&self.model).is_dir() {
            self.model = absolute(&self.model)?;
        }
        if let Some(init) = &mut self.init {
            *init = PathBuf::from(absolute(&init.to_string_lossy())?);
        }
        for task in &mut self.tasks {
            if Path::new(&task.data).exists() {
                task.data = absolute(&task.data)?;
            }
        }
        Ok(())
    }

    /// Checks every value; the message names the setting.
    pub fn validate(&self) -> Result<()> {
        if self.tasks.is_empty() {
            bail!("no tasks to train");
        }
        if self.init.is_some() && self.model != "default" {
            bail!("give either init (a model saved by mtl train) or model, not both");
        }
        for task in &self.tasks {
            if !(task.weight.is_finite() && task.weight > 0.0) {
                bail!(
                    "task {:?}: weight {} must be positive",
                    task.name,
                    task.weight
                );
            }
        }
        let positive = [
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
            ("grad_accumulation", self.grad_accumulation),
            ("log_every", self.log_every),
            ("eval_batch_size", self.eval_batch_size),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            bail!("{name} must be at least 1");
        }
        if self.max_seq_length < 3 {
            bail!("max_seq_length must be at least 3");
        }
        for (name, lr) in [("encoder_lr", self.encoder_lr), ("head_lr", self.head_lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                bail!("{name} {lr} must be positive");
            }
        }
        if !(self.layer_lr_decay > 0.0 && self.layer_lr_decay <= 1.0) {
            bail!("layer_lr_decay {} must be in (0, 1]", self.layer_lr_decay);
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            bail!("warmup_ratio {} must be in [0, 1)", self.warmup_ratio);
        }
        if !(self.weight_decay >= 0.0 && self.max_grad_norm >= 0.0) {
            bail!("weight_decay and max_grad_norm must not be negative");
        }
        if self.unfreeze_every == Some(0) {
            bail!("unfreeze_every must be at least 1");
        }
        if let EpochMode::FixedSteps(steps) = parse_epoch(&self.epoch)? {
            let examples = steps
                .saturating_mul(self.batch_size)
                .saturating_mul(self.epochs);
            if examples > MAX_PLANNED_EXAMPLES {
                bail!(
                    "epoch steps:{steps} x batch_size {} x {} epochs plans {examples} examples, \
                     more than the {MAX_PLANNED_EXAMPLES} a run may plan (the plan is kept in \
                     memory and in plan.jsonl); use fewer steps per epoch",
                    self.batch_size,
                    self.epochs
                );
            }
        }
        let plan = self.plan()?;
        plan.validate()?;
        if self.step_mode == StepMode::Joint && plan.sampler != TaskSampler::RoundRobin {
            bail!(
                "step_mode joint takes one batch of every task per step: use the round-robin sampler"
            );
        }
        self.frozen_parts()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_too_large_for_memory_is_refused_before_it_is_made() {
        let mut config = TrainConfig {
            epoch: "steps:100000000".into(),
            ..TrainConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("more than the 20000000"), "{err}");
        config.epoch = "steps:1000".into();
        config.validate().unwrap();
    }

    #[test]
    fn local_paths_become_absolute_and_names_stay() {
        let dir = tempfile::tempdir().unwrap();
        let relative = pathdiff(dir.path());
        let mut config = TrainConfig {
            model: relative.clone(),
            ..TrainConfig::default()
        };
        config.tasks[0].data = relative;
        config.absolutize_paths().unwrap();
        let canonical = dir.path().canonicalize().unwrap();
        assert_eq!(Path::new(&config.model), canonical);
        assert_eq!(Path::new(&config.tasks[0].data), canonical);
        assert_eq!(
            config.tasks[1].data, "tweets",
            "a data set name stays a name"
        );
    }

    /// `path` relative to the working directory (through `..` as needed).
    fn pathdiff(path: &Path) -> String {
        let cwd = std::env::current_dir().unwrap();
        let ups = cwd.components().count() - 1;
        let mut relative = "../".repeat(ups);
        relative.push_str(path.strip_prefix("/").unwrap().to_str().unwrap());
        assert!(Path::new(&relative).is_relative());
        relative
    }

    #[test]
    fn defaults_are_valid_and_round_trip_through_toml() {
        let config = TrainConfig::default();
        config.validate().unwrap();
        let again: TrainConfig = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(again, config);
    }

    #[test]
    fn a_partial_file_keeps_the_other_defaults() {
        let config: TrainConfig = toml::from_str(
            "epochs = 2\nsampler = \"temperature:2\"\n[[tasks]]\nname = \"t\"\ndata = \"some/dir\"\nhead = { kind = \"mlp\", width = 64 }\n",
        )
        .unwrap();
        assert_eq!(config.epochs, 2);
        assert_eq!(config.batch_size, 32);
        assert_eq!(config.tasks[0].head, HeadKind::Mlp { width: 64 });
        assert_eq!(
            config.plan().unwrap().sampler,
            TaskSampler::Temperature { t: 2.0 }
        );
    }

    #[test]
    fn bad_values_are_named() {
        let err = toml::from_str::<TrainConfig>("epocs = 2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `epocs`"), "{err}");
        let config = TrainConfig {
            sampler: "random".into(),
            ..TrainConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("unknown sampler")
        );
        let config = TrainConfig {
            step_mode: StepMode::Joint,
            sampler: "proportional".into(),
            ..TrainConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("round-robin")
        );
        assert_eq!(parse_epoch("steps:7").unwrap(), EpochMode::FixedSteps(7));
        assert!(parse_epoch("forever").is_err());
    }
}
