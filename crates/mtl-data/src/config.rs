//! Where a task's data lives and how to read it.

use std::fmt;
use std::path::{Path, PathBuf};

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
    /// CSV with tabs between fields (same quoting rules).
    Tsv,
}

impl DataFormat {
    /// Every format, in the order a directory is searched.
    pub const ALL: [DataFormat; 3] = [DataFormat::Jsonl, DataFormat::Csv, DataFormat::Tsv];

    /// The file extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Tsv => "tsv",
        }
    }

    /// The format a file's extension names (`.jsonl`, `.csv`, `.tsv`, case-insensitive).
    pub fn of_path(path: &Path) -> Option<Self> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        Self::ALL.into_iter().find(|f| f.extension() == extension)
    }

    /// The field delimiter of CSV-like formats: `,` or a tab.
    pub fn default_delimiter(self) -> char {
        match self {
            Self::Tsv => '\t',
            Self::Jsonl | Self::Csv => ',',
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

/// Where one task's examples come from and how to read them, with its label set. (A task
/// has three descriptions, one per layer: `mtl_train::TaskSpec` is what a user asks to train,
/// resolved into this `TaskSource` for reading the data, and `mtl_model::TaskConfig` is what a
/// saved model keeps: name, labels, head.)
///
/// `path` is a directory holding `train`, and optionally `valid` and `test`, files in JSON
/// Lines, CSV or TSV (`train.jsonl`, `valid.csv`, ...: the format is the extension's), or a
/// single file that is the training split.
///
/// ```no_run
/// # use mtl_data::{Split, TaskSource};
/// let config = TaskSource::new("topic", "datasets/bbc", ["business", "entertainment", "politics", "sport", "tech"]);
/// assert_eq!(
///     config.split_path(Split::Valid)?.as_deref(),
///     Some(std::path::Path::new("datasets/bbc/valid.jsonl"))
/// );
/// # Ok::<(), mtl_data::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSource {
    /// The task's name, used in logs and errors.
    pub name: String,
    /// The directory that holds the split files, or the training file alone.
    #[serde(alias = "dir")]
    pub path: PathBuf,
    /// The labels in order: a label's index (the class the model predicts) is its position.
    pub labels: Vec<String>,
    /// The file format of every split. Default: each file's extension's.
    #[serde(default)]
    pub format: Option<DataFormat>,
    /// The field (JSONL) or column (CSV, TSV) holding the text. Default `text`.
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// The field or column holding the second text of sentence-pair tasks (paraphrase,
    /// entailment): the pair is encoded as BERT encodes pairs, `[CLS] text [SEP] pair [SEP]`
    /// with segment ids 0 then 1. Default: none (single texts).
    #[serde(default)]
    pub text_pair_field: Option<String>,
    /// The field or column holding the label's name. Default `label`. In JSONL a number is
    /// read as its decimal text, so labels `"0"`, `"1"` match `0`, `1`.
    #[serde(default = "default_label_field")]
    pub label_field: String,
    /// The field or column holding the example's id. Default: none, examples are named
    /// `line-N` after the line they start on.
    #[serde(default)]
    pub id_field: Option<String>,
    /// The CSV/TSV field delimiter, an ASCII character. Default: `,` for CSV, a tab for TSV.
    #[serde(default)]
    pub delimiter: Option<char>,
}

fn default_text_field() -> String {
    "text".into()
}

fn default_label_field() -> String {
    "label".into()
}

impl TaskSource {
    /// A task on `path` (a directory of splits or a training file) with the default fields
    /// (`text`, `label`, ids from line numbers).
    pub fn new(
        name: impl Into<String>,
        path: impl Into<PathBuf>,
        labels: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        Self {
            name: name.into(),
            path: path.into(),
            labels: labels.into_iter().map(Into::into).collect(),
            format: None,
            text_field: default_text_field(),
            text_pair_field: None,
            label_field: default_label_field(),
            id_field: None,
            delimiter: None,
        }
    }

    /// The file of one split, `None` when the task has none (the training split always has
    /// one). In a directory, `<split>.jsonl`, `.csv` or `.tsv` (or only the configured
    /// format's); a single file is the training split.
    ///
    /// # Errors
    /// No training file, or two files for one split (`train.csv` and `train.jsonl`).
    pub fn split_path(&self, split: Split) -> Result<Option<PathBuf>> {
        if !self.path.is_dir() {
            return match split {
                Split::Train if self.path.is_file() => Ok(Some(self.path.clone())),
                Split::Train => Err(Error::io(
                    &self.path,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such file or directory (a task's data is a directory of train, \
                         valid and test files, or a training file)",
                    ),
                )),
                Split::Valid | Split::Test => Ok(None),
            };
        }
        let formats: Vec<DataFormat> = match self.format {
            Some(format) => vec![format],
            None => DataFormat::ALL.to_vec(),
        };
        let found: Vec<PathBuf> = formats
            .iter()
            .map(|f| self.path.join(format!("{split}.{}", f.extension())))
            .filter(|p| p.is_file())
            .collect();
        match (found.as_slice(), split) {
            ([], Split::Train) => {
                let names: Vec<String> = formats
                    .iter()
                    .map(|f| format!("train.{}", f.extension()))
                    .collect();
                self.fail(format!(
                    "{} has no training file ({})",
                    self.path.display(),
                    names.join(", ")
                ))
            }
            ([], _) => Ok(None),
            ([one], _) => Ok(Some(one.clone())),
            (several, _) => {
                let names: Vec<String> = several.iter().map(|p| p.display().to_string()).collect();
                self.fail(format!(
                    "several {split} files: {}; keep one",
                    names.join(" and ")
                ))
            }
        }
    }

    /// The format `path` is read in: the configured one, else its extension's.
    pub fn format_of(&self, path: &Path) -> Result<DataFormat> {
        match self.format.or_else(|| DataFormat::of_path(path)) {
            Some(format) => Ok(format),
            None => self.fail(format!(
                "{}: unknown format: name the file .jsonl, .csv or .tsv, or set the task's format",
                path.display()
            )),
        }
    }

    /// The delimiter of CSV-like `format`: the configured one, else the format's.
    pub fn delimiter_of(&self, format: DataFormat) -> char {
        self.delimiter.unwrap_or_else(|| format.default_delimiter())
    }

    fn fail<T>(&self, message: String) -> Result<T> {
        Err(Error::Config {
            task: self.name.clone(),
            message,
        })
    }

    /// The index of the label named `name`.
    pub fn label_index(&self, name: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == name)
    }

    /// Checks that there are labels, all distinct, none empty or with surrounding
    /// whitespace; that field names are set and distinct; and that the delimiter is ASCII.
    pub fn validate(&self) -> Result<()> {
        if self.labels.is_empty() {
            return self.fail("no labels".into());
        }
        for (i, label) in self.labels.iter().enumerate() {
            if self.labels[..i].contains(label) {
                return self.fail(format!("label {label:?} is listed twice"));
            }
            if let Some(problem) = label_problem(label) {
                return self.fail(format!("label {label:?} {problem}"));
            }
        }
        let fields: Vec<&String> = [
            Some(&self.text_field),
            self.text_pair_field.as_ref(),
            Some(&self.label_field),
            self.id_field.as_ref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        if fields.iter().any(|f| f.is_empty()) {
            return self.fail("a field name is empty".into());
        }
        for (i, field) in fields.iter().enumerate() {
            if fields[..i].contains(field) {
                return self.fail(format!("field {field:?} is named for two roles"));
            }
        }
        if let Some(delimiter) = self.delimiter
            && !(delimiter.is_ascii() && delimiter != '"' && delimiter != '\n')
        {
            return self.fail(format!(
                "the delimiter {delimiter:?} must be one ASCII character other than a quote or \
                 a newline"
            ));
        }
        Ok(())
    }
}

/// Why a label cannot be one: empty, or with whitespace around it (a likely typo that would
/// silently make a class of its own); `None` for a good label.
pub(crate) fn label_problem(label: &str) -> Option<&'static str> {
    if label.is_empty() {
        Some("is empty")
    } else if label.trim() != label {
        Some("has whitespace around it")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_keys() {
        let config: TaskSource =
            serde_json::from_str(r#"{"name": "t", "dir": "d", "labels": ["a", "b"]}"#).unwrap();
        assert_eq!(config, TaskSource::new("t", "d", ["a", "b"]));
        assert_eq!(config.label_index("b"), Some(1));
        config.validate().unwrap();
    }

    #[test]
    fn invalid_configs_say_why() {
        let twice = TaskSource::new("t", "d", ["a", "a"]).validate();
        assert!(
            twice
                .unwrap_err()
                .to_string()
                .contains("task t: label \"a\" is listed twice")
        );
        let none = TaskSource::new("t", "d", Vec::<String>::new()).validate();
        assert!(none.unwrap_err().to_string().contains("no labels"));
        let spaced = TaskSource::new("t", "d", ["a", "pos "]).validate();
        assert!(
            spaced
                .unwrap_err()
                .to_string()
                .contains("label \"pos \" has whitespace around it")
        );
        let empty = TaskSource::new("t", "d", ["a", ""]).validate();
        assert!(empty.unwrap_err().to_string().contains("is empty"));
        let same = TaskSource {
            text_pair_field: Some("text".into()),
            ..TaskSource::new("t", "d", ["a"])
        };
        assert!(
            same.validate()
                .unwrap_err()
                .to_string()
                .contains("two roles")
        );
    }

    #[test]
    fn splits_are_found_by_name_and_extension() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.csv"), "text,label\n").unwrap();
        std::fs::write(dir.path().join("test.tsv"), "text\tlabel\n").unwrap();
        let config = TaskSource::new("t", dir.path(), ["a"]);
        let train = config.split_path(Split::Train).unwrap().unwrap();
        assert_eq!(train, dir.path().join("train.csv"));
        assert_eq!(config.format_of(&train).unwrap(), DataFormat::Csv);
        assert_eq!(config.split_path(Split::Valid).unwrap(), None);
        let test = config.split_path(Split::Test).unwrap().unwrap();
        assert_eq!(config.delimiter_of(config.format_of(&test).unwrap()), '\t');
        std::fs::write(dir.path().join("train.jsonl"), "").unwrap();
        let err = config.split_path(Split::Train).unwrap_err().to_string();
        assert!(err.contains("several train files"), "{err}");
        let file = TaskSource::new("t", dir.path().join("test.tsv"), ["a"]);
        assert_eq!(
            file.split_path(Split::Train).unwrap().unwrap(),
            dir.path().join("test.tsv")
        );
        assert_eq!(file.split_path(Split::Test).unwrap(), None);
        let empty = tempfile::tempdir().unwrap();
        let err = TaskSource::new("t", empty.path(), ["a"])
            .split_path(Split::Train)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("has no training file (train.jsonl, train.csv, train.tsv)"),
            "{err}"
        );
    }
}
