//! Reading the four source formats into labelled examples.
//!
//! Every reader keeps the text exactly as the source has it, except where the format itself
//! requires a change, which is stated on the reader: nothing is trimmed, lower-cased or
//! re-encoded. A row (or a BBC article file) whose bytes are not valid UTF-8 is dropped and
//! counted; any other surprise in the format is an error, never a silent skip.

use crate::LineCounter;
use crate::archive::Member;
use crate::error::{Error, Result};

/// The source formats of the data sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceFormat {
    /// BBC News: one article per file, `<dir>/<label>/NNN.txt`. Line 1 is the headline, line 2
    /// is blank, line 3 is the first paragraph (then more paragraphs, not used).
    ///
    /// The text is the headline and the first paragraph joined by `". "`, or by `" "` when the
    /// headline already ends in `.`, `!` or `?` (possibly followed by a closing `'` or `"`).
    /// The directory `sports` holds the label `sport` (the label's name in Greene &
    /// Cunningham's release); the others are named as their directories. The id is
    /// `bbc/<directory>/<file stem>`, e.g. `bbc/sports/001`. A file with invalid UTF-8 anywhere
    /// in it is dropped.
    BbcArticles,
    /// CrowdFlower tweets: a CSV with the header `sentiment,confidence,text` (CRLF between
    /// records; quoted fields may hold `"` as `""` and bare carriage returns, which stay in the
    /// text). The label is the `sentiment` field as it is (`negative`, `neutral`, `positive`);
    /// `confidence` is not used. The id is `tweets/row-N`, N counting data records from 1.
    CrowdFlowerCsv,
    /// Pang & Lee sentence polarity: a UTF-8 CSV starting with a byte order mark, no header,
    /// records `"1","text"` (positive) or `"-1","text"` (negative). Every text ends with the
    /// newline of the original one-sentence-per-line files inside its quotes: that one `\n`
    /// is removed, as is the BOM; the space before it stays. The id is `polarity/row-N`.
    PangLeeCsv,
    /// UCI Sentiment Labelled Sentences: one `text<TAB>label` per line, label `0` (negative)
    /// or `1` (positive); the text is everything before the last tab. The id is
    /// `<name>/row-N`, N the line number.
    UciTsv,
}

/// One labelled example as extracted from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Example {
    /// A stable id naming the example's place in the source.
    pub id: String,
    /// The text, as built by the source's reader.
    pub text: String,
    /// The label's name.
    pub label: &'static str,
}

/// What a reader got out of a source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Extracted {
    /// The examples, in source order.
    pub examples: Vec<Example>,
    /// Rows (or article files) read, dropped ones included.
    pub source_rows: usize,
    /// Rows dropped because their bytes are not valid UTF-8.
    pub invalid_utf8: usize,
}

impl SourceFormat {
    /// Reads `members` (the files under the data set's member path, sorted by path) into
    /// examples labelled from `labels`, with ids prefixed by `name`.
    pub(crate) fn read(
        self,
        name: &str,
        members: &[Member],
        labels: &'static [&'static str],
    ) -> Result<Extracted> {
        match self {
            Self::BbcArticles => read_bbc(name, members, labels),
            Self::CrowdFlowerCsv => read_crowdflower(name, single(members)?, labels),
            Self::PangLeeCsv => read_pang_lee(name, single(members)?, labels),
            Self::UciTsv => read_uci(name, single(members)?, labels),
        }
    }
}

fn single(members: &[Member]) -> Result<&Member> {
    match members {
        [member] => Ok(member),
        _ => Err(Error::Source {
            file: members
                .iter()
                .map(|m| m.path.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            line: 0,
            message: format!("expected exactly one file, found {}", members.len()),
        }),
    }
}

fn bad(file: &str, line: usize, message: impl Into<String>) -> Error {
    Error::Source {
        file: file.to_owned(),
        line,
        message: message.into(),
    }
}

fn label_named(
    labels: &'static [&'static str],
    name: &str,
    file: &str,
    line: usize,
) -> Result<&'static str> {
    labels.iter().copied().find(|l| *l == name).ok_or_else(|| {
        bad(
            file,
            line,
            format!("unknown label {name:?} (known: {labels:?})"),
        )
    })
}

/// Joins a BBC headline and first paragraph (see [`SourceFormat::BbcArticles`]).
pub(crate) fn join_headline(headline: &str, paragraph: &str) -> String {
    let ends_sentence = headline
        .trim_end_matches(['\'', '"'])
        .ends_with(['.', '!', '?']);
    let separator = if ends_sentence { " " } else { ". " };
    format!("{headline}{separator}{paragraph}")
}

