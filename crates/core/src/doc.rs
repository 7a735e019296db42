//! Load a YAML (or JSON) document with line numbers and validate it against the JSON Schema
//! generated from its Rust type.
//!
//! The text is parsed with `yaml-rust2`'s event parser into a [`Node`] tree in which every
//! node knows its line and column. Aliases are expanded while the tree is built, counting
//! nodes, so an alias bomb is refused after at most [`Limits::max_nodes`] nodes of work. The
//! tree's JSON is then validated by the `jsonschema` crate against `schemars::schema_for!(T)`
//! (compiled once per type), and every error becomes a [`Diagnostic`]: its instance path
//! leads back to the node, hence the line, column and key path, and its keyword to a
//! message in the author's words ("did you mean" from the schema's key names and allowed
//! values). Only a document without problems is deserialised into `T`. A YAML syntax error
//! is placed by `syntax` where a reader must look (the `[` left open, not the end of the
//! file where the parser gave up).
//!
//! Kept by hand: the tree, built from the parser's events rather than by `yaml-rust2`'s own
//! loader, so that alias expansion is counted and stopped as it happens, a duplicate key or
//! an unknown tag is a problem with a place instead of a silent overwrite, and every key
//! keeps its own line for the key paths later checks point at; the placing of syntax
//! errors (no parser says which bracket was left open); the words of the messages; and the
//! near-miss check of mappings that allow free keys, a `jsonschema` custom keyword.

use std::any::TypeId;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};
use yaml_rust2::Yaml;

use crate::diag::{did_you_mean, Diagnostic};

mod syntax;

/// Largest file `load_document` reads.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// Bounds on the tree built from one document.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Nodes after alias expansion.
    pub max_nodes: usize,
    /// Nesting depth of lists and mappings.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_nodes: 100_000,
            max_depth: 64,
        }
    }
}

/// 1-based place in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub line: u32,
    pub column: u32,
}

impl Span {
    fn of(m: &Marker) -> Self {
        Span {
            line: m.line() as u32,
            column: m.col() as u32 + 1,
        }
    }
}

/// One node of a parsed document.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A mapping entry; keys are scalars, held as strings.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

impl Node {
    /// The node as JSON (keys in document order).
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Bool(b) => Value::Bool(*b),
            NodeKind::Int(i) => Value::Number((*i).into()),
            NodeKind::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            NodeKind::Str(s) => Value::String(s.clone()),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => {
                let mut m = Map::new();
                for e in entries {
                    m.insert(e.key.clone(), e.value.to_json());
                }
                Value::Object(m)
            }
        }
    }

    fn height(&self) -> usize {
        match &self.kind {
            NodeKind::Seq(items) => 1 + items.iter().map(Node::height).max().unwrap_or(0),
            NodeKind::Map(entries) => {
                1 + entries.iter().map(|e| e.value.height()).max().unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// A JSON value as a node without a place in any file (line 0), e.g. to validate
    /// launch parameters with the same schema as the files.
    pub fn from_json(v: &Value) -> Node {
        let kind = match v {
            Value::Null => NodeKind::Null,
            Value::Bool(b) => NodeKind::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => NodeKind::Int(i),
                None => NodeKind::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => NodeKind::Str(s.clone()),
            Value::Array(items) => NodeKind::Seq(items.iter().map(Node::from_json).collect()),
            Value::Object(m) => NodeKind::Map(
                m.iter()
                    .map(|(k, v)| Entry {
                        key: k.clone(),
                        key_span: Span::default(),
                        value: Node::from_json(v),
                    })
                    .collect(),
            ),
        };
        Node {
            kind,
            span: Span::default(),
        }
    }

    /// How a message names this node's kind: "a list", "a string (`boot`)", ...
    fn describe(&self) -> String {
        match &self.kind {
            NodeKind::Null => "nothing (null)".into(),
            NodeKind::Bool(b) => format!("a boolean (`{b}`)"),
            NodeKind::Int(i) => format!("an integer (`{i}`)"),
            NodeKind::Float(f) => format!("a number (`{}`)", fmt_num(*f)),
            NodeKind::Str(s) => format!("a string (`{}`)", short(s)),
            NodeKind::Seq(_) => "a list".into(),
            NodeKind::Map(_) => "a mapping".into(),
        }
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

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

fn index_path(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

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
    let mut spans = HashMap::new();
    index_spans(&node, "", &mut spans);
    spans.insert(String::new(), node.span);
    (
        Some(Located {
            value,
            file: file.to_path_buf(),
            json,
            spans,
        }),
        diags,
    )
}

/// Remove the mapping entry at a dotted key path (`a.b[2].c`); false when not found.
fn remove_path(v: &mut Value, path: &str) -> bool {
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

/// UTF-8 text of `bytes`, without a leading byte-order mark; else a diagnostic naming the
/// byte offset, line and column of the first bad byte.
pub fn decode_utf8<'a>(file: &Path, bytes: &'a [u8]) -> Result<&'a str, Diagnostic> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.strip_prefix('\u{feff}').unwrap_or(s)),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = good.iter().filter(|&&b| b == b'\n').count() as u32 + 1;
            let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&good[line_start..]).chars().count() as u32 + 1;
            Err(Diagnostic {
                file: file.to_path_buf(),
                line: Some(line),
                column: Some(column),
                key_path: None,
                message: format!(
                    "not valid UTF-8: byte 0x{:02x} at offset {} (save the file as UTF-8)",
                    bytes[e.valid_up_to()],
                    e.valid_up_to()
                ),
            })
        }
    }
}

