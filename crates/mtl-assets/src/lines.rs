//! Line numbers of the records a `csv` reader reports.

/// Line numbers (1-based, counted by `\n`) of byte offsets met in increasing order, for the
/// errors of CSV and TSV readers.
///
/// The `csv` crate's own line count lags by one after a CRLF (it stops at the `\r` and takes
/// the `\n` as the start of the next record), so lines are counted here from record offsets,
/// skipping the line terminator a record's offset may point at.
#[derive(Debug, Clone)]
pub struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    /// A counter at line 1 of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    /// The line of the first byte at or after `offset` that is not `\r` or `\n`.
    pub fn line_at(&mut self, offset: usize) -> usize {
        let mut start = offset.min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        if start >= self.offset {
            self.line += self.bytes[self.offset..start]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.offset = start;
        }
        self.line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_on_a_line_terminator_count_the_next_line() {
        let bytes = b"a,b\r\n1,2\r\n3,4\n";
        let mut lines = LineCounter::new(bytes);
        assert_eq!(lines.line_at(0), 1);
        // The csv crate reports the second record at the `\n` of the first line's CRLF.
        assert_eq!(lines.line_at(4), 2);
        assert_eq!(lines.line_at(10), 3);
        assert_eq!(lines.line_at(bytes.len()), 4);
    }
}
