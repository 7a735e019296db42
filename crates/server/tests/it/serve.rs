//! A real `testbay serve` on an ephemeral port: API, events, downloads, the token.

use std::net::SocketAddr;
use std::path::Path;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Running, Serve};

/// A served console with the pack `hello` (one task, `greet`, that writes a report).
async fn start(bind: &str, ui: Option<&Path>) -> Running {
    hello(Serve::new().bind(bind).ui(ui)).start().await
}

/// `serve` with the pack `hello` (one task, `greet`, that writes a report).
pub(crate) fn hello(serve: Serve) -> Serve {
    serve.packs().prepare(|root| {
        let packs = root.join("packs/hello");
        std::fs::create_dir_all(packs.join("tasks")).unwrap();
        std::fs::write(
            packs.join("pack.yaml"),
            "name: hello\nversion: 1.0.0\ngroups:\n  smoke:\n    tests: [greet]\n",
        )
        .unwrap();
        std::fs::write(
            packs.join("tasks/greet.yaml"),
            "name: greet\nrun: [bash, greet.sh]\nest_task_time: 1\n",
        )
        .unwrap();
        std::fs::write(
            packs.join("tasks/greet.sh"),
            "echo hello from greet\necho 'channel 101: ok' > \"$TESTBAY_ARTIFACTS/report.txt\"\n",
        )
        .unwrap();
    })
}

pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: String,
    pub(crate) body: String,
}

/// One HTTP/1.1 request on a fresh connection; `headers` are extra header lines.
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

pub(crate) const JSON: &str = "Content-Type: application/json";

#[tokio::test]
async fn api_answers_and_errors_carry_a_code() {
    let srv = start("127.0.0.1:0", None).await;
    let ok = http(srv.addr, "POST", "/api", &[JSON], r#"{"cmd":"info"}"#).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let v: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
    assert_eq!(v["cmd"], "info");
    assert!(v["data"]["data_dir"].as_str().unwrap().ends_with("data"));

    let bad = http(
        srv.addr,
        "POST",
        "/api",
        &[JSON],
        r#"{"cmd":"no_such_thing"}"#,
    )
    .await;
    assert_eq!(bad.status, 400);
    let v: serde_json::Value = serde_json::from_str(&bad.body).unwrap();
    assert_eq!(v["error"]["code"], "invalid_request");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no_such_thing"),
        "{}",
        bad.body
    );

    let garbage = http(srv.addr, "POST", "/api", &[JSON], "{not json").await;
    assert_eq!(garbage.status, 400);
    srv.shutdown().await;
}

#[tokio::test]
async fn cross_site_requests_are_refused() {
    let srv = start("127.0.0.1:0", None).await;
    // A form post from another site cannot send JSON without a CORS preflight.
    let text = http(
        srv.addr,
        "POST",
        "/api",
        &["Content-Type: text/plain"],
        r#"{"cmd":"info"}"#,
    )
    .await;
    assert_eq!(text.status, 415);
    let other = http(
        srv.addr,
        "POST",
        "/api",
        &[JSON, "Origin: http://evil.example"],
        r#"{"cmd":"info"}"#,
    )
    .await;
    assert_eq!(other.status, 403);
    let same = format!("Origin: http://{}", srv.addr);
    let ok = http(
        srv.addr,
        "POST",
        "/api",
        &[JSON, &same],
        r#"{"cmd":"info"}"#,
    )
    .await;
    assert_eq!(ok.status, 200);
    // DNS rebinding: a foreign host name pointing at 127.0.0.1.
    let rebind = http(
        srv.addr,
        "POST",
        "/api",
        &[JSON, "Host: evil.example"],
        r#"{"cmd":"info"}"#,
    )
    .await;
    assert_eq!(rebind.status, 403);
    srv.shutdown().await;
}

