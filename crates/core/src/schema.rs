//! The JSON Schema of a model type, as `doc` validates documents against it and as
//! `schemas/` commits it.

use schemars::gen::SchemaSettings;
use schemars::JsonSchema;
use serde_json::Value;

/// The JSON Schema (draft-07) of `T`, as the loader validates documents against it.
pub fn schema_of<T: JsonSchema>() -> Value {
    let gen = SchemaSettings::draft07().into_generator();
    let root = gen.into_root_schema_for::<T>();
    serde_json::to_value(root).expect("a schemars schema always serialises")
}
