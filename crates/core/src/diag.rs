//! Diagnostics: one problem in a user-facing file, named by file, line and key path.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use ts_rs::TS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
#[ts(export)]
pub struct Diagnostic {
    #[ts(type = "string")]
    pub file: PathBuf,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<u32>,
    /// 1-based column.
    pub column: Option<u32>,
    /// Dotted key path such as `groups.smoke.tests[2]`.
    pub key_path: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        if let Some(key) = &self.key_path {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The closest of `candidates` to `word`, if close enough to be a plausible typo: the
/// one "did you mean" of the engine (pack and lab files, parameters, lab searches, the
/// reservation book, the CLI). Case is ignored; a swap of two letters is one edit; a
/// candidate of `n` letters is suggested within `max(1, n / 3)` edits.
pub fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let w = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&w, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
