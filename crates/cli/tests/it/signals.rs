//! A console's end, however it comes: SIGKILL takes every process its phases started
//! with it (the phase guard), SIGTERM and SIGHUP stop `testbay run` like Ctrl-C.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{alive, bin, ends_soon, results_by_task, start_run, text, wait_for_file, Bed};

/// A task body that starts three processes that outlive its own: a plain grandchild, one
/// that left the phase's process group and session (`setsid`), and one with an empty
/// environment that stayed in the group. Each writes its pid to `<dir>/<name>`; then the
/// task waits.
fn leaver_body(dir: &Path) -> String {
    format!(
        "sleep 30 &\necho $! > {d}/plain.tmp; mv {d}/plain.tmp {d}/plain\n\
         setsid sleep 30 &\necho $! > {d}/setsid.tmp; mv {d}/setsid.tmp {d}/setsid\n\
         env -i sleep 30 &\necho $! > {d}/noenv.tmp; mv {d}/noenv.tmp {d}/noenv\n\
         echo $$ > {d}/child.tmp; mv {d}/child.tmp {d}/child\nwait\n",
        d = dir.display()
    )
}

fn pids(dir: &Path) -> Vec<(&'static str, i32)> {
    ["child", "plain", "setsid", "noenv"]
        .into_iter()
        .map(|n| (n, wait_for_file(&dir.join(n)).trim().parse().unwrap()))
        .collect()
}

/// The phase guard of console `pid`: its child named `testbay-guard`.
fn guard_of(pid: u32) -> Option<i32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "testbay-guard")
        })
}

fn assert_all_gone(procs: &[(&str, i32)], what: &str) {
    for (name, pid) in procs {
        assert!(
            ends_soon(*pid),
            "{name} process {pid} outlived the {what} (no restart happened)"
        );
    }
}

