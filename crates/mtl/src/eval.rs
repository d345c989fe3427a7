//! `mtl eval`: scores a saved model on a split of its tasks' data, or on other data with the
//! same labels.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use mtl_data::{Split, TokenizedTask};
use mtl_model::MultiTaskClassifier;
use serde::Serialize;

use mtl_train::{TaskMetrics, TaskSpec, TrainConfig, evaluate};

use crate::backend::{BackendArgs, PrecisionArgs};

/// Evaluate a saved model: per task loss, accuracy, macro-F1, per-class precision / recall /
/// F1 and the confusion matrix.
///
/// The data of each task comes from `--data`, else from the training run the model belongs
/// to (`config.toml` beside a run's `best/` directory).
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The saved model directory (e.g. runs/default/best).
    #[arg(long)]
    pub model: PathBuf,
    /// The split to score: train, valid or test.
    #[arg(long, default_value = "test", value_parser = parse_split)]
    pub split: Split,
    /// Score only this task (default: every task).
    #[arg(long)]
    pub task: Option<String>,
    /// A task's data as TASK=DATA (a data set name such as amazon, or a directory), e.g.
    /// `--data sentiment=amazon` to score the sentiment head on UCI Amazon. The data's labels
    /// must be among the head's labels. Repeatable.
    #[arg(long, value_name = "TASK=DATA")]
    pub data: Vec<String>,
    /// Predict only among the labels that occur in the data (e.g. a 3-class sentiment head on
    /// 2-class data never predicts `neutral`).
    #[arg(long)]
    pub restrict_labels: bool,
    /// Texts per batch.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

fn parse_split(text: &str) -> Result<Split, String> {
    Split::ALL
        .into_iter()
        .find(|s| s.name() == text)
        .ok_or_else(|| format!("unknown split {text:?} (expected train, valid or test)"))
}

/// One task's evaluation and what it was run on.
#[derive(Debug, Serialize)]
pub struct Evaluation {
    /// The data directory.
    pub data: PathBuf,
    /// The split.
    pub split: String,
    /// Whether predictions were restricted to the data's labels.
    pub restricted_labels: bool,
    /// The encoder's precision (`fp32` or `int8`).
    pub precision: String,
    /// The scores.
    #[serde(flatten)]
    pub metrics: TaskMetrics,
}

/// Runs `mtl eval`; prints tables or JSON and returns the evaluations.
pub fn run(args: &EvalArgs) -> Result<Vec<Evaluation>> {
    let device = args.backend.device()?;
    let classifier =
        MultiTaskClassifier::load_with_precision(&args.model, &device, args.precision.precision())
            .with_context(|| format!("loading {}", args.model.display()))?;
    let overrides = parse_data(&args.data)?;
    let run_tasks = run_config(&args.model).map(|c| c.tasks).unwrap_or_default();
    let config = classifier.config().clone();
    let selected: Vec<usize> = match &args.task {
        Some(name) => vec![classifier.task_index(name)?],
        None => (0..config.tasks.len()).collect(),
    };
    for (name, _) in &overrides {
        classifier.task_index(name)?;
    }
    let model = classifier.model.clone();
    let mut evaluations = Vec::new();
    for index in selected {
        let task = &config.tasks[index];
        let data = match overrides.iter().find(|(name, _)| name == &task.name) {
            Some((_, data)) => data.clone(),
            None => match run_tasks.iter().find(|t| t.name == task.name) {
                Some(spec) => spec.data.clone(),
                None => bail!(
                    "no data for task {}: pass --data {}=DATA (the model is not in a run directory \
                     with a config.toml)",
                    task.name,
                    task.name
                ),
            },
        };
        let mut spec = TaskSpec::new(&task.name, &data);
        spec.labels = Some(task.labels.clone());
        let data_config = spec.resolve()?;
        let tokens = TokenizedTask::load(&data_config, args.split, classifier.tokenizer())?;
        let allowed = args.restrict_labels.then(|| {
            let mut present = vec![false; task.labels.len()];
            tokens.targets().iter().for_each(|&t| present[t] = true);
            present
        });
        let metrics = evaluate(
            &model,
            &device,
            &tokens,
            index,
            args.batch_size,
            allowed.as_deref(),
        )?;
        evaluations.push(Evaluation {
            data: data_config.path.clone(),
            split: args.split.name().into(),
            restricted_labels: args.restrict_labels,
            precision: args.precision.quantize.name().into(),
            metrics,
        });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&evaluations)?);
    } else {
        for evaluation in &evaluations {
            println!("{}", report(evaluation));
        }
    }
    Ok(evaluations)
}

fn parse_data(data: &[String]) -> Result<Vec<(String, String)>> {
    data.iter()
        .map(|d| {
            let (task, path) = d
                .split_once('=')
                .with_context(|| format!("--data {d:?}: expected TASK=DATA"))?;
            Ok((task.to_owned(), path.to_owned()))
        })
        .collect()
}

/// The configuration of the run a model directory belongs to (`<run>/best` or `<run>`).
fn run_config(model: &Path) -> Option<TrainConfig> {
    [
        model.join("config.toml"),
        model.parent()?.join("config.toml"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .and_then(|p| TrainConfig::from_file(&p).ok())
}

/// A task's scores as text: summary, per-class table and confusion matrix.
pub fn report(evaluation: &Evaluation) -> String {
    let m = &evaluation.metrics;
    let mut out = format!(
        "task {} on {} ({}, {} examples{}): loss {:.4}, accuracy {:.4}, macro-F1 {:.4}\n",
        m.task,
        evaluation.data.display(),
        evaluation.split,
        m.examples,
        if evaluation.restricted_labels {
            ", predictions restricted to the data's labels"
        } else {
            ""
        },
        m.loss,
        m.accuracy,
        m.macro_f1
    );
    let width = m.labels.iter().map(String::len).max().unwrap_or(5).max(9);
    out += &format!(
        "  {:<width$} {:>9} {:>9} {:>9} {:>8}\n",
        "label", "precision", "recall", "F1", "support"
    );
    for c in &m.per_class {
        out += &format!(
            "  {:<width$} {:>9.4} {:>9.4} {:>9.4} {:>8}\n",
            c.label, c.precision, c.recall, c.f1, c.support
        );
    }
    out += &format!(
        "  confusion (rows: true, columns: predicted)\n  {:<width$}",
        ""
    );
    for label in &m.labels {
        out += &format!(" {label:>width$}");
    }
    out.push('\n');
    for (label, row) in m.labels.iter().zip(&m.confusion) {
        out += &format!("  {label:<width$}");
        for count in row {
            out += &format!(" {count:>width$}");
        }
        out.push('\n');
    }
    out
}
