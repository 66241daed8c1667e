//! The report of an invalid inventory: every problem, each naming the file, the host, the
//! field and, where it can be found, the line.

use std::path::PathBuf;

use super::spans;

/// Everything wrong with an inventory file.
#[derive(Debug)]
pub struct Problems {
    pub file: PathBuf,
    pub list: Vec<Problem>,
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub host: Option<String>,
    /// Dotted path of the field, relative to the host when there is one.
    pub field: String,
    /// 1-based line, when found.
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.list.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.file.display(),
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.list {
            write!(f, "  {}", self.file.display())?;
            if let Some(l) = p.line {
                write!(f, ":{l}")?;
            }
            write!(f, ": ")?;
            if let Some(h) = &p.host {
                write!(f, "host {h}: ")?;
            }
            if !p.field.is_empty() {
                write!(f, "{}: ", p.field)?;
            }
            writeln!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// The 1-based line of a byte offset.
pub(super) fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line where a field (or the closest enclosing table) is defined.
pub(super) fn locate(text: &str, host: Option<&str>, field: &str) -> Option<usize> {
    let doc = spans::Document::parse(text)?;
    let mut keys: Vec<&str> = Vec::new();
    if let Some(h) = host {
        keys.extend(["hosts", h]);
    }
    keys.extend(field.split('.').filter(|s| !s.is_empty()));
    doc.span(&keys).map(|off| line_at(text, off))
}

/// The problems of `unresolved` at `field` of `host`, taken out of it.
pub(super) fn take(unresolved: &mut Vec<Problem>, host: Option<&str>, field: &str) -> Vec<Problem> {
    let (taken, kept) = std::mem::take(unresolved)
        .into_iter()
        .partition(|p| p.host.as_deref() == host && p.field == field);
    *unresolved = kept;
    taken
}
