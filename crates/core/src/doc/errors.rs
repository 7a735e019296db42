//! The `jsonschema` crate's errors as diagnostics: the instance path leads to the node (its
//! line and key path); the keyword becomes a message in the words of the document's
//! author ("expected a list, found a string (`boot`); write `[boot]` for a list of one"),
//! with "did you mean" from the schema's key names and values; of an `anyOf` / `oneOf`
//! the branch that fits the node best speaks.

use std::path::Path;

use serde_json::Value;

use super::located::{child_path, index_path};
use super::tree::{fmt_num, Node, NodeKind, Span};
use super::validate::{near_miss, property_names, NEAR_MISS_KEYWORD};
use crate::diag::{did_you_mean, Diagnostic};

/// Turns the `jsonschema` crate's errors into diagnostics: the instance path leads to the
/// node (its line and key path); the keyword becomes a message in the words of the
/// document's author, with "did you mean" from the schema's key names and values.
pub(super) struct ErrorReader<'a> {
    pub(super) file: &'a Path,
    pub(super) schema: &'a Value,
    pub(super) root: &'a Node,
}

/// A node found by its JSON pointer: where to point for it (its key in the parent mapping,
/// its item, or the document) and its key path.
struct Found<'n> {
    node: &'n Node,
    span: Span,
    path: String,
}

impl<'a> ErrorReader<'a> {
    pub(super) fn read_all(&self, errors: &[jsonschema::ValidationError<'_>]) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for e in errors {
            self.read(e, &mut out);
        }
        out
    }

    fn read(&self, e: &jsonschema::ValidationError<'_>, out: &mut Vec<Diagnostic>) {
        use jsonschema::error::ValidationErrorKind as K;
        let Some(at) = self.find(e.instance_path().as_str()) else {
            // Not a place in this document (cannot happen: the instance is its JSON).
            return out.push(self.diag(self.root.span, "", e.to_string()));
        };
        let keyword = self.schema.pointer(e.schema_path().as_str());
        let schema = self
            .schema
            .pointer(parent_pointer(e.schema_path().as_str()));
        let node = at.node;
        let message = match e.kind() {
            K::Type { .. } => keyword.map_or_else(|| e.to_string(), |t| type_message(t, node)),
            K::Enum { options } => {
                enum_message(options.as_array().map_or(&[], Vec::as_slice), node)
            }
            K::Constant { expected_value } => {
                format!("expected `{expected_value}`, found {}", node.describe())
            }
            K::Minimum { limit } => bound_message("must be at least", limit, node),
            K::Maximum { limit } => bound_message("must be at most", limit, node),
            K::ExclusiveMinimum { limit } => bound_message("must be more than", limit, node),
            K::ExclusiveMaximum { limit } => bound_message("must be less than", limit, node),
            K::Required { property } => {
                let key = property.as_str().unwrap_or_default();
                let message = format!("missing required key `{key}`");
                return out.push(self.diag(at.span, &child_path(&at.path, key), message));
            }
            K::AdditionalProperties { unexpected } => {
                let named = property_names(schema.and_then(|s| s.get("properties")));
                for key in unexpected {
                    let message = match did_you_mean(key, named.iter().copied()) {
                        Some(m) => format!("unknown key `{key}`; did you mean `{m}`?"),
                        None => {
                            format!("unknown key `{key}`; expected one of: {}", named.join(", "))
                        }
                    };
                    out.push(self.at_key(&at, key, message));
                }
                return;
            }
            K::Custom { keyword, .. } if keyword == NEAR_MISS_KEYWORD => {
                let named = property_names(schema.and_then(|s| s.get("properties")));
                let NodeKind::Map(entries) = &node.kind else {
                    return;
                };
                for key in entries.iter().map(|e| e.key.as_str()) {
                    if let Some(m) = near_miss(key, named.iter().copied()) {
                        let message = format!("unknown key `{key}`; did you mean `{m}`? (free keys are allowed here, but not one this close to a known key)");
                        out.push(self.at_key(&at, key, message));
                    }
                }
                return;
            }
            K::AnyOf { context } | K::OneOfNotValid { context } => {
                return out.extend(self.read_alternatives(context, &at.path));
            }
            _ => e.to_string(),
        };
        out.push(self.diag(at.span, &at.path, message));
    }