fn read_bbc(name: &str, members: &[Member], labels: &'static [&'static str]) -> Result<Extracted> {
    let mut out = Extracted::default();
    for member in members {
        let parts: Vec<&str> = member.path.rsplit('/').take(2).collect();
        let [file, dir] = parts[..] else {
            return Err(bad(&member.path, 0, "expected <label>/<file>.txt"));
        };
        let Some(stem) = file.strip_suffix(".txt") else {
            continue;
        };
        out.source_rows += 1;
        let label = if dir == "sports" { "sport" } else { dir };
        let label = label_named(labels, label, &member.path, 0)?;
        let Ok(content) = std::str::from_utf8(&member.bytes) else {
            out.invalid_utf8 += 1;
            continue;
        };
        let mut lines = content.split('\n');
        let headline = lines.next().unwrap_or_default();
        let blank = lines.next();
        let paragraph = lines.next().unwrap_or_default();
        if headline.is_empty() || blank != Some("") || paragraph.is_empty() {
            return Err(bad(
                &member.path,
                1,
                "expected a headline, a blank line and a paragraph",
            ));
        }
        out.examples.push(Example {
            id: format!("{name}/{dir}/{stem}"),
            text: join_headline(headline, paragraph),
            label,
        });
    }
    Ok(out)
}

/// Reads CSV records as bytes; calls `row(number, line, fields)` for each, `number` counting
/// records from 1 and `line` the line the record starts on.
fn read_csv_records(
    member: &Member,
    bytes: &[u8],
    has_headers: bool,
    mut row: impl FnMut(usize, usize, &csv::ByteRecord) -> Result<()>,
) -> Result<Option<csv::ByteRecord>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(has_headers)
        .from_reader(bytes);
    let headers = if has_headers {
        let headers = reader
            .byte_headers()
            .map_err(|e| bad(&member.path, 1, e.to_string()))?;
        Some(headers.clone())
    } else {
        None
    };
    let mut record = csv::ByteRecord::new();
    let mut number = 0;
    let mut lines = LineCounter::new(bytes);
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                number += 1;
                let line = lines.line_at(record.position().map_or(0, |p| p.byte() as usize));
                row(number, line, &record)?;
            }
            Err(e) => {
                let line = lines.line_at(e.position().map_or(0, |p| p.byte() as usize));
                return Err(bad(&member.path, line, e.to_string()));
            }
        }
    }
    Ok(headers)
}

fn utf8_fields(record: &csv::ByteRecord) -> Option<Vec<&str>> {
    record.iter().map(|f| std::str::from_utf8(f).ok()).collect()
}

fn read_crowdflower(
    name: &str,
    member: &Member,
    labels: &'static [&'static str],
) -> Result<Extracted> {
    let mut out = Extracted::default();
    let headers = read_csv_records(member, &member.bytes, true, |number, line, record| {
        out.source_rows += 1;
        let Some(fields) = utf8_fields(record) else {
            out.invalid_utf8 += 1;
            return Ok(());
        };
        let [sentiment, _confidence, text] = fields[..] else {
            return Err(bad(&member.path, line, "expected 3 fields"));
        };
        out.examples.push(Example {
            id: format!("{name}/row-{number}"),
            text: text.to_owned(),
            label: label_named(labels, sentiment, &member.path, line)?,
        });
        Ok(())
    })?;
    let headers = headers.expect("read with headers");
    if headers.iter().collect::<Vec<_>>() != [&b"sentiment"[..], b"confidence", b"text"] {
        return Err(bad(
            &member.path,
            1,
            "expected the header sentiment,confidence,text",
        ));
    }
    Ok(out)
}

fn read_pang_lee(
    name: &str,
    member: &Member,
    labels: &'static [&'static str],
) -> Result<Extracted> {
    let Some(bytes) = member.bytes.strip_prefix(b"\xEF\xBB\xBF") else {
        return Err(bad(&member.path, 1, "expected a UTF-8 byte order mark"));
    };
    let mut out = Extracted::default();
    read_csv_records(member, bytes, false, |number, line, record| {
        out.source_rows += 1;
        let Some(fields) = utf8_fields(record) else {
            out.invalid_utf8 += 1;
            return Ok(());
        };
        let [polarity, text] = fields[..] else {
            return Err(bad(&member.path, line, "expected 2 fields"));
        };
        let label = match polarity {
            "1" => "positive",
            "-1" => "negative",
            other => return Err(bad(&member.path, line, format!("polarity {other:?}"))),
        };
        out.examples.push(Example {
            id: format!("{name}/row-{number}"),
            text: text.strip_suffix('\n').unwrap_or(text).to_owned(),
            label: label_named(labels, label, &member.path, line)?,
        });
        Ok(())
    })?;
    Ok(out)
}

