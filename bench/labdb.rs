//! The lab's book in PostgreSQL under load: 20 simulated consoles on 2 servers (two
//! `LabBook`s, each with its own pool) making reservation requests on 1,000 DUTs for a
//! fixed time, then a query for double bookings (must find 0). The same workload (as many
//! decisions per console as PostgreSQL made) then runs on the single-seat book
//! (`LiveBook`: in memory, every event written to SQLite; its time includes writing the
//! last batch); it has one owner, so its consoles are threads of one process.
//!
//! `cargo bench -p testbay-engine --bench labdb`. Env: `LABDB_BENCH_SECS` (seconds of
//! the PostgreSQL run, default 60), `LABDB_BENCH_CONSOLES` (default 20). Needs PostgreSQL's server
//! programs (Debian's `postgresql`), as the tests do.
//!
//! One step of a console: pick a DUT and a window (start within the next two hours, 5 to
//! 30 minutes long; half exact, half "the next free window"), ask; a console keeps at most
//! 50 of its bookings and releases the oldest beyond that. A decision is a request
//! answered (booked or refused).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::{Rng, SeedableRng};
use testbay_engine::clock::SystemClock;
use testbay_engine::reserve::labdb::{LabBook, LabBookConfig};
use testbay_engine::reserve::*;
use testbay_engine::store::SqliteStore;

const DUTS: usize = 1_000;
const SERVERS: usize = 2;
const KEEP: usize = 50;

fn specs() -> Vec<ResourceSpec> {
    (0..DUTS)
        .map(|i| ResourceSpec {
            name: format!("dut-{i:04}"),
            kind: ResourceKind::Exclusive,
            config: serde_json::Value::Null,
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One request's inputs.
struct Ask {
    dut: usize,
    at: i64,
    dur: i64,
    next: bool,
}

fn ask(rng: &mut rand::rngs::StdRng) -> Ask {
    Ask {
        dut: rng.gen_range(0..DUTS),
        at: now_ms() + rng.gen_range(0..120) * 60_000,
        dur: rng.gen_range(5..=30) * 60_000,
        next: rng.gen_bool(0.5),
    }
}

fn holder(console: usize) -> Holder {
    Holder::Run {
        run_id: format!("console-{console}"),
        lane: "bench".into(),
        task: None,
    }
}

/// What one console did.
#[derive(Default)]
struct Tally {
    lat_ns: Vec<u32>,
    booked: usize,
    refused: usize,
    released: usize,
    errors: usize,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.lat_ns.extend(o.lat_ns);
        self.booked += o.booked;
        self.refused += o.refused;
        self.released += o.released;
        self.errors += o.errors;
    }
}

fn pct(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)] as f64 / 1e6
}

fn report(name: &str, secs: f64, mut t: Tally, double: i64) {
    t.lat_ns.sort_unstable();
    let n = t.lat_ns.len();
    println!(
        "{name:<34} {:>9.0} decisions/s  p50 {:>8.4} ms  p99 {:>8.4} ms  ({n} decisions: {} booked, {} refused; {} releases; {} errors) double bookings: {double}",
        n as f64 / secs,
        pct(&t.lat_ns, 0.50),
        pct(&t.lat_ns, 0.99),
        t.booked,
        t.refused,
        t.released,
        t.errors,
    );
}

async fn pg_console(book: LabBook, console: usize, until: Instant) -> Tally {
    let mut rng = rand::rngs::StdRng::seed_from_u64(console as u64);
    let h = Arc::new(holder(console));
    let names: Vec<String> = (0..DUTS).map(|i| format!("dut-{i:04}")).collect();
    let mut mine = std::collections::VecDeque::new();
    let mut t = Tally::default();
    while Instant::now() < until {
        let a = ask(&mut rng);
        let req = ReservationRequest::new(&names[a.dut], h.clone(), a.dur)
            .at(a.at)
            .next_available(a.next);
        let start = Instant::now();
        let r = book.request(req, None).await;
        t.lat_ns
            .push(start.elapsed().as_nanos().min(u32::MAX as u128) as u32);
        match r {
            Ok(p) => {
                t.booked += 1;
                mine.push_back(p.id);
            }
            Err(e) if matches!(e.code(), "conflict" | "capacity") => t.refused += 1,
            Err(e) => {
                t.errors += 1;
                eprintln!("console {console}: {e}");
            }
        }
        if mine.len() > KEEP {
            let id = mine.pop_front().expect("kept");
            match book.release(id).await {
                Ok(()) => t.released += 1,
                Err(_) => t.errors += 1,
            }
        }
    }
    t
}

