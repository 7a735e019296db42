//! Two serving consoles on one PostgreSQL database (`api::relay`), in one process with a
//! real throwaway cluster: the first owns the book and executes what the second
//! launches; the second's subscribers see those runs live, and its stop stops them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use testbay_engine::api::{
    parse_request, ApiError, Console, ConsoleOptions, ConsolePaths, Event, LocalConsole, Response,
};
use testbay_engine::outcome::RunStatus;
use testbay_engine::run::RunEvent;
use testbay_engine::store::StoreLocation;

use crate::support::{run_end, write};

const LAB: &str = "name: t\nracks:\n  - {name: rack-x, slots: 4}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 1}}\n  - {name: box-2, model: BX-1, location: {rack: rack-x, slot: 2}}\nhealth_checks:\n  - {dut: box-2, pack: p, group: quick, interval: 86400}\n";

const PATIENCE: Duration = Duration::from_secs(30);

/// One lab and pack, a data directory per server.
fn set_up(root: &Path, server: &str) -> ConsolePaths {
    write(&root.join("lab.yaml"), LAB);
    let dir = root.join("packs/p");
    write(
        &dir.join("pack.yaml"),
        "name: p\nversion: '1'\ngroups:\n  quick:\n    tests: [quick]\n  slow:\n    tests: [slow]\n",
    );
    write(
        &dir.join("tasks/quick.yaml"),
        "name: quick\nrun: [bash, quick.sh]\nest_task_time: 1\n",
    );
    write(&dir.join("tasks/quick.sh"), "echo quick here; sleep 1\n");
    write(
        &dir.join("tasks/slow.yaml"),
        "name: slow\nrun: [bash, slow.sh]\nest_task_time: 60\n",
    );
    write(&dir.join("tasks/slow.sh"), "echo slow here; sleep 60\n");
    let data = root.join(server);
    write(&data.join("settings.yaml"), "dispatch_cpu_threshold: 100\n");
    ConsolePaths {
        data_dir: data,
        pack_roots: vec![root.join("packs")],
        lab_file: Some(root.join("lab.yaml")),
    }
}

fn open(paths: ConsolePaths, url: &str) -> Arc<dyn Console> {
    LocalConsole::open_with(
        paths,
        ConsoleOptions {
            watch_packs: false,
            health_checks: false,
            store: Some(StoreLocation::Postgres(url.to_string())),
            ..ConsoleOptions::default()
        },
    )
    .unwrap()
    .shared()
}

async fn call(c: &Arc<dyn Console>, req: serde_json::Value) -> Result<Response, ApiError> {
    c.dispatch(parse_request(req.to_string().as_bytes()).unwrap())
        .await
}

async fn launch(c: &Arc<dyn Console>, group: &str, dut: &str) -> String {
    match call(
        c,
        json!({"cmd": "launch", "pack": "p", "groups": [group], "duts": [dut]}),
    )
    .await
    .unwrap()
    {
        Response::Launch { run_id, queued, .. } => {
            assert!(!queued, "the DUT is free");
            run_id
        }
        other => panic!("{other:?}"),
    }
}

