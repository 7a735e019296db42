//! What the CLI prints for a person: every line goes through [`safe`], so text from packs,
//! tasks, lab files and the store (a result, a message, a name) cannot clear the screen,
//! move the cursor, retitle the window or break a table's lines. Control characters are
//! shown escaped as Rust writes them (`\u{1b}[2J`, `\n`); the stored value stays as
//! written, and JSON output (`--json`, `export`) is exact.
//!
//! Every human-facing line is printed with `out!` (stdout) or `say!` (stderr): one line
//! each, escaped whole, write errors ignored (a closed terminal must not panic the
//! process).

use std::borrow::Cow;

/// Whether `c` changes what a terminal shows beyond drawing itself: C0 and C1 controls,
/// DEL, and the bidirectional overrides that reorder the rest of a line.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every control character escaped (`\u{1b}`, `\n`, `\t`, `\u{202e}`).
pub fn safe(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Like [`safe`], but line breaks stay: for text printed as several lines (an error).
pub fn safe_lines(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn escape(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let bad = |c: char| is_unsafe(c) && !(keep_newlines && c == '\n');
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if bad(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Print `v` as pretty JSON to stdout, exactly (JSON escapes what must be escaped).
pub fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Width of `s` as printed (in characters), for lining up tables.
pub fn width(s: &str) -> usize {
    safe(s).chars().count()
}

/// Print one line to stdout, escaped with [`safe`](crate::term::safe).
macro_rules! out {
    () => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout());
    }};
    ($($a:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), "{}", $crate::term::safe(&format!($($a)*)));
    }};
}

/// Print one line to stderr, escaped with [`safe`](crate::term::safe).
macro_rules! say {
    ($($a:tt)*) => {{
        use std::io::Write as _;
        // One write per line, so lines of processes sharing a terminal do not interleave.
        let line = format!("{}\n", $crate::term::safe(&format!($($a)*)));
        let _ = std::io::stderr().write_all(line.as_bytes());
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(safe("Passed ✓ ok"), Cow::Borrowed(_)));
        assert_eq!(safe("Failed\u{1b}[2J"), "Failed\\u{1b}[2J");
        assert_eq!(safe("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(safe("\u{9b}31m \u{7f}"), "\\u{9b}31m \\u{7f}");
        assert_eq!(safe("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(safe_lines("one\ntwo\u{7}"), "one\ntwo\\u{7}");
        assert_eq!(width("a\u{1b}"), 7);
    }
}
