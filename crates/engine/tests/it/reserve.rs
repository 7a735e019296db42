//! The reservation book as a service on a real SQLite file, the runs' broker on it, and
//! the custom order programs (the book's logic is tested in crates/core/tests/it/book.rs).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use testbay_engine::clock::ManualClock;
use testbay_engine::reserve::*;

use crate::support::T0;

fn op(name: &str) -> Holder {
    Holder::Operator { name: name.into() }
}

fn lane(run: &str, lane: &str) -> Holder {
    Holder::Run {
        run_id: run.into(),
        lane: lane.into(),
        task: None,
    }
}

fn specs() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec {
            name: "ir_blaster".into(),
            kind: ResourceKind::Exclusive,
            config: json!({"port": 1}),
        },
        ResourceSpec {
            name: "stream_server".into(),
            kind: ResourceKind::Shared { capacity: 2 },
            config: json!({"profile": "sd"}),
        },
    ]
}

fn clock_now(c: &ManualClock) -> i64 {
    use testbay_engine::clock::Clock;
    c.now_ms()
}

// ---- persistence: a real SQLite file ----

mod persisted {
    use super::*;
    use testbay_engine::store::{reservations as db, SqliteStore};

    fn open(dir: &std::path::Path, clock: &ManualClock) -> LiveBook {
        let store = SqliteStore::open_in(dir).unwrap();
        LiveBook::open(
            &store,
            Arc::new(clock.clone()),
            BookConfig::default(),
            specs(),
        )
        .unwrap()
    }

