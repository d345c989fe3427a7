//! Writing embeddings as JSON lines, NumPy `.npy` or CSV, row by row as they are computed.
//!
//! A file is written atomically: rows go to a temporary file in the target's directory, which
//! is renamed over the target only when everything succeeded, so the target is either the old
//! file (or absent) or complete. Standard output is streamed (npy is spooled to a temporary
//! file first, because its header holds the row count).

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use mtl_bert::Embeddings;
use mtl_bert::atomic::parent;
use serde::Serialize;
use tempfile::NamedTempFile;

/// How embeddings are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// One JSON object per line: `{"text": "...", "embedding": [0.1, ...]}`.
    Jsonl,
    /// A NumPy float32 array of shape [texts, dim] (`numpy.load`); row i is text i.
    Npy,
    /// A header `text,e0,e1,...` then one row per text: the text (quoted as RFC 4180 says
    /// when needed) and its values.
    Csv,
}

impl OutputFormat {
    /// The format an output file's extension implies (`.npy`, `.csv`, `.jsonl`/`.json`).
    pub fn from_extension(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "npy" => Some(Self::Npy),
            "csv" => Some(Self::Csv),
            "jsonl" | "json" | "ndjson" => Some(Self::Jsonl),
            _ => None,
        }
    }
}

/// Total size of the `.npy` header this writer reserves: magic, version, length and the
/// padded dictionary. 128 bytes hold any `u64` shape and keep the data 64-byte aligned.
pub const NPY_HEADER_LEN: usize = 128;

/// The `.npy` (format version 1.0) header of a C-order little-endian float32 `[rows, dim]`
/// array, padded with spaces to [`NPY_HEADER_LEN`] bytes.
pub fn npy_header(rows: u64, dim: usize) -> [u8; NPY_HEADER_LEN] {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    let mut header = [b' '; NPY_HEADER_LEN];
    header[..6].copy_from_slice(b"\x93NUMPY");
    header[6..8].copy_from_slice(&[1, 0]);
    let dict_len = (NPY_HEADER_LEN - 10) as u16;
    header[8..10].copy_from_slice(&dict_len.to_le_bytes());
    header[10..10 + dict.len()].copy_from_slice(dict.as_bytes());
    header[NPY_HEADER_LEN - 1] = b'\n';
    header
}

/// Where the bytes go.
enum Sink {
    /// Standard output, streamed.
    Stdout(BufWriter<std::io::Stdout>),
    /// A temporary file: renamed to `target`, or, without one, copied to standard output.
    Temp {
        file: BufWriter<NamedTempFile>,
        target: Option<PathBuf>,
    },
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(w) => w.write(buf),
            Sink::Temp { file, .. } => file.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Stdout(w) => w.write_all(buf),
            Sink::Temp { file, .. } => file.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(w) => w.flush(),
            Sink::Temp { file, .. } => file.flush(),
        }
    }
}

/// Writes embeddings in one [`OutputFormat`] to a file (atomically) or standard output.
pub struct EmbeddingWriter {
    format: OutputFormat,
    sink: Sink,
    dim: usize,
    rows: u64,
    name: String,
}

#[derive(Serialize)]
struct JsonRow<'a> {
    text: &'a str,
    embedding: &'a [f32],
}

impl EmbeddingWriter {
    /// Fails early when the output cannot be written: `path` is a directory or its directory
    /// does not exist, or npy would go to a terminal.
    pub fn check_target(format: OutputFormat, path: Option<&Path>) -> Result<()> {
        match path {
            Some(path) => {
                if path.is_dir() {
                    bail!("--output {} is a directory", path.display());
                }
                let dir = parent(path);
                if !dir.is_dir() {
                    bail!(
                        "--output {}: the directory {} does not exist",
                        path.display(),
                        dir.display()
                    );
                }
            }
            None if format == OutputFormat::Npy && std::io::stdout().is_terminal() => bail!(
                "refusing to write binary npy to a terminal: pass --output FILE.npy or \
                 redirect standard output (`> embeddings.npy`)"
            ),
            None => {}
        }
        Ok(())
    }

    /// Starts the output: `path`, or standard output when `None`. Writes the csv header, or
    /// reserves the npy header. Refuses to write npy to a terminal.
    pub fn create(format: OutputFormat, path: Option<&Path>, dim: usize) -> Result<Self> {
        Self::check_target(format, path)?;
        let sink = match path {
            Some(path) => {
                let dir = parent(path);
                let mut builder = tempfile::Builder::new();
                builder.prefix(".mtl-embed-").suffix(".tmp");
                // An ordinary file's mode (0666 less the umask), not a temporary file's 0600.
                #[cfg(unix)]
                builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
                let file = builder.tempfile_in(dir).with_context(|| {
                    format!(
                        "creating a temporary file in {} for the output",
                        dir.display()
                    )
                })?;
                Sink::Temp {
                    file: BufWriter::with_capacity(1 << 16, file),
                    target: Some(path.to_path_buf()),
                }
            }
            None if format == OutputFormat::Npy => {
                let file = NamedTempFile::new().context("creating a temporary file for npy")?;
                Sink::Temp {
                    file: BufWriter::with_capacity(1 << 16, file),
                    target: None,
                }
            }
            None => Sink::Stdout(BufWriter::with_capacity(1 << 16, std::io::stdout())),
        };
        let name = path.map_or_else(|| "standard output".into(), |p| p.display().to_string());
        let mut writer = Self {
            format,
            sink,
            dim,
            rows: 0,
            name,
        };
        writer.start()?;
        Ok(writer)
    }

