//! A console's end, however it comes: SIGKILL takes every process its phases started
//! with it (the phase guard).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::run::{alive, bin, ends_soon, fx, wait_for_file};

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
    let f = fx();
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
    let f = fx();
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
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches('/')
        .to_string();
    let reply = crate::serve::post(&addr, r#"{"cmd":"launch","pack":"orph","groups":["g"]}"#);
    assert!(reply.contains("run_id"), "{reply}");
    let procs = pids(&marker);
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    assert_all_gone(&procs, "killed server");
}
