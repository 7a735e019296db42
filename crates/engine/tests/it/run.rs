//! Whole runs: real packs in temp folders, real child processes, a real SQLite file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use testbay_engine::outcome::*;
use testbay_engine::plan::DutTarget;
use testbay_engine::run::*;
use testbay_engine::store::{SqliteStore, Store, StoredTaskState, TaskRecord};

use crate::support::{rss_kib, write_pack, Bed};

/// Appends "<task> <phase>" to runs/<id>/order.log.
const LOG_ORDER: &str =
    "echo \"$TESTBAY_TASK $TESTBAY_PHASE\" >> \"$TESTBAY_ARTIFACTS/../../../order.log\"\n";

/// A bed granting through `broker`, its pack written (see [`write_pack`]).
fn fx_with(pack_yaml: &str, tasks: &[(&str, &str, &str)], broker: Arc<dyn ResourceBroker>) -> Bed {
    let f = Bed::builder().broker(broker).build();
    write_pack(&f.pack, pack_yaml, tasks);
    f
}

fn fx(pack_yaml: &str, tasks: &[(&str, &str, &str)]) -> Bed {
    let f = Bed::new();
    write_pack(&f.pack, pack_yaml, tasks);
    f
}

/// What this module asks of a run's bed.
trait RunBed {
    fn req(&self) -> LaunchRequest;
    async fn run(&self, req: LaunchRequest) -> (String, RunStatus);
    fn order(&self, id: &str) -> Vec<String>;
    fn tasks(&self, id: &str) -> Vec<TaskRecord>;
    fn result(&self, id: &str, task: &str) -> TaskRecord;
}

impl RunBed for Bed {
    fn req(&self) -> LaunchRequest {
        LaunchRequest {
            pack_dir: self.pack.display().to_string(),
            ..Default::default()
        }
    }

    async fn run(&self, req: LaunchRequest) -> (String, RunStatus) {
        let id = self.mgr.launch(req).unwrap();
        let status = self.mgr.wait(&id).await.unwrap();
        (id, status)
    }

