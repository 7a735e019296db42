//! The run queue claimed in a lab: several servers (stores on one PostgreSQL database)
//! racing to start the same queued runs; each run is started by exactly one of them.

use std::collections::HashMap;
use std::sync::{Arc, Barrier};

use testbay_engine::store::*;

use crate::support::T0;

fn queued(i: usize) -> QueuedRunRecord {
    QueuedRunRecord {
        run_id: format!("run-{i:04}"),
        pack_name: "p".into(),
        priority: "normal".into(),
        place: i as u64,
        enqueued_ms: T0,
        max_queue_ms: None,
        est_ms: 1_000,
        duts: vec![format!("dut-{}", i % 3)],
        request_json: "{}".into(),
        origin: "launch".into(),
    }
}

#[test]
fn queue_claim_takes_each_run_once_across_servers() {
    const RUNS: usize = 200;
    const SERVERS: usize = 4;
    const THREADS_PER_SERVER: usize = 3;
    let url = testbay_pgtest::shared()
        .expect("a throwaway PostgreSQL (Debian's postgresql package)")
        .fresh_db("queue_claim")
        .unwrap();
    let stores: Vec<Arc<PgStore>> = (0..SERVERS)
        .map(|_| Arc::new(PgStore::open(&url).unwrap()))
        .collect();
    for i in 0..RUNS {
        stores[0].queue_put(&queued(i)).unwrap();
    }
    assert_eq!(stores[1].queue_list().unwrap().len(), RUNS);

    let barrier = Arc::new(Barrier::new(SERVERS * THREADS_PER_SERVER));
    let handles: Vec<_> = (0..SERVERS * THREADS_PER_SERVER)
        .map(|t| {
            let (store, barrier) = (stores[t % SERVERS].clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                // Each thread walks the queue from its own place, as dispatchers whose
                // books disagree would.
                (0..RUNS)
                    .map(|k| (k + t * 17) % RUNS)
                    .filter(|&i| store.queue_claim(&queued(i).run_id).unwrap())
                    .map(|i| (i, t))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut claimed: HashMap<usize, Vec<usize>> = HashMap::new();
    for h in handles {
        for (i, t) in h.join().unwrap() {
            claimed.entry(i).or_default().push(t);
        }
    }
    let twice: Vec<_> = claimed.iter().filter(|(_, by)| by.len() > 1).collect();
    assert!(twice.is_empty(), "runs claimed more than once: {twice:?}");
    assert_eq!(claimed.len(), RUNS, "every queued run is claimed");
    assert!(stores[2].queue_list().unwrap().is_empty());
    // More than one server took part (the race was a race).
    let servers: std::collections::HashSet<_> =
        claimed.values().map(|by| by[0] % SERVERS).collect();
    println!("runs claimed by {} of {SERVERS} servers", servers.len());
    // A claimed run cannot be claimed again, nor an unknown one.
    assert!(!stores[3].queue_claim("run-0000").unwrap());
    assert!(!stores[3].queue_claim("no-such-run").unwrap());
}

#[test]
fn queue_claim_skips_a_run_another_transaction_holds() {
    let url = testbay_pgtest::shared()
        .expect("a throwaway PostgreSQL (Debian's postgresql package)")
        .fresh_db("queue_claim_locked")
        .unwrap();
    let store = PgStore::open(&url).unwrap();
    store.queue_put(&queued(1)).unwrap();
    store.queue_put(&queued(2)).unwrap();
    // Another server is in the middle of claiming run 1: its row is locked.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut other, conn) = rt
        .block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
        .unwrap();
    rt.spawn(conn);
    let tx = rt.block_on(other.transaction()).unwrap();
    rt.block_on(tx.execute(
        "SELECT run_id FROM run_queue WHERE run_id = $1 FOR UPDATE",
        &[&queued(1).run_id],
    ))
    .unwrap();
    // This server does not wait for it and does not take it; the other run it takes.
    assert!(!store.queue_claim(&queued(1).run_id).unwrap());
    assert!(store.queue_claim(&queued(2).run_id).unwrap());
    rt.block_on(tx.rollback()).unwrap();
    // Let go, it can be claimed.
    assert!(store.queue_claim(&queued(1).run_id).unwrap());
}
