//! Collecting problems: byte spans from the TOML parser become
//! `file:line:column` [`Problem`]s, and every problem is kept so a user can
//! fix the whole file in one pass.

use std::ops::Range;
use std::path::Path;

use crate::{ConfigError, Problem};

/// The problems found so far in one file.
pub(crate) struct Diag<'a> {
    /// The file as the caller named it (shown as is, never canonicalized).
    file: &'a Path,
    /// Its text, to turn byte offsets into lines and columns.
    src: &'a str,
    /// Everything reported, in the order reported.
    problems: Vec<Problem>,
}

impl<'a> Diag<'a> {
    /// Starts collecting problems for `file`, whose text is `src`.
    pub(crate) fn new(file: &'a Path, src: &'a str) -> Diag<'a> {
        Diag {
            file,
            src,
            problems: Vec::new(),
        }
    }

    /// Reports a problem at the start of `span`.
    pub(crate) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = position(self.src, span.start);
        self.push(line, column, message.into());
    }

    /// Reports a problem that has no place in the file (line 0, column 0).
    pub(crate) fn nowhere(&mut self, message: impl Into<String>) {
        self.push(0, 0, message.into());
    }

    /// `Ok` when nothing was reported, else [`Diag::into_error`].
    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }

    /// Every problem, in file order (those without a place last).
    pub(crate) fn into_error(self) -> ConfigError {
        let mut problems = self.problems;
        // Stable: problems at the same place keep the order they were found in.
        problems.sort_by_key(|p| (p.line == 0, p.line, p.column));
        ConfigError { problems }
    }

    /// Records one problem as is.
    fn push(&mut self, line: usize, column: usize, message: String) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            line,
            column,
            message,
        });
    }
}

/// The 1-based line and column (in characters) of byte `offset` in `src`.
///
/// Out-of-range offsets are clamped and offsets inside a character are moved
/// back to its start, so a wrong span can misplace a problem but never panic.
pub(crate) fn position(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let src = "ab\ncdé\r\nf";
        assert_eq!(position(src, 0), (1, 1));
        assert_eq!(position(src, 1), (1, 2));
        assert_eq!(position(src, 3), (2, 1));
        assert_eq!(position(src, 5), (2, 3));
        // Inside `é` (2 bytes): moved back to its start.
        assert_eq!(position(src, 6), (2, 3));
        assert_eq!(position(src, 9), (3, 1));
        assert_eq!(position(src, 1000), (3, 2));
        assert_eq!(position("", 5), (1, 1));
    }
}
