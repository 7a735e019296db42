//! Bounds as a user meets them on the command line: numbers beyond their range in a pack,
//! launches over their size limits, an ATS that does not hold the DUTs, holds beyond
//! their range. Each is refused with the key and the range (exit 1 or 2), never a panic
//! (exit 101), and nothing is stored.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{demo_lab, repo, text};

/// `testbay ARGS` from the repository folder on data dir `data`, killed after 60 s (a run
/// that wedged used to stay "running" forever).
fn testbay(data: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .args(args)
        .current_dir(repo())
        .env("TESTBAY_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs stored in `data`.
fn stored_runs(data: &Path) -> u64 {
    let out = testbay(data, &["results", "--json"]);
    let page: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    page["total"].as_u64().unwrap()
}

/// Two racks with one DUT each.
const LAB: &str = "name: t\nracks:\n  - {name: rack-1, slots: 2}\n  - {name: rack-2, slots: 2}\nduts:\n  - {name: d1, location: {rack: rack-1, slot: 1}}\n  - {name: d2, location: {rack: rack-2, slot: 1}}\n";

#[test]
fn packs_check_reports_numbers_beyond_their_range() {
    let data = tempfile::tempdir().unwrap();
    let out = testbay(
        data.path(),
        &["packs", "check", "tests/fixtures/bounds/out-of-range"],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let dir = "tests/fixtures/bounds/out-of-range";
    for line in [
        format!("{dir}/pack.yaml:6:3: params.process_limit: must be at most 1024 (found 100000)"),
        format!("{dir}/tasks/forever.yaml:3:1: max_runtime: must be at most 604800 (found 1e20)"),
        format!("{dir}/tasks/huge_estimate.yaml:3:1: est_task_time: must be at most 604800 (found 1e300)"),
        format!("{dir}/tasks/far_estimate.yaml:3:1: est_task_time: must be at most 604800 (found 1e20)"),
    ] {
        assert!(stdout.lines().any(|l| l == line), "no `{line}` in\n{stdout}");
    }
    assert!(
        stdout.ends_with("1 pack(s) checked: 0 ok, 1 with problems (7 problem(s))\n"),
        "{stdout}"
    );
}

#[test]
fn run_refuses_a_pack_with_numbers_beyond_their_range() {
    let data = tempfile::tempdir().unwrap();
    let lab = data.path().join("lab.yaml");
    std::fs::write(&lab, LAB).unwrap();
    // Reserving d1 for 1e300 seconds overflowed the broker (exit 101).
    let out = testbay(
        data.path(),
        &[
            "--lab",
            lab.to_str().unwrap(),
            "run",
            "tests/fixtures/bounds/out-of-range",
            "--dut",
            "d1",
        ],
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot run"), "{stderr}");
    assert!(
        stderr.contains("est_task_time: must be at most 604800 (found 1e300)"),
        "{stderr}"
    );
    assert_eq!(stored_runs(data.path()), 0);
}

#[test]
fn run_refuses_an_ats_that_does_not_hold_its_duts() {
    let data = tempfile::tempdir().unwrap();
    let lab = data.path().join("lab.yaml");
    std::fs::write(&lab, LAB).unwrap();
    let lab = lab.to_str().unwrap();
    for (args, said) in [
        (
            &["--dut", "d1", "--ats", "rack-2"][..],
            "ATS `rack-2` does not hold DUT `d1`: it sits in rack `rack-1`",
        ),
        (
            &["--dut", "d1", "--ats", "rack-z"][..],
            "ATS `rack-z` is not a rack of the lab",
        ),
        (
            &["--ats", "rack-z"][..],
            "ATS `rack-z` is not a rack of the lab",
        ),
    ] {
        let mut all = vec!["--lab", lab, "run", "packs/net-regression"];
        all.extend_from_slice(args);
        let out = testbay(data.path(), &all);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
    assert_eq!(stored_runs(data.path()), 0);
}

#[test]
fn run_refuses_more_groups_than_a_launch_may_name() {
    let data = tempfile::tempdir().unwrap();
    let mut args = vec!["run", "packs/net-regression"];
    for _ in 0..101 {
        args.extend(["-g", "links"]);
    }
    let out = testbay(data.path(), &args);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("groups: a launch names at most 100 groups (got 101)"),
        "{stderr}"
    );
    assert_eq!(stored_runs(data.path()), 0);
}

#[test]
fn lab_hold_refuses_durations_and_starts_beyond_their_range() {
    let data = tempfile::tempdir().unwrap();
    let demo = demo_lab();
    let demo = demo.to_str().unwrap();
    for (args, said) in [
        // Seconds times 1000 overflowed (exit 101).
        (
            &["--for", "99999999999999999"][..],
            "--for \"99999999999999999\": give a duration",
        ),
        (
            &["--for", "31d"][..],
            "--for: must be more than 0 and at most 2592000 seconds (30 days), got 2678400",
        ),
        (
            &["--for", "1h", "--from", "2999-01-01"][..],
            "--from: must be within 10 years of now",
        ),
    ] {
        let mut all = vec!["--lab", demo, "lab", "hold", "stb-03"];
        all.extend_from_slice(args);
        let out = testbay(data.path(), &all);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
    }
    let out = testbay(data.path(), &["--lab", demo, "lab", "holds"]);
    assert!(
        !text(&out.stdout).contains("stb-03"),
        "{}",
        text(&out.stdout)
    );
}
