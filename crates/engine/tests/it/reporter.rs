//! The reporter socket (`exec::reporter`): every error case answered on the real socket,
//! a flood, a silent client, a forked client and live events within a whole run.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use testbay_engine::clock::{Clock, SystemClock};
use testbay_engine::exec::reporter::{PhaseHandle, PhaseInfo, Reporter};
use testbay_engine::outcome::*;
use testbay_engine::reporter::MAX_MESSAGE_BYTES;
use testbay_engine::run::{LaunchRequest, RunEvent, TaskState};

use crate::support::{rss_kib, write_pack, Bed};

struct Fx {
    _tmp: tempfile::TempDir,
    artifacts: std::path::PathBuf,
    reporter: Reporter,
}

fn fx() -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let artifacts = tmp.path().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let reporter = Reporter::start(tmp.path(), "run-1", clock, Arc::default()).unwrap();
    Fx {
        _tmp: tmp,
        artifacts,
        reporter,
    }
}

fn info() -> PhaseInfo {
    PhaseInfo {
        task: "t".into(),
        lane: "local".into(),
        item: 0,
        phase: testbay_engine::outcome::Phase::Main,
    }
}

/// One client connection speaking lines.
struct Conn {
    rd: BufReader<tokio::net::unix::OwnedReadHalf>,
    wr: tokio::net::unix::OwnedWriteHalf,
}

impl Conn {
    async fn open(fx: &Fx) -> Conn {
        let (rd, wr) = UnixStream::connect(fx.reporter.path())
            .await
            .unwrap()
            .into_split();
        Conn {
            rd: BufReader::new(rd),
            wr,
        }
    }

    async fn hello(fx: &Fx, h: &PhaseHandle) -> Conn {
        let mut c = Conn::open(fx).await;
        let r = c.send(json!({"type": "hello", "token": h.token})).await;
        assert_eq!(r["ok"], true, "{r}");
        c
    }

    async fn raw(&mut self, bytes: &[u8]) -> Value {
        self.wr.write_all(bytes).await.unwrap();
        self.reply().await
    }

