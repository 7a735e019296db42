//! `testbay webhook` and `testbay lab health` against a data dir, and a retried task as
//! `testbay run` and `testbay results` show it.

use serde_json::Value;

use crate::support::{run_id_of, text, Bed};

#[test]
fn webhooks_are_added_listed_and_removed_with_json() {
    let f = Bed::new();
    let out = f.testbay(&[
        "webhook",
        "add",
        "--url",
        "http://127.0.0.1:9/hook",
        "--event",
        "run_failed,dut_bad",
        "--secret",
        "k",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let added: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = added["id"].as_i64().unwrap();
    assert_eq!(
        added["events"],
        serde_json::json!(["run_failed", "dut_bad"])
    );
    assert_eq!(added["has_secret"], true);

    let out = f.testbay(&["webhook", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id);
    assert!(
        !text(&out.stdout).contains("\"k\""),
        "the secret is not shown"
    );

    let out = f.testbay(&[
        "webhook",
        "add",
        "--url",
        "https://x/h",
        "--event",
        "run_failed",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("url:"), "{}", text(&out.stderr));

    let out = f.testbay(&["webhook", "rm", &id.to_string(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = f.testbay(&["webhook", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(list.as_array().unwrap().is_empty());
    let out = f.testbay(&["webhook", "rm", &id.to_string()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_task_passing_on_its_retry_shows_flaky() {
    let f = Bed::new();
    let marker = f.root.join("marker");
    let body = format!(
        "if [ -e '{m}' ]; then exit 0; fi\ntouch '{m}'\nexit 1\n",
        m = marker.display()
    );
    let pack = f.pack(
        "flaky",
        "name: flaky\nversion: '1'\ngroups:\n  g:\n    tests: [wobbly]\n",
        &[("wobbly", "max_retries: 1\n", &body)],
    );
    let out = f.testbay(&["run", pack.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("flaky"), "{}", text(&out.stdout));
    let id = run_id_of(&text(&out.stdout));
    let out = f.testbay(&["results", &id]);
    let shown = text(&out.stdout);
    assert!(shown.contains("[FLKY] wobbly"), "{shown}");
    assert!(shown.contains("attempt 1: Failed"), "{shown}");
    let tree: Value =
        serde_json::from_slice(&f.testbay(&["results", &id, "--json"]).stdout).unwrap();
    let t = &tree["tasks"][0];
    assert_eq!(
        (t["result"].as_str(), t["flaky"].as_bool()),
        (Some("Passed"), Some(true))
    );
    assert_eq!(t["attempts"].as_array().unwrap().len(), 2);
}

/// `testbay lab health`: a DUT's health as JSON; a restore needs a note and is kept in
/// the history with it.
#[test]
fn lab_health_shows_and_restores_with_a_note() {
    let f = Bed::new();
    let lab = crate::support::demo_lab();
    let lab = lab.to_str().unwrap();
    let out = f.testbay(&["--lab", lab, "lab", "health", "stb-01", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["health"]["health"], "unknown");
    let out = f.testbay(&["--lab", lab, "lab", "health", "stb-01", "--restore"]);
    assert_eq!(out.status.code(), Some(2), "--restore needs --note");
    let out = f.testbay(&[
        "--lab",
        lab,
        "lab",
        "health",
        "stb-01",
        "--restore",
        "--note",
        "new PSU",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["health"]["health"], "good");
    assert_eq!(r["history"][0]["note"], "new PSU");
    let out = f.testbay(&["--lab", lab, "lab", "health", "stb-01"]);
    assert!(
        text(&out.stdout).contains("stb-01: good"),
        "{}",
        text(&out.stdout)
    );
    let out = f.testbay(&["--lab", lab, "lab", "health", "nope"]);
    assert_eq!(out.status.code(), Some(2));
}
