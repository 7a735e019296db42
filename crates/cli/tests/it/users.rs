//! `testbay users` and `testbay audit` on a data directory, and `testbay serve` turning
//! into a lab's console once the store has a user.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use crate::serve::post;
use crate::support::{text, Bed};

#[test]
fn users_are_added_listed_reroled_and_revoked_and_the_audit_log_says_so() {
    let f = Bed::new();
    let out = f.testbay(&["users", "list"]);
    assert!(
        text(&out.stdout).contains("no users"),
        "{}",
        text(&out.stdout)
    );

    let out = f.testbay(&["users", "add", "ada", "--role", "admin"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let token = shown.lines().last().unwrap().trim().to_string();
    assert_eq!(token.len(), 64, "{shown}");
    assert!(shown.contains("shown only now"));

    let out = f.testbay(&["users", "add", "ada", "--role", "viewer"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("exists already"));
    let out = f.testbay(&["users", "add", "bo b", "--role", "viewer"]);
    assert!(
        text(&out.stderr).contains("not allowed"),
        "{}",
        text(&out.stderr)
    );
    let out = f.testbay(&["users", "add", "bob", "--role", "root"]);
    assert!(!out.status.success(), "an unknown role is refused");

    f.testbay(&["users", "add", "bob", "--role", "viewer"]);
    assert!(f
        .testbay(&["users", "role", "bob", "operator"])
        .status
        .success());
    assert!(f.testbay(&["users", "revoke", "ada"]).status.success());
    let out = f.testbay(&["users", "revoke", "nobody"]);
    assert!(text(&out.stderr).contains("no user \"nobody\""));

    let list = text(&f.testbay(&["users", "list", "--json"]).stdout);
    assert!(!list.contains(&token), "a listing never shows a token");
    let users: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(users[0]["name"], "ada");
    assert!(users[0]["revoked_ms"].is_number());
    assert_eq!(users[1]["role"], "operator");
    assert_eq!(users[0]["token_id"].as_str().unwrap().len(), 8);

    let audit = text(&f.testbay(&["audit", "--json", "--user", "local"]).stdout);
    let entries: serde_json::Value = serde_json::from_str(&audit).unwrap();
    let actions: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["revoke_user", "set_user_role", "add_user", "add_user"]
    );
    let out = f.testbay(&["audit", "--since", "yesterday-ish"]);
    assert!(
        text(&out.stderr).contains("--since"),
        "{}",
        text(&out.stderr)
    );
    let none = text(
        &f.testbay(&["audit", "--json", "--since", "2999-01-01"])
            .stdout,
    );
    assert_eq!(none.trim(), "[]");
}

#[test]
fn serve_is_a_labs_console_once_the_store_has_a_user() {
    let f = Bed::new();
    let out = f.testbay(&["users", "add", "vera", "--role", "viewer"]);
    let token = text(&out.stdout).lines().last().unwrap().trim().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .args(["serve", "--bind", "127.0.0.1:0", "--packs"])
        .arg(&f.root)
        .env("TESTBAY_DATA_DIR", &f.data)
        .env_remove("TESTBAY_LAB")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    assert!(second.contains("lab mode"), "{second}");
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap();
    let addr = url.trim_start_matches("http://").trim_end_matches('/');

    // Loopback is not trusted in a lab.
    let reply = post(addr, r#"{"cmd":"info"}"#);
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert!(reply.contains("\"unauthorized\""), "{reply}");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let body = r#"{"cmd":"who_am_i"}"#;
    write!(
        s,
        "POST /api HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("\"vera\"") && reply.contains("\"viewer\""),
        "{reply}"
    );

    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
