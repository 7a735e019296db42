//! `exec::run_phase` with real child processes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use testbay_engine::clock::{Clock, SystemClock};
use testbay_engine::exec::*;
use testbay_engine::model::StopLevel;
use testbay_engine::outcome::*;

use crate::support::{alive, ends_soon, pid_in, rss_kib, PhaseDir};

fn cmd(fx: &PhaseDir, script: &str) -> PhaseCommand {
    std::fs::write(fx.dir.join("t.sh"), script).unwrap();
    PhaseCommand {
        argv: vec!["bash".into(), "t.sh".into()],
        cwd: fx.dir.clone(),
        env: ProtocolEnv {
            run_id: "r-test-1".into(),
            task: "t".into(),
            phase: Phase::Main,
            params_file: fx.dir.join("params.json"),
            result_file: fx.dir.join("result.json"),
            artifacts_dir: fx.dir.join("artifacts"),
            reporter: None,
        },
        log_file: fx.dir.join("main.log"),
        max_runtime: None,
        limits: ExecLimits::default(),
    }
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

async fn run(c: &PhaseCommand) -> PhaseOutcome {
    run_phase(c, &clock(), None, None, |_| {}).await.unwrap()
}

#[tokio::test]
async fn exit_zero_without_result_passes_and_sees_protocol_env() {
    let f = PhaseDir::new();
    let c = cmd(
        &f,
        "echo hello\necho to-stderr >&2\nenv | grep ^TESTBAY_ | sort > \"$TESTBAY_ARTIFACTS/env.txt\"\n",
    );
    let o = run(&c).await;
    assert_eq!(o.result, PASSED);
    assert_eq!(o.exit, Exit::Code(0));
    let log = std::fs::read_to_string(f.dir.join("main.log")).unwrap();
    assert!(
        log.contains("hello\n") && log.contains("to-stderr\n"),
        "{log}"
    );
    let env = std::fs::read_to_string(f.dir.join("artifacts/env.txt")).unwrap();
    for want in [
        "TESTBAY_RUN_ID=r-test-1".to_string(),
        "TESTBAY_TASK=t".into(),
        "TESTBAY_PHASE=main".into(),
        format!("TESTBAY_PARAMS={}", f.dir.join("params.json").display()),
        format!("TESTBAY_RESULT={}", f.dir.join("result.json").display()),
        format!("TESTBAY_ARTIFACTS={}", f.dir.join("artifacts").display()),
    ] {
        assert!(env.lines().any(|l| l == want), "missing {want} in\n{env}");
    }
}

#[tokio::test]
async fn nonzero_exit_without_result_fails() {
    let f = PhaseDir::new();
    let o = run(&cmd(&f, "exit 3\n")).await;
    assert_eq!(o.result, FAILED);
    assert_eq!(o.exit, Exit::Code(3));
    assert!(o.message.contains("exit status 3"), "{}", o.message);
}

#[tokio::test]
async fn result_file_with_multi_result_is_used() {
    let f = PhaseDir::new();
    let o = run(&cmd(
        &f,
        r#"cat > "$TESTBAY_RESULT" <<'EOF'
{"result": "Completed", "metadata": {"message": "all good", "fw": "1.2"},
 "multi_result": [
   {"name": "a", "description": "first", "result": "Passed", "metadata": {"message": "ok"}},
   {"name": "b", "result": "Failed"}
 ]}
EOF
exit 1
"#,
    ))
    .await;
    // The result file wins over the exit status.
    assert_eq!(o.result, COMPLETED);
    assert_eq!(o.message, "all good");
    assert_eq!(o.metadata.get("fw").unwrap(), "1.2");
    assert_eq!(o.multi_result.len(), 2);
    assert_eq!(o.multi_result[0].name, "a");
    assert_eq!(o.multi_result[0].metadata.message, "ok");
    assert_eq!(o.multi_result[1].result, FAILED);
    assert_eq!(o.multi_result[1].description, "");
}

#[tokio::test]
async fn garbage_result_is_errored_with_raw_text_kept() {
    let f = PhaseDir::new();
    let o = run(&cmd(
        &f,
        "printf 'this is {not json' > \"$TESTBAY_RESULT\"\n",
    ))
    .await;
    assert_eq!(o.result, ERRORED);
    assert!(o.message.contains("invalid result file"), "{}", o.message);
    assert!(o.message.contains("line 1"), "{}", o.message);
    assert_eq!(o.raw_result.as_deref(), Some("this is {not json"));
}

#[tokio::test]
async fn result_breaking_the_schema_is_errored() {
    let f = PhaseDir::new();
    let o = run(&cmd(
        &f,
        "echo '{\"metadata\": {\"message\": \"no result key\"}, \"extra\": 1}' > \"$TESTBAY_RESULT\"\n",
    ))
    .await;
    assert_eq!(o.result, ERRORED);
    assert!(
        o.message.contains("result") || o.message.contains("extra"),
        "{}",
        o.message
    );
    assert!(o.raw_result.unwrap().contains("no result key"));
}

#[tokio::test]
async fn oversized_result_is_refused_with_capped_raw() {
    let f = PhaseDir::new();
    let mut c = cmd(
        &f,
        "head -c 200000 /dev/zero | tr '\\0' 'x' > \"$TESTBAY_RESULT\"\n",
    );
    c.limits.result_file_cap_bytes = 100_000;
    c.limits.raw_result_cap_bytes = 1000;
    let o = run(&c).await;
    assert_eq!(o.result, ERRORED);
    assert!(o.message.contains("200000 bytes"), "{}", o.message);
    assert_eq!(o.raw_result.unwrap().len(), 1000);
}

/// The phase run on a thread of its own; `None` when it has not ended within `limit`
/// (the thread is left behind: what it waits on never comes).
fn outcome_within(c: PhaseCommand, limit: Duration) -> Option<PhaseOutcome> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = tx.send(rt.block_on(run(&c)));
    });
    rx.recv_timeout(limit).ok()
}