    #[test]
    fn restart_keeps_live_reservations_and_drops_expired_ones() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let (long, short, leased);
        {
            let live = open(dir.path(), &clock);
            long = live
                .request(ReservationRequest::new("ir_blaster", op("ann"), 3_600_000))
                .unwrap()
                .id;
            live.claim(long).unwrap();
            short = live
                .request(
                    ReservationRequest::new("stream_server", op("bob"), 1_000)
                        .mode(ReservationMode::Shared),
                )
                .unwrap()
                .id;
            live.claim(short).unwrap();
            leased = live
                .request(
                    ReservationRequest::new("stream_server", lane("r1", "stb-01"), 3_600_000)
                        .mode(ReservationMode::Shared)
                        .lease(30_000),
                )
                .unwrap()
                .id;
            live.claim(leased).unwrap();
            live.shutdown();
        }
        // The console was down for a minute: the short window ended and the lease lapsed.
        clock.advance(60_000);
        let live = open(dir.path(), &clock);
        let ids: Vec<_> = live.reservations().iter().map(|v| v.id).collect();
        assert_eq!(ids, vec![long]);
        let next = live
            .request(ReservationRequest::new("stream_server", op("c"), 10))
            .unwrap();
        assert!(next.id.0 > leased.0, "ids continue after a restart");
        live.flush();
        let store = SqliteStore::open_in(dir.path()).unwrap();
        let conn = rusqlite::Connection::open(store.path()).unwrap();
        let stored: Vec<_> = db::live_reservations(&conn)
            .unwrap()
            .iter()
            .map(|v| v.id)
            .collect();
        assert_eq!(stored, vec![long, next.id]);
        let events = db::events_since(&conn, 0, 100).unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "no gaps, no duplicates"
        );
        let reasons: Vec<&str> = events.iter().filter_map(|e| e.reason.as_deref()).collect();
        assert!(
            reasons.contains(&"window_ended") && reasons.contains(&"lease_lapsed"),
            "{reasons:?}"
        );
        // Ended reservations are in the history, for the timeline.
        let past = db::history(&conn, "stream_server", T0, T0 + 3_600_000).unwrap();
        let ended: Vec<_> = past
            .iter()
            .map(|(_, reason, v)| (v.id, reason.as_str()))
            .collect();
        assert_eq!(
            ended,
            vec![(short, "window_ended"), (leased, "lease_lapsed")]
        );
        live.shutdown();
    }

    #[test]
    fn a_second_process_holds_through_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let owner = open(dir.path(), &clock);
        let mut sub = owner.subscribe();
        let db_path = dir.path().join("testbay.db");
        assert_eq!(owner.location(), db_path.display().to_string());
        let other = BookHandle::open(
            &SqliteStore::open(&db_path).unwrap(),
            Arc::new(clock.clone()),
            BookConfig::default(),
            specs(),
        )
        .unwrap();
        assert!(
            matches!(other, BookHandle::Client(_)),
            "only one owner at a time"
        );
        let cmd = BookCommand::Hold {
            resource: "ir_blaster".into(),
            by: "ann".into(),
            from: None,
            duration_ms: 1_800_000,
            next_available: true,
            options: Default::default(),
        };
        let BookReply::Held { reservation } = other.call(cmd, T0).unwrap() else {
            panic!("not held")
        };
        assert_eq!(reservation.status, ReservationStatus::Held);
        // The owner's book has it, its subscribers saw it, and the store has it.
        let holds = owner.holds();
        assert_eq!(holds[0].holders[0].id, reservation.id);
        let ev = sub.try_recv().unwrap();
        assert_eq!(ev.reservation.id, reservation.id);
        assert_eq!(other.reservations().unwrap()[0].id, reservation.id);
        // A second hold waits behind it; a bad command gets a clear error.
        let BookReply::Held { reservation: w } = other
            .call(
                BookCommand::Hold {
                    resource: "ir_blaster".into(),
                    by: "bob".into(),
                    from: None,
                    duration_ms: 60_000,
                    next_available: true,
                    options: Default::default(),
                },
                T0,
            )
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (w.status, w.start),
            (ReservationStatus::Waiting, T0 + 1_800_000)
        );
        let BookReply::Error { message } = other
            .call(
                BookCommand::Hold {
                    resource: "ir_blastr".into(),
                    by: "bob".into(),
                    from: None,
                    duration_ms: 60_000,
                    next_available: true,
                    options: Default::default(),
                },
                T0,
            )
            .unwrap()
        else {
            panic!()
        };
        assert!(message.contains("did you mean `ir_blaster`"), "{message}");
        assert_eq!(
            other
                .call(BookCommand::Release { id: reservation.id }, T0)
                .unwrap(),
            BookReply::Released
        );
        let holds = owner.holds();
        assert_eq!(holds[0].holders.len(), 1);
        assert_eq!(holds[0].holders[0].id, w.id, "bob's waiting hold moved up");
        owner.shutdown();
        drop(owner);
        // Owner gone: the next process takes over.
        let next = BookHandle::open(
            &SqliteStore::open(&db_path).unwrap(),
            Arc::new(clock.clone()),
            BookConfig::default(),
            specs(),
        )
        .unwrap();
        assert!(matches!(next, BookHandle::Owner(_)));
        next.shutdown();
    }
}

// ---- the run's broker on the book ----

mod broker {
    use super::*;
    use serde_json::Map;

    use testbay_engine::pack::ResourceMode;
    use testbay_engine::plan::DutTarget;
    use testbay_engine::run::{Grant, ResourceBroker, TaskNeeds};

    use crate::support::Bed;

    const LAB: &str = "\
racks: [{name: rack-a, slots: 4}]
duts:
  - {name: stb-01, location: {rack: rack-a, slot: 1}}
  - {name: stb-02, location: {rack: rack-a, slot: 2}}
  - {name: stb-09, location: {rack: rack-a, slot: 3}, offline: true}
resources:
  - {name: ir_blaster, mode: exclusive}
  - {name: power_switch, mode: exclusive}
  - {name: stream_server, mode: shared, capacity: 2, config: {profile: sd}}
";

