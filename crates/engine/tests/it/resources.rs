//! Runs that use the lab's reservation book: resource modes through real runs (real child
//! processes, a real SQLite file), the `custom_*` ordering program, the delay queue's
//! limits on a virtual clock, and a console launch that shows its reservations.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use testbay_engine::api::{
    parse_request, Console, ConsolePaths, LocalConsole, Response, SlotState,
};
use testbay_engine::clock::{Clock, SystemClock};
use testbay_engine::lab::{self};
use testbay_engine::outcome::{RunStatus, ERRORED, PASSED};
use testbay_engine::pack::ResourceMode;
use testbay_engine::plan::{BusyOutcome, DutTarget, ItemState, Plan, PlanInput};
use testbay_engine::reserve::{BookConfig, BrokerConfig, LiveBook};
use testbay_engine::run::{Grant, LaunchRequest, ResourceBroker, RunError, TaskNeeds};
use testbay_engine::store::SqliteStore;

use crate::support::{write, write_task, Bed, T0};

const LAB: &str = "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 3}}\nresources:\n  - {name: ir, mode: exclusive, config: {protocol: rc6}}\n  - {name: pwr, mode: exclusive, config: {outlets: 8}}\n  - {name: stream, mode: shared, capacity: 2, config: {profile: sd}}\n";

/// Copies the task's params file into its artifacts and appends its name to `order.log`
/// in the data dir.
const KEEP_PARAMS: &str = "cp \"$TESTBAY_PARAMS\" \"$TESTBAY_ARTIFACTS/params.json\"\necho \"$TESTBAY_TASK\" >> \"$TESTBAY_ARTIFACTS/../../../../../order.log\"\n";

/// `tasks`: (name, extra task yaml). Every task runs [`KEEP_PARAMS`].
fn write_pack(dir: &Path, pack_yaml: &str, tasks: &[(&str, &str)]) {
    write(&dir.join("pack.yaml"), pack_yaml);
    for (name, extra) in tasks {
        write_task(
            dir,
            name,
            &format!("est_task_time: 1\n{extra}"),
            KEEP_PARAMS,
        );
    }
}

/// A bed reserving through the book of [`LAB`], on the system clock.
fn fx() -> Bed {
    Bed::builder().lab(LAB).build()
}

/// What this module asks of its bed.
trait ResourcesBed {
    fn req(&self, mode: ResourceMode) -> LaunchRequest;
    async fn run(&self, req: LaunchRequest) -> String;
    fn holdings(&self, run: &str, task: &str) -> Vec<(String, Value)>;
    fn order(&self) -> Vec<String>;
    fn all_given_back(&self);
}

impl ResourcesBed for Bed {
    fn req(&self, mode: ResourceMode) -> LaunchRequest {
        LaunchRequest {
            pack_dir: self.pack.display().to_string(),
            duts: vec![DutTarget {
                name: "box-1".into(),
                model: Some("BX-1".into()),
                rack: Some("rack-x".into()),
                slot: Some(3),
            }],
            resource_mode: Some(mode),
            ..Default::default()
        }
    }

    async fn run(&self, req: LaunchRequest) -> String {
        let id = self.mgr.launch(req).unwrap();
        assert_eq!(self.mgr.wait(&id).await.unwrap(), RunStatus::Completed);
        for t in self.store.run_tasks(&id).unwrap() {
            assert_eq!(t.result.as_deref(), Some(PASSED), "{t:?}");
        }
        id
    }

