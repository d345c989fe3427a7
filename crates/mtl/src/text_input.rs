//! Texts to embed: command-line arguments, a file or standard input, one text per line, read
//! in chunks so that a large file is never held in memory at once.

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

/// `--input` and `--lossy`: where texts come from when none are given as arguments.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// Read texts from FILE, one per line (`-` is standard input). Without TEXT arguments or
    /// --input, texts are read from standard input. Line endings (`\n` or `\r\n`) and a
    /// leading UTF-8 byte-order mark are removed; an empty line is the empty text.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Replace bytes that are not UTF-8 with U+FFFD instead of failing on the first such line.
    #[arg(long)]
    pub lossy: bool,
}

/// Where texts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TextSource {
    /// The command's arguments.
    Args(Vec<String>),
    /// A file, one text per line.
    File(PathBuf),
    /// Standard input, one text per line.
    Stdin,
}

impl InputArgs {
    /// The source: `texts` when there are any, else `--input`, else standard input.
    pub fn source(&self, texts: &[String]) -> Result<TextSource> {
        match (&self.input, texts.is_empty()) {
            (Some(path), true) if path.as_os_str() == "-" => Ok(TextSource::Stdin),
            (Some(path), true) => Ok(TextSource::File(path.clone())),
            (Some(path), false) => bail!(
                "texts given both as arguments and with --input {}; use one or the other",
                path.display()
            ),
            (None, false) => Ok(TextSource::Args(texts.to_vec())),
            (None, true) => Ok(TextSource::Stdin),
        }
    }
}

/// Reads texts from a [`TextSource`] chunk by chunk, numbering lines for error messages.
pub struct TextReader {
    lines: Option<Box<dyn BufRead>>,
    args: std::vec::IntoIter<String>,
    name: String,
    line: usize,
    lossy: bool,
    total: Option<usize>,
}

