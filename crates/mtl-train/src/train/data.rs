//! Resolving a run's model and tasks: fetching the default model and named data sets, and
//! reading each task's splits.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mtl_bert::BertTokenizer;
use mtl_data::{DataFormat, Split, TaskData, TokenizedTask};

use crate::model_source::ModelSource;
use crate::train::config::TaskSpec;

/// The pretrained model's directory: `default` (all-MiniLM-L6-v2, fetched into the cache on
/// first use), a local directory, or a Hugging Face hub id at `revision` (downloaded into the
/// hub cache), resolved as every `mtl` command resolves `--model` ([`ModelSource`]).
pub fn resolve_model(model: &str, revision: Option<&str>) -> Result<PathBuf> {
    let model = (model != "default").then_some(model);
    ModelSource::parse(model, revision)?.resolve()
}

/// The data task of a spec: its directory (a named data set is fetched and extracted on first
/// use) and its labels (given, the named data set's, or the sorted labels of a JSONL training
/// split).
pub fn resolve_task(spec: &TaskSpec) -> Result<mtl_data::TaskConfig> {
    let named = mtl_assets::datasets::dataset(&spec.data);
    let dir = match named {
        Some(dataset) if !Path::new(&spec.data).is_dir() => mtl_assets::prepare_dataset(
            dataset.name,
            &mtl_assets::datasets_dir(),
            &mtl_assets::cache_dir(),
        )
        .with_context(|| format!("task {}: preparing data set {}", spec.name, dataset.name))?,
        _ => PathBuf::from(&spec.data),
    };
    if !dir.is_dir() {
        bail!(
            "task {}: data {:?} is neither a known data set (bbc, tweets, polarity, amazon) nor a directory",
            spec.name,
            spec.data
        );
    }
    let mut task = mtl_data::TaskConfig::new(spec.name.clone(), dir, Vec::<String>::new());
    task.format = spec.format;
    task.text_field = spec.text_field.clone();
    task.label_field = spec.label_field.clone();
    task.labels = match (&spec.labels, named) {
        (Some(labels), _) => labels.clone(),
        (None, Some(dataset)) if spec.data == dataset.name => {
            dataset.labels.iter().map(|l| (*l).to_owned()).collect()
        }
        (None, _) => infer_labels(&task)?,
    };
    task.validate()?;
    Ok(task)
}

/// The sorted distinct labels of a JSONL training split.
fn infer_labels(task: &mtl_data::TaskConfig) -> Result<Vec<String>> {
    if task.format != DataFormat::Jsonl {
        bail!(
            "task {}: give its labels (they are inferred only from JSONL data)",
            task.name
        );
    }
    let path = task.split_path(Split::Train);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("task {}: opening {}", task.name, path.display()))?;
    let mut labels = BTreeSet::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
        match &value[&task.label_field] {
            serde_json::Value::String(s) => labels.insert(s.clone()),
            serde_json::Value::Number(n) => labels.insert(n.to_string()),
            _ => bail!(
                "{}:{}: no {:?} field",
                path.display(),
                i + 1,
                task.label_field
            ),
        };
    }
    Ok(labels.into_iter().collect())
}

/// One split of every task: the examples' ids (for the batch plan file) and their tokens.
pub struct SplitData {
    /// Per task, each example's id.
    pub ids: Vec<Vec<String>>,
    /// Per task, the tokenized examples.
    pub tokens: Vec<TokenizedTask>,
}

impl SplitData {
    /// Reads and tokenizes `split` of every task.
    pub fn load(
        tasks: &[mtl_data::TaskConfig],
        split: Split,
        tokenizer: &BertTokenizer,
    ) -> Result<Self> {
        let mut ids = Vec::with_capacity(tasks.len());
        let mut tokens = Vec::with_capacity(tasks.len());
        for task in tasks {
            let data = TaskData::load(task, split)?;
            tokens.push(TokenizedTask::new(&data, tokenizer)?);
            ids.push(data.examples.into_iter().map(|e| e.id).collect());
        }
        Ok(Self { ids, tokens })
    }
}
