//! Where a YAML syntax error's cause is.
//!
//! `yaml-rust2` reports the place where it gave up, which for an unclosed `[` is often the
//! end of the file. Here the text is scanned again with the same scanner, one token at a
//! time, up to that place, and the tokens seen name what a reader should look at: a `[` or
//! `{` still open or closed by the wrong bracket, a closer that closes nothing, a quote not
//! closed on its line, a quote inside a quoted value, a bad escape, a tab in the
//! indentation, a key without `: `, a line that lines up with no key or item above it. The
//! parser's own place and words stay in the message. Only documents that failed to parse
//! come here; the second scan holds its tokens (about what the parser held) until it ends.

use yaml_rust2::scanner::{Marker, ScanError, Scanner};

use super::Span;

/// The place and message for the syntax error `err` found in `text` (the text the parser
/// read, after any byte-order mark).
pub(super) fn explain(text: &str, err: &ScanError) -> (Span, String) {
    let site = Site {
        trace: trace(text, err.marker().index()),
        lines: line_starts(text),
        text,
        err,
    };
    let found = site
        .run_on_quote()
        .or_else(|| site.unpaired_bracket())
        .or_else(|| site.tab())
        .or_else(|| site.key_without_colon())
        .or_else(|| site.continued_value())
        .or_else(|| site.block_indent())
        .or_else(|| site.quote_in_quotes())
        .or_else(|| site.bad_escape());
    let info = err.info();
    match found {
        Some((span, what)) => (
            span,
            format!(
                "YAML syntax: {what} (the parser stopped at {}: {info})",
                place(&site.stop())
            ),
        ),
        None => (
            Span::of(err.marker()),
            format!("YAML syntax: {info}{}", hint(info)),
        ),
    }
}

/// A token's first character and its place, as the scanner counts: `index` in characters
/// (mostly: after a block scalar with non-ASCII text, more), `col` from 0.
#[derive(Debug, Clone, Copy)]
struct Tok {
    index: usize,
    line: usize,
    col: usize,
    ch: char,
}

impl Tok {
    fn span(&self) -> Span {
        Span {
            line: self.line as u32,
            column: self.col as u32 + 1,
        }
    }

    fn place(&self) -> String {
        format!("{}:{}", self.line, self.col + 1)
    }
}

/// What a second scan up to the error saw.
struct Trace {
    /// Tokens that start at or before the error, in order.
    toks: Vec<Tok>,
    /// When the scanner itself failed: the token it was scanning and where it stopped.
    failed: Option<(Option<Tok>, Marker)>,
}

/// Scan `text` token by token up to the first token that starts after `limit` (an index as
/// the scanner counts) or the scanner's error.
///
/// `Scanner::fetch_next_token` scans one token (after blanks and comments) into the
/// scanner's queue. The queue is never read, so the scanner does not look ahead for keys as
/// it does for the parser, and each token is seen where it starts.
fn trace(text: &str, limit: usize) -> Trace {
    let lines = line_starts(text);
    let mut scanner = Scanner::new(text.chars());
    let mut toks = Vec::new();
    // Where the scanner was: line, column and byte offset. Found from the line and column,
    // not the marker's index: in a block scalar's lines the scanner counts bytes there.
    let (mut line, mut col, mut byte) = (1, 0, 0);
    let mut stalled = 0;
    loop {
        let before = scanner.mark();
        if before.line() != line || before.col() < col {
            (line, col) = (before.line(), 0);
            byte = lines.get(line - 1).copied().unwrap_or(text.len());
        }
        for c in text[byte..].chars().take(before.col() - col) {
            byte += c.len_utf8();
        }
        col = before.col();
        let result = scanner.fetch_next_token();
        let start = token_start(&text[byte..], before);
        if result.is_err() {
            return Trace {
                toks,
                failed: Some((start, scanner.mark())),
            };
        }
        if scanner.mark().index() == before.index() {
            // The stream's start and end consume nothing; twice in a row is the end.
            stalled += 1;
            if stalled > 1 {
                break;
            }
            continue;
        }
        stalled = 0;
        match start {
            Some(t) if t.index <= limit => toks.push(t),
            Some(_) => break,
            None => {}
        }
    }
    Trace { toks, failed: None }
}

