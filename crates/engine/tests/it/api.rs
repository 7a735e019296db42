//! engine::api: the command list end to end on a temp data dir with real packs and runs.

use std::path::Path;

use testbay_engine::api::{
    parse_request, Console, ConsolePaths, ErrorCode, Event, LocalConsole, Request, Response,
};
use testbay_engine::outcome::RunStatus;

use crate::support::{demo_lab, repo, run_end, write};

/// A library with a good pack (`hello`: one group, a task printing 3 lines without a final
/// newline) and a broken one (`oops`: an unknown key).
fn console(dir: &Path) -> LocalConsole {
    let good = dir.join("packs/hello");
    write(
        &good.join("pack.yaml"),
        "name: hello\nversion: 1.0.0\ngroups:\n  smoke:\n    tests: [greet]\n",
    );
    write(
        &good.join("tasks/greet.yaml"),
        "name: greet\nrun: [bash, greet.sh]\nest_task_time: 2\n",
    );
    write(
        &good.join("tasks/greet.sh"),
        "a=\"$TESTBAY_ARTIFACTS\"\nmkdir -p \"$a/shots\"\nprintf 0123456789 > \"$a/shots/tv.png\"\necho ok > \"$a/report.txt\"\nln -s /etc/passwd \"$a/passwd\"\nprintf 'one\\ntwo\\nthree'\n",
    );
    let bad = dir.join("packs/oops");
    write(
        &bad.join("pack.yaml"),
        "name: oops\nversion: 1.0.0\ngrups: {}\n",
    );
    LocalConsole::open(ConsolePaths {
        data_dir: dir.join("data"),
        pack_roots: vec![dir.join("packs")],
        lab_file: None,
    })
    .unwrap()
}

async fn call(c: &LocalConsole, json: &str) -> Result<Response, testbay_engine::api::ApiError> {
    c.dispatch(parse_request(json.as_bytes())?).await
}

