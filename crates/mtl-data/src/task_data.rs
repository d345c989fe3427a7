//! One task's split read from a JSONL, CSV or TSV file: texts (or text pairs) with label
//! indices.

use std::path::{Path, PathBuf};

use mtl_assets::LineCounter;
use serde_json::Value;

use crate::config::{DataFormat, Split, TaskSource, label_problem};
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// A labelled text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The example's id (from the id field, or `line-N`).
    pub id: String,
    /// The text, exactly as in the file.
    pub text: String,
    /// The second text of a sentence-pair task.
    pub text_pair: Option<String>,
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
    /// Reads one split of a task ([`TaskSource::split_path`]); `None` when the task has no
    /// file for it.
    pub fn load(config: &TaskSource, split: Split) -> Result<Option<Self>> {
        config
            .split_path(split)?
            .map(|path| Self::from_file(config, &path))
            .transpose()
    }

    /// Reads `path` in its format ([`TaskSource::format_of`]), with the config's fields and
    /// labels.
    ///
    /// Errors name the file and line: a line that is not valid UTF-8, a line that is not a JSON
    /// object (or a broken CSV record, or an unterminated quote), a missing field, an empty
    /// label or one with whitespace around it, a label not in the config, a file with no
    /// example.
    pub fn from_file(config: &TaskSource, path: &Path) -> Result<Self> {
        config.validate()?;
        let examples = read_records(config, path)?
            .into_iter()
            .map(|record| {
                let label =
                    config
                        .label_index(&record.label)
                        .ok_or_else(|| Error::UnknownLabel {
                            path: path.to_path_buf(),
                            line: record.line,
                            label: record.label.clone(),
                            known: config.labels.clone(),
                        })?;
                Ok(Example {
                    id: record.id,
                    text: record.text,
                    text_pair: record.text_pair,
                    label,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            name: config.name.clone(),
            labels: config.labels.clone(),
            path: path.to_path_buf(),
            examples,
        })
    }

    /// The distinct labels of the file at `path`, sorted (as strings), each with its count:
    /// the label set of a task whose labels are not given. The config's own labels are not
    /// used; its fields and format are.
    pub fn labels_in(config: &TaskSource, path: &Path) -> Result<Vec<(String, usize)>> {
        let mut counts = std::collections::BTreeMap::new();
        for record in read_records(config, path)? {
            *counts.entry(record.label).or_insert(0) += 1;
        }
        Ok(counts.into_iter().collect())
    }

    /// Moves a seeded, stratified `share` of the examples (at least one, and at least one of
    /// each label that has two or more) into a new split, e.g. a validation split held out of
    /// the training data; both keep file order. The same data and seed always hold out the
    /// same examples.
    ///
    /// # Errors
    /// Fewer than two examples, or `share` outside (0, 1).
    pub fn hold_out(&mut self, share: f64, seed: u64) -> Result<TaskData> {
        if !(share > 0.0 && share < 1.0) || self.examples.len() < 2 {
            return Err(Error::Config {
                task: self.name.clone(),
                message: format!(
                    "{}: cannot hold out {share} of {} example(s) for validation; give a \
                     validation file",
                    self.path.display(),
                    self.examples.len()
                ),
            });
        }
        let mut held = vec![false; self.examples.len()];
        let mut rng = SplitMix64::new(seed);
        for label in 0..self.labels.len() {
            let mut members: Vec<usize> = (0..self.examples.len())
                .filter(|&i| self.examples[i].label == label)
                .collect();
            if members.len() < 2 {
                continue;
            }
            rng.shuffle(&mut members);
            let take =
                ((members.len() as f64 * share).round() as usize).clamp(1, members.len() - 1);
            members[..take].iter().for_each(|&i| held[i] = true);
        }
        if !held.contains(&true) {
            held[rng.below(self.examples.len() as u64) as usize] = true;
        }
        let (kept, out): (Vec<_>, Vec<_>) = std::mem::take(&mut self.examples)
            .into_iter()
            .zip(held)
            .partition(|(_, held)| !held);
        self.examples = kept.into_iter().map(|(e, _)| e).collect();
        Ok(TaskData {
            name: self.name.clone(),
            labels: self.labels.clone(),
            path: self.path.clone(),
            examples: out.into_iter().map(|(e, _)| e).collect(),
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

/// An example as read, its label still a string.
struct Record {
    line: usize,
    id: String,
    text: String,
    text_pair: Option<String>,
    label: String,
}

/// Reads every record of `path` in its format; checks each label's shape and that there is
/// at least one record.
fn read_records(config: &TaskSource, path: &Path) -> Result<Vec<Record>> {
    let format = config.format_of(path)?;
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let records = match format {
        DataFormat::Jsonl => read_jsonl(config, path, &bytes)?,
        DataFormat::Csv | DataFormat::Tsv => {
            read_csv(config, path, &bytes, config.delimiter_of(format))?
        }
    };
    if records.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
        });
    }
    for record in &records {
        if let Some(problem) = label_problem(&record.label) {
            return Err(Error::Malformed {
                path: path.to_path_buf(),
                line: record.line,
                message: format!("the label {:?} {problem}", record.label),
            });
        }
    }
    Ok(records)
}

fn read_jsonl(config: &TaskSource, path: &Path, bytes: &[u8]) -> Result<Vec<Record>> {
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
        examples.push(Record {
            line,
            id: match &config.id_field {
                Some(id) => field(id)?,
                None => format!("line-{line}"),
            },
            text: field(&config.text_field)?,
            text_pair: config.text_pair_field.as_deref().map(field).transpose()?,
            label: field(&config.label_field)?,
        });
    }
    Ok(examples)
}

fn read_csv(
    config: &TaskSource,
    path: &Path,
    bytes: &[u8],
    delimiter: char,
) -> Result<Vec<Record>> {
    check_quotes_closed(path, bytes, delimiter as u8)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter as u8)
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
    let pair_column = config.text_pair_field.as_deref().map(column).transpose()?;
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
        examples.push(Record {
            line,
            id: match id_column {
                Some(c) => field(c)?,
                None => format!("line-{line}"),
            },
            text: field(text_column)?,
            text_pair: pair_column.map(field).transpose()?,
            label: field(label_column)?,
        });
    }
    Ok(examples)
}