/// Returns how many decisions the consoles made.
fn run_postgres(secs: u64, consoles: usize) -> usize {
    let cluster = testbay_pgtest::shared().expect("throwaway PostgreSQL");
    let url = cluster.fresh_db("labdb_bench").expect("database");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let made = rt.block_on(async {
        let cfg = LabBookConfig {
            pool_size: consoles.div_ceil(SERVERS),
            ..LabBookConfig::default()
        };
        let mut servers = Vec::new();
        for s in 0..SERVERS {
            servers.push(
                LabBook::open_with(&url, &format!("server-{s}"), cfg)
                    .await
                    .expect("open"),
            );
        }
        servers[0]
            .sync_resources(&specs())
            .await
            .expect("resources");
        let started = Instant::now();
        let until = started + Duration::from_secs(secs);
        let tasks: Vec<_> = (0..consoles)
            .map(|c| tokio::spawn(pg_console(servers[c % SERVERS].clone(), c, until)))
            .collect();
        let mut all = Tally::default();
        for task in tasks {
            all.merge(task.await.expect("console"));
        }
        let elapsed = started.elapsed().as_secs_f64();
        let n = all.lat_ns.len();
        let audit = servers[0].audit().await.expect("audit");
        let live = servers[0].live().await.expect("live").len();
        report(
            &format!("PostgreSQL, {SERVERS} servers"),
            elapsed,
            all,
            audit.live_overlaps + audit.active_overlaps + audit.over_capacity,
        );
        println!("  ({live} live reservations at the end; audit {audit:?})");
        n
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    made
}

fn run_sqlite(per_console: usize, consoles: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open_in(dir.path()).expect("store");
    let live = LiveBook::open(
        &store,
        Arc::new(SystemClock),
        BookConfig::default(),
        specs(),
    )
    .expect("book");
    let started = Instant::now();
    let threads: Vec<_> = (0..consoles)
        .map(|console| {
            let live = live.clone();
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(console as u64);
                let h = Arc::new(holder(console));
                let names: Vec<String> = (0..DUTS).map(|i| format!("dut-{i:04}")).collect();
                let mut mine = std::collections::VecDeque::new();
                let mut t = Tally::default();
                for _ in 0..per_console {
                    let a = ask(&mut rng);
                    let req = ReservationRequest::new(&names[a.dut], h.clone(), a.dur)
                        .at(a.at)
                        .next_available(a.next);
                    let start = Instant::now();
                    let r = live.request(req);
                    t.lat_ns
                        .push(start.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                    match r {
                        Ok(p) => {
                            t.booked += 1;
                            mine.push_back(p.id);
                        }
                        Err(BookError::ResourceUnavailable { .. }) => t.refused += 1,
                        Err(_) => t.errors += 1,
                    }
                    if mine.len() > KEEP {
                        let id = mine.pop_front().expect("kept");
                        match live.release(id) {
                            Ok(()) => t.released += 1,
                            Err(_) => t.errors += 1,
                        }
                    }
                }
                t
            })
        })
        .collect();
    let mut all = Tally::default();
    for th in threads {
        all.merge(th.join().expect("console"));
    }
    live.flush();
    let elapsed = started.elapsed().as_secs_f64();
    // Double bookings: overlapping live reservations of one DUT.
    let mut by_dut: HashMap<Arc<str>, Vec<(i64, i64)>> = HashMap::new();
    for r in live.reservations() {
        by_dut
            .entry(r.resource.clone())
            .or_default()
            .push((r.start, r.end));
    }
    let mut double = 0;
    for w in by_dut.values_mut() {
        w.sort_unstable();
        for i in 0..w.len() {
            double += w[i + 1..].iter().filter(|o| o.0 < w[i].1).count() as i64;
        }
    }
    report("SQLite book (one owner)", elapsed, all, double);
    live.shutdown();
}

fn main() {
    let secs: u64 = std::env::var("LABDB_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let consoles: usize = std::env::var("LABDB_BENCH_CONSOLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
        .max(1);
    println!(
        "{consoles} consoles, {DUTS} DUTs, PostgreSQL for {secs} s (LABDB_BENCH_SECS, LABDB_BENCH_CONSOLES)"
    );
    let made = run_postgres(secs, consoles);
    run_sqlite(made.div_ceil(consoles), consoles);
}
