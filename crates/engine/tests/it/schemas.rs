//! The committed `schemas/*.schema.json` are exactly what the code generates.
//!
//! To regenerate after changing a model type:
//! `TESTBAY_BLESS=1 cargo test -p testbay-engine --test it schemas`

use std::path::PathBuf;

use testbay_engine::pack::schema::all_schemas;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

#[test]
fn committed_schemas_match_code() {
    let dir = schemas_dir();
    let update = std::env::var_os("TESTBAY_BLESS").is_some();
    let mut stale = Vec::new();
    for (name, schema) in all_schemas() {
        let path = dir.join(name);
        let want = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &want).unwrap();
            } else {
                stale.push(name);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/ differs from the code for {stale:?}; run `TESTBAY_BLESS=1 cargo test -p testbay-engine --test it schemas` and commit"
    );
}

#[test]
fn every_schema_is_a_draft07_object_schema_with_a_title() {
    for (name, schema) in all_schemas() {
        assert_eq!(
            schema["$schema"], "http://json-schema.org/draft-07/schema#",
            "{name}"
        );
        assert_eq!(schema["type"], "object", "{name}");
        assert!(schema["title"].is_string(), "{name}");
    }
}

/// Every integer users write has its range in the schema (`bounds`), so a value too large
/// for its Rust type is refused with the range rather than a deserialisation error.
#[test]
fn every_integer_in_a_schema_has_a_range() {
    fn walk(name: &str, path: &str, v: &serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                let integer = match &m.get("type") {
                    Some(serde_json::Value::String(t)) => t == "integer",
                    Some(serde_json::Value::Array(ts)) => ts.iter().any(|t| t == "integer"),
                    _ => false,
                };
                if integer {
                    assert!(
                        m.contains_key("minimum") && m.contains_key("maximum"),
                        "{name}: {path} is an integer without a minimum and a maximum"
                    );
                }
                for (k, sub) in m {
                    walk(name, &format!("{path}/{k}"), sub);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, sub) in items.iter().enumerate() {
                    walk(name, &format!("{path}/{i}"), sub);
                }
            }
            _ => {}
        }
    }
    for (name, schema) in all_schemas() {
        walk(name, "", &schema);
    }
}