/// Fails, naming the line the quote opens on, when a quoted field is still open at the end of
/// the file: the `csv` crate would take the rest of the file as that one field, silently.
///
/// Walks fields as RFC 4180 reads them: a field that starts with `"` is quoted until a `"`
/// not followed by another `"`; a quote elsewhere in a field is an ordinary character.
fn check_quotes_closed(path: &Path, bytes: &[u8], delimiter: u8) -> Result<()> {
    let (mut line, mut field_start, mut quoted_since) = (1, true, None);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quoted_since {
            Some(_) if b == b'"' && bytes.get(i + 1) == Some(&b'"') => i += 1,
            Some(_) if b == b'"' => quoted_since = None,
            None if b == b'"' && field_start => quoted_since = Some(line),
            _ => {}
        }
        if b == b'\n' {
            line += 1;
        }
        field_start = quoted_since.is_none() && (b == delimiter || b == b'\n' || b == b'\r');
        i += 1;
    }
    match quoted_since {
        Some(opened) => Err(Error::Malformed {
            path: path.to_path_buf(),
            line: opened,
            message: "a quoted field is never closed (a \" without its closing \")".into(),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(format: DataFormat) -> TaskSource {
        TaskSource {
            format: Some(format),
            id_field: Some("id".into()),
            ..TaskSource::new("sentiment", "unused", ["negative", "positive"])
        }
    }

    fn load(config: &TaskSource, content: &[u8]) -> (tempfile::TempDir, Result<TaskData>) {
        let dir = tempfile::tempdir().unwrap();
        let extension = config.format.unwrap_or_default().extension();
        let path = dir.path().join(format!("train.{extension}"));
        std::fs::write(&path, content).unwrap();
        let data = TaskData::from_file(config, &path);
        (dir, data)
    }

    fn error(config: &TaskSource, content: &[u8]) -> String {
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
                    text_pair: None,
                    label: 1
                },
                Example {
                    id: "7".into(),
                    text: "Bad \n".into(),
                    text_pair: None,
                    label: 0
                },
            ]
        );
        assert_eq!(data.label_counts(), [1, 1]);
        assert_eq!(data.name, "sentiment");
    }

    #[test]
    fn reads_csv_with_configured_columns_and_multiline_fields() {
        let config = TaskSource {
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
    fn a_missing_training_file_is_an_error_naming_it() {
        let config = task(DataFormat::Jsonl);
        let err = TaskData::load(&config, Split::Train)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unused: no such file or directory"), "{err}");
        assert_eq!(TaskData::load(&config, Split::Valid).unwrap(), None);
    }

    #[test]
    fn reads_tsv_pairs_and_counts_labels() {
        let config = TaskSource {
            text_field: "premise".into(),
            text_pair_field: Some("hypothesis".into()),
            id_field: None,
            ..task(DataFormat::Tsv)
        };
        let content = b"label\tpremise\thypothesis\npositive\tA cat.\tAn animal.\nnegative\t\"x, \"\"y\"\"\"\tz\npositive\ta\tb\n";
        let (dir, data) = load(&config, content);
        let data = data.unwrap();
        assert_eq!(data.examples[0].text_pair.as_deref(), Some("An animal."));
        assert_eq!(data.examples[1].text, "x, \"y\"");
        assert_eq!(data.examples[1].id, "line-3");
        let counts = TaskData::labels_in(&config, &dir.path().join("train.tsv")).unwrap();
        assert_eq!(counts, [("negative".into(), 1), ("positive".into(), 2)]);
    }

    #[test]
    fn bad_labels_and_open_quotes_name_file_and_line() {
        let config = task(DataFormat::Csv);
        let err = error(&config, b"id,text,label\n1,t,positive\n2,t,positive \n");
        assert!(
            err.contains(
                "train.csv:3: malformed line: the label \"positive \" has whitespace around it"
            ),
            "{err}"
        );
        let err = error(&config, b"id,text,label\n1,t,\n");
        assert!(
            err.contains("train.csv:2: malformed line: the label \"\" is empty"),
            "{err}"
        );
        let err = error(
            &config,
            b"id,text,label\n1,t,positive\n2,\"open,negative\n3,t,positive\n",
        );
        assert!(
            err.contains("train.csv:3: malformed line: a quoted field is never closed"),
            "{err}"
        );
        // Quotes inside an unquoted field, and escaped quotes, are fine.
        let (_dir, data) = load(
            &config,
            b"id,text,label\n1,5\" screen,positive\n2,\"a \"\"b\"\"\",negative\n",
        );
        assert_eq!(data.unwrap().examples[1].text, "a \"b\"");
        let jsonl = task(DataFormat::Jsonl);
        let err = error(
            &jsonl,
            b"{\"id\": 1, \"text\": \"t\", \"label\": \" negative\"}\n",
        );
        assert!(
            err.contains("train.jsonl:1: malformed line: the label"),
            "{err}"
        );
    }

    #[test]
    fn held_out_examples_are_stratified_seeded_and_in_file_order() {
        let labels = ["a", "b", "c"];
        let examples: Vec<Example> = (0..40)
            .map(|i| Example {
                id: format!("{i}"),
                text: format!("text {i}"),
                text_pair: None,
                label: if i < 30 {
                    0
                } else if i < 39 {
                    1
                } else {
                    2
                },
            })
            .collect();
        let data = TaskData {
            name: "t".into(),
            labels: labels.map(String::from).to_vec(),
            path: "train.csv".into(),
            examples,
        };
        let mut train = data.clone();
        let valid = train.hold_out(0.1, 7).unwrap();
        assert_eq!(valid.label_counts(), [3, 1, 0]);
        assert_eq!(train.label_counts(), [27, 8, 1]);
        assert!(
            valid
                .examples
                .windows(2)
                .all(|w| w[0].id.parse::<u32>().unwrap() < w[1].id.parse().unwrap())
        );
        let mut again = data.clone();
        assert_eq!(again.hold_out(0.1, 7).unwrap(), valid);
        let mut other = data.clone();
        assert_ne!(other.hold_out(0.1, 8).unwrap(), valid);
        let mut one = TaskData {
            examples: data.examples[..1].to_vec(),
            ..data
        };
        assert!(one.hold_out(0.1, 7).is_err());
    }
}
