//! `mtl embed`: one embedding per text, streamed from the input to the output in chunks.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use mtl_bert::{EncodeOptions, SentenceEncoder};

use crate::embedding_output::{EmbeddingWriter, OutputFormat};
use crate::encoder_args::EncoderArgs;
use crate::progress::EmbedProgress;
use crate::text_input::{InputArgs, TextReader, TextSource};

/// Texts read, embedded and written at a time, in batches: this many batches per chunk. Only
/// one chunk's texts, tokens and embeddings are in memory at once.
pub const BATCHES_PER_CHUNK: usize = 8;

/// Embed texts: one vector per text, in input order, as JSON lines, npy or CSV.
///
/// Texts come from the arguments, from --input FILE, or from standard input (one per line).
/// Progress and a summary go to standard error; embeddings go to --output or standard output.
#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:
  mtl embed \"A sentence.\" \"Another one.\"
  mtl embed --input sentences.txt --output embeddings.npy
  cat sentences.txt | mtl embed --model sentence-transformers/all-MiniLM-L6-v2 --format csv")]
pub struct EmbedArgs {
    /// Texts to embed. Without any, texts are read from --input or standard input, one per
    /// line.
    #[arg(value_name = "TEXT")]
    pub texts: Vec<String>,
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Write the embeddings to FILE: a regular file is replaced atomically (written to a
    /// temporary file beside it, renamed when complete), a symlink's target is written, a FIFO
    /// or device is written in place. `-` or /dev/stdout: standard output, the default.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Output format: jsonl ({"text": ..., "embedding": [...]} per line), npy (float32
    /// [texts, dim], numpy.load reads it; to standard output only when it is not a terminal)
    /// or csv (a header `text,e0,e1,...`, then the text and its values on each row). Default:
    /// from the --output extension (.npy, .csv, .jsonl), else jsonl.
    #[arg(long, short = 'f', value_enum)]
    pub format: Option<OutputFormat>,
}

impl EmbedArgs {
    /// `--format`, else the output file's extension, else jsonl.
    pub fn format(&self) -> OutputFormat {
        self.format
            .or_else(|| {
                self.output
                    .as_deref()
                    .and_then(OutputFormat::from_extension)
            })
            .unwrap_or(OutputFormat::Jsonl)
    }
}

/// Runs `mtl embed`.
pub fn run(args: &EmbedArgs) -> Result<()> {
    let source = args.input.source(&args.texts)?;
    let format = args.format();
    EmbeddingWriter::check_target(format, args.output.as_deref())?;
    let mut reader = TextReader::open(&source, args.input.lossy)?;
    let encoder = args.encoder.load()?;
    let options = args.encoder.options();
    // Checks the options (pooling the model lacks, a bad length) before any input is read.
    encoder
        .encode::<&str>(&[], &options)
        .context("invalid encoding options")?;
    let texts = reader.total().map(|n| n as u64);
    let writer = EmbeddingWriter::create(format, args.output.as_deref(), encoder.dim(), texts)?;
    ignore_broken_pipe(embed_stream(
        &encoder,
        &options,
        &source,
        &mut reader,
        writer,
    ))
}

/// Embeds every text of `reader` chunk by chunk, writing each chunk's rows before reading the
/// next, and prints the summary.
pub fn embed_stream(
    encoder: &SentenceEncoder,
    options: &EncodeOptions,
    source: &TextSource,
    reader: &mut TextReader,
    mut writer: EmbeddingWriter,
) -> Result<()> {
    let chunk = options.batch_size.saturating_mul(BATCHES_PER_CHUNK);
    let mut progress = EmbedProgress::new(reader.total(), options.batch_size);
    loop {
        let texts = reader.next_chunk(chunk)?;
        if texts.is_empty() {
            break;
        }
        let first = progress.done() + 1;
        let embeddings = encoder
            .encode(&texts, options)
            .map_err(|e| text_error(e, source, first, &texts))?;
        writer.write(&texts, &embeddings)?;
        progress.inc(texts.len());
    }
    writer.finish()?;
    progress.finish(encoder.dim());
    Ok(())
}

/// An encoder error for `texts`, the input's texts from number `first` (1-based) on: one
/// about a single text ([`mtl_bert::Error::Text`]) names that text's line (see [`text_name`]);
/// others say which texts were being embedded.
pub fn text_error(
    error: mtl_bert::Error,
    source: &TextSource,
    first: usize,
    texts: &[String],
) -> anyhow::Error {
    match error {
        mtl_bert::Error::Text { index, problem } => {
            let text = texts.get(index).map_or("", String::as_str);
            anyhow!("{}: {problem}", text_name(source, first + index, text))
        }
        other => anyhow::Error::new(other).context(format!(
            "embedding texts {first}..{} of the input",
            first + texts.len().max(1) - 1
        )),
    }
}

/// How messages name text `n` (1-based) of `source`, with its start: `line 3 of texts.txt
/// ("the cat sat on the…")`, `line 3 of standard input (...)` or `text argument 3 (...)`.
pub fn text_name(source: &TextSource, n: usize, text: &str) -> String {
    const SHOWN: usize = 40;
    let mut start: String = text.chars().take(SHOWN).collect();
    if text.chars().nth(SHOWN).is_some() {
        start.push('…');
    }
    match source {
        TextSource::Args(_) => format!("text argument {n} ({start:?})"),
        TextSource::File(path) => format!("line {n} of {} ({start:?})", path.display()),
        TextSource::Stdin => format!("line {n} of standard input ({start:?})"),
    }
}

/// Treats a closed standard output (`mtl embed ... | head`) as a normal end.
pub fn ignore_broken_pipe(result: Result<()>) -> Result<()> {
    match result {
        Err(e)
            if e.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        other => other,
    }
}