#[tokio::test]
async fn downloads_stay_inside_the_runs_directory() {
    let srv = start("127.0.0.1:0", None).await;
    let data = srv.dir.path().join("data");
    let task = data.join("runs/r1/stb-01/boot");
    std::fs::create_dir_all(task.join("artifacts")).unwrap();
    std::fs::write(task.join("main.log"), "line one\nline two\n").unwrap();
    std::fs::write(
        task.join("artifacts/page.html"),
        "<script>alert(1)</script>",
    )
    .unwrap();
    std::fs::write(data.join("testbay.db"), "SECRET-DB").unwrap();
    std::fs::write(srv.dir.path().join("outside.txt"), "OUTSIDE-CONTENT").unwrap();
    std::os::unix::fs::symlink(srv.dir.path().join("outside.txt"), task.join("escape.log"))
        .unwrap();
    std::os::unix::fs::symlink(srv.dir.path(), data.join("runs/r1/up")).unwrap();
    std::os::unix::fs::symlink(task.join("main.log"), task.join("inside.log")).unwrap();

    let log = http(
        srv.addr,
        "GET",
        "/files/runs/r1/stb-01/boot/main.log",
        &[],
        "",
    )
    .await;
    assert_eq!(log.status, 200);
    assert_eq!(log.body, "line one\nline two\n");
    assert!(log.headers.contains("content-type: text/plain"));
    // A range request reads a log's tail from an offset.
    let tail = http(
        srv.addr,
        "GET",
        "/files/runs/r1/stb-01/boot/main.log",
        &["Range: bytes=9-"],
        "",
    )
    .await;
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, "line two\n");
    // A symlink that stays inside is fine.
    let inside = http(
        srv.addr,
        "GET",
        "/files/runs/r1/stb-01/boot/inside.log",
        &[],
        "",
    )
    .await;
    assert_eq!(inside.status, 200);
    // Task-written HTML is a download, sandboxed, never a page on the console's origin.
    let html = http(
        srv.addr,
        "GET",
        "/files/runs/r1/stb-01/boot/artifacts/page.html",
        &[],
        "",
    )
    .await;
    assert_eq!(html.status, 200);
    assert!(html.headers.contains("content-disposition: attachment"));
    assert!(html.headers.contains("content-security-policy: sandbox"));

    for bad in [
        "/files/runs/r1/stb-01/boot/escape.log",
        "/files/runs/r1/up/outside.txt",
        "/files/runs/../testbay.db",
        "/files/runs/%2e%2e/testbay.db",
        "/files/runs/r1/..%2f..%2ftestbay.db",
        "/files/runs//etc/passwd",
        "/files/runs/%2fetc%2fpasswd",
        "/files/testbay.db",
    ] {
        let r = http(srv.addr, "GET", bad, &[], "").await;
        assert!(
            !r.body.contains("SECRET-DB")
                && !r.body.contains("OUTSIDE-CONTENT")
                && !r.body.contains("root:"),
            "{bad} leaked: {}",
            r.body
        );
        assert!(r.status >= 400, "{bad}: {}", r.status);
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn non_loopback_requires_the_token() {
    let ui = tempfile::tempdir().unwrap();
    std::fs::write(ui.path().join("index.html"), "<h1>console</h1>").unwrap();
    let srv = start("0.0.0.0:0", Some(ui.path())).await;
    let token = srv.token.clone().expect("a token off loopback");
    let addr: SocketAddr = format!("127.0.0.1:{}", srv.addr.port()).parse().unwrap();

    let none = http(addr, "POST", "/api", &[JSON], r#"{"cmd":"info"}"#).await;
    assert_eq!(none.status, 401);
    let wrong = http(
        addr,
        "POST",
        "/api",
        &[JSON, "Authorization: Bearer nope"],
        r#"{"cmd":"info"}"#,
    )
    .await;
    assert_eq!(wrong.status, 401);
    let page = http(addr, "GET", "/", &[], "").await;
    assert_eq!(page.status, 401);
    let ws = http(addr, "GET", "/api/events", &[], "").await;
    assert_eq!(ws.status, 401);

    let bearer = format!("Authorization: Bearer {token}");
    let ok = http(addr, "POST", "/api", &[JSON, &bearer], r#"{"cmd":"info"}"#).await;
    assert_eq!(ok.status, 200);
    // The printed address carries the token and leaves a cookie for the page's assets.
    let first = http(addr, "GET", &format!("/?token={token}"), &[], "").await;
    assert_eq!(first.status, 200);
    assert!(first.body.contains("console"));
    assert!(first.headers.contains("set-cookie: testbay_token="));
    assert!(first.headers.contains("httponly"));
    let cookie = format!("Cookie: testbay_token={token}");
    let asset = http(addr, "GET", "/some/route", &[&cookie], "").await;
    assert_eq!(asset.status, 200, "SPA routes fall back to index.html");
    srv.shutdown().await;
}

#[tokio::test]
async fn event_stream_follows_a_run_launched_over_the_api() {
    let srv = start("127.0.0.1:0", None).await;
    let url = format!("ws://{}/api/events", srv.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();

    let launched = http(
        srv.addr,
        "POST",
        "/api",
        &[JSON],
        r#"{"cmd":"launch","pack":"hello","groups":["smoke"]}"#,
    )
    .await;
    assert_eq!(launched.status, 200, "{}", launched.body);
    let v: serde_json::Value = serde_json::from_str(&launched.body).unwrap();
    let run_id = v["data"]["run_id"].as_str().unwrap().to_string();

    let mut seen_log = false;
    let finished = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(msg) = ws.next().await {
            let text = msg.unwrap().into_text().unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let events = if v.is_array() {
                v.as_array().unwrap().clone()
            } else {
                vec![v]
            };
            for ev in events {
                assert_eq!(ev["kind"], "run", "{ev}");
                let data = &ev["data"];
                assert_eq!(data["run_id"], run_id.as_str());
                if data["type"] == "log"
                    && data["lines"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|l| l.as_str().unwrap().contains("hello from greet"))
                {
                    seen_log = true;
                }
                if data["type"] == "run_status" && data["status"] == "completed" {
                    return;
                }
            }
        }
        panic!("event stream ended before the run finished");
    })
    .await;
    assert!(finished.is_ok(), "run did not finish in 30 s");
    assert!(seen_log, "the task's output line came over the stream");

    // The stored run and its log are there too, the log also as a download.
    let body = format!(r#"{{"cmd":"get_run","run_id":"{run_id}"}}"#);
    let detail = http(srv.addr, "POST", "/api", &[JSON], &body).await;
    let v: serde_json::Value = serde_json::from_str(&detail.body).unwrap();
    let task = &v["data"]["tasks"][0];
    assert_eq!(task["result"], "Passed", "{}", detail.body);
    let log_path = task["paths"]["main_log"].as_str().unwrap();
    let rel = log_path.split("/runs/").nth(1).unwrap();
    let log = http(srv.addr, "GET", &format!("/files/runs/{rel}"), &[], "").await;
    assert_eq!(log.status, 200);
    assert!(log.body.contains("hello from greet"));
    // Its artifact files are listed with the task and download the same way.
    assert_eq!(
        task["artifacts"],
        serde_json::json!([{"path": "report.txt", "size": 16}]),
        "{}",
        detail.body
    );
    let dir = task["paths"]["artifacts_dir"].as_str().unwrap();
    let rel = dir.split("/runs/").nth(1).unwrap();
    let file = http(
        srv.addr,
        "GET",
        &format!("/files/runs/{rel}/report.txt"),
        &[],
        "",
    )
    .await;
    assert_eq!(file.status, 200);
    assert_eq!(file.body, "channel 101: ok\n");
    let body = format!(
        r#"{{"cmd":"read_log","run_id":"{run_id}","task_id":{},"phase":"main","offset":0}}"#,
        task["id"]
    );
    let chunk = http(srv.addr, "POST", "/api", &[JSON], &body).await;
    let v: serde_json::Value = serde_json::from_str(&chunk.body).unwrap();
    assert_eq!(v["data"]["text"], "hello from greet\n", "{}", chunk.body);

    ws.close(None).await.unwrap();
    srv.shutdown().await;
}