fn read_uci(name: &str, member: &Member, labels: &'static [&'static str]) -> Result<Extracted> {
    let mut out = Extracted::default();
    let bytes = member.bytes.strip_suffix(b"\n").unwrap_or(&member.bytes);
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = i + 1;
        out.source_rows += 1;
        let Ok(line) = std::str::from_utf8(line) else {
            out.invalid_utf8 += 1;
            continue;
        };
        let Some((text, label)) = line.rsplit_once('\t') else {
            return Err(bad(&member.path, number, "expected text<TAB>label"));
        };
        let label = match label {
            "0" => "negative",
            "1" => "positive",
            other => return Err(bad(&member.path, number, format!("label {other:?}"))),
        };
        out.examples.push(Example {
            id: format!("{name}/row-{number}"),
            text: text.to_owned(),
            label: label_named(labels, label, &member.path, number)?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BINARY: &[&str] = &["negative", "positive"];
    const SENTIMENT: &[&str] = &["negative", "neutral", "positive"];

    fn member(path: &str, bytes: &[u8]) -> Member {
        Member {
            path: path.into(),
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn headlines_join_their_first_paragraph() {
        assert_eq!(
            join_headline("Ad sales up", "Profits rose."),
            "Ad sales up. Profits rose."
        );
        assert_eq!(
            join_headline("Users 'lose patience'", "P."),
            "Users 'lose patience'. P."
        );
        assert_eq!(join_headline("What now?", "P."), "What now? P.");
        assert_eq!(
            join_headline("'My memories...'", "P."),
            "'My memories...' P."
        );
    }

    #[test]
    fn bbc_articles() {
        const TOPICS: &[&str] = &["business", "sport"];
        let members = [
            member("d/business/001.txt", b"Head\n\nFirst para.\n\nSecond.\n"),
            member("d/sports/007.txt", b"Win!\n\nThey won.\n"),
            member("d/sports/008.txt", b"Bad\n\n\xa3 sign\n"),
            member("d/sports/README", b"not an article"),
        ];
        let out = SourceFormat::BbcArticles
            .read("bbc", &members, TOPICS)
            .unwrap();
        assert_eq!((out.source_rows, out.invalid_utf8), (3, 1));
        assert_eq!(
            out.examples,
            [
                Example {
                    id: "bbc/business/001".into(),
                    text: "Head. First para.".into(),
                    label: "business"
                },
                Example {
                    id: "bbc/sports/007".into(),
                    text: "Win! They won.".into(),
                    label: "sport"
                },
            ]
        );
        let odd = [member("d/business/002.txt", b"Head\nno blank line\n")];
        let err = SourceFormat::BbcArticles.read("bbc", &odd, TOPICS);
        assert!(err.unwrap_err().to_string().contains("d/business/002.txt"));
    }

    #[test]
    fn crowdflower_csv_keeps_quoted_carriage_returns_and_drops_invalid_utf8() {
        let csv = b"sentiment,confidence,text\r\nnegative,0.7,\"a \"\"quote\"\"\rand more\"\r\n\
            neutral,,b\xff\r\npositive,1,c";
        let out = SourceFormat::CrowdFlowerCsv
            .read("tweets", &[member("t.csv", csv)], SENTIMENT)
            .unwrap();
        assert_eq!((out.source_rows, out.invalid_utf8), (3, 1));
        assert_eq!(out.examples[0].text, "a \"quote\"\rand more");
        assert_eq!(out.examples[0].id, "tweets/row-1");
        assert_eq!(out.examples[1].id, "tweets/row-3");
        assert_eq!(out.examples[1].label, "positive");
        let unknown = b"sentiment,confidence,text\r\nangry,1,x\r\n";
        let err = SourceFormat::CrowdFlowerCsv
            .read("tweets", &[member("t.csv", unknown)], SENTIMENT)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t.csv line 2") && err.contains("\"angry\""),
            "{err}"
        );
    }

    #[test]
    fn pang_lee_csv_strips_the_bom_and_the_final_newline() {
        let csv = "\u{feff}\"1\",\"a \"\" b . \n\"\r\n\"-1\",\"c . \n\"";
        let out = SourceFormat::PangLeeCsv
            .read("polarity", &[member("p.csv", csv.as_bytes())], BINARY)
            .unwrap();
        let got: Vec<(&str, &str)> = out
            .examples
            .iter()
            .map(|e| (e.text.as_str(), e.label))
            .collect();
        assert_eq!(got, [("a \" b . ", "positive"), ("c . ", "negative")]);
        assert_eq!(out.examples[1].id, "polarity/row-2");
    }

    #[test]
    fn uci_lines_split_at_the_last_tab() {
        let tsv = b"Good\tcase.\t1\nBad.\t0\n";
        let out = SourceFormat::UciTsv
            .read("amazon", &[member("a.txt", tsv)], BINARY)
            .unwrap();
        assert_eq!(out.examples[0].text, "Good\tcase.");
        assert_eq!(out.examples[1].label, "negative");
        assert_eq!(out.examples[1].id, "amazon/row-2");
        let err = SourceFormat::UciTsv
            .read("amazon", &[member("a.txt", b"ok\t1\nno label\n")], BINARY)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.txt line 2"), "{err}");
    }
}
