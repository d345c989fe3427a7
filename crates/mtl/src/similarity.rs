//! `mtl similarity`: the cosine similarity matrix of a few texts, as a table or JSON.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use mtl_bert::cosine_matrix;

use crate::embed::{ignore_broken_pipe, text_error};
use crate::encoder_args::EncoderArgs;
use crate::progress::EmbedProgress;
use crate::text_input::{InputArgs, TextReader};

/// Compare texts: the cosine similarity of every pair, as a table or JSON.
///
/// Texts come from the arguments, from --input FILE, or from standard input (one per line).
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:
  mtl similarity \"A man is eating food.\" \"A man is eating pasta.\" \"The girl plays guitar.\"
  mtl similarity --input sentences.txt --json")]
pub struct SimilarityArgs {
    /// Texts to compare (at least two). Without any, texts are read from --input or standard
    /// input, one per line.
    #[arg(value_name = "TEXT")]
    pub texts: Vec<String>,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Print JSON, {"texts": [...], "similarity": [[...], ...]}, instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Texts and their pairwise cosine similarities; `similarity[i][j]` compares text i and j.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimilarityMatrix {
    /// The texts, in input order.
    pub texts: Vec<String>,
    /// `[n][n]`, symmetric, 1 on the diagonal (0 for a zero vector).
    pub similarity: Vec<Vec<f32>>,
}

/// Runs `mtl similarity`.
pub fn run(args: &SimilarityArgs) -> Result<()> {
    let source = args.input.source(&args.texts)?;
    let mut reader = TextReader::open(&source, args.input.lossy)?;
    let texts = reader.next_chunk(usize::MAX)?;
    if texts.len() < 2 {
        bail!(
            "similarity needs at least two texts, got {}; give them as arguments, with --input \
             FILE or on standard input, one per line",
            texts.len()
        );
    }
    let encoder = args.encoder.load()?;
    let options = args.encoder.options();
    let mut progress = EmbedProgress::new(Some(texts.len()), options.batch_size);
    let embeddings = encoder
        .encode(&texts, &options)
        .map_err(|e| text_error(e, &source, 1, &texts))?;
    progress.inc(texts.len());
    progress.finish(embeddings.dim);
    let rows: Vec<&[f32]> = embeddings.rows().collect();
    let matrix = SimilarityMatrix {
        similarity: cosine_matrix(&rows),
        texts,
    };
    let out = if args.json {
        serde_json::to_string(&matrix)? + "\n"
    } else {
        matrix.table()
    };
    ignore_broken_pipe(
        std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes())
            .context("writing to standard output"),
    )
}

impl SimilarityMatrix {
    /// A numbered list of the texts, then the matrix with 4 decimals, rows and columns
    /// numbered alike.
    pub fn table(&self) -> String {
        let n = self.texts.len();
        let label = n.to_string().len().max(1);
        let mut out = String::new();
        for (i, text) in self.texts.iter().enumerate() {
            let shown = if text.is_empty() { "(empty)" } else { text };
            let _ = writeln!(out, "{:>label$}  {}", i + 1, shown.escape_debug());
        }
        out.push('\n');
        let width = 7usize.max(label);
        let _ = write!(out, "{:>label$}", "");
        for j in 0..n {
            let _ = write!(out, "  {:>width$}", j + 1);
        }
        out.push('\n');
        for (i, row) in self.similarity.iter().enumerate() {
            let _ = write!(out, "{:>label$}", i + 1);
            for value in row {
                let _ = write!(out, "  {value:>width$.4}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_numbers_texts_and_aligns_values() {
        let matrix = SimilarityMatrix {
            texts: vec!["a cat".into(), "".into()],
            similarity: vec![vec![1.0, -0.25], vec![-0.25, 1.0]],
        };
        assert_eq!(
            matrix.table(),
            "1  a cat\n2  (empty)\n\n         1        2\n1   1.0000  -0.2500\n2  -0.2500   1.0000\n"
        );
    }
}