enum Frame {
    Seq {
        span: Span,
        anchor: usize,
        start_count: usize,
        items: Vec<Node>,
    },
    Map {
        span: Span,
        anchor: usize,
        start_count: usize,
        entries: Vec<Entry>,
        /// The pending key; `Some(None)` when it was not a plain value.
        key: Option<Option<(String, Span)>>,
    },
}

fn diag_at(file: &Path, span: Span, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        line: Some(span.line),
        column: Some(span.column),
        key_path: None,
        message: message.into(),
    }
}

struct Builder<'a> {
    file: &'a Path,
    limits: Limits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize, usize)>,
    count: usize,
    root: Option<Node>,
    problems: Vec<Diagnostic>,
}

impl Builder<'_> {
    fn diag(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        diag_at(self.file, span, message)
    }

    fn bump(&mut self, n: usize, span: Span) -> Result<(), Diagnostic> {
        self.count += n;
        if self.count > self.limits.max_nodes {
            return Err(self.diag(
                span,
                format!(
                    "document expands to more than {} nodes; refusing it (YAML alias bomb?)",
                    self.limits.max_nodes
                ),
            ));
        }
        Ok(())
    }

    fn open(&mut self, span: Span) -> Result<(), Diagnostic> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(self.diag(
                span,
                format!(
                    "document nests deeper than {} levels",
                    self.limits.max_depth
                ),
            ));
        }
        self.bump(1, span)
    }

    /// A finished node goes into its parent (or becomes the root).
    fn finish(&mut self, node: Node, anchor: usize, size: usize) {
        if anchor != 0 {
            let height = node.height();
            self.anchors.insert(anchor, (node.clone(), size, height));
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let k = match &node.kind {
                        NodeKind::Str(s) => Some(s.clone()),
                        NodeKind::Int(i) => Some(i.to_string()),
                        NodeKind::Float(f) => Some(f.to_string()),
                        NodeKind::Bool(b) => Some(b.to_string()),
                        NodeKind::Null | NodeKind::Seq(_) | NodeKind::Map(_) => None,
                    };
                    if k.is_none() {
                        self.problems.push(diag_at(
                            self.file,
                            node.span,
                            "a mapping key must be a plain value (a name)",
                        ));
                    }
                    // A bad key still pairs with the value that follows, which is dropped.
                    *key = Some(k.map(|k| (k, node.span)));
                }
                Some(None) => {}
                Some(Some((k, key_span))) => {
                    if let Some(first) = entries.iter().find(|e| e.key == k) {
                        let msg = format!(
                            "duplicate key `{k}` (first at line {})",
                            first.key_span.line
                        );
                        let d = Diagnostic {
                            file: self.file.to_path_buf(),
                            line: Some(key_span.line),
                            column: Some(key_span.column),
                            key_path: None,
                            message: msg,
                        };
                        self.problems.push(d);
                        return;
                    }
                    entries.push(Entry {
                        key: k,
                        key_span,
                        value: node,
                    });
                }
            },
        }
    }

    fn scalar(
        &mut self,
        v: String,
        style: TScalarStyle,
        tag: Option<yaml_rust2::parser::Tag>,
        span: Span,
    ) -> NodeKind {
        if let Some(tag) = tag {
            let core = tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:";
            let kind = match (core, tag.suffix.as_str()) {
                (true, "str") => Some(NodeKind::Str(v.clone())),
                (true, "int") => v.trim().parse::<i64>().ok().map(NodeKind::Int),
                (true, "float") => parse_float(v.trim()).map(NodeKind::Float),
                (true, "bool") => match v.trim() {
                    "true" | "True" | "TRUE" => Some(NodeKind::Bool(true)),
                    "false" | "False" | "FALSE" => Some(NodeKind::Bool(false)),
                    _ => None,
                },
                (true, "null") => Some(NodeKind::Null),
                _ => {
                    let d = self.diag(
                        span,
                        format!("unsupported tag `{}{}`", tag.handle, tag.suffix),
                    );
                    self.problems.push(d);
                    return NodeKind::Null;
                }
            };
            return kind.unwrap_or_else(|| {
                let d = self.diag(
                    span,
                    format!("`{}` is not a valid !!{}", short(&v), tag.suffix),
                );
                self.problems.push(d);
                NodeKind::Null
            });
        }
        if style != TScalarStyle::Plain {
            return NodeKind::Str(v);
        }
        match Yaml::from_str(&v) {
            Yaml::Null => NodeKind::Null,
            Yaml::Boolean(b) => NodeKind::Bool(b),
            Yaml::Integer(i) => NodeKind::Int(i),
            Yaml::Real(r) => match parse_float(&r) {
                Some(f) if f.is_finite() => NodeKind::Float(f),
                _ => {
                    let d = self.diag(span, format!("`{r}` is not a finite number"));
                    self.problems.push(d);
                    NodeKind::Null
                }
            },
            _ => NodeKind::Str(v),
        }
    }
}

