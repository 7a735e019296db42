//! YAML text to a [`Node`] tree, from `yaml-rust2`'s parser events: UTF-8 checked first
//! (the first bad byte named), aliases expanded while counting nodes (an alias bomb is
//! refused after [`Limits::max_nodes`] nodes of work, nesting past [`Limits::max_depth`]
//! likewise), a duplicate key, a non-scalar key, an unknown or failing tag and a
//! non-finite number each a problem at its place, a second document refused. A syntax
//! error is placed by `syntax`.

use std::collections::HashMap;
use std::path::Path;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;
use yaml_rust2::Yaml;

use super::syntax;
use super::tree::{short, Entry, Node, NodeKind, Span};
use crate::diag::Diagnostic;

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