impl TextReader {
    /// Opens the source. A regular file is counted first (one fast pass) so progress can show
    /// a total.
    pub fn open(source: &TextSource, lossy: bool) -> Result<Self> {
        let (lines, args, name, total): (Option<Box<dyn BufRead>>, _, _, _) = match source {
            TextSource::Args(texts) => (None, texts.clone(), "arguments".into(), Some(texts.len())),
            TextSource::File(path) => {
                let metadata = std::fs::metadata(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                if metadata.is_dir() {
                    bail!(
                        "--input {} is a directory, not a file of texts",
                        path.display()
                    );
                }
                // A pipe (`--input <(cmd)`) can be read once only: no count for it.
                let total = if metadata.is_file() {
                    Some(count_lines(path)?)
                } else {
                    None
                };
                let file =
                    File::open(path).with_context(|| format!("opening {}", path.display()))?;
                let reader = BufReader::with_capacity(1 << 16, file);
                (
                    Some(Box::new(reader)),
                    Vec::new(),
                    path.display().to_string(),
                    total,
                )
            }
            TextSource::Stdin => {
                if std::io::stdin().is_terminal() {
                    eprintln!("reading texts from standard input, one per line (end with Ctrl-D)");
                }
                let reader = BufReader::with_capacity(1 << 16, std::io::stdin());
                (
                    Some(Box::new(reader)),
                    Vec::new(),
                    "standard input".into(),
                    None,
                )
            }
        };
        Ok(Self {
            lines,
            args: args.into_iter(),
            name,
            line: 0,
            lossy,
            total,
        })
    }

    /// Reads from any [`BufRead`] (for tests and library callers); `name` appears in errors.
    pub fn from_reader(reader: impl BufRead + 'static, name: &str, lossy: bool) -> Self {
        Self {
            lines: Some(Box::new(reader)),
            args: Vec::new().into_iter(),
            name: name.into(),
            line: 0,
            lossy,
            total: None,
        }
    }

    /// How many texts the source holds, when known before reading (arguments and files).
    pub fn total(&self) -> Option<usize> {
        self.total
    }

    /// The next `max` texts or fewer; empty at the end.
    pub fn next_chunk(&mut self, max: usize) -> Result<Vec<String>> {
        let mut texts = Vec::with_capacity(max.min(4096));
        let Some(reader) = self.lines.as_mut() else {
            texts.extend(self.args.by_ref().take(max));
            return Ok(texts);
        };
        let mut buf = Vec::new();
        while texts.len() < max {
            buf.clear();
            let read = reader
                .read_until(b'\n', &mut buf)
                .with_context(|| format!("reading {}", self.name))?;
            if read == 0 {
                break;
            }
            self.line += 1;
            texts.push(decode_line(&buf, self.line, &self.name, self.lossy)?);
        }
        Ok(texts)
    }
}

/// One line without its `\n` or `\r\n` (and, on line 1, without a UTF-8 byte-order mark), as a
/// string; invalid UTF-8 is an error naming the line, or replaced when `lossy`.
pub fn decode_line(raw: &[u8], line: usize, source: &str, lossy: bool) -> Result<String> {
    let mut bytes = raw.strip_suffix(b"\n").unwrap_or(raw);
    bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if line == 1 {
        bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(_) if lossy => Ok(String::from_utf8_lossy(bytes).into_owned()),
        Err(e) => bail!(
            "{source}: line {line} is not valid UTF-8 (invalid byte 0x{:02x} at byte {} of the \
             line); convert the file to UTF-8 (e.g. `iconv -f latin1 -t utf-8`) or pass --lossy \
             to replace invalid bytes with U+FFFD",
            bytes[e.valid_up_to()],
            e.valid_up_to() + 1
        ),
    }
}

/// The number of lines of a file: newlines, plus one for a last line without a newline.
pub fn count_lines(path: &Path) -> Result<usize> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut last) = (0, b'\n');
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
        last = buf[n - 1];
    }
    Ok(lines + usize::from(last != b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &'static [u8], lossy: bool, chunk: usize) -> Result<Vec<Vec<String>>> {
        let mut reader = TextReader::from_reader(bytes, "test", lossy);
        let mut chunks = Vec::new();
        loop {
            let texts = reader.next_chunk(chunk)?;
            if texts.is_empty() {
                return Ok(chunks);
            }
            chunks.push(texts);
        }
    }

    #[test]
    fn lines_lose_their_endings_and_keep_empty_ones() {
        let chunks = read_all(b"\xEF\xBB\xBFone\r\ntwo\n\nfour", false, 2).unwrap();
        assert_eq!(chunks, vec![vec!["one", "two"], vec!["", "four"]]);
        assert_eq!(read_all(b"", false, 2).unwrap(), Vec::<Vec<String>>::new());
        assert_eq!(read_all(b"\n", false, 2).unwrap(), vec![vec![""]]);
    }

    #[test]
    fn invalid_utf8_names_the_line_or_is_replaced() {
        let err = read_all(b"ok\nfine\nbad \xff byte\n", false, 2)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("test: line 3 is not valid UTF-8"), "{err}");
        assert!(err.contains("0xff at byte 5"), "{err}");
        assert!(err.contains("--lossy"), "{err}");
        let chunks = read_all(b"bad \xff byte\n", true, 2).unwrap();
        assert_eq!(chunks, vec![vec!["bad \u{FFFD} byte"]]);
    }

    #[test]
    fn counts_lines_with_and_without_final_newline() {
        let dir = tempfile::tempdir().unwrap();
        for (content, expected) in [
            (&b""[..], 0),
            (b"a", 1),
            (b"a\n", 1),
            (b"a\nb", 2),
            (b"\n\n", 2),
        ] {
            let path = dir.path().join("t.txt");
            std::fs::write(&path, content).unwrap();
            assert_eq!(count_lines(&path).unwrap(), expected, "{content:?}");
        }
    }

    #[test]
    fn arguments_and_input_exclude_each_other() {
        let args = InputArgs {
            input: Some("f.txt".into()),
            lossy: false,
        };
        assert!(args.source(&["x".into()]).is_err());
        assert_eq!(args.source(&[]).unwrap(), TextSource::File("f.txt".into()));
        let stdin = InputArgs {
            input: Some("-".into()),
            lossy: false,
        };
        assert_eq!(stdin.source(&[]).unwrap(), TextSource::Stdin);
    }
}
