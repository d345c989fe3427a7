//! The training configuration: defaults, a TOML file, and command-line overrides.

use std::path::{Path, PathBuf};

use mtl_bert::{LoraConfig, LoraTargets, Pooling};
use mtl_data::{DataFormat, EpochMode, PlanConfig, TaskSampler};
use mtl_model::{AdapterConfig, AdapterScope, HeadKind, ModelPart};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};
use crate::multitask::{GradAggregation, LossWeighting};
use crate::setting_doc;

/// One task to train: its data, labels, head and loss weight, as a user gives it. It is
/// resolved ([`TaskSpec::resolve`]) into the `mtl_data::TaskSource` that reads its data, and
/// the model keeps its `mtl_model::TaskConfig` (name, labels, head).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// The task's name (the head is `heads.<name>`).
    pub name: String,
    #[doc = setting_doc!(data)]
    pub data: String,
    #[doc = setting_doc!(labels)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    #[doc = setting_doc!(weight)]
    #[serde(default = "one")]
    pub weight: f64,
    #[doc = setting_doc!(head)]
    #[serde(default)]
    pub head: HeadKind,
    /// File format of the splits. Default: each file's extension's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DataFormat>,
    #[doc = setting_doc!(text_field)]
    #[serde(default = "text_field")]
    pub text_field: String,
    #[doc = setting_doc!(text_pair_field)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_pair_field: Option<String>,
    #[doc = setting_doc!(label_field)]
    #[serde(default = "label_field")]
    pub label_field: String,
    #[doc = setting_doc!(id_field)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_field: Option<String>,
    #[doc = setting_doc!(delimiter)]
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

    /// The task's data as mtl-data reads it: a named data set is fetched and extracted on
    /// first use; the labels are the given ones, the named data set's, or the sorted distinct
    /// labels of the training file.
    pub fn resolve(&self) -> Result<mtl_data::TaskSource> {
        crate::data::resolve_task(self)
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
    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
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
///
/// Each setting's documentation is [`setting_doc!`](crate::setting_doc), which `mtl train
/// --help` shows as well.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    #[doc = setting_doc!(model)]
    pub model: String,
    #[doc = setting_doc!(revision)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    #[doc = setting_doc!(init)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    #[doc = setting_doc!(output)]
    pub output: PathBuf,
    #[doc = setting_doc!(seed)]
    pub seed: u64,
    /// The tasks. Default: topic (BBC News) and sentiment (CrowdFlower tweets, 3 classes).
    pub tasks: Vec<TaskSpec>,
    #[doc = setting_doc!(epochs)]
    pub epochs: usize,
    #[doc = setting_doc!(epoch)]
    #[serde(with = "as_setting")]
    pub epoch: EpochMode,
    #[doc = setting_doc!(sampler)]
    #[serde(with = "as_setting")]
    pub sampler: TaskSampler,
    #[doc = setting_doc!(batch_size)]
    pub batch_size: usize,
    #[doc = setting_doc!(max_seq_length)]
    pub max_seq_length: usize,
    #[doc = setting_doc!(encoder_lr)]
    pub encoder_lr: f64,
    #[doc = setting_doc!(head_lr)]
    pub head_lr: f64,
    #[doc = setting_doc!(layer_lr_decay)]
    pub layer_lr_decay: f64,
    #[doc = setting_doc!(weight_decay)]
    pub weight_decay: f64,
    #[doc = setting_doc!(warmup_ratio)]
    pub warmup_ratio: f64,
    #[doc = setting_doc!(max_grad_norm)]
    pub max_grad_norm: f64,
    #[doc = setting_doc!(grad_accumulation)]
    pub grad_accumulation: usize,
    #[doc = setting_doc!(step_mode)]
    pub step_mode: StepMode,
    #[doc = setting_doc!(loss_weighting)]
    #[serde(with = "as_setting")]
    pub loss_weighting: LossWeighting,
    #[doc = setting_doc!(grad_aggregation)]
    #[serde(with = "as_setting")]
    pub grad_aggregation: GradAggregation,
    #[doc = setting_doc!(dropout)]
    pub dropout: f64,
    #[doc = setting_doc!(pooling)]
    pub pooling: Pooling,
    #[doc = setting_doc!(freeze)]
    #[serde(with = "freeze_list")]
    pub freeze: Vec<ModelPart>,
    #[doc = setting_doc!(unfreeze_every)]
    pub unfreeze_every: Option<usize>,
    #[doc = setting_doc!(eval_every)]
    pub eval_every: usize,
    #[doc = setting_doc!(checkpoint_every)]
    pub checkpoint_every: usize,
    #[doc = setting_doc!(patience)]
    pub patience: Option<usize>,
    #[doc = setting_doc!(log_every)]
    pub log_every: usize,
    #[doc = setting_doc!(bucket_window)]
    pub bucket_window: usize,
    #[doc = setting_doc!(eval_batch_size)]
    pub eval_batch_size: usize,
    #[doc = setting_doc!(cache_frozen_embeddings)]
    pub cache_frozen_embeddings: bool,
    #[doc = setting_doc!(adapter)]
    #[serde(with = "as_setting")]
    pub adapter: Adapter,
    #[doc = setting_doc!(adapter_targets)]
    pub adapter_targets: LoraTargets,
    #[doc = setting_doc!(adapter_scope)]
    pub adapter_scope: AdapterScope,
}

