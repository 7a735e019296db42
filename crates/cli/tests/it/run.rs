//! `testbay run`, `results` and `export` as a user runs them: the real binary, real child
//! processes, a real data dir.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    alive, bin, ends_soon, results_by_task, run_id_of, start_run, text, wait_for_file, Bed,
};

const GOOD: &str =
    "name: good\nversion: 2.0.0\nsetup: [prep]\ngroups:\n  smoke:\n    tests: [boot, tune]\n";

fn good_tasks() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("prep", "", "echo preparing\n"),
        ("boot", "", "echo booted\n"),
        (
            "tune",
            "",
            "cat > \"$TESTBAY_RESULT\" <<'EOF'\n{\"result\": \"Passed\", \"metadata\": {\"message\": \"2 channels\"}, \"multi_result\": [{\"name\": \"ch101\", \"description\": \"\", \"result\": \"Passed\", \"metadata\": {\"message\": \"video ok\"}}, {\"name\": \"ch102\", \"description\": \"\", \"result\": \"Passed\", \"metadata\": {\"message\": \"\"}}]}\nEOF\n",
        ),
    ]
}

#[test]
fn run_results_and_export_round_trip() {
    let f = Bed::new();
    let pack = f.pack("good", GOOD, &good_tasks());
    let out = f.testbay(&[
        "run",
        pack.to_str().unwrap(),
        "--dut",
        "stb-01:TP-4000",
        "--ats",
        "rack-a",
        "-p",
        "channel_list=[101,102]",
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    for want in [
        "LANE",
        "prep",
        "boot",
        "tune",
        "ch101",
        "Passed",
        "0 failure(s)",
    ] {
        assert!(stdout.contains(want), "missing {want} in\n{stdout}");
    }
    // Plain lines (not a TTY) on stderr.
    assert!(
        text(&out.stderr).contains("[stb-01] boot: Passed"),
        "{}",
        text(&out.stderr)
    );
    let id = run_id_of(&stdout);

    let list = f.testbay(&["results"]);
    let ls = text(&list.stdout);
    assert!(
        ls.contains(&id) && ls.contains("good@2.0.0") && ls.contains("completed"),
        "{ls}"
    );
    let none = f.testbay(&["results", "--pack", "other"]);
    assert!(text(&none.stdout).contains("no runs"));
    let none = f.testbay(&["results", "--until", "2000-01-01"]);
    assert!(text(&none.stdout).contains("no runs"));
    let some = f.testbay(&["results", "--since", "2000-01-01T00:00"]);
    assert!(text(&some.stdout).contains(&id));
    let bad = f.testbay(&["results", "--since", "last week"]);
    assert_eq!(bad.status.code(), Some(2));

    let tree = f.testbay(&["results", &id]);
    let tr = text(&tree.stdout);
    assert_eq!(tree.status.code(), Some(0));
    for want in [
        "global setup",
        "group smoke",
        "ch102",
        "main log:",
        "stb-01",
        "rack-a",
    ] {
        assert!(tr.contains(want), "missing {want} in\n{tr}");
    }

    let junit = text(&f.testbay(&["export", &id, "--format", "junit"]).stdout);
    assert!(junit.starts_with("<?xml"));
    assert!(
        junit.contains("<testcase classname=\"good.stb-01.smoke\" name=\"boot\""),
        "{junit}"
    );
    assert!(junit.contains("name=\"ch101\""));
    assert!(junit.contains("failures=\"0\""));
    let yaml = text(&f.testbay(&["export", &id, "--format", "yaml"]).stdout);
    assert!(
        yaml.contains("testsuite:") && yaml.contains("sections:") && yaml.contains("ch102"),
        "{yaml}"
    );
    let json: Value =
        serde_json::from_slice(&f.testbay(&["export", &id, "--format", "json"]).stdout).unwrap();
    assert_eq!(json["run"]["id"], id.as_str());
    assert_eq!(json["tasks"].as_array().unwrap().len(), 3);
    let file = f.root.join("report.xml");
    let o = f.testbay(&["export", &id, "-o", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert!(std::fs::read_to_string(file)
        .unwrap()
        .contains("<testsuites"));

    let missing = f.testbay(&["results", "r-nope"]);
    assert_ne!(missing.status.code(), Some(0));
    assert!(text(&missing.stderr).contains("r-nope"));
}

#[test]
fn a_failure_makes_the_exit_status_nonzero() {
    let f = Bed::new();
    let pack = f.pack(
        "bad",
        "name: bad\nversion: '1'\ngroups:\n  g:\n    tests: [ok, broken]\n",
        &[
            ("ok", "", "exit 0\n"),
            ("broken", "", "echo oops; exit 3\n"),
        ],
    );
    let out = f.testbay(&["run", pack.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("exit status 3"));
    // Failed accepted as valid: exit 0.
    let out = f.testbay(&[
        "run",
        pack.to_str().unwrap(),
        "-p",
        "valid_result=[\"Passed\",\"Failed\"]",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
}

#[test]
fn json_mode_prints_one_event_per_line() {
    let f = Bed::new();
    let pack = f.pack("good", GOOD, &good_tasks());
    let out = f.testbay(&["run", pack.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let events: Vec<Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(events.iter().any(|e| e["type"] == "log"
        && e["lines"]
            .as_array()
            .is_some_and(|l| l.iter().any(|l| l == "booted"))));
    assert_eq!(events.last().unwrap()["type"], "run_status");
    assert_eq!(events.last().unwrap()["status"], "completed");
}

#[test]
fn refused_runs_say_why_and_exit_2() {
    let f = Bed::new();
    let pack = f.pack(
        "needs",
        "name: needs\nversion: '1'\ngroups:\n  g:\n    tests: [a]\n",
        &[("a", "req_param_keys: [firmware]\n", "exit 0\n")],
    );
    let out = f.testbay(&["run", pack.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("task a needs firmware"),
        "{}",
        text(&out.stderr)
    );
    let out = f.testbay(&["run", pack.to_str().unwrap(), "--group", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("group `nope`"));
    let out = f.testbay(&["run", f.root.join("nowhere").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let out = f.testbay(&["run", pack.to_str().unwrap(), "-p", "novalue"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("KEY=VALUE"));
    // A typo'd parameter is refused, naming the key and the one it resembles.
    let out = f.testbay(&[
        "run",
        pack.to_str().unwrap(),
        "-p",
        "firmware=2.1",
        "-p",
        "proces_limit=2",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("`proces_limit`") && err.contains("did you mean `process_limit`?"),
        "{err}"
    );
    // A value that is not JSON is read as YAML, not taken as a string.
    let out = f.testbay(&[
        "run",
        pack.to_str().unwrap(),
        "-p",
        "firmware=2.1",
        "-p",
        "process_limit=[2",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("process_limit"),
        "{}",
        text(&out.stderr)
    );
    let out = f.testbay(&["run", pack.to_str().unwrap(), "--coverage-mode", "sideways"]);
    assert_eq!(out.status.code(), Some(2));
    // The refused run is stored with its reason.
    let list = text(
        &f.testbay(&["results", "--status", "could_not_start"])
            .stdout,
    );
    assert!(list.contains("could_not_start"), "{list}");
}

/// SIGKILL the console mid-run: its task process dies with it (pdeathsig), a grandchild
/// left in the task's group is killed at the next start, the run is marked interrupted,
/// unfinished tasks Aborted, finished ones intact. (The kill comes 0.2 s into the second
/// task, well after the first one's result was committed: ARCHITECTURE.md, invariant 7.)
#[test]
fn killed_console_takes_its_tasks_down_and_is_recovered() {
    let f = Bed::new();
    let marker = f.root.join("marker");
    std::fs::create_dir_all(&marker).unwrap();
    let slow_body = format!(
        "sleep 0.2\nsleep 300 &\necho $! > {m}/grandchild\necho $$ > {m}/child\nwait\n",
        m = marker.display()
    );
    let pack = f.pack(
        "slow",
        "name: slow\nversion: '1'\ngroups:\n  g:\n    tests: [quick, slow, never]\n",
        &[
            ("quick", "", "echo quick\n"),
            ("slow", "", &slow_body),
            ("never", "", "exit 0\n"),
        ],
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
    let child: i32 = wait_for_file(&marker.join("child")).trim().parse().unwrap();
    let grandchild: i32 = wait_for_file(&marker.join("grandchild"))
        .trim()
        .parse()
        .unwrap();
    assert!(alive(child) && alive(grandchild));
    console.kill().unwrap(); // SIGKILL
    console.wait().unwrap();
    assert!(
        ends_soon(child),
        "task process {child} outlived the console"
    );

    // The next start recovers: run interrupted, leftovers killed.
    let out = f.testbay(&["results", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("marked interrupted"),
        "{}",
        text(&out.stderr)
    );
    let page: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run = &page["runs"][0];
    assert_eq!(run["status"], "interrupted");
    let id = run["id"].as_str().unwrap();
    // The folder made ahead for the task that never started is gone; the others stay.
    let lane = f.data.join("runs").join(id).join("local");
    assert!(lane.join("quick/main.log").is_file());
    assert!(lane.join("slow/params.json").is_file());
    assert!(
        !lane.join("never").exists(),
        "prepared folder of a task that never ran"
    );
    assert!(
        ends_soon(grandchild),
        "grandchild {grandchild} survived recovery"
    );
    let result = results_by_task(&f, id);
    assert_eq!(result["quick"], "Passed");
    assert_eq!(result["slow"], "Aborted");
    assert_eq!(result["never"], "Aborted");
    // Recovery is done once; a second start finds nothing to do.
    let again = f.testbay(&["results"]);
    assert!(!text(&again.stderr).contains("marked interrupted"));
}

/// With a lab file, `--dut` names a DUT of the lab: model, rack and slot come from it and
/// the ATS from the rack; unknown and offline DUTs are refused before anything runs.
#[test]
fn duts_come_from_the_lab() {
    let f = Bed::new();
    let lab = f.root.join("lab.yaml");
    std::fs::write(
        &lab,
        "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 3}}\n  - {name: box-2, model: BX-1, offline: true, location: {rack: rack-x, slot: 4}}\n",
    )
    .unwrap();
    let pack = f.pack(
        "p",
        "name: p\nversion: '1'\ngroups:\n  g:\n    tests: [a]\n",
        &[("a", "valid_duts: ['BX-*']\n", "exit 0\n")],
    );
    let lab_arg = lab.to_str().unwrap();
    let out = f.testbay(&[
        "--lab",
        lab_arg,
        "run",
        pack.to_str().unwrap(),
        "--dut",
        "box-1",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page: Value = serde_json::from_slice(&f.testbay(&["results", "--json"]).stdout).unwrap();
    let run = &page["runs"][0];
    assert_eq!(run["ats"], "rack-x");
    assert_eq!(run["duts"][0]["model"], "BX-1");
    assert_eq!(run["duts"][0]["slot"], 3);
    assert_eq!(
        run["counts"]["by_result"]["Passed"], 1,
        "valid_duts matched the lab's model"
    );

    let out = f.testbay(&[
        "--lab",
        lab_arg,
        "run",
        pack.to_str().unwrap(),
        "--dut",
        "box-9",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no DUT named `box-9`"),
        "{}",
        text(&out.stderr)
    );
    let out = f.testbay(&[
        "--lab",
        lab_arg,
        "run",
        pack.to_str().unwrap(),
        "--dut",
        "box-2",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("offline"),
        "{}",
        text(&out.stderr)
    );
}

/// Ctrl-C stops the run gracefully: the running test is terminated, the teardown runs,
/// the exit status says it did not complete.
#[test]
fn ctrl_c_stops_gracefully() {
    let f = Bed::new();
    let marker = f.root.join("marker");
    std::fs::create_dir_all(&marker).unwrap();
    let pack = f.pack(
        "int",
        "name: int\nversion: '1'\nteardown: [cleanup]\ngroups:\n  g:\n    tests: [slow]\n",
        &[
            (
                "slow",
                "",
                &format!("echo $$ > {}/slow\nsleep 300\n", marker.display()),
            ),
            (
                "cleanup",
                "",
                &format!("echo done > {}/cleanup\n", marker.display()),
            ),
        ],
    );
    let console = start_run(&f, &pack);
    wait_for_file(&marker.join("slow"));
    unsafe { libc::kill(console.id() as i32, libc::SIGINT) };
    let out = console.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("teardowns still run"));
    assert_eq!(wait_for_file(&marker.join("cleanup")), "done\n");
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("run ") && stdout.contains(" stopped:"),
        "{stdout}"
    );
    assert!(stdout.contains("Aborted"), "{stdout}");
}

/// A child process killed when this is dropped, unless it was waited for (`None`): a
/// test that fails before the child ends leaves nothing running.
struct KillOnDrop(Option<i32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// A third Ctrl-C leaves at once, even while a task ignores SIGTERM: exit status 130,
/// the task dies with the console, what finished before stays stored and the next start
/// marks the run interrupted.
#[test]
fn third_ctrl_c_leaves_at_once_and_keeps_what_was_stored() {
    let f = Bed::new();
    let marker = f.root.join("marker");
    std::fs::create_dir_all(&marker).unwrap();
    let pack = f.pack(
        "left",
        "name: left\nversion: '1'\ngroups:\n  g:\n    tests: [quick, stubborn]\n",
        &[
            ("quick", "", "exit 0\n"),
            (
                "stubborn",
                "",
                &format!(
                    "trap '' TERM\necho $$ > {m}/stubborn.tmp\nmv {m}/stubborn.tmp {m}/stubborn\nwhile true; do sleep 0.1; done\n",
                    m = marker.display()
                ),
            ),
        ],
    );
    let mut console = start_run(&f, &pack);
    let pid: i32 = wait_for_file(&marker.join("stubborn"))
        .trim()
        .parse()
        .unwrap();
    // Each Ctrl-C once the console has answered the one before: signals sent while it is
    // busy would be taken as one.
    let stdout = console.stdout.take().unwrap();
    let drained = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap());
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stderr = console.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // Killed if the test fails before the console ends.
    let mut guard = KillOnDrop(Some(console.id() as i32));
    let mut said = Vec::new();
    for answer in ["teardowns still run", "at once", "left run"] {
        unsafe { libc::kill(console.id() as i32, libc::SIGINT) };
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no \"{answer}\" from the console: {said:#?}"));
            let answered = line.contains(answer);
            said.push(line);
            if answered {
                break;
            }
        }
    }
    let status = console.wait().unwrap();
    guard.0 = None;
    drained.join().unwrap();
    assert_eq!(status.code(), Some(130), "{said:#?}");
    assert!(ends_soon(pid), "the task outlived the console");
    let page: Value = serde_json::from_slice(&f.testbay(&["results", "--json"]).stdout).unwrap();
    let run = &page["runs"][0];
    assert_eq!(run["status"], "interrupted");
    let result = results_by_task(&f, run["id"].as_str().unwrap());
    assert_eq!(result["quick"], "Passed");
    assert_eq!(result["stubborn"], "Aborted");
}

/// A run reserves its DUT and resources in the lab's book, which it owns while it runs. A
/// second `testbay run` on the same data dir cannot reserve: it is refused, naming the
/// owner, unless `--no-reserve` (said on stderr); a run that needs nothing reserved goes.
#[test]
fn a_run_that_cannot_reserve_is_refused_unless_no_reserve() {
    let f = Bed::new();
    let lab = f.root.join("lab.yaml");
    std::fs::write(
        &lab,
        "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 3}}\nresources:\n  - {name: ir, mode: exclusive, config: {protocol: rc6}}\n",
    )
    .unwrap();
    let started = f.root.join("started");
    let go = f.root.join("go");
    let wait_body = format!(
        "cp \"$TESTBAY_PARAMS\" {p}\necho started > {s}\nfor i in $(seq 600); do [ -e {g} ] && exit 0; sleep 0.05; done\nexit 1\n",
        p = f.root.join("params.json").display(),
        s = started.display(),
        g = go.display()
    );
    let pack = f.pack(
        "p",
        "name: p\nversion: '1'\ngroups:\n  slow:\n    tests: [hold]\n  quick:\n    tests: [zap]\n  plain:\n    tests: [nothing]\n",
        &[
            ("hold", "exclusive_resources: [ir]\n", &wait_body),
            ("zap", "exclusive_resources: [ir]\n", "exit 0\n"),
            ("nothing", "", "exit 0\n"),
        ],
    );
    let (lab_arg, pack_arg) = (lab.to_str().unwrap(), pack.to_str().unwrap());
    let mut first = bin()
        .arg("--data-dir")
        .arg(&f.data)
        .args([
            "--lab", lab_arg, "run", pack_arg, "-g", "slow", "--dut", "box-1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&started);
    // The running task was told what it holds.
    let params: Value =
        serde_json::from_str(&std::fs::read_to_string(f.root.join("params.json")).unwrap())
            .unwrap();
    let held: Vec<&str> = params["reservations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["resource"].as_str().unwrap())
        .collect();
    assert_eq!(held, ["box-1", "ir"]);
    assert_eq!(params["reservations"][1]["config"]["protocol"], "rc6");

    let out = f.testbay(&["--lab", lab_arg, "run", pack_arg, "-g", "quick"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot reserve ir"), "{err}");
    assert!(
        err.contains(&format!("owned by testbay run (pid {})", first.id())),
        "{err}"
    );
    assert!(err.contains("--no-reserve"), "{err}");

    let out = f.testbay(&[
        "--lab",
        lab_arg,
        "run",
        pack_arg,
        "-g",
        "quick",
        "--no-reserve",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("running without reservations; ir"), "{err}");

    let out = f.testbay(&["--lab", lab_arg, "run", pack_arg, "-g", "plain"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    std::fs::write(&go, "").unwrap();
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    // With the book free again, the quick group reserves and runs.
    let out = f.testbay(&["--lab", lab_arg, "run", pack_arg, "-g", "quick"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `-p` takes the type of the pack's default: text for a text parameter as typed
/// (`4.20`, not 4.2); a value of another type is refused naming the key, and no run is
/// stored for it.
#[test]
fn overrides_take_the_type_of_the_default_and_wrong_types_store_nothing() {
    let f = Bed::new();
    let pack = f.pack(
        "typed",
        "name: typed\nversion: '1'\nparams:\n  firmware: '1.0'\n  channels: [1, 2]\ngroups:\n  g:\n    tests: [a]\n",
        &[("a", "", "grep -q '\"firmware\": *\"4.20\"' \"$TESTBAY_PARAMS\"\n")],
    );
    let out = f.testbay(&["run", pack.to_str().unwrap(), "-p", "channels=abc"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("`channels`") && err.contains("a list of numbers"),
        "{err}"
    );
    let list = text(&f.testbay(&["results"]).stdout);
    assert!(
        !list.contains("typed@"),
        "a refused launch is not stored: {list}"
    );
    let out = f.testbay(&["run", pack.to_str().unwrap(), "-p", "firmware=4.20"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("completed, passed"));
}
