//! Resolving a run's model and tasks: fetching the default model and named data sets, and
//! reading each task's splits.

use std::path::{Path, PathBuf};

use mtl_bert::BertTokenizer;
use mtl_data::{Split, TaskData, TokenizedTask};
use mtl_hub::ModelSource;

use crate::config::TaskSpec;
use crate::error::{Context, Error, Result};

/// The pretrained model's directory: `default` (all-MiniLM-L6-v2, fetched into the cache on
/// first use), a local directory, or a Hugging Face hub id at `revision` (downloaded into the
/// hub cache), resolved as every `mtl` command resolves `--model` ([`ModelSource`]).
pub(crate) fn resolve_model(model: &str, revision: Option<&str>) -> Result<PathBuf> {
    let model = (model != "default").then_some(model);
    Ok(ModelSource::parse(model, revision)?.resolve()?)
}

/// The data task of a spec: its path (a named data set is fetched and extracted on first use),
/// fields and labels (given, the named data set's, or the sorted distinct labels of the
/// training file).
pub(crate) fn resolve_task(spec: &TaskSpec) -> Result<mtl_data::TaskSource> {
    let named = mtl_assets::dataset(&spec.data).filter(|_| !Path::new(&spec.data).exists());
    let path = match named {
        Some(dataset) => mtl_assets::prepare_dataset(
            dataset.name,
            &mtl_assets::datasets_dir(),
            &mtl_assets::cache_dir(),
        )
        .with_context(|| format!("task {}: preparing data set {}", spec.name, dataset.name))?,
        None => PathBuf::from(&spec.data),
    };
    if !path.exists() {
        return Err(Error::Config(format!(
            "task {}: data {:?} is neither a known data set (bbc, tweets, polarity, amazon) nor a \
             file or directory",
            spec.name, spec.data
        )));
    }
    let mut task = mtl_data::TaskSource::new(spec.name.clone(), path, Vec::<String>::new());
    task.format = spec.format;
    task.text_field = spec.text_field.clone();
    task.text_pair_field = spec.text_pair_field.clone();
    task.label_field = spec.label_field.clone();
    task.id_field = match (&spec.id_field, named) {
        (Some(field), _) => Some(field.clone()),
        (None, Some(_)) => Some("id".into()),
        (None, None) => None,
    };
    task.delimiter = spec.delimiter;
    task.labels = match (&spec.labels, named) {
        (Some(labels), _) => labels.clone(),
        (None, Some(dataset)) => dataset.labels.iter().map(|l| (*l).to_owned()).collect(),
        (None, None) => {
            let train = task.split_path(Split::Train)?.expect("a training file");
            TaskData::labels_in(&task, &train)?
                .into_iter()
                .map(|(label, _)| label)
                .collect()
        }
    };
    task.validate()?;
    Ok(task)
}

/// The share of the training examples held out for validation when a task has no validation
/// file.
pub(crate) const HELD_OUT_SHARE: f64 = 0.1;

/// One split of several tasks: the examples' ids (for the batch plan file) and their tokens.
pub(crate) struct SplitData {
    /// Each task's index in the run, for the tasks that have this split.
    pub(crate) tasks: Vec<usize>,
    /// Per task, each example's id.
    pub(crate) ids: Vec<Vec<String>>,
    /// Per task, the tokenized examples.
    pub(crate) tokens: Vec<TokenizedTask>,
}

impl SplitData {
    fn new() -> Self {
        Self {
            tasks: Vec::new(),
            ids: Vec::new(),
            tokens: Vec::new(),
        }
    }

    fn push(&mut self, task: usize, data: &TaskData, tokenizer: &BertTokenizer) -> Result<()> {
        self.tokens.push(TokenizedTask::new(data, tokenizer)?);
        self.ids
            .push(data.examples.iter().map(|e| e.id.clone()).collect());
        self.tasks.push(task);
        Ok(())
    }
}

/// Every split of a run's tasks, read, checked and tokenized.
pub(crate) struct RunData {
    /// The training split of every task.
    pub(crate) train: SplitData,
    /// The validation split of every task (held out of train where there is no file).
    pub(crate) valid: SplitData,
    /// The test split of the tasks that have one.
    pub(crate) test: SplitData,
    /// Per task whose validation examples were held out of its training file: the task's
    /// name and the number held out.
    pub(crate) held_out: Vec<(String, usize)>,
}

impl RunData {
    /// Reads and tokenizes every split of `tasks`; a task without a validation file gets a
    /// stratified [`HELD_OUT_SHARE`] of its training examples, chosen by `seed`.
    pub(crate) fn load(
        tasks: &[mtl_data::TaskSource],
        seed: u64,
        tokenizer: &BertTokenizer,
    ) -> Result<Self> {
        let (mut train, mut valid, mut test) =
            (SplitData::new(), SplitData::new(), SplitData::new());
        let mut held_out = Vec::new();
        for (index, task) in tasks.iter().enumerate() {
            let mut train_data = TaskData::load(task, Split::Train)?.expect("a training file");
            let valid_data = match TaskData::load(task, Split::Valid)? {
                Some(data) => data,
                None => {
                    let data = train_data.hold_out(
                        HELD_OUT_SHARE,
                        mtl_data::derive_seed(seed, &[5, index as u64]),
                    )?;
                    held_out.push((task.name.clone(), data.len()));
                    data
                }
            };
            train.push(index, &train_data, tokenizer)?;
            valid.push(index, &valid_data, tokenizer)?;
            if let Some(test_data) = TaskData::load(task, Split::Test)? {
                test.push(index, &test_data, tokenizer)?;
            }
        }
        Ok(Self {
            train,
            valid,
            test,
            held_out,
        })
    }
}