    async fn reply(&mut self) -> Value {
        let mut line = String::new();
        self.rd.read_line(&mut line).await.unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    async fn send(&mut self, v: Value) -> Value {
        self.raw(format!("{v}\n").as_bytes()).await
    }

    /// The error code of a refused message.
    async fn refused(&mut self, v: Value) -> String {
        let r = self.send(v).await;
        assert_eq!(r["ok"], false, "{r}");
        r["error"]["code"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn every_error_is_answered_and_the_connection_goes_on() {
    let f = fx();
    let h = f.reporter.open_phase(info(), &f.artifacts, None);
    let mut c = Conn::open(&f).await;
    assert_eq!(
        c.refused(json!({"type": "detail", "text": "x"})).await,
        "no_hello"
    );
    assert_eq!(
        c.refused(json!({"type": "hello", "token": "nope"})).await,
        "unknown_token"
    );
    assert_eq!(c.raw(b"garbage\n").await["error"]["code"], "bad_message");
    let mut c = Conn::hello(&f, &h).await;
    assert_eq!(
        c.refused(json!({"type": "hello", "token": h.token})).await,
        "hello_twice"
    );
    assert_eq!(c.raw(b"{\"type\":\n").await["error"]["code"], "bad_message");
    assert_eq!(
        c.raw(&[0xff, 0xfe, b'\n']).await["error"]["code"],
        "bad_message"
    );
    let mut big = vec![b'x'; MAX_MESSAGE_BYTES + 10];
    big.push(b'\n');
    assert_eq!(c.raw(&big).await["error"]["code"], "too_large");
    let r = c.send(json!({"type": "section_start", "name": "tc"})).await;
    assert_eq!(r, json!({"ok": true, "id": 0}));
    assert_eq!(
        c.refused(json!({"type": "section_stop", "name": "other"}))
            .await,
        "not_open"
    );
    c.send(json!({"type": "section_start", "name": "step"}))
        .await;
    let r = c.send(json!({"type": "section_stop", "name": "tc"})).await;
    assert_eq!(r["error"]["code"], "not_innermost");
    assert_eq!(
        r["error"]["message"],
        "section `tc` is not the innermost open section (`step` is)"
    );
    assert_eq!(
        c.refused(json!({"type": "measurement", "name": "v", "value": 1, "comparison": "LE"}))
            .await,
        "bad_measurement"
    );
    let r = c
        .send(json!({"type": "measurement", "name": "v", "value": 1, "high": 2, "units": "V"}))
        .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        c.refused(json!({"type": "measurement", "name": "v", "value": 1}))
            .await,
        "duplicate_measurement"
    );
    std::fs::write(f.artifacts.join("shot.png"), b"png").unwrap();
    let outside = f.artifacts.parent().unwrap().join("secret");
    std::fs::write(&outside, b"no").unwrap();
    assert_eq!(
        c.refused(json!({"type": "attach", "path": outside})).await,
        "bad_attachment"
    );
    assert_eq!(
        c.refused(json!({"type": "attach", "path": "../secret"}))
            .await,
        "bad_attachment"
    );
    assert_eq!(
        c.refused(json!({"type": "attach", "path": "missing.png"}))
            .await,
        "bad_attachment"
    );
    let r = c.send(json!({"type": "attach", "path": "shot.png"})).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        c.refused(json!({"type": "section_start", "name": "bad\u{1b}[2J"}))
            .await,
        "bad_value"
    );
    assert_eq!(
        c.refused(json!({"type": "detail", "text": "x", "extra": 1}))
            .await,
        "bad_message"
    );
    c.send(json!({"type": "detail", "text": "in step"})).await;
    c.send(json!({"type": "set_result", "result": "Failed", "message": "m"}))
        .await;
    assert_eq!(
        c.refused(json!({"type": "set_result", "result": "Passed"}))
            .await,
        "result_twice"
    );
    c.send(json!({"type": "section_stop", "name": "step", "result": "Failed"}))
        .await;

    let report = h.finish("the phase ended", SystemClock.now_ms());
    assert_eq!(
        c.refused(json!({"type": "detail", "text": "late"})).await,
        "phase_over"
    );
    assert_eq!(report.sections.len(), 2);
    let step = &report.sections[1];
    assert_eq!(step.parent, Some(0));
    assert_eq!(step.result.as_deref(), Some(FAILED));
    assert_eq!(step.details, ["in step"]);
    assert_eq!(step.attachments, ["shot.png"]);
    assert_eq!(step.measurements[0].passed(), Some(true));
    // `tc` was left open: closed Errored with the reason.
    assert_eq!(report.sections[0].result.as_deref(), Some(ERRORED));
    assert_eq!(report.sections[0].message, "the phase ended");
    assert_eq!(report.result, Some((FAILED.into(), "m".into())));
}

/// A client that connects and never writes, and one that says hello and then goes
/// silent, hold up nobody.
#[tokio::test]
async fn silent_clients_hold_up_nobody() {
    let f = fx();
    let h = f.reporter.open_phase(info(), &f.artifacts, None);
    let _mute = UnixStream::connect(f.reporter.path()).await.unwrap();
    let _quiet = Conn::hello(&f, &h).await;
    let mut c = Conn::hello(&f, &h).await;
    let r = c.send(json!({"type": "section_start", "name": "a"})).await;
    assert_eq!(r["ok"], true);
    let report = h.finish("ended", 0);
    assert_eq!(report.sections.len(), 1);
    let path = f.reporter.path().to_path_buf();
    drop(f);
    assert!(!path.exists(), "the socket file outlived its reporter");
}

/// 100,000 messages written back to back without waiting for replies: every one is
/// answered in order, what goes over the bounds is refused, memory stays flat.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_100000_messages_keeps_memory_flat() {
    const N: usize = 100_000;
    let f = fx();
    let h = f.reporter.open_phase(info(), &f.artifacts, None);
    let c = Conn::hello(&f, &h).await;
    let Conn { mut rd, mut wr } = c;
    let before = rss_kib();
    let writer = tokio::spawn(async move {
        let mut chunk = Vec::new();
        for i in 0..N {
            let line = format!(
                "{{\"type\":\"detail\",\"text\":\"detail number {i} of a flood of details\"}}\n"
            );
            chunk.extend_from_slice(line.as_bytes());
            if chunk.len() > 64 * 1024 {
                wr.write_all(&chunk).await.unwrap();
                chunk.clear();
            }
        }
        wr.write_all(&chunk).await.unwrap();
        wr
    });
    let (mut ok, mut limited) = (0, 0);
    let mut line = String::new();
    for _ in 0..N {
        line.clear();
        rd.read_line(&mut line).await.unwrap();
        let v: Value = serde_json::from_str(&line).unwrap();
        if v["ok"] == true {
            ok += 1;
        } else {
            assert_eq!(v["error"]["code"], "limit", "{v}");
            limited += 1;
        }
    }
    let _wr = writer.await.unwrap();
    let after = rss_kib();
    assert_eq!(ok, testbay_engine::reporter::MAX_DETAILS);
    assert_eq!(ok + limited, N);
    let report = h.finish("ended", 0);
    assert_eq!(report.details.len(), testbay_engine::reporter::MAX_DETAILS);
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

/// A Python client in a task: sections nested, a forked child's section under its
/// parent's open section, a measurement, a section left open. A subscriber sees the
/// first section before the phase ends (the task waits for the test's go).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_reports_live_and_a_forked_child_nests_under_its_parent() {
    let f = Bed::new();
    let script = r#"
import json, os, socket, sys, time
def client():
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.environ["TESTBAY_REPORTER"])
    f = s.makefile("rw")
    def send(**m):
        f.write(json.dumps(m) + "\n"); f.flush()
        r = json.loads(f.readline())
        assert r["ok"], r
        return r
    send(type="hello", token=os.environ["TESTBAY_REPORTER_TOKEN"], pid=os.getpid())
    return send
send = client()
send(type="section_start", name="boot")
go = os.path.join(os.environ["TESTBAY_ARTIFACTS"], "go")
while not os.path.exists(go):
    time.sleep(0.01)
pid = os.fork()
if pid == 0:
    child = client()
    child(type="section_start", name="in child")
    child(type="measurement", name="snr_db", value=31.5, units="dB", low=30)
    child(type="section_stop", name="in child")
    os._exit(0)
os.waitpid(pid, 0)
send(type="section_stop", name="boot", result="Passed")
send(type="section_start", name="left open")
"#;
    write_pack(
        &f.pack,
        "name: rep\nversion: '1'\ngroups:\n  g:\n    tests: [talk]\n",
        &[("talk", "", "")],
    );
    std::fs::write(f.pack.join("tasks/talk.py"), script).unwrap();
    std::fs::write(
        f.pack.join("tasks/talk.yaml"),
        "name: talk\nrun: [python3, talk.py]\n",
    )
    .unwrap();
    let mut rx = f.mgr.subscribe();
    let id = f
        .mgr
        .launch(LaunchRequest {
            pack_dir: f.pack.display().to_string(),
            ..Default::default()
        })
        .unwrap();
    // The section's start arrives while the task still runs (it waits for `go`).
    let (artifacts, item) = loop {
        match rx.recv().await.unwrap() {
            RunEvent::Section { section, item, .. } if section.name == "boot" => {
                assert!(section.result.is_none());
                break (f.data.join("runs").join(&id).join("local"), item as usize);
            }
            _ => {}
        }
    };
    // A screen opened now starts from what was reported so far.
    let so_far = f.mgr.task_sections(&id, item).unwrap();
    assert_eq!(so_far.len(), 1, "{so_far:?}");
    assert_eq!(
        (so_far[0].phase.as_str(), so_far[0].section.name.as_str()),
        ("main", "boot")
    );
    assert!(so_far[0].section.result.is_none(), "boot is still open");
    assert!(f.mgr.task_sections("r-none", 0).is_none());
    let occ = std::fs::read_dir(&artifacts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("artifacts").is_dir())
        .unwrap();
    std::fs::write(occ.join("artifacts/go"), "").unwrap();
    let status = f.mgr.wait(&id).await.unwrap();
    assert_eq!(status, RunStatus::Completed);
    let mut sections = Vec::new();
    let mut measured = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        match ev {
            RunEvent::Section { section, .. } => sections.push(*section),
            RunEvent::Measurement {
                measurement,
                passed,
                section,
                ..
            } => measured.push((measurement.name.clone(), passed, section)),
            _ => {}
        }
    }
    let kept = f.mgr.task_sections(&id, item).unwrap();
    let names: Vec<(&str, Option<&str>)> = kept
        .iter()
        .map(|k| (k.section.name.as_str(), k.section.result.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("boot", Some("Passed")),
            ("in child", Some("Passed")),
            ("left open", Some(ERRORED))
        ],
        "the live state follows every start, stop and measurement"
    );
    assert_eq!(kept[1].section.measurements.len(), 1);
    let child = sections.iter().find(|s| s.name == "in child").unwrap();
    assert_eq!(
        child.parent,
        Some(0),
        "the child's section nests under boot"
    );
    assert_eq!(measured, [("snr_db".to_string(), Some(true), Some(1))]);
    let left = sections.iter().rfind(|s| s.name == "left open").unwrap();
    assert_eq!(left.result.as_deref(), Some(ERRORED));
    assert_eq!(left.message, "still open when the main phase ended");
    // The task exited 0 but left a section open: its roll-up is Errored.
    let t = f.mgr.store().run_tasks(&id).unwrap();
    assert_eq!(t[0].result.as_deref(), Some(ERRORED));
    assert!(
        t[0].message
            .as_deref()
            .unwrap_or("")
            .contains("`left open`"),
        "{:?}",
        t[0].message
    );
}

