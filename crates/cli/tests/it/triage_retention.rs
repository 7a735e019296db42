//! `testbay triage list|add|remove|apply` and `testbay results prune|keep|usage` over runs
//! stored by `testbay run` (the fixture pack `tests/fixtures/triage-packs/triage-e2e`).

use serde_json::Value;

use crate::support::{repo, run_id_of, text, Bed};

fn json(f: &Bed, args: &[&str]) -> Value {
    let out = f.testbay(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}\n{}", text(&out.stdout)))
}

fn runs(f: &Bed, n: usize) -> Vec<String> {
    let pack = repo().join("tests/fixtures/triage-packs/triage-e2e");
    (0..n)
        .map(|_| run_id_of(&text(&f.testbay(&["run", pack.to_str().unwrap()]).stdout)))
        .collect()
}

#[test]
fn triage_rules_classify_stored_failures() {
    let f = Bed::new();
    let ids = runs(&f, 1);
    json(
        &f,
        &[
            "triage",
            "add",
            "net",
            "--category",
            "infrastructure",
            "--message",
            "connection refused",
            "--issue",
            "https://tracker/LAB-1",
            "--json",
        ],
    );
    let r = json(
        &f,
        &[
            "triage",
            "add",
            "hdmi",
            "--category",
            "product",
            "--log",
            "HDMI hotplug",
            "--position",
            "0",
            "--json",
        ],
    );
    assert_eq!(r["rules"][0]["name"], "hdmi", "placed first");
    let bad = f.testbay(&["triage", "add", "bad", "--category", "x", "--log", "(x"]);
    assert!(!bad.status.success(), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("rule `bad`"),
        "{}",
        text(&bad.stderr)
    );

    let failures = json(&f, &["triage", "apply", &ids[0], "--json"]);
    let cat = |task: &str| {
        failures
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["task"] == task)
            .unwrap()["category"]
            .clone()
    };
    assert_eq!(cat("net"), "infrastructure");
    assert_eq!(cat("hdmi"), "product");
    assert_eq!(cat("plain"), Value::Null);
    let s = json(&f, &["triage", "apply", "--json"]);
    assert_eq!(
        (s["failures"].as_u64(), s["known"].as_u64()),
        (Some(3), Some(2))
    );

    json(&f, &["triage", "remove", "net", "--json"]);
    let list = json(&f, &["triage", "list", "--json"]);
    assert_eq!(list["rules"].as_array().unwrap().len(), 1);
    let s = json(&f, &["triage", "apply", "--json"]);
    assert_eq!(
        s["known"].as_u64(),
        Some(1),
        "the removed rule no longer counts"
    );
}

#[test]
fn prune_keeps_marked_runs_and_a_dry_run_changes_nothing() {
    let f = Bed::new();
    let ids = runs(&f, 3);
    std::fs::write(
        f.data.join("settings.yaml"),
        "retention:\n  runs_per_pack: 1\n",
    )
    .unwrap();
    json(&f, &["results", "keep", &ids[0], "--json"]);
    let dry = json(&f, &["results", "prune", "--dry-run", "--json"]);
    assert_eq!(dry["runs"].as_array().unwrap().len(), 1, "{dry}");
    assert_eq!(dry["runs"][0]["run_id"], ids[1].as_str());
    assert!(
        f.data.join("runs").join(&ids[1]).is_dir(),
        "a dry run removes nothing"
    );
    let done = json(&f, &["results", "prune", "--json"]);
    assert_eq!(done["runs"][0]["run_id"], ids[1].as_str());
    assert!(done["files_bytes"].as_u64().unwrap() > 0);
    assert!(!f.data.join("runs").join(&ids[1]).exists());
    let gone = f.testbay(&["results", &ids[1]]);
    assert_ne!(gone.status.code(), Some(0), "its rows went with it");
    let u = json(&f, &["results", "usage", "--json"]);
    assert_eq!(u["run_folders"].as_u64(), Some(2));
    assert_eq!(u["policy"]["runs_per_pack"].as_u64(), Some(1));
}