/// Until B hears a book event, which only A's relay can send it (B owns no book): both
/// relays listen from then on.
async fn until_relayed(
    a: &Arc<dyn Console>,
    b_events: &mut tokio::sync::broadcast::Receiver<Event>,
) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let held = match call(
                a,
                json!({"cmd": "hold", "resource": "box-2", "by": "alice", "duration_s": 60}),
            )
            .await
            .unwrap()
            {
                Response::Hold(r) => r.id.0,
                other => panic!("{other:?}"),
            };
            call(a, json!({"cmd": "release", "id": held}))
                .await
                .unwrap();
            let heard = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    if let Ok(Event::Book(_)) = b_events.recv().await {
                        return;
                    }
                }
            })
            .await;
            if heard.is_ok() {
                return;
            }
        }
    })
    .await
    .expect("B hears A's book events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_launched_on_the_second_server_runs_on_the_first_and_is_seen_and_stopped_on_the_second(
) {
    let url = testbay_pgtest::shared()
        .expect("a throwaway PostgreSQL (Debian's postgresql package)")
        .fresh_db("relay")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (set_up(dir.path(), "a"), set_up(dir.path(), "b"));
    let a = open(pa.clone(), &url);
    let b = open(pb.clone(), &url);
    let mut b_events = b.subscribe();
    until_relayed(&a, &mut b_events).await;

    // Launched on B, executed by A (its run folder is in A's data directory), followed
    // live on B: a log line of its task, then its end.
    let run_id = launch(&b, "quick", "box-1").await;
    let mut saw_log = false;
    let status = tokio::time::timeout(PATIENCE, async {
        loop {
            match b_events.recv().await {
                Ok(Event::Run(RunEvent::RunStatus {
                    run_id: id, status, ..
                })) if id == run_id && status.is_finished() => return status,
                Ok(Event::Run(ev)) if format!("{ev:?}").contains("quick here") => saw_log = true,
                _ => {}
            }
        }
    })
    .await
    .expect("B sees the run end");
    assert_eq!(status, RunStatus::Completed);
    assert!(saw_log, "B saw the task's log line live");
    assert!(pa.data_dir.join("runs").join(&run_id).is_dir());
    assert!(!pb.data_dir.join("runs").join(&run_id).exists());

    // A stop on B stops the run A executes.
    let slow = launch(&b, "slow", "box-1").await;
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(Event::Run(ev)) = b_events.recv().await {
                if format!("{ev:?}").contains("slow here") {
                    return;
                }
            }
        }
    })
    .await
    .expect("the slow task starts");
    match call(&b, json!({"cmd": "stop_run", "run_id": slow})).await {
        Ok(Response::StopRun { run_id }) => assert_eq!(run_id, slow),
        other => panic!("{other:?}"),
    }
    assert_eq!(run_end(&mut b_events, &slow).await, RunStatus::Stopped);
    a.shutdown();
    b.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_listen_connection_reconnects_and_its_subscribers_resync() {
    let url = testbay_pgtest::shared()
        .expect("a throwaway PostgreSQL (Debian's postgresql package)")
        .fresh_db("relay_drop")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = open(set_up(dir.path(), "a"), &url);
    let b = open(set_up(dir.path(), "b"), &url);
    let mut b_events = b.subscribe();
    until_relayed(&a, &mut b_events).await;

    let (admin, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let killed = admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = $1 AND datname = current_database()",
            &[&testbay_engine::api::relay::LISTEN_APP_NAME],
        )
        .await
        .unwrap();
    assert_eq!(killed, 2, "one listen connection per server");
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(Event::Resync { .. }) = b_events.recv().await {
                return;
            }
        }
    })
    .await
    .expect("B's subscriber is told to reload");
    // Listening again: B's launch still runs on A and is followed on B.
    let run_id = launch(&b, "quick", "box-1").await;
    assert_eq!(run_end(&mut b_events, &run_id).await, RunStatus::Completed);
    a.shutdown();
    b.shutdown();
}

/// A relaunch and a health check made on B run on A (the book's owner), an answer given
/// on B to a prompt of a run A executes reaches A's task, and a pack pushed on A is
/// launched from B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relaunch_a_check_and_a_prompt_answer_on_the_second_server_go_to_the_first() {
    let url = testbay_pgtest::shared()
        .expect("a throwaway PostgreSQL (Debian's postgresql package)")
        .fresh_db("relay_forward")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (set_up(dir.path(), "a"), set_up(dir.path(), "b"));
    let ask = dir.path().join("packs/ask");
    write(
        &ask.join("pack.yaml"),
        "name: ask\nversion: '1'\ngroups:\n  g:\n    tests: [cable]\n",
    );
    write(
        &ask.join("tasks/cable.yaml"),
        "name: cable\nrun: [python3, cable.py]\n",
    );
    write(
        &ask.join("tasks/cable.py"),
        r#"
import json, os, socket
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ["TESTBAY_REPORTER"])
f = s.makefile("rw")
def send(**m):
    f.write(json.dumps(m) + "\n"); f.flush()
    return json.loads(f.readline())