    /// The `reservations` of a task's params file, by resource.
    fn holdings(&self, run: &str, task: &str) -> Vec<(String, Value)> {
        let p = self
            .data
            .join("runs")
            .join(run)
            .join("box-1")
            .join(task)
            .join("artifacts/params.json");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        v["reservations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["resource"].as_str().unwrap().to_string(), h.clone()))
            .collect()
    }

    fn order(&self) -> Vec<String> {
        std::fs::read_to_string(self.data.join("order.log"))
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect()
    }

    /// Nothing is left booked once the runs ended.
    fn all_given_back(&self) {
        self.book().flush();
        let left = self.book().reservations();
        assert!(left.is_empty(), "{left:#?}");
    }
}

fn id_of(h: &[(String, Value)], resource: &str) -> u64 {
    let (_, v) = h
        .iter()
        .find(|(r, _)| r == resource)
        .unwrap_or_else(|| panic!("no {resource} in {h:?}"));
    v["reservation_id"].as_str().unwrap().parse().unwrap()
}

/// `a` needs ir and a share of stream, `b` needs ir and pwr.
const MODES_PACK: &str = "name: modes\nversion: '1'\ngroups:\n  g:\n    tests: [a, b]\n";
const MODES_TASKS: &[(&str, &str)] = &[
    (
        "a",
        "exclusive_resources: [ir]\nshared_resources: [stream]\n",
    ),
    ("b", "exclusive_resources: [ir, pwr]\n"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_resource_mode_reserves_as_it_says_and_tasks_see_their_reservations() {
    let f = fx();
    write_pack(&f.pack, MODES_PACK, MODES_TASKS);

    // per_task_separate: each task reserves its own set after the lane took its DUT.
    let run = f.run(f.req(ResourceMode::PerTaskSeparate)).await;
    let (a, b) = (f.holdings(&run, "a"), f.holdings(&run, "b"));
    let names = |h: &[(String, Value)]| h.iter().map(|(r, _)| r.clone()).collect::<Vec<_>>();
    assert_eq!(names(&a), ["box-1", "ir", "stream"]);
    assert_eq!(names(&b), ["box-1", "ir", "pwr"]);
    // Each reservation comes with its resource's configuration and its end.
    assert_eq!(a[1].1["config"]["protocol"], "rc6");
    assert_eq!(a[1].1["exclusive"], true);
    assert_eq!(a[2].1["config"]["profile"], "sd");
    assert_eq!(a[2].1["exclusive"], false);
    assert_eq!(b[2].1["config"]["outlets"], 8);
    assert!(a[1].1["until_ms"].as_i64().unwrap() > 0);
    assert_eq!(a[0].1["config"]["slot"], 3, "the DUT's reservation: {a:?}");
    assert_eq!(
        id_of(&a, "box-1"),
        id_of(&b, "box-1"),
        "one DUT hold per lane"
    );
    assert_ne!(
        id_of(&a, "ir"),
        id_of(&b, "ir"),
        "separate: ir reserved per task"
    );
    assert!(
        id_of(&b, "pwr") > id_of(&a, "box-1"),
        "reserved when b started"
    );
    f.all_given_back();

    // per_task_combine: ir, common to a and b, is held once.
    let run = f.run(f.req(ResourceMode::PerTaskCombine)).await;
    let (a, b) = (f.holdings(&run, "a"), f.holdings(&run, "b"));
    assert_eq!(id_of(&a, "ir"), id_of(&b, "ir"), "combine: ir held once");
    assert!(id_of(&b, "pwr") > id_of(&a, "box-1"));
    f.all_given_back();

    // all: everything the lane needs is booked before its first task takes the DUT.
    let run = f.run(f.req(ResourceMode::All)).await;
    let (a, b) = (f.holdings(&run, "a"), f.holdings(&run, "b"));
    assert_eq!(id_of(&a, "ir"), id_of(&b, "ir"));
    for r in ["ir", "stream"] {
        assert!(
            id_of(&a, r) < id_of(&a, "box-1"),
            "{r} booked up front: {a:?}"
        );
    }
    assert!(
        id_of(&b, "pwr") < id_of(&a, "box-1"),
        "b's pwr was booked before a started: {b:?}"
    );
    f.all_given_back();
    f.book().shutdown();
}

const CUSTOM_PACK: &str = "name: custom\nversion: '1'\nscheduler: [python3, order.py]\ngroups:\n  g:\n    tests: [a, b, c]\n";
const ABC: &[(&str, &str)] = &[
    ("a", "priority: 1\nexclusive_resources: [ir]\n"),
    ("b", "priority: 2\nexclusive_resources: [ir]\n"),
    ("c", "priority: 3\nexclusive_resources: [ir]\n"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_mode_runs_in_the_schedulers_order_with_its_base_modes_resources() {
    let f = fx();
    write_pack(&f.pack, CUSTOM_PACK, ABC);
    write(
        &f.pack.join("order.py"),
        "import json, sys\nq = json.load(sys.stdin)\nassert q['resource_mode'] == 'custom_combine', q\nprint(json.dumps([e['id'] for e in reversed(q['queue'])]))\n",
    );
    // Without the scheduler, priorities give a, b, c.
    f.run(f.req(ResourceMode::PerTaskCombine)).await;
    assert_eq!(f.order(), ["a", "b", "c"]);
    std::fs::remove_file(f.data.join("order.log")).unwrap();

    let run = f.run(f.req(ResourceMode::CustomCombine)).await;
    assert_eq!(f.order(), ["c", "b", "a"]);
    // As per_task_combine: ir held once across the three.
    let ids: Vec<u64> = ["a", "b", "c"]
        .iter()
        .map(|t| id_of(&f.holdings(&run, t), "ir"))
        .collect();
    assert!(ids.iter().all(|&i| i == ids[0]), "{ids:?}");
    let stored = f.store.get_run(&run).unwrap();
    assert_eq!(stored.resource_mode, "custom_combine");
    f.all_given_back();
    f.book().shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_scheduler_means_could_not_start_with_its_words() {
    let f = fx();
    write_pack(&f.pack, CUSTOM_PACK, ABC);
    write(
        &f.pack.join("order.py"),
        "import sys\nsys.stderr.write('cannot rank: ir calendar missing\\n')\nsys.exit(4)\n",
    );
    let err = f.mgr.launch(f.req(ResourceMode::CustomAll)).unwrap_err();
    let RunError::CouldNotStart { run_id, reason } = err else {
        panic!("{err}")
    };
    assert!(
        reason.contains("cannot rank: ir calendar missing"),
        "{reason}"
    );
    assert!(reason.contains("python3 order.py"), "{reason}");
    let stored = f.store.get_run(&run_id).unwrap();
    assert_eq!(stored.status, RunStatus::CouldNotStart);
    assert_eq!(stored.reason.as_deref(), Some(reason.as_str()));
    assert!(f.store.run_tasks(&run_id).unwrap().is_empty());
    assert!(f.order().is_empty(), "nothing ran");
    f.all_given_back();
    f.book().shutdown();
}

// ---- the delay queue on a virtual clock: plan + BookBroker + a real SQLite book ----

#[test]
fn busy_resources_go_to_the_delay_queue_and_give_up_at_their_limits() {
    let f = Bed::builder()
        .lab(LAB)
        .manual_clock(T0)
        .broker_config(BrokerConfig {
            renew_thread: false,
            ..BrokerConfig::default()
        })
        .build();
    let (clock, book, broker) = (f.clock(), f.book(), f.broker());
    let pack_dir = &f.pack;
    write_pack(
        pack_dir,
        "name: delay\nversion: '1'\ngroups:\n  g:\n    tests: [retry, wait]\n",
        &[
            (
                "retry",
                "process_safe: true\nexclusive_resources: [ir]\nmax_resource_retry: 2\n",
            ),
            (
                "wait",
                "process_safe: true\nexclusive_resources: [pwr]\nmax_resource_retry: 100\nmax_resource_wait: 60\n",
            ),
        ],
    );
    let pack = testbay_engine::pack::load(pack_dir).unwrap();
    let mut params = pack.def.params.clone();
    params.resource_mode = ResourceMode::PerTaskSeparate;
    let mut plan = Plan::build(PlanInput {
        pack: &pack,
        groups: vec![],
        duts: vec![],
        ats: None,
        params,
        test_order: None,
    })
    .unwrap();
    let run = "r-delay";
    broker
        .begin_run(run, ResourceMode::PerTaskSeparate, &[])
        .unwrap();
    // Operators hold both resources: ir for 5 minutes, pwr for 30 seconds.
    let mut held_until = [
        book.hold("ir", "alice", None, 300_000, false).unwrap().end,
        book.hold("pwr", "bob", None, 30_000, false).unwrap().end,
    ];

    let mut log: Vec<(String, String)> = Vec::new();
    let mut rounds = 0;
    while !plan.is_done() {
        rounds += 1;
        assert!(rounds < 50, "no progress: {log:?}");
        let now = clock.now_ms();
        loop {
            let starts = plan.next_starts(now);
            if starts.is_empty() {
                break;
            }
            for st in &starts {
                let item = plan.item(st.item).clone();
                let needs = TaskNeeds::from_def(run, st.item, &item.def, "local", None, None, now);
                match broker.acquire(&needs) {
                    Grant::Busy { until, reason } => {
                        match plan.resource_busy(st.item, now, until, &reason) {
                            BusyOutcome::Delayed { until: u } => {
                                assert_eq!(u, until);
                                assert!(matches!(plan.state(st.item), ItemState::Delayed { .. }));
                                log.push((
                                    item.task.clone(),
                                    format!("delayed {}", (u - T0) / 1000),
                                ));
                            }
                            BusyOutcome::GaveUp { message } => {
                                log.push((item.task.clone(), message));
                            }
                        }
                    }
                    other => panic!("{} got {other:?}", item.task),
                }
            }
        }
        plan.drain_settled();
        let Some(wake) = plan.next_wake() else {
            break;
        };
        clock.set(wake.max(clock.now_ms()));
        // Whoever held a resource takes it again right as it frees up.
        book.with(|b| b.tick());
        for (i, (res, who, ms)) in [("ir", "alice", 300_000), ("pwr", "bob", 40_000)]
            .into_iter()
            .enumerate()
        {
            if held_until[i] <= clock.now_ms() {
                held_until[i] = book.hold(res, who, None, ms, false).unwrap().end;
            }
        }
    }
    let tasks: Vec<&str> = log.iter().map(|(t, _)| t.as_str()).collect();
    // wait: busy for 30 s, then 40 s more: 70 s > max_resource_wait. retry: busy at 0,
    // 300 s and 600 s: the third time is one more than max_resource_retry.
    assert_eq!(
        tasks,
        ["retry", "wait", "wait", "retry", "retry"],
        "{log:#?}"
    );
    assert_eq!(log[0].1, "delayed 300");
    assert_eq!(log[1].1, "delayed 30");
    assert_eq!(log[3].1, "delayed 600");
    let given_up = |task: &str| {
        let id = plan.items().iter().position(|i| i.task == task).unwrap();
        match plan.state(id) {
            ItemState::Done {
                result, message, ..
            } => (result.clone(), message.clone()),
            s => panic!("{task}: {s:?}"),
        }
    };
    let (result, message) = given_up("retry");
    assert_eq!(result, ERRORED);
    assert!(message.contains("ir held by operator alice"), "{message}");
    assert!(message.contains("gave up after 2 retries"), "{message}");
    let (result, message) = given_up("wait");
    assert_eq!(result, ERRORED);
    assert!(message.contains("pwr held by operator bob"), "{message}");
    assert!(message.contains("max_resource_wait 60s"), "{message}");
    // The delay queue never booked anything for the run.
    assert!(broker.reservations_of(run).is_empty());
    broker.end_run(run);
    book.shutdown();
}

// ---- through the console ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_launch_shows_its_reservations_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("lab.yaml"), LAB);
    let go = root.join("go");
    let pack = root.join("packs/held");
    write(
        &pack.join("pack.yaml"),
        "name: held\nversion: '1'\ngroups:\n  g:\n    tests: [hold]\n",
    );
    write(
        &pack.join("tasks/hold.yaml"),
        "name: hold\nrun: [bash, hold.sh]\nest_task_time: 5\nexclusive_resources: [ir]\nshared_resources: [stream]\n",
    );
    write(
        &pack.join("tasks/hold.sh"),
        &format!(
            "touch {started}\nfor i in $(seq 300); do [ -e {go} ] && exit 0; sleep 0.1; done\nexit 1\n",
            started = root.join("started").display(),
            go = go.display()
        ),
    );
    let console = LocalConsole::open(ConsolePaths {
        data_dir: root.join("data"),
        pack_roots: vec![root.join("packs")],
        lab_file: Some(root.join("lab.yaml")),
    })
    .unwrap();
    let call = |json: String| {
        let c = &console;
        async move { c.dispatch(parse_request(json.as_bytes()).unwrap()).await }
    };
    let Response::Launch { run_id, .. } = call(
        r#"{"cmd":"launch","pack":"held","duts":["box-1"],"resource_mode":"per_task_separate"}"#
            .into(),
    )
    .await
    .unwrap() else {
        panic!()
    };
    for _ in 0..300 {
        if root.join("started").exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(root.join("started").exists(), "the task never started");

    let Response::GetLab(lab) = call(r#"{"cmd":"get_lab"}"#.into()).await.unwrap() else {
        panic!()
    };
    let slot = lab.racks[0]
        .slots
        .iter()
        .find(|s| s.dut.as_deref() == Some("box-1"))
        .unwrap();
    assert_eq!(slot.state, SlotState::InUse, "{slot:?}");
    assert_eq!(
        slot.holder.as_deref(),
        Some(format!("run {run_id}/box-1").as_str())
    );
    let in_use = |name: &str| {
        lab.resources
            .iter()
            .find(|r| r.name == name)
            .unwrap()
            .in_use
    };
    assert_eq!((in_use("ir"), in_use("stream"), in_use("pwr")), (1, 1, 0));

    let Response::Reservations(res) = call(r#"{"cmd":"reservations"}"#.into()).await.unwrap()
    else {
        panic!()
    };
    let holders = |name: &str| -> Vec<String> {
        res.resources
            .iter()
            .find(|h| h.resource == name)
            .unwrap()
            .holders
            .iter()
            .map(|v| v.holder.to_string())
            .collect()
    };
    assert_eq!(holders("ir"), [format!("run {run_id}/box-1/hold")]);
    assert_eq!(holders("box-1"), [format!("run {run_id}/box-1")]);

    // An operator cannot take the DUT meanwhile; once the run ends the lab is free.
    let err = call(r#"{"cmd":"hold","resource":"box-1","by":"carol","duration_s":60}"#.into())
        .await
        .unwrap_err();
    assert!(err.message.contains("box-1"), "{err:?}");
    write(&go, "");
    let mut status = RunStatus::Running;
    for _ in 0..300 {
        let Response::GetRun(d) = call(format!(r#"{{"cmd":"get_run","run_id":"{run_id}"}}"#))
            .await
            .unwrap()
        else {
            panic!()
        };
        status = d.run.status;
        if status.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, RunStatus::Completed);
    let Response::Reservations(res) = call(r#"{"cmd":"reservations"}"#.into()).await.unwrap()
    else {
        panic!()
    };
    assert!(
        res.resources.iter().all(|h| h.holders.is_empty()),
        "{:#?}",
        res.resources
    );
}

/// A console that does not own the book (another process does) refuses launches that
/// need a DUT or a lab resource, naming the owner, and still runs those that need nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_without_the_book_refuses_runs_it_cannot_reserve_for() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("lab.yaml"), LAB);
    write_pack(
        &root.join("packs/p"),
        "name: p\nversion: '1'\ngroups:\n  needs:\n    tests: [a]\n  plain:\n    tests: [n]\n",
        &[("a", "exclusive_resources: [ir]\n"), ("n", "")],
    );
    let lab = lab::load(&root.join("lab.yaml")).unwrap();
    let store = SqliteStore::open_in(&root.join("data")).unwrap();
    // The owner: a book opened first (flock conflicts between open files, so within
    // one process too).
    let owner = LiveBook::open(
        &store,
        Arc::new(SystemClock),
        BookConfig::default(),
        lab.book_resources(),
    )
    .unwrap();
    let console = LocalConsole::open(ConsolePaths {
        data_dir: root.join("data"),
        pack_roots: vec![root.join("packs")],
        lab_file: Some(root.join("lab.yaml")),
    })
    .unwrap();
    let call = |json: &str| {
        let req = parse_request(json.as_bytes()).unwrap();
        let c = &console;
        async move { c.dispatch(req).await }
    };
    for launch in [
        r#"{"cmd":"launch","pack":"p","groups":["needs"]}"#,
        r#"{"cmd":"launch","pack":"p","groups":["plain"],"duts":["box-1"]}"#,
    ] {
        let err = call(launch).await.unwrap_err();
        assert_eq!(err.code, testbay_engine::api::ErrorCode::Unavailable);
        assert!(err.message.contains("cannot reserve"), "{err:?}");
        assert!(err.message.contains("is owned by"), "{err:?}");
        assert!(
            err.message
                .contains(&format!("(pid {})", std::process::id())),
            "{err:?}"
        );
    }
    let Response::Launch { run_id, .. } = call(r#"{"cmd":"launch","pack":"p","groups":["plain"]}"#)
        .await
        .unwrap()
    else {
        panic!()
    };
    let mut status = RunStatus::Queued;
    for _ in 0..300 {
        let Response::GetRun(d) = call(&format!(r#"{{"cmd":"get_run","run_id":"{run_id}"}}"#))
            .await
            .unwrap()
        else {
            panic!()
        };
        status = d.run.status;
        if status.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, RunStatus::Completed);
    owner.shutdown();
}
