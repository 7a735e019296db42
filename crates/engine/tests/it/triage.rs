//! Failure triage through the console on a real SQLite file and real runs: precedence
//! by rule order, a rule on the log against one on the message, rules applied to runs
//! stored before them, a bad regular expression refused naming its rule, the summary per
//! category.

use std::path::Path;

use testbay_engine::api::{
    parse_request, ApiError, Console, ConsolePaths, ErrorCode, LocalConsole, Response,
    TriagedFailure,
};
use testbay_engine::outcome::RunStatus;

use crate::support::{run_end, write};

/// A pack whose tasks fail in different ways: `net` (message "connection refused"),
/// `hdmi` (message "no picture", the log says "HDMI hotplug lost"), `plain` (message
/// "no picture", a quiet log) and `ok`, which passes.
fn console(dir: &Path) -> LocalConsole {
    let pack = dir.join("packs/tv");
    write(
        &pack.join("pack.yaml"),
        "name: tv\nversion: 1.0.0\ngroups:\n  g:\n    tests: [net, hdmi, plain, ok]\n",
    );
    let task = |name: &str, body: &str| {
        write(
            &pack.join(format!("tasks/{name}.yaml")),
            &format!("name: {name}\nrun: [bash, {name}.sh]\nstop_suite_on_fail: false\n"),
        );
        write(&pack.join(format!("tasks/{name}.sh")), body);
    };
    let fail = |msg: &str| {
        format!(
            "cat > \"$TESTBAY_RESULT\" <<'EOF'\n{{\"result\": \"Failed\", \"metadata\": {{\"message\": \"{msg}\"}}}}\nEOF\n"
        )
    };
    task(
        "net",
        &format!("echo dialing\n{}", fail("connect: connection refused")),
    );
    task(
        "hdmi",
        &format!("echo 'kernel: HDMI hotplug lost'\n{}", fail("no picture")),
    );
    task("plain", &format!("echo all quiet\n{}", fail("no picture")));
    task("ok", "echo fine\n");
    LocalConsole::open(ConsolePaths {
        data_dir: dir.join("data"),
        pack_roots: vec![dir.join("packs")],
        lab_file: None,
    })
    .unwrap()
}

async fn call(c: &LocalConsole, json: &str) -> Result<Response, ApiError> {
    c.dispatch(parse_request(json.as_bytes())?).await
}