/// SIGKILL `testbay run` while a phase's grandchildren run: all of them are gone within
/// two seconds, before anything starts again, and so is the console's guard.
#[test]
fn a_killed_run_takes_every_process_of_its_phases_along() {
    let f = Bed::new();
    let marker = f.root.join("marker");
    std::fs::create_dir_all(&marker).unwrap();
    let pack = f.pack(
        "orph",
        "name: orph\nversion: '1'\ngroups:\n  g:\n    tests: [leave]\n",
        &[("leave", "", &leaver_body(&marker))],
    );
    let mut console = bin()
        .arg("--data-dir")
        .arg(&f.data)
        .args(["run", pack.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let procs = pids(&marker);
    for (name, pid) in &procs {
        assert!(alive(*pid), "{name} {pid} not running");
    }
    let guard = guard_of(console.id());
    console.kill().unwrap(); // SIGKILL
    console.wait().unwrap();
    assert_all_gone(&procs, "killed console");
    let guard = guard.expect("the console had a guard process");
    assert!(ends_soon(guard), "the guard {guard} outlived its work");
}

/// The same for `testbay serve`: a run launched through the API, the server SIGKILLed.
#[test]
fn a_killed_server_takes_every_process_of_its_phases_along() {
    let f = Bed::new();
    let marker = f.root.join("marker");
    std::fs::create_dir_all(&marker).unwrap();
    let packs = f.root.join("packs");
    std::fs::create_dir_all(&packs).unwrap();
    f.pack(
        "packs/orph",
        "name: orph\nversion: '1'\ngroups:\n  g:\n    tests: [leave]\n",
        &[("leave", "", &leaver_body(&marker))],
    );
    let mut server = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .args(["serve", "--bind", "127.0.0.1:0", "--packs"])
        .arg(&packs)
        .arg("--data-dir")
        .arg(&f.data)
        .env_remove("TESTBAY_LAB")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let addr = crate::support::served_address(&mut server);
    let reply = crate::serve::post(&addr, r#"{"cmd":"launch","pack":"orph","groups":["g"]}"#);
    assert!(reply.contains("run_id"), "{reply}");
    let procs = pids(&marker);
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    assert_all_gone(&procs, "killed server");
}

/// The pack of the stop tests: a test that runs until stopped, a global teardown that
/// records that it started and then runs until stopped too.
fn stop_pack(f: &Bed) -> std::path::PathBuf {
    let m = f.root.join("marker");
    std::fs::create_dir_all(&m).unwrap();
    f.pack(
        "stop",
        "name: stop\nversion: '1'\nteardown: [cleanup]\ngroups:\n  g:\n    tests: [slow]\n",
        &[
            (
                "slow",
                "",
                &format!(
                    "echo $$ > {m}/slow.tmp; mv {m}/slow.tmp {m}/slow\nsleep 300\n",
                    m = m.display()
                ),
            ),
            (
                "cleanup",
                "",
                &format!(
                    "echo $$ > {m}/cleanup.tmp; mv {m}/cleanup.tmp {m}/cleanup\nsleep 300\n",
                    m = m.display()
                ),
            ),
        ],
    )
}

/// The stored run of a data dir holding one run: its status, reason and results.
fn stored_run(f: &Bed) -> (Value, std::collections::HashMap<String, String>) {
    let page: Value = serde_json::from_slice(&f.testbay(&["results", "--json"]).stdout).unwrap();
    let run = page["runs"][0].clone();
    let results = results_by_task(f, run["id"].as_str().unwrap());
    (run, results)
}

/// SIGTERM stops `testbay run` as the first Ctrl-C does: the running test ends, the
/// teardown runs, the outcome is stored, the exit status is 1. A second SIGTERM ends the
/// teardown too.
#[test]
fn sigterm_stops_the_run_like_ctrl_c() {
    let f = Bed::new();
    let pack = stop_pack(&f);
    let m = f.root.join("marker");
    let console = start_run(&f, &pack);
    let slow: i32 = wait_for_file(&m.join("slow")).trim().parse().unwrap();
    unsafe { libc::kill(console.id() as i32, libc::SIGTERM) };
    // The teardown starts once the test has ended: the run is stopping, not dead.
    let cleanup: i32 = wait_for_file(&m.join("cleanup")).trim().parse().unwrap();
    assert!(!alive(slow), "the test still runs after the stop");
    assert!(alive(console.id() as i32), "the console died on SIGTERM");
    unsafe { libc::kill(console.id() as i32, libc::SIGTERM) };
    let out = console.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("SIGTERM: stopping run") && err.contains("teardowns still run"),
        "{err}"
    );
    assert!(err.contains("at once"), "{err}");
    assert!(
        ends_soon(cleanup),
        "the teardown outlived the second SIGTERM"
    );
    assert!(
        text(&out.stdout).contains(" stopped:"),
        "{}",
        text(&out.stdout)
    );
    let (run, results) = stored_run(&f);
    assert_eq!(run["status"], "stopped", "{run}");
    assert_eq!(results["slow"], "Aborted");
    assert_eq!(results["cleanup"], "Aborted");
}

/// SIGHUP (the terminal closed) stops the run as well, even though nothing can be
/// printed any more: stdout and stderr lead nowhere.
#[test]
fn sighup_stops_the_run_even_with_nowhere_to_print() {
    let f = Bed::new();
    let m = f.root.join("marker");
    std::fs::create_dir_all(&m).unwrap();
    let pack = f.pack(
        "hup",
        "name: hup\nversion: '1'\nteardown: [cleanup]\ngroups:\n  g:\n    tests: [slow]\n",
        &[
            (
                "slow",
                "",
                &format!(
                    "echo $$ > {m}/slow.tmp; mv {m}/slow.tmp {m}/slow\nsleep 300\n",
                    m = m.display()
                ),
            ),
            (
                "cleanup",
                "",
                &format!("echo done > {}/cleanup\n", m.display()),
            ),
        ],
    );
    let mut console = start_run(&f, &pack);
    wait_for_file(&m.join("slow"));
    // The terminal is gone: nobody reads the console's output any more.
    drop(console.stdout.take());
    drop(console.stderr.take());
    unsafe { libc::kill(console.id() as i32, libc::SIGHUP) };
    let status = console.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{status:?}");
    assert_eq!(wait_for_file(&m.join("cleanup")), "done\n");
    let (run, results) = stored_run(&f);
    assert_eq!(run["status"], "stopped", "{run}");
    assert_eq!(results["slow"], "Aborted");
    assert_eq!(results["cleanup"], "Passed");
}
