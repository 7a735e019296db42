//! Run queue benchmark: a queue of 10,000 runs over 1,000 DUTs; the time to pick the runs
//! that start when a DUT frees (issue 12's figure, target ≤ 1 ms), and the time of a full
//! pick (after a restart) and of the estimated starts of the whole queue.
//!
//! `cargo bench -p testbay-core --bench queue` (env `QUEUE_BENCH_RUNS`,
//! `QUEUE_BENCH_DUTS` change the sizes). Each run wants one to three DUTs, a third of the
//! DUTs are busy, priorities are mixed. Prints median and worst; asserts nothing.

use std::collections::HashSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use testbay_core::queue::{Entry, Priority, RunQueue};

/// A small fixed-seed generator: the same queue every time.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], *v.last().expect("samples"))
}

fn main() {
    let runs = env("QUEUE_BENCH_RUNS", 10_000);
    let duts = env("QUEUE_BENCH_DUTS", 1_000).max(1);
    let mut rng = Lcg(12);
    let names: Vec<String> = (0..duts).map(|i| format!("dut-{i:04}")).collect();
    let mut q = RunQueue::new();
    let t = Instant::now();
    for i in 0..runs {
        let n = 1 + rng.below(3);
        let want = (0..n).map(|_| names[rng.below(duts)].clone()).collect();
        q.push(Entry {
            run_id: format!("r{i:05}"),
            priority: [Priority::Low, Priority::Normal, Priority::High][rng.below(3)],
            place: q.next_place(),
            duts: want,
            enqueued_ms: 0,
            max_queue_ms: None,
            est_ms: 60_000,
            force: false,
        });
    }
    let build = t.elapsed();
    let busy: HashSet<&str> = names
        .iter()
        .filter(|_| rng.below(3) == 0)
        .map(String::as_str)
        .collect();
    let free = |d: &str| !busy.contains(d);

    let mut one = Vec::new();
    let mut started = 0usize;
    for i in 0..2_000 {
        let d = &names[i % duts];
        let t = Instant::now();
        let picked = q.pick_for(d, free, |_| false).map(|e| e.run_id.clone());
        one.push(t.elapsed());
        if let Some(id) = picked {
            // It starts: out of the queue, as the console does.
            black_box(q.remove(&id));
            started += 1;
        }
    }
    let mut all = Vec::new();
    let mut est = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        black_box(q.pick_all(free, |_| false).len());
        all.push(t.elapsed());
        let t = Instant::now();
        black_box(q.estimated_starts(0, |d| if busy.contains(d) { 3_600_000 } else { 0 }));
        est.push(t.elapsed());
    }
    let (m1, w1) = stats(one);
    let (ma, wa) = stats(all);
    let (me, we) = stats(est);
    println!("run queue: {runs} runs over {duts} DUTs (built in {build:.2?})");
    println!("  pick when one DUT frees: median {m1:.2?}, worst {w1:.2?} over 2,000 frees ({started} runs started; target <= 1 ms)");
    println!("  full pick (restart):     median {ma:.2?}, worst {wa:.2?}");
    println!("  estimated starts:        median {me:.2?}, worst {we:.2?}");
}
