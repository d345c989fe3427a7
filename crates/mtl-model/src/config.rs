//! The multi-task configuration: tasks, labels, heads, pooling and dropout (`mtl.json`).

use std::collections::HashSet;

use mtl_bert::{LoraConfig, Pooling};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The version of the saved-model format this crate writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// The classifier on top of the pooled sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HeadKind {
    /// One linear layer: `hidden -> labels` (as `BertForSequenceClassification`).
    #[default]
    Linear,
    /// One hidden layer: `hidden -> width`, tanh, dropout, `width -> labels`.
    Mlp {
        /// Width of the hidden layer.
        width: usize,
    },
}

impl std::str::FromStr for HeadKind {
    type Err = String;

    /// Parses `linear` or `mlp:WIDTH` (as `mtl train --head` takes it).
    fn from_str(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            None if text == "linear" => Ok(Self::Linear),
            Some(("mlp", width)) => width
                .parse()
                .map(|width| Self::Mlp { width })
                .map_err(|_| format!("head {text:?}: bad width")),
            _ => Err(format!(
                "unknown head {text:?} (expected linear or mlp:WIDTH)"
            )),
        }
    }
}

/// One task: its name, its labels in output order, and its head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskConfig {
    /// The task's name (`topic`, `sentiment`, ...), unique within a model.
    pub name: String,
    /// Label names; the head's output `i` is `labels[i]`.
    pub labels: Vec<String>,
    /// The head. Default: linear.
    #[serde(default)]
    pub head: HeadKind,
    /// The LoRA adapter set the task runs the encoder with (its directory under `adapters/`
    /// in a saved model: the task's name, or `shared`); `None`: the encoder alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
}

impl TaskConfig {
    /// A task with a linear head.
    pub fn new(name: impl Into<String>, labels: &[&str]) -> Self {
        Self {
            name: name.into(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            head: HeadKind::Linear,
            adapter: None,
        }
    }
}

/// Everything besides the encoder's own `config.json` that rebuilds a multi-task model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MtlConfig {
    /// The tasks, in head order.
    pub tasks: Vec<TaskConfig>,
    /// Dropout on the pooled vector before every head (and inside MLP heads), in training
    /// only. Default: 0.1.
    #[serde(default = "default_dropout")]
    pub dropout: f64,
    /// How token vectors become the vector the heads see. Default: mean, because
    /// all-MiniLM-L6-v2 was trained (by sentence-transformers) to produce mean-pooled sentence
    /// vectors, while its pooler weights were never trained.
    #[serde(default = "default_pooling")]
    pub pooling: Pooling,
    /// Truncation length in tokens (special tokens included). Default (`None`): the encoder
    /// directory's `max_seq_length` (256 for all-MiniLM-L6-v2), else its position limit. A
    /// model built by [`crate::MultiTaskClassifier`] always has it set.
    #[serde(default)]
    pub max_seq_length: Option<usize>,
    /// LoRA adapters on the frozen encoder (`mtl train --adapter`): their shape, and whether
    /// each task has its own set or all share one. `None`: no adapters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<AdapterConfig>,
}

/// LoRA adapters of a multi-task model (see [`mtl_bert::LoraAdapter`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Rank, alpha and targets of every adapter set.
    #[serde(flatten)]
    pub lora: LoraConfig,
    /// One adapter set per task (the default), or one that every task shares.
    #[serde(default)]
    pub scope: AdapterScope,
}

/// Whether the tasks have an adapter set each or share one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterScope {
    /// One adapter set per task (`adapters/<task>/`): tasks do not interfere, and adding one
    /// leaves the others' outputs unchanged; each task runs the encoder once per text.
    #[default]
    PerTask,
    /// One adapter set for every task (`adapters/shared/`): the encoder runs once per text.
    Shared,
}

impl AdapterScope {
    /// The adapter set's name for `task` (its directory under `adapters/`).
    pub fn set_name(self, task: &str) -> String {
        match self {
            Self::PerTask => task.to_owned(),
            Self::Shared => SHARED_ADAPTER.to_owned(),
        }
    }
}

impl std::fmt::Display for AdapterScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PerTask => "per-task",
            Self::Shared => "shared",
        })
    }
}

impl std::str::FromStr for AdapterScope {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "per-task" => Ok(Self::PerTask),
            "shared" => Ok(Self::Shared),
            _ => Err(format!(
                "unknown adapter scope {text:?} (expected per-task or shared)"
            )),
        }
    }
}

/// The name of the adapter set that every task shares.
pub const SHARED_ADAPTER: &str = "shared";

fn default_dropout() -> f64 {
    0.1
}

fn default_pooling() -> Pooling {
    Pooling::Mean
}

impl MtlConfig {
    /// A configuration of `tasks` with the default dropout, pooling and length.
    pub fn new(tasks: Vec<TaskConfig>) -> Self {
        Self {
            tasks,
            dropout: default_dropout(),
            pooling: default_pooling(),
            max_seq_length: None,
            adapter: None,
        }
    }

    /// Gives every task without an adapter set the one [`Self::adapter`]'s scope names
    /// (nothing without adapters).
    pub fn assign_adapters(&mut self) {
        if let Some(adapter) = self.adapter {
            for task in &mut self.tasks {
                if task.adapter.is_none() {
                    task.adapter = Some(adapter.scope.set_name(&task.name));
                }
            }
        }
    }