/// The `adapter` setting: no adapters, or LoRA adapters of a rank and an alpha.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Adapter {
    /// The encoder trains (or is frozen) as the other settings say.
    #[default]
    None,
    /// `lora:RANK[:ALPHA]`.
    Lora {
        /// The rank (at least 1).
        rank: usize,
        /// Alpha (positive); the updates are scaled by `alpha / rank`.
        alpha: f64,
    },
}

impl std::str::FromStr for Adapter {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        if text == "none" {
            return Ok(Self::None);
        }
        let bad = || format!("adapter {text:?}: expected none or lora:RANK[:ALPHA]");
        let rest = text.strip_prefix("lora:").ok_or_else(bad)?;
        let (rank, alpha) = match rest.split_once(':') {
            Some((rank, alpha)) => (rank, Some(alpha)),
            None => (rest, None),
        };
        let rank: usize = rank.parse().map_err(|_| bad())?;
        if rank == 0 {
            return Err(format!("adapter {text:?}: the rank must be at least 1"));
        }
        let alpha = match alpha {
            Some(alpha) => alpha.parse::<f64>().map_err(|_| bad())?,
            None => rank as f64,
        };
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(format!("adapter {text:?}: alpha must be a positive number"));
        }
        Ok(Self::Lora { rank, alpha })
    }
}

impl Setting for Adapter {
    fn text(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Lora { rank, alpha } => format!("lora:{rank}:{alpha}"),
        }
    }
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
            epoch: EpochMode::UntilSmallestExhausted,
            sampler: TaskSampler::RoundRobin,
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
            loss_weighting: LossWeighting::Equal,
            grad_aggregation: GradAggregation::Sum,
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
            adapter: Adapter::None,
            adapter_targets: LoraTargets::Attention,
            adapter_scope: AdapterScope::PerTask,
        }
    }
}

/// A value written in a configuration as its setting's text (`"steps:100"`,
/// `"temperature:2"`), read back with its `FromStr`.
trait Setting: Sized {
    fn text(&self) -> String;
}

impl Setting for EpochMode {
    fn text(&self) -> String {
        self.setting()
    }
}

impl Setting for TaskSampler {
    fn text(&self) -> String {
        self.setting()
    }
}

impl Setting for LossWeighting {
    fn text(&self) -> String {
        self.setting()
    }
}

impl Setting for GradAggregation {
    fn text(&self) -> String {
        self.setting()
    }
}

/// Serde for a [`Setting`] as its text.
mod as_setting {
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<T: super::Setting, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.text())
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr<Err = String>,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

/// Serde for the freeze list: each part as its text (`"layers:2"`), `"none"` skipped.
mod freeze_list {
    use mtl_model::ModelPart;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(parts: &[ModelPart], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(parts.iter().map(ToString::to_string))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ModelPart>, D::Error> {
        ModelPart::parse_list(&Vec::<String>::deserialize(d)?).map_err(D::Error::custom)
    }
}

impl TrainConfig {
    /// The model's adapters as the `adapter*` settings describe them.
    pub fn adapter_config(&self) -> Option<AdapterConfig> {
        match self.adapter {
            Adapter::None => None,
            Adapter::Lora { rank, alpha } => Some(AdapterConfig {
                lora: LoraConfig {
                    rank,
                    alpha,
                    targets: self.adapter_targets,
                },
                scope: self.adapter_scope,
            }),
        }
    }

