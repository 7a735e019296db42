//! Load a YAML (or JSON) document with line numbers and validate it against the JSON Schema
//! generated from its Rust type.
//!
//! The text is parsed with `yaml-rust2`'s event parser into a [`Node`] tree in which every
//! node knows its line and column (`yaml`, the tree's types in `tree`). Aliases are
//! expanded while the tree is built, counting nodes, so an alias bomb is refused after at
//! most [`Limits::max_nodes`] nodes of work. The tree's JSON is then validated by the
//! `jsonschema` crate against `schemars::schema_for!(T)` (compiled once per type:
//! `validate`), and every error becomes a [`Diagnostic`]: its instance path leads back to
//! the node, hence the line, column and key path, and its keyword to a message in the
//! author's words ("did you mean" from the schema's key names and allowed values:
//! `errors`). Only a document without problems is deserialised into `T`, a [`Located`]
//! that keeps where each key path sits (`located`). A YAML syntax error is placed by
//! `syntax` where a reader must look (the `[` left open, not the end of the file where the
//! parser gave up).
//!
//! Kept by hand: the tree, built from the parser's events rather than by `yaml-rust2`'s own
//! loader, so that alias expansion is counted and stopped as it happens, a duplicate key or
//! an unknown tag is a problem with a place instead of a silent overwrite, and every key
//! keeps its own line for the key paths later checks point at; the placing of syntax
//! errors (no parser says which bracket was left open); the words of the messages; and the
//! near-miss check of mappings that allow free keys, a `jsonschema` custom keyword.
//!
//! This file reads a file and runs the steps in order.

use std::path::Path;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::diag::Diagnostic;

mod errors;
mod located;
mod syntax;
mod tree;
mod validate;
mod yaml;

pub use located::{child_path, parent_path, Located};
pub use tree::{Entry, Node, NodeKind, Span};
pub use validate::{cached_schema, validate, CompiledSchema};
pub use yaml::{decode_utf8, parse_yaml, Limits};

use located::remove_path;
use validate::validate_json;

/// Largest file `load_document` reads.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Read `path` and [`parse_document`] it.
pub fn load_document<T: DeserializeOwned + JsonSchema + 'static>(
    path: &Path,
) -> Result<Located<T>, Vec<Diagnostic>> {
    let bytes = read_limited(path).map_err(|d| vec![d])?;
    parse_document(path, &bytes)
}

/// Read a user file, refusing very large ones and anything that is not a regular file
/// (a named pipe would wait for a writer forever: `userfile`).
pub fn read_limited(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    use std::io::Read;
    let whole = |message: String| Diagnostic {
        file: path.to_path_buf(),
        line: None,
        column: None,
        key_path: None,
        message,
    };
    let f = crate::userfile::open_regular(path).map_err(|e| whole(e.to_string()))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| whole(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(whole(format!(
            "file is larger than {} MiB",
            MAX_FILE_BYTES / 1024 / 1024
        )));
    }
    Ok(bytes)
}

/// Parse `bytes` (named `file` in diagnostics) and validate them against `T`'s schema.
pub fn parse_document<T: DeserializeOwned + JsonSchema + 'static>(
    file: &Path,
    bytes: &[u8],
) -> Result<Located<T>, Vec<Diagnostic>> {
    match parse_document_partial(file, bytes) {
        (Some(doc), diags) if diags.is_empty() => Ok(doc),
        (_, diags) => Err(diags),
    }
}

/// Like [`parse_document`], but a document with schema problems still gives a value when
/// dropping the offending keys (so their defaults apply) makes it deserialise. Callers use
/// it to report problems a schema cannot see in the same pass; the value is not for use.
pub fn parse_document_partial<T: DeserializeOwned + JsonSchema + 'static>(
    file: &Path,
    bytes: &[u8],
) -> (Option<Located<T>>, Vec<Diagnostic>) {
    let text = match decode_utf8(file, bytes) {
        Ok(t) => t,
        Err(d) => return (None, vec![d]),
    };
    let node = match parse_yaml(file, text, Limits::default()) {
        Ok(n) => n,
        Err(d) => return (None, d),
    };
    let schema = cached_schema::<T>();
    let json = node.to_json();
    let mut diags = validate_json(file, &schema, &node, &json);
    sort_diags(&mut diags);
    let mut repaired = json.clone();
    for d in &diags {
        let Some(path) = d.key_path.as_deref() else {
            return (None, diags);
        };
        let target = if d.message.starts_with("missing required key") {
            parent_path(path)
        } else {
            path
        };
        // An item of a list goes with its whole list: indices must keep meaning lines.
        let mut target = target;
        while target.ends_with(']') {
            target = parent_path(target);
        }
        if target.is_empty() || !remove_path(&mut repaired, target) {
            return (None, diags);
        }
    }
    let value = match serde_json::from_value::<T>(repaired) {
        Ok(v) => v,
        Err(e) => {
            if diags.is_empty() {
                diags.push(Diagnostic {
                    file: file.to_path_buf(),
                    line: Some(node.span.line),
                    column: Some(node.span.column),
                    key_path: None,
                    message: e.to_string(),
                });
            }
            return (None, diags);
        }
    };
    (
        Some(Located::new(value, file.to_path_buf(), json, &node)),
        diags,
    )
}

/// Diagnostics in file order.
pub fn sort_diags(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (&a.file, a.line.unwrap_or(0), a.column.unwrap_or(0)).cmp(&(
            &b.file,
            b.line.unwrap_or(0),
            b.column.unwrap_or(0),
        ))
    });
}
