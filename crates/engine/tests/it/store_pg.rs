//! The PostgreSQL store: the contract suite's second backend (each test a fresh
//! database of the shared throwaway cluster), and what is PostgreSQL's own: migrations
//! run once however many servers open at once, a read stopped at the read limit, a
//! server restart survived.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::Duration;

use testbay_engine::store::postgres::migrations;
use testbay_engine::store::*;

use super::store_contract::{new_run, rows, Backend};
use crate::support::T0;

/// PostgreSQL stores for the contract suite: a data directory stands for one database,
/// created the first time the directory is opened.
pub struct PgBackend;

fn url_for(dir: &Path) -> String {
    static DBS: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let mut dbs = DBS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    dbs.entry(dir.to_path_buf())
        .or_insert_with(|| fresh_db("contract"))
        .clone()
}

fn fresh_db(prefix: &str) -> String {
    testbay_pgtest::shared()
        .expect("a throwaway PostgreSQL (Debian's postgresql package)")
        .fresh_db(prefix)
        .unwrap()
}

impl Backend for PgBackend {
    type S = PgStore;
    fn open(&self, dir: &Path) -> PgStore {
        PgStore::open(&url_for(dir)).unwrap()
    }
    fn open_owned_by(&self, dir: &Path, owner: RunOwner) -> PgStore {
        PgStore::open(&url_for(dir)).unwrap().owned_by(owner)
    }
}

#[test]
fn migrations_apply_once_even_when_servers_open_at_once() {
    let url = fresh_db("migrate");
    let barrier = Arc::new(Barrier::new(4));
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                PgStore::open(&url).map(|s| s.schema_version().unwrap())
            })
        })
        .collect();
    for h in opened {
        assert_eq!(
            h.join().unwrap().unwrap() as usize,
            migrations::MIGRATIONS.len()
        );
    }
    let s = PgStore::open(&url).unwrap();
    s.insert_run(&new_run("r1", "p", T0), &rows(2)).unwrap();
    drop(s);
    // Opened again: nothing applied twice, the data kept.
    let s = PgStore::open(&url).unwrap();
    assert_eq!(
        s.schema_version().unwrap() as usize,
        migrations::MIGRATIONS.len()
    );
    assert_eq!(s.get_run("r1").unwrap().counts.total, 2);
}

#[test]
fn a_read_past_the_read_limit_stops_with_timeout() {
    let url = fresh_db("timeout");
    let s = PgStore::open(&url).unwrap();
    // A run whose listing search walks a table big enough to take longer than 1 ms.
    let many: Vec<NewTaskRow> = rows(20_000);
    s.insert_run(&new_run("big", "p", T0), &many).unwrap();
    for i in 0..20 {
        s.insert_run(&new_run(&format!("r{i}"), "p", T0 + i), &rows(2000))
            .unwrap();
    }
    s.set_read_limit(Duration::from_millis(1));
    let q = RunQuery {
        text: Some("no such text anywhere".into()),
        ..Default::default()
    };
    let err = s.list_runs(&q).unwrap_err();
    assert!(matches!(err, StoreError::Timeout { limit_ms: 1 }), "{err}");
    assert_eq!(err.code(), "timeout");
    // The next read with room to run works: the connection went back usable.
    s.set_read_limit(Duration::from_secs(30));
    assert_eq!(s.list_runs(&q).unwrap().total, 0);
    assert_eq!(s.get_run("big").unwrap().counts.total, 20_000);
}

