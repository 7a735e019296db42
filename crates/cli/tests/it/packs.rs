//! `testbay packs check|list` on the demo packs and the broken fixture.

use std::process::Command;

use crate::support::repo;

fn testbay(args: &[&str]) -> (i32, String) {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .args(args)
        .current_dir(repo())
        .env("TESTBAY_DATA_DIR", data.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn check_prints_every_problem_with_file_line_and_key() {
    let (code, out) = testbay(&["packs", "check", "tests/fixtures/packs/broken-typo"]);
    assert_eq!(code, 1, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 6, "{out}");
    assert!(lines.contains(
        &"tests/fixtures/packs/broken-typo/tasks/tune_channel.yaml:4:1: prereq_task: unknown key `prereq_task`; did you mean `prereq_tasks`?"
    ), "{out}");
    assert!(lines.contains(
        &"tests/fixtures/packs/broken-typo/pack.yaml:8:19: groups.smoke.tests[1]: task `tune_chanel` does not exist; did you mean `tune_channel`?"
    ), "{out}");
    assert!(lines.iter().any(|l| l.starts_with(
        "tests/fixtures/packs/broken-typo/tasks/record.yaml:3:7: run[0]: `./missing_program.sh` not found"
    )), "{out}");
    assert_eq!(
        lines[5],
        "1 pack(s) checked: 0 ok, 1 with problems (5 problem(s))"
    );
}

#[test]
fn check_passes_on_the_demo_packs() {
    let (code, out) = testbay(&["packs", "check", "packs"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim(),
        "2 pack(s) checked: 2 ok, 0 with problems (0 problem(s))"
    );
}

#[test]
fn list_shows_good_and_broken_packs() {
    let (code, out) = testbay(&["packs", "list", "packs", "tests/fixtures/packs"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("stb-smoke 1.2.0  ok  13 task(s)  packs/stb-smoke"),
        "{out}"
    );
    assert!(
        out.contains("  group smoke: 6 test(s), about 20 s"),
        "{out}"
    );
    assert!(out.contains("net-regression 0.9.0  ok"), "{out}");
    assert!(
        out.contains("broken-typo 0.3.0  BROKEN (5 problem(s))"),
        "{out}"
    );

    let (code, out) = testbay(&["packs", "list", "--json", "packs", "tests/fixtures/packs"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let packs = v.as_array().unwrap();
    assert_eq!(packs.len(), 3);
    let broken = packs.iter().find(|p| p["name"] == "broken-typo").unwrap();
    assert_eq!(broken["ok"], false);
    assert_eq!(broken["diagnostics"].as_array().unwrap().len(), 5);
    assert_eq!(broken["diagnostics"][0]["line"], 5);
    let smoke = packs.iter().find(|p| p["name"] == "stb-smoke").unwrap();
    assert_eq!(smoke["groups"][0]["name"], "smoke");
}

#[test]
fn check_of_a_folder_without_packs_fails() {
    let empty = tempfile::tempdir().unwrap();
    let (code, out) = testbay(&["packs", "check", empty.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("no pack found in "), "{out}");
}
