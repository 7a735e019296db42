//! Users, roles and the audit log: every request's role, the access service on a real
//! SQLite store, and the console recording who acted.

use std::collections::BTreeSet;
use std::path::Path;

use testbay_engine::access::{token_hash, Access};
use testbay_engine::api::{
    parse_request, Caller, Console, ConsolePaths, ErrorCode, LocalConsole, Request, Response, Role,
};
use testbay_engine::store::{AuditQuery, SqliteStore};

use crate::support::{demo_lab, repo};

/// One request of every kind, with the role it needs and whether it changes state.
const EVERY_REQUEST: &[(&str, Role, bool)] = &[
    (r#"{"cmd":"info"}"#, Role::Viewer, false),
    (r#"{"cmd":"list_packs"}"#, Role::Viewer, false),
    (r#"{"cmd":"get_pack","name":"p"}"#, Role::Viewer, false),
    (r#"{"cmd":"launch","pack":"p"}"#, Role::Operator, true),
    (r#"{"cmd":"stop_run","run_id":"r"}"#, Role::Operator, true),
    (r#"{"cmd":"active_runs"}"#, Role::Viewer, false),
    (r#"{"cmd":"run_view","run_id":"r"}"#, Role::Viewer, false),
    (
        r#"{"cmd":"read_log","run_id":"r","task_id":1,"phase":"main","offset":0}"#,
        Role::Viewer,
        false,
    ),
    (
        r#"{"cmd":"read_file","run_id":"r","path":"x"}"#,
        Role::Viewer,
        false,
    ),
    (r#"{"cmd":"list_runs"}"#, Role::Viewer, false),
    (r#"{"cmd":"get_run","run_id":"r"}"#, Role::Viewer, false),
    (
        r#"{"cmd":"export","run_id":"r","format":"json"}"#,
        Role::Viewer,
        false,
    ),
    (r#"{"cmd":"get_lab"}"#, Role::Viewer, false),
    (r#"{"cmd":"search_duts","query":""}"#, Role::Viewer, false),
    (r#"{"cmd":"reservations"}"#, Role::Viewer, false),
    (
        r#"{"cmd":"hold","resource":"d","by":"x","duration_s":1}"#,
        Role::Operator,
        true,
    ),
    (r#"{"cmd":"release","id":"1"}"#, Role::Operator, true),
    (r#"{"cmd":"queue"}"#, Role::Viewer, false),
    (
        r#"{"cmd":"move_queued","run_id":"r","to":"up"}"#,
        Role::Operator,
        true,
    ),
    (
        r#"{"cmd":"set_queued_priority","run_id":"r","priority":"low"}"#,
        Role::Operator,
        true,
    ),
    (
        r#"{"cmd":"cancel_queued","run_id":"r"}"#,
        Role::Operator,
        true,
    ),
    (
        r#"{"cmd":"add_schedule","name":"n","pack":"p","when":{"type":"daily","start":"2031-01-01T02:00","time_zone":"UTC"}}"#,
        Role::Operator,
        true,
    ),
    (
        r#"{"cmd":"update_schedule","id":"s","def":{"name":"n","pack":"p","when":{"type":"daily","start":"2031-01-01T02:00","time_zone":"UTC"}}}"#,
        Role::Operator,
        true,
    ),
    (r#"{"cmd":"list_schedules"}"#, Role::Viewer, false),
    (r#"{"cmd":"get_schedule","id":"s"}"#, Role::Viewer, false),
    (r#"{"cmd":"pause_schedule","id":"s"}"#, Role::Operator, true),
    (
        r#"{"cmd":"resume_schedule","id":"s"}"#,
        Role::Operator,
        true,
    ),
    (
        r#"{"cmd":"remove_schedule","id":"s"}"#,
        Role::Operator,
        true,
    ),
    (r#"{"cmd":"list_webhooks"}"#, Role::Viewer, false),
    (
        r#"{"cmd":"add_webhook","url":"http://x","events":["run_finished"]}"#,
        Role::Admin,
        true,
    ),
    (r#"{"cmd":"update_webhook","id":1}"#, Role::Admin, true),
    (r#"{"cmd":"remove_webhook","id":1}"#, Role::Admin, true),
    (r#"{"cmd":"webhook_deliveries"}"#, Role::Viewer, false),
    (r#"{"cmd":"dut_health","dut":"d"}"#, Role::Viewer, false),
    (
        r#"{"cmd":"restore_dut","dut":"d","note":"n"}"#,
        Role::Operator,
        true,
    ),
    (r#"{"cmd":"check_dut","dut":"d"}"#, Role::Operator, true),
    (r#"{"cmd":"relaunch","run_id":"r"}"#, Role::Operator, true),
    (
        r#"{"cmd":"task_history","pack":"p","task":"t"}"#,
        Role::Viewer,
        false,
    ),
    (
        r#"{"cmd":"measurement_history","pack":"p","task":"t","name":"m"}"#,
        Role::Viewer,
        false,
    ),
    (
        r#"{"cmd":"measurement_yield","pack":"p"}"#,
        Role::Viewer,
        false,
    ),
    (r#"{"cmd":"flaky"}"#, Role::Viewer, false),
    (
        r#"{"cmd":"compare_runs","a":"r","b":"s"}"#,
        Role::Viewer,
        false,
    ),
    (
        r#"{"cmd":"pin_baseline","run_id":"r"}"#,
        Role::Operator,
        true,
    ),
    (
        r#"{"cmd":"unpin_baseline","pack":"p"}"#,
        Role::Operator,
        true,
    ),
    (r#"{"cmd":"baselines"}"#, Role::Viewer, false),
    (r#"{"cmd":"list_prompts"}"#, Role::Viewer, false),
    (
        r#"{"cmd":"answer_prompt","id":1,"answer":"a"}"#,
        Role::Operator,
        true,
    ),
    (
        r#"{"cmd":"extend_hold","id":"1","duration_s":1}"#,
        Role::Operator,
        true,
    ),
    (
        r#"{"cmd":"reservation_history","hours":1}"#,
        Role::Viewer,
        false,
    ),
    (
        r#"{"cmd":"task_sections","run_id":"r","item":0}"#,
        Role::Viewer,
        false,
    ),
    (r#"{"cmd":"who_am_i"}"#, Role::Viewer, false),
    (r#"{"cmd":"triage_rules"}"#, Role::Viewer, false),
    (
        r#"{"cmd":"add_triage_rule","rule":{"name":"n","category":"c","message":"x"}}"#,
        Role::Admin,
        true,
    ),
    (
        r#"{"cmd":"remove_triage_rule","name":"n"}"#,
        Role::Admin,
        true,
    ),
    (r#"{"cmd":"run_triage","run_id":"r"}"#, Role::Viewer, false),
    (r#"{"cmd":"triage_summary"}"#, Role::Viewer, false),
    (r#"{"cmd":"prune","dry_run":true}"#, Role::Viewer, false),
    (r#"{"cmd":"prune","dry_run":false}"#, Role::Admin, true),
    (r#"{"cmd":"data_usage"}"#, Role::Viewer, false),
    (r#"{"cmd":"run_keep","run_id":"r"}"#, Role::Viewer, false),
    (
        r#"{"cmd":"set_run_keep","run_id":"r","keep":true}"#,
        Role::Operator,
        true,
    ),
    (r#"{"cmd":"renew_hold","id":"1"}"#, Role::Operator, true),
    (r#"{"cmd":"list_users"}"#, Role::Admin, false),
    (
        r#"{"cmd":"add_user","name":"n","role":"viewer"}"#,
        Role::Admin,
        true,
    ),
    (r#"{"cmd":"revoke_user","user":"n"}"#, Role::Admin, true),
    (
        r#"{"cmd":"set_user_role","user":"n","role":"admin"}"#,
        Role::Admin,
        true,
    ),
    (r#"{"cmd":"audit"}"#, Role::Viewer, false),
    (
        r#"{"cmd":"push_pack","archive":"","private":true}"#,
        Role::Operator,
        true,
    ),
    (r#"{"cmd":"publish_pack","pack":"p"}"#, Role::Operator, true),
    (r#"{"cmd":"agents"}"#, Role::Viewer, false),
    (r#"{"cmd":"drain_agent","name":"a"}"#, Role::Operator, true),
    (r#"{"cmd":"agent_snapshot","hash":"h"}"#, Role::Agent, false),
];

#[test]
fn every_request_is_classified_and_the_table_covers_every_command() {
    let mut seen = BTreeSet::new();
    for (json, role, changes) in EVERY_REQUEST {
        let req = parse_request(json.as_bytes()).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert_eq!(req.role(), *role, "{json}");
        assert_eq!(req.changes_state(), *changes, "{json}");
        seen.insert(req.cmd());
    }
    // Every command the API speaks (the generated TypeScript lists them) is in the table.
    let ts = std::fs::read_to_string(repo().join("ui/src/lib/api/generated/Request.ts")).unwrap();
    let all: BTreeSet<String> = ts
        .split("\"cmd\": \"")
        .skip(1)
        .map(|s| s.split('"').next().unwrap().to_string())
        .collect();
    assert!(!all.is_empty());
    assert_eq!(seen, all, "a command is missing from EVERY_REQUEST");
}

#[test]
fn roles_rank_and_agents_make_only_agent_requests() {
    use Role::*;
    for (have, need, ok) in [
        (Viewer, Viewer, true),
        (Viewer, Operator, false),
        (Operator, Viewer, true),
        (Operator, Admin, false),
        (Admin, Operator, true),
        (Agent, Viewer, false),
        (Admin, Agent, false),
        (Operator, Agent, false),
        (Agent, Agent, true),
    ] {
        assert_eq!(have.allows(need), ok, "{have:?} {need:?}");
    }
}

#[test]
fn users_tokens_and_the_audit_log_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    let token = users_tokens_and_the_audit_log(&store);
    // The database never holds the token itself.
    let db = std::fs::read(store.path()).unwrap();
    let wal = std::fs::read(store.path().with_extension("db-wal")).unwrap_or_default();
    let hay = [db, wal].concat();
    assert!(!hay.windows(token.len()).any(|w| w == token.as_bytes()));
}

/// Users, tokens and the audit log on any backend; the first user's token.
pub(crate) fn users_tokens_and_the_audit_log(store: &dyn testbay_engine::store::Store) -> String {
    let clock = std::sync::Arc::new(testbay_engine::clock::ManualClock::new(1_000));
    let access = Access::open(store, clock.clone()).unwrap().unwrap();
    assert!(!access.has_users().unwrap());
    let (ada, token) = access.add_user("ada", Role::Admin).unwrap();
    assert!(access.has_users().unwrap());
    assert_eq!(ada.created_ms, 1_000);
    assert_eq!(ada.token_id, token_hash(&token)[..8]);
    assert!(
        access.add_user("ada", Role::Viewer).is_err(),
        "names are unique"
    );
    assert!(access.add_user("no spaces", Role::Viewer).is_err());
    assert_eq!(access.authenticate(&token).unwrap().unwrap().name, "ada");
    assert!(access.authenticate("nope").unwrap().is_none());

    assert_eq!(
        access.set_role("ada", Role::Operator).unwrap().role,
        Role::Operator
    );
    let id = ada.id.to_string();
    clock.advance(5_000);
    let revoked = access.revoke(&id).unwrap();
    assert_eq!(revoked.revoked_ms, Some(6_000));
    clock.advance(5_000);
    assert_eq!(
        access.revoke("ada").unwrap().revoked_ms,
        Some(6_000),
        "the first time kept"
    );
    assert!(access.authenticate(&token).unwrap().is_none(), "revoked");
    assert!(access.revoke("nobody").is_err());

    for (t, user, target) in [(1, "ada", "r1"), (2, "bob", "r1"), (3, "ada", "r2")] {
        clock.set(t * 10_000);
        access.record(user, "launch", target, &"x".repeat(5_000));
    }
    let all = access.audit(&AuditQuery::default()).unwrap();
    assert_eq!(
        all.iter().map(|e| e.time_ms).collect::<Vec<_>>(),
        [30_000, 20_000, 10_000]
    );
    assert_eq!(all[0].detail.chars().count(), 1_000, "details are cut");
    let q = |since_ms, user: Option<&str>, target: Option<&str>| AuditQuery {
        since_ms,
        user: user.map(str::to_string),
        target: target.map(str::to_string),
        limit: None,
    };
    assert_eq!(access.audit(&q(None, Some("ada"), None)).unwrap().len(), 2);
    assert_eq!(access.audit(&q(Some(20_000), None, None)).unwrap().len(), 2);
    assert_eq!(access.audit(&q(None, None, Some("r1"))).unwrap().len(), 2);
    let one = AuditQuery {
        limit: Some(1),
        ..AuditQuery::default()
    };
    assert_eq!(access.audit(&one).unwrap().len(), 1);
    token
}

fn demo_console(dir: &Path) -> LocalConsole {
    LocalConsole::open(ConsolePaths {
        data_dir: dir.join("data"),
        pack_roots: vec![repo().join("packs")],
        lab_file: Some(demo_lab()),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_refuses_by_role_and_records_who_held_and_released() {
    let dir = tempfile::tempdir().unwrap();
    let c = demo_console(dir.path());
    let access = c.access().unwrap();
    let (vera, _) = access.add_user("vera", Role::Viewer).unwrap();
    let (otto, _) = access.add_user("otto", Role::Operator).unwrap();
    let (vera, otto) = (Caller::user(&vera), Caller::user(&otto));

    let hold: Request = parse_request(
        br#"{"cmd":"hold","resource":"stb-01","by":"somebody-else","duration_s":600}"#,
    )
    .unwrap();
    let e = c.dispatch_as(&vera, hold.clone()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(e.message.contains("operator"), "{}", e.message);

    // The hold is recorded under the signed-in user, whatever `by` said.
    let Response::Hold(h) = c.dispatch_as(&otto, hold).await.unwrap() else {
        panic!()
    };
    assert!(format!("{:?}", h.holder).contains("otto"), "{:?}", h.holder);
    assert!(!format!("{:?}", h.holder).contains("somebody-else"));
    let release = Request::Release { id: h.id };
    c.dispatch_as(&otto, release).await.unwrap();
    // A read is not audited; a change by the single seat is, as `local`.
    c.dispatch_as(&vera, Request::ListRuns(Default::default()))
        .await
        .unwrap();
    c.dispatch(
        parse_request(br#"{"cmd":"hold","resource":"stb-02","by":"me","duration_s":60}"#).unwrap(),
    )
    .await
    .unwrap();

    let Response::Audit(entries) = c
        .dispatch_as(&vera, Request::Audit(AuditQuery::default()))
        .await
        .unwrap()
    else {
        panic!()
    };
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .rev()
        .map(|e| (e.user.as_str(), e.action.as_str(), e.target.as_str()))
        .collect();
    let held = h.id.to_string();
    assert_eq!(
        seen,
        [
            ("otto", "hold", "stb-01"),
            ("otto", "release", held.as_str()),
            ("local", "hold", "stb-02"),
        ]
    );
    assert!(
        entries[2].detail.contains("\"by\":\"otto\""),
        "{}",
        entries[2].detail
    );

    let Response::WhoAmI(me) = c.dispatch_as(&otto, Request::WhoAmI).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        (me.user.as_deref(), me.role),
        (Some("otto"), Role::Operator)
    );
    c.shutdown();
}

/// A prompt answered by a signed-in operator goes to the task as answered by them,
/// whatever `by` the request named; the answer is in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_answer_is_recorded_under_the_signed_in_user() {
    use testbay_engine::api::Event;
    use testbay_engine::run::RunEvent;
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("packs/ask");
    crate::support::write_pack(
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
send(type="set_result", result="Passed", message=a["answer"]["by"])
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
    let (otto, _) = c
        .access()
        .unwrap()
        .add_user("otto", Role::Operator)
        .unwrap();
    let otto = Caller::user(&otto);
    let mut events = c.subscribe();
    let launch = parse_request(br#"{"cmd":"launch","pack":"ask"}"#).unwrap();
    let Response::Launch { run_id, .. } = c.dispatch_as(&otto, launch).await.unwrap() else {
        panic!()
    };
    let id = loop {
        if let Event::Run(RunEvent::Prompt { prompt, .. }) = events.recv().await.unwrap() {
            break prompt.id;
        }
    };
    let answer = Request::AnswerPrompt {
        id,
        answer: "done".into(),
        by: Some("ana".into()),
        run_id: Some(run_id.clone()),
    };
    c.dispatch_as(&otto, answer).await.unwrap();
    let by = loop {
        if let Event::Run(RunEvent::PromptAnswered { answer, .. }) = events.recv().await.unwrap() {
            break answer.by;
        }
    };
    assert_eq!(by.as_deref(), Some("otto"));
    loop {
        if let Event::Run(RunEvent::RunStatus { status, .. }) = events.recv().await.unwrap() {
            if status.is_finished() {
                break;
            }
        }
    }
    let q = AuditQuery {
        user: Some("otto".into()),
        ..AuditQuery::default()
    };
    let Response::Audit(entries) = c.dispatch_as(&otto, Request::Audit(q)).await.unwrap() else {
        panic!()
    };
    let seen: Vec<(&str, &str)> = entries
        .iter()
        .rev()
        .map(|e| (e.action.as_str(), e.target.as_str()))
        .collect();
    let prompt = id.to_string();
    assert_eq!(
        seen,
        [
            ("launch", run_id.as_str()),
            ("answer_prompt", prompt.as_str())
        ]
    );
    let get =
        parse_request(format!(r#"{{"cmd":"get_run","run_id":"{run_id}"}}"#).as_bytes()).unwrap();
    let Response::GetRun(run) = c.dispatch(get).await.unwrap() else {
        panic!()
    };
    assert_eq!(run.launched_by.as_deref(), Some("otto"));
    assert_eq!(
        run.tasks[0].record.message.as_deref(),
        Some("otto"),
        "the task heard who answered"
    );
    c.shutdown();
}

/// An operator changes the schedules they made; another operator's needs an admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_changes_only_their_own_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let c = demo_console(dir.path());
    let access = c.access().unwrap();
    let who = |name: &str, role| Caller::user(&access.add_user(name, role).unwrap().0);
    let (otto, pia, ada) = (
        who("otto", Role::Operator),
        who("pia", Role::Operator),
        who("ada", Role::Admin),
    );
    let add = parse_request(
        br#"{"cmd":"add_schedule","name":"nightly","pack":"stb-smoke","duts":["stb-01"],
             "when":{"type":"daily","start":"2031-01-01T02:00","time_zone":"UTC"}}"#,
    )
    .unwrap();
    let Response::AddSchedule { id } = c.dispatch_as(&otto, add).await.unwrap() else {
        panic!()
    };
    let pause = Request::PauseSchedule { id: id.clone() };
    c.dispatch_as(&otto, pause.clone()).await.unwrap();
    let e = c.dispatch_as(&pia, pause.clone()).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Forbidden);
    assert!(
        e.message.contains("admin") && e.message.contains("otto's"),
        "{}",
        e.message
    );
    let remove = Request::RemoveSchedule { id: id.clone() };
    assert_eq!(
        c.dispatch_as(&pia, remove.clone()).await.unwrap_err().code,
        ErrorCode::Forbidden
    );
    c.dispatch_as(&ada, Request::ResumeSchedule { id: id.clone() })
        .await
        .unwrap();
    // The single seat's own operator is an admin.
    c.dispatch(remove).await.unwrap();
    c.shutdown();
}
