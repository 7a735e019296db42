//! Slow, idle, oversized and silent clients against a real server on a real TCP port:
//! each is answered or closed in time, and stopping never waits for them or for a slow
//! query.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use testbay_engine::outcome::RunStatus;
use testbay_engine::store::{NewRun, NewTaskRow, SqliteStore, Store, TaskFinish, TaskKind};
use testbay_server::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Running, Serve};

/// Short limits, so the tests see them act.
fn short() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        ping_interval: Duration::from_millis(300),
        ..Limits::default()
    }
}

/// A served console without packs; `prepare` gets its data dir before it opens.
async fn start(limits: Limits, prepare: impl FnOnce(&Path) + 'static) -> Running {
    Serve::new()
        .limits(limits)
        .prepare(move |root| prepare(&root.join("data")))
        .start()
        .await
}

/// Send `head` (request line and headers, without the blank line), then trickle `tail`
/// one byte every 100 ms, reading what the server says meanwhile. Returns what it said
/// and when it closed the connection, or `None` if the whole trickle went through and
/// the connection stayed open.
async fn trickle(addr: SocketAddr, head: &str, tail: &[u8]) -> (String, Option<Duration>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let t0 = Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    for &b in tail {
        if s.write_all(&[b]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Err(_) => continue,
            Ok(Ok(n)) if n > 0 => said.extend_from_slice(&buf[..n]),
            Ok(_) => return (String::from_utf8_lossy(&said).into(), Some(t0.elapsed())),
        }
    }
    // Written whole (or refused): read whatever is left, for a bounded time.
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => said.extend_from_slice(&buf[..n]),
            Ok(_) => break Some(t0.elapsed()),
            Err(_) => break None,
        }
    };
    (String::from_utf8_lossy(&said).into(), closed)
}

