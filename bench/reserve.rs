//! Reservation book benchmark: 10,000 resources, 1,000,000 request+claim+release cycles.
//!
//! `cargo bench -p testbay-engine --bench reserve` (env `RESERVE_BENCH_N` changes the
//! number of cycles). Prints requests/s and latency percentiles in memory, the same
//! workload on a plain `BTreeMap` earliest-slot search as a baseline measured in the same
//! run, and the throughput with every event persisted to SQLite in batches.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use testbay_engine::clock::ManualClock;
use testbay_engine::reserve::*;
use testbay_engine::store::SqliteStore;

const RESOURCES: usize = 10_000;
const SHARED_EVERY: usize = 10; // every 10th resource is shared, capacity 4
const PREFILL_PER_RESOURCE: usize = 10;
const T0: i64 = 1_800_000_000_000;

fn specs() -> Vec<ResourceSpec> {
    (0..RESOURCES)
        .map(|i| ResourceSpec {
            name: format!("res-{i:05}"),
            kind: if i % SHARED_EVERY == 0 {
                ResourceKind::Shared { capacity: 4 }
            } else {
                ResourceKind::Exclusive
            },
            config: serde_json::Value::Null,
        })
        .collect()
}

/// One cycle's inputs, drawn before timing.
struct Job {
    res: usize,
    dur: i64,
}

fn jobs(n: usize) -> Vec<Job> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..n)
        .map(|_| Job {
            res: rng.gen_range(0..RESOURCES),
            dur: rng.gen_range(100..30_000),
        })
        .collect()
}

/// Standing bookings: operator holds spread over the simulated span, which claim
/// themselves and end while the benchmark runs (so sweeps are part of the cost).
fn prefill(n: usize) -> Vec<(usize, i64, i64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let span = n as i64; // the clock advances 1 ms per cycle
    (0..RESOURCES * PREFILL_PER_RESOURCE)
        .map(|i| {
            (
                i % RESOURCES,
                T0 + rng.gen_range(0..span.max(1)),
                rng.gen_range(1_000..60_000),
            )
        })
        .collect()
}

struct Figures {
    secs: f64,
    lat_ns: Vec<u32>,
    immediate: usize,
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)] as f64 / 1000.0
}

/// `f` gives throughput, `lat` (the timed pass) the latencies.
fn report(name: &str, n: usize, f: &Figures, lat: &mut Figures) -> f64 {
    lat.lat_ns.sort_unstable();
    let rate = n as f64 / f.secs;
    let f = lat;
    println!(
        "{name:<34} {rate:>10.0} req/s   p50 {:>5.2} µs   p99 {:>5.2} µs   p99.9 {:>6.2} µs   max {:>8.2} µs   ({} of {n} claimed at once)",
        pct(&f.lat_ns, 0.50),
        pct(&f.lat_ns, 0.99),
        pct(&f.lat_ns, 0.999),
        *f.lat_ns.last().unwrap() as f64 / 1000.0,
        f.immediate,
    );
    rate
}

fn holder() -> Holder {
    Holder::Run {
        run_id: "r20261121-200000-bench".into(),
        lane: "stb-01".into(),
        task: None,
    }
}

/// request (lease 60 s) → claim if the window starts now → release, clock +1 ms per cycle.
/// With `timed`, each cycle's latency is measured (two clock reads per cycle); without,
/// only the whole pass is, for throughput.
fn run_book(jobs: &[Job], pre: &[(usize, i64, i64)], timed: bool) -> Figures {
    let clock = ManualClock::new(T0);
    let mut book = Book::new(Arc::new(clock.clone()), specs()).unwrap();
    let names: Vec<String> = (0..RESOURCES).map(|i| format!("res-{i:05}")).collect();
    for &(r, at, dur) in pre {
        let req = ReservationRequest::new(&names[r], Holder::Operator { name: "ops".into() }, dur)
            .at(at)
            .auto_claim(true);
        book.request(req).unwrap();
    }
    book.drain_events();
    book_cycles(&mut book, &clock, &names, jobs, timed)
}

/// The timed loop of [`run_book`], on its own so profilers can single it out
/// (`valgrind --tool=callgrind '--toggle-collect=reserve::book_cycles'`).
#[inline(never)]
fn book_cycles(
    book: &mut Book,
    clock: &ManualClock,
    names: &[String],
    jobs: &[Job],
    timed: bool,
) -> Figures {
    let h = Arc::new(holder());
    let mut lat = Vec::with_capacity(jobs.len());
    let mut immediate = 0;
    let start = Instant::now();
    for (i, j) in jobs.iter().enumerate() {
        let t = timed.then(Instant::now);
        let mode = if j.res % SHARED_EVERY == 0 {
            ReservationMode::Shared
        } else {
            ReservationMode::Exclusive
        };
        let pre = book
            .request(
                ReservationRequest::new(&names[j.res], h.clone(), j.dur)
                    .mode(mode)
                    .lease(60_000),
            )
            .unwrap();
        if pre.available_from == T0 + i as i64 {
            book.claim(pre.id).unwrap();
            immediate += 1;
        }
        book.release(pre.id).unwrap();
        if let Some(t) = t {
            lat.push(t.elapsed().as_nanos() as u32);
        }
        if i % 4096 == 0 {
            // A consumer drains events (the live book does this after every call).
            book.drain_events();
        }
        clock.advance(1);
    }
    Figures {
        secs: start.elapsed().as_secs_f64(),
        lat_ns: lat,
        immediate,
    }
}

