//! `testbay serve` as a process: prints its address, answers, stops cleanly on SIGTERM,
//! even during a slow query.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn post(addr: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serve_prints_its_address_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .args(["serve", "--bind", "127.0.0.1:0", "--packs"])
        .arg(dir.path())
        .env("TESTBAY_DATA_DIR", &data)
        .env_remove("TESTBAY_LAB")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let addr = url.trim_start_matches("http://").trim_end_matches('/');

    let reply = post(addr, r#"{"cmd":"info"}"#);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // The data directory comes from TESTBAY_DATA_DIR.
    assert!(reply.contains(&*data.to_string_lossy()), "{reply}");
    assert!(data.join("testbay.db").is_file());

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
}

#[test]
fn a_bad_token_is_refused_before_serving() {
    let out = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .args(["serve", "--bind", "127.0.0.1:0", "--token", "has space"])
        .env("TESTBAY_DATA_DIR", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token"));
}

/// A stored run whose 4,000 task messages make a search for `slow_search_body` take
/// SQLite many seconds in this build (a real slow query, as an operator's search can be).
fn store_with_a_slow_search(data: &std::path::Path) {
    use testbay_engine::store::{NewRun, NewTaskRow, SqliteStore, Store, TaskFinish, TaskKind};
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
        status: testbay_engine::outcome::RunStatus::Completed,
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

/// SIGTERM while a slow query runs, with a request head trickling in on another
/// connection: `testbay serve` exits cleanly within 2 s.
#[test]
fn serve_stops_within_two_seconds_of_sigterm_during_a_slow_query() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    store_with_a_slow_search(&data);
    let mut child = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .args(["serve", "--bind", "127.0.0.1:0", "--packs"])
        .arg(dir.path())
        .env("TESTBAY_DATA_DIR", &data)
        .env_remove("TESTBAY_LAB")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = crate::support::served_address(&mut child);

    let search = format!(
        r#"{{"cmd":"list_runs","text":"{}b"}}"#,
        "a".repeat(testbay_engine::store::MAX_SEARCH_CHARS - 1)
    );
    let query = {
        let addr = addr.clone();
        std::thread::spawn(move || post(&addr, &search))
    };
    let mut trickling = TcpStream::connect(&addr).unwrap();
    trickling.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!query.is_finished(), "the search is slow");

    let sent = Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if sent.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("testbay serve still running 10 s after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = sent.elapsed();
    eprintln!("exited {took:?} after SIGTERM");
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
    assert!(
        took < Duration::from_secs(2),
        "exited {took:?} after SIGTERM"
    );
    let reply = query.join().unwrap();
    assert!(
        reply.is_empty() || reply.contains(r#""code":"unavailable""#),
        "{reply}"
    );
}