    /// A bed reserving through the book of [`LAB`] on a [`ManualClock`].
    fn fx() -> Bed {
        Bed::builder()
            .lab(LAB)
            .manual_clock(T0)
            .broker_config(BrokerConfig {
                lease_ms: 30_000,
                renew_thread: false,
                estimate_factor: 1.0,
                margin_ms: 0,
            })
            .build()
    }

    /// What this module asks of its bed.
    trait BrokerBed {
        fn now(&self) -> i64;
        fn begin(&self, run: &str, mode: ResourceMode, tasks: &[Task]) -> Result<(), String>;
        fn acquire(&self, run: &str, t: &Task) -> Grant;
        fn ids_on(&self, resource: &str) -> Vec<(ResId, ReservationStatus)>;
    }

    struct Task {
        item: usize,
        name: &'static str,
        lane: &'static str,
        dut: Option<DutTarget>,
        ex: Vec<String>,
        sh: Vec<String>,
        cfg: Map<String, serde_json::Value>,
        est: f64,
    }

    fn task(item: usize, lane: &'static str, ex: &[&str], sh: &[&str]) -> Task {
        Task {
            item,
            name: ["t0", "t1", "t2", "t3"][item % 4],
            lane,
            dut: None,
            ex: ex.iter().map(|s| s.to_string()).collect(),
            sh: sh.iter().map(|s| s.to_string()).collect(),
            cfg: Map::new(),
            est: 100.0,
        }
    }

    fn on(mut t: Task, dut: &str) -> Task {
        t.dut = Some(DutTarget {
            name: dut.into(),
            ..Default::default()
        });
        t
    }

    fn needs<'a>(run: &'a str, t: &'a Task, now: i64) -> TaskNeeds<'a> {
        TaskNeeds {
            run_id: run,
            item: t.item,
            task: t.name,
            lane: t.lane,
            dut: t.dut.as_ref(),
            ats: None,
            exclusive: &t.ex,
            shared: &t.sh,
            configs: &t.cfg,
            est_task_time: t.est,
            now,
        }
    }

    impl BrokerBed for Bed {
        fn now(&self) -> i64 {
            clock_now(self.clock())
        }
        fn begin(&self, run: &str, mode: ResourceMode, tasks: &[Task]) -> Result<(), String> {
            let n: Vec<_> = tasks.iter().map(|t| needs(run, t, self.now())).collect();
            self.broker().begin_run(run, mode, &n)
        }
        fn acquire(&self, run: &str, t: &Task) -> Grant {
            self.broker().acquire(&needs(run, t, self.now()))
        }
        fn ids_on(&self, resource: &str) -> Vec<(ResId, ReservationStatus)> {
            self.book()
                .reservations()
                .into_iter()
                .filter(|v| &*v.resource == resource)
                .map(|v| (v.id, v.status))
                .collect()
        }
    }

