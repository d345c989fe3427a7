//! `mtl predict`: the labels a saved multi-task model gives texts.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::{Args, ValueEnum};
use mtl_model::MultiTaskClassifier;

use crate::backend::{BackendArgs, PrecisionArgs};
use crate::embed::{text_error, text_name};
use crate::text_input::{InputArgs, TextReader, TextSource};

/// Output format of `mtl predict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PredictFormat {
    /// One line per text and task: text, task, label, probability.
    Table,
    /// One JSON object per text: `{"text": ..., "predictions": [{"task", "label",
    /// "label_index", "probabilities"}, ...]}`.
    Jsonl,
}

/// Predict with a saved model: the most probable label of every task (or one task) for each
/// text, with its probability.
#[derive(Debug, Args)]
pub struct PredictArgs {
    /// The saved model directory (e.g. runs/default/best).
    #[arg(long)]
    pub model: PathBuf,
    /// Texts; without them, texts are read from --input or standard input, one per line.
    pub texts: Vec<String>,
    #[command(flatten)]
    pub input: InputArgs,
    /// Each text is a sentence pair, TEXT<TAB>PAIR (split at the first tab), encoded as a BERT
    /// pair: for models trained on pairs (`mtl train --text-pair-field`).
    #[arg(long)]
    pub pairs: bool,
    /// Only this task (default: every task, with one encoder pass per batch).
    #[arg(long)]
    pub task: Option<String>,
    /// Texts per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// table or jsonl.
    #[arg(long, value_enum, default_value = "table")]
    pub format: PredictFormat,
    #[command(flatten)]
    pub backend: BackendArgs,
    #[command(flatten)]
    pub precision: PrecisionArgs,
}

/// Texts read and predicted at a time (bounds memory on large inputs).
const CHUNK: usize = 4096;

/// Runs `mtl predict`, writing to standard output.
pub fn run(args: &PredictArgs) -> Result<()> {
    let device = args.backend.device()?;
    let model =
        MultiTaskClassifier::load_with_precision(&args.model, &device, args.precision.precision())
            .with_context(|| format!("loading {}", args.model.display()))?;
    if let Some(task) = &args.task {
        model.task_index(task)?;
    }
    let source = args.input.source(&args.texts)?;
    let mut reader = TextReader::open(&source, args.input.lossy)?;
    let mut out = std::io::stdout().lock();
    let mut done = 0;
    loop {
        let texts = reader.next_chunk(CHUNK)?;
        if texts.is_empty() {
            break;
        }
        let first = done + 1;
        done += texts.len();
        let task = args.task.as_deref();
        let (predictions, pairs) = if args.pairs {
            let pairs = texts
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    text.split_once('\t').ok_or_else(|| {
                        anyhow!(
                            "{}: --pairs needs TEXT<TAB>PAIR, but it has no tab",
                            text_name(&source, first + i, text)
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let predictions = model.predict_pairs(&pairs, task, args.batch_size);
            (predictions, Some(pairs))
        } else {
            (model.predict(&texts, task, args.batch_size), None)
        };
        let predictions = predictions.map_err(|e| prediction_error(e, &source, first, &texts))?;
        let mut text_out = String::new();
        for (i, (text, predictions)) in texts.iter().zip(predictions).enumerate() {
            match args.format {
                PredictFormat::Jsonl => {
                    let line = match &pairs {
                        Some(pairs) => serde_json::json!({
                            "text": pairs[i].0,
                            "text_pair": pairs[i].1,
                            "predictions": predictions,
                        }),
                        None => serde_json::json!({"text": text, "predictions": predictions}),
                    };
                    text_out += &format!("{line}\n");
                }
                PredictFormat::Table => {
                    for p in predictions {
                        text_out += &format!(
                            "{:<12} {:<14} {:.3}  {text}\n",
                            p.task, p.label, p.probabilities[p.label_index]
                        );
                    }
                }
            }
        }
        if let Err(e) = out.write_all(text_out.as_bytes()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(e).context("writing to standard output");
        }
    }
    Ok(())
}

/// A prediction error for `texts`, the input's texts from number `first` (1-based) on, naming
/// the text's line when it concerns one text.
fn prediction_error(
    error: mtl_model::Error,
    source: &TextSource,
    first: usize,
    texts: &[String],
) -> anyhow::Error {
    match error {
        mtl_model::Error::NonFinite { text: index, task } => {
            let text = texts.get(index).map_or("", String::as_str);
            anyhow!(
                "{}, task {task}: the model produced non-finite probabilities (NaN or \
                 infinity); its weights may be corrupt",
                text_name(source, first + index, text)
            )
        }
        mtl_model::Error::Encoder(e @ mtl_bert::Error::Text { .. }) => {
            text_error(e, source, first, texts)
        }
        other => anyhow::Error::new(other).context(format!(
            "predicting texts {first}..{} of the input",
            first + texts.len().max(1) - 1
        )),
    }
}