    fn order(&self, id: &str) -> Vec<String> {
        std::fs::read_to_string(self.data.join("runs").join(id).join("order.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    fn tasks(&self, id: &str) -> Vec<TaskRecord> {
        self.mgr.store().run_tasks(id).unwrap()
    }

    fn result(&self, id: &str, task: &str) -> TaskRecord {
        self.tasks(id)
            .into_iter()
            .find(|t| t.task == task)
            .unwrap_or_else(|| panic!("no task {task}"))
    }
}

const LIFECYCLE_PACK: &str = "name: life\nversion: 1.0.0\nsetup: [gs]\nteardown: [gt]\ngroups:\n  g1:\n    setup: [s1]\n    tests: [a, b]\n    teardown: [t1]\n  g2:\n    tests: [c]\n";

fn lifecycle_tasks() -> Vec<(&'static str, &'static str, &'static str)> {
    vec![
        ("gs", "", LOG_ORDER),
        ("gt", "", LOG_ORDER),
        ("s1", "", LOG_ORDER),
        ("t1", "", LOG_ORDER),
        (
            "a",
            "setup: [bash, a.sh]\nteardown: [bash, a.sh]\n",
            LOG_ORDER,
        ),
        ("b", "", LOG_ORDER),
        ("c", "", LOG_ORDER),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_runs_in_kissats_order_and_everything_is_stored() {
    let f = fx(LIFECYCLE_PACK, &lifecycle_tasks());
    let mut req = f.req();
    req.duts = vec![DutTarget {
        name: "stb-01".into(),
        model: Some("TP-4000".into()),
        rack: Some("rack-a".into()),
        slot: Some(3),
    }];
    req.ats = Some("rack-a".into());
    req.params.insert("channel".into(), 101.into());
    let (id, status) = f.run(req).await;
    assert_eq!(status, RunStatus::Completed);
    assert_eq!(
        f.order(&id),
        [
            "gs main",
            "s1 main",
            "a setup",
            "a main",
            "a teardown",
            "b main",
            "t1 main",
            "c main",
            "gt main"
        ]
    );
    let run = f.mgr.store().get_run(&id).unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.pack_name, "life");
    assert_eq!(run.groups, ["g1", "g2"]);
    assert_eq!(run.params["channel"], 101);
    assert!(!run.content_hash.is_empty());
    assert_eq!(run.counts.done, 7);
    assert_eq!(run.counts.failures, 0);
    let a = f.result(&id, "a");
    assert_eq!(a.result.as_deref(), Some(PASSED));
    assert_eq!(a.lane.as_deref(), Some("stb-01"));
    assert!(a.setup_ms.is_some() && a.main_ms.is_some() && a.teardown_ms.is_some());
    assert_eq!(a.est_task_time, 3600.0);
    assert!((a.run_time_delta.unwrap() - (a.run_time.unwrap() - 3600.0)).abs() < 1e-9);
    for log in [&a.paths.setup_log, &a.paths.main_log, &a.paths.teardown_log] {
        assert!(Path::new(log.as_ref().unwrap()).is_file(), "{log:?}");
    }
    let dir = PathBuf::from(a.paths.task_dir.unwrap());
    assert_eq!(dir, f.data.join("runs").join(&id).join("stb-01").join("a"));
    let params: Value =
        serde_json::from_slice(&std::fs::read(dir.join("params.json")).unwrap()).unwrap();
    assert_eq!(params["dut"]["name"], "stb-01");
    assert_eq!(params["slot"], 3);
    assert_eq!(params["ats"], "rack-a");
    assert_eq!(params["global_params"]["channel"], 101);
    assert_eq!(params["task_params"]["name"], "a");
    // Snapshot taken and used.
    assert!(f
        .data
        .join("runs")
        .join(&id)
        .join("pack/tasks/a.sh")
        .is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_teardown_runs_after_a_failed_setup_and_plain_teardown_does_not() {
    let body = "echo \"$TESTBAY_TASK $TESTBAY_PHASE\" >> \"$TESTBAY_ARTIFACTS/../../../order.log\"\n[ \"$TESTBAY_PHASE\" = setup ] && exit 1\nexit 0\n";
    let f = fx(
        "name: td\nversion: '1'\ngroups:\n  g:\n    tests: [keep, drop]\n",
        &[
            ("keep", "setup: [bash, keep.sh]\nteardown: [bash, keep.sh]\nalways_teardown: true\nstop_suite_on_fail: false\n", body),
            ("drop", "setup: [bash, drop.sh]\nteardown: [bash, drop.sh]\nstop_suite_on_fail: false\n", body),
        ],
    );
    let (id, _) = f.run(f.req()).await;
    assert_eq!(f.order(&id), ["keep setup", "keep teardown", "drop setup"]);
    let keep = f.result(&id, "keep");
    assert_eq!(keep.result.as_deref(), Some(FAILED));
    assert!(keep.message.unwrap().starts_with("setup:"));
    assert!(keep.main_ms.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_teardown_fails_a_passed_task() {
    let f = fx(
        "name: td\nversion: '1'\ngroups:\n  g:\n    tests: [x]\n",
        &[(
            "x",
            "teardown: [bash, x.sh]\n",
            "[ \"$TESTBAY_PHASE\" = teardown ] && exit 4\nexit 0\n",
        )],
    );
    let (id, _) = f.run(f.req()).await;
    let x = f.result(&id, "x");
    assert_eq!(x.result.as_deref(), Some(FAILED));
    assert_eq!(x.message.as_deref(), Some("teardown: exit status 4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_suite_on_fail_end_to_end() {
    let mut tasks = lifecycle_tasks();
    tasks[4] = ("a", "", "exit 1\n");
    let f = fx(LIFECYCLE_PACK, &tasks);
    let (id, status) = f.run(f.req()).await;
    assert_eq!(status, RunStatus::Completed);
    assert_eq!(f.order(&id), ["gs main", "s1 main", "t1 main", "gt main"]);
    assert_eq!(f.result(&id, "a").result.as_deref(), Some(FAILED));
    for t in ["b", "c"] {
        let r = f.result(&id, t);
        assert_eq!(r.result.as_deref(), Some(SKIPPED));
        assert!(r.message.unwrap().contains("stop_suite_on_fail"));
    }
    let run = f.mgr.store().get_run(&id).unwrap();
    assert_eq!(run.counts.failures, 1);
    // Folders are prepared ahead of the tasks; those of the skipped ones are gone again.
    let lane = f.data.join("runs").join(&id).join("local");
    let mut dirs: Vec<String> = std::fs::read_dir(&lane)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs, ["a", "gs", "gt", "s1", "t1"]);
    let params = std::fs::read_to_string(lane.join("a/params.json")).unwrap();
    assert!(params.contains("\"task\": \"a\""), "{params}");
    assert!(lane.join("a/main.log").is_file() && lane.join("a/artifacts").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prereq_blocked_and_valid_duts_skipped_are_stored_with_reasons() {
    let f = fx(
        "name: pr\nversion: '1'\ngroups:\n  g:\n    tests: [a, b, rt]\n",
        &[
            ("a", "stop_suite_on_fail: false\n", "exit 1\n"),
            (
                "b",
                "prereq_tasks: [a]\nstop_suite_on_fail: false\n",
                "exit 0\n",
            ),
            ("rt", "valid_duts: ['RT-*']\n", "exit 0\n"),
        ],
    );
    let mut req = f.req();
    req.duts = vec![DutTarget {
        name: "stb-01".into(),
        model: Some("TP-4000".into()),
        ..Default::default()
    }];
    let (id, _) = f.run(req).await;
    let b = f.result(&id, "b");
    assert_eq!(b.result.as_deref(), Some(BLOCKED));
    assert!(b.message.unwrap().contains("prereq a"));
    assert_eq!(b.failure, Some(true));
    let rt = f.result(&id, "rt");
    assert_eq!(rt.result.as_deref(), Some(SKIPPED));
    assert!(rt.message.unwrap().contains("valid_duts"));
    assert_eq!(rt.failure, Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_req_param_keys_store_could_not_start_and_run_nothing() {
    let f = fx(
        "name: rq\nversion: '1'\ngroups:\n  g:\n    tests: [a]\n",
        &[("a", "req_param_keys: [channel_list]\n", LOG_ORDER)],
    );
    let err = f.mgr.launch(f.req()).unwrap_err();
    let RunError::CouldNotStart { run_id, reason } = err else {
        panic!("{err}")
    };
    assert!(reason.contains("channel_list"), "{reason}");
    let run = f.mgr.store().get_run(&run_id).unwrap();
    assert_eq!(run.status, RunStatus::CouldNotStart);
    assert!(run
        .launch
        .reason
        .unwrap()
        .contains("task a needs channel_list"));
    assert!(f.order(&run_id).is_empty());
    // Given as an override, the run goes.
    let mut req = f.req();
    req.params
        .insert("channel_list".into(), serde_json::json!([101]));
    let (_, status) = f.run(req).await;
    assert_eq!(status, RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_pack_is_refused_with_its_diagnostics() {
    let f = fx(
        "name: bad\nversion: '1'\ngroups:\n  g:\n    tests: [nope]\n",
        &[],
    );
    match f.mgr.launch(f.req()) {
        Err(RunError::Pack(e)) => {
            assert!(e.to_string().contains("nope"), "{e}");
            // Reported against the pack's own files, not the snapshot.
            let root = f.pack.canonicalize().unwrap();
            assert!(
                e.diagnostics.iter().all(|d| d.file.starts_with(&root)),
                "{:?}",
                e.diagnostics
            );
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    let runs = f.data.join("runs");
    assert!(
        !runs.exists() || std::fs::read_dir(&runs).unwrap().next().is_none(),
        "run folder left behind"
    );
    match f.mgr.launch(LaunchRequest {
        pack_dir: f.data.join("no-such-pack").display().to_string(),
        ..Default::default()
    }) {
        Err(RunError::Pack(e)) => assert!(e.to_string().contains("no-such-pack"), "{e}"),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_result_garbage_and_crash_end_to_end() {
    let f = fx(
        "name: mr\nversion: '1'\nparams:\n  valid_result: [Passed, Completed, Skipped]\ngroups:\n  g:\n    tests: [multi, garbage, crash, timeout]\n",
        &[
            (
                "multi",
                "stop_suite_on_fail: false\n",
                "cat > \"$TESTBAY_RESULT\" <<'EOF'\n{\"result\": \"Failed\", \"metadata\": {\"message\": \"1 of 2\"}, \"multi_result\": [{\"name\": \"tune 101\", \"description\": \"d\", \"result\": \"Passed\", \"metadata\": {\"message\": \"ok\"}}, {\"name\": \"tune 102\", \"description\": \"\", \"result\": \"Failed\", \"metadata\": {\"message\": \"no video\", \"frame\": 7}}]}\nEOF\n",
            ),
            ("garbage", "stop_suite_on_fail: false\n", "echo '[1, 2' > \"$TESTBAY_RESULT\"\n"),
            ("crash", "stop_suite_on_fail: false\n", "kill -9 $$\n"),
            ("timeout", "max_runtime: 0.5\nstop_suite_on_fail: false\n", "sleep 30\n"),
        ],
    );
    let (id, _) = f.run(f.req()).await;
    let m = f.result(&id, "multi");
    assert_eq!(m.result.as_deref(), Some(FAILED));
    assert_eq!(m.sub_results.len(), 2);
    assert_eq!(m.sub_results[1].name, "tune 102");
    assert!(m.sub_results[1].failure);
    assert_eq!(m.sub_results[1].metadata.as_ref().unwrap()["frame"], 7);
    let g = f.result(&id, "garbage");
    assert_eq!(g.result.as_deref(), Some(ERRORED));
    assert_eq!(g.raw_result.as_deref(), Some("[1, 2\n"));
    let c = f.result(&id, "crash");
    assert_eq!(c.result.as_deref(), Some(ERRORED));
    assert_eq!(c.signal, Some(9));
    let t = f.result(&id, "timeout");
    assert_eq!(t.result.as_deref(), Some(TIMEOUT));
}

/// Four process_safe tasks with process_limit 2 and one task that is not process_safe:
/// never more than two at once, and the unsafe one alone. Observed from timestamps the
/// tasks write, not from timing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_limit_bounds_concurrency() {
    let body = "d=\"$TESTBAY_ARTIFACTS/../../..\"\necho \"$TESTBAY_TASK start $(date +%s%N)\" >> \"$d/times.log\"\nsleep 0.4\necho \"$TESTBAY_TASK end $(date +%s%N)\" >> \"$d/times.log\"\n";
    let f = fx(
        "name: pl\nversion: '1'\nparams:\n  process_limit: 2\ngroups:\n  g:\n    tests: [p1, p2, p3, u, p4]\n",
        &[
            ("p1", "process_safe: true\n", body),
            ("p2", "process_safe: true\n", body),
            ("p3", "process_safe: true\n", body),
            ("u", "", body),
            ("p4", "process_safe: true\n", body),
        ],
    );
    let (id, _) = f.run(f.req()).await;
    let text = std::fs::read_to_string(f.data.join("runs").join(&id).join("times.log")).unwrap();
    let mut ev: Vec<(u128, i32, String)> = text
        .lines()
        .map(|l| {
            let p: Vec<&str> = l.split(' ').collect();
            (
                p[2].parse().unwrap(),
                if p[1] == "start" { 1 } else { -1 },
                p[0].to_string(),
            )
        })
        .collect();
    // Ends sort before starts at the same instant.
    ev.sort_by_key(|e| (e.0, e.1));
    let mut cur = 0;
    let mut max = 0;
    let mut running: Vec<String> = Vec::new();
    for (_, d, t) in &ev {
        cur += d;
        max = max.max(cur);
        if *d == 1 {
            running.push(t.clone());
            if running.contains(&"u".to_string()) {
                assert_eq!(running.len(), 1, "u ran beside {running:?}");
            }
        } else {
            running.retain(|r| r != t);
        }
    }
    assert_eq!(ev.len(), 10);
    assert_eq!(
        max, 2,
        "process_limit 2 allows two at once, and p1/p2 start together"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_pack_does_not_disturb_a_running_run() {
    let f = fx(
        "name: snap\nversion: '1'\ngroups:\n  g:\n    tests: [first, second]\n",
        &[("first", "", "sleep 0.5\n"), ("second", "", "exit 0\n")],
    );
    let id = f.mgr.launch(f.req()).unwrap();
    std::fs::write(f.pack.join("tasks/second.sh"), "exit 7\n").unwrap();
    assert_eq!(f.mgr.wait(&id).await.unwrap(), RunStatus::Completed);
    assert_eq!(f.result(&id, "second").result.as_deref(), Some(PASSED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_terminates_running_tests_aborts_the_rest_and_runs_teardowns() {
    let f = fx(
        "name: stop\nversion: '1'\nteardown: [cleanup]\ngroups:\n  g:\n    tests: [slow, never]\n",
        &[
            (
                "slow",
                "",
                "echo $$ > \"$TESTBAY_ARTIFACTS/pid\"\nsleep 300\n",
            ),
            ("never", "", LOG_ORDER),
            ("cleanup", "", LOG_ORDER),
        ],
    );
    let mut events = f.mgr.subscribe();
    let id = f.mgr.launch(f.req()).unwrap();
    // Wait until slow runs.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Ok(RunEvent::TaskState {
                task,
                state: TaskState::Running { .. },
                ..
            })) if task == "slow" => break,
            Ok(Ok(_)) => {}
            other => panic!("no running event: {other:?}"),
        }
    }
    let pid_file = f
        .data
        .join("runs")
        .join(&id)
        .join("local/slow/artifacts/pid");
    for _ in 0..500 {
        if std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let view = f.mgr.view(&id).unwrap();
    assert_eq!(view.status, RunStatus::Running);
    assert!(matches!(
        view.lanes[0].test[0].state,
        TaskState::Running {
            phase: Phase::Main,
            waiting: None
        }
    ));
    match &view.lanes[0].test[1].state {
        TaskState::Queued { reason } => assert!(reason.contains("not process_safe"), "{reason}"),
        s => panic!("{s:?}"),
    }
    assert!(view.progress.eta_ms.unwrap() > 0);
    f.mgr.stop(&id).unwrap();
    assert_eq!(f.mgr.wait(&id).await.unwrap(), RunStatus::Stopped);
    let slow = f.result(&id, "slow");
    assert_eq!(slow.result.as_deref(), Some(ABORTED));
    assert_eq!(f.result(&id, "never").result.as_deref(), Some(ABORTED));
    // A graceful stop still runs the global teardown.
    assert_eq!(f.result(&id, "cleanup").result.as_deref(), Some(PASSED));
    assert_eq!(f.order(&id), ["cleanup main"]);
    let pid: i32 =
        std::fs::read_to_string(PathBuf::from(slow.paths.artifacts_dir.unwrap()).join("pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}/cmdline")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            s.contains(") Z")
        }
    );
    let run = f.mgr.store().get_run(&id).unwrap();
    assert_eq!(run.status, RunStatus::Stopped);
    // The tasks the stop aborted are aborted, not failed.
    assert_eq!(run.verdict, Some(RunVerdict::Stopped));
    assert_eq!((run.counts.aborted, run.counts.failures), (2, 0));
    let view = f.mgr.view(&id).unwrap();
    assert_eq!(view.verdict, Some(RunVerdict::Stopped));
    assert_eq!((view.progress.aborted, view.progress.failures), (2, 0));
    assert!(f
        .tasks(&id)
        .iter()
        .all(|t| t.state == StoredTaskState::Done));
    assert!(matches!(f.mgr.stop(&id), Err(RunError::NotRunning(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_tell_the_whole_story() {
    let f = fx(
        "name: ev\nversion: '1'\ngroups:\n  g:\n    tests: [talk]\n",
        &[(
            "talk",
            "est_task_time: 2\n",
            "echo line one\necho line two\n",
        )],
    );
    let mut rx = f.mgr.subscribe();
    let (id, _) = f.run(f.req()).await;
    let mut got = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        assert_eq!(ev.run_id(), id);
        got.push(ev);
    }
    let statuses: Vec<RunStatus> = got
        .iter()
        .filter_map(|e| match e {
            RunEvent::RunStatus { status, .. } => Some(*status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, [RunStatus::Running, RunStatus::Completed]);
    let lines: Vec<&str> = got
        .iter()
        .filter_map(|e| match e {
            RunEvent::Log { lines, .. } => Some(lines.iter().map(String::as_str)),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(lines, ["line one", "line two"]);
    assert!(got.iter().any(|e| matches!(e, RunEvent::TaskState { state: TaskState::Done { result, .. }, .. } if result == PASSED)));
    let last_progress = got
        .iter()
        .rev()
        .find_map(|e| match e {
            RunEvent::Progress { progress, .. } => Some(progress.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!((last_progress.done, last_progress.total), (1, 1));
    // Events serialise with a type tag for the UI.
    let json = serde_json::to_value(&got[0]).unwrap();
    assert_eq!(json["type"], "run_status");
}

/// A broker that is busy once per task, then grants; and refuses `power_switch`.
struct FlakyBroker {
    seen: Mutex<Vec<String>>,
    released: Mutex<Vec<usize>>,
}

impl ResourceBroker for FlakyBroker {
    fn acquire(&self, needs: &TaskNeeds<'_>) -> Grant {
        if needs.exclusive.iter().any(|r| r == "power_switch") {
            return Grant::Unavailable("power_switch is not in this lab".into());
        }
        let mut seen = self.seen.lock().unwrap();
        if !seen.contains(&needs.task.to_string()) {
            seen.push(needs.task.to_string());
            return Grant::Busy {
                until: needs.now + 300,
                reason: "ir_blaster held by another run".into(),
            };
        }
        AlwaysGrant.acquire(needs)
    }
    fn release(&self, _run_id: &str, item: usize, _holdings: &[Holding]) {
        self.released.lock().unwrap().push(item);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_busy_delays_and_unavailable_errors() {
    let broker = Arc::new(FlakyBroker {
        seen: Mutex::new(Vec::new()),
        released: Mutex::new(Vec::new()),
    });
    let f = fx_with(
        "name: br\nversion: '1'\ngroups:\n  g:\n    tests: [ir, power]\n",
        &[
            (
                "ir",
                "exclusive_resources: [ir_blaster]\nresource_configs: {ir_blaster: {codeset: nec}}\nstop_suite_on_fail: false\n",
                "exit 0\n",
            ),
            ("power", "exclusive_resources: [power_switch]\n", "exit 0\n"),
        ],
        broker.clone(),
    );
    let mut rx = f.mgr.subscribe();
    let (id, _) = f.run(f.req()).await;
    let ir = f.result(&id, "ir");
    assert_eq!(ir.result.as_deref(), Some(PASSED));
    let params: Value = serde_json::from_slice(
        &std::fs::read(PathBuf::from(ir.paths.task_dir.unwrap()).join("params.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(params["reservations"][0]["resource"], "ir_blaster");
    assert_eq!(params["reservations"][0]["config"]["codeset"], "nec");
    let power = f.result(&id, "power");
    assert_eq!(power.result.as_deref(), Some(ERRORED));
    assert!(power.message.unwrap().contains("not in this lab"));
    assert_eq!(*broker.released.lock().unwrap(), vec![0]);
    let mut waited = false;
    let mut statuses = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            RunEvent::TaskState {
                state: TaskState::Waiting { reason },
                ..
            } => {
                assert!(reason.contains("ir_blaster held"));
                waited = true;
            }
            RunEvent::RunStatus { status, reason, .. } => {
                if status == RunStatus::Stalled {
                    assert!(
                        reason.as_deref().unwrap().contains("ir: resources busy"),
                        "{reason:?}"
                    );
                }
                statuses.push(status);
            }
            _ => {}
        }
    }
    assert!(waited, "no waiting event");
    // Only the delayed task left and nothing running: stalled, then running again.
    assert_eq!(
        statuses,
        [
            RunStatus::Running,
            RunStatus::Stalled,
            RunStatus::Running,
            RunStatus::Completed
        ]
    );
    let run = f.mgr.store().get_run(&id).unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.reason, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_duts_are_lanes_with_their_own_folders() {
    let f = fx(
        "name: lanes\nversion: '1'\nsetup: [prep]\ngroups:\n  g:\n    tests: [a, b]\n",
        &[
            ("prep", "", "exit 0\n"),
            ("a", "", "exit 0\n"),
            ("b", "", "exit 0\n"),
        ],
    );
    let mut req = f.req();
    req.duts = ["stb-01", "stb-02"]
        .iter()
        .map(|n| DutTarget {
            name: n.to_string(),
            ..Default::default()
        })
        .collect();
    req.coverage_mode = Some(testbay_engine::pack::CoverageMode::Split);
    let (id, status) = f.run(req).await;
    assert_eq!(status, RunStatus::Completed);
    let tasks = f.tasks(&id);
    assert_eq!(tasks.iter().filter(|t| t.task == "prep").count(), 2);
    assert_eq!(
        tasks.iter().filter(|t| t.task == "a").count(),
        1,
        "split: once"
    );
    for t in &tasks {
        let lane = t.lane.clone().unwrap();
        assert!(t
            .paths
            .task_dir
            .as_ref()
            .unwrap()
            .contains(&format!("/{lane}/")));
    }
    let run = f.mgr.store().get_run(&id).unwrap();
    assert_eq!(run.coverage_mode, "split");
}

/// Reports of a finished run: JUnit counts, the results.yaml tree (also written beside the
/// logs), the JSON export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_of_a_finished_run() {
    use testbay_engine::report::{render, results_tree, ReportFormat, RunExport};
    let f = fx(
        "name: rep\nversion: '3'\nsetup: [prep]\ngroups:\n  g:\n    tests: [ok, bad, multi, skip]\n",
        &[
            ("prep", "", "exit 0\n"),
            ("ok", "", "exit 0\n"),
            ("bad", "stop_suite_on_fail: false\n", "echo 'x < y & z'; exit 2\n"),
            (
                "multi",
                "stop_suite_on_fail: false\n",
                "echo '{\"result\": \"Passed\", \"multi_result\": [{\"name\": \"s1\", \"result\": \"Passed\"}, {\"name\": \"s2\", \"result\": \"Errored\", \"metadata\": {\"message\": \"boom <1>\"}}]}' > \"$TESTBAY_RESULT\"\n",
            ),
            ("skip", "valid_ats: [rack-z]\n", "exit 0\n"),
        ],
    );
    let mut req = f.req();
    req.ats = Some("rack-a".into());
    let (id, _) = f.run(req).await;
    let run = f.mgr.store().get_run(&id).unwrap();
    let tasks = f.tasks(&id);

    let xml = render(ReportFormat::Junit, &run, &tasks);
    // 5 tasks + 2 sub-results; bad is a failure, s2 an error, skip skipped.
    assert!(
        xml.contains("tests=\"7\" failures=\"1\" errors=\"1\" skipped=\"1\""),
        "{xml}"
    );
    assert!(xml.contains("<testsuite name=\"local.global\""));
    assert!(xml.contains("<testsuite name=\"local.g\""));
    assert!(xml.contains("boom &lt;1&gt;"));
    assert!(xml.contains("main log: "));

    let tree = results_tree(&run, &tasks);
    let suite = &tree["testsuite"];
    assert_eq!(suite["name"], "rep");
    assert_eq!(suite["summary"]["failures"], 1, "task-level: only bad");
    let multi = suite["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "multi")
        .unwrap();
    assert_eq!(multi["sections"][1]["name"], "s2");
    assert_eq!(multi["sections"][1]["message"], "boom <1>");

    let on_disk =
        std::fs::read_to_string(f.data.join("runs").join(&id).join("results.yaml")).unwrap();
    let docs = yaml_rust2::YamlLoader::load_from_str(&on_disk).unwrap();
    assert_eq!(docs[0]["testsuite"]["run_id"].as_str(), Some(id.as_str()));
    assert_eq!(
        docs[0]["testsuite"]["tasks"][3]["sections"][0]["result"].as_str(),
        Some("Passed")
    );
    assert_eq!(render(ReportFormat::Yaml, &run, &tasks), on_disk);

    let export: RunExport =
        serde_json::from_str(&render(ReportFormat::Json, &run, &tasks)).unwrap();
    assert_eq!(export.run.id, id);
    assert_eq!(export.tasks, tasks);
}

/// 200 MB of output through a whole run with a subscriber that never reads: the log is
/// capped at its default, memory stays flat, the result is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flood_through_a_run_keeps_memory_flat() {
    let f = fx(
        "name: flood\nversion: '1'\ngroups:\n  g:\n    tests: [flood]\n",
        &[(
            "flood",
            "",
            "yes 'flooding the console with forty bytes..' | head -c 200000000\n",
        )],
    );
    let _lazy_subscriber = f.mgr.subscribe();
    let before = rss_kib();
    let (id, status) = f.run(f.req()).await;
    let after = rss_kib();
    assert_eq!(status, RunStatus::Completed);
    let t = f.result(&id, "flood");
    assert_eq!(t.result.as_deref(), Some(PASSED));
    assert!(t.log_truncated);
    let len = std::fs::metadata(t.paths.main_log.unwrap()).unwrap().len();
    assert!(len <= 64 * 1024 * 1024 + 4096, "log is {len} bytes");
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

/// A second stop ends teardowns too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_stop_ends_teardowns_at_once() {
    let f = fx(
        "name: stop2\nversion: '1'\nteardown: [slow_cleanup]\ngroups:\n  g:\n    setup: [gsetup]\n    tests: [slow]\n    teardown: [gclean]\n",
        &[
            ("gsetup", "", "exit 0\n"),
            ("slow", "teardown: [bash, slow.sh]\nalways_teardown: true\n", "echo \"$TESTBAY_PHASE\" >> \"$TESTBAY_ARTIFACTS/../../../phases.log\"\n[ \"$TESTBAY_PHASE\" = main ] && sleep 300\nexit 0\n"),
            ("gclean", "", LOG_ORDER),
            ("slow_cleanup", "", "echo started > \"$TESTBAY_ARTIFACTS/../../../cleanup-started\"\nsleep 300\n"),
        ],
    );
    let id = f.mgr.launch(f.req()).unwrap();
    let runs = f.data.join("runs").join(&id);
    let wait_for = |p: PathBuf| async move {
        for _ in 0..1000 {
            if p.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} never appeared", p.display());
    };
    // The main phase has written its line (the file alone may exist before: `>>` makes it
    // before `echo` writes, and a stop in between leaves it empty).
    let phases_log = runs.join("phases.log");
    for _ in 0..1000 {
        if std::fs::read_to_string(&phases_log).is_ok_and(|t| t.contains("main\n")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f.mgr.stop(&id).unwrap();
    wait_for(runs.join("cleanup-started")).await;
    assert_eq!(f.mgr.view(&id).unwrap().status, RunStatus::Running);
    f.mgr.stop(&id).unwrap();
    assert_eq!(f.mgr.wait(&id).await.unwrap(), RunStatus::Stopped);
    let slow = f.result(&id, "slow");
    assert_eq!(slow.result.as_deref(), Some(ABORTED));
    // always_teardown: its own teardown phase ran after main was terminated.
    let phases = std::fs::read_to_string(runs.join("phases.log")).unwrap();
    assert_eq!(phases.lines().collect::<Vec<_>>(), ["main", "teardown"]);
    assert_eq!(
        f.result(&id, "gclean").result.as_deref(),
        Some(PASSED),
        "entered group's teardown ran"
    );
    assert_eq!(
        f.result(&id, "slow_cleanup").result.as_deref(),
        Some(ABORTED)
    );
    let run = f.mgr.store().get_run(&id).unwrap();
    assert!(run.launch.reason.unwrap().contains("at once"));
}

/// Every event of a run, as a subscriber that keeps up sees them (a lag fails the test).
fn drain(rx: &mut tokio::sync::broadcast::Receiver<RunEvent>) -> Vec<RunEvent> {
    use tokio::sync::broadcast::error::TryRecvError;
    let mut got = Vec::new();
    loop {
        match rx.try_recv() {
            Ok(ev) => got.push(ev),
            Err(TryRecvError::Lagged(n)) => panic!("subscriber lagged: {n} events lost"),
            Err(_) => return got,
        }
    }
}

/// `(name, extra yaml, script)` for `n` quick tests named t0000...
fn quick_tasks(
    n: usize,
    extra: &'static str,
) -> (String, Vec<(String, &'static str, &'static str)>) {
    let names: Vec<String> = (0..n).map(|i| format!("t{i:04}")).collect();
    let tasks = names
        .iter()
        .map(|t| (t.clone(), extra, "exit 0\n"))
        .collect();
    (names.join(", "), tasks)
}

/// Hundreds of quick tasks: progress goes out at most about ten times a second, the last
/// figures always, and a subscriber reading after the run has lost nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_events_are_paced() {
    let (list, tasks) = quick_tasks(400, "process_safe: true\n");
    let tasks: Vec<(&str, &str, &str)> =
        tasks.iter().map(|(a, b, c)| (a.as_str(), *b, *c)).collect();
    let f = fx(
        &format!("name: many\nversion: '1'\nparams:\n  process_limit: 4\ngroups:\n  g:\n    tests: [{list}]\n"),
        &tasks,
    );
    let mut rx = f.mgr.subscribe();
    let t0 = std::time::Instant::now();
    let (id, status) = f.run(f.req()).await;
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(status, RunStatus::Completed);
    let got = drain(&mut rx);
    let progress: Vec<&Progress> = got
        .iter()
        .filter_map(|e| match e {
            RunEvent::Progress { progress, .. } => Some(progress),
            _ => None,
        })
        .collect();
    assert!(
        (progress.len() as f64) <= secs * 10.0 + 3.0,
        "{} progress events in {secs:.2}s",
        progress.len()
    );
    let last = progress.last().unwrap();
    assert_eq!((last.done, last.total), (400, 400));
    let done = got
        .iter()
        .filter(|e| {
            matches!(
                e,
                RunEvent::TaskState {
                    state: TaskState::Done { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(done, 400);
    assert_eq!(f.tasks(&id).len(), 400);
}

/// A queued task's reason follows its lane: while the lane is at the global setup it says
/// which stage the task waits for; when the lane reaches that stage, an event gives the
/// reason it waits for now, and the view agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_reasons_follow_the_lane_stage() {
    let f = fx(
        "name: st\nversion: '1'\nsetup: [gs]\ngroups:\n  g:\n    tests: [a, b]\n",
        &[
            ("gs", "", "sleep 1\n"),
            ("a", "", "sleep 1.5\n"),
            ("b", "", "exit 0\n"),
        ],
    );
    let mut rx = f.mgr.subscribe();
    let id = f.mgr.launch(f.req()).unwrap();
    let queued_reason = |v: &RunView, task: &str| -> String {
        let t = v.lanes[0].test.iter().find(|t| t.task == task).unwrap();
        match &t.state {
            TaskState::Queued { reason } => reason.clone(),
            other => panic!("{task} is {other:?}"),
        }
    };
    let early = f.mgr.view(&id).unwrap();
    assert_eq!(
        queued_reason(&early, "b"),
        "queued until local reaches group g tests"
    );
    // Wait until `a` runs: the lane is at the group's tests.
    loop {
        let v = f.mgr.view(&id).unwrap();
        let a = v.lanes[0].test.iter().find(|t| t.task == "a").unwrap();
        if matches!(a.state, TaskState::Running { .. }) {
            let now = queued_reason(&v, "b");
            assert!(!now.contains("setup") && !now.contains("reaches"), "{now}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(f.mgr.wait(&id).await.unwrap(), RunStatus::Completed);
    let got = drain(&mut rx);
    let b_queued: Vec<&str> = got
        .iter()
        .filter_map(|e| match e {
            RunEvent::TaskState {
                task,
                state: TaskState::Queued { reason },
                ..
            } if task == "b" => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(b_queued.len(), 1, "{b_queued:?}");
    assert!(
        b_queued[0].contains("not process_safe"),
        "b waits for a: {}",
        b_queued[0]
    );
    // The announcement comes after the global setup is done and before b runs.
    let pos = |pred: &dyn Fn(&RunEvent) -> bool| got.iter().position(pred).unwrap();
    let gs_done = pos(
        &|e| matches!(e, RunEvent::TaskState { task, state: TaskState::Done { .. }, .. } if task == "gs"),
    );
    let b_q = pos(
        &|e| matches!(e, RunEvent::TaskState { task, state: TaskState::Queued { .. }, .. } if task == "b"),
    );
    let b_run = pos(
        &|e| matches!(e, RunEvent::TaskState { task, state: TaskState::Running { .. }, .. } if task == "b"),
    );
    assert!(gs_done < b_q && b_q < b_run, "{gs_done} {b_q} {b_run}");
}

/// A task that ends while another still runs has its result committed within moments,
/// though nothing else is written meanwhile: another process reading the database (the
/// CLI, a second console) sees it while the run goes on, and sees the other task running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_is_committed_while_other_tasks_still_run() {
    let f = fx(
        "name: c\nversion: '1'\nparams:\n  process_limit: 2\ngroups:\n  g:\n    tests: [quick, long]\n",
        &[
            // Ends after long has started, so no other write follows it for a while.
            ("quick", "process_safe: true\n", "sleep 0.3\n"),
            (
                "long",
                "process_safe: true\n",
                "touch \"$TESTBAY_ARTIFACTS/../../../long-started\"\nsleep 3\n",
            ),
        ],
    );
    let id = f.mgr.launch(f.req()).unwrap();
    let started = f.data.join("runs").join(&id).join("long-started");
    let other = SqliteStore::open_in(&f.data).unwrap();
    let mut seen = None;
    for _ in 0..250 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let tasks = other.run_tasks(&id).unwrap();
        let quick = tasks.iter().find(|t| t.task == "quick").unwrap();
        let long = tasks.iter().find(|t| t.task == "long").unwrap();
        if started.exists() && quick.result.is_some() {
            seen = Some(long.state);
            // A phase still running moments after its start is on record with its
            // process group (for recovery and operators).
            assert!(long.pgid.is_some(), "long's process group is not on record");
            assert!(
                quick.paths.main_log.is_some(),
                "quick's log is not on record"
            );
            break;
        }
    }
    assert_eq!(
        seen,
        Some(StoredTaskState::Running),
        "quick's result was not visible to another connection while long ran"
    );
    assert_eq!(f.mgr.wait(&id).await.unwrap(), RunStatus::Completed);
}

/// A run's verdict, apart from its status: a completed run with a failed task failed, one
/// without passed; a finished run's elapsed time is its duration, not time since.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_run_with_a_failed_task_has_the_verdict_failed() {
    let f = fx(
        "name: v\nversion: '1'\ngroups:\n  g:\n    tests: [ok, bad]\n  good:\n    tests: [ok]\n",
        &[("ok", "", "exit 0\n"), ("bad", "", "exit 3\n")],
    );
    let mut events = f.mgr.subscribe();
    let (id, status) = f
        .run(LaunchRequest {
            groups: vec!["g".into()],
            ..f.req()
        })
        .await;
    assert_eq!(status, RunStatus::Completed);
    let run = f.mgr.store().get_run(&id).unwrap();
    assert_eq!(run.verdict, Some(RunVerdict::Failed));
    assert_eq!((run.counts.failures, run.counts.aborted), (1, 0));
    let view = f.mgr.view(&id).unwrap();
    assert_eq!(view.verdict, Some(RunVerdict::Failed));
    let ended = view.ended_ms.expect("a finished run has an end");
    assert_eq!(view.progress.elapsed_ms, ended - view.started_ms);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(
        f.mgr.view(&id).unwrap().progress.elapsed_ms,
        view.progress.elapsed_ms,
        "a finished run's elapsed time stands still"
    );
    let verdicts: Vec<_> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            RunEvent::RunStatus {
                status, verdict, ..
            } => Some((status, verdict)),
            _ => None,
        })
        .collect();
    assert_eq!(
        verdicts.last(),
        Some(&(RunStatus::Completed, Some(RunVerdict::Failed)))
    );
    assert!(verdicts[..verdicts.len() - 1]
        .iter()
        .all(|(_, v)| v.is_none()));

    let (id, _) = f
        .run(LaunchRequest {
            groups: vec!["good".into()],
            ..f.req()
        })
        .await;
    assert_eq!(
        f.mgr.store().get_run(&id).unwrap().verdict,
        Some(RunVerdict::Passed)
    );
}

/// A task queued for its prereq is told its new reason once the prereq has ended and it
/// still waits (here for a task that is not process_safe to leave the lane): its view
/// and its events never keep "waiting for prereq" after the prereq passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prereq_wait_is_replaced_by_the_current_reason_when_the_prereq_ends() {
    let f = fx(
        "name: pr\nversion: '1'\nparams:\n  process_limit: 3\ngroups:\n  g:\n    tests: [boot, slow, rec]\n",
        &[
            ("boot", "process_safe: true\n", ""),
            ("slow", "process_safe: true\n", ""),
            ("rec", "prereq_tasks: [boot]\n", "exit 0\n"),
        ],
    );
    let gate = |name: &str| f.root().join(name);
    for (task, go) in [("boot", "go-boot"), ("slow", "go-slow")] {
        std::fs::write(
            f.pack.join(format!("tasks/{task}.sh")),
            format!(
                "while [ ! -e '{}' ]; do sleep 0.02; done\n",
                gate(go).display()
            ),
        )
        .unwrap();
    }
    let mut rx = f.mgr.subscribe();
    let id = f.mgr.launch(f.req()).unwrap();
    let rec = |v: &RunView| -> TaskState {
        v.lanes[0]
            .test
            .iter()
            .find(|t| t.task == "rec")
            .unwrap()
            .state
            .clone()
    };
    let running = |v: &RunView, task: &str| {
        v.lanes[0]
            .test
            .iter()
            .any(|t| t.task == task && matches!(t.state, TaskState::Running { .. }))
    };
    loop {
        let v = f.mgr.view(&id).unwrap();
        if running(&v, "boot") && running(&v, "slow") {
            assert_eq!(
                rec(&v),
                TaskState::Queued {
                    reason: "waiting for prereq boot".into()
                }
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::write(gate("go-boot"), "").unwrap();
    // boot passes; rec still waits, now for the lane to be idle. (Its first reason was
    // told as the lane reached the group's tests.)
    let told = loop {
        match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
            Ok(Ok(RunEvent::TaskState {
                task,
                state: TaskState::Queued { reason },
                ..
            })) if task == "rec" && !reason.contains("prereq") => break reason,
            Ok(Ok(_)) => {}
            other => panic!("rec was never told a new reason: {other:?}"),
        }
    };
    assert!(told.contains("not process_safe"), "{told}");
    assert_eq!(
        rec(&f.mgr.view(&id).unwrap()),
        TaskState::Queued { reason: told }
    );
    std::fs::write(gate("go-slow"), "").unwrap();
    assert_eq!(f.mgr.wait(&id).await.unwrap(), RunStatus::Completed);
    assert_eq!(f.result(&id, "rec").result.as_deref(), Some(PASSED));
}