send(type="hello", token=os.environ["TESTBAY_REPORTER_TOKEN"])
a = send(type="prompt", message="Plug in the cable", choices=["done", "no cable"])
send(type="set_result", result="Passed", message=a["answer"]["by"])
"#,
    );
    let a = open(pa.clone(), &url);
    let b = open(pb, &url);
    let mut b_events = b.subscribe();
    until_relayed(&a, &mut b_events).await;

    let first = launch(&b, "quick", "box-1").await;
    assert_eq!(run_end(&mut b_events, &first).await, RunStatus::Completed);
    let again = match call(&b, json!({"cmd": "relaunch", "run_id": first})).await {
        Ok(Response::Relaunch { run_id, from, .. }) => {
            assert_eq!(from, first);
            run_id
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(run_end(&mut b_events, &again).await, RunStatus::Completed);
    assert!(pa.data_dir.join("runs").join(&again).is_dir(), "A ran it");
    let check = match call(&b, json!({"cmd": "check_dut", "dut": "box-2"})).await {
        Ok(Response::CheckDut { run_id }) => run_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(run_end(&mut b_events, &check).await, RunStatus::Completed);
    assert!(
        pa.data_dir.join("runs").join(&check).is_dir(),
        "A ran the check"
    );

    let asking = match call(
        &b,
        json!({"cmd": "launch", "pack": "ask", "duts": ["box-2"]}),
    )
    .await
    .unwrap()
    {
        Response::Launch { run_id, .. } => run_id,
        other => panic!("{other:?}"),
    };
    let prompt = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(Event::Run(RunEvent::Prompt { prompt, .. })) = b_events.recv().await {
                return prompt;
            }
        }
    })
    .await
    .expect("B sees A's task ask");
    assert_eq!(prompt.run_id, asking);
    let answer = json!({"cmd": "answer_prompt", "id": prompt.id, "answer": "done",
                        "by": "bob", "run_id": asking});
    match call(&b, answer).await {
        Ok(Response::AnswerPrompt(p)) => assert_eq!(p.id, prompt.id),
        other => panic!("{other:?}"),
    }
    assert_eq!(run_end(&mut b_events, &asking).await, RunStatus::Completed);
    match call(&b, json!({"cmd": "get_run", "run_id": asking})).await {
        Ok(Response::GetRun(run)) => {
            assert_eq!(run.tasks[0].record.message.as_deref(), Some("bob"))
        }
        other => panic!("{other:?}"),
    }
    // A pack pushed on A is in B's list, and B's launch of it runs on A.
    let src = dir.path().join("lib-src");
    write(
        &src.join("pack.yaml"),
        "name: lib\nversion: '1'\ngroups:\n  g:\n    tests: [hi]\n",
    );
    write(&src.join("tasks/hi.yaml"), "name: hi\nrun: [bash, hi.sh]\n");
    write(&src.join("tasks/hi.sh"), "echo hi\n");
    let (bytes, hash) = testbay_engine::pack::archive::pack_dir(&src).unwrap();
    let push =
        json!({"cmd": "push_pack", "archive": testbay_engine::pack::archive::to_text(&bytes)});
    call(&a, push).await.unwrap();
    match call(&b, json!({"cmd": "list_packs"})).await {
        Ok(Response::ListPacks(packs)) => assert!(
            packs.iter().any(|p| p.name == "lib" && p.library.is_some()),
            "{packs:?}"
        ),
        other => panic!("{other:?}"),
    }
    let from_library = match call(
        &b,
        json!({"cmd": "launch", "pack": "lib", "duts": ["box-1"]}),
    )
    .await
    .unwrap()
    {
        Response::Launch { run_id, .. } => run_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        run_end(&mut b_events, &from_library).await,
        RunStatus::Completed
    );
    assert!(pa.data_dir.join("library").join(&hash).is_dir());

    // A run that is over waits on nothing: refused at once.
    let late = json!({"cmd": "answer_prompt", "id": prompt.id, "answer": "done",
                      "run_id": asking});
    let e = call(&b, late).await.unwrap_err();
    assert_eq!(e.code, testbay_engine::api::ErrorCode::NotFound, "{e:?}");
    a.shutdown();
    b.shutdown();
}
