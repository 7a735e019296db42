//! `testbay packs check|list` on the demo packs and the broken fixture.

use std::process::Command;

use crate::support::{repo, text};

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

/// `packs push` on the data dir's console: a broken pack is refused before anything is
/// stored, each problem naming its file, line and key; a good one is pushed private,
/// listed with the disk packs (marked library, private, its owner) and published.
#[test]
fn push_refuses_a_broken_pack_and_stores_a_good_one() {
    let f = crate::support::Bed::new();
    let broken = repo().join("tests/fixtures/packs/broken-typo");
    let out = f.testbay(&["packs", "push", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("tasks/tune_channel.yaml:4:1: prereq_task: unknown key `prereq_task`"),
        "{stdout}"
    );
    assert!(text(&out.stderr).contains("not pushed: 5 problem(s)"));

    let good = f.pack(
        "good",
        "name: good\nversion: '0.1'\ngroups:\n  main:\n    tests: [hi]\n",
        &[("hi", "", "echo hi\n")],
    );
    let out = f.testbay(&["packs", "push", "--private", good.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("pushed good 0.1 (private"));
    let packs_dir = f.root.join("no-packs");
    std::fs::create_dir_all(&packs_dir).unwrap();
    let out = f.testbay(&["--packs", packs_dir.to_str().unwrap(), "packs", "library"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("good 0.1  ok  1 task(s)  library  private  by local"),
        "{stdout}"
    );
    let out = f.testbay(&["packs", "publish", "good"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = f.testbay(&["--packs", packs_dir.to_str().unwrap(), "packs", "library"]);
    assert!(text(&out.stdout).contains("library  public  by local"));
    // Launched by name from the library, the pack folder gone.
    std::fs::remove_dir_all(&good).unwrap();
    let out = f.testbay(&["--packs", packs_dir.to_str().unwrap(), "run", "good"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
