//! Load a YAML (or JSON) document with line numbers and validate it against the JSON Schema
//! generated from its Rust type.
//!
//! The text is parsed with `yaml-rust2`'s event parser into a [`Node`] tree in which every
//! node knows its line and column. Aliases are expanded while the tree is built, counting
//! nodes, so an alias bomb is refused after at most [`Limits::max_nodes`] nodes of work. The
//! tree is then checked against `schemars::schema_for!(T)` by a validator for the subset
//! schemars emits, collecting every problem as a [`Diagnostic`]; only a document without
//! problems is deserialised into `T`. A YAML syntax error is placed by `syntax` where a
//! reader must look (the `[` left open, not the end of the file where the parser gave up).

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
    let mut diags = validate(file, &schema, &node);
    sort_diags(&mut diags);
    let json = node.to_json();
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

/// The schema of `T`, generated once per type.
pub fn cached_schema<T: JsonSchema + 'static>() -> Arc<Value> {
    static CACHE: OnceLock<Mutex<HashMap<TypeId, Arc<Value>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(TypeId::of::<T>())
        .or_insert_with(|| Arc::new(crate::schema::schema_of::<T>()))
        .clone()
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

/// Validate `node` against a JSON Schema (the subset schemars emits); every problem found.
pub fn validate(file: &Path, schema: &Value, node: &Node) -> Vec<Diagnostic> {
    let v = Validator { file, root: schema };
    let mut out = Vec::new();
    v.check(schema, node, "", node.span, &mut out);
    out
}

struct Validator<'a> {
    file: &'a Path,
    root: &'a Value,
}