/// A result file's verdict wins over the reporter's `set_result`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_result_file_wins_over_set_result() {
    let f = Bed::new();
    write_pack(
        &f.pack,
        "name: rep2\nversion: '1'\ngroups:\n  g:\n    tests: [both, only]\n",
        &[("both", "", ""), ("only", "", "")],
    );
    let script = |file: &str| {
        format!(
            r#"
import json, os, socket
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["TESTBAY_REPORTER"])
f = s.makefile("rw")
for m in [dict(type="hello", token=os.environ["TESTBAY_REPORTER_TOKEN"]),
          dict(type="set_result", result="Failed", message="from the reporter")]:
    f.write(json.dumps(m) + "\n"); f.flush(); assert json.loads(f.readline())["ok"]
{file}
"#
        )
    };
    for (name, file) in [
        (
            "both",
            "open(os.environ['TESTBAY_RESULT'], 'w').write(json.dumps({'result': 'Passed'}))",
        ),
        ("only", ""),
    ] {
        std::fs::write(f.pack.join(format!("tasks/{name}.py")), script(file)).unwrap();
        std::fs::write(
            f.pack.join(format!("tasks/{name}.yaml")),
            format!("name: {name}\nrun: [python3, {name}.py]\n"),
        )
        .unwrap();
    }
    let id = f
        .mgr
        .launch(LaunchRequest {
            pack_dir: f.pack.display().to_string(),
            ..Default::default()
        })
        .unwrap();
    f.mgr.wait(&id).await.unwrap();
    let tasks = f.mgr.store().run_tasks(&id).unwrap();
    let result = |n: &str| {
        let t = tasks.iter().find(|t| t.task == n).unwrap();
        (
            t.result.clone().unwrap(),
            t.message.clone().unwrap_or_default(),
        )
    };
    assert_eq!(result("both").0, PASSED);
    assert_eq!(
        result("only"),
        (FAILED.to_string(), "from the reporter".to_string())
    );
}