/// A named pipe where the result file goes used to be opened for reading, which waits for
/// a writer forever: the phase never ended and the console's worker thread was stuck.
#[test]
fn a_named_pipe_as_result_file_is_errored_at_once() {
    let f = PhaseDir::new();
    let o = outcome_within(
        cmd(&f, "mkfifo \"$TESTBAY_RESULT\"\n"),
        Duration::from_secs(20),
    )
    .expect("the phase waited on the named pipe");
    assert_eq!(o.result, ERRORED);
    assert!(
        o.message.contains("is a named pipe, not a file"),
        "{}",
        o.message
    );
    assert!(o.message.contains("result.json"), "{}", o.message);
}

/// A link to a device that never ends (`/dev/zero`) used to be read until memory ran out.
#[test]
fn a_result_file_linked_to_a_device_is_errored() {
    let f = PhaseDir::new();
    let o = outcome_within(
        cmd(&f, "ln -s /dev/zero \"$TESTBAY_RESULT\"\n"),
        Duration::from_secs(20),
    )
    .expect("the phase read the device without end");
    assert_eq!(o.result, ERRORED);
    assert!(
        o.message.contains("is a device, not a file"),
        "{}",
        o.message
    );
}

/// A huge sparse result file is refused by its size; only its head is read.
#[tokio::test]
async fn a_huge_sparse_result_file_is_refused_by_its_size() {
    let f = PhaseDir::new();
    let o = run(&cmd(&f, "truncate -s 64G \"$TESTBAY_RESULT\"\n")).await;
    assert_eq!(o.result, ERRORED);
    assert!(o.message.contains("68719476736 bytes"), "{}", o.message);
    assert_eq!(
        o.raw_result.map(|r| r.len()),
        Some(ExecLimits::default().raw_result_cap_bytes)
    );
}

