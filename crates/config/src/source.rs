//! Byte offsets to `LINE:COL` positions.

use std::ops::Range;

/// A 1-based line and column (in characters) within a source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters (not bytes).
    pub column: usize,
}

/// The text of a configuration file and its name, as printed in errors.
#[derive(Clone, Debug)]
pub(crate) struct Source<'a> {
    pub(crate) name: &'a str,
    pub(crate) text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub(crate) fn new(name: &'a str, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Source {
            name,
            text,
            line_starts,
        }
    }

    /// The position of the byte offset `offset`, clamped to the text and to a
    /// character boundary.
    pub(crate) fn position(&self, offset: usize) -> Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self.text[line_start..offset].chars().count() + 1;
        Position { line, column }
    }

    pub(crate) fn start(&self, span: &Range<usize>) -> Position {
        self.position(span.start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let src = Source::new("f.toml", "a = 1\nbé = \"x\"\n\nz");
        assert_eq!(src.position(0), Position { line: 1, column: 1 });
        assert_eq!(src.position(4), Position { line: 1, column: 5 });
        assert_eq!(src.position(6), Position { line: 2, column: 1 });
        // 'é' is two bytes but one column.
        assert_eq!(src.position(9), Position { line: 2, column: 3 });
        assert_eq!(src.position(17), Position { line: 4, column: 1 });
        // Past the end and inside a multi-byte character are clamped.
        assert_eq!(src.position(1000), Position { line: 4, column: 2 });
        assert_eq!(src.position(8), Position { line: 2, column: 2 });
    }
}