#[test]
fn a_postgresql_restart_loses_nothing_committed_and_the_store_reconnects() {
    let cluster = testbay_pgtest::Cluster::start().unwrap();
    let url = cluster.fresh_db("restart").unwrap();
    let s = PgStore::open(&url).unwrap();
    let ids = s.insert_run(&new_run("r1", "p", T0), &rows(3)).unwrap();
    s.finish_task(
        ids[0],
        &TaskFinish {
            result: "Passed".into(),
            finished_ms: T0 + 1,
            ..Default::default()
        },
    )
    .unwrap();
    s.commit_now().unwrap();
    let mut books = s.open_book_store().unwrap();
    let inbox = books.inbox_post(T0, r#"{"cmd":"x"}"#).unwrap();

    cluster.kill();
    // While the server is down, calls fail with a database error, not a hang or a panic
    // (a backend may answer a last time before it notices its postmaster died).
    let err = (0..100)
        .find_map(|_| {
            let r = s.get_run("r1").err();
            if r.is_none() {
                std::thread::sleep(Duration::from_millis(20));
            }
            r
        })
        .expect("reads fail while the server is down");
    assert_eq!(err.code(), "database", "{err}");
    cluster.restart().unwrap();

    // The pool drops the dead connections; the writer takes a new one.
    let run = s.get_run("r1").unwrap();
    assert_eq!(run.counts.done, 1, "the committed result is kept");
    assert_eq!(
        s.run_tasks("r1").unwrap()[0].result.as_deref(),
        Some("Passed")
    );
    s.set_run_status(
        "r1",
        testbay_engine::outcome::RunStatus::Completed,
        None,
        T0 + 2,
    )
    .unwrap();
    s.insert_run(&new_run("r2", "p", T0 + 3), &rows(1)).unwrap();
    assert_eq!(s.list_runs(&RunQuery::default()).unwrap().total, 2);
    assert_eq!(books.inbox_pending().unwrap()[0].0, inbox);
    books.write_events(&[]).unwrap();
}

/// The book's ownership is a session advisory lock: one owner per database at a time,
/// named for the others, given up when dropped.
#[test]
fn the_book_has_one_owner_per_database() {
    let url = fresh_db("booklock");
    let a = PgStore::open(&url).unwrap();
    let b = PgStore::open(&url).unwrap();
    assert_eq!(b.book_owner(), None);
    let lock = a.lock_book("testbay serve (pid 1)").unwrap().expect("free");
    assert!(b.lock_book("other").unwrap().is_none(), "taken");
    assert_eq!(b.book_owner().as_deref(), Some("testbay serve (pid 1)"));
    drop(lock);
    // The session closes asynchronously: wait for the server to let go.
    let started = std::time::Instant::now();
    let lock = loop {
        if let Some(l) = b.lock_book("second").unwrap() {
            break l;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never released"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(a.book_owner().as_deref(), Some("second"));
    drop(lock);
}

/// A PostgreSQL error travels boxed with the backend-neutral code.
#[test]
fn postgres_errors_travel_boxed_with_a_stable_code() {
    let s = PgStore::open(&fresh_db("errors")).unwrap();
    s.insert_run(&new_run("r1", "p", T0), &rows(1)).unwrap();
    let err = s.insert_run(&new_run("r1", "p", T0), &rows(1)).unwrap_err();
    assert_eq!(err.code(), "database", "{err}");
    let StoreError::Database(source) = &err else {
        panic!("{err:?}")
    };
    assert!(
        source.downcast_ref::<tokio_postgres::Error>().is_some(),
        "{err:?}"
    );
    assert_eq!(
        s.get_run("r1").unwrap().counts.total,
        1,
        "nothing half-written"
    );
}

/// A table lock taken by another session: reads of `runs` wait behind it until stopped.
struct Locker {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
}

impl Locker {
    fn lock_runs(url: &str) -> Locker {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client
                .batch_execute("BEGIN; LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
                .await
                .unwrap();
            client
        });
        Locker { rt, client }
    }

    /// Wait until a session waits for the lock.
    fn until_a_read_waits(&self) {
        let started = std::time::Instant::now();
        loop {
            let waiting: i64 = self.rt.block_on(async {
                self.client
                    .query_one(
                        "SELECT count(*) FROM pg_stat_activity
                         WHERE wait_event_type = 'Lock' AND datname = current_database()",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0)
            });
            if waiting > 0 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no read waited"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `close_reads` stops a read in flight (cancelled in the database: `Closing`), and a
/// read waiting past the read limit ends `Timeout`; writes go on meanwhile.
#[test]
fn close_reads_cancels_a_read_in_flight_and_a_waiting_read_times_out() {
    let url = fresh_db("cancel");
    let s = Arc::new(PgStore::open(&url).unwrap());
    s.insert_run(&new_run("r1", "p", T0), &rows(1)).unwrap();

    let locker = Locker::lock_runs(&url);
    s.set_read_limit(Duration::from_millis(300));
    let err = s.get_run("r1").unwrap_err();
    assert!(
        matches!(err, StoreError::Timeout { limit_ms: 300 }),
        "{err}"
    );

    s.set_read_limit(Duration::from_secs(600));
    let reader = {
        let s = s.clone();
        std::thread::spawn(move || s.get_run("r1"))
    };
    locker.until_a_read_waits();
    s.close_reads();
    let err = reader.join().unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Closing), "{err}");
    drop(locker);
    assert!(matches!(s.get_run("r1"), Err(StoreError::Closing)));
    s.set_run_status(
        "r1",
        testbay_engine::outcome::RunStatus::Completed,
        None,
        T0,
    )
    .unwrap();
    let again = PgStore::open(&url).unwrap();
    assert_eq!(
        again.get_run("r1").unwrap().status,
        testbay_engine::outcome::RunStatus::Completed
    );
}

#[test]
fn users_tokens_and_the_audit_log_in_postgres() {
    let store = PgStore::open(&fresh_db("access")).unwrap();
    let token = crate::access::users_tokens_and_the_audit_log(&store);
    let users = store.open_access_store().unwrap().users().unwrap();
    assert_eq!(users.len(), 1);
    assert_ne!(
        users[0].token_id,
        token[..8],
        "the id is of the hash, not the token"
    );
}

#[test]
fn retention_in_postgres_spares_kept_runs_and_removes_the_rest_with_their_rows() {
    let store = PgStore::open(&fresh_db("retention")).unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        let run = new_run(&format!("r{i}"), "p", T0 + i);
        store.insert_run(&run, &rows(2)).unwrap();
        store
            .set_run_status(
                &run.id,
                testbay_engine::outcome::RunStatus::Completed,
                None,
                T0 + i,
            )
            .unwrap();
        ids.push(run.id);
    }
    let going = new_run("going", "p", T0 + 3);
    store.insert_run(&going, &rows(1)).unwrap();
    store
        .set_run_status(
            &going.id,
            testbay_engine::outcome::RunStatus::Running,
            None,
            T0,
        )
        .unwrap();
    let r = store.open_retention_store().unwrap();
    r.set_keep(&ids[1], true, T0).unwrap();
    assert!(r.is_kept(&ids[1]).unwrap());
    assert!(matches!(
        r.set_keep("nope", true, T0),
        Err(StoreError::RunNotFound(_))
    ));
    let all: Vec<String> = r
        .candidates(Some(i64::MAX), None, 100)
        .unwrap()
        .into_iter()
        .map(|c| c.run_id)
        .collect();
    assert_eq!(
        all,
        [ids[0].clone(), ids[2].clone()],
        "neither kept nor running"
    );
    assert!(r.remove_run(&ids[0]).unwrap());
    assert!(!r.remove_run(&ids[1]).unwrap(), "kept");
    assert!(!r.remove_run(&going.id).unwrap(), "running");
    assert!(matches!(
        store.get_run(&ids[0]),
        Err(StoreError::RunNotFound(_))
    ));
    assert!(store
        .run_tasks(&ids[0])
        .map(|t| t.is_empty())
        .unwrap_or(true));
    assert!(r.size().unwrap().file_bytes > 0);
    r.reclaim().unwrap();
}