async fn launch(c: &LocalConsole) -> String {
    let mut events = c.subscribe();
    let Response::Launch { run_id, .. } = call(c, r#"{"cmd":"launch","pack":"tv"}"#).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(run_end(&mut events, &run_id).await, RunStatus::Completed);
    run_id
}

async fn run_triage(c: &LocalConsole, run_id: &str) -> Vec<TriagedFailure> {
    match call(c, &format!(r#"{{"cmd":"run_triage","run_id":"{run_id}"}}"#))
        .await
        .unwrap()
    {
        Response::RunTriage(rows) => rows,
        other => panic!("{other:?}"),
    }
}

fn category<'a>(rows: &'a [TriagedFailure], task: &str) -> Option<&'a str> {
    rows.iter()
        .find(|f| f.task == task)
        .unwrap_or_else(|| panic!("{task} is among the failures: {rows:?}"))
        .category
        .as_deref()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_matching_rule_wins_on_message_or_log_and_past_runs_count() {
    let dir = tempfile::tempdir().unwrap();
    let c = console(dir.path());
    // A run stored before any rule exists.
    let old = launch(&c).await;
    let rows = run_triage(&c, &old).await;
    assert_eq!(rows.len(), 3, "the passing task is no failure: {rows:?}");
    assert!(rows.iter().all(|f| f.category.is_none()), "{rows:?}");

    let add = |json: String| {
        let c = &c;
        async move { call(c, &json).await }
    };
    add(r#"{"cmd":"add_triage_rule","rule":{"name":"net","category":"infrastructure","message":"connection refused","issue":"https://tracker/LAB-1"}}"#.into()).await.unwrap();
    add(r#"{"cmd":"add_triage_rule","rule":{"name":"hdmi","category":"product","log":"HDMI hotplug lost"}}"#.into()).await.unwrap();
    add(r#"{"cmd":"add_triage_rule","rule":{"name":"pic","category":"test bug","message":"no picture"}}"#.into()).await.unwrap();

    // The rules apply to the run stored before them.
    let rows = run_triage(&c, &old).await;
    assert_eq!(category(&rows, "net"), Some("infrastructure"));
    let net = rows.iter().find(|f| f.task == "net").unwrap();
    assert_eq!(net.issue.as_deref(), Some("https://tracker/LAB-1"));
    assert_eq!(net.rule.as_deref(), Some("net"));
    // `hdmi` and `plain` share their message; only hdmi's log matches the log rule, which
    // comes first.
    assert_eq!(category(&rows, "hdmi"), Some("product"));
    assert_eq!(category(&rows, "plain"), Some("test bug"));

    // Moving the message rule ahead of the log rule changes hdmi's category: order is
    // precedence.
    call(&c, r#"{"cmd":"remove_triage_rule","name":"pic"}"#)
        .await
        .unwrap();
    add(r#"{"cmd":"add_triage_rule","rule":{"name":"pic","category":"test bug","message":"no picture"},"position":0}"#.into()).await.unwrap();
    let rows = run_triage(&c, &old).await;
    assert_eq!(category(&rows, "hdmi"), Some("test bug"));
    assert_eq!(category(&rows, "plain"), Some("test bug"));

    // The summary counts per category over the last runs, a new run included.
    launch(&c).await;
    let Response::TriageSummary(s) = call(&c, r#"{"cmd":"triage_summary","pack":"tv"}"#)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!((s.runs, s.failures, s.known), (2, 6, 6), "{s:?}");
    assert_eq!(s.categories[0].category, "test bug");
    assert_eq!(s.categories[0].count, 4);
    assert_eq!(s.categories[1].category, "infrastructure");
    assert_eq!(s.categories[1].count, 2);

    // The rules file is a user file of the data dir; the console wrote it in order.
    let Response::TriageRules(r) = call(&c, r#"{"cmd":"triage_rules"}"#).await.unwrap() else {
        panic!()
    };
    let names: Vec<&str> = r.rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["pic", "net", "hdmi"]);
    assert!(Path::new(&r.file).ends_with("data/triage.yaml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rules_are_refused_naming_the_rule_and_a_broken_file_names_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let c = console(dir.path());
    let e = call(
        &c,
        r#"{"cmd":"add_triage_rule","rule":{"name":"broken","category":"product","log":"(unclosed"}}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest, "{e}");
    assert!(
        e.message.contains("broken") && e.message.contains("log"),
        "{e}"
    );
    let e = call(
        &c,
        r#"{"cmd":"add_triage_rule","rule":{"name":"nothing","category":"product"}}"#,
    )
    .await
    .unwrap_err();
    assert!(e.message.contains("nothing"), "{e}");
    assert!(
        !dir.path().join("data/triage.yaml").exists(),
        "nothing written for a refused rule"
    );
    call(
        &c,
        r#"{"cmd":"add_triage_rule","rule":{"name":"a","category":"x","message":"y"}}"#,
    )
    .await
    .unwrap();
    let e = call(
        &c,
        r#"{"cmd":"add_triage_rule","rule":{"name":"a","category":"x","message":"z"}}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "{e}");
    let e = call(&c, r#"{"cmd":"remove_triage_rule","name":"ghost"}"#)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");

    // Edited by hand into a bad expression: every read names the file, line and rule.
    write(
        &dir.path().join("data/triage.yaml"),
        "rules:\n  - name: a\n    category: x\n    message: \"[z\"\n",
    );
    let e = call(&c, r#"{"cmd":"triage_rules"}"#).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert_eq!(e.diagnostics[0].line, Some(4), "{:?}", e.diagnostics);
    assert!(e.diagnostics[0].message.contains("rule `a`"), "{e}");
}
