//! Where a task's data lives and how to read it.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The file format of a task's data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataFormat {
    /// JSON Lines: one JSON object per line; blank lines are skipped. The default.
    #[default]
    Jsonl,
    /// CSV with a header row naming the columns; quoted fields may span lines.
    Csv,
}

impl DataFormat {
    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
        }
    }
}

/// One of a task's three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training data.
    Train,
    /// Validation data (model selection, early stopping).
    Valid,
    /// Held-out test data.
    Test,
}

impl Split {
    /// All three, in order.
    pub const ALL: [Split; 3] = [Split::Train, Split::Valid, Split::Test];

    /// `train`, `valid` or `test`: the file stem of the split.
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Valid => "valid",
            Self::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to read one task's data: `dir/{train,valid,test}.{jsonl,csv}`, with its label set.
///
/// ```
/// # use mtl_data::TaskConfig;
/// let config = TaskConfig::new("topic", "datasets/bbc", ["business", "entertainment", "politics", "sport", "tech"]);
/// assert_eq!(config.split_path(mtl_data::Split::Valid), std::path::Path::new("datasets/bbc/valid.jsonl"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskConfig {
    /// The task's name, used in logs and errors.
    pub name: String,
    /// The directory that holds the split files.
    pub dir: PathBuf,
    /// The labels in order: a label's index (the class the model predicts) is its position.
    pub labels: Vec<String>,
    /// The file format. Default: JSON Lines.
    #[serde(default)]
    pub format: DataFormat,
    /// The field (JSONL) or column (CSV) holding the text. Default `text`.
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// The field or column holding the label's name. Default `label`. In JSONL a number is
    /// read as its decimal text, so labels `"0"`, `"1"` match `0`, `1`.
    #[serde(default = "default_label_field")]
    pub label_field: String,
    /// The field or column holding the example's id. Default `id`; `None` names examples
    /// `line-N` after the line they start on.
    #[serde(default = "default_id_field")]
    pub id_field: Option<String>,
    /// The CSV delimiter, an ASCII character. Default `,`.
    #[serde(default = "default_delimiter")]
    pub delimiter: char,
}

fn default_text_field() -> String {
    "text".into()
}

fn default_label_field() -> String {
    "label".into()
}

fn default_id_field() -> Option<String> {
    Some("id".into())
}

fn default_delimiter() -> char {
    ','
}

impl TaskConfig {
    /// A JSONL task with the default field names (`id`, `text`, `label`).
    pub fn new(
        name: impl Into<String>,
        dir: impl Into<PathBuf>,
        labels: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            dir: dir.into(),
            labels: labels.into_iter().map(Into::into).collect(),
            format: DataFormat::Jsonl,
            text_field: default_text_field(),
            label_field: default_label_field(),
            id_field: default_id_field(),
            delimiter: default_delimiter(),
        }
    }

    /// The file of one split: `dir/<split>.<extension>`.
    pub fn split_path(&self, split: Split) -> PathBuf {
        self.dir
            .join(format!("{}.{}", split.name(), self.format.extension()))
    }

    /// The index of the label named `name`.
    pub fn label_index(&self, name: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == name)
    }

    /// Checks that there are labels, all distinct, that field names are set and that the
    /// delimiter is ASCII.
    pub fn validate(&self) -> Result<()> {
        let fail = |message: String| {
            Err(Error::Config {
                task: self.name.clone(),
                message,
            })
        };
        if self.labels.is_empty() {
            return fail("no labels".into());
        }
        for (i, label) in self.labels.iter().enumerate() {
            if self.labels[..i].contains(label) {
                return fail(format!("label {label:?} is listed twice"));
            }
        }
        let fields = [
            Some(&self.text_field),
            Some(&self.label_field),
            self.id_field.as_ref(),
        ];
        if fields.into_iter().flatten().any(String::is_empty) {
            return fail("a field name is empty".into());
        }
        if !self.delimiter.is_ascii() {
            return fail(format!(
                "the CSV delimiter {:?} is not ASCII",
                self.delimiter
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn defaults_fill_missing_keys() {
        let config: TaskConfig =
            serde_json::from_str(r#"{"name": "t", "dir": "d", "labels": ["a", "b"]}"#).unwrap();
        assert_eq!(config, TaskConfig::new("t", "d", ["a", "b"]));
        assert_eq!(config.split_path(Split::Train), Path::new("d/train.jsonl"));
        assert_eq!(config.label_index("b"), Some(1));
        config.validate().unwrap();
    }

    #[test]
    fn invalid_configs_say_why() {
        let twice = TaskConfig::new("t", "d", ["a", "a"]).validate();
        assert!(
            twice
                .unwrap_err()
                .to_string()
                .contains("task t: label \"a\" is listed twice")
        );
        let none = TaskConfig::new("t", "d", Vec::<String>::new()).validate();
        assert!(none.unwrap_err().to_string().contains("no labels"));
    }
}
