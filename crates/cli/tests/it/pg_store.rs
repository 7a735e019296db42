//! The console on PostgreSQL (`--store postgres://…`, `TESTBAY_STORE`): `testbay run`
//! stores its run there and `testbay results` reads it back; a `testbay serve` on the
//! database holds, queues, runs and fires schedules while the CLI, on the same database,
//! sees and changes what it does. Each test has a fresh database of the throwaway
//! cluster (`testbay-pgtest`).

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::serve::post;
use crate::support::{text, Bed};

const LAB: &str = "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 1}}\n";

fn fresh_db(prefix: &str) -> String {
    testbay_pgtest::shared()
        .expect("a throwaway PostgreSQL (Debian's postgresql package)")
        .fresh_db(prefix)
        .unwrap()
}

/// A bed with a one-task pack `p` and a one-DUT lab, and the database it stores in.
struct Lab {
    f: Bed,
    store: String,
}

impl Lab {
    fn new(prefix: &str) -> Lab {
        let f = Bed::new();
        f.pack(
            "packs/p",
            "name: p\nversion: '1'\ngroups:\n  quick:\n    tests: [quick]\n",
            &[(
                "quick",
                "est_task_time: 1\n",
                "echo ran on \"$TESTBAY_DUT\"\nexit 0\n",
            )],
        );
        std::fs::write(f.root.join("lab.yaml"), LAB).unwrap();
        std::fs::create_dir_all(&f.data).unwrap();
        std::fs::write(
            f.data.join("settings.yaml"),
            "dispatch_cpu_threshold: 100\n",
        )
        .unwrap();
        Lab {
            f,
            store: fresh_db(prefix),
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_testbay"));
        c.env("TESTBAY_DATA_DIR", &self.f.data)
            .env("TESTBAY_PACKS", self.f.root.join("packs"))
            .env("TESTBAY_LAB", self.f.root.join("lab.yaml"))
            .env("TESTBAY_STORE", &self.store)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    fn testbay(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.testbay(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
    }
}

#[test]
fn run_stores_in_postgres_and_results_reads_it_back() {
    let lab = Lab::new("cli_run");
    // --store on the command line, as a user types it (the environment says it too).
    let out = lab
        .command()
        .env_remove("TESTBAY_STORE")
        .args(["--store", &lab.store, "run", "p", "--dut", "box-1"])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let id = crate::support::run_id_of(&stdout);

    let tree = lab.json(&["results", &id, "--json"]);
    assert_eq!(tree["run"]["status"], "completed", "{tree}");
    assert_eq!(tree["tasks"][0]["task"], "quick");
    assert_eq!(tree["tasks"][0]["result"], "Passed");
    let listed = lab.json(&["results", "--json"]);
    assert_eq!(listed["total"], 1, "{listed}");
    // Logs stay in the data directory; the SQLite file there holds no run.
    let log = tree["tasks"][0]["paths"]["main_log"].as_str().unwrap();
    assert!(log.starts_with(&*lab.f.data.to_string_lossy()), "{log}");
    assert!(std::fs::read_to_string(log).unwrap().contains("ran on"));
    let sqlite = lab
        .command()
        .env_remove("TESTBAY_STORE")
        .args(["results", "--json"])
        .output()
        .unwrap();
    let sqlite: Value = serde_json::from_slice(&sqlite.stdout).unwrap();
    assert_eq!(sqlite["total"], 0, "{sqlite}");
}

#[test]
fn a_bad_store_url_is_refused_naming_what_is_accepted() {
    let lab = Lab::new("cli_bad");
    let out = lab
        .command()
        .args(["--store", "mysql://x/y", "results"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("sqlite://PATH or postgres://"), "{err}");
}

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

fn serve(lab: &Lab) -> Served {
    let mut child = lab
        .command()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = crate::support::served_address(&mut child);
    Served { child, addr }
}

/// The JSON body of an HTTP answer.
fn body(reply: &str) -> Value {
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let (_, b) = reply.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(b).unwrap_or_else(|e| panic!("{e}: {b}"))
}

fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn serve_on_postgres_holds_queues_runs_and_fires_schedules() {
    let lab = Lab::new("cli_serve");
    let served = serve(&lab);
    let api = |b: &str| body(&post(&served.addr, b));

    // A hold, then a launch on the held DUT waits in the queue.
    let hold = api(r#"{"cmd":"hold","resource":"box-1","by":"alice","duration_s":600}"#);
    let hold_id = hold["data"]["id"].clone();
    assert!(!hold_id.is_null(), "{hold}");
    let launched = api(r#"{"cmd":"launch","pack":"p","groups":["quick"],"duts":["box-1"]}"#);
    assert_eq!(launched["data"]["queued"], true, "{launched}");
    let run_id = launched["data"]["run_id"].as_str().unwrap().to_string();
    // The CLI, on the same database, sees the queue and the hold.
    let q = lab.json(&["queue", "--json"]);
    assert_eq!(q["runs"][0]["run_id"], run_id.as_str(), "{q}");
    let holds = text(&lab.testbay(&["lab", "holds"]).stdout);
    assert!(holds.contains("alice"), "{holds}");

    // Released: the queued run starts and completes; the CLI reads its results.
    api(&format!(r#"{{"cmd":"release","id":{hold_id}}}"#));
    let tree = until("the queued run completed", || {
        let out = lab.testbay(&["results", &run_id, "--json"]);
        let tree: Value = serde_json::from_slice(&out.stdout).ok()?;
        (tree["run"]["status"] == "completed").then_some(tree)
    });
    assert_eq!(tree["tasks"][0]["result"], "Passed", "{tree}");

    // A schedule added from the CLI is fired by the serving console.
    let added = lab.json(&[
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
        "1",
        "--json",
    ]);
    let sid = added["id"].as_str().unwrap().to_string();
    let fired = until("the schedule fired and its run completed", || {
        let list = lab.json(&["schedule", "list", "--json"]);
        let run = list[0]["run_ids"][0].as_str()?.to_string();
        let out = lab.testbay(&["results", &run, "--json"]);
        let tree: Value = serde_json::from_slice(&out.stdout).ok()?;
        (tree["run"]["status"] == "completed").then_some(run)
    });
    assert_ne!(fired, run_id);
    let listed = api(r#"{"cmd":"list_schedules"}"#);
    assert!(listed.to_string().contains(&sid), "{listed}");
    // Both runs are in the database, none in the data dir's SQLite file.
    assert_eq!(lab.json(&["results", "--json"])["total"], 2);
    assert!(!lab.f.data.join("testbay.db").exists());
}

/// A single seat's history (a run with sub-results, a hold, a webhook, a schedule) moved
/// into a lab's database: every table the same on both sides; the target is refused
/// once it holds rows unless forced; the lab reads the run back as the seat did.
#[test]
fn migrate_store_moves_a_history_into_postgres_losing_nothing() {
    let lab = Lab::new("cli_migrate");
    let seat = |args: &[&str]| {
        let out = lab
            .command()
            .env_remove("TESTBAY_STORE")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    lab.f.pack(
        "packs/multi",
        "name: multi\nversion: '1'\ngroups:\n  g:\n    tests: [tune]\n",
        &[(
            "tune",
            "",
            "cat > \"$TESTBAY_RESULT\" <<'EOF'\n{\"result\": \"Passed\", \"measurements\": [{\"name\": \"power\", \"value\": 7, \"units\": \"dBm\", \"high\": 10}, {\"name\": \"ber\", \"value\": 0.001}], \"multi_result\": [{\"name\": \"ch101\", \"description\": \"\", \"result\": \"Passed\", \"metadata\": {\"message\": \"ok\"}, \"measurements\": [{\"name\": \"snr_db\", \"value\": 7.25, \"units\": \"dB\", \"low\": 5, \"high\": 9}]}]}\nEOF\n",
        )],
    );
    let run_id = crate::support::run_id_of(&seat(&["run", "multi", "--dut", "box-1"]));
    seat(&["lab", "hold", "box-1", "--for", "30m", "--by", "ann"]);
    seat(&[
        "webhook",
        "add",
        "--url",
        "http://127.0.0.1:9/hook",
        "--event",
        "run_failed",
    ]);
    seat(&[
        "schedule",
        "add",
        "--name",
        "nightly",
        "--pack",
        "p",
        "--dut",
        "box-1",
        "--type",
        "daily",
        "--start",
        "2030-01-01T02:00",
    ]);
    let pushed = lab.f.root.join("packs/multi");
    seat(&["packs", "push", "--private", pushed.to_str().unwrap()]);
    let seat_tree = seat(&["results", &run_id, "--json"]);
    assert!(
        seat_tree.contains("snr_db") && seat_tree.contains("\"ber\""),
        "{seat_tree}"
    );

    let out = lab
        .command()
        .args(["migrate-store", "--to", &lab.store, "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["same"], true, "{report}");
    let rows = |t: &str| {
        report["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["table"] == t)
            .unwrap_or_else(|| panic!("no {t} in {report}"))["target_rows"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(rows("runs"), 1);
    assert_eq!(rows("sub_results"), 1);
    // The seat keeps them in its task results' rows, the lab in `measurements`.
    assert_eq!(rows("measurements"), 3);
    assert!(rows("book_events") > 0 && rows("reservations") == 1);
    assert_eq!(rows("webhooks"), 1);
    assert_eq!(rows("schedules"), 1);
    assert_eq!((rows("library_packs"), rows("pack_archives")), (1, 1));
    for c in report["tables"].as_array().unwrap() {
        assert_eq!(c["source_sha256"], c["target_sha256"], "{c}");
    }

    // The lab reads the run as the seat did.
    assert_eq!(
        text(&lab.testbay(&["results", &run_id, "--json"]).stdout),
        seat_tree
    );
    let holds = text(&lab.testbay(&["lab", "holds"]).stdout);
    assert!(holds.contains("ann"), "{holds}");
    let library = text(&lab.testbay(&["packs", "library"]).stdout);
    assert!(
        library.contains("multi 1  ok  1 task(s)  library  private  by local"),
        "{library}"
    );

    // Not twice into a database that holds rows, unless forced.
    let again = lab
        .command()
        .args(["migrate-store", "--to", &lab.store])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("--force"),
        "{}",
        text(&again.stderr)
    );
    let forced = lab
        .command()
        .args(["migrate-store", "--to", &lab.store, "--force"])
        .output()
        .unwrap();
    assert_eq!(forced.status.code(), Some(0), "{}", text(&forced.stderr));
    assert!(text(&forced.stdout).contains("same rows, same content"));
    assert_eq!(lab.json(&["results", "--json"])["total"], 1);
    // New rows take ids after the copied ones.
    let out = lab.testbay(&["run", "multi", "--dut", "box-1", "--no-reserve"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(lab.json(&["results", "--json"])["total"], 2);
}

/// The demo pack on the demo lab, as the README runs it, stored in PostgreSQL: every
/// task's result, its measurements and sections read back; JUnit exported from there.
#[test]
fn the_demo_run_on_the_demo_lab_stores_everything_in_postgres() {
    let f = Bed::new();
    let store = fresh_db("cli_demo");
    let testbay = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_testbay"))
            .env("TESTBAY_DATA_DIR", &f.data)
            .env("TESTBAY_PACKS", crate::support::repo().join("packs"))
            .env("TESTBAY_LAB", crate::support::demo_lab())
            .env("TESTBAY_STORE", &store)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .args(args)
            .output()
            .unwrap()
    };
    let pack = crate::support::repo().join("packs/stb-smoke");
    let out = testbay(&[
        "run",
        pack.to_str().unwrap(),
        "--group",
        "smoke",
        "--dut",
        "stb-01",
        "--ats",
        "rack-a",
    ]);
    let stdout = text(&out.stdout);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let id = crate::support::run_id_of(&stdout);
    let tree: Value = serde_json::from_slice(&testbay(&["results", &id, "--json"]).stdout).unwrap();
    let tasks = tree["tasks"].as_array().unwrap();
    assert!(tasks.len() > 3, "{tree}");
    assert!(
        tasks.iter().all(|t| t["state"] == "done"),
        "every task finished and stored: {tree}"
    );
    assert!(
        tasks
            .iter()
            .any(|t| !t["measurements"].as_array().unwrap().is_empty()),
        "the demo pack's measurements are stored: {tree}"
    );
    let junit = testbay(&["export", &id, "-f", "junit"]);
    assert!(junit.status.success(), "{}", text(&junit.stderr));
    assert!(text(&junit.stdout).contains("<testsuite"));
}
