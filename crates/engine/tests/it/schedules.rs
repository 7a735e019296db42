//! Stored schedules through the console's API, fired by a serving console with real
//! processes: a `loop` with `repeat_count: 3` makes three runs, one after the other;
//! bad schedules are refused naming the field; pause, resume and remove.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use testbay_engine::api::{
    parse_request, ApiError, Console, ConsolePaths, LocalConsole, Response, ScheduleDetail,
};
use testbay_engine::outcome::RunStatus;
use testbay_engine::timefmt::fmt_ms;

use crate::support::write;

const PATIENCE: Duration = Duration::from_secs(30);

fn set_up(root: &Path) -> ConsolePaths {
    write(
        &root.join("lab.yaml"),
        "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 1}}\n",
    );
    let dir = root.join("packs/p");
    write(
        &dir.join("pack.yaml"),
        "name: p\nversion: '1'\ngroups:\n  quick:\n    tests: [quick]\n",
    );
    write(
        &dir.join("tasks/quick.yaml"),
        "name: quick\nrun: [bash, quick.sh]\nest_task_time: 1\n",
    );
    write(&dir.join("tasks/quick.sh"), "sleep 0.2\n");
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

async fn call(c: &Arc<dyn Console>, req: serde_json::Value) -> Result<Response, ApiError> {
    c.dispatch(parse_request(req.to_string().as_bytes()).unwrap())
        .await
}

/// Now as a schedule's local start in UTC.
fn now_local() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    fmt_ms(ms).trim_end_matches('Z').to_string()
}

