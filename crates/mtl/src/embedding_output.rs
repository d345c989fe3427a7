//! Writing embeddings as JSON lines, NumPy `.npy` or CSV, row by row as they are computed.
//!
//! `--output FILE` is written through [`mtl_fs::OutputFile`]: a regular file (or a new path) is
//! written to a temporary file beside it (`.NAME.PID.XXXXXX.mtl-partial`, removed by a later
//! run if the process was killed) and renamed over it only when everything succeeded, so it is
//! either the old file (or absent) or complete, and keeps its mode (a new one gets `0o666` less
//! the umask); a symlink's target is written and the link kept; a character device or FIFO
//! (`/dev/null`, a named pipe) is written in place, never replaced. Without `--output` (or
//! with `-` or `/dev/stdout`), rows are streamed to standard output.
//!
//! The npy header holds the row count. A file gets a placeholder header, rewritten at the end.
//! An output that cannot seek (standard output, a device, a FIFO) gets its header first when
//! the number of texts is known before reading (arguments, or an input file, counted when
//! opened); otherwise (texts from a pipe) the rows are held in memory until the end: 4 × dim
//! bytes a text, 146.5 MiB for 100,000 texts of dim 384.

use std::fmt::Write as _;
use std::io::{BufWriter, IsTerminal, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use mtl_bert::Embeddings;
use mtl_fs::{OutputFile, parent};
use serde::Serialize;

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
    /// The usual file extension: `jsonl`, `npy` or `csv`.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Npy => "npy",
            Self::Csv => "csv",
        }
    }

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
    /// `--output`: replaced on [`OutputFile::commit`], or written in place (a device, FIFO).
    File(BufWriter<OutputFile>),
}

impl Sink {
    fn out(&mut self) -> &mut dyn Write {
        match self {
            Sink::Stdout(w) => w,
            Sink::File(w) => w,
        }
    }
}

/// How an npy output gets the row count into its header.
enum NpyCount {
    /// A placeholder header first, rewritten by [`EmbeddingWriter::finish`] (a seekable file).
    Rewrite,
    /// The header first, with the number of texts known before reading; `finish` checks that
    /// exactly that many rows came.
    Announced(u64),
    /// Rows held here, a block per [`EmbeddingWriter::write`] (no reallocation copies),
    /// until `finish` writes the header and them (an output that cannot seek, an input of
    /// unknown length).
    Buffered(Vec<Vec<u8>>),
}

