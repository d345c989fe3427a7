//! One task's split read from a JSONL or CSV file: texts with label indices.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{DataFormat, Split, TaskConfig};
use crate::error::{Error, Result};

/// A labelled text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The example's id (from the id field, or `line-N`).
    pub id: String,
    /// The text, exactly as in the file.
    pub text: String,
    /// The label's index in the task's label list.
    pub label: usize,
}

/// The examples of one task's split, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskData {
    /// The task's name.
    pub name: String,
    /// The labels in order (a label's index is its position).
    pub labels: Vec<String>,
    /// The file the examples were read from.
    pub path: PathBuf,
    /// The examples, in file order.
    pub examples: Vec<Example>,
}

impl TaskData {
    /// Reads one split of a task: [`TaskConfig::split_path`].
    pub fn load(config: &TaskConfig, split: Split) -> Result<Self> {
        Self::from_file(config, &config.split_path(split))
    }

    /// Reads `path` in the config's format, with its field names and labels.
    ///
    /// Errors name the file and line: a line that is not valid UTF-8, a line that is not a JSON
    /// object (or a broken CSV record), a missing field, a label not in the config, a file
    /// with no example.
    pub fn from_file(config: &TaskConfig, path: &Path) -> Result<Self> {
        config.validate()?;
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let examples = match config.format {
            DataFormat::Jsonl => read_jsonl(config, path, &bytes)?,
            DataFormat::Csv => read_csv(config, path, &bytes)?,
        };
        if examples.is_empty() {
            return Err(Error::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Self {
            name: config.name.clone(),
            labels: config.labels.clone(),
            path: path.to_path_buf(),
            examples,
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.examples.len()
    }

    /// Whether there is no example (never true of loaded data).
    pub fn is_empty(&self) -> bool {
        self.examples.is_empty()
    }

    /// Number of examples of each label, in label order.
    pub fn label_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.labels.len()];
        for example in &self.examples {
            counts[example.label] += 1;
        }
        counts
    }
}

/// Resolves a label name to its index, or the error naming the known labels.
fn label_index(config: &TaskConfig, path: &Path, line: usize, label: &str) -> Result<usize> {
    config
        .label_index(label)
        .ok_or_else(|| Error::UnknownLabel {
            path: path.to_path_buf(),
            line,
            label: label.to_owned(),
            known: config.labels.clone(),
        })
}

fn read_jsonl(config: &TaskConfig, path: &Path, bytes: &[u8]) -> Result<Vec<Example>> {
    let mut examples = Vec::new();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = i + 1;
        let text = std::str::from_utf8(raw).map_err(|_| Error::InvalidUtf8 {
            path: path.to_path_buf(),
            line,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let malformed = |message: String| Error::Malformed {
            path: path.to_path_buf(),
            line,
            message,
        };
        let object = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => object,
            Ok(other) => return Err(malformed(format!("expected a JSON object, found {other}"))),
            Err(e) => return Err(malformed(e.to_string())),
        };
        let field = |name: &str| -> Result<String> {
            match object.get(name) {
                None | Some(Value::Null) => Err(Error::MissingField {
                    path: path.to_path_buf(),
                    line,
                    field: name.to_owned(),
                }),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Number(n)) if name != config.text_field => Ok(n.to_string()),
                Some(other) => Err(malformed(format!(
                    "field {name:?} is not a string: {other}"
                ))),
            }
        };
        let label = field(&config.label_field)?;
        examples.push(Example {
            id: match &config.id_field {
                Some(id) => field(id)?,
                None => format!("line-{line}"),
            },
            text: field(&config.text_field)?,
            label: label_index(config, path, line, &label)?,
        });
    }
    Ok(examples)
}

