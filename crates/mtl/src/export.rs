//! `mtl export`: a saved multi-task model turned into another saved model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use mtl_model::MultiTaskClassifier;

use crate::backend::BackendArgs;

/// Export a saved model: `--merge-adapter TASK` writes a one-task model whose encoder has the
/// task's LoRA adapter set merged into its weights (no adapters left), so that
/// `transformers.BertModel.from_pretrained(OUTPUT)` loads the encoder as adapted for the task
/// and `mtl predict --model OUTPUT` predicts the task as the source model does.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The saved model directory (e.g. runs/default/best).
    #[arg(long)]
    pub model: PathBuf,
    /// The task whose adapter set is merged into the encoder.
    #[arg(long, value_name = "TASK")]
    pub merge_adapter: String,
    /// Where to write the exported model (a new directory, or a model saved by mtl, which is
    /// replaced in one step).
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Runs `mtl export`.
pub fn run(args: &ExportArgs) -> Result<()> {
    let device = args.backend.device()?;
    let classifier = MultiTaskClassifier::load(&args.model, &device)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let merged = classifier
        .merged(&args.merge_adapter)
        .with_context(|| format!("merging the adapter of {}", args.merge_adapter))?;
    merged
        .save(&args.output)
        .with_context(|| format!("saving {}", args.output.display()))?;
    eprintln!(
        "{}: task {} with its adapter merged into the encoder",
        args.output.display(),
        args.merge_adapter
    );
    Ok(())
}