    fn start(&mut self) -> Result<()> {
        match self.format {
            OutputFormat::Npy => self.sink.write_all(&npy_header(0, self.dim)),
            OutputFormat::Csv => {
                let mut header = String::from("text");
                for i in 0..self.dim {
                    header.push_str(&format!(",e{i}"));
                }
                header.push('\n');
                self.sink.write_all(header.as_bytes())
            }
            OutputFormat::Jsonl => Ok(()),
        }
        .with_context(|| format!("writing {}", self.name))
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Appends `embeddings`, one row per text of `texts` (in the same order).
    pub fn write(&mut self, texts: &[String], embeddings: &Embeddings) -> Result<()> {
        assert_eq!(embeddings.dim, self.dim, "embedding width changed");
        assert_eq!(embeddings.len(), texts.len(), "one embedding per text");
        self.write_rows(texts, embeddings)
            .with_context(|| format!("writing {}", self.name))?;
        self.rows += texts.len() as u64;
        Ok(())
    }

    fn write_rows(&mut self, texts: &[String], embeddings: &Embeddings) -> std::io::Result<()> {
        let out = &mut self.sink;
        match self.format {
            OutputFormat::Jsonl => {
                for (text, embedding) in texts.iter().zip(embeddings.rows()) {
                    serde_json::to_writer(&mut *out, &JsonRow { text, embedding })?;
                    out.write_all(b"\n")?;
                }
            }
            OutputFormat::Npy => {
                let mut bytes = Vec::with_capacity(embeddings.values.len() * 4);
                for v in &embeddings.values {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
                out.write_all(&bytes)?;
            }
            OutputFormat::Csv => {
                let mut line = String::new();
                for (text, embedding) in texts.iter().zip(embeddings.rows()) {
                    line.clear();
                    csv_field(text, &mut line);
                    for v in embedding {
                        line.push_str(&format!(",{v}"));
                    }
                    line.push('\n');
                    out.write_all(line.as_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// Completes the output: fills in the npy shape, flushes, and renames the temporary file
    /// over the target (or copies it to standard output).
    pub fn finish(self) -> Result<()> {
        let Self {
            format,
            sink,
            dim,
            rows,
            name,
        } = self;
        let context = || format!("writing {name}");
        match sink {
            Sink::Stdout(mut w) => w.flush().with_context(context),
            Sink::Temp { file, target } => {
                let mut file = file
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(context)?;
                if format == OutputFormat::Npy {
                    file.seek(SeekFrom::Start(0)).with_context(context)?;
                    file.write_all(&npy_header(rows, dim))
                        .with_context(context)?;
                }
                file.flush().with_context(context)?;
                match target {
                    Some(target) => {
                        file.as_file().sync_all().with_context(context)?;
                        file.persist(&target)
                            .map_err(|e| e.error)
                            .with_context(|| format!("renaming the output into {name}"))?;
                    }
                    None => {
                        let mut reader: File = file.reopen().with_context(context)?;
                        let mut stdout = std::io::stdout().lock();
                        std::io::copy(&mut reader, &mut stdout).with_context(context)?;
                        stdout.flush().with_context(context)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Appends `text` to `line` as one CSV field, quoted when it holds a comma, quote, CR or LF.
fn csv_field(text: &str, line: &mut String) {
    if text.contains([',', '"', '\n', '\r']) {
        line.push('"');
        line.push_str(&text.replace('"', "\"\""));
        line.push('"');
    } else {
        line.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_fixed_size_and_aligned() {
        for (rows, dim) in [(0, 384), (3, 32), (u64::MAX, usize::MAX)] {
            let header = npy_header(rows, dim);
            assert_eq!(&header[..8], b"\x93NUMPY\x01\x00");
            assert_eq!(u16::from_le_bytes([header[8], header[9]]) as usize, 118);
            let dict = std::str::from_utf8(&header[10..]).unwrap();
            assert!(dict.starts_with(&format!(
                "{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}"
            )));
            assert!(dict.ends_with(" \n"));
        }
        assert_eq!(NPY_HEADER_LEN % 64, 0);
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        let mut line = String::new();
        csv_field("plain text", &mut line);
        line.push('|');
        csv_field("a, \"b\"", &mut line);
        assert_eq!(line, "plain text|\"a, \"\"b\"\"\"");
    }

    #[test]
    fn format_follows_the_extension() {
        assert_eq!(
            OutputFormat::from_extension(Path::new("x.NPY")),
            Some(OutputFormat::Npy)
        );
        assert_eq!(
            OutputFormat::from_extension(Path::new("d/x.csv")),
            Some(OutputFormat::Csv)
        );
        assert_eq!(
            OutputFormat::from_extension(Path::new("x.jsonl")),
            Some(OutputFormat::Jsonl)
        );
        assert_eq!(OutputFormat::from_extension(Path::new("x")), None);
    }

    #[test]
    fn file_output_is_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.npy");
        std::fs::write(&path, b"old").unwrap();
        let embeddings = Embeddings {
            dim: 2,
            values: vec![1.0, 2.0, 3.0, 4.0],
        };
        let texts = vec!["a".to_string(), "b".to_string()];
        let mut writer = EmbeddingWriter::create(OutputFormat::Npy, Some(&path), 2).unwrap();
        writer.write(&texts, &embeddings).unwrap();
        // Not finished: the old file is still there, and dropping the writer leaves it.
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        drop(writer);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let mut writer = EmbeddingWriter::create(OutputFormat::Npy, Some(&path), 2).unwrap();
        writer.write(&texts, &embeddings).unwrap();
        writer.write(&texts, &embeddings).unwrap();
        writer.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..NPY_HEADER_LEN], &npy_header(4, 2));
        assert_eq!(bytes.len(), NPY_HEADER_LEN + 4 * 2 * 4);
        assert_eq!(
            &bytes[NPY_HEADER_LEN..NPY_HEADER_LEN + 4],
            &1.0f32.to_le_bytes()
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