fn read_csv(config: &TaskConfig, path: &Path, bytes: &[u8]) -> Result<Vec<Example>> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(config.delimiter as u8)
        .has_headers(true)
        .from_reader(bytes);
    let lines = std::cell::RefCell::new(LineCounter::new(bytes));
    let csv_error = |e: csv::Error| -> Error {
        let line = e
            .position()
            .map_or(0, |p| lines.borrow_mut().line_at(p.byte() as usize));
        let message = e.to_string();
        match e.into_kind() {
            csv::ErrorKind::Io(source) => Error::io(path, source),
            _ => Error::Malformed {
                path: path.to_path_buf(),
                line,
                message,
            },
        }
    };
    let headers = reader.byte_headers().map_err(csv_error)?.clone();
    if headers.is_empty() {
        return Ok(Vec::new());
    }
    let column = |name: &str| -> Result<usize> {
        headers
            .iter()
            .position(|h| h == name.as_bytes())
            .ok_or_else(|| Error::MissingField {
                path: path.to_path_buf(),
                line: 1,
                field: name.to_owned(),
            })
    };
    let text_column = column(&config.text_field)?;
    let label_column = column(&config.label_field)?;
    let id_column = config.id_field.as_deref().map(column).transpose()?;
    let mut examples = Vec::new();
    let mut record = csv::ByteRecord::new();
    while reader.read_byte_record(&mut record).map_err(csv_error)? {
        let line = record
            .position()
            .map_or(0, |p| lines.borrow_mut().line_at(p.byte() as usize));
        let field = |column: usize| -> Result<String> {
            let bytes = record.get(column).unwrap_or_default();
            String::from_utf8(bytes.to_vec()).map_err(|_| Error::InvalidUtf8 {
                path: path.to_path_buf(),
                line,
            })
        };
        let label = field(label_column)?;
        examples.push(Example {
            id: match id_column {
                Some(c) => field(c)?,
                None => format!("line-{line}"),
            },
            text: field(text_column)?,
            label: label_index(config, path, line, &label)?,
        });
    }
    Ok(examples)
}

