//! Webhooks end to end: a console with a real run, a real HTTP receiver on a local port
//! that fails the first try and takes the retry, the body's HMAC checked independently.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use testbay_engine::api::{
    parse_request, ApiError, Console, ConsolePaths, DeliveryStatus, ErrorCode, LocalConsole,
    Request, Response, WebhookDelivery, WebhookEvent,
};
use testbay_engine::webhook::WebhookConfig;

use crate::support::{run_end, write};

/// One request the receiver got.
struct Got {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP receiver on a local port: answers 500 to the first `fail` requests, 200 to the
/// rest, and hands every request it read to the channel.
fn receiver(fail: usize) -> (String, mpsc::Receiver<Got>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with("POST /hook "), "{line}");
            let mut headers = Vec::new();
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                let l = line.trim_end();
                if l.is_empty() {
                    break;
                }
                let (k, v) = l.split_once(':').unwrap();
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .map(|(_, v)| v.parse().unwrap())
                .unwrap();
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let answer = if n < fail {
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"
            } else {
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            };
            conn.write_all(answer.as_bytes()).unwrap();
            let _ = tx.send(Got { headers, body });
        }
    });
    (url, rx)
}

/// HMAC-SHA256 written out (RFC 2104), to check the console's signature without its code.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> String {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    hex::encode(outer)
}

fn console(dir: &Path) -> LocalConsole {
    let pack = dir.join("packs/hello");
    write(
        &pack.join("pack.yaml"),
        "name: hello\nversion: 1.0.0\ngroups:\n  smoke:\n    tests: [greet]\n",
    );
    write(
        &pack.join("tasks/greet.yaml"),
        "name: greet\nrun: [bash, greet.sh]\nest_task_time: 1\n",
    );
    write(&pack.join("tasks/greet.sh"), "echo hi\n");
    let c = LocalConsole::open(ConsolePaths {
        data_dir: dir.join("data"),
        pack_roots: vec![dir.join("packs")],
        lab_file: None,
    })
    .unwrap();
    c.webhooks().set_config(WebhookConfig {
        first_backoff: Duration::from_millis(50),
        ..Default::default()
    });
    c
}

async fn call(c: &LocalConsole, json: &str) -> Result<Response, ApiError> {
    c.dispatch(parse_request(json.as_bytes())?).await
}

