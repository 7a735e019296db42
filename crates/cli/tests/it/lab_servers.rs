//! Several `testbay serve` on one PostgreSQL database following each other: a server
//! SIGKILLed mid-run has its run marked interrupted by the survivor once its lease
//! lapses and what it held given back; the book's owner SIGKILLed, the survivor takes
//! the book over; a PostgreSQL restart mid-run; two servers racing launches for one DUT.
//! Every claim is fenced in the lab database (`reserve::fence`): the tests read it back.
//! Each test has a fresh database (a private cluster for the restart), one data
//! directory per server, and leases of 2 s (`TESTBAY_SERVER_LEASE_MS`, whose range is
//! checked).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use testbay_engine::reserve::labdb::{LabBook, LabReservation, LabState};
use testbay_engine::reserve::{EndReason, Holder};

use crate::serve::post;
use crate::support::Bed;

const LAB: &str = "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 1}}\n";

/// A pack `p`: group `quick` (one task that passes at once), group `long` (`first`
/// passes, then `slow` runs until `$TESTBAY_DATA_DIR/../release` exists or a minute
/// passes), group `short` (one task of 0.2 s).
struct Lab {
    f: Bed,
    store: String,
}

impl Lab {
    fn new(store: String) -> Lab {
        let f = Bed::new();
        f.pack(
            "packs/p",
            "name: p\nversion: '1'\ngroups:\n  quick:\n    tests: [quick]\n  long:\n    tests: [first, slow]\n  short:\n    tests: [short]\n",
            &[
                ("quick", "est_task_time: 1\n", "exit 0\n"),
                ("first", "est_task_time: 1\n", "echo first\nexit 0\n"),
                (
                    "slow",
                    "est_task_time: 60\n",
                    "i=0\nwhile [ $i -lt 600 ] && [ ! -e \"$RELEASE\" ]; do sleep 0.1; i=$((i+1)); done\nexit 0\n",
                ),
                ("short", "est_task_time: 1\n", "sleep 0.2\nexit 0\n"),
            ],
        );
        std::fs::write(f.root.join("lab.yaml"), LAB).unwrap();
        Lab { f, store }
    }

    fn data(&self, server: &str) -> PathBuf {
        let d = self.f.root.join(format!("data-{server}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("settings.yaml"), "dispatch_cpu_threshold: 100\n").unwrap();
        d
    }

    fn release_file(&self) -> PathBuf {
        self.f.root.join("release")
    }

    fn command(&self, data: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_testbay"));
        c.env("TESTBAY_DATA_DIR", data)
            .env("TESTBAY_PACKS", self.f.root.join("packs"))
            .env("TESTBAY_LAB", self.f.root.join("lab.yaml"))
            .env("TESTBAY_STORE", &self.store)
            .env("TESTBAY_SERVER_LEASE_MS", "2000")
            .env("RELEASE", self.release_file())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    fn testbay(&self, args: &[&str]) -> Output {
        self.command(&self.data("cli")).args(args).output().unwrap()
    }

    /// The stored run `id` (`testbay results ID --json`).
    fn run(&self, id: &str) -> Option<Value> {
        let out = self.testbay(&["results", id, "--json"]);
        serde_json::from_slice(&out.stdout).ok()
    }

    fn serve(&self, name: &str) -> Served {
        let data = self.data(name);
        let log = std::fs::File::create(data.join("serve.log")).unwrap();
        let mut child = self
            .command(&data)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let addr = crate::support::served_address(&mut child);
        Served { child, addr }
    }
}

impl Drop for Lab {
    /// A failed test shows what each server logged.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for name in ["a", "b"] {
            let log = self.f.root.join(format!("data-{name}/serve.log"));
            if let Ok(text) = std::fs::read_to_string(log) {
                eprintln!("--- server {name} ---\n{text}");
            }
        }
    }
}

struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn api(&self, body: &str) -> Value {
        let reply = post(&self.addr, body);
        assert!(reply.starts_with("HTTP/1.1 200"), "{body}: {reply}");
        let (_, b) = reply.split_once("\r\n\r\n").unwrap();
        serde_json::from_str(b).unwrap_or_else(|e| panic!("{e}: {b}"))
    }

    /// Launch group `group` of `p` on box-1; its run id.
    fn launch(&self, group: &str) -> String {
        let v = self.api(&format!(
            r#"{{"cmd":"launch","pack":"p","groups":["{group}"],"duts":["box-1"]}}"#
        ));
        v["data"]["run_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no run id: {v}"))
            .to_string()
    }

    fn kill(&mut self) {
        // SAFETY: signalling the child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // SAFETY: signalling the child this test started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fresh_db(prefix: &str) -> String {
    testbay_pgtest::shared()
        .expect("a throwaway PostgreSQL (Debian's postgresql package)")
        .fresh_db(prefix)
        .unwrap()
}