/// A Python task reports through the bundled SDK without installing it (the console puts
/// it on PYTHONPATH): steps, a failed step from an exception, a measurement out of limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_task_uses_the_bundled_sdk() {
    let f = Bed::new();
    write_pack(
        &f.pack,
        "name: sdk\nversion: '1'\ngroups:\n  g:\n    tests: [py]\n",
        &[("py", "", "")],
    );
    let script = r#"
import testbay
with testbay.section("rf", description="radio checks"):
    with testbay.step("tune"):
        testbay.detail("locked")
    try:
        with testbay.step("scan"):
            raise RuntimeError("no carrier")
    except RuntimeError:
        pass
    testbay.measure("snr_db", 12.0, units="dB", low=20)
"#;
    std::fs::write(f.pack.join("tasks/py.py"), script).unwrap();
    std::fs::write(
        f.pack.join("tasks/py.yaml"),
        "name: py\nrun: [python3, py.py]\n",
    )
    .unwrap();
    let id = f
        .mgr
        .launch(LaunchRequest {
            pack_dir: f.pack.display().to_string(),
            ..Default::default()
        })
        .unwrap();
    f.mgr.wait(&id).await.unwrap();
    let t = &f.mgr.store().run_tasks(&id).unwrap()[0];
    let got: Vec<(&str, Option<&str>, &str)> = t
        .sections
        .iter()
        .map(|s| {
            (
                s.section.name.as_str(),
                s.section.result.as_deref(),
                s.section.message.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("rf", Some(PASSED), ""),
            ("tune", Some(PASSED), ""),
            ("scan", Some(FAILED), "RuntimeError: no carrier"),
        ],
        "{:?}",
        t.message
    );
    assert_eq!(t.sections[1].section.details, ["locked"]);
    assert_eq!(t.sections[0].section.measurements[0].passed(), Some(false));
}