async fn detail(c: &Arc<dyn Console>, id: &str) -> ScheduleDetail {
    match call(c, json!({"cmd": "get_schedule", "id": id}))
        .await
        .unwrap()
    {
        Response::GetSchedule(d) => *d,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_with_repeat_count_3_makes_three_runs() {
    let dir = tempfile::tempdir().unwrap();
    let c = LocalConsole::open(set_up(dir.path())).unwrap().shared();
    let def = json!({
        "name": "soak", "pack": "p", "groups": ["quick"], "duts": ["box-1"],
        "when": {"type": "loop", "start": now_local(), "repeat_count": 3, "time_zone": "UTC"}
    });
    let mut req = def.clone();
    req["cmd"] = json!("add_schedule");
    let Response::AddSchedule { id } = call(&c, req).await.unwrap() else {
        panic!()
    };
    let d = tokio::time::timeout(PATIENCE, async {
        loop {
            let d = detail(&c, &id).await;
            if d.schedule.fired == 3 && d.schedule.next_firing_ms.is_none() {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the loop fired three times");
    assert_eq!(d.schedule.run_ids.len(), 3, "{d:?}");
    assert!(
        d.history.iter().all(|f| f.kind == "fired"),
        "{:?}",
        d.history
    );
    // One after the other: each run ended before the next was launched.
    let mut last_end = 0;
    for run_id in &d.schedule.run_ids {
        let run = tokio::time::timeout(PATIENCE, async {
            loop {
                if let Ok(Response::GetRun(r)) =
                    call(&c, json!({"cmd": "get_run", "run_id": run_id})).await
                {
                    if r.run.status.is_finished() {
                        return r.run;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(run.status, RunStatus::Completed, "{run:?}");
        assert!(
            run.created_ms >= last_end,
            "run {run_id} overlapped the one before"
        );
        last_end = run.finished_ms.unwrap();
    }
    // No fourth.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(detail(&c, &id).await.schedule.fired, 3);
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_checked_stored_paused_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let c = LocalConsole::open(set_up(dir.path())).unwrap().shared();
    let when = json!({"type": "daily", "start": "2031-01-01T02:00", "time_zone": "Europe/Paris"});
    let bad = |patch: serde_json::Value| {
        let mut req = json!({"cmd": "add_schedule", "name": "n", "pack": "p", "when": when});
        req.as_object_mut()
            .unwrap()
            .extend(patch.as_object().unwrap().clone());
        req
    };
    for (patch, field) in [
        (json!({"pack": "nope"}), "pack:"),
        (json!({"name": " "}), "name:"),
        (json!({"duts": ["ghost"]}), "duts:"),
        (
            json!({"duts": ["box-1"], "dut_search": "ModelName==BX*"}),
            "dut_search:",
        ),
        (
            json!({"when": {"type": "weekly", "start": "2031-01-01T02:00", "time_zone": "UTC"}}),
            "when.days:",
        ),
        (
            json!({"when": {"type": "daily", "start": "2031-01-01T02:00", "time_zone": "Mars/Base"}}),
            "when.time_zone:",
        ),
    ] {
        let e = call(&c, bad(patch.clone())).await.unwrap_err();
        assert!(e.message.starts_with(field), "{patch}: {}", e.message);
    }
    let Response::AddSchedule { id } = call(&c, bad(json!({"dut_search": "ModelName==BX*"})))
        .await
        .unwrap()
    else {
        panic!()
    };
    let Response::ListSchedules(list) = call(&c, json!({"cmd": "list_schedules"})).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].kind, "daily");
    // 02:00 in Paris is 01:00 UTC in winter.
    assert_eq!(
        fmt_ms(list[0].next_firing_ms.unwrap()),
        "2031-01-01 01:00:00Z"
    );
    assert_eq!(list[0].upcoming_ms.len(), 14);
    let Response::PauseSchedule(v) = call(&c, json!({"cmd": "pause_schedule", "id": id}))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(v.paused && v.next_firing_ms.is_none());
    let Response::ResumeSchedule(v) = call(&c, json!({"cmd": "resume_schedule", "id": id}))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(!v.paused && v.next_firing_ms.is_some());
    call(&c, json!({"cmd": "remove_schedule", "id": id}))
        .await
        .unwrap();
    let e = call(&c, json!({"cmd": "get_schedule", "id": id}))
        .await
        .unwrap_err();
    assert!(e.message.contains("no schedule"), "{}", e.message);
    c.shutdown();
}

/// A daily schedule whose firings fell due while no console ran: at the next start the
/// history says how many were missed, then one run goes (`catch_up: once`) or none
/// (`skip`). Virtual time: the console's clock is set past three firings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_firings_are_caught_up_once_or_skipped_and_the_history_says_which() {
    use testbay_engine::api::ConsoleOptions;
    use testbay_engine::clock::ManualClock;

    let dir = tempfile::tempdir().unwrap();
    let paths = set_up(dir.path());
    let t0 = crate::support::T0;
    let options = |t: i64| ConsoleOptions {
        clock: Arc::new(ManualClock::new(t)),
        ..ConsoleOptions::default()
    };
    // Added while no console serves (not shared: nothing fires): daily, 1 h from now.
    let (once, skip) = {
        let c = LocalConsole::open_with(paths.clone(), options(t0)).unwrap();
        let add = |catch_up: &str| {
            let start = fmt_ms(t0 + 3_600_000)
                .trim_end_matches('Z')
                .replace(' ', "T");
            json!({"cmd": "add_schedule", "name": catch_up, "pack": "p", "groups": ["quick"],
                   "when": {"type": "daily", "start": start, "time_zone": "UTC", "catch_up": catch_up}})
        };
        let mut ids = Vec::new();
        for mode in ["once", "skip"] {
            let Response::AddSchedule { id } = c
                .dispatch(parse_request(add(mode).to_string().as_bytes()).unwrap())
                .await
                .unwrap()
            else {
                panic!()
            };
            ids.push(id);
        }
        c.shutdown();
        (ids[0].clone(), ids[1].clone())
    };
    // Three days and two hours later: the firings at +1 h, +25 h, +49 h and +73 h were
    // missed.
    let later = t0 + 3 * 86_400_000 + 2 * 3_600_000;
    let c = LocalConsole::open_with(paths, options(later))
        .unwrap()
        .shared();
    let d = tokio::time::timeout(PATIENCE, async {
        loop {
            let d = detail(&c, &once).await;
            if d.history.iter().any(|f| f.kind == "caught_up") {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the missed firings were caught up");
    assert_eq!(d.history[0].kind, "missed", "{:?}", d.history);
    assert_eq!(
        d.history[0].note.as_deref(),
        Some("missed 4 firings, ran once at start")
    );
    assert!(d.history[1].run_id.is_some(), "{:?}", d.history);
    assert_eq!(d.schedule.run_ids.len(), 1);
    // The next regular firing is tomorrow's.
    assert_eq!(
        d.schedule.next_firing_ms,
        Some(t0 + 4 * 86_400_000 + 3_600_000)
    );

    // The scheduler settles one schedule after the other: wait for the second too.
    let d = tokio::time::timeout(PATIENCE, async {
        loop {
            let d = detail(&c, &skip).await;
            if d.history.iter().any(|f| f.kind == "skipped") {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the missed firings were skipped");
    let kinds: Vec<&str> = d.history.iter().map(|f| f.kind.as_str()).collect();
    assert_eq!(kinds, ["missed", "skipped"], "{:?}", d.history);
    assert_eq!(
        d.history[0].note.as_deref(),
        Some("missed 4 firings, skipped (catch_up: skip)")
    );
    assert!(d.schedule.run_ids.is_empty());
    c.shutdown();
}

/// A DUT search is resolved when the schedule fires: the run gets the matching DUT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dut_search_is_resolved_at_firing() {
    let dir = tempfile::tempdir().unwrap();
    let c = LocalConsole::open(set_up(dir.path())).unwrap().shared();
    let req = json!({
        "cmd": "add_schedule", "name": "by model", "pack": "p", "groups": ["quick"],
        "dut_search": "ModelName==BX-*",
        "when": {"type": "oneoff", "start": now_local(), "time_zone": "UTC"}
    });
    let Response::AddSchedule { id } = call(&c, req).await.unwrap() else {
        panic!()
    };
    let run_id = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(r) = detail(&c, &id).await.schedule.run_ids.first() {
                return r.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the one-off fired");
    let run = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(Response::GetRun(r)) =
                call(&c, json!({"cmd": "get_run", "run_id": run_id})).await
            {
                if r.run.status.is_finished() {
                    return r.run;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(
        run.duts.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["box-1"]
    );
    c.shutdown();
}
