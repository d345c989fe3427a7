//! A model directory in the Hugging Face / sentence-transformers layout.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::pooling::Pooling;
use crate::tokenizer::BertTokenizer;

/// The files of a model directory: `config.json`, `model.safetensors` (or
/// `pytorch_model.bin`), `tokenizer.json` (or `vocab.txt` + `tokenizer_config.json`), and the
/// optional sentence-transformers files `sentence_bert_config.json`, `modules.json` and
/// `1_Pooling/config.json`.
#[derive(Debug, Clone)]
pub struct ModelDir {
    root: PathBuf,
}

/// What a sentence-transformers directory says about encoding sentences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SentenceDefaults {
    /// Truncation length: `max_seq_length` of `sentence_bert_config.json`, else the smaller of
    /// the tokenizer's `model_max_length` and the model's `max_position_embeddings`.
    pub max_seq_length: usize,
    /// The pooling of `1_Pooling/config.json`, else [`Pooling::Mean`].
    pub pooling: Pooling,
    /// Whether `modules.json` lists a `Normalize` module (false when there is none).
    pub normalize: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

/// One entry of sentence-transformers' `modules.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ModuleEntry {
    /// The module's class, e.g. `sentence_transformers.models.Pooling`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its directory, relative to the model's.
    #[serde(default)]
    pub path: String,
}

/// The pooling module's directory that `modules` lists, else `1_Pooling` (the
/// sentence-transformers default). Only a plain relative path is taken from the file (no `..`,
/// not absolute), so the result stays inside the model directory, whoever wrote the file.
pub fn pooling_module_dir(modules: &[ModuleEntry]) -> &str {
    modules
        .iter()
        .find(|m| m.kind.ends_with(".Pooling") && is_plain_relative(&m.path))
        .map_or("1_Pooling", |m| m.path.as_str())
}

/// Whether `path` is a plain relative path: not empty, no `..`, `.`, root or prefix.
pub fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

#[derive(Deserialize)]
struct TokenizerLimits {
    model_max_length: Option<f64>,
}

impl ModelDir {
    /// A model directory; fails if `root` is not a directory.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        let metadata = std::fs::metadata(&root).map_err(|e| Error::io(&root, e))?;
        if !metadata.is_dir() {
            return Err(Error::io(
                &root,
                std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        Ok(Self { root })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/name`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn existing(&self, names: &[&str]) -> Option<PathBuf> {
        names.iter().map(|n| self.file(n)).find(|p| p.is_file())
    }

    fn missing(&self, file: &str) -> Error {
        Error::MissingFile {
            dir: self.root.clone(),
            file: file.into(),
            hint: "; a model directory needs config.json, model.safetensors (or \
                   pytorch_model.bin) and tokenizer.json (or vocab.txt)"
                .into(),
        }
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, path: &Path) -> Result<T> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads and checks `config.json`.
    pub fn config(&self) -> Result<BertConfig> {
        let path = self
            .existing(&["config.json"])
            .ok_or_else(|| self.missing("config.json"))?;
        BertConfig::from_file(path)
    }

    /// The weights file: `model.safetensors`, else `pytorch_model.bin`.
    pub fn weights(&self) -> Result<PathBuf> {
        self.existing(&["model.safetensors", "pytorch_model.bin"])
            .ok_or_else(|| self.missing("model.safetensors or pytorch_model.bin"))
    }

    /// The sentence-embedding defaults (see [`SentenceDefaults`]).
    pub fn sentence_defaults(&self, config: &BertConfig) -> Result<SentenceDefaults> {
        let modules: Vec<ModuleEntry> = match self.existing(&["modules.json"]) {
            Some(path) => self.read_json(&path)?,
            None => Vec::new(),
        };
        let pooling_dir = pooling_module_dir(&modules);
        let pooling = match self.existing(&[&format!("{pooling_dir}/config.json")]) {
            Some(path) => {
                let pooling: PoolingConfig = self.read_json(&path)?;
                match (
                    pooling.pooling_mode_cls_token,
                    pooling.pooling_mode_mean_tokens,
                    pooling.pooling_mode_max_tokens,
                ) {
                    (true, false, false) => Pooling::Cls,
                    (false, false, true) => Pooling::Max,
                    (false, true, false) => Pooling::Mean,
                    _ => {
                        return Err(Error::UnsupportedConfig {
                            path,
                            field: "pooling mode",
                            value: "a combination of modes".into(),
                            supported: "exactly one of cls, mean, max",
                        });
                    }
                }
            }
            None => Pooling::Mean,
        };
        let normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
        let configured = match self.existing(&["sentence_bert_config.json"]) {
            Some(path) => self.read_json::<SentenceBertConfig>(&path)?.max_seq_length,
            None => None,
        };
        let tokenizer_limit = match self.existing(&["tokenizer_config.json"]) {
            Some(path) => self
                .read_json::<TokenizerLimits>(&path)?
                .model_max_length
                .filter(|n| (1.0..1e9).contains(n))
                .map(|n| n as usize),
            None => None,
        };
        let max_seq_length = configured
            .or(tokenizer_limit)
            .unwrap_or(usize::MAX)
            .min(config.max_position_embeddings);
        Ok(SentenceDefaults {
            max_seq_length,
            pooling,
            normalize,
        })
    }

    /// The tokenizer: `tokenizer.json`, else `vocab.txt` with `tokenizer_config.json`.
    pub fn tokenizer(&self, max_length: usize) -> Result<BertTokenizer> {
        if let Some(path) = self.existing(&["tokenizer.json"]) {
            return BertTokenizer::from_file(path, max_length);
        }
        let vocab = self
            .existing(&["vocab.txt"])
            .ok_or_else(|| self.missing("tokenizer.json or vocab.txt"))?;
        let config = self.existing(&["tokenizer_config.json"]);
        BertTokenizer::from_vocab(vocab, config.as_deref(), max_length)
    }

    /// The tokenizer files present (copied along when a fine-tuned model is saved).
    pub fn tokenizer_files(&self) -> Vec<PathBuf> {
        [
            "tokenizer.json",
            "vocab.txt",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ]
        .iter()
        .map(|n| self.file(n))
        .filter(|p| p.is_file())
        .collect()
    }
}
