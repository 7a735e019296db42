//! Run event numbers (`seq`) against the live view: a client that loads a view at any
//! moment and applies only the events numbered after it ends with what the engine has.

use std::collections::HashMap;

use testbay_engine::outcome::RunStatus;
use testbay_engine::run::*;

use crate::support::{write_pack, Bed};

/// A task state reduced to what a screen sorts rows by.
fn kind(s: &TaskState) -> u8 {
    match s {
        TaskState::Queued { .. } => 0,
        TaskState::Waiting { .. } => 1,
        TaskState::Running { .. } => 2,
        TaskState::Done { .. } => 3,
    }
}

/// What one view said, small enough to keep thousands of.
struct Seen {
    seq: u64,
    status: RunStatus,
    tasks: Vec<(u32, u8)>,
}

fn seen(v: &RunView) -> Seen {
    let mut tasks: Vec<(u32, u8)> = v
        .lanes
        .iter()
        .flat_map(|l| [&l.setup, &l.test, &l.teardown, &l.delay])
        .chain([&v.shared])
        .flatten()
        .map(|t| (t.item, kind(&t.state)))
        .collect();
    tasks.sort_unstable();
    Seen {
        seq: v.seq,
        status: v.status,
        tasks,
    }
}

/// A client's reconciliation: start from a view, apply each later event (in the order
/// received) unless the task already has a newer one.
fn replay(from: &Seen, events: &[RunEvent]) -> (RunStatus, Vec<(u32, u8)>) {
    let mut status = (from.status, from.seq);
    let mut tasks: HashMap<u32, (u8, u64)> = from
        .tasks
        .iter()
        .map(|&(i, k)| (i, (k, from.seq)))
        .collect();
    for ev in events.iter().filter(|e| e.seq() > from.seq) {
        match ev {
            RunEvent::RunStatus { status: s, seq, .. } if *seq > status.1 => status = (*s, *seq),
            RunEvent::TaskState {
                item, state, seq, ..
            } => {
                let t = tasks.get_mut(item).expect("a task the view has");
                if *seq > t.1 {
                    *t = (kind(state), *seq);
                }
            }
            _ => {}
        }
    }
    let mut tasks: Vec<(u32, u8)> = tasks.into_iter().map(|(i, (k, _))| (i, k)).collect();
    tasks.sort_unstable();
    (status.0, tasks)
}

/// Views taken at any moment of a busy run (from another thread, as a client's request
/// would), plus the events numbered after each, always give the final state; the events
/// are numbered 1, 2, 3, ... without a gap, and the last view's number is the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_view_plus_the_events_after_it_is_the_final_state() {
    let f = Bed::new();
    let pack = &f.pack;
    let names: Vec<String> = (0..120).map(|i| format!("t{i:03}")).collect();
    let tasks: Vec<(&str, &str, &str)> = names
        .iter()
        .map(|n| (n.as_str(), "process_safe: true\n", "echo hi\n"))
        .collect();
    write_pack(
        pack,
        &format!(
            "name: seq\nversion: '1'\nsetup: [{}]\nteardown: [{}]\nparams:\n  process_limit: 4\ngroups:\n  g:\n    tests: [{}]\n",
            names[0],
            names[1],
            names[2..].join(", ")
        ),
        &tasks,
    );
    let mgr = &f.mgr;
    let mut rx = mgr.subscribe();
    let id = mgr
        .launch(LaunchRequest {
            pack_dir: pack.display().to_string(),
            ..Default::default()
        })
        .unwrap();
    let watcher = {
        let (mgr, id) = (mgr.clone(), id.clone());
        std::thread::spawn(move || {
            let mut views = Vec::new();
            loop {
                let v = mgr.view(&id).expect("live");
                let done = v.status.is_finished();
                views.push(seen(&v));
                if done {
                    return views;
                }
                std::thread::yield_now();
            }
        })
    };
    // Read while the run goes: a 120-task run's events fit the channel, but only just.
    let mut events = Vec::new();
    let status = loop {
        tokio::select! {
            ev = rx.recv() => events.push(ev.expect("no event lost")),
            s = mgr.wait(&id) => break s.unwrap(),
        }
    };
    assert_eq!(status, RunStatus::Completed);
    while let Ok(ev) = rx.try_recv() {
        events.push(ev);
    }
    let views = tokio::task::spawn_blocking(move || watcher.join().unwrap())
        .await
        .unwrap();
    let last = seen(&mgr.view(&id).unwrap());

    let mut numbers: Vec<u64> = events.iter().map(RunEvent::seq).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=last.seq).collect::<Vec<u64>>());
    assert!(
        last.tasks.iter().all(|&(_, k)| k == 3),
        "all done at the end"
    );
    assert!(
        views.len() > 10,
        "only {} views taken during the run",
        views.len()
    );
    let mut mid_run = 0;
    for v in &views {
        if v.seq < last.seq {
            mid_run += 1;
        }
        let got = replay(v, &events);
        assert_eq!(
            got,
            (last.status, last.tasks.clone()),
            "a view numbered {} plus the events after it is not the final state",
            v.seq
        );
    }
    assert!(mid_run > 0, "no view was taken while the run was going");
}
