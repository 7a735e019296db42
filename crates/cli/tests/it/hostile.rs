//! What a pack author or a task may leave for the console to read or print: named pipes
//! where files go, terminal escapes in results and messages. Nothing may wedge the
//! console or reach the operator's terminal raw. And `serve` stops on SIGHUP.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{bin, finish_within, mkfifo, run_id_of, text, Bed};

/// `testbay run` of a task that makes its result file a named pipe used to hang until
/// killed (the pipe was opened for reading and waited for a writer).
#[test]
fn run_of_a_task_leaving_a_named_pipe_ends() {
    let f = Bed::new();
    let pack = f.pack(
        "pipe",
        "name: pipe\nversion: '1'\ngroups:\n  g:\n    tests: [p]\n",
        &[("p", "", "mkfifo \"$TESTBAY_RESULT\"\n")],
    );
    let child = bin()
        .arg("--data-dir")
        .arg(&f.data)
        .args(["run", pack.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish_within(child, Duration::from_secs(60))
        .expect("testbay run waited on the task's named pipe");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("Errored"), "{stdout}");
    let tree = text(&f.testbay(&["results", &run_id_of(&stdout)]).stdout);
    assert!(tree.contains("is a named pipe, not a file"), "{tree}");
}

fn assert_no_raw_controls(what: &str, s: &str) {
    let raw: Vec<char> = s.chars().filter(|c| c.is_control() && *c != '\n').collect();
    assert!(raw.is_empty(), "{what} printed raw {raw:?}:\n{s}");
}

/// Every task runs, whatever the one before it ended with.
const GO_ON: &str = "stop_suite_on_fail: false\n";

/// Results, messages, names and descriptions from tasks and packs holding terminal
/// escapes (clear screen, window title, bell) and line breaks used to reach the terminal
/// raw. Every human-facing line is now escaped; the stored values and JSON stay exact.
#[test]
fn terminal_escapes_from_tasks_and_packs_are_printed_escaped() {
    let f = Bed::new();
    let pack = f.pack(
        "esc",
        "name: esc\nversion: '1'\ndescription: \"demo \\e]0;pwned\\a pack\"\ngroups:\n  g:\n    tests: [named, raw, msg]\n",
        &[
            // A result name with an escape (valid JSON): refused, Errored.
            (
                "named",
                GO_ON,
                "printf '{\"result\": \"Failed\\\\u001b[2J\"}' > \"$TESTBAY_RESULT\"\n",
            ),
            // A raw escape byte (not JSON): Errored with the raw text kept as written.
            (
                "raw",
                GO_ON,
                "printf '{\"result\": \"Failed\\033[2J\"}' > \"$TESTBAY_RESULT\"\n",
            ),
            // Messages may hold anything.
            (
                "msg",
                GO_ON,
                "printf '{\"result\": \"Failed\", \"metadata\": {\"message\": \"boom\\\\u001b[2J\\\\nsecond\"}, \"multi_result\": [{\"name\": \"s1\", \"result\": \"Failed\", \"metadata\": {\"message\": \"sub\\\\u001b[31m red\"}}]}' > \"$TESTBAY_RESULT\"\n",
            ),
        ],
    );
    let out = f.testbay(&["run", pack.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert_no_raw_controls("run (stdout)", &stdout);
    assert_no_raw_controls("run (stderr)", &text(&out.stderr));
    // The summary shows a message's first line; its other lines never start a row.
    assert!(stdout.contains(r"boom\u{1b}[2J"), "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("second")), "{stdout}");
    assert!(stdout.contains(r"sub\u{1b}[31m red"), "{stdout}");
    let id = run_id_of(&stdout);

    let tree = f.testbay(&["results", &id]);
    let tree_out = text(&tree.stdout);
    assert_eq!(tree.status.code(), Some(0), "{}", text(&tree.stderr));
    assert_no_raw_controls("results RUN", &tree_out);
    assert!(tree_out.contains(r"raw result: {"), "{tree_out}");
    assert!(tree_out.contains(r"Failed\u{1b}[2J"), "{tree_out}");
    assert!(
        tree_out.contains(r#"result "Failed\u{1b}[2J" has a control character"#),
        "{tree_out}"
    );
    let list = f.testbay(&["results"]);
    assert_no_raw_controls("results", &text(&list.stdout));

    // Stored as written: the JSON keeps every character.
    let json: Value =
        serde_json::from_slice(&f.testbay(&["results", &id, "--json"]).stdout).unwrap();
    let task = |name: &str| {
        json["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["task"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(task("msg")["message"], "boom\u{1b}[2J\nsecond");
    assert_eq!(
        task("msg")["sub_results"][0]["message"],
        "sub\u{1b}[31m red"
    );
    assert_eq!(task("raw")["result"], "Errored");
    assert_eq!(
        task("raw")["raw_result"],
        "{\"result\": \"Failed\u{1b}[2J\"}"
    );
    assert_eq!(task("named")["result"], "Errored");

    // Pack text: a description with a window-title escape, a task name with a screen clear.
    let packs = f.testbay(&["packs", "list", f.root.to_str().unwrap()]);
    let packs_out = text(&packs.stdout);
    assert_no_raw_controls("packs list", &packs_out);
    assert!(
        packs_out.contains(r"demo \u{1b}]0;pwned\u{7} pack"),
        "{packs_out}"
    );
    std::fs::write(
        pack.join("tasks/named.yaml"),
        "name: \"na\\e[2Jmed\"\nrun: [bash, named.sh]\n",
    )
    .unwrap();
    let check = f.testbay(&["packs", "check", pack.to_str().unwrap()]);
    let check_out = text(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{check_out}");
    assert_no_raw_controls("packs check", &check_out);
    assert!(check_out.contains(r"na\u{1b}[2Jmed"), "{check_out}");
}

/// `testbay serve` with the address on its first line of stdout; `None` when it has not
/// printed one within 20 s (it is killed then).
fn start_serve(packs: &Path, data: &Path) -> (Child, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .args(["serve", "--bind", "127.0.0.1:0", "--packs"])
        .arg(packs)
        .arg("--data-dir")
        .arg(data)
        .env_remove("TESTBAY_LAB")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
        let _ = child.kill();
        let _ = child.wait();
        return (child, None);
    };
    let addr = crate::support::address_in(&line);
    (child, addr)
}

/// A `testbay serve` that is killed when the test ends, however it ends.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `post` in a thread of its own: `None` when no answer came within `limit`.
fn post_within(addr: &str, body: &str, limit: Duration) -> Option<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (addr, body) = (addr.to_string(), body.to_string());
    std::thread::spawn(move || {
        let _ = tx.send(crate::serve::post(&addr, &body));
    });
    rx.recv_timeout(limit).ok()
}

/// A named pipe as a pack's task file used to keep `serve` from ever listening; one made
/// while serving stopped the pack watcher (packs added later never appeared); a task
/// leaving a pipe as its result file wedged the API. SIGHUP used to kill `serve` at once
/// without its shutdown; it now stops like SIGTERM, within 2 s, exit 0.
#[test]
fn serve_with_named_pipes_in_its_packs_and_tasks_keeps_answering() {
    let f = Bed::new();
    let packs = f.root.join("packs");
    std::fs::create_dir_all(&packs).unwrap();
    f.pack(
        "packs/pipe",
        "name: pipe\nversion: '1'\ngroups:\n  g:\n    tests: [p]\n",
        &[("p", "", "mkfifo \"$TESTBAY_RESULT\"\n")],
    );
    f.pack("packs/broken", "name: broken\nversion: '1'\n", &[]);
    mkfifo(&packs.join("broken/tasks/t.yaml"));
    let (server, addr) = start_serve(&packs, &f.data);
    let mut server = Serving(server);
    let addr = addr.expect("serve never listened: it waits on a pack's named pipe");
    let limit = Duration::from_secs(10);
    let listed = post_within(&addr, r#"{"cmd":"list_packs"}"#, limit).expect("list_packs answered");
    assert!(listed.contains("is a named pipe, not a file"), "{listed}");

    // A pipe made while serving, then a new pack: the watcher still sees it.
    mkfifo(&packs.join("pipe/tasks/u.yaml"));
    std::thread::sleep(Duration::from_millis(300));
    f.pack(
        "packs/later",
        "name: later\nversion: '1'\ngroups:\n  g:\n    tests: [ok]\n",
        &[("ok", "", "true\n")],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let packs =
            post_within(&addr, r#"{"cmd":"list_packs"}"#, limit).expect("list_packs answered");
        if packs.contains("\"later\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new pack never appeared: {packs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A task that leaves a pipe as its result file: the API keeps answering, the run ends.
    std::fs::remove_file(packs.join("pipe/tasks/u.yaml")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let reply = loop {
        let reply = post_within(&addr, r#"{"cmd":"launch","pack":"pipe"}"#, limit)
            .expect("launch answered");
        if reply.contains("run_id") || Instant::now() > deadline {
            break reply;
        }
        // The watcher may not have reloaded the pack yet.
        std::thread::sleep(Duration::from_millis(100));
    };
    let body: Value = serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap_or(""))
        .unwrap_or_else(|_| panic!("{reply}"));
    let run_id = body["data"]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"))
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for cmd in [r#"{"cmd":"info"}"#, r#"{"cmd":"active_runs"}"#] {
            post_within(&addr, cmd, limit).unwrap_or_else(|| panic!("{cmd} unanswered"));
        }
        let run = post_within(
            &addr,
            &format!(r#"{{"cmd":"get_run","run_id":"{run_id}"}}"#),
            limit,
        )
        .expect("get_run answered");
        if run.contains("\"status\":\"completed\"") {
            assert!(run.contains("is a named pipe, not a file"), "{run}");
            break;
        }
        assert!(Instant::now() < deadline, "the run never ended: {run}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // SIGHUP: a clean stop within 2 s.
    unsafe { libc::kill(server.0.id() as i32, libc::SIGHUP) };
    let start = Instant::now();
    let status = loop {
        if let Some(s) = server.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "serve still running 2 s after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "clean exit on SIGHUP: {status:?}");
}
