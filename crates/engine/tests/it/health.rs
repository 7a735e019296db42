//! Device health checks: a console with a lab whose DUT model has a health check, real
//! health runs (a task that fails until a marker file exists), a real SQLite file, and
//! virtual time for when checks fall due.

use std::path::Path;
use std::sync::Arc;

use testbay_engine::api::{
    Console, ConsoleOptions, ConsolePaths, ErrorCode, Health, LaunchSpec, LocalConsole, Request,
    Response, WebhookEvent,
};
use testbay_engine::clock::ManualClock;
use testbay_engine::outcome::RunStatus;

use crate::support::{run_end, write, T0};

const LAB: &str = "name: lab\nracks:\n  - name: rack-a\n    slots: 2\nduts:\n  - name: stb-1\n    model: TP-4000\n    location: {rack: rack-a, slot: 1}\n  - name: stb-2\n    model: OTHER\n    location: {rack: rack-a, slot: 2}\nhealth_checks:\n  - model: TP-4000\n    pack: health\n    group: basic\n    interval: 3600\n    after_failures: 2\n";

fn setup(dir: &Path) -> std::path::PathBuf {
    let marker = dir.join("healthy.marker");
    let health = dir.join("packs/health");
    write(
        &health.join("pack.yaml"),
        "name: health\nversion: 1.0.0\ngroups:\n  basic:\n    tests: [ping]\n",
    );
    write(
        &health.join("tasks/ping.yaml"),
        "name: ping\nrun: [bash, ping.sh]\nest_task_time: 1\n",
    );
    write(
        &health.join("tasks/ping.sh"),
        &format!(
            "[ -e '{}' ] || {{ echo no answer; exit 1; }}\n",
            marker.display()
        ),
    );
    // A run whose task fails on infrastructure (Errored).
    let work = dir.join("packs/work");
    write(
        &work.join("pack.yaml"),
        "name: work\nversion: 1.0.0\ngroups:\n  g:\n    tests: [flop]\n",
    );
    write(
        &work.join("tasks/flop.yaml"),
        "name: flop\nrun: [bash, flop.sh]\nest_task_time: 1\n",
    );
    write(
        &work.join("tasks/flop.sh"),
        "echo '{\"result\": \"Errored\", \"metadata\": {\"message\": \"no signal\"}}' > \"$TESTBAY_RESULT\"\n",
    );
    write(&dir.join("lab.yaml"), LAB);
    // The machine running the tests is often busy: a queued health run must not wait 30 s
    // for the dispatch threshold.
    write(
        &dir.join("data/settings.yaml"),
        "dispatch_cpu_threshold: 100\n",
    );
    marker
}

