//! params: launch overrides, effective parameters, req_param_keys.

use serde_json::{json, Map, Value};
use testbay_core::pack::{GlobalParams, ResourceMode, TaskDef};
use testbay_core::params::{
    effective_params, global_params_json, missing_param_keys, parse_override, parse_overrides,
    MissingParam, ParamError,
};

fn task(name: &str, req: &[&str]) -> TaskDef {
    serde_json::from_value(json!({"name": name, "run": ["true"], "req_param_keys": req})).unwrap()
}

#[test]
fn override_values_are_yaml_scalars_and_flow_values() {
    assert_eq!(
        parse_override("process_limit=2").unwrap(),
        ("process_limit".into(), json!(2))
    );
    assert_eq!(parse_override("channels=[1, 2]").unwrap().1, json!([1, 2]));
    assert_eq!(parse_override("ignore_prereq=true").unwrap().1, json!(true));
    assert_eq!(parse_override("firmware='4.2'").unwrap().1, json!("4.2"));
    assert_eq!(parse_override("firmware=4.2.1").unwrap().1, json!("4.2.1"));
    assert_eq!(parse_override("ratio=0.5").unwrap().1, json!(0.5));
    assert_eq!(parse_override("cfg={a: 1}").unwrap().1, json!({"a": 1}));
    assert_eq!(parse_override("empty=").unwrap().1, Value::Null);
    assert_eq!(
        parse_override("url=http://x/y?a=b").unwrap().1,
        json!("http://x/y?a=b")
    );
}

#[test]
fn malformed_overrides_name_the_argument() {
    assert_eq!(
        parse_override("process_limit").unwrap_err(),
        ParamError::NotKeyValue {
            arg: "process_limit".into()
        }
    );
    assert!(matches!(
        parse_override("=3"),
        Err(ParamError::NotKeyValue { .. })
    ));
    let e = parse_override("channels=[1, 2").unwrap_err();
    assert_eq!(e.key(), Some("channels"));
    assert!(
        e.to_string()
            .starts_with("-p channels: value `[1, 2` does not parse"),
        "{e}"
    );
    let all = parse_overrides(&["a=1", "b", "c=[", "d=2"]).unwrap_err();
    assert_eq!(all.len(), 2);
}

#[test]
fn effective_params_apply_overrides_on_pack_defaults() {
    let pack: GlobalParams =
        serde_json::from_value(json!({"process_limit": 4, "channel_list": [1]})).unwrap();
    let o = parse_overrides(&[
        "process_limit=2",
        "channel_list=[7, 8]",
        "resource_mode=per_task_combine",
        "extra=x",
    ])
    .unwrap();
    let p = effective_params(&pack, &o).unwrap();
    assert_eq!(p.process_limit, 2);
    assert_eq!(p.resource_mode, ResourceMode::PerTaskCombine);
    assert_eq!(p.extra["channel_list"], json!([7, 8]));
    assert_eq!(p.extra["extra"], json!("x"));
    // Normalised: every known key is present with its default.
    let j = global_params_json(&p);
    assert_eq!(j["valid_result"], json!(["Passed", "Completed", "Skipped"]));
    assert_eq!(j["ignore_prereq"], json!(false));
    assert_eq!(j["coverage_mode"], json!("dut"));
    assert_eq!(
        effective_params(&pack, &Map::new()).unwrap().process_limit,
        4
    );
}

#[test]
fn bad_overrides_are_typed_errors_naming_the_key() {
    let pack = GlobalParams::default();
    let o = parse_overrides(&[
        "process_limit=abc",
        "resource_mode=fast",
        "proces_limit=3",
        "ignore_prereq=0",
    ])
    .unwrap();
    let errs = effective_params(&pack, &o).unwrap_err();
    let by_key: Vec<(&str, String)> = errs
        .iter()
        .map(|e| (e.key().unwrap(), e.to_string()))
        .collect();
    assert_eq!(by_key.len(), 4, "{by_key:#?}");
    assert!(
        by_key.iter().any(|(k, m)| *k == "process_limit"
            && m.contains("expected an integer, found a string (`abc`)")),
        "{by_key:#?}"
    );
    assert!(
        by_key
            .iter()
            .any(|(k, m)| *k == "resource_mode" && m.contains("expected one of `all`")),
        "{by_key:#?}"
    );
    assert!(
        by_key
            .iter()
            .any(|(k, m)| *k == "proces_limit" && m.contains("did you mean `process_limit`?")),
        "{by_key:#?}"
    );
    assert!(
        by_key
            .iter()
            .any(|(k, m)| *k == "ignore_prereq" && m.contains("expected true or false")),
        "{by_key:#?}"
    );
    let zero =
        effective_params(&pack, &parse_overrides(&["process_limit=0"]).unwrap()).unwrap_err();
    assert_eq!(
        zero[0].to_string(),
        "run parameter `process_limit`: must be at least 1 (found 0)"
    );
    // The upper end of the range, for overrides as for pack.yaml.
    for (value, found) in [("5000", "5000"), ("1e300", "1e300")] {
        let over = effective_params(
            &pack,
            &parse_overrides(&[format!("process_limit={value}")]).unwrap(),
        )
        .unwrap_err();
        assert_eq!(
            over[0].to_string(),
            format!("run parameter `process_limit`: must be at most 1024 (found {found})")
        );
    }
}

#[test]
fn req_param_keys_reports_every_missing_pair() {
    let mut g = global_params_json(&GlobalParams::default());
    g.insert("channel_list".into(), json!([1]));
    g.insert("nulled".into(), Value::Null);
    let tasks = [
        task("boot", &["firmware"]),
        task("tune", &["channel_list", "stream_url", "nulled"]),
        task("scan", &["process_limit"]),
    ];
    let missing = missing_param_keys(&g, tasks.iter());
    let m = |t: &str, k: &str| MissingParam {
        task: t.into(),
        key: k.into(),
    };
    assert_eq!(
        missing,
        [
            m("boot", "firmware"),
            m("tune", "stream_url"),
            m("tune", "nulled")
        ]
    );
}

/// An override must have the JSON type of the pack's default (null only where the
/// default is null); keys the pack lacks are the schema's to judge.
#[test]
fn overrides_must_have_the_type_of_the_default() {
    use testbay_core::params::{check_override_types, ParamError};
    let pack: GlobalParams = serde_json::from_value(json!({
        "channel_list": [101, 102], "names": ["a"], "any": null, "firmware": "4.2",
        "slow": 8, "loud": false, "empty": []
    }))
    .unwrap();
    let over = |v: serde_json::Value| v.as_object().unwrap().clone();
    let ok = over(json!({
        "channel_list": [], "names": ["b", "c"], "any": [1, "x"], "firmware": "5",
        "slow": 0.5, "loud": true, "empty": ["x"], "unknown": 1
    }));
    assert_eq!(check_override_types(&pack, &ok), vec![]);
    let bad = over(json!({
        "channel_list": [1, "abc"], "names": [1], "firmware": 4.2, "slow": null,
        "loud": "yes", "empty": "x", "valid_result": []
    }));
    let errs = check_override_types(&pack, &bad);
    let mut keys: Vec<&str> = errs.iter().filter_map(ParamError::key).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "channel_list",
            "empty",
            "firmware",
            "loud",
            "names",
            "slow",
            "valid_result"
        ],
        "{errs:#?}"
    );
    let says = |key: &str| {
        errs.iter()
            .find(|e| e.key() == Some(key))
            .unwrap()
            .to_string()
    };
    assert!(says("channel_list")
        .contains("expected a list of numbers like the pack's default, got a mixed list"));
    assert!(says("slow").contains("got null"));
}