fn status(run: &Value) -> &str {
    run["run"]["status"].as_str().unwrap_or("")
}

fn task<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == name)
        .unwrap_or_else(|| panic!("no task {name} in {run}"))
}

/// The run of `long` is mid-run: `first` passed (and is stored), `slow` runs.
fn until_mid_run(lab: &Lab, id: &str) {
    until("the long run is mid-run", || {
        let run = lab.run(id)?;
        (task(&run, "first")["result"] == "Passed" && task(&run, "slow")["state"] == "running")
            .then_some(())
    });
}

/// A run that completed (each task passed), waited for.
fn until_completed(lab: &Lab, id: &str) -> Value {
    until(&format!("run {id} completed"), || {
        let run = lab.run(id)?;
        match status(&run) {
            "completed" => Some(run),
            "queued" | "running" | "stalled" | "" => None,
            other => panic!("run {id} ended {other}: {run}"),
        }
    })
}

/// The server executing a run is SIGKILLed mid-run (it owns the book: runs on a DUT
/// execute at the owner): once its lease lapses the survivor marks the run interrupted
/// naming the server, keeps the result of the finished task, gives back the DUT and
/// takes the book over, so a new launch on that DUT runs on the survivor.
#[test]
fn a_server_killed_mid_run_is_taken_over_by_the_survivor() {
    let lab = Lab::new(fresh_db("servers_kill"));
    let mut a = lab.serve("a");
    let b = lab.serve("b");
    let id = b.launch("long");
    until_mid_run(&lab, &id);

    a.kill();
    let run = until("the survivor marked the run interrupted", || {
        let run = lab.run(&id)?;
        (status(&run) == "interrupted").then_some(run)
    });
    let reason = run["run"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("server ") && reason.ends_with("stopped answering"),
        "{run}"
    );
    assert_eq!(task(&run, "first")["result"], "Passed", "{run}");
    assert_eq!(task(&run, "slow")["result"], "Aborted", "{run}");

    // The DUT is free again and the book is the survivor's: the launch runs there.
    let again = b.launch("quick");
    let done = until_completed(&lab, &again);
    assert_eq!(task(&done, "quick")["result"], "Passed", "{done}");
    let holds = b.api(r#"{"cmd":"get_lab"}"#);
    assert!(!holds.to_string().contains(&id), "{holds}");

    // In the lab database the dead server's claim lapsed with its lease (nobody released
    // it), and the survivor's run held box-1 there after it.
    let history = lab_db_history(&lab.store);
    let dead = history
        .iter()
        .find(|r| held_by_run(r, &id))
        .unwrap_or_else(|| panic!("the killed server's claim is not in the database: {history:?}"));
    assert_eq!(dead.state, LabState::Expired, "{dead:?}");
    assert_eq!(dead.end_reason, Some(EndReason::LeaseLapsed), "{dead:?}");
    assert!(
        history
            .iter()
            .any(|r| held_by_run(r, &again) && r.state == LabState::Released),
        "{history:?}"
    );
}

/// The lab database's ended reservations, after checking it never held a double booking.
fn lab_db_history(url: &str) -> Vec<LabReservation> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let book = LabBook::open(url, "test").await.expect("the lab book");
        let audit = book.audit().await.unwrap();
        assert!(audit.clean(), "{audit:?}");
        book.history(1_000).await.unwrap()
    })
}

fn held_by_run(r: &LabReservation, run: &str) -> bool {
    matches!(&r.holder, Holder::Run { run_id, .. } if run_id == run) && r.resource == "box-1"
}

