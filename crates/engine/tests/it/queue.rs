//! The run queue through the console's API, with real processes and a real SQLite file:
//! a launch whose DUT is busy is queued and starts the moment the DUT frees; priorities,
//! moves and cancelling; `max_queue_time`; the queue across a restart; the dispatch
//! threshold with an injected CPU probe.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use testbay_engine::api::queue::CpuProbe;
use testbay_engine::api::{
    parse_request, ApiError, Console, ConsoleOptions, ConsolePaths, Event, LocalConsole,
    QueueChangeKind, QueueView, Request, Response,
};
use testbay_engine::outcome::RunStatus;

use crate::support::write;

const LAB: &str = "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 1}}\n  - {name: box-2, model: BX-1, location: {rack: rack-x, slot: 2}}\n";

/// Long enough for a loaded machine; a check of promptness uses [`PROMPTLY`].
const PATIENCE: Duration = Duration::from_secs(20);
/// A queued run starts this soon after what held it is released (the release wakes the
/// dispatcher), with room for a loaded machine.
const PROMPTLY: Duration = Duration::from_secs(5);

fn set_up(root: &Path) -> ConsolePaths {
    write(&root.join("lab.yaml"), LAB);
    let dir = root.join("packs/p");
    write(
        &dir.join("pack.yaml"),
        "name: p\nversion: '1'\ngroups:\n  quick:\n    tests: [quick]\n",
    );
    write(
        &dir.join("tasks/quick.yaml"),
        "name: quick\nrun: [bash, quick.sh]\nest_task_time: 1\n",
    );
    write(&dir.join("tasks/quick.sh"), "exit 0\n");
    // The machine running the tests is often busy: only the threshold's own test has one.
    write(
        &root.join("data/settings.yaml"),
        "dispatch_cpu_threshold: 100\n",
    );
    ConsolePaths {
        data_dir: root.join("data"),
        pack_roots: vec![root.join("packs")],
        lab_file: Some(root.join("lab.yaml")),
    }
}

async fn call(c: &LocalConsole, req: serde_json::Value) -> Result<Response, ApiError> {
    c.dispatch(parse_request(req.to_string().as_bytes()).unwrap())
        .await
}

/// Launch `p`/quick on `dut` with extra launch fields; (run id, queued).
async fn launch(c: &LocalConsole, dut: &str, extra: serde_json::Value) -> (String, bool) {
    let mut req = json!({"cmd": "launch", "pack": "p", "groups": ["quick"], "duts": [dut]});
    req.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    match call(c, req).await.unwrap() {
        Response::Launch { run_id, queued, .. } => (run_id, queued),
        other => panic!("{other:?}"),
    }
}

async fn hold(c: &LocalConsole, dut: &str) -> u64 {
    match call(
        c,
        json!({"cmd": "hold", "resource": dut, "by": "alice", "duration_s": 3600}),
    )
    .await
    .unwrap()
    {
        Response::Hold(r) => r.id.0,
        other => panic!("{other:?}"),
    }
}

async fn queue(c: &LocalConsole) -> QueueView {
    match c.dispatch(Request::Queue).await.unwrap() {
        Response::Queue(q) => q,
        other => panic!("{other:?}"),
    }
}

fn ids(q: &QueueView) -> Vec<&str> {
    q.runs.iter().map(|r| r.run_id.as_str()).collect()
}

/// Wait (at most `within`) for the queue event `kind` of `run_id`.
async fn queue_event(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    run_id: &str,
    kind: QueueChangeKind,
    within: Duration,
) -> Result<Option<String>, tokio::time::error::Elapsed> {
    tokio::time::timeout(within, async {
        loop {
            if let Ok(Event::Queue(c)) = events.recv().await {
                if c.run_id == run_id && c.change == kind {
                    return c.reason;
                }
            }
        }
    })
    .await
}