    fn granted(g: Grant) -> Vec<testbay_engine::run::Holding> {
        match g {
            Grant::Granted(h) => h,
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    #[test]
    fn per_task_separate_queues_a_busy_resource_until_it_frees() {
        let f = fx();
        let a = task(0, "l1", &["ir_blaster"], &[]);
        f.begin(
            "r1",
            ResourceMode::PerTaskSeparate,
            std::slice::from_ref(&a),
        )
        .unwrap();
        let h = granted(f.acquire("r1", &a));
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].until_ms, Some(T0 + 100_000));
        let b = task(0, "l1", &["ir_blaster"], &[]);
        f.begin(
            "r2",
            ResourceMode::PerTaskSeparate,
            std::slice::from_ref(&b),
        )
        .unwrap();
        match f.acquire("r2", &b) {
            Grant::Busy { until, reason } => {
                assert_eq!(until, T0 + 100_000);
                assert!(
                    reason.contains("ir_blaster held by run r1/l1/t0"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            f.ids_on("ir_blaster").len() == 1,
            "the busy attempt left nothing behind"
        );
        f.broker().release("r1", 0, &h);
        granted(f.acquire("r2", &b));
    }

    #[test]
    fn per_task_combine_holds_common_resources_once() {
        let f = fx();
        let tasks = [
            task(0, "l1", &["ir_blaster"], &[]),
            task(1, "l1", &["ir_blaster"], &[]),
            task(2, "l1", &[], &[]),
        ];
        f.begin("r1", ResourceMode::PerTaskCombine, &tasks).unwrap();
        let h0 = granted(f.acquire("r1", &tasks[0]));
        f.broker().release("r1", 0, &h0);
        assert_eq!(f.ids_on("ir_blaster").len(), 1, "kept: t1 still needs it");
        let h1 = granted(f.acquire("r1", &tasks[1]));
        assert_eq!(
            h0[0].reservation_id, h1[0].reservation_id,
            "the same reservation"
        );
        f.broker().release("r1", 1, &h1);
        assert!(
            f.ids_on("ir_blaster").is_empty(),
            "released once no later task needs it"
        );
    }

    #[test]
    fn all_mode_books_everything_before_the_first_task() {
        let f = fx();
        // Someone holds power_switch for 50 s.
        let other = task(0, "x", &["power_switch"], &[]);
        let mut short = other;
        short.est = 50.0;
        f.begin(
            "r0",
            ResourceMode::PerTaskSeparate,
            std::slice::from_ref(&short),
        )
        .unwrap();
        granted(f.acquire("r0", &short));
        let tasks = [
            task(0, "l1", &["ir_blaster"], &["stream_server"]),
            task(1, "l1", &["power_switch"], &[]),
        ];
        f.begin("r1", ResourceMode::All, &tasks).unwrap();
        // Booked up front for the lane's whole estimate (200 s).
        let ir = f.ids_on("ir_blaster");
        assert_eq!(ir.len(), 1);
        assert_eq!(ir[0].1, ReservationStatus::Booked);
        assert_eq!(f.ids_on("power_switch")[1].1, ReservationStatus::Waiting);
        let h = granted(f.acquire("r1", &tasks[0]));
        assert_eq!(h[0].reservation_id, Some(ir[0].0.to_string()));
        assert_eq!(h[0].until_ms, Some(T0 + 200_000));
        // Another run cannot take what r1 booked, even before r1 claims it.
        let intruder = task(0, "l9", &["ir_blaster"], &[]);
        f.begin(
            "r2",
            ResourceMode::PerTaskSeparate,
            std::slice::from_ref(&intruder),
        )
        .unwrap();
        assert!(matches!(f.acquire("r2", &intruder), Grant::Busy { .. }));
        // power_switch frees at +50 s: before that the task waits, then it is granted.
        match f.acquire("r1", &tasks[1]) {
            Grant::Busy { until, .. } => assert_eq!(until, T0 + 50_000),
            other => panic!("{other:?}"),
        }
        f.clock().set(T0 + 50_000);
        let h = granted(f.acquire("r1", &tasks[1]));
        assert_eq!(h[0].resource, "power_switch");
        f.broker().end_run("r1");
        assert!(f.ids_on("ir_blaster").is_empty() && f.ids_on("stream_server").is_empty());
    }

    #[test]
    fn two_runs_wanting_one_dut_queue_and_the_lane_holds_it() {
        let f = fx();
        let a = [
            on(task(0, "stb-01", &[], &[]), "stb-01"),
            on(task(1, "stb-01", &[], &[]), "stb-01"),
        ];
        let b = [on(task(0, "stb-01", &[], &[]), "stb-01")];
        f.begin("ra", ResourceMode::PerTaskSeparate, &a).unwrap();
        f.begin("rb", ResourceMode::PerTaskSeparate, &b).unwrap();
        let h = granted(f.acquire("ra", &a[0]));
        assert_eq!((h[0].resource.as_str(), h[0].exclusive), ("stb-01", true));
        match f.acquire("rb", &b[0]) {
            Grant::Busy { until, reason } => {
                assert_eq!(until, T0 + 200_000, "the lane's whole estimate");
                assert!(reason.contains("stb-01 held by run ra/stb-01"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        f.broker().release("ra", 0, &h);
        assert!(
            matches!(f.acquire("rb", &b[0]), Grant::Busy { .. }),
            "still ra's until its lane is done"
        );
        let h1 = granted(f.acquire("ra", &a[1]));
        assert_eq!(h1[0].reservation_id, h[0].reservation_id);
        f.broker().release("ra", 1, &h1);
        let hb = granted(f.acquire("rb", &b[0]));
        assert_eq!(hb[0].resource, "stb-01");
    }

    #[test]
    fn offline_duts_unknown_and_misused_resources_are_refused() {
        let f = fx();
        let t = on(task(0, "stb-09", &[], &[]), "stb-09");
        let err = f
            .begin("r1", ResourceMode::All, std::slice::from_ref(&t))
            .unwrap_err();
        assert!(err.contains("stb-09 is offline"), "{err}");
        let t = task(0, "l1", &["ir_blastr"], &[]);
        f.begin(
            "r2",
            ResourceMode::PerTaskSeparate,
            std::slice::from_ref(&t),
        )
        .unwrap();
        match f.acquire("r2", &t) {
            Grant::Unavailable(m) => assert!(m.contains("did you mean `ir_blaster`"), "{m}"),
            other => panic!("{other:?}"),
        }
        let t = task(0, "l1", &[], &["ir_blaster"]);
        assert!(
            matches!(f.acquire("r2", &t), Grant::Unavailable(m) if m.contains("cannot be shared"))
        );
        let t = task(0, "l1", &["ir_blastr"], &[]);
        assert!(
            f.begin("r3", ResourceMode::All, std::slice::from_ref(&t))
                .is_err(),
            "all mode refuses up front"
        );
    }

    #[test]
    fn shared_capacity_and_requested_configuration() {
        let f = fx();
        let mut t = task(0, "l1", &[], &["stream_server"]);
        t.cfg.insert("stream_server".into(), json!({"bitrate": 8}));
        let runs = ["r1", "r2", "r3"];
        for r in &runs {
            f.begin(r, ResourceMode::PerTaskSeparate, std::slice::from_ref(&t))
                .unwrap();
        }
        let h = granted(f.acquire("r1", &t));
        assert_eq!(
            h[0].config,
            json!({"profile": "sd", "bitrate": 8}),
            "resource config overlaid with the request"
        );
        assert!(!h[0].exclusive);
        granted(f.acquire("r2", &t));
        assert!(
            matches!(f.acquire("r3", &t), Grant::Busy { .. }),
            "capacity 2"
        );
        // All or nothing: a task needing a busy resource gives back what it got.
        let both = task(1, "l1", &["ir_blaster"], &["stream_server"]);
        assert!(matches!(f.acquire("r3", &both), Grant::Busy { .. }));
        assert!(f.ids_on("ir_blaster").is_empty());
    }

    #[test]
    fn leases_lapse_unless_the_broker_renews_them() {
        let f = fx();
        let t = task(0, "l1", &["ir_blaster"], &[]);
        f.begin(
            "r1",
            ResourceMode::PerTaskSeparate,
            std::slice::from_ref(&t),
        )
        .unwrap();
        f.begin(
            "r2",
            ResourceMode::PerTaskSeparate,
            std::slice::from_ref(&t),
        )
        .unwrap();
        granted(f.acquire("r1", &t));
        for _ in 0..4 {
            f.clock().advance(20_000);
            f.broker().renew_all();
            assert!(
                matches!(f.acquire("r2", &t), Grant::Busy { .. }),
                "renewed: still r1's"
            );
        }
        // The console holding r1 dies: nobody renews.
        f.clock().advance(30_000);
        granted(f.acquire("r2", &t));
    }

    #[test]
    fn renewal_extends_a_window_the_task_outlives() {
        let f = fx();
        let mut t = task(0, "l1", &["ir_blaster"], &[]);
        t.est = 40.0;
        f.begin(
            "r1",
            ResourceMode::PerTaskSeparate,
            std::slice::from_ref(&t),
        )
        .unwrap();
        let h = granted(f.acquire("r1", &t));
        assert_eq!(h[0].until_ms, Some(T0 + 40_000));
        for _ in 0..5 {
            f.clock().advance(20_000);
            f.broker().renew_all();
        }
        let v = f.book().reservations();
        assert_eq!(v.len(), 1, "still held at +100 s");
        assert!(v[0].end > T0 + 100_000);
    }
}

// ---- two real runs racing for one DUT ----

mod race {
    use super::*;

    use testbay_engine::outcome::{RunStatus, PASSED};
    use testbay_engine::plan::DutTarget;
    use testbay_engine::run::LaunchRequest;

    use crate::support::{demo_lab, Bed};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_runs_on_one_dut_take_turns_and_never_overlap() {
        let f = Bed::builder()
            .lab(&std::fs::read_to_string(demo_lab()).unwrap())
            .broker_config(BrokerConfig {
                lease_ms: 30_000,
                renew_thread: true,
                estimate_factor: 1.0,
                margin_ms: 200,
            })
            .build();
        let (pack, data, mgr, store, book) = (&f.pack, &f.data, &f.mgr, &f.store, f.book());
        let log = f.root().join("dut.log");
        std::fs::create_dir_all(pack.join("tasks")).unwrap();
        std::fs::write(
            pack.join("pack.yaml"),
            "name: race\nversion: '1'\ngroups:\n  g:\n    tests: [work]\n",
        )
        .unwrap();
        std::fs::write(
            pack.join("tasks/work.yaml"),
            "name: work\nrun: [bash, work.sh]\nest_task_time: 1\nmax_resource_retry: 1000\nexclusive_resources: [ir_blaster]\n",
        )
        .unwrap();
        std::fs::write(
            pack.join("tasks/work.sh"),
            format!(
                "echo \"$TESTBAY_RUN_ID start $(date +%s%N)\" >> {log}\nsleep 0.7\ncp \"$TESTBAY_PARAMS\" \"$TESTBAY_ARTIFACTS/params.json\"\necho \"$TESTBAY_RUN_ID end $(date +%s%N)\" >> {log}\n",
                log = log.display()
            ),
        )
        .unwrap();
        let req = || LaunchRequest {
            pack_dir: pack.display().to_string(),
            duts: vec![DutTarget {
                name: "stb-01".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let a = mgr.launch(req()).unwrap();
        let b = mgr.launch(req()).unwrap();
        assert_eq!(mgr.wait(&a).await.unwrap(), RunStatus::Completed);
        assert_eq!(mgr.wait(&b).await.unwrap(), RunStatus::Completed);
        for id in [&a, &b] {
            let t = &store.run_tasks(id).unwrap()[0];
            assert_eq!(t.result.as_deref(), Some(PASSED), "{t:?}");
        }
        // The DUT log: one run's start..end never overlaps the other's.
        let text = std::fs::read_to_string(&log).unwrap();
        let mut spans: HashMap<String, (u128, u128)> = HashMap::new();
        for line in text.lines() {
            let parts: Vec<&str> = line.split(' ').collect();
            let e = spans.entry(parts[0].to_string()).or_default();
            let t: u128 = parts[2].parse().unwrap();
            if parts[1] == "start" {
                e.0 = t
            } else {
                e.1 = t
            }
        }
        let (sa, sb) = (spans[&a], spans[&b]);
        assert!(sa.1 <= sb.0 || sb.1 <= sa.0, "overlap: {sa:?} {sb:?}");
        // Each task's params file names its DUT reservation and the resource it held.
        let params: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                data.join("runs")
                    .join(&a)
                    .join("stb-01/work/artifacts/params.json"),
            )
            .unwrap(),
        )
        .unwrap();
        let res: Vec<&str> = params["reservations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["resource"].as_str().unwrap())
            .collect();
        assert_eq!(res, ["stb-01", "ir_blaster"]);
        assert!(params["reservations"][1]["config"]["protocol"] == "rc6");
        // Everything was given back.
        book.flush();
        let left = book.reservations();
        assert!(left.is_empty(), "{left:#?}");
        book.shutdown();
    }
}

// ---- custom_* ordering program ----

mod custom_order {
    use std::time::Duration;

    use testbay_engine::pack::{self, ResourceMode};
    use testbay_engine::run::order::{custom_order, queue, OrderError};

    fn pack_with(script: &str) -> (tempfile::TempDir, pack::LoadedPack) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::create_dir_all(p.join("tasks")).unwrap();
        std::fs::write(
            p.join("pack.yaml"),
            "name: ord\nversion: '1'\nscheduler: [python3, order.py]\ngroups:\n  g1:\n    tests: [a, b, c]\n  g2:\n    tests: [a]\n",
        )
        .unwrap();
        for t in ["a", "b", "c"] {
            std::fs::write(
                p.join(format!("tasks/{t}.yaml")),
                format!("name: {t}\nrun: [bash, -c, 'exit 0']\nest_task_time: 3\nexclusive_resources: [ir_blaster]\n"),
            )
            .unwrap();
        }
        std::fs::write(p.join("order.py"), script).unwrap();
        let loaded = pack::load(p).unwrap_or_else(|e| panic!("{e}"));
        (dir, loaded)
    }

    const REVERSE: &str = "import json, sys\nq = json.load(sys.stdin)\nassert q['resource_mode'] == 'custom_separate'\nprint(json.dumps([e['id'] for e in reversed(q['queue'])]))\n";

    #[test]
    fn the_program_gets_the_queue_and_its_order_is_used() {
        let (_d, p) = pack_with(REVERSE);
        let q = queue(&p, &[]);
        assert_eq!(
            q.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["g1/a", "g1/b", "g1/c", "g2/a"]
        );
        assert_eq!(q[0].exclusive_resources, ["ir_blaster"]);
        let order = custom_order(
            &p,
            ResourceMode::CustomSeparate,
            &q,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(order["g1"], ["c", "b", "a"]);
        assert_eq!(order["g2"], ["a"]);
    }

    #[test]
    fn bad_programs_get_clear_errors() {
        let timeout = Duration::from_secs(10);
        let cases = [
            (
                "print('[\"g1/a\", \"g1/b\", \"g1/cc\", \"g2/a\"]')\n",
                "unknown queue id `g1/cc` (did you mean `g1/c`?)",
            ),
            (
                "print('[\"g1/a\", \"g1/a\", \"g1/b\", \"g1/c\", \"g2/a\"]')\n",
                "queue id `g1/a` twice",
            ),
            ("print('[\"g1/a\"]')\n", "without `g1/b`"),
            ("print('first a then b')\n", "not a JSON list"),
            (
                "import sys\nsys.stderr.write('no idea')\nsys.exit(3)\n",
                "no idea",
            ),
        ];
        for (script, want) in cases {
            let (_d, p) = pack_with(script);
            let err =
                custom_order(&p, ResourceMode::CustomAll, &queue(&p, &[]), timeout).unwrap_err();
            assert!(err.to_string().contains(want), "{err} lacks {want:?}");
        }
        let (_d, p) = pack_with("import time\ntime.sleep(30)\n");
        let err = custom_order(
            &p,
            ResourceMode::CustomAll,
            &queue(&p, &[]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, OrderError::Timeout { .. }), "{err}");
    }
}
