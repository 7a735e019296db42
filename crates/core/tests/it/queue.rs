//! The run queue's order against a simple model: runs in priority order, first come
//! first served within a priority; a run starts when its DUTs are free, in service, and
//! wanted by no run ahead of it.

use std::collections::HashSet;

use proptest::prelude::*;
use testbay_core::queue::{Entry, Move, Priority, RunQueue};

const DUTS: [&str; 5] = ["d0", "d1", "d2", "d3", "d4"];

fn prio(n: u8) -> Priority {
    match n % 3 {
        0 => Priority::Low,
        1 => Priority::Normal,
        _ => Priority::High,
    }
}

/// The model: a plain list sorted by (priority high first, arrival), walked once.
fn model(entries: &[Entry], free: &HashSet<&str>, oos: &HashSet<&str>) -> Vec<String> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.place.cmp(&b.place)));
    let mut taken: HashSet<&str> = HashSet::new();
    let mut started = Vec::new();
    for e in sorted {
        let ok = e.duts.iter().all(|d| {
            free.contains(d.as_str()) && !oos.contains(d.as_str()) && !taken.contains(d.as_str())
        });
        if ok {
            started.push(e.run_id.clone());
        }
        taken.extend(e.duts.iter().map(String::as_str));
    }
    started
}

fn build(spec: &[(u8, u8)]) -> (RunQueue, Vec<Entry>) {
    let mut q = RunQueue::new();
    let mut all = Vec::new();
    for (i, (p, mask)) in spec.iter().enumerate() {
        let duts: Vec<String> = DUTS
            .iter()
            .enumerate()
            .filter(|(b, _)| mask & (1 << b) != 0)
            .map(|(_, d)| d.to_string())
            .collect();
        let e = Entry {
            run_id: format!("r{i}"),
            priority: prio(*p),
            place: q.next_place(),
            duts,
            enqueued_ms: 0,
            max_queue_ms: None,
            est_ms: 1,
            force: false,
        };
        q.push(e.clone());
        all.push(e);
    }
    (q, all)
}

fn set(mask: u8) -> HashSet<&'static str> {
    DUTS.iter()
        .enumerate()
        .filter(|(b, _)| mask & (1 << b) != 0)
        .map(|(_, d)| *d)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn picks_as_the_model_does(
        spec in proptest::collection::vec((0u8..3, 0u8..32), 0..24),
        free_mask in 0u8..32,
        oos_mask in 0u8..32,
    ) {
        let (q, entries) = build(&spec);
        let (free, oos) = (set(free_mask), set(oos_mask));
        let picked: Vec<String> = q
            .pick_all(|d| free.contains(d), |d| oos.contains(d))
            .into_iter()
            .map(|e| e.run_id.clone())
            .collect();
        let mut want = model(&entries, &free, &oos);
        let mut got = picked.clone();
        want.sort();
        got.sort();
        prop_assert_eq!(&got, &want);
        // No run starts while a higher-priority run that could start waits.
        let started: HashSet<&str> = picked.iter().map(String::as_str).collect();
        let taken: HashSet<&str> = entries
            .iter()
            .filter(|e| started.contains(e.run_id.as_str()))
            .flat_map(|e| e.duts.iter().map(String::as_str))
            .collect();
        // A run "could start" when its DUTs are free, in service, taken by no run that
        // started and wanted by no run ahead of it (first come, first served).
        let ahead = |a: &Entry, b: &Entry| (a.priority, std::cmp::Reverse(a.place)) > (b.priority, std::cmp::Reverse(b.place));
        for s in entries.iter().filter(|e| started.contains(e.run_id.as_str())) {
            for w in entries.iter().filter(|e| !started.contains(e.run_id.as_str())) {
                let could = w.duts.iter().all(|d| {
                    free.contains(d.as_str())
                        && !oos.contains(d.as_str())
                        && !taken.contains(d.as_str())
                        && !entries.iter().any(|x| ahead(x, w) && x.duts.contains(d))
                });
                prop_assert!(
                    !(w.priority > s.priority && could),
                    "{} started while {} (higher) could start", s.run_id, w.run_id
                );
            }
        }
        // One DUT freeing: the run picked for it is the model's, if the model starts one
        // wanting that DUT.
        for d in DUTS {
            if let Some(e) = q.pick_for(d, |x| free.contains(x), |x| oos.contains(x)) {
                prop_assert!(want.contains(&e.run_id));
                prop_assert!(e.duts.iter().any(|x| x == d));
            }
        }
    }

    #[test]
    fn moves_stay_within_a_priority(
        spec in proptest::collection::vec((0u8..3, 1u8..32), 1..16),
        moves in proptest::collection::vec((0usize..16, any::<bool>()), 0..20),
    ) {
        let (mut q, entries) = build(&spec);
        for (i, up) in moves {
            let id = &entries[i % entries.len()].run_id;
            q.move_run(id, if up { Move::Up } else { Move::Down });
        }
        let prios: Vec<Priority> = q.iter().map(|e| e.priority).collect();
        let mut sorted = prios.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        prop_assert_eq!(prios, sorted);
        prop_assert_eq!(q.len(), entries.len());
    }
}
