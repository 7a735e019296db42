//! Run parameters: the pack's `params` plus launch overrides (`-p key=value`), normalised
//! like Cerberus normalises kissats' global parameters (every known key present, defaults
//! filled), validated with the same schema as `pack.yaml`'s `params`; and the
//! `req_param_keys` check over every task of a run before anything starts.

use std::path::Path;

use serde_json::{Map, Value};

use crate::doc::{self, Limits, Node};
pub use crate::pack::global_params_json;
use crate::pack::{GlobalParams, TaskDef};

/// A launch parameter that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("`{arg}` is not key=value")]
    NotKeyValue { arg: String },
    #[error("-p {key}: value `{value}` does not parse: {message}")]
    BadValue {
        key: String,
        value: String,
        message: String,
    },
    #[error("run parameter `{key}`: {message}")]
    Invalid { key: String, message: String },
    /// An override whose JSON type is not the type of the pack's default.
    #[error("run parameter `{key}`: expected {expected} like the pack's default, got {got}")]
    WrongType {
        key: String,
        expected: &'static str,
        got: &'static str,
    },
}

impl ParamError {
    /// The parameter key the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ParamError::NotKeyValue { .. } => None,
            ParamError::BadValue { key, .. }
            | ParamError::Invalid { key, .. }
            | ParamError::WrongType { key, .. } => Some(key),
        }
    }
}

/// One `req_param_keys` entry a task needs that the run's parameters lack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingParam {
    pub task: String,
    pub key: String,
}

/// Parse `key=value`; the value is read as a YAML scalar or flow value, so `2` is an
/// integer, `[1, 2]` a list, `true` a boolean, `'2'` a string and an empty value null.
pub fn parse_override(arg: &str) -> Result<(String, Value), ParamError> {
    let Some((key, raw)) = arg.split_once('=') else {
        return Err(ParamError::NotKeyValue { arg: arg.into() });
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(ParamError::NotKeyValue { arg: arg.into() });
    }
    let bad = |message: String| ParamError::BadValue {
        key: key.into(),
        value: raw.into(),
        message,
    };
    let limits = Limits {
        max_nodes: 10_000,
        max_depth: 16,
    };
    let node = doc::parse_yaml(Path::new("-p"), raw, limits)
        .map_err(|d| bad(d.first().map(|d| d.message.clone()).unwrap_or_default()))?;
    Ok((key.into(), node.to_json()))
}

/// Parse every `key=value`; all errors at once. A later key wins over an earlier one.
pub fn parse_overrides<S: AsRef<str>>(args: &[S]) -> Result<Map<String, Value>, Vec<ParamError>> {
    let mut out = Map::new();
    let mut errors = Vec::new();
    for a in args {
        match parse_override(a.as_ref()) {
            Ok((k, v)) => {
                out.insert(k, v);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The JSON type an override must have, from the pack's default: a number, a list of
/// numbers (a non-empty default of numbers), a list of strings (a non-empty default of
/// strings), a list, a string, a boolean, an object; `None` where the default is `null`
/// (any value goes there).
fn expected_type(default: &Value) -> Option<&'static str> {
    Some(match default {
        Value::Null => return None,
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Object(_) => "an object",
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_number) => "a list of numbers",
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => "a list of strings",
        Value::Array(_) => "a list",
    })
}

/// The JSON type of `v` as [`expected_type`] names it.
fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Object(_) => "an object",
        Value::Array(a) if a.iter().all(Value::is_number) && !a.is_empty() => "a list of numbers",
        Value::Array(a) if a.iter().all(Value::is_string) && !a.is_empty() => "a list of strings",
        Value::Array(a) if a.is_empty() => "an empty list",
        Value::Array(_) => "a mixed list",
    }
}

fn fits(expected: &str, v: &Value) -> bool {
    match (expected, v) {
        ("a boolean", Value::Bool(_))
        | ("a number", Value::Number(_))
        | ("a string", Value::String(_))
        | ("an object", Value::Object(_))
        | ("a list", Value::Array(_)) => true,
        ("a list of numbers", Value::Array(a)) => a.iter().all(Value::is_number),
        ("a list of strings", Value::Array(a)) => a.iter().all(Value::is_string),
        _ => false,
    }
}

/// Every override whose JSON type differs from the pack's default for its key (`null`
/// only where the default is `null`), and an emptied `valid_result` (no result would
/// count as a non-failure). Keys the pack does not have are left to the schema check.
pub fn check_override_types(
    pack: &GlobalParams,
    overrides: &Map<String, Value>,
) -> Vec<ParamError> {
    let defaults = global_params_json(pack);
    let mut out = Vec::new();
    for (key, v) in overrides {
        let Some(expected) = defaults.get(key).and_then(expected_type) else {
            continue;
        };
        if !fits(expected, v) {
            out.push(ParamError::WrongType {
                key: key.clone(),
                expected,
                got: type_of(v),
            });
        } else if key == "valid_result" && v.as_array().is_some_and(Vec::is_empty) {
            out.push(ParamError::Invalid {
                key: key.clone(),
                message: "needs at least one result name, else every task fails".into(),
            });
        }
    }
    out
}

/// The pack's parameters with `overrides` on top: each override of the default's type
/// ([`check_override_types`]), the whole validated against the global-params schema (a
/// typo'd key such as `proces_limit` is refused with a suggestion). Every problem at
/// once, each naming its key.
pub fn effective_params(
    pack: &GlobalParams,
    overrides: &Map<String, Value>,
) -> Result<GlobalParams, Vec<ParamError>> {
    let mut merged = global_params_json(pack);
    for (k, v) in overrides {
        merged.insert(k.clone(), v.clone());
    }
    let merged = Value::Object(merged);
    let schema = doc::cached_schema::<GlobalParams>();
    let diags = doc::validate(Path::new("params"), &schema, &Node::from_json(&merged));
    let mut errors: Vec<ParamError> = diags
        .into_iter()
        .map(|d| ParamError::Invalid {
            key: d.key_path.unwrap_or_else(|| "params".into()),
            message: d.message,
        })
        .collect();
    // The schema's word on a key it knows comes first; the default's type covers the rest.
    for e in check_override_types(pack, overrides) {
        let key = e.key().unwrap_or_default();
        let top = |k: &str| k.split(['.', '[']).next().unwrap_or_default().to_string();
        if !errors.iter().any(|x| x.key().map(top) == Some(top(key))) {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    serde_json::from_value(merged).map_err(|e| {
        vec![ParamError::Invalid {
            key: "params".into(),
            message: e.to_string(),
        }]
    })
}

/// Every (task, key) whose `req_param_keys` entry is missing from `global_params` (a key
/// set to null counts as missing), in task order. `global_params` is the object the tasks
/// will get, e.g. [`global_params_json`] plus `dut`/`ats` when the runner adds them.
pub fn missing_param_keys<'a>(
    global_params: &Map<String, Value>,
    tasks: impl IntoIterator<Item = &'a TaskDef>,
) -> Vec<MissingParam> {
    let mut out = Vec::new();
    for t in tasks {
        for k in &t.req_param_keys {
            if global_params.get(k).is_none_or(Value::is_null) {
                let m = MissingParam {
                    task: t.name.clone(),
                    key: k.clone(),
                };
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
    }
    out
}