/// The book's owner SIGKILLed while idle, with an operator's hold in its book: the
/// other server takes the book over with the hold in it (a launch on the held DUT
/// queues), and once the hold is released (in the lab database too) the queued run
/// starts there.
#[test]
fn the_books_owner_killed_the_other_server_takes_the_book_over() {
    let lab = Lab::new(fresh_db("servers_owner"));
    let mut a = lab.serve("a");
    let b = lab.serve("b");
    let first = b.launch("quick");
    until_completed(&lab, &first);
    let hold = b.api(r#"{"cmd":"hold","resource":"box-1","by":"alice","duration_s":600}"#);
    let hold_id = hold["data"]["id"].clone();
    assert!(!hold_id.is_null(), "{hold}");

    a.kill();
    let queued = until("the survivor answers launches as the book's owner", || {
        let v = b.api(r#"{"cmd":"launch","pack":"p","groups":["quick"],"duts":["box-1"]}"#);
        v["data"]["run_id"].is_string().then_some(v)
    });
    assert_eq!(queued["data"]["queued"], true, "{queued}");
    let id = queued["data"]["run_id"].as_str().unwrap().to_string();
    b.api(&format!(r#"{{"cmd":"release","id":{hold_id}}}"#));
    let done = until_completed(&lab, &id);
    assert_eq!(task(&done, "quick")["result"], "Passed", "{done}");

    // The hold was held in the lab database (made by the dead owner, from the other
    // server's request) and released there by the survivor, which then held box-1.
    let history = lab_db_history(&lab.store);
    assert!(
        history.iter().any(|r| r.resource == "box-1"
            && matches!(&r.holder, Holder::Operator { name } if name == "alice")
            && r.state == LabState::Released),
        "{history:?}"
    );
    assert!(history.iter().any(|r| held_by_run(r, &id)), "{history:?}");
}

/// PostgreSQL restarted mid-run: the servers reconnect; the run goes on to completion
/// or ends interrupted with its reason; what was stored before the restart is kept, and
/// a launch afterwards runs (someone owns the book again).
#[test]
fn a_postgresql_restart_mid_run_loses_nothing_stored() {
    let cluster = testbay_pgtest::Cluster::start().expect("a throwaway PostgreSQL");
    let lab = Lab::new(cluster.fresh_db("servers_restart").unwrap());
    let _a = lab.serve("a");
    let b = lab.serve("b");
    let id = b.launch("long");
    until_mid_run(&lab, &id);

    cluster.restart().unwrap();
    std::fs::write(lab.release_file(), "").unwrap();
    let run = until("the run ended", || {
        let run = lab.run(&id)?;
        (!matches!(status(&run), "queued" | "running" | "stalled" | "")).then_some(run)
    });
    eprintln!(
        "after the restart the run ended {} ({})",
        status(&run),
        run["run"]["reason"]
    );
    match status(&run) {
        "completed" => assert_eq!(task(&run, "slow")["result"], "Passed", "{run}"),
        "interrupted" => assert!(run["run"]["reason"].as_str().is_some(), "{run}"),
        other => panic!("the run ended {other}: {run}"),
    }
    assert_eq!(task(&run, "first")["result"], "Passed", "{run}");

    let again = until("a launch after the restart is answered", || {
        let v = b.api(r#"{"cmd":"launch","pack":"p","groups":["quick"],"duts":["box-1"]}"#);
        v["data"]["run_id"].as_str().map(str::to_string)
    });
    let done = until_completed(&lab, &again);
    assert_eq!(task(&done, "quick")["result"], "Passed", "{done}");
}

/// Two servers each launch 10 runs on one DUT at once: every run completes and no two
/// runs' task windows on the DUT overlap, judged from the stored start and end times;
/// each run held the DUT in the lab database, which never held a double booking.
#[test]
fn two_servers_racing_launches_for_one_dut_never_overlap() {
    let lab = Lab::new(fresh_db("servers_race"));
    let a = lab.serve("a");
    let b = lab.serve("b");
    let ids: Vec<String> = std::thread::scope(|s| {
        let racers: Vec<_> = [&a, &b]
            .into_iter()
            .flat_map(|server| (0..10).map(move |_| s.spawn(move || server.launch("short"))))
            .collect();
        racers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(ids.len(), 20);
    let mut windows: Vec<(i64, i64, String)> = Vec::new();
    for id in &ids {
        let run = until_completed(&lab, id);
        for t in run["tasks"].as_array().unwrap() {
            let (s, e) = (t["started_ms"].as_i64(), t["finished_ms"].as_i64());
            let (Some(s), Some(e)) = (s, e) else {
                panic!("a task without its times: {run}")
            };
            windows.push((s, e, id.clone()));
        }
    }
    let history = lab_db_history(&lab.store);
    for id in &ids {
        assert!(
            history.iter().any(|r| held_by_run(r, id)),
            "run {id} never held box-1 in the lab database"
        );
    }
    windows.sort();
    for w in windows.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "runs {} and {} overlap on box-1: {:?} and {:?}",
            w[0].2,
            w[1].2,
            (w[0].0, w[0].1),
            (w[1].0, w[1].1)
        );
    }
}

/// A lease out of its range is refused naming the variable and the range.
#[test]
fn a_lease_out_of_range_is_refused_naming_the_variable() {
    let lab = Lab::new(fresh_db("servers_lease"));
    let out = lab
        .command(&lab.data("cli"))
        .env("TESTBAY_SERVER_LEASE_MS", "10")
        .args(["results", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = crate::support::text(&out.stderr);
    assert!(
        err.contains("TESTBAY_SERVER_LEASE_MS") && err.contains("1000 to 600000"),
        "{err}"
    );
}