/// The first character of `rest` (the text from `from` on) that is not blank, a line break
/// or in a comment.
fn token_start(rest: &str, from: Marker) -> Option<Tok> {
    let (mut index, mut line, mut col) = (from.index(), from.line(), from.col());
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\u{feff}' => col += 1,
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                line += 1;
                col = 0;
            }
            '#' => {
                while chars.next_if(|c| !matches!(c, '\n' | '\r')).is_some() {
                    index += 1;
                }
            }
            _ => {
                return Some(Tok {
                    index,
                    line,
                    col,
                    ch: c,
                })
            }
        }
        index += 1;
    }
    None
}

/// The byte offset where each line starts (`[0]` is line 1), breaking lines as the scanner
/// does: at `\n`, `\r\n` and a lone `\r`.
fn line_starts(text: &str) -> Vec<usize> {
    let b = text.as_bytes();
    let mut out = vec![0];
    for (i, &c) in b.iter().enumerate() {
        if c == b'\n' || (c == b'\r' && b.get(i + 1) != Some(&b'\n')) {
            out.push(i + 1);
        }
    }
    out
}

struct Site<'a> {
    text: &'a str,
    lines: Vec<usize>,
    trace: Trace,
    err: &'a ScanError,
}

impl Site<'_> {
    fn at(&self) -> &Marker {
        self.err.marker()
    }

    fn info(&self) -> &str {
        self.err.info()
    }

    /// Where the parser gave up. For a quoted value the scanner reports where the value
    /// started; where it stopped is further on.
    fn stop(&self) -> Marker {
        match self.trace.failed {
            Some((Some(t), stop)) if t.index == self.at().index() && matches!(t.ch, '"' | '\'') => {
                stop
            }
            _ => *self.at(),
        }
    }

    /// `line` (1-based) without its line break; empty past the end.
    fn line_text(&self, line: usize) -> &str {
        let Some(&start) = self.lines.get(line.wrapping_sub(1)) else {
            return "";
        };
        let end = self.lines.get(line).copied().unwrap_or(self.text.len());
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }

    /// The number of leading blanks of `line`; `None` for a blank line.
    fn indent(&self, line: usize) -> Option<usize> {
        self.line_text(line).find(|c| !matches!(c, ' ' | '\t'))
    }

    /// The text of `line` from column `col` (0-based) on.
    fn text_from(&self, line: usize, col: usize) -> &str {
        let text = self.line_text(line);
        let at = text.char_indices().nth(col).map_or(text.len(), |(i, _)| i);
        &text[at..]
    }

    /// The text from `m` to the end.
    fn rest(&self, m: &Marker) -> &str {
        let Some(&start) = self.lines.get(m.line().wrapping_sub(1)) else {
            return "";
        };
        let line = &self.text[start..];
        let at = line
            .char_indices()
            .nth(m.col())
            .map_or(line.len(), |(i, _)| i);
        &line[at..]
    }

    /// The token that starts `line`, if one does (a line inside a block scalar or a value
    /// that runs on from the line above has none).
    fn line_token(&self, line: usize) -> Option<Tok> {
        let indent = self.indent(line)?;
        let i = self.trace.toks.partition_point(|t| t.line < line);
        self.trace
            .toks
            .get(i)
            .filter(|t| t.line == line && t.col == indent)
            .copied()
    }

    /// Is `t` a block list item's `- `?
    fn is_item(&self, t: &Tok) -> bool {
        t.ch == '-'
            && self
                .text_from(t.line, t.col)
                .chars()
                .nth(1)
                .filter(|c| !c.is_whitespace())
                .is_none()
    }

    fn here(&self, line: usize, col: usize) -> Span {
        Span {
            line: line as u32,
            column: col as u32 + 1,
        }
    }

    /// A quoted value that runs on past its line: the scanner names the quote, but calls it
    /// an indentation or end-of-file problem.
    fn run_on_quote(&self) -> Option<(Span, String)> {
        const RUN_ON: [&str; 3] = [
            "found unexpected end of stream",
            "found unexpected document indicator",
            "invalid indentation in quoted scalar",
        ];
        let (Some(q), _) = self.trace.failed? else {
            return None;
        };
        if !matches!(q.ch, '"' | '\'') || !RUN_ON.iter().any(|m| self.info().contains(m)) {
            return None;
        }
        Some((
            q.span(),
            format!(
                "unclosed `{q}`: the quoted value started here is not closed on its line; \
                 write the closing `{q}`",
                q = q.ch
            ),
        ))
    }

    /// Brackets: the scanner counts `[` and `{` but does not pair them, so an unclosed one
    /// shows where the text ends or at an odd place far below it.
    fn unpaired_bracket(&self) -> Option<(Span, String)> {
        let mut open: Vec<Tok> = Vec::new();
        for &t in &self.trace.toks {
            match t.ch {
                '[' | '{' => open.push(t),
                ']' | '}' => match open.pop() {
                    None => {
                        return Some((
                            t.span(),
                            format!(
                                "`{}` closes nothing: no `{}` is open here",
                                t.ch,
                                opener_of(t.ch)
                            ),
                        ))
                    }
                    Some(o) if closer_of(o.ch) != t.ch => {
                        return Some((
                            o.span(),
                            format!(
                                "the {} opened here with `{}` is closed by `{}` at {}; close it \
                                 with `{}`",
                                flow_name(o.ch),
                                o.ch,
                                t.ch,
                                t.place(),
                                closer_of(o.ch)
                            ),
                        ))
                    }
                    Some(_) => {}
                },
                _ => {}
            }
        }
        // Still open where the parser stopped. Stopping on the bracket's own line is an
        // error inside it, unless the text ends there.
        let inner = open.last()?;
        let at_end = self.rest(self.at()).trim().is_empty();
        if !at_end && self.at().line() <= inner.line {
            return None;
        }
        let mut what = format!(
            "unclosed `{}`: the {} opened here is still open where the parser stopped; close \
             it with `{}`",
            inner.ch,
            flow_name(inner.ch),
            closer_of(inner.ch),
        );
        for o in open.iter().rev().skip(1) {
            what.push_str(&format!("; the `{}` at {} is open too", o.ch, o.place()));
        }
        Some((inner.span(), what))
    }

    /// A tab in a line's indentation, pointed at. The scanner reports it past the tab, or
    /// (in a value or block scalar that runs on to the tab's line) on the line before.
    fn tab(&self) -> Option<(Span, String)> {
        if !self.info().contains("tab") {
            return None;
        }
        let first = self.at().line();
        let last = self
            .trace
            .failed
            .map_or(first, |(_, m)| m.line())
            .max(first);
        (first..=last).find_map(|line| {
            let col = self
                .line_text(line)
                .chars()
                .take_while(|c| matches!(c, ' ' | '\t'))
                .position(|c| c == '\t')?;
            Some((
                self.here(line, col),
                "a tab indents this line; YAML indents with spaces only".to_string(),
            ))
        })
    }

    /// A line that is neither `key: value` nor `- item`: the scanner notices only at the
    /// next line that the key it took the line for has no `:`.
    fn key_without_colon(&self) -> Option<(Span, String)> {
        if !self.info().contains("simple key expect ':'") {
            return None;
        }
        let t = self
            .trace
            .toks
            .iter()
            .rev()
            .find(|t| t.index < self.at().index() && self.indent(t.line) == Some(t.col))?;
        let text = super::tree::short(self.text_from(t.line, t.col).trim_end());
        let fix = if t.ch == '-' && !self.is_item(t) {
            "a list item needs a space after `-`"
        } else {
            "a key needs `: ` after it, a list item `- ` before it"
        };
        Some((
            t.span(),
            format!("`{text}` is neither a key nor a list item; {fix}"),
        ))
    }

    /// `key: value` on a line indented deeper than the key above: the line continues that
    /// key's value, which cannot hold `: `.
    fn continued_value(&self) -> Option<(Span, String)> {
        if !self
            .info()
            .contains("mapping values are not allowed in this context")
        {
            return None;
        }
        let line = self.at().line();
        let value = self
            .trace
            .toks
            .iter()
            .rev()
            .find(|t| t.index <= self.at().index())?;
        if value.line >= line {
            return None;
        }
        let indent = self.indent(line)?;
        Some((
            self.here(line, indent),
            format!(
                "bad indentation: this line is indented {}, deeper than the key above it, so it \
                 continues the value started at {}, and a value cannot hold `: `; indent it like \
                 a key above: {}",
                spaces(indent),
                value.place(),
                listed(&self.levels(line))
            ),
        ))
    }

    /// A line that lines up with no key or item above it, or a list item among keys.
    fn block_indent(&self) -> Option<(Span, String)> {
        let info = self.info();
        let item_expected = info.contains("did not find expected '-' indicator");
        if !(item_expected
            || info.contains("did not find expected key")
            || info == "invalid indentation")
        {
            return None;
        }
        let line = self.at().line();
        let first = self.line_token(line)?;
        let indent = first.col;
        let levels = self.levels(line);
        let same = levels.iter().find(|(col, _)| *col == indent).map(|l| l.1);
        let listed = listed(&levels);
        let what = match same {
            Some(l) if item_expected => format!(
                "this line is indented like the list item at line {l} but is not a list item; \
                 start it with `- `, or indent it like the key it belongs to: {listed}"
            ),
            Some(l) if self.is_item(&first) => format!(
                "a list item among the keys of the mapping at line {l}; a list goes under a key \
                 of its own"
            ),
            Some(_) => return None,
            None => format!(
                "bad indentation: this line is indented {}, but the keys and items above it \
                 are indented {listed}",
                spaces(indent)
            ),
        };
        Some((self.here(line, indent), what))
    }

    /// `'it's'`: a quote inside the value ended it, and the rest is left over.
    fn quote_in_quotes(&self) -> Option<(Span, String)> {
        if !self.info().contains("invalid trailing content after") {
            return None;
        }
        let at = self.at();
        let failed = self.trace.failed.and_then(|(t, _)| t);
        let open = failed
            .into_iter()
            .chain(self.trace.toks.iter().rev().copied())
            .find(|t| t.index < at.index() && matches!(t.ch, '"' | '\''))?;
        // The closing quote is the last one before the left-over text, on its line.
        let before: Vec<char> = self.line_text(at.line()).chars().take(at.col()).collect();
        let col = before.iter().rposition(|&c| c == open.ch)?;
        let escaped = if open.ch == '\'' { "''" } else { "\\\"" };
        Some((
            self.here(at.line(), col),
            format!(
                "this `{q}` ends the quoted value started at {}, and text follows it; write \
                 `{escaped}` for a `{q}` inside the value",
                open.place(),
                q = open.ch
            ),
        ))
    }

    /// A backslash in double quotes that starts no escape.
    fn bad_escape(&self) -> Option<(Span, String)> {
        if !self.info().contains("unknown escape character") {
            return None;
        }
        let (_, stop) = self.trace.failed?;
        let mut rest = self.text_from(stop.line(), stop.col()).chars();
        let (Some('\\'), Some(next)) = (rest.next(), rest.next()) else {
            return None;
        };
        Some((
            Span::of(&stop),
            format!(
                "`\\{next}` is not an escape: in double quotes a backslash starts one; write \
                 `\\\\` for a backslash, or use single quotes"
            ),
        ))
    }

    /// The indentations a line could line up with, walking up from the line before `line`:
    /// each line's first key or item left of all seen so far (the content after a `- ` is a
    /// level of its own). Pairs of (spaces, line), deepest first.
    fn levels(&self, line: usize) -> Vec<(usize, usize)> {
        let toks = &self.trace.toks;
        let mut out = Vec::new();
        let mut limit = usize::MAX;
        let mut i = toks.partition_point(|t| t.line < line);
        while i > 0 && limit > 0 {
            i -= 1;
            let t = toks[i];
            if t.col >= limit || self.indent(t.line) != Some(t.col) {
                continue;
            }
            let mut cols = vec![t.col];
            let mut j = i;
            while self.is_item(&toks[j]) && toks.get(j + 1).is_some_and(|n| n.line == t.line) {
                j += 1;
                cols.push(toks[j].col);
            }
            for &c in cols.iter().rev() {
                if c < limit {
                    out.push((c, t.line));
                    limit = c;
                }
            }
        }
        out
    }
}

/// `4 (line 4), 2 (line 3) or 0 (line 1)`.
fn listed(levels: &[(usize, usize)]) -> String {
    let all: Vec<String> = levels
        .iter()
        .map(|(col, l)| format!("{col} (line {l})"))
        .collect();
    match all.split_last() {
        None => "nothing".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

fn spaces(n: usize) -> String {
    if n == 1 {
        "1 space".into()
    } else {
        format!("{n} spaces")
    }
}

/// Plain words for scanner messages that need them.
fn hint(info: &str) -> &'static str {
    if info.contains("mapping values are not allowed in this context") {
        "; a value that holds `: ` must be in quotes"
    } else if info.starts_with("unexpected character") {
        "; a value that starts with it must be in quotes"
    } else {
        ""
    }
}

fn place(m: &Marker) -> String {
    format!("{}:{}", m.line(), m.col() + 1)
}

fn closer_of(open: char) -> char {
    if open == '[' {
        ']'
    } else {
        '}'
    }
}

fn opener_of(close: char) -> char {
    if close == ']' {
        '['
    } else {
        '{'
    }
}

fn flow_name(open: char) -> &'static str {
    if open == '[' {
        "list"
    } else {
        "mapping"
    }
}