#[test]
fn bad_requests_are_invalid_request_errors() {
    for bad in [
        "{",
        r#"{"cmd":"nope"}"#,
        r#"{"cmd":"get_pack"}"#,
        r#"{"cmd":"get_pack","name":"x","extra":1}"#,
        r#"{"cmd":"read_log","run_id":"r","task_id":"one","phase":"main","offset":0}"#,
        r#"{"cmd":"export","run_id":"r","format":"pdf"}"#,
    ] {
        let e = parse_request(bad.as_bytes()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{bad}");
        assert!(e.message.starts_with("bad request"), "{bad}: {}", e.message);
    }
    assert_eq!(
        parse_request(br#"{"cmd":"list_packs"}"#).unwrap(),
        Request::ListPacks
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_list_with_broken_ones_and_detail() {
    let dir = tempfile::tempdir().unwrap();
    let c = console(dir.path());
    let Response::ListPacks(list) = call(&c, r#"{"cmd":"list_packs"}"#).await.unwrap() else {
        panic!()
    };
    assert_eq!(list.len(), 2);
    let hello = list.iter().find(|p| p.name == "hello").unwrap();
    assert!(hello.ok && hello.task_count == 1 && hello.groups[0].est_time == 2.0);
    let oops = list.iter().find(|p| p.name == "oops").unwrap();
    assert!(!oops.ok);
    assert!(
        oops.diagnostics
            .iter()
            .any(|d| d.line == Some(3) && d.message.contains("groups")),
        "{:?}",
        oops.diagnostics
    );

    let Response::GetPack(d) = call(&c, r#"{"cmd":"get_pack","name":"hello"}"#)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.summary.groups[0].name, "smoke");
    assert!(d.params.iter().any(|p| p.key == "valid_result"));

    // A broken pack's detail carries its diagnostics; launching it is refused with them.
    let Response::GetPack(d) = call(&c, r#"{"cmd":"get_pack","name":"oops"}"#)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(!d.summary.ok && !d.summary.diagnostics.is_empty());
    let e = call(&c, r#"{"cmd":"get_pack","name":"nothing"}"#)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(
        e.message.contains("hello"),
        "names what exists: {}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launch_run_follow_read_log_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let c = console(dir.path());
    let mut events = c.subscribe();

    let e = call(&c, r#"{"cmd":"launch","pack":"hello","groups":["nope"]}"#)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest, "{e}");
    let e = call(&c, r#"{"cmd":"launch","pack":"oops"}"#)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PackBroken);
    assert!(
        e.diagnostics.iter().any(|d| d.file.ends_with("pack.yaml")),
        "{:?}",
        e.diagnostics
    );
    let e = call(&c, r#"{"cmd":"launch","pack":"ghost"}"#)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    let Response::Launch { run_id, .. } = call(
        &c,
        r#"{"cmd":"launch","pack":"hello","groups":["smoke"],"duts":["stb-01"]}"#,
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!(run_end(&mut events, &run_id).await, RunStatus::Completed);
    let e = call(&c, &format!(r#"{{"cmd":"stop_run","run_id":"{run_id}"}}"#))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "stopping a finished run");

    let Response::GetRun(d) = call(&c, &format!(r#"{{"cmd":"get_run","run_id":"{run_id}"}}"#))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.run.status, RunStatus::Completed);
    // The files the task left, read from disk; the symlink out of the folder is not listed.
    let listed: Vec<(&str, u64)> = d.tasks[0]
        .artifacts
        .iter()
        .map(|a| (a.path.as_str(), a.size))
        .collect();
    assert_eq!(listed, [("report.txt", 3), ("shots/tv.png", 10)]);
    assert_eq!(d.tasks[0].artifacts_more, 0);
    let task = &d.tasks[0].record;
    assert_eq!(task.result.as_deref(), Some("Passed"));
    let json = serde_json::to_value(&d.tasks[0]).unwrap();
    assert_eq!(
        json["result"], "Passed",
        "task fields stay at the top level"
    );
    assert_eq!(json["artifacts"][1]["path"], "shots/tv.png");

    // The whole log, then in small chunks cut at line ends (the log file ends every line,
    // even the task's unterminated last one).
    let read = |offset: u64, max: u32| {
        format!(
            r#"{{"cmd":"read_log","run_id":"{run_id}","task_id":{},"phase":"main","offset":{offset},"max_bytes":{max}}}"#,
            task.id
        )
    };
    let Response::ReadLog(all) = call(&c, &read(0, 1000)).await.unwrap() else {
        panic!()
    };
    assert_eq!(all.text, "one\ntwo\nthree\n");
    assert_eq!(all.next_offset, all.size);
    let Response::ReadLog(first) = call(&c, &read(0, 6)).await.unwrap() else {
        panic!()
    };
    assert_eq!(first.text, "one\n");
    let Response::ReadLog(second) = call(&c, &read(first.next_offset, 6)).await.unwrap() else {
        panic!()
    };
    assert_eq!(second.text, "two\n");
    let Response::ReadLog(past) = call(&c, &read(10_000, 6)).await.unwrap() else {
        panic!()
    };
    assert_eq!(past.text, "");
    let e = call(
        &c,
        &format!(
            r#"{{"cmd":"read_log","run_id":"{run_id}","task_id":999999,"phase":"main","offset":0}}"#
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    let Response::Export(f) = call(
        &c,
        &format!(r#"{{"cmd":"export","run_id":"{run_id}","format":"junit"}}"#),
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert!(
        f.filename.ends_with(".xml") && f.content.contains("<testsuite"),
        "{}",
        f.content
    );
    let e = call(
        &c,
        r#"{"cmd":"export","run_id":"r-missing","format":"json"}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    // Editing a pack on disk reloads the library and tells subscribers.
    let mut events = c.subscribe();
    write(
        &dir.path().join("packs/hello/pack.yaml"),
        "name: hello\nversion: 1.1.0\ngroups:\n  smoke:\n    tests: [greet]\n",
    );
    loop {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let Event::PacksChanged { dirs } = ev {
            assert!(dirs.iter().any(|d| d.ends_with("hello")), "{dirs:?}");
            break;
        }
    }
    let Response::GetPack(d) = call(&c, r#"{"cmd":"get_pack","name":"hello"}"#)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.summary.version.as_deref(), Some("1.1.0"));

    // Editing a pack on disk reloads the library and tells subscribers.
    let mut events = c.subscribe();
    write(
        &dir.path().join("packs/hello/pack.yaml"),
        "name: hello\nversion: 1.1.0\ngroups:\n  smoke:\n    tests: [greet]\n",
    );
    loop {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let Event::PacksChanged { dirs } = ev {
            assert!(dirs.iter().any(|d| d.ends_with("hello")), "{dirs:?}");
            break;
        }
    }
    let Response::GetPack(d) = call(&c, r#"{"cmd":"get_pack","name":"hello"}"#)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.summary.version.as_deref(), Some("1.1.0"));

    let Response::ListRuns(page) = call(&c, r#"{"cmd":"list_runs","pack":"hello"}"#)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(page.runs.iter().any(|r| r.id == run_id));
}

/// The demo lab and demo packs of the repository.
fn demo_console(dir: &Path, lab: Option<&Path>) -> LocalConsole {
    LocalConsole::open(ConsolePaths {
        data_dir: dir.join("data"),
        pack_roots: vec![repo().join("packs")],
        lab_file: Some(lab.map_or_else(demo_lab, Path::to_path_buf)),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_view_search_holds_and_release() {
    use testbay_engine::api::SlotState;
    let dir = tempfile::tempdir().unwrap();
    let c = demo_console(dir.path(), None);
    let mut events = c.subscribe();

    let Response::GetLab(lab) = call(&c, r#"{"cmd":"get_lab"}"#).await.unwrap() else {
        panic!()
    };
    assert_eq!(lab.racks.len(), 2);
    assert!(lab.racks.iter().all(|r| r.slots.len() == 8));
    let slot = |lab: &testbay_engine::api::LabView, dut: &str| {
        lab.racks
            .iter()
            .flat_map(|r| &r.slots)
            .find(|s| s.dut.as_deref() == Some(dut))
            .unwrap()
            .clone()
    };
    assert_eq!(slot(&lab, "stb-06").state, SlotState::Offline);
    assert_eq!(slot(&lab, "stb-01").state, SlotState::Free);

    // StormTest search, narrowed to DUTs the pack's tasks accept.
    let Response::SearchDuts(gx) = call(&c, r#"{"cmd":"search_duts","query":"Model==GX-*"}"#)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(
        gx.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["stb-09", "stb-10", "stb-11", "stb-12"]
    );
    let Response::SearchDuts(for_net) = call(
        &c,
        r#"{"cmd":"search_duts","query":"","pack":"net-regression"}"#,
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert!(
        !for_net.is_empty() && for_net.iter().all(|d| d.name.starts_with("rtr-")),
        "{for_net:?}"
    );
    let e = call(&c, r#"{"cmd":"search_duts","query":"Colour==red"}"#)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);

    // An operator hold shows on the rack; a second one is refused; release frees the slot.
    let Response::Hold(r) = call(
        &c,
        r#"{"cmd":"hold","resource":"stb-01","by":"alice","duration_s":600}"#,
    )
    .await
    .unwrap() else {
        panic!()
    };
    let Response::GetLab(lab) = call(&c, r#"{"cmd":"get_lab"}"#).await.unwrap() else {
        panic!()
    };
    let s = slot(&lab, "stb-01");
    assert_eq!(s.state, SlotState::Held);
    assert!(s.holder.unwrap().contains("alice"));
    let e = call(
        &c,
        r#"{"cmd":"hold","resource":"stb-01","by":"bob","duration_s":60}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Busy, "{e}");
    let e = call(
        &c,
        r#"{"cmd":"hold","resource":"stb-1","by":"bob","duration_s":60}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("did you mean"), "{}", e.message);
    let e = call(
        &c,
        r#"{"cmd":"hold","resource":"stb-02","by":"bob","duration_s":-5}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    let Response::Reservations(res) = call(&c, r#"{"cmd":"reservations"}"#).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        res.resources
            .iter()
            .find(|h| h.resource == "stb-01")
            .unwrap()
            .holders
            .len(),
        1
    );

    let release = format!(r#"{{"cmd":"release","id":"{}"}}"#, r.id);
    call(&c, &release).await.unwrap();
    let e = call(&c, &release).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "releasing twice");
    let Response::GetLab(lab) = call(&c, r#"{"cmd":"get_lab"}"#).await.unwrap() else {
        panic!()
    };
    assert_eq!(slot(&lab, "stb-01").state, SlotState::Free);
    // Events reach subscribers through a forwarding task: wait for them (bounded).
    let mut book_events = 0;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while book_events < 2 {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Ok(Event::Book(_))) => book_events += 1,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("event stream: {e}"),
            Err(_) => break,
        }
    }
    assert!(
        book_events >= 2,
        "hold and release were published ({book_events})"
    );

    // Launching names DUTs of the lab only, and never an offline one.
    let e = call(
        &c,
        r#"{"cmd":"launch","pack":"stb-smoke","duts":["stb-99"]}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let e = call(
        &c,
        r#"{"cmd":"launch","pack":"stb-smoke","duts":["stb-06"]}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Busy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_lab_file_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("lab.yaml");
    write(&bad, "name: x\nracks:\n  - name: r\n    slots: -3\n");
    let c = demo_console(dir.path(), Some(&bad));
    let Response::GetLab(lab) = call(&c, r#"{"cmd":"get_lab"}"#).await.unwrap() else {
        panic!()
    };
    assert!(lab.racks.is_empty());
    assert!(
        lab.diagnostics.iter().any(|d| d.line == Some(4)),
        "{:?}",
        lab.diagnostics
    );
    let e = call(
        &c,
        r#"{"cmd":"hold","resource":"stb-01","by":"a","duration_s":5}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(!e.diagnostics.is_empty());
    // Packs and results still work.
    assert!(
        matches!(call(&c, r#"{"cmd":"list_packs"}"#).await.unwrap(), Response::ListPacks(p) if p.len() == 2)
    );
}

/// Runs stored in the console's data dir, all pages.
async fn stored_runs(c: &LocalConsole) -> u32 {
    let Response::ListRuns(page) = call(c, r#"{"cmd":"list_runs"}"#).await.unwrap() else {
        panic!()
    };
    page.total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_beyond_their_bounds_are_refused_naming_the_key_and_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let c = demo_console(dir.path(), None);
    let hold =
        |extra: &str| format!(r#"{{"cmd":"hold","resource":"stb-02","by":"mallory",{extra}}}"#);
    // from_ms = i64::MAX panicked the handler; 1e300 s was a hold until the year 292,278,994.
    for (extra, key, range) in [
        (
            format!(r#""duration_s":60,"from_ms":{}"#, i64::MAX),
            "from_ms",
            "within 10 years of now",
        ),
        (
            format!(r#""duration_s":60,"from_ms":{}"#, i64::MIN),
            "from_ms",
            "within 10 years of now",
        ),
        (
            r#""duration_s":1e300"#.to_string(),
            "duration_s",
            "at most 2592000 seconds (30 days), got 1e300",
        ),
        (
            r#""duration_s":2592000.5"#.to_string(),
            "duration_s",
            "at most 2592000 seconds",
        ),
        (
            r#""duration_s":0.0001"#.to_string(),
            "duration_s",
            "must be more than 0",
        ),
    ] {
        let e = call(&c, &hold(&extra)).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{extra}: {e}");
        assert!(
            e.message.starts_with(&format!("{key}: ")) && e.message.contains(range),
            "{extra}: {}",
            e.message
        );
    }
    let Response::Reservations(res) = call(&c, r#"{"cmd":"reservations"}"#).await.unwrap() else {
        panic!()
    };
    assert!(
        res.resources.iter().all(|h| h.resource != "stb-02"),
        "nothing was booked: {res:?}"
    );
    // At the bounds it holds: 30 days, starting 10 years from now less a minute.
    let from = res.now + 3_653 * 86_400_000 - 60_000;
    let Response::Hold(r) = call(
        &c,
        &hold(&format!(r#""duration_s":2592000,"from_ms":{from}"#)),
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!((r.start, r.end), (from, from + 2_592_000_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_over_their_size_limits_are_refused_as_too_large_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let c = console(dir.path());
    let list = |item: &str, n: usize| {
        (0..n)
            .map(|i| item.replace("{i}", &i.to_string()))
            .collect::<Vec<_>>()
            .join(",")
    };
    let launch = |fields: String| format!(r#"{{"cmd":"launch","pack":"hello",{fields}}}"#);
    let too_large = [
        // 200,000 of these made a run of 400,002 tasks and 2.5 GB of memory.
        (
            launch(format!(r#""groups":[{}]"#, list(r#""smoke""#, 101))),
            "groups: a launch names at most 100 groups (got 101)",
        ),
        (
            launch(format!(r#""duts":[{}]"#, list(r#""d{i}""#, 257))),
            "duts: a launch names at most 256 DUTs (got 257)",
        ),
        (
            launch(format!(r#""params":{{{}}}"#, list(r#""k{i}":1"#, 257))),
            "params: a launch overrides at most 256 parameters (got 257)",
        ),
        (
            launch(format!(r#""params":{{"blob":"{}"}}"#, "x".repeat(70_000))),
            "params: the parameter overrides are 70011 bytes as JSON; at most 65536",
        ),
        // Each part within its limit, together more tasks than a run holds.
        (
            launch(format!(
                r#""groups":[{}],"duts":[{}]"#,
                list(r#""smoke""#, 100),
                list(r#""d{i}""#, 101)
            )),
            "tasks: this launch of pack hello expands to 10100 task occurrences (100 group(s) on 101 lane(s)); a run holds at most 10000",
        ),
    ];
    for (req, message) in too_large {
        let e = call(&c, &req).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge, "{e}");
        assert_eq!(e.message, message);
    }
    // Refused before anything was stored or started.
    assert_eq!(stored_runs(&c).await, 0);
    let Response::ActiveRuns(active) = call(&c, r#"{"cmd":"active_runs"}"#).await.unwrap() else {
        panic!()
    };
    assert!(active.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_ats_must_hold_its_duts_and_defaults_to_their_rack() {
    let dir = tempfile::tempdir().unwrap();
    let c = demo_console(dir.path(), None);
    let mut events = c.subscribe();
    // stb-01 and stb-02 sit in rack-a, stb-07 in rack-b.
    for (fields, needles) in [
        (
            r#""duts":["stb-01"],"ats":"rack-z""#,
            &["`rack-z`", "rack-a, rack-b"][..],
        ),
        (r#""ats":"rack-z""#, &["`rack-z`"][..]),
        (
            r#""duts":["stb-01"],"ats":"rack-b""#,
            &["ATS `rack-b` does not hold DUT `stb-01`: it sits in rack `rack-a`"][..],
        ),
        (
            r#""duts":["stb-07","stb-01"],"ats":"rack-b""#,
            &["DUT `stb-01`", "rack `rack-a`"][..],
        ),
    ] {
        let req = format!(r#"{{"cmd":"launch","pack":"stb-smoke","groups":["smoke"],{fields}}}"#);
        let e = call(&c, &req).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{fields}: {e}");
        assert!(e.message.starts_with("ats: "), "{fields}: {}", e.message);
        for n in needles {
            assert!(e.message.contains(n), "{fields}: {}", e.message);
        }
    }
    assert_eq!(stored_runs(&c).await, 0, "refused launches are not stored");

    // Without an ATS, the run takes its DUT's rack.
    let Response::Launch { run_id, .. } = call(
        &c,
        r#"{"cmd":"launch","pack":"stb-smoke","groups":["smoke"],"duts":["stb-02"]}"#,
    )
    .await
    .unwrap() else {
        panic!()
    };
    call(&c, &format!(r#"{{"cmd":"stop_run","run_id":"{run_id}"}}"#))
        .await
        .unwrap();
    let _ = call(&c, &format!(r#"{{"cmd":"stop_run","run_id":"{run_id}"}}"#)).await;
    assert_eq!(run_end(&mut events, &run_id).await, RunStatus::Stopped);
    let Response::GetRun(d) = call(&c, &format!(r#"{{"cmd":"get_run","run_id":"{run_id}"}}"#))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.run.ats.as_deref(), Some("rack-a"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_run_answers_a_page_of_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let c = console(dir.path());
    let mut events = c.subscribe();
    let Response::Launch { run_id, .. } = call(
        &c,
        r#"{"cmd":"launch","pack":"hello","groups":["smoke","smoke","smoke","smoke","smoke"]}"#,
    )
    .await
    .unwrap() else {
        panic!()
    };
    assert_eq!(run_end(&mut events, &run_id).await, RunStatus::Completed);
    let page = |extra: &str| {
        let c = &c;
        let req = format!(r#"{{"cmd":"get_run","run_id":"{run_id}"{extra}}}"#);
        async move {
            let Response::GetRun(d) = call(c, &req).await.unwrap() else {
                panic!()
            };
            let seqs: Vec<u32> = d.tasks.iter().map(|t| t.record.seq).collect();
            (seqs, d.tasks_total, d.tasks_offset, d.next_offset)
        }
    };
    assert_eq!(page("").await, (vec![0, 1, 2, 3, 4], 5, 0, None));
    assert_eq!(page(r#","limit":2"#).await, (vec![0, 1], 5, 0, Some(2)));
    assert_eq!(
        page(r#","offset":2,"limit":2"#).await,
        (vec![2, 3], 5, 2, Some(4))
    );
    assert_eq!(
        page(r#","offset":4,"limit":2"#).await,
        (vec![4], 5, 4, None)
    );
    assert_eq!(page(r#","offset":99"#).await, (vec![], 5, 5, None));
}

/// A task that puts named pipes where its result file and its log go: the console used to
/// open the result pipe on a worker thread and wait for a writer forever (`info`,
/// `active_runs`, `stop_run`, `list_runs` went unanswered); `read_log` waited likewise on
/// a blocking thread. Now the task is Errored naming the pipe, the run ends, and the log
/// read answers at once.
#[test]
fn named_pipes_left_by_a_task_wedge_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let pack = root.join("packs/pipes");
    write(
        &pack.join("pack.yaml"),
        "name: pipes\nversion: '1'\ngroups:\n  g:\n    tests: [pipe]\n",
    );
    write(
        &pack.join("tasks/pipe.yaml"),
        "name: pipe\nrun: [bash, pipe.sh]\n",
    );
    write(
        &pack.join("tasks/pipe.sh"),
        "d=$(dirname \"$TESTBAY_RESULT\")\nmkfifo \"$TESTBAY_RESULT\"\necho hello\nrm -f \"$d/main.log\"\nmkfifo \"$d/main.log\"\n",
    );
    let t = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let c = LocalConsole::open(ConsolePaths {
                data_dir: root.join("data"),
                pack_roots: vec![root.join("packs")],
                lab_file: None,
            })
            .unwrap();
            let mut events = c.subscribe();
            let Response::Launch { run_id, .. } =
                call(&c, r#"{"cmd":"launch","pack":"pipes"}"#).await.unwrap()
            else {
                panic!()
            };
            assert_eq!(run_end(&mut events, &run_id).await, RunStatus::Completed);
            call(&c, r#"{"cmd":"info"}"#).await.unwrap();
            let Response::GetRun(d) =
                call(&c, &format!(r#"{{"cmd":"get_run","run_id":"{run_id}"}}"#))
                    .await
                    .unwrap()
            else {
                panic!()
            };
            let task = &d.tasks[0].record;
            assert_eq!(task.result.as_deref(), Some("Errored"));
            let message = task.message.clone().unwrap_or_default();
            assert!(message.contains("is a named pipe, not a file"), "{message}");
            let e = call(
                &c,
                &format!(
                    r#"{{"cmd":"read_log","run_id":"{run_id}","task_id":{},"phase":"main","offset":0}}"#,
                    task.id
                ),
            )
            .await
            .unwrap_err();
            assert_eq!(e.code, ErrorCode::NotFound, "{e}");
            assert!(e.message.contains("is a named pipe, not a file"), "{e}");
        });
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !t.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the console waited on a task's named pipe"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    t.join().unwrap();
}

/// The console as its transports hold it, a `dyn Console`. Without a lab file a launch
/// names what it uses unreserved (its DUTs; `NAME:MODEL` gives the model), and
/// `shutdown` keeps what is stored, stops reads and may come twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_behind_its_front_door() {
    let dir = tempfile::tempdir().unwrap();
    let c: std::sync::Arc<dyn Console> = console(dir.path()).shared();
    let mut events = c.subscribe();
    let launch = r#"{"cmd":"launch","pack":"hello","groups":["smoke"],"duts":["stb-01:TP-1"]}"#;
    let Response::Launch {
        run_id, unreserved, ..
    } = c
        .dispatch(parse_request(launch.as_bytes()).unwrap())
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(unreserved, ["stb-01"]);
    assert_eq!(run_end(&mut events, &run_id).await, RunStatus::Completed);
    let get = Request::GetRun {
        run_id: run_id.clone(),
        offset: None,
        limit: None,
    };
    let Response::GetRun(d) = c.dispatch(get.clone()).await.unwrap() else {
        panic!()
    };
    assert_eq!(d.run.duts[0].name, "stb-01");
    assert_eq!(d.run.duts[0].model.as_deref(), Some("TP-1"));
    c.shutdown();
    c.shutdown();
    let e = c.dispatch(get).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable, "{e}");
}

/// A launch whose parameters the pack refuses (a type other than its default's, a value
/// out of range, an emptied `valid_result`, an unknown key or group) is invalid as
/// written: refused naming each key, and no run is stored for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn launches_with_params_of_the_wrong_type_are_refused_naming_the_key_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let c = demo_console(dir.path(), None);
    for (params, keys, needle) in [
        (
            r#"{"channel_list":[101,"abc"]}"#,
            &["params.channel_list"][..],
            "expected a list of numbers like the pack's default, got a mixed list",
        ),
        (
            r#"{"channel_list":"101, abc"}"#,
            &["params.channel_list"][..],
            "got a string",
        ),
        (
            r#"{"process_limit":null}"#,
            &["params.process_limit"][..],
            "process_limit",
        ),
        (
            r#"{"process_limit":"2"}"#,
            &["params.process_limit"][..],
            "process_limit",
        ),
        (
            r#"{"slow_seconds":null}"#,
            &["params.slow_seconds"][..],
            "got null",
        ),
        (
            r#"{"firmware":4.2}"#,
            &["params.firmware"][..],
            "expected a string",
        ),
        (
            r#"{"process_limit":-1}"#,
            &["params.process_limit"][..],
            "process_limit",
        ),
        (
            r#"{"valid_result":[]}"#,
            &["params.valid_result"][..],
            "at least one result name",
        ),
        (
            r#"{"valid_result":[1]}"#,
            &["params.valid_result"][..],
            "valid_result[0]",
        ),
        (
            r#"{"ignore_prereq":"no"}"#,
            &["params.ignore_prereq"][..],
            "true or false",
        ),
        (
            r#"{"weak_channels":"x","process_limit":true}"#,
            &["params.weak_channels", "params.process_limit"][..],
            "weak_channels",
        ),
        (
            r#"{"proces_limit":2}"#,
            &["params.proces_limit"][..],
            "process_limit",
        ),
    ] {
        let req = format!(
            r#"{{"cmd":"launch","pack":"stb-smoke","groups":["smoke"],"duts":["stb-02"],"params":{params}}}"#
        );
        let e = call(&c, &req).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{params}: {e}");
        assert!(e.message.starts_with("params: "), "{params}: {}", e.message);
        assert!(e.message.contains(needle), "{params}: {}", e.message);
        let got: Vec<&str> = e
            .diagnostics
            .iter()
            .filter_map(|d| d.key_path.as_deref())
            .collect();
        for k in keys {
            assert!(got.contains(k), "{params}: {got:?}");
        }
    }
    let e = call(
        &c,
        r#"{"cmd":"launch","pack":"stb-smoke","groups":["smoke","nope"],"duts":["stb-02"]}"#,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert!(e.message.contains("no group `nope`"), "{}", e.message);
    assert_eq!(stored_runs(&c).await, 0, "refused launches are not stored");

    // Right types pass: an empty list where the default list is empty or of numbers.
    let Response::Launch { run_id, .. } = call(
        &c,
        r#"{"cmd":"launch","pack":"stb-smoke","groups":["smoke"],"duts":["stb-02"],"params":{"channel_list":[7],"weak_channels":[],"process_limit":1}}"#,
    )
    .await
    .unwrap() else {
        panic!()
    };
    call(&c, &format!(r#"{{"cmd":"stop_run","run_id":"{run_id}"}}"#))
        .await
        .unwrap();
    let _ = call(&c, &format!(r#"{{"cmd":"stop_run","run_id":"{run_id}"}}"#)).await;
    assert_eq!(stored_runs(&c).await, 1);
}

/// A stored run launched again runs the same pack version (its snapshot, though the pack
/// changed since), groups, DUTs and parameters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaunch_repeats_a_run_with_its_pack_version_and_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let c = console(dir.path());
    let mut events = c.subscribe();
    let Response::Launch { run_id: first, .. } = call(
        &c,
        r#"{"cmd":"launch","pack":"hello","groups":["smoke"],"duts":["stb-01"],"params":{"process_limit":3}}"#,
    )
    .await
    .unwrap() else {
        panic!()
    };
    run_end(&mut events, &first).await;
    // The pack moves on: a new version with another group.
    write(
        &dir.path().join("packs/hello/pack.yaml"),
        "name: hello\nversion: 2.0.0\ngroups:\n  smoke:\n    tests: [greet]\n  more:\n    tests: [greet]\n",
    );
    let Response::Relaunch { run_id, from, .. } =
        call(&c, &format!(r#"{{"cmd":"relaunch","run_id":"{first}"}}"#))
            .await
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(from, first);
    assert_ne!(run_id, first);
    assert_eq!(run_end(&mut events, &run_id).await, RunStatus::Completed);
    let get = |id: &str| format!(r#"{{"cmd":"get_run","run_id":"{id}"}}"#);
    let (Response::GetRun(a), Response::GetRun(b)) = (
        call(&c, &get(&first)).await.unwrap(),
        call(&c, &get(&run_id)).await.unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(b.run.pack_version, "1.0.0");
    assert_eq!(b.run.content_hash, a.run.content_hash);
    assert_eq!(b.run.groups, a.run.groups);
    assert_eq!(b.run.duts, a.run.duts);
    assert_eq!(b.run.params, a.run.params);
    assert_eq!(b.run.params["process_limit"], 3);
    let e = call(&c, r#"{"cmd":"relaunch","run_id":"r-none"}"#)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

/// "Rerun failed": only the tests that failed and the tests they need as prereqs, in the
/// groups that hold them; a run without a failed test has nothing to rerun.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_failed_runs_the_failed_tests_and_their_prereqs() {
    let dir = tempfile::tempdir().unwrap();
    let mix = dir.path().join("packs/mix");
    write(
        &mix.join("pack.yaml"),
        "name: mix\nversion: 1.0.0\ngroups:\n  g:\n    tests: [a, b, c]\n  h:\n    tests: [d]\n",
    );
    for (t, extra, body) in [
        ("a", "", "exit 0\n"),
        ("b", "", "exit 0\n"),
        ("c", "prereq_tasks: [a]\n", "exit 1\n"),
        ("d", "", "exit 0\n"),
    ] {
        write(
            &mix.join(format!("tasks/{t}.yaml")),
            &format!("name: {t}\nrun: [bash, {t}.sh]\n{extra}"),
        );
        write(&mix.join(format!("tasks/{t}.sh")), body);
    }
    let c = console(dir.path());
    let mut events = c.subscribe();
    let Response::Launch { run_id: first, .. } =
        call(&c, r#"{"cmd":"launch","pack":"mix","duts":["x1","x2"]}"#)
            .await
            .unwrap()
    else {
        panic!()
    };
    run_end(&mut events, &first).await;
    let Response::Relaunch { run_id, .. } = call(
        &c,
        &format!(r#"{{"cmd":"relaunch","run_id":"{first}","only_failed":true}}"#),
    )
    .await
    .unwrap() else {
        panic!()
    };
    run_end(&mut events, &run_id).await;
    let Response::GetRun(d) = call(&c, &format!(r#"{{"cmd":"get_run","run_id":"{run_id}"}}"#))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(d.run.groups, ["g"]);
    let mut ran: Vec<(String, String)> = d
        .tasks
        .iter()
        .map(|t| {
            (
                t.record.lane.clone().unwrap_or_default(),
                t.record.task.clone(),
            )
        })
        .collect();
    ran.sort();
    let want: Vec<(String, String)> = [("x1", "a"), ("x1", "c"), ("x2", "a"), ("x2", "c")]
        .iter()
        .map(|(l, t)| (l.to_string(), t.to_string()))
        .collect();
    assert_eq!(ran, want);

    // The passing group alone: nothing failed, nothing to rerun.
    let Response::Launch { run_id: good, .. } =
        call(&c, r#"{"cmd":"launch","pack":"mix","groups":["h"]}"#)
            .await
            .unwrap()
    else {
        panic!()
    };
    run_end(&mut events, &good).await;
    let e = call(
        &c,
        &format!(r#"{{"cmd":"relaunch","run_id":"{good}","only_failed":true}}"#),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("no failed test"), "{}", e.message);
}
