//! `testbay --server URL ...`: the CLI on a lab server (a real `testbay serve` child)
//! through `RemoteConsole`, and the remote console's event stream across a restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use testbay_engine::api::{Console, ErrorCode, Event, Request, Response};
use testbay_remote::{RemoteConsole, Target};

use crate::support::{bin, run_id_of, text, Bed};

/// A `testbay serve` child on the bed's data dir; stopped (SIGTERM) when dropped.
struct Serve {
    child: Child,
    /// Its stdout, kept open: it prints more lines, and a closed pipe would end it.
    _out: BufReader<ChildStdout>,
    /// The address it printed (with `?token=` when it requires one).
    url: String,
    port: u16,
}

impl Serve {
    fn start(f: &Bed, bind: &str, token: Option<&str>) -> Serve {
        let mut cmd = bin();
        cmd.arg("--data-dir")
            .arg(&f.data)
            .args(["--packs", f.root.join("packs").to_str().unwrap()])
            .args(["serve", "--bind", bind])
            .env_remove("TESTBAY_SERVER")
            .env_remove("TESTBAY_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        let port = url
            .trim_start_matches("http://")
            .split(['/', '?'])
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        Serve {
            child,
            _out: out,
            url,
            port,
        }
    }

    /// The loopback address of the server, without a token.
    fn local_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn stop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A bed whose `packs/quick` is a one-task pack.
fn bed_with_quick_pack() -> Bed {
    let f = Bed::new();
    std::fs::create_dir_all(f.root.join("packs")).unwrap();
    let pack = f.pack(
        "quick",
        "name: quick\nversion: 1.0.0\ngroups:\n  main:\n    tests: [hello]\n",
        &[("hello", "", "echo hello from $PWD\n")],
    );
    std::fs::rename(pack, f.root.join("packs/quick")).unwrap();
    f
}

/// `testbay --server URL ARGS` with a data dir of its own (empty: nothing is local).
fn client(f: &Bed, server: &str, args: &[&str]) -> Output {
    bin()
        .arg("--data-dir")
        .arg(f.root.join("client-data"))
        .args(["--server", server])
        .args(args)
        .env_remove("TESTBAY_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[test]
fn results_through_a_server_equal_the_local_answer() {
    let f = bed_with_quick_pack();
    let packs = f.root.join("packs");
    let run = f.testbay(&["--packs", packs.to_str().unwrap(), "run", "quick"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let id = run_id_of(&text(&run.stdout));

    let serve = Serve::start(&f, "127.0.0.1:0", None);
    let local = json_of(&f.testbay(&["results", "--json"]));
    let remote = json_of(&client(&f, &serve.url, &["results", "--json"]));
    assert_eq!(remote, local);
    assert_eq!(local["runs"].as_array().map(Vec::len), Some(1), "{local}");
    let local = json_of(&f.testbay(&["results", &id, "--json"]));
    let remote = json_of(&client(&f, &serve.url, &["results", &id, "--json"]));
    assert_eq!(remote, local);
    // The client's own data dir was never opened.
    assert!(!f.root.join("client-data/testbay.db").exists());
}

#[test]
fn a_launch_through_the_server_runs_on_the_server() {
    let f = bed_with_quick_pack();
    let serve = Serve::start(&f, "127.0.0.1:0", None);
    let out = client(&f, &serve.url, &["run", "quick"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let id = run_id_of(&stdout);
    assert!(stdout.contains("hello"), "{stdout}");
    // The run and its task's folder are the server's.
    let stored = json_of(&f.testbay(&["results", &id, "--json"]));
    assert_eq!(stored["run"]["status"], "completed", "{stored}");
    assert!(f.data.join("runs").join(&id).is_dir());
    assert!(!f.root.join("client-data").join("runs").exists());

    // A pack the server does not have is named, with the ones it has.
    let out = client(&f, &serve.url, &["run", "no-such-pack"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("no pack named `no-such-pack`") && err.contains("quick"),
        "{err}"
    );
}

#[test]
fn a_wrong_token_is_a_clear_401() {
    let f = bed_with_quick_pack();
    let serve = Serve::start(&f, "0.0.0.0:0", Some("right-token"));
    let base = serve.local_url();
    let out = bin()
        .args(["--server", &base, "--token", "not-the-token-42", "results"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("401") && err.contains("refused the token"),
        "{err}"
    );
    assert!(
        !err.contains("not-the-token-42"),
        "the token is not echoed: {err}"
    );

    let out = bin()
        .args(["--server", &base, "results"])
        .env_remove("TESTBAY_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        text(&out.stderr).contains("wants a token"),
        "{}",
        text(&out.stderr)
    );

    // The right one, from the environment.
    let out = bin()
        .args(["--server", &base, "results", "--json"])
        .env("TESTBAY_TOKEN", "right-token")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    json_of(&out);
    // Or in the address `testbay serve` printed.
    let printed = serve.url.replace("0.0.0.0", "127.0.0.1");
    json_of(&client(&f, &printed, &["results", "--json"]));
}

#[test]
fn a_server_that_is_down_is_unavailable() {
    let f = Bed::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("http://127.0.0.1:{port}/");
    let out = client(&f, &down, &["results"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("unavailable") && err.contains(&down), "{err}");

    // Commands that only work on this computer say so instead of connecting.
    let out = client(&f, &down, &["packs", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("does not work on a lab server"), "{err}");
    let out = client(&f, "https://lab:7780", &["results"]);
    assert!(
        text(&out.stderr).contains("https is not supported"),
        "{}",
        text(&out.stderr)
    );
}

/// The next event; `None` if none within `limit` (a guard against hanging, not a
/// measure: the event comes far sooner).
async fn next_event(
    rx: &mut tokio::sync::broadcast::Receiver<Event>,
    limit: Duration,
) -> Option<Event> {
    tokio::time::timeout(limit, rx.recv()).await.ok()?.ok()
}

#[test]
fn the_event_stream_comes_back_after_a_server_restart_with_a_resync() {
    let f = bed_with_quick_pack();
    let mut serve = Serve::start(&f, "127.0.0.1:0", None);
    let port = serve.port;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let target = Target::parse(&serve.url, None).unwrap();
        let console = RemoteConsole::connect(target).await.unwrap();
        let mut events = console.subscribe();

        serve.stop();
        // While it is down, requests answer `unavailable`.
        let e = console.dispatch(Request::Info).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable, "{e}");

        let again = Serve::start(&f, &format!("127.0.0.1:{port}"), None);
        let mut resynced = false;
        while let Some(ev) = next_event(&mut events, Duration::from_secs(30)).await {
            if matches!(ev, Event::Resync { .. }) {
                resynced = true;
                break;
            }
        }
        assert!(resynced, "no resync after the server came back");
        // Events flow again: a launch on the server is heard.
        let launch =
            serde_json::from_value(serde_json::json!({"cmd": "launch", "pack": "quick"})).unwrap();
        let Response::Launch { run_id, .. } = console.dispatch(launch).await.unwrap() else {
            panic!("launch answered otherwise");
        };
        let mut heard = false;
        while let Some(ev) = next_event(&mut events, Duration::from_secs(30)).await {
            if let Event::Run(ev) = ev {
                if ev.run_id() == run_id {
                    heard = true;
                    break;
                }
            }
        }
        assert!(heard, "no event of run {run_id} after the restart");

        console.shutdown();
        // Shut down, the stream ends (after what it had already heard).
        let ended = tokio::time::timeout(Duration::from_secs(30), async {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Err(RecvError::Closed) => break,
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the event stream did not end at shutdown");
        let e = console.dispatch(Request::Info).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::Unavailable);
        drop(again);
    });
}

/// A pack pushed through the server into the lab's library, then launched there by name
/// (the newest version) and by `NAME@VERSION`, from a client with no pack of its own.
#[test]
fn a_pack_pushed_through_the_server_is_launched_there() {
    let f = bed_with_quick_pack();
    let serve = Serve::start(&f, "127.0.0.1:0", None);
    for version in ["1", "2"] {
        let src = f.pack(
            "lib",
            &format!("name: lib\nversion: '{version}'\ngroups:\n  main:\n    tests: [hi]\n"),
            &[("hi", "", &format!("echo hi from version {version}\n"))],
        );
        let out = client(&f, &serve.url, &["packs", "push", src.to_str().unwrap()]);
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
        assert!(
            stdout.contains(&format!("pushed lib {version} (public")),
            "{stdout}"
        );
    }
    let listed = json_of(&client(&f, &serve.url, &["packs", "library", "--json"]));
    let origins: Vec<(String, bool)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["library"].is_null(),
            )
        })
        .collect();
    assert_eq!(
        origins,
        [
            ("quick".to_string(), true),
            ("lib".to_string(), false),
            ("lib".to_string(), false)
        ],
        "{listed}"
    );
    for (pack, version) in [("lib", "2"), ("lib@1", "1")] {
        let out = client(&f, &serve.url, &["run", pack]);
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}\n{}",
            text(&out.stderr)
        );
        let id = run_id_of(&stdout);
        let stored = json_of(&f.testbay(&["results", &id, "--json"]));
        assert_eq!(stored["run"]["pack_version"], version, "{stored}");
        let script =
            std::fs::read_to_string(f.data.join("runs").join(&id).join("pack/tasks/hi.sh"))
                .unwrap();
        assert!(script.contains(&format!("version {version}")), "{script}");
    }
}

/// `n` bytes no compressor shrinks (xorshift), different for each `seed`.
fn incompressible(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// One raw HTTP/1.1 request to the server (only the head and `body`, whatever
/// `Content-Length` says): the status code and the answer's body.
fn raw_post(port: u16, path: &str, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let (head_end, length) = loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed without an answer");
        got.extend_from_slice(&buf[..n]);
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = text(&got[..at]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            break (at + 4, length);
        }
    };
    while got.len() < head_end + length {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the answer ended early");
        got.extend_from_slice(&buf[..n]);
    }
    let status = text(&got[..head_end])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    (status, text(&got[head_end..head_end + length]))
}

/// A pack of 3 MiB of incompressible files (far over the server's 1 MiB `/api` body)
/// pushed through the server as an upload, then launched there with its files whole.
#[test]
fn a_big_pack_pushed_through_the_server_is_launched_there() {
    let f = bed_with_quick_pack();
    let serve = Serve::start(&f, "127.0.0.1:0", None);
    let src = f.pack(
        "big",
        "name: big\nversion: '1'\ngroups:\n  main:\n    tests: [hi]\n",
        &[("hi", "", "echo hi\n")],
    );
    std::fs::create_dir_all(src.join("data")).unwrap();
    let blobs: Vec<Vec<u8>> = (0..3).map(|i| incompressible(1 << 20, i + 1)).collect();
    for (i, blob) in blobs.iter().enumerate() {
        std::fs::write(src.join(format!("data/blob{i}.bin")), blob).unwrap();
    }
    let out = client(&f, &serve.url, &["packs", "push", src.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("pushed big 1 (public"), "{stdout}");
    let packed: u64 = stdout
        .split(", ")
        .find_map(|w| w.strip_suffix(" bytes packed"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no size in {stdout}"));
    assert!(packed > 3 << 20, "{stdout}");

    let out = client(&f, &serve.url, &["run", "big"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let id = run_id_of(&stdout);
    for (i, blob) in blobs.iter().enumerate() {
        let copied = std::fs::read(
            f.data
                .join("runs")
                .join(&id)
                .join(format!("pack/data/blob{i}.bin")),
        )
        .unwrap();
        assert!(copied == *blob, "blob{i} differs in the run's snapshot");
    }
}

/// An upload that says it is over `bounds::MAX_PACK_ARCHIVE_BYTES` is refused at once,
/// `too_large` naming the bound, before its body is sent.
#[test]
fn a_pack_upload_over_the_bound_is_too_large() {
    let f = bed_with_quick_pack();
    let serve = Serve::start(&f, "127.0.0.1:0", None);
    let over = testbay_engine::bounds::MAX_PACK_ARCHIVE_BYTES + 1;
    let (status, body) = raw_post(
        serve.port,
        "/api/packs",
        &[
            ("Content-Type", "application/octet-stream".into()),
            ("Content-Length", over.to_string()),
        ],
        b"",
    );
    assert_eq!(status, 413, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "too_large", "{body}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("bounds::MAX_PACK_ARCHIVE_BYTES"),
        "{body}"
    );
}

/// In a lab, a viewer's upload is refused 403 `forbidden` before its body is read; an
/// operator's goes in.
#[test]
fn a_viewers_pack_upload_is_forbidden() {
    let f = bed_with_quick_pack();
    let token = |role: &str| {
        let out = f.testbay(&["users", "add", role, "--role", role]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().last().unwrap().trim().to_string()
    };
    let (viewer, operator) = (token("viewer"), token("operator"));
    let serve = Serve::start(&f, "127.0.0.1:0", None);
    let (status, body) = raw_post(
        serve.port,
        "/api/packs?private=true",
        &[
            ("Content-Type", "application/octet-stream".into()),
            ("Authorization", format!("Bearer {viewer}")),
            ("Content-Length", (64u64 << 20).to_string()),
        ],
        b"",
    );
    assert_eq!(status, 403, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["code"], "forbidden", "{body}");

    let src = f.pack(
        "lib",
        "name: lib\nversion: '1'\ngroups:\n  main:\n    tests: [hi]\n",
        &[("hi", "", "echo hi\n")],
    );
    let push = |token: &str| {
        bin()
            .arg("--data-dir")
            .arg(f.root.join("client-data"))
            .args(["--server", &serve.local_url(), "--token", token])
            .args(["packs", "push", "--private", src.to_str().unwrap()])
            .env_remove("TESTBAY_TOKEN")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = push(&viewer);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("forbidden") || text(&out.stdout).contains("forbidden"),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = push(&operator);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("pushed lib 1 (private"), "{stdout}");
}
