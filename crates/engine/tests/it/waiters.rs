//! Nothing is left held for runs that are over: the next owner of the book gives back
//! what the runs of a dead console still hold. A real SQLite file, virtual time
//! ([`ManualClock`]).

use std::sync::Arc;

use serde_json::{json, Map};
use testbay_engine::clock::ManualClock;
use testbay_engine::lab;
use testbay_engine::outcome::RunStatus;
use testbay_engine::pack::ResourceMode;
use testbay_engine::plan::DutTarget;
use testbay_engine::reserve::{
    BookBroker, BookConfig, BrokerConfig, Holder, LiveBook, Request, ResId, ReservationMode,
};
use testbay_engine::run::{Grant, ResourceBroker, TaskNeeds};
use testbay_engine::store::{reservations as db, NewRun, Store};

use crate::support::write;

const T0: i64 = 1_800_000_000_000;

const LAB: &str = "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 1}}\n  - {name: box-2, model: BX-1, location: {rack: rack-x, slot: 2}}\nresources:\n  - {name: ir, mode: exclusive}\n  - {name: stream, mode: shared, capacity: 2}\n";

fn box_1() -> DutTarget {
    DutTarget {
        name: "box-1".into(),
        model: Some("BX-1".into()),
        rack: Some("rack-x".into()),
        slot: Some(1),
    }
}

// ---- the next owner of the book gives back what ended runs hold (a real SQLite file) ----

fn needs<'a>(run: &'a str, item: usize, lane: &'a str, dut: &'a DutTarget) -> TaskNeeds<'a> {
    static NO_CONFIG: std::sync::OnceLock<Map<String, serde_json::Value>> =
        std::sync::OnceLock::new();
    TaskNeeds {
        run_id: run,
        item,
        task: "t",
        lane,
        dut: Some(dut),
        ats: None,
        exclusive: &[],
        shared: &[],
        configs: NO_CONFIG.get_or_init(Map::new),
        est_task_time: 100.0,
        now: T0,
    }
}

fn stored_run(store: &Store, id: &str) {
    store
        .insert_run(
            &NewRun {
                id: id.into(),
                pack_name: "p".into(),
                pack_version: "1".into(),
                content_hash: String::new(),
                pack_dir: String::new(),
                snapshot_dir: None,
                groups: vec![],
                duts: vec![],
                ats: None,
                params: json!({}),
                resource_mode: String::new(),
                coverage_mode: String::new(),
                status: RunStatus::Running,
                reason: None,
                created_ms: T0,
                est_run_time: 0.0,
            },
            &[],
        )
        .unwrap();
}

/// A console dies with runs holding DUTs and resources: one is still running elsewhere
/// (stored as running by a live process), one was marked interrupted by recovery, one is
/// stored as running by a process that is gone (recovery has not seen it yet), one never
/// got stored. The next owner of the book gives back what the three that are over hold,
/// at once and as book events, and keeps the rest.
#[test]
fn the_next_owner_of_the_book_gives_back_what_ended_runs_hold() {
    let root = tempfile::tempdir().unwrap();
    write(&root.path().join("lab.yaml"), LAB);
    let lab = lab::load(&root.path().join("lab.yaml")).unwrap();
    let store = Store::open_in(&root.path().join("data")).unwrap();
    stored_run(&store, "r-live");
    stored_run(&store, "r-dead");
    store
        .set_run_status("r-dead", RunStatus::Interrupted, Some("console exited"), T0)
        .unwrap();
    stored_run(&store, "r-orphan");
    // Same pid, another start time: another process, long gone.
    rusqlite::Connection::open(store.path())
        .unwrap()
        .execute("UPDATE runs SET owner_start = 1 WHERE id = 'r-orphan'", [])
        .unwrap();
    let clock = ManualClock::new(T0);
    let open = || {
        LiveBook::open(
            store.path(),
            Arc::new(clock.clone()),
            BookConfig::default(),
            lab.book_resources(),
        )
        .unwrap()
    };
    let cfg = BrokerConfig {
        renew_thread: false,
        ..BrokerConfig::default()
    };
    let book = open();
    let broker = BookBroker::new(book.clone(), Some(Arc::new(lab.clone())), cfg);
    let box_2 = DutTarget {
        name: "box-2".into(),
        ..box_1()
    };
    let mut held = Vec::new();
    for (run, dut) in [
        ("r-live", &box_1()),
        ("r-dead", &box_2),
        ("r-ghost", &box_1()),
    ] {
        broker
            .begin_run(run, ResourceMode::PerTaskSeparate, &[])
            .unwrap();
        held.push(broker.acquire(&needs(run, 0, &dut.name, dut)));
    }
    assert!(matches!(held[0], Grant::Granted(_)), "{:?}", held[0]);
    assert!(matches!(held[1], Grant::Granted(_)), "{:?}", held[1]);
    assert!(matches!(held[2], Grant::Busy { .. }), "{:?}", held[2]);
    // r-ghost took `ir` (never stored: its console died before the run was).
    let ghost = book
        .with(|b| {
            let pre = b.request(
                Request::new(
                    "ir",
                    Holder::Run {
                        run_id: "r-ghost".into(),
                        lane: "box-1".into(),
                        task: None,
                    },
                    3_600_000,
                )
                .lease(60_000),
            )?;
            b.claim(pre.id).map(|_| pre.id)
        })
        .unwrap();
    let orphan = book
        .with(|b| {
            let pre = b.request(
                Request::new(
                    "stream",
                    Holder::Run {
                        run_id: "r-orphan".into(),
                        lane: "box-2".into(),
                        task: Some("t".into()),
                    },
                    3_600_000,
                )
                .mode(ReservationMode::Shared)
                .lease(60_000),
            )?;
            b.claim(pre.id).map(|_| pre.id)
        })
        .unwrap();
    // An operator's hold, booked for later: kept.
    let carol = book
        .hold("ir", "carol", Some(T0 + 7_200_000), 600_000, false)
        .unwrap();
    let dead: Vec<ResId> = broker.reservations_of("r-dead");
    assert_eq!(dead.len(), 1);
    // The console dies: nothing is released, the leases have not lapsed.
    book.shutdown();
    drop((broker, book));

    let book = open();
    let mut left: Vec<String> = book
        .reservations()
        .iter()
        .map(|v| format!("{} {}", v.resource, v.holder))
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["box-1 run r-live/box-1", "ir operator carol"],
        "what ended runs held is given back; the rest stays"
    );
    book.flush();
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    let stored: Vec<ResId> = db::live_reservations(&conn)
        .unwrap()
        .iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(stored.len(), 2);
    assert!(stored.contains(&carol.id));
    let given_back: Vec<u64> = db::events_since(&conn, 0, 1000)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "released" && e.reason.as_deref() == Some("holder_ended"))
        .map(|e| e.reservation_id)
        .collect();
    assert_eq!(given_back, [dead[0].0, ghost.0, orphan.0]);
    book.shutdown();
}
