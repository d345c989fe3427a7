//! A multi-task model with its tokenizer and configuration: build, load, predict, save.

use std::path::Path;

use burn::nn::DropoutConfig;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use mtl_bert::{BertConfig, BertModel, BertTokenizer, LoraAdapter, ModelDir, Pooling, Precision};
use mtl_bert::{Checkpoint, collect_tensors, hf_name, write_safetensors};
use mtl_fs::write_file;
use serde::Serialize;

use crate::config::{FORMAT_VERSION, MtlConfig, SavedConfig};
use crate::error::{Error, Result};
use crate::head::ClassificationHead;
use crate::model::{ADAPTER_SEEDS, MultiTaskModel, task_adapters};

/// The multi-task configuration file of a saved model.
pub const CONFIG_FILE: &str = "mtl.json";

/// The directory of a saved model's LoRA adapter sets, one subdirectory each (the set's name)
/// in Hugging Face PEFT's format.
pub const ADAPTERS_DIR: &str = "adapters";

/// One task's prediction for one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The task.
    pub task: String,
    /// The most probable label.
    pub label: String,
    /// Its index in the task's label list.
    pub label_index: usize,
    /// The probability of every label, in the task's label order (softmax of the logits).
    pub probabilities: Vec<f32>,
}

/// A [`MultiTaskModel`] with the tokenizer and configurations that make it usable on text.
///
/// A saved model is a directory: the encoder's Hugging Face `config.json`, its tokenizer files,
/// `model.safetensors` (encoder tensors under Hugging Face's names, so
/// `transformers.BertModel.from_pretrained(dir)` loads the fine-tuned encoder; heads under
/// `heads.<task>.*`), `mtl.json` (tasks, labels, pooling, dropout, versions), and
/// sentence-transformers' `sentence_bert_config.json` / `1_Pooling/config.json` so that the
/// directory also works as a sentence encoder with the heads' pooling.
#[derive(Debug)]
pub struct MultiTaskClassifier {
    /// The module (public so a trainer can replace it with trained weights).
    pub model: MultiTaskModel,
    config: MtlConfig,
    bert_config: BertConfig,
    tokenizer: BertTokenizer,
    tokenizer_files: Vec<(String, Vec<u8>)>,
}

impl MultiTaskClassifier {
    /// A new model: the pretrained encoder of `encoder_dir` (any model directory, including
    /// a saved multi-task model, whose heads are then ignored) and fresh heads for
    /// `config.tasks`, initialised from `seed`. Use an autodiff `device` to train it.
    pub fn from_pretrained(
        encoder_dir: impl AsRef<Path>,
        mut config: MtlConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let dir = ModelDir::new(encoder_dir.as_ref())?;
        let bert_config = dir.config()?;
        let default_length = dir.sentence_defaults(&bert_config)?.max_seq_length;
        let max_seq_length = check_fits(
            config.max_seq_length.unwrap_or(default_length),
            &bert_config,
        )?;
        config.max_seq_length = Some(max_seq_length);
        let tokenizer = dir.tokenizer(max_seq_length)?;
        let mut checkpoint = Checkpoint::open(dir.weights()?)?;
        let encoder = BertModel::from_checkpoint(&mut checkpoint, &bert_config, device)?;
        checkpoint.finish(&["heads."])?;
        check_pooler(&config, &encoder)?;
        config.assign_adapters();
        let model = MultiTaskModel::new(encoder, &bert_config, &config, seed, device);
        Ok(Self {
            model,
            tokenizer_files: read_tokenizer_files(&dir)?,
            config,
            bert_config,
            tokenizer,
        })
    }

