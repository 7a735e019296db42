//! A data dir whose disk fills while a run goes: a real, small tmpfs mounted in a private
//! user + mount namespace (`unshare`), no root needed. The run must not look complete.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::support::{text, Bed};

/// What the script inside the namespace does, with `$TB` the testbay binary, `$DATA` the
/// data dir (a 4 MiB tmpfs), `$PACK` the pack and `$M` a folder outside the tmpfs:
/// start the run; once both waiting tasks run, fill the disk and let the first one end
/// (its result and the next task's files meet a full disk); once that next task has
/// failed, free the disk and let the second one end (the run's end is stored again).
const SCRIPT: &str = r#"
set -u
mount -t tmpfs -o size=4m tmpfs "$DATA" || exit 90
wait_for() { i=0; until eval "$1"; do i=$((i+1)); [ $i -gt 1200 ] && { echo "timed out: $1" >&2; exit 91; }; sleep 0.05; done; }
"$TB" --data-dir "$DATA" --lab "$M/no-lab" run "$PACK" > "$M/run.out" 2> "$M/run.err" &
tb=$!
wait_for '[ -e "$M/holding1" ] && [ -e "$M/holding2" ]'
sleep 0.1
dd if=/dev/zero of="$DATA/filler" bs=64k 2>/dev/null
touch "$M/go1"
wait_for 'grep -q "b: Errored" "$M/run.err"'
rm -f "$DATA/filler"
touch "$M/go2"
wait $tb
echo $? > "$M/run.code"
"$TB" --data-dir "$DATA" results --json > "$M/results.json" 2> "$M/results.err"
"$TB" --data-dir "$DATA" results "$(grep -o '"id": *"[^"]*"' "$M/results.json" | head -1 | cut -d'"' -f4)" --json > "$M/run.json"
"#;

fn hold(n: u8, m: &std::path::Path) -> String {
    format!(
        "touch {m}/holding{n}\nwhile [ ! -e {m}/go{n} ]; do sleep 0.02; done\n",
        m = m.display()
    )
}

#[test]
fn a_disk_that_fills_mid_run_makes_the_run_errored_and_the_exit_nonzero() {
    let probe = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "true"])
        .stderr(Stdio::piped())
        .output()
        .expect("unshare (util-linux) runs");
    assert!(
        probe.status.success(),
        "this test needs user namespaces (`unshare --user --map-root-user --mount`): {}",
        text(&probe.stderr)
    );
    let f = Bed::new();
    let m = f.root.join("marker");
    std::fs::create_dir_all(&m).unwrap();
    std::fs::create_dir_all(&f.data).unwrap();
    // Two slots: the two waiting tasks run side by side, `b` starts when the first ends.
    let safe = "process_safe: true\nstop_suite_on_fail: false\n";
    let pack = f.pack(
        "full",
        "name: full\nversion: '1'\nparams:\n  process_limit: 2\ngroups:\n  g:\n    tests: [first, hold1, hold2, b]\n",
        &[
            ("first", safe, "exit 0\n"),
            ("hold1", safe, &hold(1, &m)),
            ("hold2", safe, &hold(2, &m)),
            ("b", safe, "echo b ran\n"),
        ],
    );
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", SCRIPT])
        .env("TB", env!("CARGO_BIN_EXE_testbay"))
        .env("DATA", &f.data)
        .env("PACK", &pack)
        .env("M", &m)
        .env("RUST_LOG", "error")
        .env_remove("TESTBAY_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let read = |name: &str| std::fs::read_to_string(m.join(name)).unwrap_or_default();
    let (stdout, stderr) = (read("run.out"), read("run.err"));
    assert!(
        out.status.success(),
        "script failed: {}\n{}\nrun stdout:\n{stdout}\nrun stderr:\n{stderr}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // The exit status and the summary say it.
    assert_eq!(read("run.code").trim(), "1", "{stdout}\n{stderr}");
    assert!(
        stdout.contains(" errored: 4 task(s)") && stdout.contains("; 1 failure(s)"),
        "{stdout}"
    );
    assert!(!stdout.contains("completed"), "{stdout}");
    assert!(stdout.contains("No space left on device"), "{stdout}");
    // Whether the first result's store write meets the full disk depends on SQLite: a write
    // into WAL pages it already holds needs no new block. When it does fail, the summary
    // says so and shows the results the store lacks, marked as such.
    let store_failed = stdout.contains("could not be stored");
    if store_failed {
        assert!(stdout.contains("(not stored)"), "{stdout}");
    }

    // The store says it too, once the disk has room again.
    let page: Value = serde_json::from_str(&read("results.json"))
        .unwrap_or_else(|e| panic!("{e}: {}{}", read("results.json"), read("results.err")));
    let run = &page["runs"][0];
    assert_eq!(run["status"], "errored", "{run}");
    let reason = run["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("could not be prepared"), "{reason}");
    assert_eq!(
        reason.contains("could not be stored"),
        store_failed,
        "{reason}"
    );
    let tree: Value = serde_json::from_str(&read("run.json")).unwrap();
    let result_of = |task: &str| {
        tree["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["task"] == task)
            .map(|t| t["result"].clone())
            .unwrap()
    };
    // What was stored before the disk filled and after it emptied is there.
    assert_eq!(result_of("first"), "Passed");
    assert_eq!(result_of("hold2"), "Passed");
}
