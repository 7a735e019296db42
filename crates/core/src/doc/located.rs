//! Key paths (`groups.smoke.tests[2]`): where each sits in a document ([`Located`], so
//! checks after the schema can point at a line), and how paths are built, shortened and
//! removed from a document's JSON.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::Value;

use super::tree::{Node, NodeKind, Span};
use crate::diag::Diagnostic;

/// A validated document: the value plus where each key path sits in the file, so later
/// semantic checks can point at a line.
#[derive(Debug, Clone)]
pub struct Located<T> {
    pub value: T,
    pub file: PathBuf,
    /// The document as JSON, before deserialisation (keys in document order).
    pub json: Value,
    spans: HashMap<String, Span>,
}

impl<T> Located<T> {
    /// `value`, read from `file` as `json`, with the places of `root`'s key paths.
    pub(super) fn new(value: T, file: PathBuf, json: Value, root: &Node) -> Self {
        let mut spans = HashMap::new();
        index_spans(root, "", &mut spans);
        spans.insert(String::new(), root.span);
        Located {
            value,
            file,
            json,
            spans,
        }
    }

    /// Where `key_path` (e.g. `groups.smoke.tests[2]`) sits: a mapping entry's key or a
    /// list item. `""` is the document root.
    pub fn span(&self, key_path: &str) -> Option<Span> {
        self.spans.get(key_path).copied()
    }

    /// A diagnostic at `key_path`; when that path is not in the file (a defaulted key), at
    /// its nearest ancestor that is.
    pub fn diag(&self, key_path: &str, message: impl Into<String>) -> Diagnostic {
        let mut p = key_path;
        let span = loop {
            if let Some(s) = self.span(p) {
                break Some(s);
            }
            if p.is_empty() {
                break None;
            }
            p = parent_path(p);
        };
        Diagnostic {
            file: self.file.clone(),
            line: span.map(|s| s.line),
            column: span.map(|s| s.column),
            key_path: (!key_path.is_empty()).then(|| key_path.to_string()),
            message: message.into(),
        }
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Located<U> {
        Located {
            value: f(self.value),
            file: self.file,
            json: self.json,
            spans: self.spans,
        }
    }
}

/// `a.b[2]` → `a.b`; `a.b` → `a`; `a` → ``.
pub fn parent_path(p: &str) -> &str {
    match p.rfind(['.', '[']) {
        Some(i) => &p[..i],
        None => "",
    }
}

/// `parent` + `.key` (or just `key` at the root).
pub fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub(super) fn index_path(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// Remove the mapping entry at a dotted key path (`a.b[2].c`); false when not found.
pub(super) fn remove_path(v: &mut Value, path: &str) -> bool {
    let (parent, last) = match path.rfind('.') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("", path),
    };
    let mut cur = v;
    if !parent.is_empty() {
        for seg in parent.split('.') {
            let (key, indices) = match seg.find('[') {
                Some(i) => (&seg[..i], &seg[i..]),
                None => (seg, ""),
            };
            let Some(next) = cur.get_mut(key) else {
                return false;
            };
            cur = next;
            for idx in indices.split('[').filter(|s| !s.is_empty()) {
                let Ok(i) = idx.trim_end_matches(']').parse::<usize>() else {
                    return false;
                };
                let Some(next) = cur.get_mut(i) else {
                    return false;
                };
                cur = next;
            }
        }
    }
    cur.as_object_mut()
        .is_some_and(|m| m.shift_remove(last).is_some())
}

fn index_spans(node: &Node, path: &str, out: &mut HashMap<String, Span>) {
    match &node.kind {
        NodeKind::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = index_path(path, i);
                out.insert(p.clone(), item.span);
                index_spans(item, &p, out);
            }
        }
        NodeKind::Map(entries) => {
            for e in entries {
                let p = child_path(path, &e.key);
                out.insert(p.clone(), e.key_span);
                index_spans(&e.value, &p, out);
            }
        }
        _ => {}
    }
}