/// Writes embeddings in one [`OutputFormat`] to `--output` or standard output.
pub struct EmbeddingWriter {
    format: OutputFormat,
    sink: Sink,
    /// `Some` for npy.
    npy: Option<NpyCount>,
    dim: usize,
    rows: u64,
    /// Whether the header is written.
    started: bool,
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
        match path.filter(|p| !is_stdout(p)) {
            Some(path) => {
                if path.is_dir() {
                    bail!(
                        "--output {} is a directory; give a file name (e.g. {}/embeddings.{})",
                        path.display(),
                        path.display(),
                        format.extension()
                    );
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

    /// Starts the output: `path` (see the module's documentation), or standard output when
    /// `None`, `-` or `/dev/stdout`. `texts`, when known, is the number of rows that will be
    /// written (it lets npy go to an output that cannot seek without holding the rows in
    /// memory). The csv or npy header is written with the first rows.
    pub fn create(
        format: OutputFormat,
        path: Option<&Path>,
        dim: usize,
        texts: Option<u64>,
    ) -> Result<Self> {
        Self::check_target(format, path)?;
        let path = path.filter(|p| !is_stdout(p));
        let (sink, seekable) = match path {
            Some(path) => {
                let mut file = OutputFile::create(path)
                    .with_context(|| format!("opening --output {}", path.display()))?;
                let direct = file.is_direct();
                if direct && format == OutputFormat::Npy && file.file_mut().is_terminal() {
                    bail!(
                        "refusing to write binary npy to the terminal {}: give a file",
                        path.display()
                    );
                }
                (Sink::File(BufWriter::with_capacity(1 << 16, file)), !direct)
            }
            None => (
                Sink::Stdout(BufWriter::with_capacity(1 << 16, std::io::stdout())),
                false,
            ),
        };
        let npy = (format == OutputFormat::Npy).then(|| match texts {
            _ if seekable => NpyCount::Rewrite,
            Some(n) => NpyCount::Announced(n),
            None => NpyCount::Buffered(Vec::new()),
        });
        let name = path.map_or_else(|| "standard output".into(), |p| p.display().to_string());
        Ok(Self {
            format,
            sink,
            npy,
            dim,
            rows: 0,
            started: false,
            name,
        })
    }

    /// Writes the csv or npy header, before the first rows (or at the end when there are
    /// none): a run that fails on its first texts writes nothing at all.
    fn start(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.started, true) {
            return Ok(());
        }
        let dim = self.dim;
        let out = self.sink.out();
        match (self.format, &self.npy) {
            (OutputFormat::Npy, Some(NpyCount::Rewrite)) => out.write_all(&npy_header(0, dim)),
            (OutputFormat::Npy, Some(NpyCount::Announced(n))) => {
                out.write_all(&npy_header(*n, dim))
            }
            (OutputFormat::Csv, _) => {
                let mut header = String::from("text");
                for i in 0..dim {
                    let _ = write!(header, ",e{i}");
                }
                header.push('\n');
                out.write_all(header.as_bytes())
            }
            _ => Ok(()),
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
        let rows = self.rows + texts.len() as u64;
        if let Some(NpyCount::Announced(n)) = self.npy
            && rows > n
        {
            bail!(
                "writing {}: the input holds more than the {n} texts counted when it was \
                 opened (it changed while being read); the npy header is wrong",
                self.name
            );
        }
        self.start()?;
        let written = match &mut self.npy {
            Some(NpyCount::Buffered(blocks)) => {
                let mut block = Vec::with_capacity(embeddings.values.len() * 4);
                let written = write_rows(self.format, &mut block, texts, embeddings);
                blocks.push(block);
                written
            }
            _ => write_rows(self.format, self.sink.out(), texts, embeddings),
        };
        written.with_context(|| format!("writing {}", self.name))?;
        self.rows = rows;
        Ok(())
    }

    /// Completes the output: writes or fills in the npy header, flushes, and puts a file in
    /// place (renaming the temporary file over the target).
    pub fn finish(mut self) -> Result<()> {
        self.start()?;
        let Self {
            mut sink,
            npy,
            dim,
            rows,
            name,
            ..
        } = self;
        let context = || format!("writing {name}");
        match &npy {
            Some(NpyCount::Announced(n)) if *n != rows => bail!(
                "writing {name}: the input held {rows} texts, not the {n} counted when it was \
                 opened (it changed while being read); the npy header is wrong"
            ),
            Some(NpyCount::Buffered(blocks)) => {
                let out = sink.out();
                out.write_all(&npy_header(rows, dim))
                    .with_context(context)?;
                for block in blocks {
                    out.write_all(block).with_context(context)?;
                }
            }
            _ => {}
        }
        match sink {
            Sink::Stdout(mut w) => w.flush().with_context(context),
            Sink::File(w) => {
                let mut file = w
                    .into_inner()
                    .map_err(|e| e.into_error())
                    .with_context(context)?;
                if let Some(NpyCount::Rewrite) = npy {
                    let file = file.file_mut();
                    file.seek(SeekFrom::Start(0)).with_context(context)?;
                    file.write_all(&npy_header(rows, dim))
                        .with_context(context)?;
                }
                file.commit().with_context(context)
            }
        }
    }
}

/// Whether `--output` names standard output: `-` or `/dev/stdout`. Written to through the
/// process's own descriptor, so a pipe, a terminal or a file opened with `>>` gets the rows as
/// they would without `--output` (reopening `/dev/stdout` would write a file from its start).
fn is_stdout(path: &Path) -> bool {
    path == Path::new("-") || path == Path::new("/dev/stdout")
}

/// Writes one row per text in `format` (npy: the values only, without a header).
fn write_rows(
    format: OutputFormat,
    out: &mut dyn Write,
    texts: &[String],
    embeddings: &Embeddings,
) -> std::io::Result<()> {
    match format {
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
                    let _ = write!(line, ",{v}");
                }
                line.push('\n');
                out.write_all(line.as_bytes())?;
            }
        }
    }
    Ok(())
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

    /// The `.npy` format 1.0 header of a little-endian float32 C-order array whose shape is
    /// spelled `shape` in the dictionary (e.g. `(3, 32)`), written out from the NumPy format
    /// spec (numpy/lib/format.py), independently of [`npy_header`]: the magic `\x93NUMPY`,
    /// version 1 0, the dictionary's length as a little-endian u16 (here always 118 = 0x76),
    /// then the dictionary, padded with spaces and ended by `\n` so that magic, version, length
    /// and dictionary fill 128 bytes (a multiple of 64: NumPy aligns the data to 64 bytes).
    /// `pad` is the number of spaces, counted by hand for each shape. (numpy 2.4's `np.save`
    /// writes these same 128 bytes for the shapes below, u64::MAX included.)
    fn spec_header(shape: &str, pad: usize) -> Vec<u8> {
        let mut header = vec![0x93, b'N', b'U', b'M', b'P', b'Y', 0x01, 0x00, 0x76, 0x00];
        header.extend_from_slice(b"{'descr': '<f4', 'fortran_order': False, 'shape': ");
        header.extend_from_slice(shape.as_bytes());
        header.extend_from_slice(b", }");
        header.extend(std::iter::repeat_n(b' ', pad));
        header.push(b'\n');
        assert_eq!(header.len(), 128, "{shape}: the pad was miscounted");
        header
    }

