//! `results.yaml`: the results tree written as block-style YAML.

use serde_json::{Map, Value};

use crate::store::{RunRecord, TaskRecord};

use super::results_tree;

/// `results.yaml`: the results tree as YAML.
pub fn results_yaml(run: &RunRecord, tasks: &[TaskRecord]) -> String {
    yaml_text(&results_tree(run, tasks))
}

/// `v` as block-style YAML, written straight from the tree (a run's end waits for it).
/// A string is plain only where it cannot read as anything else, a multi-line one is a
/// literal block, the rest is JSON-quoted (a JSON string is a YAML double-quoted scalar).
fn yaml_text(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => yaml_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => yaml_seq(&mut out, a, 0),
        other => {
            yaml_scalar(&mut out, other, 2);
            out.push('\n');
        }
    }
    out
}

fn yaml_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn yaml_map(out: &mut String, m: &Map<String, Value>, indent: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        // The first entry of a map in a sequence goes on the dash's line.
        if i > 0 || indent == 0 || !out.ends_with("- ") {
            yaml_indent(out, indent);
        }
        yaml_entry(out, k, v, indent);
    }
}

/// `key: value` at `indent`, the key already indented.
fn yaml_entry(out: &mut String, k: &str, v: &Value, indent: usize) {
    // A key is one line: plain, or JSON-quoted.
    if yaml_plain_ok(k) && !k.contains(':') {
        out.push_str(k);
    } else {
        out.push_str(&serde_json::to_string(k).expect("a string serialises"));
    }
    out.push(':');
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml_map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml_seq(out, a, indent + 2);
        }
        _ => {
            out.push(' ');
            yaml_scalar(out, v, indent + 2);
            out.push('\n');
        }
    }
}

fn yaml_seq(out: &mut String, a: &[Value], indent: usize) {
    for v in a {
        yaml_indent(out, indent);
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push_str("- ");
                yaml_map(out, m, indent + 2);
            }
            Value::Array(b) if !b.is_empty() => {
                out.push_str("-\n");
                yaml_seq(out, b, indent + 2);
            }
            _ => {
                out.push_str("- ");
                yaml_scalar(out, v, indent + 2);
                out.push('\n');
            }
        }
    }
}

/// A scalar (or an empty map or list); block content goes at `indent`.
fn yaml_scalar(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => yaml_string(out, s, indent),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn yaml_string(out: &mut String, s: &str, indent: usize) {
    if yaml_plain_ok(s) {
        out.push_str(s);
    } else if yaml_literal_ok(s) {
        out.push_str("|-");
        for line in s.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                yaml_indent(out, indent);
                out.push_str(line);
            }
        }
    } else {
        out.push_str(&serde_json::to_string(s).expect("a string serialises"));
    }
}

/// Whether `s` reads back as this same string unquoted, in any YAML parser (1.1 and 1.2
/// alike: no booleans like `yes`, no numbers, no timestamps).
fn yaml_plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_alphabetic() || first == '_' || first == '/') {
        return false;
    }
    if s.ends_with([' ', ':']) || s.contains(": ") || s.contains(" #") {
        return false;
    }
    if !s.chars().all(|c| {
        c.is_alphanumeric()
            || matches!(
                c,
                ' ' | '_' | '-' | '.' | '/' | ':' | '+' | '@' | '(' | ')' | '=' | ','
            )
    }) {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    !matches!(
        lower.as_str(),
        "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "inf" | "nan"
    )
}

/// Whether `s` can be a `|-` literal block: several lines of printable text, the first
/// not starting with a blank, no trailing line break.
fn yaml_literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.ends_with('\n')
        && !s.starts_with([' ', '\n'])
        && !s.chars().any(|c| c.is_control() && c != '\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from_yaml(y: &yaml_rust2::Yaml) -> Value {
        use yaml_rust2::Yaml;
        match y {
            Yaml::Null => Value::Null,
            Yaml::Boolean(b) => json!(b),
            Yaml::Integer(i) => json!(i),
            Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
            Yaml::String(s) => json!(s),
            Yaml::Array(a) => Value::Array(a.iter().map(from_yaml).collect()),
            Yaml::Hash(h) => Value::Object(
                h.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_string(), from_yaml(v)))
                    .collect(),
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn yaml_reads_back_as_the_tree() {
        let tricky = [
            "",
            " lead",
            "trail ",
            "yes",
            "No",
            "on",
            "null",
            "~",
            "1",
            "1.5",
            "-1",
            "+1",
            ".5",
            "1e3",
            "0x1f",
            "inf",
            "2026-11-21T19:55:00.123Z",
            "a: b",
            "a:b",
            "x #y",
            "#c",
            "- d",
            "[e]",
            "{f}",
            "*g",
            "&h",
            "!i",
            "%j",
            "@k",
            "`l",
            "|m",
            ">n",
            "'o'",
            "\"p\"",
            "q,r",
            "two\nlines",
            "two\n\nlines with gap",
            "ends\n",
            "tab\there",
            "é unicode",
            "t0001",
            "quick/main.log",
            "a\u{7}bell",
            "\nstarts",
            "  two\nspaces",
        ];
        let tree = json!({
            "version": 1,
            "strings": tricky.to_vec(),
            "keys": tricky.iter().map(|k| (k.to_string(), json!(k))).collect::<Map<String, Value>>(),
            "nested": [{"a": 1, "b": [1, [2, 3], {}], "c": {"d": null, "e": [], "f": true}}, [], [[1]]],
            "numbers": [0, -5, 0.01, 1e-7, 12345678901i64, 2.5],
            "empty_map": {},
            "deep": {"x": {"y": {"z": "multi\nline\ntext"}}},
        });
        let text = yaml_text(&tree);
        let docs =
            yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(from_yaml(&docs[0]), tree, "{text}");
        // Plain where it is safe, literal blocks for messages.
        assert!(text.contains("- t0001\n"), "{text}");
        assert!(
            text.contains("z: |-\n        multi\n        line\n"),
            "{text}"
        );
    }
}