fn parse_float(v: &str) -> Option<f64> {
    match v {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ => v.parse::<f64>().ok(),
    }
}

/// Parse one YAML document into a spanned tree. An empty document is a `Null` root.
pub fn parse_yaml(file: &Path, text: &str, limits: Limits) -> Result<Node, Vec<Diagnostic>> {
    let mut b = Builder {
        file,
        limits,
        stack: Vec::new(),
        anchors: HashMap::new(),
        count: 0,
        root: None,
        problems: Vec::new(),
    };
    let mut parser = Parser::new_from_str(text);
    let mut documents = 0;
    loop {
        let (ev, mark) = parser.next_token().map_err(|e| {
            let (span, message) = syntax::explain(text, &e);
            vec![b.diag(span, message)]
        })?;
        let span = Span::of(&mark);
        match ev {
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(vec![b.diag(
                        span,
                        "a second YAML document (`---`); a file holds exactly one",
                    )]);
                }
            }
            Event::Alias(id) => {
                let Some((_, size, height)) = b.anchors.get(&id) else {
                    return Err(vec![b.diag(span, "alias to an unknown anchor")]);
                };
                let (size, height) = (*size, *height);
                if b.stack.len() + height > b.limits.max_depth {
                    return Err(vec![b.diag(
                        span,
                        format!("document nests deeper than {} levels", b.limits.max_depth),
                    )]);
                }
                b.bump(size, span).map_err(|d| vec![d])?;
                let mut node = b.anchors[&id].0.clone();
                node.span = span;
                b.finish(node, 0, size);
            }
            Event::Scalar(v, style, anchor, tag) => {
                b.bump(1, span).map_err(|d| vec![d])?;
                let kind = b.scalar(v, style, tag, span);
                b.finish(Node { kind, span }, anchor, 1);
            }
            Event::SequenceStart(anchor, _) => {
                b.open(span).map_err(|d| vec![d])?;
                let start_count = b.count - 1;
                b.stack.push(Frame::Seq {
                    span,
                    anchor,
                    start_count,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(anchor, _) => {
                b.open(span).map_err(|d| vec![d])?;
                let start_count = b.count - 1;
                b.stack.push(Frame::Map {
                    span,
                    anchor,
                    start_count,
                    entries: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor, start) = match b.stack.pop() {
                    Some(Frame::Seq {
                        span,
                        anchor,
                        start_count,
                        items,
                    }) => (
                        Node {
                            kind: NodeKind::Seq(items),
                            span,
                        },
                        anchor,
                        start_count,
                    ),
                    Some(Frame::Map {
                        span,
                        anchor,
                        start_count,
                        entries,
                        ..
                    }) => (
                        Node {
                            // A block mapping's start mark sits at its first `:`; its
                            // first key is where a reader looks.
                            span: entries.first().map_or(span, |e| e.key_span),
                            kind: NodeKind::Map(entries),
                        },
                        anchor,
                        start_count,
                    ),
                    None => return Err(vec![b.diag(span, "unbalanced YAML events")]),
                };
                let size = b.count - start;
                b.finish(node, anchor, size);
            }
        }
    }
    if !b.problems.is_empty() {
        return Err(b.problems);
    }
    Ok(b.root.unwrap_or(Node {
        kind: NodeKind::Null,
        span: Span { line: 1, column: 1 },
    }))
}

/// A JSON Schema compiled for validating documents, built once per type by
/// [`cached_schema`].
pub struct CompiledSchema {
    /// The schema as compiled (see [`add_checks`]): errors point into it.
    json: Value,
    validator: jsonschema::Validator,
}

/// The keyword [`add_checks`] gives every mapping schema that allows free keys beside its
/// named ones: a free key one typo away from a named key is refused, for it is almost
/// certainly that key misspelt.
const NEAR_MISS_KEYWORD: &str = "x-testbay-near-miss";

impl CompiledSchema {
    /// Compile a draft-07 schema whose `$ref`s point into itself (`#/definitions/...`).
    /// Nothing is fetched: the crate's file and network resolvers are not built in.
    pub fn new(mut json: Value) -> Result<Self, String> {
        add_checks(&mut json);
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .with_keyword(NEAR_MISS_KEYWORD, near_miss_keyword)
            .build(&json)
            .map_err(|e| e.to_string())?;
        Ok(Self { json, validator })
    }
}

/// Adapt a generated schema, recursively, to the messages users read: an `enum` needs no
/// `type` beside it, and a `oneOf` of single values (a Rust enum with documented variants)
/// is one `enum`, so a wrong value hears every allowed one; open mappings with named keys
/// get [`NEAR_MISS_KEYWORD`]. What a document may hold does not change.
fn add_checks(schema: &mut Value) {
    let Value::Object(s) = schema else {
        return;
    };
    let single = |b: &Value| match b.get("enum") {
        Some(Value::Array(v)) if v.len() == 1 && b.get("$ref").is_none() => Some(v[0].clone()),
        _ => None,
    };
    if let Some(values) = s
        .get("oneOf")
        .and_then(Value::as_array)
        .and_then(|branches| branches.iter().map(single).collect::<Option<Vec<_>>>())
    {
        s.shift_remove("oneOf");
        s.insert("enum".into(), Value::Array(values));
    }
    if s.contains_key("enum") {
        s.shift_remove("type");
    }
    let open = !matches!(
        s.get("additionalProperties"),
        Some(Value::Bool(false) | Value::Object(_))
    );
    if open
        && s.get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| !p.is_empty())
    {
        s.insert(NEAR_MISS_KEYWORD.into(), Value::Bool(true));
    }
    for (key, sub) in s.iter_mut() {
        match (key.as_str(), sub) {
            ("additionalProperties" | "items" | "not", sub) => add_checks(sub),
            ("allOf" | "anyOf" | "oneOf", Value::Array(subs)) => {
                subs.iter_mut().for_each(add_checks)
            }
            ("properties" | "definitions", Value::Object(subs)) => {
                subs.values_mut().for_each(add_checks)
            }
            _ => {}
        }
    }
}

/// Checks [`NEAR_MISS_KEYWORD`] against the named keys of its mapping schema.
struct NearMissKeys(Vec<String>);

fn near_miss_keyword<'a>(
    parent: &'a Map<String, Value>,
    _value: &'a Value,
    _path: jsonschema::paths::Location,
) -> Result<Box<dyn for<'i> jsonschema::Keyword<'i>>, jsonschema::ValidationError<'a>> {
    let named = property_names(parent.get("properties"));
    Ok(Box::new(NearMissKeys(
        named.into_iter().map(String::from).collect(),
    )))
}