    /// Reads a TOML (or, by extension, JSON) configuration; missing keys take the defaults.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            toml::from_str(&text).map_err(|e| e.to_string())
        };
        parsed
            .map_err(Error::Config)
            .with_context(|| format!("parsing {}", path.display()))
    }

    /// The configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a TrainConfig serialises")
    }

    /// The batch plan (without the seed's epoch offset, which the loader adds).
    pub(crate) fn plan(&self) -> PlanConfig {
        PlanConfig {
            batch_size: self.batch_size,
            sampler: self.sampler,
            epoch_mode: self.epoch,
            bucket_window: self.bucket_window,
            drop_last: false,
            seed: self.seed,
        }
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
            return Err(Error::Config("no tasks to train".into()));
        }
        if self.init.is_some() && self.model != "default" {
            return Err(Error::Config(
                "give either init (a model saved by mtl train) or model, not both".into(),
            ));
        }
        for task in &self.tasks {
            if !(task.weight.is_finite() && task.weight > 0.0) {
                return Err(Error::Config(format!(
                    "task {:?}: weight {} must be positive",
                    task.name, task.weight
                )));
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
            return Err(Error::Config(format!("{name} must be at least 1")));
        }
        if self.max_seq_length < 3 {
            return Err(Error::Config("max_seq_length must be at least 3".into()));
        }
        for (name, lr) in [("encoder_lr", self.encoder_lr), ("head_lr", self.head_lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(Error::Config(format!("{name} {lr} must be positive")));
            }
        }
        if !(self.layer_lr_decay > 0.0 && self.layer_lr_decay <= 1.0) {
            return Err(Error::Config(format!(
                "layer_lr_decay {} must be in (0, 1]",
                self.layer_lr_decay
            )));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err(Error::Config(format!(
                "warmup_ratio {} must be in [0, 1)",
                self.warmup_ratio
            )));
        }
        if !(self.weight_decay >= 0.0 && self.max_grad_norm >= 0.0) {
            return Err(Error::Config(
                "weight_decay and max_grad_norm must not be negative".into(),
            ));
        }
        if self.unfreeze_every == Some(0) {
            return Err(Error::Config("unfreeze_every must be at least 1".into()));
        }
        if self.adapter != Adapter::None {
            // The encoder is frozen under adapters: nothing of it to unfreeze or to combine.
            if self.unfreeze_every.is_some() {
                return Err(Error::Config(
                    "unfreeze_every unfreezes encoder layers, which LoRA adapters keep frozen"
                        .into(),
                ));
            }
            if self.grad_aggregation != GradAggregation::Sum
                || matches!(self.loss_weighting, LossWeighting::GradNorm { .. })
            {
                return Err(Error::Config(
                    "grad_aggregation and gradnorm work on the shared encoder's gradients, \
                     which LoRA adapters keep frozen: use them without an adapter"
                        .into(),
                ));
            }
        }
        if let EpochMode::FixedSteps(steps) = self.epoch {
            let examples = steps
                .saturating_mul(self.batch_size)
                .saturating_mul(self.epochs);
            if examples > MAX_PLANNED_EXAMPLES {
                return Err(Error::Config(format!(
                    "epoch steps:{steps} x batch_size {} x {} epochs plans {examples} examples, \
                     more than the {MAX_PLANNED_EXAMPLES} a run may plan (the plan is kept in \
                     memory and in plan.jsonl); use fewer steps per epoch",
                    self.batch_size, self.epochs
                )));
            }
        }
        let plan = self.plan();
        plan.validate()?;
        if self.step_mode == StepMode::Joint && plan.sampler != TaskSampler::RoundRobin {
            return Err(Error::Config(
                "step_mode joint takes one batch of every task per step: use the round-robin \
                 sampler"
                    .into(),
            ));
        }
        if self.step_mode != StepMode::Joint {
            let methods = [
                (
                    "loss_weighting",
                    self.loss_weighting != LossWeighting::Equal,
                ),
                (
                    "grad_aggregation",
                    self.grad_aggregation != GradAggregation::Sum,
                ),
            ];
            if let Some((name, _)) = methods.iter().find(|(_, set)| *set) {
                return Err(Error::Config(format!(
                    "{name} weighs or combines the tasks of one step: it needs step_mode joint \
                     (one batch of every task per step)"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_are_read_from_toml_and_round_trip() {
        let text =
            "adapter = \"lora:8:16\"\nadapter_targets = \"all\"\nadapter_scope = \"shared\"\n";
        let config: TrainConfig = toml::from_str(text).unwrap();
        assert_eq!(
            config.adapter,
            Adapter::Lora {
                rank: 8,
                alpha: 16.0
            }
        );
        let adapter = config.adapter_config().unwrap();
        assert_eq!(adapter.lora.targets, LoraTargets::All);
        assert_eq!(adapter.scope, AdapterScope::Shared);
        assert_eq!(adapter.lora.scale(), 2.0);
        // The run's resolved config.toml reads back the same.
        let back: TrainConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(back.adapter_config(), config.adapter_config());
        // The rank defaults alpha; none and the default are no adapters.
        let rank: TrainConfig = toml::from_str("adapter = \"lora:4\"").unwrap();
        assert_eq!(
            rank.adapter,
            Adapter::Lora {
                rank: 4,
                alpha: 4.0
            }
        );
        for text in ["adapter = \"none\"", ""] {
            let none: TrainConfig = toml::from_str(text).unwrap();
            assert!(none.adapter_config().is_none(), "{text:?}");
        }
        let error = toml::from_str::<TrainConfig>("adapter = \"lora:0\"").unwrap_err();
        assert!(error.to_string().contains("at least 1"), "{error}");
    }

    #[test]
    fn a_plan_too_large_for_memory_is_refused_before_it_is_made() {
        let mut config = TrainConfig {
            epoch: EpochMode::FixedSteps(100_000_000),
            ..TrainConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("more than the 20000000"), "{err}");
        config.epoch = EpochMode::FixedSteps(1000);
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
    fn typed_settings_are_written_as_their_text() {
        let config = TrainConfig {
            epoch: EpochMode::FixedSteps(5),
            sampler: TaskSampler::Temperature { t: 2.0 },
            freeze: vec![ModelPart::BottomLayers(2), ModelPart::Head("topic".into())],
            ..TrainConfig::default()
        };
        let toml = config.to_toml();
        assert!(toml.contains("epoch = \"steps:5\""), "{toml}");
        assert!(toml.contains("loss_weighting = \"equal\""), "{toml}");
        let joint = TrainConfig {
            step_mode: StepMode::Joint,
            loss_weighting: LossWeighting::Dwa { temperature: 1.5 },
            grad_aggregation: GradAggregation::CaGrad { c: 0.4 },
            ..TrainConfig::default()
        };
        joint.validate().unwrap();
        let text = joint.to_toml();
        assert!(text.contains("loss_weighting = \"dwa:1.5\""), "{text}");
        assert!(text.contains("grad_aggregation = \"cagrad:0.4\""), "{text}");
        assert_eq!(toml::from_str::<TrainConfig>(&text).unwrap(), joint);
        assert!(toml.contains("sampler = \"temperature:2\""), "{toml}");
        assert!(toml.contains("\"layers:2\""), "{toml}");
        assert_eq!(toml::from_str::<TrainConfig>(&toml).unwrap(), config);
        let none: TrainConfig = toml::from_str("freeze = [\"none\"]").unwrap();
        assert!(none.freeze.is_empty());
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
        assert_eq!(config.plan().sampler, TaskSampler::Temperature { t: 2.0 });
    }

    #[test]
    fn bad_values_are_named() {
        let err = toml::from_str::<TrainConfig>("epocs = 2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `epocs`"), "{err}");
        let err = toml::from_str::<TrainConfig>("sampler = \"random\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown sampler"), "{err}");
        let err = toml::from_str::<TrainConfig>("freeze = [\"pooler\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown model part"), "{err}");
        let config = TrainConfig {
            step_mode: StepMode::Joint,
            sampler: TaskSampler::Proportional,
            ..TrainConfig::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("round-robin")
        );
        let config = TrainConfig {
            grad_aggregation: GradAggregation::PcGrad,
            ..TrainConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("grad_aggregation") && err.contains("step_mode joint"),
            "{err}"
        );
        let config = TrainConfig {
            loss_weighting: LossWeighting::Rlw,
            ..TrainConfig::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("loss_weighting"), "{err}");
        let err = toml::from_str::<TrainConfig>("loss_weighting = \"famo\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown loss weighting") && err.contains("dwa[:T]"),
            "{err}"
        );
        let err = toml::from_str::<TrainConfig>("grad_aggregation = \"cagrad:x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cagrad:x"), "{err}");
        assert_eq!("steps:7".parse(), Ok(EpochMode::FixedSteps(7)));
        assert!("forever".parse::<EpochMode>().is_err());
    }
}