/// Line numbers (1-based, counted by `\n`) of byte offsets met in increasing order.
///
/// The `csv` crate's own line count lags by one after a CRLF (it stops at the `\r` and takes
/// the `\n` as the start of the next record), so lines are counted here from record offsets,
/// skipping the line terminator a record's offset may point at.
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    /// The line of the first byte at or after `offset` that is not `\r` or `\n`.
    fn line_at(&mut self, offset: usize) -> usize {
        let mut start = offset.min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start >= self.offset {
            self.line += self.bytes[self.offset..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.offset = start;
        }
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(format: DataFormat) -> TaskConfig {
        TaskConfig {
            format,
            ..TaskConfig::new("sentiment", "unused", ["negative", "positive"])
        }
    }

    fn load(config: &TaskConfig, content: &[u8]) -> (tempfile::TempDir, Result<TaskData>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join(format!("train.{}", config.format.extension()));
        std::fs::write(&path, content).unwrap();
        let data = TaskData::from_file(config, &path);
        (dir, data)
    }

    fn error(config: &TaskConfig, content: &[u8]) -> String {
        load(config, content).1.unwrap_err().to_string()
    }

    #[test]
    fn reads_jsonl() {
        let content = b"{\"id\": \"a\", \"text\": \"Good.\", \"label\": \"positive\"}\n\n\
            {\"label\": \"negative\", \"text\": \"Bad \\n\", \"id\": 7, \"extra\": 1}\r\n";
        let (_dir, data) = load(&task(DataFormat::Jsonl), content);
        let data = data.unwrap();
        assert_eq!(
            data.examples,
            [
                Example {
                    id: "a".into(),
                    text: "Good.".into(),
                    label: 1
                },
                Example {
                    id: "7".into(),
                    text: "Bad \n".into(),
                    label: 0
                },
            ]
        );
        assert_eq!(data.label_counts(), [1, 1]);
        assert_eq!(data.name, "sentiment");
    }

    #[test]
    fn reads_csv_with_configured_columns_and_multiline_fields() {
        let config = TaskConfig {
            text_field: "sentence".into(),
            label_field: "polarity".into(),
            id_field: None,
            ..task(DataFormat::Csv)
        };
        let content =
            b"polarity,sentence\npositive,\"two\nlines, \"\"quoted\"\"\"\nnegative,plain\n";
        let (_dir, data) = load(&config, content);
        let data = data.unwrap();
        assert_eq!(data.examples[0].text, "two\nlines, \"quoted\"");
        assert_eq!(data.examples[1].id, "line-4");
        assert_eq!(data.examples[1].label, 0);
    }

    #[test]
    fn jsonl_errors_name_file_and_line() {
        let config = task(DataFormat::Jsonl);
        let good = "{\"id\": \"a\", \"text\": \"t\", \"label\": \"positive\"}\n";
        let err = error(
            &config,
            format!("{good}{{\"id\": \"b\", \"text\": \n").as_bytes(),
        );
        assert!(err.contains("train.jsonl:2: malformed line"), "{err}");
        let err = error(&config, format!("{good}[1, 2]\n").as_bytes());
        assert!(
            err.contains("train.jsonl:2: malformed line: expected a JSON object"),
            "{err}"
        );
        let err = error(
            &config,
            format!("{good}{good}{{\"id\": \"c\", \"label\": \"positive\"}}").as_bytes(),
        );
        assert!(
            err.contains("train.jsonl:3: missing field \"text\""),
            "{err}"
        );
        let err = error(
            &config,
            format!("{good}{{\"id\": \"c\", \"text\": \"t\", \"label\": \"neutral\"}}").as_bytes(),
        );
        assert!(
            err.contains(
                "train.jsonl:2: unknown label \"neutral\" (known labels: negative, positive)"
            ),
            "{err}"
        );
        let invalid = [
            good.as_bytes(),
            b"{\"id\": \"c\", \"text\": \"\xff\", \"label\": \"positive\"}",
        ]
        .concat();
        let err = error(&config, &invalid);
        assert!(err.contains("train.jsonl:2: invalid UTF-8"), "{err}");
        let err = error(
            &config,
            b"{\"id\": \"c\", \"text\": 3, \"label\": \"positive\"}",
        );
        assert!(
            err.contains("train.jsonl:1: malformed line: field \"text\" is not a string"),
            "{err}"
        );
        let err = error(&config, b"\n  \n");
        assert!(err.contains("train.jsonl: empty file"), "{err}");
    }

    #[test]
    fn csv_errors_name_file_and_line() {
        let config = task(DataFormat::Csv);
        let err = error(&config, b"id,text\n1,t\n");
        assert!(
            err.contains("train.csv:1: missing field \"label\""),
            "{err}"
        );
        let err = error(&config, b"id,text,label\n1,t,positive\n2,t\n");
        assert!(err.contains("train.csv:3: malformed line"), "{err}");
        let err = error(&config, b"id,text,label\n1,t,positive\n2,\"a\nb\",good\n");
        assert!(err.contains("train.csv:3: unknown label \"good\""), "{err}");
        let err = error(&config, b"id,text,label\n1,t,positive\n\n2,\xff,positive\n");
        assert!(err.contains("train.csv:4: invalid UTF-8"), "{err}");
        let crlf = b"id,text,label\r\n1,\"a\r\nb\",positive\r\n2,t,neutral\r\n";
        let err = error(&config, crlf);
        assert!(
            err.contains("train.csv:4: unknown label \"neutral\""),
            "{err}"
        );
        let err = error(&config, b"id,text,label\n");
        assert!(err.contains("train.csv: empty file"), "{err}");
        let err = error(&config, b"");
        assert!(err.contains("train.csv: empty file"), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_io_error_naming_it() {
        let config = task(DataFormat::Jsonl);
        let err = TaskData::load(&config, Split::Valid)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unused/valid.jsonl"), "{err}");
    }
}