impl<'i> jsonschema::Keyword<'i> for NearMissKeys {
    fn validate(&self, instance: &'i Value) -> Result<(), jsonschema::ValidationError<'i>> {
        if self.is_valid(instance) {
            Ok(())
        } else {
            // `ErrorReader` makes one diagnostic of each such key.
            Err(jsonschema::ValidationError::custom(
                "a key near a named one",
            ))
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        let named = || self.0.iter().map(String::as_str);
        instance
            .as_object()
            .is_none_or(|m| m.keys().all(|k| near_miss(k, named()).is_none()))
    }
}

/// The named key `key` is a typo of, when `key` is not itself named: at most two edits
/// away, and only for keys of 4 characters or more (a short free key is too easily near).
fn near_miss<'n>(key: &str, named: impl Iterator<Item = &'n str> + Clone) -> Option<&'n str> {
    if key.chars().count() < 4 || named.clone().any(|n| n == key) {
        return None;
    }
    did_you_mean(key, named)
        .filter(|m| strsim::damerau_levenshtein(&key.to_lowercase(), &m.to_lowercase()) <= 2)
}

/// The schema of `T`, generated and compiled once per type.
pub fn cached_schema<T: JsonSchema + 'static>() -> Arc<CompiledSchema> {
    static CACHE: OnceLock<Mutex<HashMap<TypeId, Arc<CompiledSchema>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(TypeId::of::<T>())
        .or_insert_with(|| {
            let json = crate::schema::schema_of::<T>();
            Arc::new(CompiledSchema::new(json).expect("a schemars schema compiles"))
        })
        .clone()
}

