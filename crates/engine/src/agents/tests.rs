//! The hub's judgement of its agents' CPU, on virtual time.

use std::sync::atomic::AtomicU32;

use super::*;
use crate::clock::ManualClock;

/// 2026-11-21 19:55:00 UTC.
const T0: EpochMs = 1_795_290_900_000;

fn hub(clock: &ManualClock) -> AgentHub {
    AgentHub::new(
        ["rack-a".to_string()].into_iter().collect(),
        AgentConfig::default(),
        Arc::new(clock.clone()),
    )
}

fn connect(hub: &AgentHub, name: &str) -> AgentSession {
    hub.connect(name, vec!["rack-a".into()], "ctl".into(), "1".into())
        .unwrap()
}

fn cpu(s: &AgentSession, c: f64) {
    s.receive(AgentMsg::Heartbeat { cpu: Some(c) });
}

#[tokio::test]
async fn an_agent_above_its_cpu_threshold_is_passed_over_for_30_s() {
    let clock = ManualClock::new(T0);
    let hub = hub(&clock);
    let told = Arc::new(AtomicU32::new(0));
    let t = told.clone();
    hub.on_change(Arc::new(move || {
        t.fetch_add(1, Ordering::SeqCst);
    }));
    let s = connect(&hub, "rack-a-ctl");
    assert_eq!(hub.busy("rack-a"), None);
    assert_eq!(hub.busy("rack-b"), None, "not an agent rack");
    cpu(&s, 90.0);
    assert_eq!(hub.busy("rack-a"), None, "at the threshold is not above it");

    cpu(&s, 97.0);
    let busy = hub.busy("rack-a").expect("passed over");
    assert_eq!(
        busy.reason,
        "agent rack-a-ctl busy: CPU 97% > 90%, passed over until 19:55:30Z"
    );
    assert_eq!(busy.until_ms, T0 + 30_000);
    assert_eq!(hub.list()[0].passed_over_until_ms, Some(T0 + 30_000));

    // Still above 20 s later: passed over until the same time.
    clock.advance(20_000);
    cpu(&s, 95.0);
    assert_eq!(hub.busy("rack-a").unwrap().until_ms, T0 + 30_000);
    // The 30 s are over: taken again, whatever it said last ...
    clock.advance(10_000);
    assert_eq!(hub.busy("rack-a"), None);
    // ... and passed over again by its next heartbeat above the threshold.
    clock.advance(1_000);
    cpu(&s, 99.0);
    assert_eq!(hub.busy("rack-a").unwrap().until_ms, T0 + 61_000);

    // Back under: taken at once, and whoever waits for it is told.
    let before = told.load(Ordering::SeqCst);
    cpu(&s, 40.0);
    assert_eq!(hub.busy("rack-a"), None);
    assert_eq!(told.load(Ordering::SeqCst), before + 1);
    assert_eq!(hub.list()[0].passed_over_until_ms, None);
}

#[tokio::test]
async fn a_rack_waits_only_while_all_its_agents_are_passed_over() {
    let clock = ManualClock::new(T0);
    let hub = hub(&clock);
    let (a, b) = (connect(&hub, "ctl-1"), connect(&hub, "ctl-2"));
    cpu(&a, 97.0);
    assert_eq!(hub.busy("rack-a"), None, "ctl-2 can take the run");
    // The run goes to the one under its threshold, though it has more runs.
    let dir = std::path::Path::new("/nonexistent/pack");
    let first = hub.runner_for("rack-a", "r1", "h", dir).unwrap();
    assert_eq!(hub.list()[1].runs, ["r1"]);
    let second = hub.runner_for("rack-a", "r2", "h", dir).unwrap();
    assert_eq!(hub.list()[1].runs, ["r1", "r2"], "ctl-1 is passed over");
    drop((first, second));

    clock.advance(5_000);
    cpu(&b, 98.0);
    let busy = hub.busy("rack-a").expect("both passed over");
    assert_eq!(
        busy.reason,
        "agent ctl-1 busy: CPU 97% > 90%, passed over until 19:55:30Z; \
         agent ctl-2 busy: CPU 98% > 90%, passed over until 19:55:35Z"
    );
    assert_eq!(busy.until_ms, T0 + 30_000, "the first one back");
    // A drained agent does not count: the rack waits for ctl-1 alone.
    hub.drain("ctl-2", true).unwrap();
    assert!(hub
        .busy("rack-a")
        .unwrap()
        .reason
        .starts_with("agent ctl-1 busy"));
    hub.drain("ctl-1", true).unwrap();
    assert_eq!(hub.busy("rack-a"), None, "no agent at all: not a wait");
    assert!(hub.runner_for("rack-a", "r3", "h", dir).is_err());
}

#[tokio::test]
async fn disconnecting_all_agents_ends_their_sessions_outboxes() {
    let clock = ManualClock::new(T0);
    let hub = hub(&clock);
    let mut s = connect(&hub, "rack-a-ctl");
    hub.disconnect_all();
    assert!(
        s.outbox.recv().await.is_none(),
        "the connection's outbox is closed"
    );
    // The agent connects again (to be sent where the book is now).
    let _again = connect(&hub, "rack-a-ctl");
    assert_eq!(hub.list().len(), 1);
}
