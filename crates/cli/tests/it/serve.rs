//! `testbay serve` as a process: prints its address, answers, stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

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