/// kissats results are plain words: a result or sub-result name with control characters
/// (a terminal escape, a line break) is refused, the file kept as the raw result.
#[tokio::test]
async fn result_names_with_control_characters_are_errored() {
    for (what, json) in [
        ("result", r#"{"result": "Failed\u001b[2J"}"#),
        (
            "multi_result[0].result",
            r#"{"result": "Passed", "multi_result": [{"name": "a", "result": "Pass\ned"}]}"#,
        ),
        (
            "multi_result[1].name",
            r#"{"result": "Passed", "multi_result": [{"name": "a", "result": "Passed"}, {"name": "b\u0007", "result": "Passed"}]}"#,
        ),
    ] {
        let f = PhaseDir::new();
        std::fs::write(f.dir.join("ret.json"), json).unwrap();
        let o = run(&cmd(&f, "cp ret.json \"$TESTBAY_RESULT\"\n")).await;
        assert_eq!(o.result, ERRORED, "{what}");
        assert!(
            o.message.contains(what) && o.message.contains("control character"),
            "{what}: {}",
            o.message
        );
        // The message shows the name escaped; the raw result keeps it exactly.
        assert!(!o.message.chars().any(|c| c.is_control()), "{}", o.message);
        assert_eq!(o.raw_result.as_deref(), Some(json), "{what}");
    }
    // Messages may hold line breaks and anything else: shown escaped, stored as written.
    let f = PhaseDir::new();
    std::fs::write(
        f.dir.join("ret.json"),
        r#"{"result": "Failed", "metadata": {"message": "two\nlines \u001b[31mred"}}"#,
    )
    .unwrap();
    let o = run(&cmd(&f, "cp ret.json \"$TESTBAY_RESULT\"\n")).await;
    assert_eq!(o.result, FAILED);
    assert_eq!(o.message, "two\nlines \u{1b}[31mred");
}

#[tokio::test]
async fn stale_result_file_from_an_earlier_attempt_is_ignored() {
    let f = PhaseDir::new();
    std::fs::write(f.dir.join("result.json"), r#"{"result": "Passed"}"#).unwrap();
    let o = run(&cmd(&f, "exit 2\n")).await;
    assert_eq!(o.result, FAILED);
}

#[tokio::test]
async fn crash_by_signal_is_errored() {
    let f = PhaseDir::new();
    let o = run(&cmd(&f, "echo before\nkill -9 $$\n")).await;
    assert_eq!(o.result, ERRORED);
    assert_eq!(o.exit, Exit::Signal(9));
    assert!(o.message.contains("SIGKILL"), "{}", o.message);
    assert!(std::fs::read_to_string(f.dir.join("main.log"))
        .unwrap()
        .contains("before"));
}

#[tokio::test]
async fn missing_program_is_errored() {
    let f = PhaseDir::new();
    let mut c = cmd(&f, "");
    c.argv = vec!["./no-such-program".into()];
    let o = run(&c).await;
    assert_eq!(o.result, ERRORED);
    assert_eq!(o.exit, Exit::NotStarted);
    assert!(o.message.contains("could not start"), "{}", o.message);
}

#[tokio::test]
async fn relative_program_is_resolved_against_cwd() {
    let f = PhaseDir::new();
    std::fs::write(f.dir.join("prog.sh"), "#!/bin/sh\necho from-prog\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        f.dir.join("prog.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let mut c = cmd(&f, "");
    c.argv = vec!["./prog.sh".into()];
    let o = run(&c).await;
    assert_eq!(o.result, PASSED, "{}", o.message);
    assert!(std::fs::read_to_string(f.dir.join("main.log"))
        .unwrap()
        .contains("from-prog"));
}

/// A hung task that ignores SIGTERM and has a grandchild: Timeout, and the whole process
/// group (grandchild included) is gone afterwards.
#[tokio::test]
async fn hang_times_out_and_the_group_is_killed() {
    let f = PhaseDir::new();
    let mut c = cmd(
        &f,
        "trap '' TERM\nsleep 300 &\necho $! > \"$TESTBAY_ARTIFACTS/grandchild.pid\"\necho $$ > \"$TESTBAY_ARTIFACTS/child.pid\"\nwhile true; do sleep 1; done\n",
    );
    // Long enough for bash to start both and write their pids on a loaded machine.
    c.max_runtime = Some(Duration::from_secs(3));
    c.limits.kill_grace = Duration::from_millis(300);
    let mut pgid = 0;
    let o = run_phase(&c, &clock(), None, None, |p| pgid = p)
        .await
        .unwrap();
    assert_eq!(o.result, TIMEOUT);
    assert!(o.message.contains("max_runtime"), "{}", o.message);
    let gc: i32 = std::fs::read_to_string(f.dir.join("artifacts/grandchild.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let child: i32 = std::fs::read_to_string(f.dir.join("artifacts/child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(child as u32, pgid);
    // Give init a moment to reap the killed grandchild.
    for _ in 0..50 {
        if !alive(gc) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(gc), "grandchild {gc} survived");
    assert!(!alive(child), "child {child} survived");
}

#[tokio::test]
async fn processes_left_behind_end_with_the_phase() {
    let f = PhaseDir::new();
    let c = cmd(
        &f,
        "sleep 300 >/dev/null 2>&1 &\necho $! > \"$TESTBAY_ARTIFACTS/bg.pid\"\nexit 0\n",
    );
    let o = run(&c).await;
    assert_eq!(o.result, PASSED);
    let bg = pid_in(&f.dir.join("artifacts/bg.pid"));
    assert!(ends_soon(bg), "background process {bg} survived its phase");
}

#[tokio::test]
async fn stop_aborts_the_phase() {
    let f = PhaseDir::new();
    let c = cmd(&f, "sleep 300\n");
    let (tx, rx) = tokio::sync::watch::channel(None);
    let stop = StopSignal {
        level: rx,
        at: StopLevel::AtOnce,
    };
    let h = tokio::spawn({
        let c = c.clone();
        async move {
            run_phase(&c, &clock(), None, Some(stop), |_| {})
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Below its level: goes on.
    tx.send(Some(StopLevel::Graceful)).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!h.is_finished());
    tx.send(Some(StopLevel::AtOnce)).unwrap();
    let o = h.await.unwrap();
    assert_eq!(o.result, ABORTED);
}

/// 200 MB of output: the log file is capped with a marker, live lines are rate-limited,
/// and this process's memory stays flat.
#[tokio::test]
async fn flood_keeps_memory_flat_and_log_capped() {
    let f = PhaseDir::new();
    let mut c = cmd(
        &f,
        "yes 'a line of flood output, 40 bytes long..' | head -c 200000000\n",
    );
    c.limits.log_cap_bytes = 1024 * 1024;
    let lines = Arc::new(Mutex::new((0u64, 0u64)));
    let sink_lines = lines.clone();
    let sink: LiveSink = Box::new(move |l| {
        let mut g = sink_lines.lock().unwrap();
        match l {
            LiveLog::Lines(l) => g.0 += l.len() as u64,
            LiveLog::Dropped(n) => g.1 += n,
        }
    });
    let before = rss_kib();
    let o = run_phase(&c, &clock(), Some(sink), None, |_| {})
        .await
        .unwrap();
    let after = rss_kib();
    assert_eq!(o.result, PASSED);
    assert_eq!(o.log.bytes, 200_000_000);
    assert!(o.log.truncated);
    let log = std::fs::metadata(f.dir.join("main.log")).unwrap().len();
    assert!(log <= 1024 * 1024 + 1024, "log is {log} bytes");
    let text = std::fs::read_to_string(f.dir.join("main.log")).unwrap();
    assert!(
        text.contains("[testbay] log truncated"),
        "no truncation marker"
    );
    let (live, dropped) = *lines.lock().unwrap();
    assert_eq!(
        live + dropped,
        o.log.lines,
        "every line is either shown or counted"
    );
    assert!(
        dropped > 0 && live < o.log.lines / 10,
        "live {live} dropped {dropped}"
    );
    assert!(
        after < before + 64 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
}

#[tokio::test]
async fn long_lines_are_split_and_invalid_utf8_is_replaced() {
    let f = PhaseDir::new();
    let mut c = cmd(
        &f,
        "head -c 50000 /dev/zero | tr '\\0' 'y'; echo\nprintf 'bad \\377\\376 bytes\\n'\n",
    );
    c.limits.line_cap_bytes = 8192;
    let o = run(&c).await;
    assert_eq!(o.result, PASSED);
    let text = std::fs::read_to_string(f.dir.join("main.log")).unwrap();
    let lens: Vec<usize> = text.lines().map(|l| l.len()).collect();
    assert!(lens.iter().all(|&l| l <= 8192), "{lens:?}");
    assert_eq!(lens.iter().take(7).sum::<usize>(), 50000);
    assert!(text.contains("bad \u{FFFD}\u{FFFD} bytes"), "{text:?}");
}

#[tokio::test]
async fn tasks_get_default_signal_handling() {
    let f = PhaseDir::new();
    // grep changes no signal disposition: what it shows is what the task inherited.
    let o = run(&cmd(&f, "grep -E '^Sig(Ign|Blk)' /proc/self/status\n")).await;
    assert_eq!(o.result, PASSED);
    let log = std::fs::read_to_string(f.dir.join("main.log")).unwrap();
    for l in log.lines() {
        let mask = u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap();
        assert_eq!(
            mask & (1 << (libc::SIGPIPE - 1)),
            0,
            "SIGPIPE ignored or blocked: {l}"
        );
    }
}

#[tokio::test]
async fn a_missing_working_directory_is_errored_with_the_step() {
    let f = PhaseDir::new();
    let mut c = cmd(&f, "exit 0\n");
    c.cwd = f.dir.join("gone");
    c.argv = vec!["true".into()];
    let o = run(&c).await;
    assert_eq!(o.result, ERRORED);
    assert!(o.message.contains("working directory"), "{}", o.message);
}

/// A process that leaves the phase's group but keeps its output open is found through
/// the pipe and ended with the phase; the log is complete.
#[tokio::test]
async fn escaped_process_holding_the_output_ends_with_the_phase() {
    let f = PhaseDir::new();
    // The leader ends once the escapee has written its line and its pid (whole, by a
    // rename), however slowly the machine runs them.
    let mut c = cmd(
        &f,
        "setsid bash -c 'echo from-escapee; echo $$ > \"$TESTBAY_ARTIFACTS/escaped.tmp\"; mv \"$TESTBAY_ARTIFACTS/escaped.tmp\" \"$TESTBAY_ARTIFACTS/escaped.pid\"; sleep 300' &\nfor i in $(seq 3000); do [ -s \"$TESTBAY_ARTIFACTS/escaped.pid\" ] && break; sleep 0.01; done\necho leader-done\n",
    );
    // A drain timeout far beyond the bound below: ending within it means the escapee was
    // found and ended, not waited out. (The leader's wait for the pid is bounded: an
    // escapee that never starts fails the test at its pid, not by hanging.)
    c.limits.drain_timeout = Duration::from_secs(30);
    let started = std::time::Instant::now();
    let o = run(&c).await;
    assert_eq!(o.result, PASSED);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited for the drain timeout"
    );
    let pid = pid_in(&f.dir.join("artifacts/escaped.pid"));
    assert!(ends_soon(pid), "escaped process {pid} survived");
    let log = std::fs::read_to_string(f.dir.join("main.log")).unwrap();
    assert!(
        log.contains("from-escapee") && log.contains("leader-done"),
        "{log}"
    );
    assert!(log.contains("that left the phase's process group"), "{log}");
}

/// Spawn the phase; the test goes on while it runs.
fn start(c: &PhaseCommand, live: Option<LiveSink>) -> tokio::task::JoinHandle<PhaseOutcome> {
    let c = c.clone();
    tokio::spawn(async move { run_phase(&c, &clock(), live, None, |_| {}).await.unwrap() })
}

/// A line followed by silence is in the log file while the phase still runs.
#[tokio::test]
async fn log_is_readable_when_output_goes_quiet() {
    let f = PhaseDir::new();
    let c = cmd(&f, "echo first line\nsleep 3\necho last line\n");
    let h = start(&c, None);
    // The line is in the file while the phase still sleeps (looked for until it ends).
    let mut text = String::new();
    while !h.is_finished() {
        text = std::fs::read_to_string(f.dir.join("main.log")).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!h.is_finished(), "the phase ended before its line was read");
    assert_eq!(text, "first line\n", "log of the running phase");
    let o = h.await.unwrap();
    assert_eq!(o.result, PASSED);
    let text = std::fs::read_to_string(f.dir.join("main.log")).unwrap();
    assert_eq!(text, "first line\nlast line\n");
}

/// Lines that keep coming (never quiet long enough to count as idle) still reach the file
/// while the phase runs, well before the write buffer would fill.
#[tokio::test]
async fn log_is_readable_while_lines_keep_coming() {
    let f = PhaseDir::new();
    std::fs::write(
        f.dir.join("t.py"),
        "import sys, time\nend = time.time() + 2.5\ni = 0\nwhile time.time() < end:\n    i += 1\n    print(f'tick {i}', flush=True)\n    time.sleep(0.004)\n",
    )
    .unwrap();
    let mut c = cmd(&f, "");
    c.argv = vec!["python3".into(), "t.py".into()];
    let h = start(&c, None);
    // The interpreter may take a while to start on a busy machine; what counts is that
    // lines reach the file while the phase still runs.
    let mut seen = String::new();
    while !h.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let text = std::fs::read_to_string(f.dir.join("main.log")).unwrap_or_default();
        if text.lines().count() >= 10 && !h.is_finished() {
            seen = text;
            break;
        }
    }
    assert!(
        seen.starts_with("tick 1\n"),
        "no lines in the log while the phase ran ({} bytes)",
        seen.len()
    );
    assert_eq!(h.await.unwrap().result, PASSED);
}

/// Output faster than the live rate: held-back lines are reported at most once a second
/// (plus once at the end), and every line is either shown or counted.
#[tokio::test]
async fn dropped_live_lines_are_reported_once_a_second() {
    let f = PhaseDir::new();
    std::fs::write(
        f.dir.join("t.py"),
        "import time\nend = time.time() + 3\ni = 0\nwhile time.time() < end:\n    i += 1\n    print(f'line {i}')\n    if i % 50 == 0: time.sleep(0.001)\n",
    )
    .unwrap();
    let mut c = cmd(&f, "");
    c.argv = vec!["python3".into(), "t.py".into()];
    let seen = Arc::new(Mutex::new((0u64, Vec::<u64>::new())));
    let s = seen.clone();
    let sink: LiveSink = Box::new(move |l| {
        let mut g = s.lock().unwrap();
        match l {
            LiveLog::Lines(l) => g.0 += l.len() as u64,
            LiveLog::Dropped(n) => g.1.push(n),
        }
    });
    let o = run_phase(&c, &clock(), Some(sink), None, |_| {})
        .await
        .unwrap();
    assert_eq!(o.result, PASSED);
    let (lines, dropped) = seen.lock().unwrap().clone();
    let secs = ((o.finished_ms - o.started_ms) as f64 / 1000.0).ceil() as usize;
    assert!(o.log.live_dropped > 0, "the rate limit never applied");
    assert!(
        !dropped.is_empty() && dropped.len() <= secs + 2,
        "{} dropped reports in {secs}s",
        dropped.len()
    );
    assert_eq!(dropped.iter().sum::<u64>(), o.log.live_dropped);
    assert_eq!(lines + o.log.live_dropped, o.log.lines);
}

/// Lines that arrive together reach live viewers together, in order: one event per read
/// of the output, not one per line.
#[tokio::test]
async fn live_lines_of_one_read_come_as_one_event() {
    let f = PhaseDir::new();
    // 300 short lines written at once (one write, so a handful of reads at most).
    let c = cmd(&f, "seq 1 300 > all.txt\ncat all.txt\n");
    let events = Arc::new(Mutex::new(Vec::<Vec<String>>::new()));
    let e = events.clone();
    let sink: LiveSink = Box::new(move |l| {
        if let LiveLog::Lines(lines) = l {
            e.lock().unwrap().push(lines);
        }
    });
    let o = run_phase(&c, &clock(), Some(sink), None, |_| {})
        .await
        .unwrap();
    assert_eq!(o.result, PASSED);
    let events = events.lock().unwrap().clone();
    let lines: Vec<String> = events.iter().flatten().cloned().collect();
    let want: Vec<String> = (1..=300).map(|i| i.to_string()).collect();
    assert_eq!(lines, want);
    assert!(events.len() <= 5, "{} events for 300 lines", events.len());
}

/// A phase that writes more than its pipe holds before its output is watched (it is read
/// from `QUIET_START` on, or at the end) neither hangs nor loses a line; a phase that
/// writes a little and ends at once has it read at its end.
#[tokio::test]
async fn output_before_and_at_the_end_of_a_phase_is_all_in_the_log() {
    let f = PhaseDir::new();
    let o = run(&cmd(&f, "yes line | head -n 100000\n")).await;
    assert_eq!(o.result, PASSED);
    assert_eq!(o.log.lines, 100_000);
    let log = std::fs::read_to_string(f.dir.join("main.log")).unwrap();
    assert_eq!(log.lines().count(), 100_000);
    assert!(log.lines().all(|l| l == "line"));

    let o = run(&cmd(&f, "echo one\necho two >&2\n")).await;
    assert_eq!(o.log.lines, 2);
    let log = std::fs::read_to_string(f.dir.join("main.log")).unwrap();
    assert_eq!(log, "one\ntwo\n");
}

/// Lines of a phase that keeps running reach live viewers while it runs, not only at
/// its end.
#[tokio::test]
async fn a_running_phase_output_is_live() {
    let f = PhaseDir::new();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink_seen = seen.clone();
    let sink: LiveSink = Box::new(move |l| {
        if let LiveLog::Lines(lines) = l {
            sink_seen.lock().unwrap().extend(lines);
        }
    });
    let c = cmd(&f, "echo early\nsleep 5\n");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
    let stop = StopSignal {
        level: stop_rx,
        at: StopLevel::Graceful,
    };
    let phase =
        tokio::spawn(async move { run_phase(&c, &clock(), Some(sink), Some(stop), |_| {}).await });
    let mut live = false;
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if seen.lock().unwrap().iter().any(|l| l == "early") {
            live = true;
            break;
        }
    }
    stop_tx.send(Some(StopLevel::Graceful)).unwrap();
    let o = phase.await.unwrap().unwrap();
    assert!(live, "the first line did not arrive while the phase ran");
    assert_eq!(o.result, ABORTED);
}

/// A process that left the phase's group and keeps writing after the phase's own process
/// ended is still cut off: the phase ends, the writer is killed. (A shell loop, not
/// `yes`: a flood of hundreds of MB would disturb the memory test running beside it.)
#[tokio::test]
async fn an_escaped_writer_does_not_hold_the_phase_open() {
    let f = PhaseDir::new();
    let mut c = cmd(
        &f,
        "setsid bash -c 'echo $$ > \"$TESTBAY_ARTIFACTS/escaped.tmp\"; mv \"$TESTBAY_ARTIFACTS/escaped.tmp\" \"$TESTBAY_ARTIFACTS/escaped.pid\"; while true; do echo still-writing; done' &\nfor i in $(seq 3000); do [ -s \"$TESTBAY_ARTIFACTS/escaped.pid\" ] && break; sleep 0.01; done\necho leader-done\n",
    );
    // Waiting out the drain would take 30 s: ending well within it means the writer was
    // found and ended.
    c.limits.drain_timeout = Duration::from_secs(30);
    let started = std::time::Instant::now();
    let o = run(&c).await;
    assert_eq!(o.result, PASSED);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the phase was held open for {:?}",
        started.elapsed()
    );
    let pid = pid_in(&f.dir.join("artifacts/escaped.pid"));
    assert!(ends_soon(pid), "escaped writer {pid} survived");
    let log = std::fs::read_to_string(f.dir.join("main.log")).unwrap();
    assert!(log.contains("that left the phase's process group"), "{log}");
}

/// Every phase carries its console's `TESTBAY_CONSOLE`; the console's guard process
/// ignores what a terminal or a careless `kill` sends, and a guard that dies anyway is
/// replaced at the next phase.
#[tokio::test]
async fn the_phase_guard_holds_and_is_replaced_when_killed() {
    let f = PhaseDir::new();
    let out = run(&cmd(&f, "echo \"console=$TESTBAY_CONSOLE\"\n")).await;
    assert_eq!(out.result, PASSED, "{}", out.message);
    let log = std::fs::read_to_string(f.dir.join("main.log")).unwrap();
    assert!(
        log.starts_with(&format!("console={}-", std::process::id())),
        "{log}"
    );
    let guard = guard_pid().expect("a guard runs") as i32;
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{guard}/comm")).unwrap(),
        "testbay-guard\n"
    );
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
        unsafe { libc::kill(guard, sig) };
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(alive(guard), "the guard died of a signal it must ignore");

    unsafe { libc::kill(guard, libc::SIGKILL) };
    for _ in 0..200 {
        if !alive(guard) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!alive(guard));
    let out = run(&cmd(&f, "exit 0\n")).await;
    assert_eq!(out.result, PASSED);
    let new = guard_pid().expect("a new guard runs") as i32;
    assert_ne!(new, guard);
    assert!(alive(new));
}