/// Read until the server closes, for at most `bound`; when it closed, if it did.
async fn closed_within(s: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((t0 + bound).into(), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => continue,
            Ok(_) => return Some(t0.elapsed()),
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn a_request_head_trickling_in_is_cut_off() {
    let srv = start(short(), |_| {}).await;
    let head = format!("GET / HTTP/1.1\r\nHost: {}\r\nX-Slow: ", srv.addr);
    // 100 bytes at 10 a second would take 10 s; the head timeout is 1 s.
    let (_, closed) = trickle(srv.addr, &head, &[b'x'; 100]).await;
    let closed = closed.expect("the server kept a trickling head open");
    assert!(closed < Duration::from_secs(8), "closed after {closed:?}");
    eprintln!("trickling head closed after {closed:?}");
    let _ = srv.stop.send(());
}

#[tokio::test]
async fn a_request_body_trickling_in_gets_408_in_the_api_error_shape() {
    let srv = start(short(), |_| {}).await;
    let body = br#"{"cmd":"info"}                                                                                      "#;
    let head = format!(
        "POST /api HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        srv.addr,
        body.len()
    );
    let (said, closed) = trickle(srv.addr, &head, body).await;
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains(r#""code":"timeout""#), "{said}");
    let closed = closed.expect("the server kept a trickling body open");
    assert!(closed < Duration::from_secs(8), "closed after {closed:?}");
    let _ = srv.stop.send(());
}

/// A pack upload may take longer than `body_timeout`, but only by its bytes at
/// `upload_min_rate`: one trickling in (10 bytes a second against 1 KiB/s) is cut off.
#[tokio::test]
async fn a_pack_upload_trickling_in_gets_408() {
    let srv = start(
        Limits {
            upload_min_rate: 1024,
            ..short()
        },
        |_| {},
    )
    .await;
    let body = [0u8; 200];
    let head = format!(
        "POST /api/packs HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        srv.addr,
        body.len()
    );
    let (said, closed) = trickle(srv.addr, &head, &body).await;
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(said.contains(r#""code":"timeout""#), "{said}");
    assert!(said.contains("slower than 1 KiB/s"), "{said}");
    let closed = closed.expect("the server kept a trickling upload open");
    assert!(closed < Duration::from_secs(8), "closed after {closed:?}");
    let _ = srv.stop.send(());
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let srv = start(short(), |_| {}).await;
    // One that never says anything.
    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    // One kept alive after a request.
    let mut kept = TcpStream::connect(srv.addr).await.unwrap();
    let body = r#"{"cmd":"info"}"#;
    kept.write_all(
        format!(
            "POST /api HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            srv.addr,
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    let bound = Duration::from_secs(8);
    let silent_closed = closed_within(&mut silent, bound).await;
    let kept_closed = closed_within(&mut kept, bound).await;
    assert!(silent_closed.is_some(), "a silent connection stayed open");
    assert!(
        kept_closed.is_some(),
        "an idle keep-alive connection stayed open"
    );
    let _ = srv.stop.send(());
}

#[tokio::test]
async fn api_bodies_over_the_limit_get_413_in_the_api_error_shape() {
    let srv = start(Limits::default(), |_| {}).await;
    let limit = Limits::default().api_body_limit;
    let check = |said: &str| {
        assert!(
            said.starts_with("HTTP/1.1 413"),
            "{}",
            &said[..said.len().min(300)]
        );
        let body = &said[said.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_large", "{body}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&limit.to_string()),
            "{body}"
        );
    };

    // Declared too long: refused before the body is read.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            srv.addr,
            limit + 1
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut said = Vec::new();
    s.read_to_end(&mut said).await.unwrap();
    check(&String::from_utf8_lossy(&said));

    // Chunked, no length: refused once it passes the limit (1.5 MiB of a launch request).
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
            srv.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let group = "\"smoke\",".repeat(8 * 1024);
    let mut body = String::from(r#"{"cmd":"launch","pack":"x","groups":["#);
    while body.len() < limit * 3 / 2 {
        body.push_str(&group);
    }
    body.push_str("\"smoke\"]}");
    // Read while writing: the answer comes before the body ends.
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        for chunk in body.as_bytes().chunks(64 * 1024) {
            let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
            if wr.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
    });
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = rd.read(&mut buf).await {
        if n == 0 {
            break;
        }
        said.extend_from_slice(&buf[..n]);
    }
    writer.abort();
    check(&String::from_utf8_lossy(&said));

    // At the limit it is read and parsed (a bad request, not a big one).
    let padded = format!(r#"{{"cmd":"info"}}{}"#, " ".repeat(limit - 14));
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{padded}",
            srv.addr,
            padded.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut said = Vec::new();
    s.read_to_end(&mut said).await.unwrap();
    let said = String::from_utf8_lossy(&said);
    assert!(said.starts_with("HTTP/1.1 200"), "{said}");
    let _ = srv.stop.send(());
}

/// The event stream pings; a client that answers (as browsers do) stays, one that
/// answers nothing is dropped.
#[tokio::test]
async fn the_event_stream_pings_and_drops_a_client_that_never_answers() {
    // A ping a second: a client that answers is not dropped for a stall of this test's
    // runtime on a loaded machine.
    let limits = Limits {
        ping_interval: Duration::from_secs(1),
        ..short()
    };
    let srv = start(limits, |_| {}).await;
    let url = format!("ws://{}/api/events", srv.addr);
    let (mut answering, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();

    let mut silent = TcpStream::connect(srv.addr).await.unwrap();
    silent
        .write_all(
            format!(
                "GET /api/events HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                srv.addr
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut first = [0u8; 12];
    silent.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 101");

    // Four seconds: four ping intervals. Reading answers the pings.
    let mut pings = 0;
    let listened = tokio::time::timeout(Duration::from_secs(4), async {
        while let Some(msg) = answering.next().await {
            match msg {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(Message::Close(_)) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        false
    })
    .await;
    assert!(listened.is_err(), "the answering client was dropped");
    assert!(pings >= 2, "{pings} pings in 4 s at one a second");

    let closed = closed_within(&mut silent, Duration::from_secs(8)).await;
    assert!(closed.is_some(), "a client that never answers stayed");
    let _ = srv.stop.send(());
}

/// A store with a run whose 4,000 task messages make a search for [`slow_search`] take
/// SQLite many seconds (see the store tests).
fn with_a_slow_search(data: &Path) {
    let s = SqliteStore::open_in(data).unwrap();
    let run = NewRun {
        id: "slow".into(),
        pack_name: "p".into(),
        pack_version: "1".into(),
        content_hash: "h".into(),
        pack_dir: "/p".into(),
        snapshot_dir: None,
        groups: vec![],
        duts: vec![],
        ats: None,
        params: serde_json::json!({}),
        resource_mode: "all".into(),
        coverage_mode: "dut".into(),
        status: RunStatus::Completed,
        reason: None,
        created_ms: 1,
        est_run_time: 0.0,
    };
    let rows: Vec<NewTaskRow> = (0..4000)
        .map(|i| NewTaskRow {
            seq: i,
            lane: None,
            task: format!("t{i}"),
            kind: TaskKind::Test,
            group: None,
            description: String::new(),
            est_task_time: 0.0,
        })
        .collect();
    let ids = s.insert_run(&run, &rows).unwrap();
    let done: Vec<(i64, TaskFinish)> = ids
        .into_iter()
        .map(|id| {
            let f = TaskFinish {
                result: "Failed".into(),
                failure: true,
                message: "a".repeat(5000),
                finished_ms: 2,
                ..Default::default()
            };
            (id, f)
        })
        .collect();
    s.finish_tasks(&done).unwrap();
}

fn slow_search() -> String {
    format!(
        r#"{{"cmd":"list_runs","text":"{}b"}}"#,
        "a".repeat(testbay_engine::store::MAX_SEARCH_CHARS - 1)
    )
}

/// Stopping with a slow query in flight, a head trickling in, an idle connection and an
/// event stream open: the server is gone within 2 s, the query's client told why.
#[tokio::test]
async fn stopping_waits_for_no_slow_query_and_no_slow_client() {
    let limits = Limits {
        header_timeout: Duration::from_secs(60),
        ..Limits::default()
    };
    let srv = start(limits, with_a_slow_search).await;
    let addr = srv.addr;
    let query = tokio::spawn(async move {
        let body = slow_search();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!(
                "POST /api HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let mut said = Vec::new();
        let _ = s.read_to_end(&mut said).await;
        String::from_utf8_lossy(&said).to_string()
    });
    let mut trickling = TcpStream::connect(addr).await.unwrap();
    trickling
        .write_all(b"GET / HTTP/1.1\r\nX-Slow: ")
        .await
        .unwrap();
    let _idle = TcpStream::connect(addr).await.unwrap();
    let (_events, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/api/events"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!query.is_finished(), "the search is slow");

    let t0 = Instant::now();
    let _ = srv.stop.send(());
    let stopped = tokio::time::timeout(Duration::from_secs(10), srv.task).await;
    let took = t0.elapsed();
    stopped
        .expect("the server did not stop within 10 s")
        .unwrap()
        .unwrap();
    eprintln!("stopped in {took:?}");
    assert!(took < Duration::from_secs(2), "stopped in {took:?}");
    let said = tokio::time::timeout(Duration::from_secs(5), query)
        .await
        .expect("the query's connection stayed open")
        .unwrap();
    assert!(
        said.is_empty() || said.contains(r#""code":"unavailable""#),
        "{said}"
    );
}
