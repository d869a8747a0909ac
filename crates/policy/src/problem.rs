//! Problems found while loading the policy folder, each with its file and position.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one file of the policy folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem with the whole file.
    pub(crate) fn in_file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// A problem at a byte offset of the file's text.
    pub(crate) fn at(file: &Path, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_column(text, offset);
        Self {
            file: file.to_owned(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }

    /// A problem from a Cedar diagnostic, placed at its first label when it has one.
    pub(crate) fn from_diagnostic(file: &Path, text: &str, error: &dyn miette::Diagnostic) -> Self {
        let mut message = error.to_string();
        if let Some(help) = error.help() {
            message = format!("{message} ({help})");
        }
        let offset = error
            .labels()
            .and_then(|mut labels| labels.next())
            .map(|label| label.offset());
        match offset {
            Some(offset) => Self::at(file, text, offset, message),
            None => Self::in_file(file, message),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// The policy folder could not be loaded; every problem found is listed.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) in the policy folder", .0.len())]
pub struct LoadError(pub Vec<Problem>);

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 99), (1, 3));
        let p = Problem::at(Path::new("x.cedar"), "a\nb", 2, "bad");
        assert_eq!(p.to_string(), "x.cedar:2:1: bad");
    }
}
