//! Schema validation through the `jsonschema` crate: a model type's generated schema,
//! adapted to the messages users read and compiled once per type, with the near-miss check
//! of mappings that allow free keys as a custom keyword. Errors become diagnostics in
//! `errors`.

use std::any::TypeId;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use schemars::JsonSchema;
use serde_json::{Map, Value};

use super::errors::ErrorReader;
use super::tree::Node;
use crate::diag::{did_you_mean, Diagnostic};

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
pub(super) const NEAR_MISS_KEYWORD: &str = "x-testbay-near-miss";

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
pub(super) fn near_miss<'n>(
    key: &str,
    named: impl Iterator<Item = &'n str> + Clone,
) -> Option<&'n str> {
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
pub(super) fn validate_json(
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

/// The keys of a schema's `properties`, in the schema's order.
pub(super) fn property_names(properties: Option<&Value>) -> Vec<&str> {
    properties
        .and_then(Value::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default()
}