    /// No branch of an `anyOf` / `oneOf` fits: the branch whose type fits the node best
    /// speaks (for an `Option<T>`, the problems inside the `T`, not "expected null").
    fn read_alternatives(
        &self,
        branches: &[Vec<jsonschema::ValidationError<'static>>],
        path: &str,
    ) -> Vec<Diagnostic> {
        let here = (!path.is_empty()).then_some(path);
        branches
            .iter()
            .map(|errors| self.read_all(errors))
            .min_by_key(|diags| {
                let type_error = diags
                    .iter()
                    .any(|d| d.key_path.as_deref() == here && d.message.starts_with("expected"));
                (type_error, diags.len())
            })
            .unwrap_or_default()
    }

    /// The node at a JSON pointer (`/groups/smoke/tests/2`).
    fn find(&self, pointer: &str) -> Option<Found<'a>> {
        let mut at = Found {
            node: self.root,
            span: self.root.span,
            path: String::new(),
        };
        for token in pointer.split('/').skip(1) {
            let token = token.replace("~1", "/").replace("~0", "~");
            at = match &at.node.kind {
                NodeKind::Map(entries) => {
                    let e = entries.iter().find(|e| e.key == token)?;
                    let path = child_path(&at.path, &e.key);
                    Found {
                        node: &e.value,
                        span: e.key_span,
                        path,
                    }
                }
                NodeKind::Seq(items) => {
                    let i: usize = token.parse().ok()?;
                    let path = index_path(&at.path, i);
                    Found {
                        node: items.get(i)?,
                        span: items[i].span,
                        path,
                    }
                }
                _ => return None,
            };
        }
        Some(at)
    }

    /// A diagnostic at the key `key` of the mapping found at `at`.
    fn at_key(&self, at: &Found<'_>, key: &str, message: String) -> Diagnostic {
        let span = match &at.node.kind {
            NodeKind::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| e.key_span),
            _ => None,
        };
        self.diag(span.unwrap_or(at.span), &child_path(&at.path, key), message)
    }

    fn diag(&self, span: Span, path: &str, message: String) -> Diagnostic {
        Diagnostic {
            file: self.file.to_path_buf(),
            line: Some(span.line),
            column: Some(span.column),
            key_path: (!path.is_empty()).then(|| path.to_string()),
            message,
        }
    }
}

/// `/a/b/type` → `/a/b`.
fn parent_pointer(p: &str) -> &str {
    p.rfind('/').map_or("", |i| &p[..i])
}

/// "expected a list, found a string (`boot`); write `[boot]` for a list of one".
fn type_message(types: &Value, node: &Node) -> String {
    let types: Vec<&str> = match types {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let wanted: Vec<&str> = types
        .iter()
        .filter(|t| **t != "null" || types.len() == 1)
        .map(|t| type_name(t))
        .collect();
    let mut msg = format!(
        "expected {}, found {}",
        wanted.join(" or "),
        node.describe()
    );
    if types.contains(&"array") {
        if let NodeKind::Str(v) = &node.kind {
            msg.push_str(&format!("; write `[{v}]` for a list of one"));
        }
    }
    if types.contains(&"string")
        && matches!(
            node.kind,
            NodeKind::Bool(_) | NodeKind::Int(_) | NodeKind::Float(_)
        )
    {
        msg.push_str("; put it in quotes to make it text");
    }
    msg
}

/// "must be at most 604800 (found 1e20)".
fn bound_message(rule: &str, limit: &Value, node: &Node) -> String {
    let shown = match node.kind {
        NodeKind::Int(i) => i.to_string(),
        NodeKind::Float(f) => fmt_num(f),
        _ => node.to_json().to_string(),
    };
    let limit = limit.as_f64().map_or_else(|| limit.to_string(), fmt_num);
    format!("{rule} {limit} (found {shown})")
}

fn type_name(ty: &str) -> &'static str {
    match ty {
        "null" => "nothing (null)",
        "boolean" => "true or false",
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "array" => "a list",
        "object" => "a mapping",
        _ => "a value of an unknown type",
    }
}

fn enum_message(allowed: &[Value], node: &Node) -> String {
    let names: Vec<String> = allowed
        .iter()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let hint = match &node.kind {
        NodeKind::Str(s) => did_you_mean(s, names.iter().map(String::as_str))
            .map(|m| format!("; did you mean `{m}`?"))
            .unwrap_or_default(),
        _ => String::new(),
    };
    format!(
        "expected one of {}, found {}{hint}",
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", "),
        node.describe()
    )
}
