//! Lab mode over real HTTP: users' tokens on every request, roles, the sign-in cookie,
//! revocation mid-session, downloads, the audit log, and no token in the logs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use testbay_engine::api::Role;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::serve::{hello, http, Reply, JSON};
use crate::support::{Running, Serve};

async fn lab() -> Running {
    let limits = testbay_server::Limits {
        user_recheck: Duration::from_millis(200),
        ..Default::default()
    };
    hello(
        Serve::new()
            .limits(limits)
            .user("vera", Role::Viewer)
            .user("otto", Role::Operator)
            .user("ada", Role::Admin)
            .user("rack1", Role::Agent),
    )
    .start()
    .await
}

async fn api(srv: &Running, user: Option<&str>, body: &str) -> (Reply, serde_json::Value) {
    let auth = user.map(|u| format!("Authorization: Bearer {}", srv.tokens[u]));
    let mut headers = vec![JSON];
    if let Some(a) = &auth {
        headers.push(a);
    }
    let r = http(srv.addr, "POST", "/api", &headers, body).await;
    let v = serde_json::from_str(&r.body).unwrap_or(serde_json::Value::Null);
    (r, v)
}

const LAUNCH: &str = r#"{"cmd":"launch","pack":"hello","groups":["smoke"]}"#;

#[tokio::test]
async fn roles_decide_who_may_do_what_and_the_audit_log_says_who_did() {
    let srv = lab().await;

    // No token, a wrong one: 401 with a stable code, even on loopback.
    let (r, v) = api(&srv, None, r#"{"cmd":"list_runs"}"#).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(v["error"]["code"], "unauthorized");
    let wrong = http(
        srv.addr,
        "POST",
        "/api",
        &[JSON, "Authorization: Bearer 00ff"],
        r#"{"cmd":"info"}"#,
    )
    .await;
    assert_eq!(wrong.status, 401);

    // A viewer reads, but its launch is refused naming the role it needs.
    let (r, v) = api(&srv, Some("vera"), r#"{"cmd":"list_runs"}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (r, v2) = api(&srv, Some("vera"), LAUNCH).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(v2["error"]["code"], "forbidden");
    let msg = v2["error"]["message"].as_str().unwrap();
    assert!(msg.contains("operator") && msg.contains("vera"), "{msg}");
    assert_eq!(v["data"]["total"], 0, "nothing was launched");

    // An agent is refused even reads; the side bar's question names user and role.
    let (r, _) = api(&srv, Some("rack1"), r#"{"cmd":"list_runs"}"#).await;
    assert_eq!(r.status, 403);
    let (_, who) = api(&srv, Some("otto"), r#"{"cmd":"who_am_i"}"#).await;
    assert_eq!(
        who["data"],
        serde_json::json!({"user": "otto", "role": "operator"})
    );

    // An operator launches; the audit log names them and the run.
    let (r, v) = api(&srv, Some("otto"), LAUNCH).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let run_id = v["data"]["run_id"].as_str().unwrap().to_string();
    let (_, audit) = api(&srv, Some("vera"), r#"{"cmd":"audit","user":"otto"}"#).await;
    let entries = audit["data"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{audit}");
    assert_eq!(entries[0]["action"], "launch");
    assert_eq!(entries[0]["target"], run_id.as_str());
    let get = format!(r#"{{"cmd":"get_run","run_id":"{run_id}"}}"#);
    let (_, run) = api(&srv, Some("vera"), &get).await;
    assert_eq!(run["data"]["launched_by"], "otto", "{run}");
    let stop = format!(r#"{{"cmd":"stop_run","run_id":"{run_id}"}}"#);
    let _ = api(&srv, Some("otto"), &stop).await;

    // Users are an admin's: an operator may not add one, an admin may, and the new
    // token works at once.
    let add = r#"{"cmd":"add_user","name":"nina","role":"viewer"}"#;
    let (r, v) = api(&srv, Some("otto"), add).await;
    assert_eq!(r.status, 403);
    assert!(v["error"]["message"].as_str().unwrap().contains("admin"));
    let (r, v) = api(&srv, Some("ada"), add).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let nina = v["data"]["token"].as_str().unwrap().to_string();
    let auth = format!("Authorization: Bearer {nina}");
    let r = http(
        srv.addr,
        "POST",
        "/api",
        &[JSON, &auth],
        r#"{"cmd":"who_am_i"}"#,
    )
    .await;
    assert!(r.body.contains("nina"), "{}", r.body);
    let (_, users) = api(&srv, Some("ada"), r#"{"cmd":"list_users"}"#).await;
    assert!(
        !users.to_string().contains(&nina),
        "a listing never shows a token"
    );
    let (_, audit) = api(&srv, Some("ada"), r#"{"cmd":"audit","user":"ada"}"#).await;
    assert_eq!(audit["data"][0]["action"], "add_user");
    assert_eq!(audit["data"][0]["target"], "nina");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_its_next_request_and_its_stream_closes() {
    let srv = lab().await;
    let mut req = format!("ws://{}/api/events", srv.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {}", srv.tokens["otto"]).parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    // Without a token the stream is refused outright.
    let refused = tokio_tungstenite::connect_async(format!("ws://{}/api/events", srv.addr)).await;
    assert!(refused.is_err(), "a stream without a token is refused");

    let (r, _) = api(&srv, Some("otto"), r#"{"cmd":"info"}"#).await;
    assert_eq!(r.status, 200);
    let (r, _) = api(&srv, Some("ada"), r#"{"cmd":"revoke_user","user":"otto"}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (r, v) = api(&srv, Some("otto"), r#"{"cmd":"info"}"#).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(v["error"]["code"], "unauthorized");

    // The open stream ends (a close frame, then nothing) at the next recheck.
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(m) if m.is_close() => return,
                Ok(_) => continue,
                Err(_) => return,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the revoked user's event stream was not closed"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn downloads_need_a_token_and_the_sign_in_page_sets_the_cookie() {
    let srv = lab().await;
    let dir = srv.dir.path().join("data/runs/r1");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("note.txt"), "secret lab note\n").unwrap();

    let r = http(srv.addr, "GET", "/files/runs/r1/note.txt", &[], "").await;
    assert_eq!(r.status, 401);
    assert!(!r.body.contains("secret lab note"));
    let auth = format!("Authorization: Bearer {}", srv.tokens["vera"]);
    let r = http(srv.addr, "GET", "/files/runs/r1/note.txt", &[&auth], "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("secret lab note"));

    // A page without a token goes to the sign-in form.
    let r = http(srv.addr, "GET", "/", &[], "").await;
    assert_eq!(r.status, 303);
    assert!(r.headers.contains("location: /signin"), "{}", r.headers);
    let r = http(srv.addr, "GET", "/signin", &[], "").await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("name=\"token\""));

    let form = "Content-Type: application/x-www-form-urlencoded";
    let r = http(srv.addr, "POST", "/signin", &[form], "token=deadbeef").await;
    assert_eq!(r.status, 401);
    assert!(!r.headers.contains("set-cookie"));
    let body = format!("token={}", srv.tokens["vera"]);
    let r = http(srv.addr, "POST", "/signin", &[form], &body).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let set = r
        .headers
        .lines()
        .find(|l| l.starts_with("set-cookie:"))
        .expect("a cookie is set");
    assert!(
        set.contains("httponly") && set.contains("samesite=strict"),
        "{set}"
    );
    let cookie = format!(
        "Cookie: {}",
        set["set-cookie:".len()..].split(';').next().unwrap().trim()
    );
    let r = http(
        srv.addr,
        "POST",
        "/api",
        &[JSON, &cookie],
        r#"{"cmd":"who_am_i"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"vera\""));
    let r = http(srv.addr, "GET", "/files/runs/r1/note.txt", &[&cookie], "").await;
    assert_eq!(r.status, 200);

    // Signing out clears it.
    let r = http(srv.addr, "POST", "/signin", &[form], "signout=1").await;
    assert!(r.headers.contains("max-age=0"), "{}", r.headers);
    srv.shutdown().await;
}

/// Log lines written while the guard is held (this thread, which runs the test's
/// current-thread runtime and so the server).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn tokens_never_appear_in_the_logs() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests of this binary hit the same log sites at once with no subscriber: have
    // each site ask again, so none stays switched off for this one (tracing caches it).
    tracing::callsite::rebuild_interest_cache();

    let srv = lab().await;
    let form = "Content-Type: application/x-www-form-urlencoded";
    let mut tokens: Vec<String> = srv.tokens.values().cloned().collect();
    for (user, body) in [
        ("otto", LAUNCH),
        ("vera", LAUNCH),
        (
            "ada",
            r#"{"cmd":"add_user","name":"lena","role":"operator"}"#,
        ),
        ("ada", r#"{"cmd":"revoke_user","user":"otto"}"#),
        ("otto", r#"{"cmd":"info"}"#),
    ] {
        let (_, v) = api(&srv, Some(user), body).await;
        if let Some(t) = v["data"]["token"].as_str() {
            tokens.push(t.to_string());
        }
    }
    let wrong = "Authorization: Bearer 0123456789abcdef0123456789abcdef";
    tokens.push("0123456789abcdef0123456789abcdef".into());
    tokens.push("feedfacefeedface".into());
    let captured = || String::from_utf8_lossy(&logs.0.lock().unwrap()).to_string();
    // The refusals and sign-ins, again (at most 5 times) should a concurrent test have
    // switched their log sites off before the rebuild above took.
    for _ in 0..5 {
        let _ = http(
            srv.addr,
            "POST",
            "/api",
            &[JSON, wrong],
            r#"{"cmd":"info"}"#,
        )
        .await;
        let body = format!("token={}", srv.tokens["vera"]);
        let _ = http(srv.addr, "POST", "/signin", &[form], &body).await;
        let _ = http(
            srv.addr,
            "POST",
            "/signin",
            &[form],
            "token=feedfacefeedface",
        )
        .await;
        let text = captured();
        if text.contains("request refused") && text.contains("signed in") {
            break;
        }
        tracing::callsite::rebuild_interest_cache();
    }
    srv.shutdown().await;

    let text = captured();
    assert!(
        text.contains("request refused"),
        "the refusals were logged: {text}"
    );
    assert!(text.contains("signed in"), "{text}");
    for t in &tokens {
        assert!(!text.contains(t.as_str()), "a token is in the logs");
    }
}
