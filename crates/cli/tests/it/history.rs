//! `testbay results history|measurement|yield|flaky|compare --json` over runs stored by
//! `testbay run` (the fixture pack `tests/fixtures/history-packs/meas-e2e`).

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

#[test]
fn results_across_runs_as_json() {
    let f = Bed::new();
    let pack = repo().join("tests/fixtures/history-packs/meas-e2e");
    let mut ids = Vec::new();
    for (flip, snr) in [("Passed", "7"), ("Failed", "3.5"), ("Passed", "8")] {
        let out = f.testbay(&[
            "run",
            pack.to_str().unwrap(),
            "--dut",
            "stb-01",
            "--ats",
            "rack-a",
            "-p",
            &format!("flip={flip}"),
            "-p",
            &format!("snr={snr}"),
        ]);
        ids.push(run_id_of(&text(&out.stdout)));
    }

    let h = json(&f, &["results", "history", "meas-e2e", "flip", "--json"]);
    let results: Vec<&str> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["Passed", "Failed", "Passed"], "newest first");
    assert_eq!(h[0]["run_id"], ids[2].as_str());
    assert_eq!(h[0]["dut_model"], "TP-4000");

    let flaky = json(&f, &["results", "flaky", "--pack", "meas-e2e", "--json"]);
    let flaky = flaky.as_array().unwrap();
    assert_eq!(flaky.len(), 1, "{flaky:?}");
    assert_eq!(flaky[0]["task"], "flip");
    assert_eq!(flaky[0]["flip_rate"], 1.0);
    assert_eq!(flaky[0]["runs"].as_array().unwrap().len(), 3);

    let c = json(&f, &["results", "compare", &ids[0], &ids[1], "--json"]);
    assert_eq!(c["new_failures"][0]["task"], "flip");
    assert_eq!(c["still_passing"][0]["task"], "tune");
    assert_eq!(c["param_differences"].as_array().unwrap().len(), 2);

    let m = json(
        &f,
        &[
            "results",
            "measurement",
            "meas-e2e",
            "tune",
            "snr_db",
            "--sub",
            "channel_101",
            "--json",
        ],
    );
    let passed: Vec<&Value> = m
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["measurement"]["passed"])
        .collect();
    assert_eq!(
        passed,
        [&Value::Bool(true), &Value::Bool(false), &Value::Bool(true)]
    );

    let y = json(&f, &["results", "yield", "meas-e2e", "--json"]);
    assert_eq!(y[0]["dut_model"], "TP-4000");
    assert_eq!(
        (y[0]["runs"].as_u64(), y[0]["passed_runs"].as_u64()),
        (Some(3), Some(2))
    );

    // Baselines: pinned per pack and DUT model, compared against by name.
    let out = f.testbay(&["results", "pin", &ids[0]]);
    assert!(
        text(&out.stdout).contains("baseline of meas-e2e on TP-4000"),
        "{}",
        text(&out.stdout)
    );
    let b = json(&f, &["results", "baselines", "--json"]);
    assert_eq!(b[0]["run_id"], ids[0].as_str());
    assert_eq!(b[0]["dut_model"], "TP-4000");
    let c = json(&f, &["results", "compare", "baseline", &ids[1], "--json"]);
    assert_eq!(c["a"], ids[0].as_str());
    assert_eq!(c["new_failures"][0]["task"], "flip");
    // JUnit limited to the new failures against the baseline.
    let out = f.testbay(&["export", &ids[1], "--new-failures-since", &ids[0]]);
    let xml = text(&out.stdout);
    assert!(xml.contains("name=\"flip\""), "{xml}");
    assert!(!xml.contains("name=\"tune\""), "{xml}");
    let out = f.testbay(&["results", "unpin", "meas-e2e", "--model", "TP-4000"]);
    assert!(text(&out.stdout).contains("unpinned"));
    let out = f.testbay(&["results", "compare", "baseline", &ids[1]]);
    assert!(
        text(&out.stderr).contains("no baseline pinned"),
        "{}",
        text(&out.stderr)
    );

    // A run id is still the positional argument.
    let tree = json(&f, &["results", &ids[1], "--json"]);
    assert_eq!(tree["run"]["id"], ids[1].as_str());
    // Bad input names the key.
    let out = f.testbay(&["results", "compare", &ids[0], "nope"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
}
