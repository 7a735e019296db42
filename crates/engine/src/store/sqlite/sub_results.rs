//! A task result's sub-results as stored in SQLite: one JSON array in its row
//! (`task_results.sub_results_json`, in the order given), each element `{"n": name,
//! "d": description, "r": result, "f": failure, "m": message, "md": metadata}` with an
//! empty description or message, a `false` failure and absent metadata omitted. Kept in
//! the row because nothing looks a sub-result up but its task result: a finished task is
//! one row write, not one row and an index entry per sub-result.

use serde_json::Value;

use crate::store::{NewSubResult, Result, StoreError, SubResultRecord};

/// One sub-result as written.
#[derive(serde::Serialize)]
struct Stored<'a> {
    n: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    d: &'a str,
    r: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    f: bool,
    #[serde(skip_serializing_if = "str::is_empty")]
    m: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    md: Option<&'a Value>,
}

/// One sub-result as read: the migration from the `sub_results` table writes every key,
/// nulls included.
#[derive(serde::Deserialize)]
struct Read {
    n: String,
    #[serde(default)]
    d: Option<String>,
    r: String,
    #[serde(default)]
    f: Option<bool>,
    #[serde(default)]
    m: Option<String>,
    #[serde(default)]
    md: Option<Value>,
}

/// The JSON array of `subs`; `None` when there are none (the row keeps what it has).
pub(super) fn to_json(subs: &[NewSubResult]) -> Result<Option<String>> {
    if subs.is_empty() {
        return Ok(None);
    }
    let stored: Vec<Stored<'_>> = subs
        .iter()
        .map(|s| Stored {
            n: &s.name,
            d: &s.description,
            r: &s.result,
            f: s.failure,
            m: &s.message,
            md: s.metadata.as_ref(),
        })
        .collect();
    serde_json::to_string(&stored)
        .map(Some)
        .map_err(|e| StoreError::Json {
            what: "task_results.sub_results_json",
            source: e,
        })
}

/// A task result's `sub_results_json`, without measurements (`history::attach` adds
/// them). An element that does not read as a sub-result is passed over with a warning
/// rather than hiding the others.
pub(super) fn parse(json: &str) -> Result<Vec<SubResultRecord>> {
    let read: Vec<Read> = match serde_json::from_str(json) {
        Ok(all) => all,
        Err(_) => {
            let items: Vec<Value> = serde_json::from_str(json).map_err(|e| StoreError::Json {
                what: "task_results.sub_results_json",
                source: e,
            })?;
            items
                .into_iter()
                .filter_map(|v| {
                    serde_json::from_value(v)
                        .inspect_err(|e| tracing::warn!(error = %e, "a stored sub-result does not read; passed over"))
                        .ok()
                })
                .collect()
        }
    };
    Ok(read
        .into_iter()
        .map(|r| SubResultRecord {
            name: r.n,
            description: r.d.unwrap_or_default(),
            result: r.r,
            failure: r.f.unwrap_or(false),
            message: r.m.unwrap_or_default(),
            // A sub-result's metadata is an object (`run::item::finish`); anything else,
            // such as the text the migration kept of metadata that was not JSON, reads as
            // none, as it did from the table.
            metadata: r.md.filter(Value::is_object),
            measurements: Vec::new(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_left_out_and_read_back() {
        let subs = [
            NewSubResult {
                name: "ch \"101\"".into(),
                result: "Passed".into(),
                ..Default::default()
            },
            NewSubResult {
                name: "µ".into(),
                description: "d".into(),
                result: "Failed".into(),
                failure: true,
                message: "m".into(),
                metadata: Some(serde_json::json!({"a": null, "b": [1.5]})),
                measurements: Vec::new(),
            },
        ];
        let json = to_json(&subs).unwrap().unwrap();
        assert_eq!(
            json,
            r#"[{"n":"ch \"101\"","r":"Passed"},{"n":"µ","d":"d","r":"Failed","f":true,"m":"m","md":{"a":null,"b":[1.5]}}]"#
        );
        let back = parse(&json).unwrap();
        assert_eq!(back[0].name, "ch \"101\"");
        assert!(!back[0].failure && back[0].metadata.is_none());
        assert_eq!(
            (
                back[1].description.as_str(),
                back[1].failure,
                back[1].message.as_str()
            ),
            ("d", true, "m")
        );
        assert_eq!(back[1].metadata, subs[1].metadata);
        assert_eq!(to_json(&[]).unwrap(), None);
    }

    #[test]
    fn an_element_that_does_not_read_is_passed_over() {
        let back =
            parse(r#"[{"n":"a","r":"Passed"},{"x":1},{"n":"b","r":"Failed","f":true}]"#).unwrap();
        let names: Vec<&str> = back.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(parse("not json").is_err());
    }
}
