//! `testbay schedule` and `testbay queue` against a data dir that a running `testbay
//! serve` serves: the console picks the new schedule up at once and fires it; a run
//! queued behind a held DUT shows in `testbay queue --json` and moves there.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::post;
use crate::support::{text, Bed};

const LAB: &str = "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 1}}\n";

struct Served {
    child: Child,
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        // SAFETY: signalling the child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn set_up(f: &Bed) -> Served {
    f.pack(
        "packs/p",
        "name: p\nversion: '1'\ngroups:\n  quick:\n    tests: [quick]\n",
        &[("quick", "est_task_time: 1\n", "exit 0\n")],
    );
    std::fs::write(f.root.join("lab.yaml"), LAB).unwrap();
    std::fs::create_dir_all(&f.data).unwrap();
    std::fs::write(
        f.data.join("settings.yaml"),
        "dispatch_cpu_threshold: 100\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("TESTBAY_DATA_DIR", &f.data)
        .env("TESTBAY_PACKS", f.root.join("packs"))
        .env("TESTBAY_LAB", f.root.join("lab.yaml"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = crate::support::served_address(&mut child);
    Served { child, addr }
}

/// `testbay ARGS` on the served data dir, with its packs and lab; stdout as JSON.
fn cli_json(f: &Bed, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .args(args)
        .env("TESTBAY_DATA_DIR", &f.data)
        .env("TESTBAY_PACKS", f.root.join("packs"))
        .env("TESTBAY_LAB", f.root.join("lab.yaml"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_schedule_added_from_the_cli_is_fired_by_the_running_console() {
    let f = Bed::new();
    let _served = set_up(&f);
    let added = cli_json(
        &f,
        &[
            "schedule",
            "add",
            "--name",
            "soak",
            "--pack",
            "p",
            "--group",
            "quick",
            "--dut",
            "box-1",
            "--type",
            "loop",
            "--repeat-count",
            "2",
            "--json",
        ],
    );
    let id = added["id"].as_str().unwrap().to_string();
    let list = until("the console fired the schedule twice", || {
        let list = cli_json(&f, &["schedule", "list", "--json"]);
        (list[0]["fired"] == 2 && list[0]["run_ids"].as_array().unwrap().len() == 2).then_some(list)
    });
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["name"], "soak");
    assert_eq!(list[0]["type"], "loop");
    assert!(list[0]["next_firing_ms"].is_null(), "{list}");
    let shown = cli_json(&f, &["schedule", "show", &id, "--json"]);
    assert_eq!(shown["history"].as_array().unwrap().len(), 2, "{shown}");
    let paused = cli_json(&f, &["schedule", "pause", &id, "--json"]);
    assert_eq!(paused["paused"], true);
    cli_json(&f, &["schedule", "rm", &id, "--json"]);
    assert_eq!(
        cli_json(&f, &["schedule", "list", "--json"]),
        Value::Array(vec![])
    );
}

#[test]
fn testbay_queue_shows_and_changes_the_served_queue() {
    let f = Bed::new();
    let served = set_up(&f);
    let api = |body: &str| post(&served.addr, body);
    let reply = api(r#"{"cmd":"hold","resource":"box-1","by":"alice","duration_s":600}"#);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let launch = r#"{"cmd":"launch","pack":"p","groups":["quick"],"duts":["box-1"]}"#;
    assert!(api(launch).contains(r#""queued":true"#));
    assert!(api(launch).contains(r#""queued":true"#));
    let q = cli_json(&f, &["queue", "--json"]);
    let runs = q["runs"].as_array().unwrap().clone();
    assert_eq!(runs.len(), 2, "{q}");
    assert!(
        runs[0]["waits_for"]
            .as_str()
            .unwrap()
            .contains("box-1 is held by operator alice"),
        "{q}"
    );
    let second = runs[1]["run_id"].as_str().unwrap().to_string();
    let moved = cli_json(&f, &["queue", "move", &second, "up", "--json"]);
    assert_eq!(moved["runs"][0]["run_id"], second.as_str());
    // The serving console reads the change within a second.
    until("the console saw the move", || {
        let body = api(r#"{"cmd":"queue"}"#);
        let at = body.find(&second)?;
        let other = body.find(runs[0]["run_id"].as_str().unwrap())?;
        (at < other).then_some(())
    });
    cli_json(&f, &["queue", "cancel", &second, "--json"]);
    until("the console saw the cancel", || {
        (!api(r#"{"cmd":"queue"}"#).contains(&second)).then_some(())
    });
    let q = cli_json(&f, &["queue", "--json"]);
    assert_eq!(q["runs"].as_array().unwrap().len(), 1, "{q}");
}