    /// The adapter set names the tasks use, each once, in task order.
    pub fn adapter_sets(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for name in self.tasks.iter().filter_map(|t| t.adapter.as_ref()) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// Checks: at least one task, unique non-empty names, at least two distinct labels per
    /// task, a positive MLP width, dropout in [0, 1).
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::InvalidConfig(m));
        if self.tasks.is_empty() {
            return invalid("no tasks".into());
        }
        let mut names = HashSet::new();
        for task in &self.tasks {
            if task.name.is_empty() || task.name.contains(['.', '/']) {
                return invalid(format!(
                    "task name {:?} must be non-empty without '.' or '/'",
                    task.name
                ));
            }
            if !names.insert(&task.name) {
                return invalid(format!("task {:?} appears twice", task.name));
            }
            if task.labels.len() < 2 {
                return invalid(format!("task {:?} needs at least two labels", task.name));
            }
            let distinct: HashSet<_> = task.labels.iter().collect();
            if distinct.len() != task.labels.len() {
                return invalid(format!("task {:?} repeats a label", task.name));
            }
            if task.head == (HeadKind::Mlp { width: 0 }) {
                return invalid(format!("task {:?}: MLP width must be positive", task.name));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return invalid(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        if let Some(n) = self.max_seq_length
            && n < 3
        {
            return invalid(format!("max_seq_length {n} is below 3"));
        }
        match self.adapter {
            Some(adapter) => {
                if adapter.lora.rank == 0 {
                    return invalid("the LoRA rank must be at least 1".into());
                }
                if !(adapter.lora.alpha.is_finite() && adapter.lora.alpha > 0.0) {
                    return invalid(format!(
                        "the LoRA alpha {} is not a positive number",
                        adapter.lora.alpha
                    ));
                }
            }
            None => {
                if let Some(task) = self.tasks.iter().find(|t| t.adapter.is_some()) {
                    return invalid(format!(
                        "task {:?} names an adapter set but the model has no adapters",
                        task.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The index of the task called `name`.
    pub fn task_index(&self, name: &str) -> Result<usize> {
        self.tasks
            .iter()
            .position(|t| t.name == name)
            .ok_or_else(|| Error::UnknownTask {
                name: name.to_owned(),
                known: self.task_names(),
            })
    }

    /// The task names, in head order.
    pub fn task_names(&self) -> Vec<String> {
        self.tasks.iter().map(|t| t.name.clone()).collect()
    }
}

/// `mtl.json`: the configuration plus the versions that wrote it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedConfig {
    pub format_version: u32,
    pub crate_version: String,
    #[serde(flatten)]
    pub config: MtlConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_from_their_command_line_names() {
        assert_eq!("linear".parse::<HeadKind>(), Ok(HeadKind::Linear));
        assert_eq!(
            "mlp:64".parse::<HeadKind>(),
            Ok(HeadKind::Mlp { width: 64 })
        );
        assert!(
            "mlp:x"
                .parse::<HeadKind>()
                .unwrap_err()
                .contains("bad width")
        );
        assert!(
            "mlp"
                .parse::<HeadKind>()
                .unwrap_err()
                .contains("unknown head")
        );
    }

    fn config() -> MtlConfig {
        MtlConfig::new(vec![
            TaskConfig::new("topic", &["business", "sport"]),
            TaskConfig::new("sentiment", &["negative", "neutral", "positive"]),
        ])
    }

    #[test]
    fn valid_config_passes_and_tasks_resolve() {
        let config = config();
        config.validate().unwrap();
        assert_eq!(config.task_index("sentiment").unwrap(), 1);
        let err = config.task_index("spam").unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown task \"spam\" (this model's tasks: topic, sentiment)"
        );
    }

    #[test]
    fn invalid_configs_are_explained() {
        let mut dup = config();
        dup.tasks[1].name = "topic".into();
        assert!(
            dup.validate()
                .unwrap_err()
                .to_string()
                .contains("appears twice")
        );
        let mut one_label = config();
        one_label.tasks[0].labels.truncate(1);
        assert!(
            one_label
                .validate()
                .unwrap_err()
                .to_string()
                .contains("at least two labels")
        );
        assert!(
            MtlConfig::new(vec![])
                .validate()
                .unwrap_err()
                .to_string()
                .contains("no tasks")
        );
        let mut dropout = config();
        dropout.dropout = 1.0;
        assert!(
            dropout
                .validate()
                .unwrap_err()
                .to_string()
                .contains("dropout")
        );
    }

    #[test]
    fn json_round_trip_with_defaults() {
        let json = r#"{"tasks": [{"name": "t", "labels": ["a", "b"], "head": {"kind": "mlp", "width": 8}}]}"#;
        let parsed: MtlConfig = serde_json::from_str(json).unwrap();
        assert_eq!(parsed.dropout, 0.1);
        assert_eq!(parsed.pooling, Pooling::Mean);
        assert_eq!(parsed.tasks[0].head, HeadKind::Mlp { width: 8 });
        let again: MtlConfig =
            serde_json::from_str(&serde_json::to_string(&parsed).unwrap()).unwrap();
        assert_eq!(again, parsed);
    }
}