    /// A model that continues from the saved model in `dir` (`mtl train --init`): its
    /// encoder; for each task of `config`, the saved head when the saved model has that task
    /// (same labels in the same order and same head kind, else [`Error::InitMismatch`]), else
    /// a fresh head initialised as [`MultiTaskClassifier::from_pretrained`] would (task `i`
    /// from `seed + i`); then, after `config`'s tasks, the saved model's other tasks with
    /// their heads unchanged. The pooling must be the saved model's. Use an autodiff `device`
    /// to train it.
    pub fn from_trained(
        dir: impl AsRef<Path>,
        mut config: MtlConfig,
        seed: u64,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let root = dir.as_ref();
        let saved = Self::load(root, device)?;
        let mismatch = |message: String| Error::InitMismatch {
            dir: root.to_path_buf(),
            message,
        };
        if config.pooling != saved.config.pooling {
            return Err(mismatch(format!(
                "its heads see {} pooling, this model's {}; give the same pooling",
                saved.config.pooling, config.pooling
            )));
        }
        match (saved.config.adapter, config.adapter) {
            (Some(old), None) => {
                return Err(mismatch(format!(
                    "its tasks run the encoder with LoRA adapters (rank {}, alpha {}, {} \
                     targets, {}); give the same adapters",
                    old.lora.rank, old.lora.alpha, old.lora.targets, old.scope
                )));
            }
            (Some(old), Some(new)) if old != new => {
                return Err(mismatch(format!(
                    "its LoRA adapters have rank {}, alpha {}, {} targets, {} scope; this \
                     model's rank {}, alpha {}, {} targets, {} scope",
                    old.lora.rank,
                    old.lora.alpha,
                    old.lora.targets,
                    old.scope,
                    new.lora.rank,
                    new.lora.alpha,
                    new.lora.targets,
                    new.scope
                )));
            }
            _ => {}
        }
        let default_length = saved
            .config
            .max_seq_length
            .unwrap_or(saved.bert_config.max_position_embeddings);
        let max_seq_length = check_fits(
            config.max_seq_length.unwrap_or(default_length),
            &saved.bert_config,
        )?;
        config.max_seq_length = Some(max_seq_length);
        let tokenizer = ModelDir::new(root)?.tokenizer(max_seq_length)?;
        let hidden = saved.bert_config.hidden_size;
        let mut saved_heads: Vec<Option<ClassificationHead>> =
            saved.model.heads.into_iter().map(Some).collect();
        let mut heads = Vec::with_capacity(config.tasks.len() + saved_heads.len());
        // The saved adapter set of each task the saved model has.
        let mut kept_sets: Vec<Option<String>> = vec![None; config.tasks.len()];
        for (i, task) in config.tasks.iter().enumerate() {
            let Some(j) = saved.config.tasks.iter().position(|t| t.name == task.name) else {
                heads.push(ClassificationHead::init(
                    task.head,
                    hidden,
                    task.labels.len(),
                    config.dropout,
                    seed.wrapping_add(i as u64),
                    device,
                ));
                continue;
            };
            let old = &saved.config.tasks[j];
            if old.labels != task.labels {
                return Err(mismatch(format!(
                    "task {} has the labels [{}] there but [{}] here (same labels in the same \
                     order, or another task name)",
                    task.name,
                    old.labels.join(", "),
                    task.labels.join(", ")
                )));
            }
            if old.head != task.head {
                return Err(mismatch(format!(
                    "task {} has a {:?} head there but {:?} here",
                    task.name, old.head, task.head
                )));
            }
            let mut head = saved_heads[j].take().expect("task names are unique");
            head.dropout = DropoutConfig::new(config.dropout).init();
            heads.push(head);
            kept_sets[i].clone_from(&old.adapter);
        }
        for (task, set) in config.tasks.iter_mut().zip(kept_sets) {
            task.adapter = set;
        }
        // The saved sets stay as they are; a task this run trains without one gets a new set
        // when the model has adapters (a saved task trained without them: a new set starts as
        // the identity). The carried tasks keep what they ran with.
        config.assign_adapters();
        for (old, head) in saved.config.tasks.iter().zip(saved_heads) {
            if let Some(head) = head {
                config.tasks.push(old.clone());
                heads.push(head);
            }
        }
        config.validate()?;
        let saved_sets = saved.config.adapter_sets();
        let mut saved_adapters: Vec<Option<LoraAdapter>> =
            saved.model.adapters.into_iter().map(Some).collect();
        let adapters = config
            .adapter_sets()
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let index = saved_sets.iter().position(|s| s == name);
                match index.and_then(|k| saved_adapters[k].take()) {
                    Some(adapter) => adapter,
                    None => {
                        let adapter = config.adapter.expect("validated: tasks name sets");
                        let seed = seed.wrapping_add(ADAPTER_SEEDS + j as u64);
                        LoraAdapter::init(&adapter.lora, &saved.bert_config, seed, device)
                    }
                }
            })
            .collect();
        let model = MultiTaskModel {
            encoder: saved.model.encoder,
            dropout: DropoutConfig::new(config.dropout).init(),
            heads,
            adapters,
            task_adapters: task_adapters(&config),
            pooling: config.pooling,
        };
        Ok(Self {
            model,
            tokenizer_files: saved.tokenizer_files,
            config,
            bert_config: saved.bert_config,
            tokenizer,
        })
    }

    /// Loads a saved model directory onto `device`.
    ///
    /// Fails with [`Error::IncompatibleVersion`] for another format version, with
    /// [`Error::LabelMismatch`] when a head's size does not match its task's labels, and with
    /// the encoder crate's errors for missing, unexpected or misshapen tensors.
    pub fn load(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::load_with_precision(dir, device, Precision::Fp32)
    }

    /// [`Self::load`] at `precision`: [`Precision::Int8`] quantises the shared encoder's linear
    /// layers as it loads (see [`BertModel::with_precision`]; the heads stay f32 and the files
    /// are not changed). Such a model predicts and evaluates but is never saved.
    pub fn load_with_precision(
        dir: impl AsRef<Path>,
        device: &Device,
        precision: Precision,
    ) -> Result<Self> {
        let root = dir.as_ref();
        let config = read_saved_config(root)?;
        let dir = ModelDir::new(root)?;
        let bert_config = dir.config()?;
        let length = config
            .max_seq_length
            .unwrap_or(bert_config.max_position_embeddings);
        let tokenizer = dir.tokenizer(check_fits(length, &bert_config)?)?;
        let mut checkpoint = Checkpoint::open(dir.weights()?)?;
        let encoder = BertModel::from_checkpoint_with_precision(
            &mut checkpoint,
            &bert_config,
            device,
            precision,
        )?;
        check_pooler(&config, &encoder)?;
        if config.adapter.is_some() && precision != Precision::Fp32 {
            return Err(Error::Encoder(mtl_bert::Error::Precision(format!(
                "{}: its tasks run the encoder with LoRA adapters, which run at f32 only; \
                 load it at f32",
                root.display()
            ))));
        }
        let mut model = MultiTaskModel::new(encoder, &bert_config, &config, 0, device);
        model.adapters = config
            .adapter_sets()
            .iter()
            .map(|name| load_adapter(root, name, &config, &bert_config, device))
            .collect::<Result<_>>()?;
        let mut heads = Vec::with_capacity(config.tasks.len());
        for (task, head) in config.tasks.iter().zip(std::mem::take(&mut model.heads)) {
            let bias = format!("heads.{}.output.bias", task.name);
            if let Some(shape) = checkpoint.shape(&bias)
                && shape != [task.labels.len()]
            {
                return Err(Error::LabelMismatch {
                    path: checkpoint.path().to_path_buf(),
                    task: task.name.clone(),
                    labels: task.labels.len(),
                    outputs: shape.first().copied().unwrap_or(0),
                });
            }
            heads.push(checkpoint.load_into(head, |path| format!("heads.{}.{path}", task.name))?);
        }
        model.heads = heads;
        checkpoint.finish(&[])?;
        Ok(Self {
            model,
            tokenizer_files: read_tokenizer_files(&dir)?,
            config,
            bert_config,
            tokenizer,
        })
    }

    /// A one-task model of task `task` with the task's adapter set merged into the encoder's
    /// weights and no adapters left (`mtl export --merge-adapter`): saved, its encoder is a
    /// plain Hugging Face BERT that `transformers` loads as adapted for the task, and its
    /// predictions for the task are this model's (up to rounding). A task without a set keeps
    /// the encoder as it is.
    pub fn merged(&self, task: &str) -> Result<Self> {
        let index = self.task_index(task)?;
        let mut config = self.config.clone();
        let mut task_config = config.tasks.swap_remove(index);
        task_config.adapter = None;
        config.tasks = vec![task_config];
        config.adapter = None;
        let encoder = match self.model.adapter(index) {
            Some(adapter) => adapter.merge_into(self.model.encoder.clone()),
            None => self.model.encoder.clone(),
        };
        let model = MultiTaskModel {
            encoder,
            dropout: self.model.dropout.clone(),
            heads: vec![self.model.heads[index].clone()],
            adapters: Vec::new(),
            task_adapters: vec![None],
            pooling: self.model.pooling,
        };
        Ok(Self {
            model,
            config,
            bert_config: self.bert_config.clone(),
            tokenizer: self.tokenizer.clone(),
            tokenizer_files: self.tokenizer_files.clone(),
        })
    }

    /// The tasks, labels, pooling and dropout.
    pub fn config(&self) -> &MtlConfig {
        &self.config
    }

    /// The encoder's configuration.
    pub fn bert_config(&self) -> &BertConfig {
        &self.bert_config
    }

    /// The tokenizer (truncating to `config().max_seq_length` tokens).
    pub fn tokenizer(&self) -> &BertTokenizer {
        &self.tokenizer
    }

    /// The device of the model's parameters.
    pub fn device(&self) -> Device {
        self.model
            .devices()
            .into_iter()
            .next()
            .expect("the model has parameters")
    }

    /// The index of the task called `name`.
    pub fn task_index(&self, name: &str) -> Result<usize> {
        self.config.task_index(name)
    }

    /// Predicts every task (`task` = `None`) or one task for each text, in `batch_size`
    /// batches sorted by length; one `Vec<Prediction>` per text, in the texts' order, each in
    /// task order. With every task, the encoder runs once per batch.
    ///
    /// Fails with [`mtl_bert::Error::Text`] when a text tokenizes to an id the encoder's
    /// embedding tables lack, and with [`Error::NonFinite`] (the first such text, in
    /// order) when a probability is NaN or infinite: never returns either.
    pub fn predict<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        task: Option<&str>,
        batch_size: usize,
    ) -> Result<Vec<Vec<Prediction>>> {
        self.predict_encodings(self.tokenizer.encode(texts)?, task, batch_size)
    }

    /// [`MultiTaskClassifier::predict`] for text pairs, encoded as BERT pairs
    /// (`[CLS] a [SEP] b [SEP]`, segment ids 0 then 1): for tasks trained on sentence pairs
    /// (paraphrase, entailment).
    pub fn predict_pairs<A: AsRef<str>, B: AsRef<str>>(
        &self,
        pairs: &[(A, B)],
        task: Option<&str>,
        batch_size: usize,
    ) -> Result<Vec<Vec<Prediction>>> {
        self.predict_encodings(self.tokenizer.encode_pairs(pairs)?, task, batch_size)
    }

    /// [`MultiTaskClassifier::predict`] for inputs already tokenized by
    /// [`MultiTaskClassifier::tokenizer`] (texts or pairs; what truncation cut off may be
    /// dropped): a server tokenizes on its request threads and batches on its model thread.
    /// The same errors; an id outside the encoder's tables is refused before anything runs.
    pub fn predict_encodings(
        &self,
        encodings: Vec<mtl_bert::Encoding>,
        task: Option<&str>,
        batch_size: usize,
    ) -> Result<Vec<Vec<Prediction>>> {
        let tasks: Vec<usize> = match task {
            Some(name) => vec![self.task_index(name)?],
            None => (0..self.config.tasks.len()).collect(),
        };
        let model = self.model.valid();
        let device = self.device().without_autodiff();
        BertTokenizer::check_ids(
            &encodings,
            self.bert_config.vocab_size,
            self.bert_config.type_vocab_size,
        )?;
        let mut predictions = vec![Vec::new(); encodings.len()];
        for batch in self.tokenizer.length_sorted_batches(encodings, batch_size) {
            let (positions, batch) = batch?;
            let input = batch.to_input(&device);
            // The encoder runs once per adapter set the tasks use (once without adapters).
            let pooled = model.pooled_per_task(&input, &tasks);
            for (&task, vectors) in tasks.iter().zip(pooled) {
                let probabilities = softmax(model.head_logits(vectors, task, None), 1);
                let labels = &self.config.tasks[task].labels;
                let values: Vec<f32> = probabilities.into_data().try_into_vec().map_err(|e| {
                    mtl_bert::Error::Encoding(format!("reading predictions back: {e:?}"))
                })?;
                for (row, &position) in values.chunks_exact(labels.len()).zip(&positions) {
                    predictions[position].push(prediction(
                        &self.config.tasks[task].name,
                        labels,
                        row,
                    ));
                }
            }
        }
        for (text, predictions) in predictions.iter().enumerate() {
            if let Some(p) = predictions
                .iter()
                .find(|p| p.probabilities.iter().any(|v| !v.is_finite()))
            {
                return Err(Error::NonFinite {
                    text,
                    task: p.task.clone(),
                });
            }
        }
        Ok(predictions)
    }

    /// Saves the model as a directory (see the type's documentation).
    ///
    /// Everything is written to a temporary directory beside `dir`, which then replaces `dir`;
    /// `dir` itself is never half-written. An existing `dir` is replaced only if it is empty or
    /// a saved model (it has `mtl.json`).
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        if self.model.encoder.precision() != Precision::Fp32 {
            return Err(Error::Encoder(mtl_bert::Error::Precision(format!(
                "refusing to save a model loaded at {} precision to {}: its f32 weights are \
                 gone; save the model it was loaded from instead",
                self.model.encoder.precision(),
                dir.display()
            ))));
        }
        let parent = mtl_fs::parent(dir);
        if dir.exists() && !replaceable(dir)? {
            return Err(Error::io(
                dir,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not a saved model; refusing to replace it",
                ),
            ));
        }
        let staging = mtl_fs::staging_dir(dir).map_err(|e| Error::io(parent, e))?;
        self.write_files(staging.path())?;
        mtl_fs::replace_dir(staging, dir).map_err(|e| Error::io(dir, e))
    }

    fn write_files(&self, dir: &Path) -> Result<()> {
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            write_file(&path, bytes).map_err(|e| Error::io(&path, e))
        };
        write("config.json", self.bert_config.to_json().as_bytes())?;
        for (name, bytes) in &self.tokenizer_files {
            write(name, bytes)?;
        }
        let saved = SavedConfig {
            format_version: FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").to_owned(),
            config: self.config.clone(),
        };
        write(CONFIG_FILE, to_json(&saved).as_bytes())?;
        let sentence = serde_json::json!({"max_seq_length": self.config.max_seq_length, "do_lower_case": false});
        write("sentence_bert_config.json", to_json(&sentence).as_bytes())?;
        if let Some(mode) = match self.config.pooling {
            Pooling::Cls => Some("pooling_mode_cls_token"),
            Pooling::Mean => Some("pooling_mode_mean_tokens"),
            Pooling::Max => Some("pooling_mode_max_tokens"),
            Pooling::Pooler => None,
        } {
            let pooling = serde_json::json!({
                "word_embedding_dimension": self.bert_config.hidden_size,
                mode: true,
            });
            write("1_Pooling/config.json", to_json(&pooling).as_bytes())?;
        }
        let mut tensors = collect_tensors(&self.model.encoder, hf_name);
        for (task, head) in self.config.tasks.iter().zip(&self.model.heads) {
            tensors.extend(collect_tensors(head, |path| {
                format!("heads.{}.{path}", task.name)
            }));
        }
        write_safetensors(&dir.join("model.safetensors"), tensors)?;
        for (name, adapter) in self.config.adapter_sets().iter().zip(&self.model.adapters) {
            let path = dir.join(ADAPTERS_DIR).join(name);
            std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
            // PEFT's base model is this directory's encoder (`model.safetensors`).
            adapter.save_peft(&path, "../..")?;
        }
        Ok(())
    }
}

