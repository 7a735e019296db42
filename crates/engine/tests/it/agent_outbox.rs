//! A rack agent's outbox: numbered in order, sent again from the first message the
//! server did not acknowledge, and over its bound the oldest live log lines go (counted)
//! while every result stays.

use std::collections::BTreeSet;

use testbay_engine::agents::outbox::Outbox;
use testbay_engine::agents::wire::AgentMsg;
use testbay_engine::exec::LiveLog;

fn log(job: u64, line: &str) -> AgentMsg {
    AgentMsg::Log {
        job,
        log: LiveLog::Lines(vec![line.to_string()]),
    }
}

/// What goes out next on this connection: (number, what).
fn unsent(out: &mut Outbox) -> Vec<(u64, String)> {
    std::iter::from_fn(|| out.next_unsent())
        .map(|m| match m {
            AgentMsg::Seq { seq, msg } => (
                seq,
                match *msg {
                    AgentMsg::Log {
                        log: LiveLog::Lines(l),
                        ..
                    } => l.join(""),
                    AgentMsg::Log {
                        log: LiveLog::Dropped(n),
                        ..
                    } => format!("dropped {n}"),
                    AgentMsg::Spawned { pid, .. } => format!("pid {pid}"),
                    other => format!("{other:?}"),
                },
            ),
            other => panic!("unnumbered {other:?}"),
        })
        .collect()
}

#[test]
fn numbers_in_order_and_sends_again_what_was_not_acknowledged() {
    let mut out = Outbox::default();
    for l in ["a", "b", "c"] {
        out.push(log(1, l));
    }
    assert_eq!(unsent(&mut out).len(), 3);
    assert!(!out.has_unsent());
    out.ack(1);
    assert_eq!(out.len(), 2);
    // A new connection whose server has 2: 3 again, then what comes next.
    out.resume(2);
    out.push(log(1, "d"));
    assert_eq!(unsent(&mut out), [(3, "c".into()), (4, "d".into())]);
    assert_eq!(out.jobs(), BTreeSet::from([1]));
    out.ack(4);
    assert!(out.is_empty());
    // A server that knows nothing (restarted) changes nothing already acknowledged.
    out.resume(0);
    assert_eq!(out.acked(), 4);
    assert!(out.next_unsent().is_none());
}

#[test]
fn over_its_bound_it_keeps_the_log_tail_and_every_result() {
    let mut out = Outbox::with_bounds(4, usize::MAX);
    out.push(AgentMsg::Spawned { job: 7, pid: 42 });
    for i in 0..10 {
        out.push(log(7, &format!("line {i}")));
    }
    assert_eq!(out.len(), 4);
    assert_eq!(
        unsent(&mut out),
        [
            (1, "pid 42".into()),
            (2, "dropped 8".into()),
            (10, "line 8".into()),
            (11, "line 9".into())
        ]
    );
    assert_eq!(out.dropped_lines(), 8);
    // Results only beyond the bound: all kept, the log lines gone first.
    out.push(log(7, "line 10"));
    for pid in 0..6 {
        out.push(AgentMsg::Spawned { job: 8, pid });
    }
    let rest = unsent(&mut out);
    assert_eq!(rest.len(), 6, "{rest:?}");
    assert!(rest.iter().all(|(_, m)| m.starts_with("pid")), "{rest:?}");
    assert_eq!(out.len(), 8);
}

#[test]
fn its_byte_bound_holds_too() {
    let bound = 2_000;
    let mut out = Outbox::with_bounds(usize::MAX, bound);
    for _ in 0..100 {
        out.push(log(1, &"x".repeat(100)));
    }
    assert!(out.bytes() <= bound, "{}", out.bytes());
    assert!(out.dropped_lines() >= 85, "{}", out.dropped_lines());
    let sent = unsent(&mut out);
    assert!(sent[0].1.starts_with("dropped"), "{sent:?}");
    assert_eq!(sent.last().unwrap().1, "x".repeat(100));
}