async fn deliveries(c: &LocalConsole, hook: i64) -> Vec<WebhookDelivery> {
    match c
        .dispatch(Request::WebhookDeliveries {
            webhook_id: Some(hook),
            limit: None,
        })
        .await
        .unwrap()
    {
        Response::WebhookDeliveries(d) => d,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_end_reaches_a_receiver_after_a_retry_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let c = console(tmp.path());
    let (url, got) = receiver(1);
    let Response::AddWebhook(hook) = call(
        &c,
        &format!(r#"{{"cmd":"add_webhook","url":"{url}","events":["run_finished","run_failed"],"secret":"s3cret"}}"#),
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert!(hook.has_secret && hook.enabled);
    // Another webhook wants only failures: a passing run sends it nothing.
    let (other_url, other_got) = receiver(0);
    let Response::AddWebhook(other) = call(
        &c,
        &format!(r#"{{"cmd":"add_webhook","url":"{other_url}","events":["run_failed"]}}"#),
    )
    .await
    .unwrap() else {
        panic!()
    };
    let Response::ListWebhooks(list) = call(&c, r#"{"cmd":"list_webhooks"}"#).await.unwrap() else {
        panic!()
    };
    assert_eq!(list.len(), 2);
    let listed = serde_json::to_string(&list).unwrap();
    assert!(
        !listed.contains("s3cret"),
        "secrets are never shown: {listed}"
    );

    let mut events = c.subscribe();
    let Response::Launch { run_id, .. } = call(&c, r#"{"cmd":"launch","pack":"hello"}"#)
        .await
        .unwrap()
    else {
        panic!()
    };
    run_end(&mut events, &run_id).await;

    // First try answered 500, the retry 200.
    let first = got
        .recv_timeout(Duration::from_secs(30))
        .expect("first try");
    let second = got
        .recv_timeout(Duration::from_secs(30))
        .expect("the retry");
    assert_eq!(first.body, second.body, "the retry sends the same body");
    let body: serde_json::Value = serde_json::from_slice(&second.body).unwrap();
    assert_eq!(body["event"], "run_finished");
    assert_eq!(body["data"]["run"]["id"], run_id.as_str());
    assert_eq!(body["data"]["run"]["status"], "completed");
    assert_eq!(second.header("X-Testbay-Event"), Some("run_finished"));
    assert_eq!(second.header("Content-Type"), Some("application/json"));
    let sig = second.header("X-Testbay-Signature").expect("signed");
    assert_eq!(
        sig,
        format!("sha256={}", hmac_sha256(b"s3cret", &second.body))
    );
    assert_ne!(
        sig,
        format!("sha256={}", hmac_sha256(b"other", &second.body)),
        "the check can fail"
    );

    // The delivery is stored, delivered on its second try.
    let d = loop {
        let d = deliveries(&c, hook.id).await;
        if d.first()
            .is_some_and(|d| d.status != DeliveryStatus::Pending)
        {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(d.len(), 1, "a passing run is no run_failed: {d:?}");
    assert_eq!(
        (d[0].event, d[0].status, d[0].attempts, d[0].http_status),
        (
            WebhookEvent::RunFinished,
            DeliveryStatus::Delivered,
            2,
            Some(200)
        )
    );
    assert!(deliveries(&c, other.id).await.is_empty());
    assert!(other_got.try_recv().is_err());

    // Removed, a webhook is gone with its deliveries.
    call(
        &c,
        &format!(r#"{{"cmd":"remove_webhook","id":{}}}"#, hook.id),
    )
    .await
    .unwrap();
    assert!(deliveries(&c, hook.id).await.is_empty());
    let e = call(
        &c,
        &format!(r#"{{"cmd":"remove_webhook","id":{}}}"#, hook.id),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    c.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_are_refused_naming_the_key_and_updates_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let c = console(tmp.path());
    for (json, key) in [
        (
            r#"{"cmd":"add_webhook","url":"https://x/h","events":["run_finished"]}"#,
            "url",
        ),
        (
            r#"{"cmd":"add_webhook","url":"http://x/h","events":[]}"#,
            "events",
        ),
    ] {
        let e = call(&c, json).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.message.starts_with(key), "{}", e.message);
    }
    let e = call(
        &c,
        r#"{"cmd":"add_webhook","url":"http://x/h","events":["run_done"]}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    let Response::AddWebhook(h) = call(
        &c,
        r#"{"cmd":"add_webhook","url":"http://127.0.0.1:9/h","events":["dut_bad"],"secret":"k"}"#,
    )
    .await
    .unwrap() else {
        panic!()
    };
    let Response::UpdateWebhook(u) = call(
        &c,
        &format!(r#"{{"cmd":"update_webhook","id":{},"enabled":false,"secret":"","events":["dut_bad","schedule_missed"]}}"#, h.id),
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert!(!u.enabled && !u.has_secret);
    assert_eq!(
        u.events,
        [WebhookEvent::DutBad, WebhookEvent::ScheduleMissed]
    );
    assert_eq!(u.url, h.url);
    c.shutdown();
}

/// A daily schedule with `catch_up: skip` whose firings fell due while no console ran:
/// the console that next serves the data directory skips them and tells the
/// `schedule_missed` webhook (schedule, due time, what was done and why). Virtual time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skipped_schedule_firing_is_sent_as_schedule_missed() {
    use std::sync::Arc;
    use testbay_engine::api::ConsoleOptions;
    use testbay_engine::clock::ManualClock;
    use testbay_engine::timefmt::fmt_ms;

    let tmp = tempfile::tempdir().unwrap();
    console(tmp.path()).shutdown();
    write(
        &tmp.path().join("data/settings.yaml"),
        "dispatch_cpu_threshold: 100\n",
    );
    let paths = ConsolePaths {
        data_dir: tmp.path().join("data"),
        pack_roots: vec![tmp.path().join("packs")],
        lab_file: None,
    };
    let t0 = crate::support::T0;
    let options = |t: i64| ConsoleOptions {
        clock: Arc::new(ManualClock::new(t)),
        ..ConsoleOptions::default()
    };
    let (url, got) = receiver(0);
    let id = {
        let c = LocalConsole::open_with(paths.clone(), options(t0)).unwrap();
        call(
            &c,
            &format!(r#"{{"cmd":"add_webhook","url":"{url}","events":["schedule_missed"]}}"#),
        )
        .await
        .unwrap();
        let start = fmt_ms(t0 + 3_600_000)
            .trim_end_matches('Z')
            .replace(' ', "T");
        let add = format!(
            r#"{{"cmd":"add_schedule","name":"nightly","pack":"hello","groups":["smoke"],"when":{{"type":"daily","start":"{start}","time_zone":"UTC","catch_up":"skip"}}}}"#
        );
        let Response::AddSchedule { id } = call(&c, &add).await.unwrap() else {
            panic!()
        };
        c.shutdown();
        id
    };
    // Two days and two hours later: the firings at +1 h, +25 h and +49 h were missed.
    let later = t0 + 2 * 86_400_000 + 2 * 3_600_000;
    let c = LocalConsole::open_with(paths, options(later))
        .unwrap()
        .shared();
    let hit = got
        .recv_timeout(Duration::from_secs(30))
        .expect("the schedule_missed notice");
    assert_eq!(hit.header("X-Testbay-Event"), Some("schedule_missed"));
    let body: serde_json::Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(body["event"], "schedule_missed", "{body}");
    let data = &body["data"];
    assert_eq!(data["schedule_id"], id.as_str(), "{body}");
    assert_eq!(data["name"], "nightly");
    assert_eq!(data["due_ms"], t0 + 3_600_000);
    assert_eq!(data["missed"], 3);
    assert_eq!(data["action"], "skipped");
    assert_eq!(data["why"], "missed 3 firings, skipped (catch_up: skip)");
    c.shutdown();
}