fn prediction(task: &str, labels: &[String], probabilities: &[f32]) -> Prediction {
    let (label_index, _) =
        probabilities
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &p)| {
                if p > best.1 { (i, p) } else { best }
            });
    Prediction {
        task: task.to_owned(),
        label: labels[label_index].clone(),
        label_index,
        probabilities: probabilities.to_vec(),
    }
}

fn to_json(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).expect("configs serialise") + "\n"
}

fn check_fits(max_seq_length: usize, bert: &BertConfig) -> Result<usize> {
    if max_seq_length > bert.max_position_embeddings {
        return Err(Error::InvalidConfig(format!(
            "max_seq_length {max_seq_length} exceeds the encoder's {} positions",
            bert.max_position_embeddings
        )));
    }
    Ok(max_seq_length)
}

fn check_pooler(config: &MtlConfig, encoder: &BertModel) -> Result<()> {
    if config.pooling == Pooling::Pooler && encoder.pooler.is_none() {
        return Err(Error::InvalidConfig(
            "pooling `pooler` needs an encoder checkpoint with pooler weights; this one has none"
                .into(),
        ));
    }
    Ok(())
}

/// Reads and checks the `mtl.json` of a saved model directory: its tasks, labels, pooling and
/// dropout.
pub fn read_saved_config(dir: &Path) -> Result<MtlConfig> {
    let path = dir.join(CONFIG_FILE);
    if !path.is_file() {
        return Err(Error::MissingFile {
            dir: dir.to_path_buf(),
            file: CONFIG_FILE,
        });
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let json = |source| Error::Json {
        path: path.clone(),
        source,
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(json)?;
    let found = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if found != u64::from(FORMAT_VERSION) {
        return Err(Error::IncompatibleVersion {
            path,
            found: u32::try_from(found).unwrap_or(u32::MAX),
            saved_by: value
                .get("crate_version")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown")
                .to_owned(),
            supported: FORMAT_VERSION,
        });
    }
    let saved: SavedConfig = serde_json::from_value(value).map_err(json)?;
    saved.config.validate()?;
    Ok(saved.config)
}

fn read_tokenizer_files(dir: &ModelDir) -> Result<Vec<(String, Vec<u8>)>> {
    dir.tokenizer_files()
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let name = path
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            Ok((name, bytes))
        })
        .collect()
}

fn replaceable(dir: &Path) -> Result<bool> {
    if !dir.is_dir() {
        return Ok(false);
    }
    let empty = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .next()
        .is_none();
    Ok(empty || dir.join(CONFIG_FILE).is_file())
}

/// Reads adapter set `name` of the saved model in `root`, checked against `config`'s adapters.
fn load_adapter(
    root: &Path,
    name: &str,
    config: &MtlConfig,
    bert: &BertConfig,
    device: &Device,
) -> Result<LoraAdapter> {
    let dir = root.join(ADAPTERS_DIR).join(name);
    let adapter = LoraAdapter::load_peft(&dir, bert, device)?;
    let wanted = config.adapter.expect("validated: tasks name sets").lora;
    if adapter.config != wanted {
        return Err(Error::InvalidConfig(format!(
            "{}: the adapter has rank {}, alpha {}, {} targets; {} says rank {}, alpha {}, {} \
             targets",
            dir.display(),
            adapter.config.rank,
            adapter.config.alpha,
            adapter.config.targets,
            CONFIG_FILE,
            wanted.rank,
            wanted.alpha,
            wanted.targets
        )));
    }
    Ok(adapter)
}