/// A task asks the operator twice: the first prompt is answered through the API (a wrong
/// choice refused first), the second times out; both answers go back to the task and into
/// its result; the event stream carries the prompt and its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_are_answered_through_the_api_or_time_out() {
    use testbay_engine::api::{
        parse_request, Console, ConsolePaths, Event, LocalConsole, Response,
    };
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("packs/ask");
    write_pack(
        &pack,
        "name: ask\nversion: '1'\ngroups:\n  g:\n    tests: [cable]\n",
        &[("cable", "", "")],
    );
    let script = r#"
import json, os, socket
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["TESTBAY_REPORTER"])
f = s.makefile("rw")
def send(**m):
    f.write(json.dumps(m) + "\n"); f.flush()
    return json.loads(f.readline())
send(type="hello", token=os.environ["TESTBAY_REPORTER_TOKEN"])
a = send(type="prompt", message="Plug in the HDMI cable", choices=["done", "no cable"])
b = send(type="prompt", message="Serial number?", pattern="SN[0-9]+", timeout_s=0.3)
bad = send(type="prompt", message="x", pattern="(")
print(json.dumps([a, b, bad]))
ok = a["answer"]["text"] == "done" and b["answer"]["timed_out"] and bad["error"]["code"] == "bad_value"
send(type="set_result", result="Passed" if ok else "Failed", message=json.dumps([a, b]))
"#;
    std::fs::write(pack.join("tasks/cable.py"), script).unwrap();
    std::fs::write(
        pack.join("tasks/cable.yaml"),
        "name: cable\nrun: [python3, cable.py]\n",
    )
    .unwrap();
    let c = LocalConsole::open(ConsolePaths {
        data_dir: dir.path().join("data"),
        pack_roots: vec![dir.path().join("packs")],
        lab_file: None,
    })
    .unwrap();
    let call = |json: String| {
        let c = &c;
        async move { c.dispatch(parse_request(json.as_bytes())?).await }
    };
    let mut events = c.subscribe();
    let Response::Launch { run_id, .. } = call(r#"{"cmd":"launch","pack":"ask"}"#.into())
        .await
        .unwrap()
    else {
        panic!()
    };
    // The prompt's event comes first (after the task's state saying it waits for the
    // operator); the API lists it.
    let mut waits = Vec::new();
    let id = loop {
        match events.recv().await.unwrap() {
            Event::Run(RunEvent::Prompt { prompt, .. }) => {
                assert_eq!(prompt.message, "Plug in the HDMI cable");
                break prompt.id;
            }
            Event::Run(RunEvent::TaskState {
                state: TaskState::Running { waiting, .. },
                ..
            }) => waits.push(waiting),
            _ => {}
        }
    };
    let operator = Some("waiting for the operator: Plug in the HDMI cable".to_string());
    assert_eq!(waits.last(), Some(&operator), "{waits:?}");
    // The live run view (Live, the queue, the rack view) says so too.
    let Response::RunView(view) = call(format!(r#"{{"cmd":"run_view","run_id":"{run_id}"}}"#))
        .await
        .unwrap()
    else {
        panic!()
    };
    match &view.lanes[0].test[0].state {
        TaskState::Running { waiting, .. } => assert_eq!(waiting, &operator),
        s => panic!("{s:?}"),
    }
    let Response::ListPrompts(list) = call(r#"{"cmd":"list_prompts"}"#.into()).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].task, "cable");
    let e = call(format!(
        r#"{{"cmd":"answer_prompt","id":{id},"answer":"maybe"}}"#
    ))
    .await
    .unwrap_err();
    assert!(
        e.message.contains("not one of the choices: done, no cable"),
        "{e}"
    );
    call(format!(
        r#"{{"cmd":"answer_prompt","id":{id},"answer":"done","by":"ana"}}"#
    ))
    .await
    .unwrap();
    let e = call(format!(
        r#"{{"cmd":"answer_prompt","id":{id},"answer":"done"}}"#
    ))
    .await
    .unwrap_err();
    assert_eq!(e.code, testbay_engine::api::ErrorCode::NotFound);
    let mut answered = Vec::new();
    loop {
        match events.recv().await.unwrap() {
            Event::Run(RunEvent::PromptAnswered { answer, .. }) => answered.push(answer),
            Event::Run(RunEvent::TaskState {
                state: TaskState::Running { waiting, .. },
                ..
            }) => waits.push(waiting),
            Event::Run(RunEvent::RunStatus { status, .. }) if status.is_finished() => break,
            _ => {}
        }
    }
    assert_eq!(answered.len(), 2);
    assert_eq!(answered[0].by.as_deref(), Some("ana"));
    assert!(answered[1].timed_out);
    // Each answer (or timeout) ends the wait; the second prompt waited in between.
    assert_eq!(
        waits[waits.len() - 3..],
        [
            None,
            Some("waiting for the operator: Serial number?".to_string()),
            None
        ],
        "{waits:?}"
    );
    let Response::GetRun(d) = call(format!(r#"{{"cmd":"get_run","run_id":"{run_id}"}}"#))
        .await
        .unwrap()
    else {
        panic!()
    };
    let t = &d.tasks[0].record;
    assert_eq!(t.result.as_deref(), Some(PASSED), "{:?}", t.message);
    let prompts = &t.metadata.as_ref().unwrap()["prompts"];
    assert_eq!(prompts[0]["answer"]["text"], "done");
    assert_eq!(prompts[0]["answer"]["by"], "ana");
    assert_eq!(prompts[1]["answer"]["timed_out"], true);
    c.shutdown();
}
