//! Source text and positions.
//!
//! Every syntax node carries a [`Span`] (byte offsets into [`SourceFile::text`]); this module
//! turns spans into the 1-based line and column pairs that diagnostics report. It exists so
//! that position arithmetic (BOM, CRLF, multi-byte characters) is done in exactly one place.

use serde::Serialize;

/// A half-open byte range `start..end` into a [`SourceFile`]'s text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// A span from `start` to `end` (byte offsets).
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// The smallest span covering both `self` and `other`.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }

    /// Whether the span covers no byte.
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// A 1-based line and column; the column counts Unicode scalar values, not bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LineCol {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

/// One Kubefile's text, with its display name and a line index.
///
/// A UTF-8 byte order mark is removed before anything else sees the text; CRLF line endings
/// are kept in `text` (spans stay byte-exact) and treated as one line break by [`Self::line_col`].
#[derive(Debug, Clone)]
pub struct SourceFile {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// Wraps `text` (a leading BOM is dropped) under the display `name` (usually its path).
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let mut text = text.into();
        if text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// Reads a Kubefile from bytes, replacing invalid UTF-8 sequences (the parser reports them).
    pub fn from_bytes(name: impl Into<String>, bytes: &[u8]) -> Self {
        Self::new(name, String::from_utf8_lossy(bytes).into_owned())
    }

    /// The display name (a path, or `-` for standard input).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The text, without a byte order mark.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The text covered by `span` (clamped to the text and to character boundaries).
    pub fn slice(&self, span: Span) -> &str {
        let end = self.floor_char_boundary(span.end.min(self.text.len()));
        let start = self.floor_char_boundary(span.start.min(end));
        &self.text[start..end]
    }

    /// Number of lines (a trailing newline does not start a counted line of its own).
    pub fn line_count(&self) -> usize {
        if self.text.ends_with('\n') {
            self.line_starts.len() - 1
        } else {
            self.line_starts.len()
        }
    }

    /// The text of 1-based line `line`, without its line break.
    pub fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.line_starts.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = self
            .line_starts
            .get(line)
            .map(|&next| next - 1)
            .unwrap_or(self.text.len());
        self.text[start..end].trim_end_matches('\r')
    }

    /// The 1-based line and column of byte `offset` (clamped into the text).
    pub fn line_col(&self, offset: usize) -> LineCol {
        let offset = self.floor_char_boundary(offset.min(self.text.len()));
        let line_index = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line_index];
        let column = self.text[start..offset].chars().count() + 1;
        LineCol {
            line: line_index + 1,
            column,
        }
    }

    fn floor_char_boundary(&self, mut offset: usize) -> usize {
        while offset > 0 && !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bom_crlf_and_multibyte_columns() {
        let src = SourceFile::new("k", "\u{feff}FROM a\r\nLABEL é=1 x=2\n");
        assert_eq!(src.text().len(), "FROM a\r\nLABEL é=1 x=2\n".len());
        assert_eq!(src.line_col(0), LineCol { line: 1, column: 1 });
        let x = src.text().find("x=2").unwrap();
        assert_eq!(
            src.line_col(x),
            LineCol {
                line: 2,
                column: 11
            }
        );
        assert_eq!(src.line_text(1), "FROM a");
        assert_eq!(src.line_count(), 2);
        assert_eq!(src.line_col(10_000), LineCol { line: 3, column: 1 });
    }
}