/// Validate `node` against `schema`; every problem found, in file order.
pub fn validate(file: &Path, schema: &CompiledSchema, node: &Node) -> Vec<Diagnostic> {
    validate_json(file, schema, node, &node.to_json())
}

/// [`validate`] with the node's JSON at hand.
fn validate_json(
    file: &Path,
    schema: &CompiledSchema,
    node: &Node,
    json: &Value,
) -> Vec<Diagnostic> {
    // Most documents are valid, and the crate answers that much faster than it lists errors.
    if schema.validator.is_valid(json) {
        return Vec::new();
    }
    let errors: Vec<_> = schema.validator.iter_errors(json).collect();
    let reader = ErrorReader {
        file,
        schema: &schema.json,
        root: node,
    };
    let mut out = reader.read_all(&errors);
    // At one place, what is wrong with the keys there before the keys missing there.
    out.sort_by_key(|d| {
        (
            d.line,
            d.column,
            d.message.starts_with("missing required key"),
        )
    });
    out
}

/// Turns the `jsonschema` crate's errors into diagnostics: the instance path leads to the
/// node (its line and key path); the keyword becomes a message in the words of the
/// document's author, with "did you mean" from the schema's key names and values.
struct ErrorReader<'a> {
    file: &'a Path,
    schema: &'a Value,
    root: &'a Node,
}

/// A node found by its JSON pointer: where to point for it (its key in the parent mapping,
/// its item, or the document) and its key path.
struct Found<'n> {
    node: &'n Node,
    span: Span,
    path: String,
}

impl<'a> ErrorReader<'a> {
    fn read_all(&self, errors: &[jsonschema::ValidationError<'_>]) -> Vec<Diagnostic> {
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

/// The keys of a schema's `properties`, in the schema's order.
fn property_names(properties: Option<&Value>) -> Vec<&str> {
    properties
        .and_then(Value::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default()
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

/// `604800`, `0.5`; a huge number as `1e300` rather than its 301 digits.
fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else if x.abs() < 1e15 {
        x.to_string()
    } else {
        format!("{x:e}")
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