fn type_matches(ty: &str, node: &Node) -> bool {
    match (ty, &node.kind) {
        ("null", NodeKind::Null) => true,
        ("boolean", NodeKind::Bool(_)) => true,
        ("integer", NodeKind::Int(_)) => true,
        ("integer", NodeKind::Float(f)) => f.fract() == 0.0,
        ("number", NodeKind::Int(_) | NodeKind::Float(_)) => true,
        ("string", NodeKind::Str(_)) => true,
        ("array", NodeKind::Seq(_)) => true,
        ("object", NodeKind::Map(_)) => true,
        _ => false,
    }
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

impl Validator<'_> {
    fn err(&self, out: &mut Vec<Diagnostic>, span: Span, path: &str, message: String) {
        out.push(Diagnostic {
            file: self.file.to_path_buf(),
            line: Some(span.line),
            column: Some(span.column),
            key_path: (!path.is_empty()).then(|| path.to_string()),
            message,
        });
    }

    fn resolve<'s>(&'s self, r: &str) -> Option<&'s Value> {
        let name = r.strip_prefix("#/definitions/")?;
        self.root.get("definitions")?.get(name)
    }

    /// `span` is where to point for this node: its key in the parent mapping, or the node.
    fn check(
        &self,
        schema: &Value,
        node: &Node,
        path: &str,
        span: Span,
        out: &mut Vec<Diagnostic>,
    ) {
        let s = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                self.err(out, span, path, "no value is allowed here".into());
                return;
            }
            Value::Object(s) => s,
            _ => return,
        };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            match self.resolve(r) {
                Some(target) => self.check(target, node, path, span, out),
                None => self.err(out, span, path, format!("schema error: unknown $ref {r}")),
            }
        }
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, node, path, span, out);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = s.get(key).and_then(Value::as_array) {
                self.check_alternatives(branches, node, path, span, out);
            }
        }
        if let Some(ty) = s.get("type") {
            let types: Vec<&str> = match ty {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !types.is_empty() && !types.iter().any(|t| type_matches(t, node)) {
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
                self.err(out, span, path, msg);
                return;
            }
        }
        if let Some(allowed) = s.get("enum").and_then(Value::as_array) {
            let v = node.to_json();
            if !allowed.contains(&v) {
                self.err(out, span, path, enum_message(allowed, node));
            }
        }
        if let Some(c) = s.get("const") {
            if &node.to_json() != c {
                self.err(
                    out,
                    span,
                    path,
                    format!("expected `{c}`, found {}", node.describe()),
                );
            }
        }
        match &node.kind {
            NodeKind::Int(_) | NodeKind::Float(_) => self.check_number(s, node, path, span, out),
            NodeKind::Str(v) => {
                let n = v.chars().count() as u64;
                if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
                    if n < min {
                        let msg = if min == 1 {
                            "must not be empty".to_string()
                        } else {
                            format!("must be at least {min} characters long")
                        };
                        self.err(out, span, path, msg);
                    }
                }
                if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                    if n > max {
                        self.err(
                            out,
                            span,
                            path,
                            format!("must be at most {max} characters long"),
                        );
                    }
                }
            }
            NodeKind::Seq(items) => self.check_seq(s, items, path, span, out),
            NodeKind::Map(entries) => self.check_map(s, entries, path, span, out),
            NodeKind::Null | NodeKind::Bool(_) => {}
        }
    }

    fn check_alternatives(
        &self,
        branches: &[Value],
        node: &Node,
        path: &str,
        span: Span,
        out: &mut Vec<Diagnostic>,
    ) {
        let mut results = Vec::new();
        for b in branches {
            let mut errs = Vec::new();
            self.check(b, node, path, span, &mut errs);
            if errs.is_empty() {
                return;
            }
            results.push(errs);
        }
        // All branches are single string values (a Rust enum): one message listing them.
        let values: Option<Vec<Value>> = branches
            .iter()
            .map(|b| {
                let b = match b.get("$ref").and_then(Value::as_str) {
                    Some(r) => self.resolve(r)?,
                    None => b,
                };
                if let Some(c) = b.get("const") {
                    return Some(vec![c.clone()]);
                }
                b.get("enum").and_then(Value::as_array).cloned()
            })
            .collect::<Option<Vec<_>>>()
            .map(|v| v.into_iter().flatten().collect());
        if let Some(values) = values {
            self.err(out, span, path, enum_message(&values, node));
            return;
        }
        // Otherwise the branch whose type fits the node best speaks.
        let best = results
            .into_iter()
            .min_by_key(|errs| {
                let type_error = errs.iter().any(|e| {
                    e.key_path.as_deref() == (!path.is_empty()).then_some(path)
                        && e.message.starts_with("expected")
                });
                (type_error, errs.len())
            })
            .unwrap_or_default();
        out.extend(best);
    }

    fn check_number(
        &self,
        s: &Map<String, Value>,
        node: &Node,
        path: &str,
        span: Span,
        out: &mut Vec<Diagnostic>,
    ) {
        let x = match node.kind {
            NodeKind::Int(i) => i as f64,
            NodeKind::Float(f) => f,
            _ => return,
        };
        let shown = match node.kind {
            NodeKind::Int(i) => i.to_string(),
            _ => fmt_num(x),
        };
        let before = out.len();
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            if x < min {
                self.err(
                    out,
                    span,
                    path,
                    format!("must be at least {} (found {shown})", fmt_num(min)),
                );
            }
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            if x > max {
                self.err(
                    out,
                    span,
                    path,
                    format!("must be at most {} (found {shown})", fmt_num(max)),
                );
            }
        }
        if let Some(min) = s.get("exclusiveMinimum").and_then(Value::as_f64) {
            if x <= min {
                self.err(
                    out,
                    span,
                    path,
                    format!("must be more than {} (found {shown})", fmt_num(min)),
                );
            }
        }
        if let Some(max) = s.get("exclusiveMaximum").and_then(Value::as_f64) {
            if x >= max {
                self.err(
                    out,
                    span,
                    path,
                    format!("must be less than {} (found {shown})", fmt_num(max)),
                );
            }
        }
        let range = match s.get("format").and_then(Value::as_str) {
            Some("uint8") => Some((0.0, u8::MAX as f64)),
            Some("uint16") => Some((0.0, u16::MAX as f64)),
            Some("uint32") => Some((0.0, u32::MAX as f64)),
            Some("uint64" | "uint") => Some((0.0, u64::MAX as f64)),
            Some("int8") => Some((i8::MIN as f64, i8::MAX as f64)),
            Some("int16") => Some((i16::MIN as f64, i16::MAX as f64)),
            Some("int32") => Some((i32::MIN as f64, i32::MAX as f64)),
            _ => None,
        };
        if let Some((lo, hi)) = range.filter(|_| out.len() == before) {
            if x < lo || x > hi {
                self.err(
                    out,
                    span,
                    path,
                    format!(
                        "{shown} is out of range ({} to {})",
                        fmt_num(lo),
                        fmt_num(hi)
                    ),
                );
            }
        }
    }

    fn check_seq(
        &self,
        s: &Map<String, Value>,
        items: &[Node],
        path: &str,
        span: Span,
        out: &mut Vec<Diagnostic>,
    ) {
        let n = items.len() as u64;
        if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
            if n < min {
                let msg = if min == 1 {
                    "must list at least one item".to_string()
                } else {
                    format!("must list at least {min} items")
                };
                self.err(out, span, path, msg);
            }
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
            if n > max {
                self.err(out, span, path, format!("must list at most {max} items"));
            }
        }
        match s.get("items") {
            Some(Value::Array(tuple)) => {
                for (i, (item, sub)) in items.iter().zip(tuple).enumerate() {
                    self.check(sub, item, &index_path(path, i), item.span, out);
                }
            }
            Some(sub) => {
                for (i, item) in items.iter().enumerate() {
                    self.check(sub, item, &index_path(path, i), item.span, out);
                }
            }
            None => {}
        }
        if s.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
            let mut seen: Vec<(Value, usize)> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let v = item.to_json();
                if let Some((_, first)) = seen.iter().find(|(w, _)| *w == v) {
                    self.err(
                        out,
                        item.span,
                        &index_path(path, i),
                        format!("duplicate of item {first}"),
                    );
                } else {
                    seen.push((v, i));
                }
            }
        }
    }

    fn check_map(
        &self,
        s: &Map<String, Value>,
        entries: &[Entry],
        path: &str,
        span: Span,
        out: &mut Vec<Diagnostic>,
    ) {
        let empty = Map::new();
        let props = s
            .get("properties")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let additional = s.get("additionalProperties");
        for e in entries {
            let p = child_path(path, &e.key);
            if let Some(sub) = props.get(&e.key) {
                self.check(sub, &e.value, &p, e.key_span, out);
                continue;
            }
            match additional {
                Some(Value::Bool(false)) => {
                    let msg = match did_you_mean(&e.key, props.keys().map(String::as_str)) {
                        Some(m) => format!("unknown key `{}`; did you mean `{m}`?", e.key),
                        None => format!(
                            "unknown key `{}`; expected one of: {}",
                            e.key,
                            props
                                .keys()
                                .map(String::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    self.err(out, e.key_span, &p, msg);
                }
                Some(sub @ Value::Object(_)) => self.check(sub, &e.value, &p, e.key_span, out),
                _ => {
                    // Open mapping: free keys are allowed, but one a typo away from a known
                    // key is almost certainly that key misspelt.
                    if e.key.chars().count() >= 4 {
                        if let Some(m) = did_you_mean(&e.key, props.keys().map(String::as_str)) {
                            let dist = strsim::damerau_levenshtein(
                                &e.key.to_lowercase(),
                                &m.to_lowercase(),
                            );
                            if dist <= 2 {
                                self.err(
                                    out,
                                    e.key_span,
                                    &p,
                                    format!("unknown key `{}`; did you mean `{m}`? (free keys are allowed here, but not one this close to a known key)", e.key),
                                );
                            }
                        }
                    }
                }
            }
        }
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            for k in req.iter().filter_map(Value::as_str) {
                if !entries.iter().any(|e| e.key == k) {
                    self.err(
                        out,
                        span,
                        &child_path(path, k),
                        format!("missing required key `{k}`"),
                    );
                }
            }
        }
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