/// The baseline: per resource a plain `BTreeMap<start, end>`, earliest-slot search, insert,
/// remove. No ids, leases, shared capacity, sweeps or events.
fn run_plain(jobs: &[Job], pre: &[(usize, i64, i64)], timed: bool) -> Figures {
    let mut maps: Vec<BTreeMap<i64, i64>> = vec![BTreeMap::new(); RESOURCES];
    for &(r, at, dur) in pre {
        let s = plain_earliest(&maps[r], at, dur);
        maps[r].insert(s, s + dur);
    }
    plain_cycles(&mut maps, jobs, timed)
}

fn plain_earliest(m: &BTreeMap<i64, i64>, from: i64, dur: i64) -> i64 {
    let mut t = from;
    if let Some((_, &e)) = m.range(..t).next_back() {
        t = t.max(e);
    }
    for (&s, &e) in m.range(t..) {
        if s >= t + dur {
            break;
        }
        t = t.max(e);
    }
    t
}

/// The timed loop of [`run_plain`].
#[inline(never)]
fn plain_cycles(maps: &mut [BTreeMap<i64, i64>], jobs: &[Job], timed: bool) -> Figures {
    let mut lat = Vec::with_capacity(jobs.len());
    let mut immediate = 0;
    let start = Instant::now();
    for (i, j) in jobs.iter().enumerate() {
        let t = timed.then(Instant::now);
        let now = T0 + i as i64;
        let m = &mut maps[j.res];
        let s = plain_earliest(m, now, j.dur);
        m.insert(s, s + j.dur);
        if s == now {
            immediate += 1;
        }
        m.remove(&s);
        if let Some(t) = t {
            lat.push(t.elapsed().as_nanos() as u32);
        }
    }
    Figures {
        secs: start.elapsed().as_secs_f64(),
        lat_ns: lat,
        immediate,
    }
}

/// The same cycles through the live book: every event broadcast and written to SQLite by
/// the writer thread in batches; timing ends when the last batch is committed.
fn run_persisted(n: usize, jobs: &[Job]) -> (Figures, f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    let clock = ManualClock::new(T0);
    let live = LiveBook::open(
        &store,
        Arc::new(clock.clone()),
        BookConfig::default(),
        specs(),
    )
    .unwrap();
    let names: Vec<String> = (0..RESOURCES).map(|i| format!("res-{i:05}")).collect();
    let h = Arc::new(holder());
    let mut lat = Vec::with_capacity(n);
    let mut immediate = 0;
    let start = Instant::now();
    for (i, j) in jobs.iter().enumerate() {
        let t = Instant::now();
        let mode = if j.res % SHARED_EVERY == 0 {
            ReservationMode::Shared
        } else {
            ReservationMode::Exclusive
        };
        live.with(|b| {
            let pre = b
                .request(
                    ReservationRequest::new(&names[j.res], h.clone(), j.dur)
                        .mode(mode)
                        .lease(60_000),
                )
                .unwrap();
            if pre.available_from == T0 + i as i64 {
                b.claim(pre.id).unwrap();
                immediate += 1;
            }
            b.release(pre.id).unwrap();
        });
        lat.push(t.elapsed().as_nanos() as u32);
        clock.advance(1);
    }
    let issued = start.elapsed().as_secs_f64();
    live.flush();
    let secs = start.elapsed().as_secs_f64();
    live.shutdown();
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let events: i64 = conn
        .query_row("SELECT COUNT(*) FROM book_events", [], |r| r.get(0))
        .unwrap();
    (
        Figures {
            secs,
            lat_ns: lat,
            immediate,
        },
        secs - issued,
        events as usize,
    )
}

fn main() {
    let n: usize = std::env::var("RESERVE_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let jobs = jobs(n);
    let pre = prefill(n);
    println!(
        "reservation book: {RESOURCES} resources ({} shared, capacity 4), {} standing bookings, {n} request+claim+release cycles",
        RESOURCES / SHARED_EVERY,
        pre.len()
    );
    // Throughput passes (no per-cycle clock reads), then latency passes, interleaved so
    // both see the same machine.
    let plain = run_plain(&jobs, &pre, false);
    let book = run_book(&jobs, &pre, false);
    let mut plain_lat = run_plain(&jobs, &pre, true);
    let mut book_lat = run_book(&jobs, &pre, true);
    let base = report("baseline: plain BTreeMap search", n, &plain, &mut plain_lat);
    let ours = report("book, in memory", n, &book, &mut book_lat);
    println!(
        "ratio book / baseline: {:.2} (throughput); book: {:.0} book operations/s (a request and a release per cycle, a claim in {} of {n})",
        ours / base,
        ours * (2 * n + book.immediate) as f64 / n as f64,
        book.immediate
    );
    let pn = std::env::var("RESERVE_BENCH_PERSIST_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n);
    let (mut persisted, lag, events) = run_persisted(pn, &jobs[..pn]);
    let whole = Figures {
        secs: persisted.secs,
        lat_ns: Vec::new(),
        immediate: 0,
    };
    report(
        "book, persisted (batched SQLite)",
        pn,
        &whole,
        &mut persisted,
    );
    println!(
        "persisted: {events} events committed; writer lag after the last request {:.1} ms",
        lag * 1000.0
    );
}
