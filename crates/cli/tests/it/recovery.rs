//! A console killed while its run holds a DUT: the next `testbay` that opens the lab's
//! book gives the DUT back at once (as book events), so the next run on it starts right
//! away instead of waiting for the dead run's booking. The real binary, real child
//! processes, a real data dir.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::finish_within;

fn testbay(data: &Path, lab: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_testbay"));
    c.env_remove("TESTBAY_DATA_DIR")
        .env("RUST_LOG", "warn")
        .arg("--data-dir")
        .arg(data)
        .arg("--lab")
        .arg(lab)
        .stdin(Stdio::null());
    c
}

/// `lab holds --json`: the stored live reservations, as (resource, holder kind, run id).
fn holds(data: &Path, lab: &Path) -> Vec<(String, String, String)> {
    let out = testbay(data, lab)
        .args(["lab", "holds", "--json"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let h = &r["holder"];
            (
                r["resource"].as_str().unwrap_or("").to_string(),
                h["kind"].as_str().unwrap_or("").to_string(),
                h["run_id"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_killed_consoles_dut_is_free_for_the_next_run_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (data, lab) = (root.join("data"), root.join("lab.yaml"));
    std::fs::write(
        &lab,
        "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 1}}\n",
    )
    .unwrap();
    let pack = root.join("p");
    std::fs::create_dir_all(pack.join("tasks")).unwrap();
    std::fs::write(
        pack.join("pack.yaml"),
        "name: p\nversion: '1'\ngroups:\n  long:\n    tests: [soak]\n  quick:\n    tests: [zap]\n",
    )
    .unwrap();
    // A soak test estimated at five hours: its lane books box-1 for 7.5 hours.
    std::fs::write(
        pack.join("tasks/soak.yaml"),
        "name: soak\nrun: [bash, soak.sh]\nest_task_time: 18000\n",
    )
    .unwrap();
    std::fs::write(
        pack.join("tasks/soak.sh"),
        format!("touch {}\nsleep 300\n", root.join("started").display()),
    )
    .unwrap();
    std::fs::write(
        pack.join("tasks/zap.yaml"),
        "name: zap\nrun: [bash, zap.sh]\nest_task_time: 1\n",
    )
    .unwrap();
    std::fs::write(pack.join("tasks/zap.sh"), "exit 0\n").unwrap();
    let pack = pack.to_str().unwrap();

    let mut console = testbay(&data, &lab)
        .args(["run", pack, "-g", "long", "--dut", "box-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    // The run holds box-1, and the book has stored it. (Its task runs first: by then the
    // data dir is made, and a second process opening it cannot race the first.)
    let start = Instant::now();
    let held = loop {
        if root.join("started").exists() {
            let h = holds(&data, &lab);
            if h.iter().any(|(r, _, _)| r == "box-1") {
                break h;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the first run never held box-1"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let dead_run = held[0].2.clone();
    assert_eq!(held[0].1, "run");
    // SIGKILL, and leave it unreaped for now: a dead console whose parent has not
    // collected it yet is just as dead.
    console.kill().unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(format!("/proc/{}/stat", console.id()))
        .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "SIGKILL did not kill"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its lease has not lapsed: what is stored still says box-1 is held.
    assert!(holds(&data, &lab)
        .iter()
        .any(|(_, _, run)| *run == dead_run));

    let next = testbay(&data, &lab)
        .args(["run", pack, "-g", "quick", "--dut", "box-1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish_within(next, Duration::from_secs(30))
        .expect("the next run on box-1 starts at once, not when the dead run's booking ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("marked interrupted"), "{err}");
    assert!(err.contains(&dead_run), "{err}");
    assert!(
        holds(&data, &lab).is_empty(),
        "nothing is left held: {:?}",
        holds(&data, &lab)
    );
    console.wait().unwrap();
}