async fn ended(
    c: &LocalConsole,
    events: &mut tokio::sync::broadcast::Receiver<testbay_engine::api::Event>,
    run_id: &str,
) -> RunStatus {
    let status = run_end(events, run_id).await;
    // The health service settles the end on its own task: wait until it has.
    for _ in 0..3000 {
        let Response::DutHealth(r) = c
            .dispatch(Request::DutHealth {
                dut: "stb-1".into(),
            })
            .await
            .unwrap()
        else {
            panic!()
        };
        if !r.checking {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    status
}

async fn report(c: &LocalConsole) -> testbay_engine::api::HealthReport {
    match c
        .dispatch(Request::DutHealth {
            dut: "stb-1".into(),
        })
        .await
        .unwrap()
    {
        Response::DutHealth(r) => r,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_check_makes_a_dut_bad_and_a_passing_one_restores_it() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = setup(tmp.path());
    let clock = Arc::new(ManualClock::new(T0));
    let c = LocalConsole::open_with(
        ConsolePaths {
            data_dir: tmp.path().join("data"),
            pack_roots: vec![tmp.path().join("packs")],
            lab_file: Some(tmp.path().join("lab.yaml")),
        },
        ConsoleOptions {
            clock: clock.clone(),
            watch_packs: false,
            health_checks: false,
            ..Default::default()
        },
    )
    .unwrap();
    // dut_bad goes to the webhooks (a receiver that is not there: the delivery is kept).
    c.dispatch(Request::AddWebhook {
        url: "http://127.0.0.1:9/hook".into(),
        events: vec![WebhookEvent::DutBad],
        secret: None,
        enabled: true,
    })
    .await
    .unwrap();
    let mut events = c.subscribe();

    // Never checked: due for stb-1 (its model has a check), not for stb-2.
    let runs = c.health_tick().await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(report(&c).await.checking);
    assert_eq!(ended(&c, &mut events, &runs[0]).await, RunStatus::Completed);
    let r = report(&c).await;
    assert_eq!(r.health.health, Health::Bad, "{r:?}");
    assert_eq!(r.health.run_id.as_deref(), Some(runs[0].as_str()));
    assert!(
        r.health
            .reason
            .as_deref()
            .unwrap()
            .contains("health check failed"),
        "{r:?}"
    );
    assert_eq!(r.history.len(), 1);

    // A bad DUT: launches are refused with a code, unless forced; the rack view shows it.
    let spec = LaunchSpec {
        pack: "work".into(),
        duts: vec!["stb-1".into()],
        ..Default::default()
    };
    let e = c.dispatch(Request::Launch(spec.clone())).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::DutBad, "{e}");
    let Response::GetLab(lab) = c.dispatch(Request::GetLab).await.unwrap() else {
        panic!()
    };
    assert!(lab
        .health
        .iter()
        .any(|h| h.dut == "stb-1" && h.health == Health::Bad));
    // Recorded by the webhook service's task, moments later.
    let mut told = false;
    for _ in 0..3000 {
        let Response::WebhookDeliveries(d) = c
            .dispatch(Request::WebhookDeliveries {
                webhook_id: None,
                limit: None,
            })
            .await
            .unwrap()
        else {
            panic!()
        };
        told = d
            .iter()
            .any(|d| d.event == WebhookEvent::DutBad && d.body.contains("stb-1"));
        if told {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(told, "dut_bad went to the webhook");

    // Not due again before its interval.
    assert!(c.health_tick().await.is_empty());

    // Two forced runs failing on infrastructure make the check due at once.
    for _ in 0..2 {
        let Response::Launch { run_id, .. } = c
            .dispatch(Request::Launch(LaunchSpec {
                force: true,
                ..spec.clone()
            }))
            .await
            .unwrap()
        else {
            panic!()
        };
        ended(&c, &mut events, &run_id).await;
    }
    let mut counted = report(&c).await;
    for _ in 0..3000 {
        if counted.health.infra_failures >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        counted = report(&c).await;
    }
    assert_eq!(counted.health.infra_failures, 2, "{counted:?}");
    // The DUT is fixed; the early check passes and restores it.
    std::fs::write(&marker, "").unwrap();
    let runs = c.health_tick().await;
    assert_eq!(runs.len(), 1, "due after 2 infrastructure failures");
    ended(&c, &mut events, &runs[0]).await;
    let r = report(&c).await;
    assert_eq!(r.health.health, Health::Good, "{r:?}");
    assert_eq!(r.health.infra_failures, 0);
    let h: Vec<Health> = r.history.iter().map(|h| h.health).collect();
    assert_eq!(h, [Health::Good, Health::Bad], "newest first");
    assert!(c.health_tick().await.is_empty(), "just checked");

    // An hour later it is due again (virtual time).
    clock.advance(3_600_000);
    let runs = c.health_tick().await;
    assert_eq!(runs.len(), 1);
    ended(&c, &mut events, &runs[0]).await;
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restores_a_bad_dut_with_a_note() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let c = LocalConsole::open_with(
        ConsolePaths {
            data_dir: tmp.path().join("data"),
            pack_roots: vec![tmp.path().join("packs")],
            lab_file: Some(tmp.path().join("lab.yaml")),
        },
        ConsoleOptions {
            clock: Arc::new(ManualClock::new(T0)),
            watch_packs: false,
            health_checks: false,
            ..Default::default()
        },
    )
    .unwrap();
    let mut events = c.subscribe();
    let Response::CheckDut { run_id } = c
        .dispatch(Request::CheckDut {
            dut: "stb-1".into(),
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    ended(&c, &mut events, &run_id).await;
    assert_eq!(report(&c).await.health.health, Health::Bad);
    let e = c
        .dispatch(Request::RestoreDut {
            dut: "stb-1".into(),
            note: " ".into(),
        })
        .await
        .unwrap_err();
    assert!(e.message.starts_with("note:"), "{e}");
    let Response::RestoreDut(r) = c
        .dispatch(Request::RestoreDut {
            dut: "stb-1".into(),
            note: "reseated the HDMI cable".into(),
        })
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(r.health.health, Health::Good);
    assert_eq!(
        r.history[0].note.as_deref(),
        Some("reseated the HDMI cable")
    );
    let e = c
        .dispatch(Request::CheckDut {
            dut: "stb-2".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code,
        ErrorCode::NotFound,
        "stb-2's model has no check: {e}"
    );
    c.shutdown();
}

/// A health check queued behind an operator's hold outlives a console restart: the next
/// console starts it when the hold is released, and its failure makes the DUT bad.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_run_ending_after_a_restart_still_judges_its_dut() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path());
    let open = || {
        LocalConsole::open_with(
            ConsolePaths {
                data_dir: tmp.path().join("data"),
                pack_roots: vec![tmp.path().join("packs")],
                lab_file: Some(tmp.path().join("lab.yaml")),
            },
            ConsoleOptions {
                clock: Arc::new(ManualClock::new(T0)),
                watch_packs: false,
                health_checks: false,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (hold, run_id) = {
        let c = open();
        let Response::Hold(h) = c
            .dispatch(
                testbay_engine::api::parse_request(
                    br#"{"cmd":"hold","resource":"stb-1","by":"alice","duration_s":3600}"#,
                )
                .unwrap(),
            )
            .await
            .unwrap()
        else {
            panic!()
        };
        let runs = c.health_tick().await;
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert!(report(&c).await.checking);
        c.shutdown();
        (h.id.0, runs[0].clone())
    };
    let c = open();
    let mut events = c.subscribe();
    assert!(
        report(&c).await.checking,
        "the queued health run is known after the restart"
    );
    assert!(
        c.health_tick().await.is_empty(),
        "no second check while one waits"
    );
    c.dispatch(
        testbay_engine::api::parse_request(
            format!(r#"{{"cmd":"release","id":{hold}}}"#).as_bytes(),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(ended(&c, &mut events, &run_id).await, RunStatus::Completed);
    let r = report(&c).await;
    assert_eq!(r.health.health, Health::Bad, "{r:?}");
    assert_eq!(r.health.run_id.as_deref(), Some(run_id.as_str()));
    assert!(!r.checking);
    c.shutdown();
    // Settled: a third console has no health run going.
    let c = open();
    assert!(!report(&c).await.checking);
    c.shutdown();
}