    #[test]
    fn npy_header_is_the_numpy_format_spec_header() {
        // One in full, byte by byte: 10 + 60 + 57 + 1 = 128.
        let mut expected = b"\x93NUMPY\x01\x00\x76\x00".to_vec();
        expected.extend_from_slice(b"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 32), }");
        expected.extend_from_slice(&[b' '; 57]);
        expected.extend_from_slice(b"\n");
        assert_eq!(npy_header(3, 32).as_slice(), expected.as_slice());
        assert_eq!(expected, spec_header("(3, 32)", 57));

        assert_eq!(npy_header(0, 384).as_slice(), spec_header("(0, 384)", 56));
        assert_eq!(npy_header(4, 2).as_slice(), spec_header("(4, 2)", 58));
        // The largest shape still fits, with 20 spaces to spare.
        assert_eq!(
            npy_header(u64::MAX, usize::MAX).as_slice(),
            spec_header("(18446744073709551615, 18446744073709551615)", 20)
        );
        assert_eq!(NPY_HEADER_LEN, 128);
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
        let mut writer = EmbeddingWriter::create(OutputFormat::Npy, Some(&path), 2, None).unwrap();
        writer.write(&texts, &embeddings).unwrap();
        // Not finished: the old file is still there, and dropping the writer leaves it.
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        drop(writer);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let mut writer = EmbeddingWriter::create(OutputFormat::Npy, Some(&path), 2, None).unwrap();
        writer.write(&texts, &embeddings).unwrap();
        writer.write(&texts, &embeddings).unwrap();
        writer.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // The header of 4 rows of 2, then 1 2 3 4 1 2 3 4 as little-endian IEEE-754 float32.
        let mut expected = spec_header("(4, 2)", 58);
        for _ in 0..2 {
            expected.extend_from_slice(&[0x00, 0x00, 0x80, 0x3f]); // 1.0
            expected.extend_from_slice(&[0x00, 0x00, 0x00, 0x40]); // 2.0
            expected.extend_from_slice(&[0x00, 0x00, 0x40, 0x40]); // 3.0
            expected.extend_from_slice(&[0x00, 0x00, 0x80, 0x40]); // 4.0
        }
        assert_eq!(bytes, expected);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    fn two_rows() -> (Vec<String>, Embeddings) {
        let embeddings = Embeddings {
            dim: 2,
            values: vec![1.0, 2.0, 3.0, 4.0],
        };
        (vec!["a".to_string(), "b".to_string()], embeddings)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn npy_to_a_fifo_announces_or_buffers_the_row_count() {
        let dir = tempfile::tempdir().unwrap();
        let (texts, embeddings) = two_rows();
        let file = dir.path().join("file.npy");
        let mut writer = EmbeddingWriter::create(OutputFormat::Npy, Some(&file), 2, None).unwrap();
        writer.write(&texts, &embeddings).unwrap();
        writer.write(&texts, &embeddings).unwrap();
        writer.finish().unwrap();
        let expected = std::fs::read(&file).unwrap();
        assert_eq!(
            &expected[..NPY_HEADER_LEN],
            spec_header("(4, 2)", 58).as_slice()
        );

        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        // The count known in advance (header first), then unknown (rows held until the end).
        for count in [Some(4), None] {
            let reader = {
                let fifo = fifo.clone();
                std::thread::spawn(move || std::fs::read(&fifo).unwrap())
            };
            let mut writer =
                EmbeddingWriter::create(OutputFormat::Npy, Some(&fifo), 2, count).unwrap();
            writer.write(&texts, &embeddings).unwrap();
            writer.write(&texts, &embeddings).unwrap();
            writer.finish().unwrap();
            assert_eq!(reader.join().unwrap(), expected, "count {count:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn an_announced_row_count_is_held_to() {
        let (texts, embeddings) = two_rows();
        let null = Path::new("/dev/null");
        let mut writer =
            EmbeddingWriter::create(OutputFormat::Npy, Some(null), 2, Some(3)).unwrap();
        writer.write(&texts, &embeddings).unwrap();
        let err = writer.write(&texts, &embeddings).unwrap_err().to_string();
        assert!(err.contains("more than the 3 texts counted"), "{err}");

        let mut writer =
            EmbeddingWriter::create(OutputFormat::Npy, Some(null), 2, Some(3)).unwrap();
        writer.write(&texts, &embeddings).unwrap();
        let err = writer.finish().unwrap_err().to_string();
        assert!(err.contains("held 2 texts, not the 3 counted"), "{err}");
    }
}