async fn final_status(c: &LocalConsole, run_id: &str) -> RunStatus {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(Response::GetRun(d)) =
                call(c, json!({"cmd": "get_run", "run_id": run_id})).await
            {
                if d.run.status.is_finished() {
                    return d.run.status;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the run ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_dut_released_mid_wait_starts_the_queued_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = LocalConsole::open(set_up(dir.path())).unwrap();
    let mut events = c.subscribe();
    let held = hold(&c, "box-1").await;
    let (run_id, queued) = launch(&c, "box-1", json!({})).await;
    assert!(queued, "box-1 is held: the launch waits in the queue");
    let q = queue(&c).await;
    assert_eq!(ids(&q), [run_id.as_str()]);
    let r = &q.runs[0];
    assert_eq!(r.position, 1);
    assert_eq!(r.duts, ["box-1"]);
    assert!(
        r.waits_for.contains("box-1 is held by operator alice"),
        "{}",
        r.waits_for
    );
    assert!(
        r.est_start_ms >= q.now + 3_500_000,
        "the hold ends in an hour: {r:?}"
    );
    // Not stored as a run yet, and not stalled: still queued after a while.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ids(&queue(&c).await), [run_id.as_str()]);

    call(&c, json!({"cmd": "release", "id": held}))
        .await
        .unwrap();
    queue_event(&mut events, &run_id, QueueChangeKind::Started, PROMPTLY)
        .await
        .expect("the queued run started promptly after the release");
    assert_eq!(final_status(&c, &run_id).await, RunStatus::Completed);
    assert!(queue(&c).await.runs.is_empty());
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_priority_first_moves_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let c = LocalConsole::open(set_up(dir.path())).unwrap();
    let mut events = c.subscribe();
    let held = hold(&c, "box-1").await;
    let (nightly, _) = launch(&c, "box-1", json!({"priority": "low"})).await;
    let (a, _) = launch(&c, "box-1", json!({})).await;
    let (b, _) = launch(&c, "box-1", json!({})).await;
    // Interactive launches are high: ahead of the low one; first come first served.
    assert_eq!(ids(&queue(&c).await), [&a, &b, &nightly]);
    call(&c, json!({"cmd": "move_queued", "run_id": b, "to": "up"}))
        .await
        .unwrap();
    assert_eq!(ids(&queue(&c).await), [&b, &a, &nightly]);
    // A move never crosses priorities.
    call(
        &c,
        json!({"cmd": "move_queued", "run_id": nightly, "to": "up"}),
    )
    .await
    .unwrap();
    assert_eq!(ids(&queue(&c).await), [&b, &a, &nightly]);
    // Raised, the nightly run keeps its arrival: it came first.
    call(
        &c,
        json!({"cmd": "set_queued_priority", "run_id": nightly, "priority": "high"}),
    )
    .await
    .unwrap();
    assert_eq!(ids(&queue(&c).await), [&nightly, &b, &a]);
    call(&c, json!({"cmd": "cancel_queued", "run_id": b}))
        .await
        .unwrap();
    assert_eq!(ids(&queue(&c).await), [&nightly, &a]);
    let Ok(Response::GetRun(d)) = call(&c, json!({"cmd": "get_run", "run_id": b})).await else {
        panic!("a cancelled queued run is stored")
    };
    assert_eq!(d.run.status, RunStatus::Stopped);
    assert!(d.run.reason.clone().unwrap().contains("cancelled"));
    let e = call(&c, json!({"cmd": "cancel_queued", "run_id": b}))
        .await
        .unwrap_err();
    assert!(e.message.contains("not queued"), "{}", e.message);

    // The DUT frees: the first in line starts, the other waits for it.
    call(&c, json!({"cmd": "release", "id": held}))
        .await
        .unwrap();
    queue_event(&mut events, &nightly, QueueChangeKind::Started, PATIENCE)
        .await
        .unwrap();
    assert_eq!(final_status(&c, &nightly).await, RunStatus::Completed);
    queue_event(&mut events, &a, QueueChangeKind::Started, PATIENCE)
        .await
        .unwrap();
    assert_eq!(final_status(&c, &a).await, RunStatus::Completed);
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_queued_past_its_max_queue_time_could_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let c = LocalConsole::open(set_up(dir.path())).unwrap();
    let mut events = c.subscribe();
    hold(&c, "box-1").await;
    let e = call(
        &c,
        json!({"cmd": "launch", "pack": "p", "duts": ["box-1"], "max_queue_time_s": -1}),
    )
    .await
    .unwrap_err();
    assert!(e.message.starts_with("max_queue_time_s:"), "{}", e.message);
    let (run_id, queued) = launch(&c, "box-1", json!({"max_queue_time_s": 0.3})).await;
    assert!(queued);
    assert!(queue(&c).await.runs[0].give_up_ms.is_some());
    let reason = queue_event(&mut events, &run_id, QueueChangeKind::GaveUp, PATIENCE)
        .await
        .unwrap()
        .unwrap();
    assert!(reason.contains("max_queue_time"), "{reason}");
    let Ok(Response::GetRun(d)) = call(&c, json!({"cmd": "get_run", "run_id": run_id})).await
    else {
        panic!()
    };
    assert_eq!(d.run.status, RunStatus::CouldNotStart);
    assert!(d.run.reason.clone().unwrap().contains("box-1"));
    assert!(queue(&c).await.runs.is_empty());
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let paths = set_up(dir.path());
    let (held, run_id) = {
        let c = LocalConsole::open(paths.clone()).unwrap();
        let held = hold(&c, "box-2").await;
        let (run_id, queued) = launch(&c, "box-2", json!({"priority": "low"})).await;
        assert!(queued);
        c.shutdown();
        (held, run_id)
    };
    let c = LocalConsole::open(paths).unwrap();
    let mut events = c.subscribe();
    let q = queue(&c).await;
    assert_eq!(ids(&q), [run_id.as_str()]);
    assert_eq!(q.runs[0].priority, testbay_engine::api::Priority::Low);
    assert!(
        q.runs[0]
            .waits_for
            .contains("box-2 is held by operator alice"),
        "{:?}",
        q.runs[0]
    );
    call(&c, json!({"cmd": "release", "id": held}))
        .await
        .unwrap();
    queue_event(&mut events, &run_id, QueueChangeKind::Started, PATIENCE)
        .await
        .unwrap();
    assert_eq!(final_status(&c, &run_id).await, RunStatus::Completed);
    c.shutdown();
}

/// A CPU probe the test sets.
struct FakeCpu(AtomicU64);

impl CpuProbe for FakeCpu {
    fn busy_percent(&self) -> Option<f64> {
        Some(self.0.load(Ordering::SeqCst) as f64)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_host_holds_queued_runs_back_until_its_cpu_falls() {
    let dir = tempfile::tempdir().unwrap();
    let paths = set_up(dir.path());
    std::fs::create_dir_all(&paths.data_dir).unwrap();
    write(
        &paths.data_dir.join("settings.yaml"),
        "dispatch_cpu_threshold: 50\n",
    );
    let cpu = Arc::new(FakeCpu(AtomicU64::new(95)));
    let c = LocalConsole::open_with(
        paths,
        ConsoleOptions {
            cpu_probe: Some(cpu.clone()),
            dispatch_retry: Duration::from_millis(200),
            ..ConsoleOptions::default()
        },
    )
    .unwrap();
    let mut events = c.subscribe();
    let held = hold(&c, "box-1").await;
    let (run_id, _) = launch(&c, "box-1", json!({})).await;
    call(&c, json!({"cmd": "release", "id": held}))
        .await
        .unwrap();
    // The DUT is free, the host is not: it waits, and says why.
    let why = tokio::time::timeout(PATIENCE, async {
        loop {
            let q = queue(&c).await;
            if let Some(h) = q.held_back {
                return (h, q.runs[0].waits_for.clone());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert!(
        why.0.contains("CPU at 95%") && why.0.contains("dispatch_cpu_threshold 50%"),
        "{why:?}"
    );
    assert!(why.1.contains("dispatch_cpu_threshold"), "{why:?}");
    assert!(
        queue_event(
            &mut events,
            &run_id,
            QueueChangeKind::Started,
            Duration::from_millis(600)
        )
        .await
        .is_err(),
        "started while the host was busy"
    );
    cpu.0.store(10, Ordering::SeqCst);
    queue_event(&mut events, &run_id, QueueChangeKind::Started, PATIENCE)
        .await
        .expect("started at the next try once the CPU fell");
    assert!(queue(&c).await.held_back.is_none());
    assert_eq!(final_status(&c, &run_id).await, RunStatus::Completed);
    c.shutdown();
}

/// The hook health checks use: a DUT kept out of service keeps its queued runs waiting
/// (and says so); back in service, they start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dut_out_of_service_keeps_its_runs_queued() {
    let dir = tempfile::tempdir().unwrap();
    let c = LocalConsole::open(set_up(dir.path())).unwrap();
    let mut events = c.subscribe();
    let bad = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = bad.clone();
    c.queue().set_out_of_service(Arc::new(move |d: &str| {
        d == "box-1" && flag.load(Ordering::SeqCst)
    }));
    let (run_id, queued) = launch(&c, "box-1", json!({})).await;
    assert!(queued, "box-1 is out of service: the launch waits");
    let q = queue(&c).await;
    assert!(
        q.runs[0].waits_for.contains("box-1 is out of service"),
        "{q:?}"
    );
    let (other, queued) = launch(&c, "box-2", json!({})).await;
    assert!(!queued, "box-2 is in service and free");
    assert_eq!(final_status(&c, &other).await, RunStatus::Completed);
    assert_eq!(ids(&queue(&c).await), [run_id.as_str()]);
    bad.store(false, Ordering::SeqCst);
    c.queue().kick();
    queue_event(&mut events, &run_id, QueueChangeKind::Started, PATIENCE)
        .await
        .expect("back in service, the run started");
    assert_eq!(final_status(&c, &run_id).await, RunStatus::Completed);
    c.shutdown();
}

/// A console on virtual time whose rack-x is an agent rack, with agents above 90% CPU
/// passed over (the host's own dispatch threshold out of the way).
fn agent_rack_console(
    dir: &std::path::Path,
    clock: &testbay_engine::clock::ManualClock,
) -> LocalConsole {
    let paths = set_up(dir);
    write(
        &dir.join("lab.yaml"),
        &LAB.replace(
            "{name: rack-x, slots: 4}",
            "{name: rack-x, slots: 4, agent: true}",
        ),
    );
    write(
        &paths.data_dir.join("settings.yaml"),
        "dispatch_cpu_threshold: 100\nagent_cpu_threshold_pct: 90\n",
    );
    LocalConsole::open_with(
        paths,
        ConsoleOptions {
            clock: Arc::new(clock.clone()),
            ..ConsoleOptions::default()
        },
    )
    .unwrap()
}

/// A run whose rack's agent reports CPU above `agent_cpu_threshold_pct` waits in the queue
/// saying why; once the 30 s it was told to wait are up it starts, though the agent, still
/// above the threshold, is passed over again for later runs. On virtual time; the
/// agent is a session on the console's hub, the queue looked at again when an operator
/// takes the agent back (undrains it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waits_for_its_busy_agent_until_its_30_s_are_up() {
    use testbay_engine::agents::wire::AgentMsg;
    use testbay_engine::clock::ManualClock;

    const T0: i64 = 1_795_290_900_000; // 2026-11-21 19:55:00 UTC
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let c = agent_rack_console(dir.path(), &clock);
    let hub = c.agent_hub().expect("a console has an agent hub");
    let agent = hub
        .connect("ctl", vec!["rack-x".into()], "h".into(), "1".into())
        .unwrap();
    let cpu = |c: f64| agent.receive(AgentMsg::Heartbeat { cpu: Some(c) });
    let look_again = || hub.drain("ctl", false).unwrap();
    let mut events = c.subscribe();
    cpu(97.0);

    let (run_id, queued) = launch(&c, "box-1", json!({})).await;
    assert!(queued, "a run for a busy agent waits in the queue");
    let q = queue(&c).await;
    assert_eq!(
        q.runs[0].waits_for,
        "agent ctl busy: CPU 97% > 90%, passed over until 19:55:30Z"
    );

    // 20 s on, still above the threshold: still waiting.
    clock.advance(20_000);
    cpu(96.0);
    look_again();
    assert!(
        queue_event(
            &mut events,
            &run_id,
            QueueChangeKind::Started,
            Duration::from_millis(500)
        )
        .await
        .is_err(),
        "started within its 30 s"
    );
    assert_eq!(ids(&queue(&c).await), [run_id.as_str()]);

    // 30 s on: the agent, still above, is passed over again (for later runs) ...
    clock.advance(10_000);
    cpu(99.0);
    assert!(hub.busy("rack-x").is_some());
    // ... but this run waited its time: it starts.
    look_again();
    queue_event(&mut events, &run_id, QueueChangeKind::Started, PATIENCE)
        .await
        .expect("started once its 30 s were up");
    c.shutdown();
}

/// A run told to wait for its busy agent whose DUT is held meanwhile: once its 30 s are
/// up the agent is no longer why it waits (the hold is), and the dispatcher does not
/// keep waking for a hold whose time has passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_agents_wait_once_up_is_no_longer_a_reason() {
    use testbay_engine::agents::wire::AgentMsg;
    use testbay_engine::clock::ManualClock;

    const T0: i64 = 1_795_290_900_000; // 2026-11-21 19:55:00 UTC
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let c = agent_rack_console(dir.path(), &clock);
    let hub = c.agent_hub().expect("a console has an agent hub");
    let agent = hub
        .connect("ctl", vec!["rack-x".into()], "h".into(), "1".into())
        .unwrap();
    agent.receive(AgentMsg::Heartbeat { cpu: Some(97.0) });

    let (run_id, queued) = launch(&c, "box-1", json!({})).await;
    assert!(queued);
    assert!(queue(&c).await.runs[0].waits_for.contains("agent ctl busy"));
    hold(&c, "box-1").await;

    clock.advance(30_000);
    agent.receive(AgentMsg::Heartbeat { cpu: Some(99.0) });
    hub.drain("ctl", false).unwrap();
    let q = queue(&c).await;
    assert_eq!(ids(&q), [run_id.as_str()]);
    assert!(
        !q.runs[0].waits_for.contains("agent"),
        "a stale agent reason: {}",
        q.runs[0].waits_for
    );
    assert!(
        q.runs[0].waits_for.contains("box-1"),
        "{}",
        q.runs[0].waits_for
    );
    c.shutdown();
}
