//! `testbay report`: a shell task reports sections and measurements with the `testbay`
//! binary the console puts on its PATH; `testbay run` shows them; exports carry them.

use crate::support::{bin, run_id_of, text, Bed};

const SHELL_TASK: &str = r#"set -e
testbay report section-start boot --description "power on"
testbay report detail "prompt seen"
testbay report section-start login
testbay report measure login_time 1.5 --units s --high 30
testbay report section-stop login --result Passed
if testbay report section-stop nope 2> refused.txt; then exit 9; fi
grep -q "section \`nope\` is not open (not_open)" refused.txt
testbay report section-stop boot
testbay report extra firmware '{"version": "1.2"}'
# Nobody answers in a headless run: the prompt times out (exit status 3).
set +e; testbay report prompt "Serial number?" --pattern 'SN[0-9]+' --timeout 0.2; code=$?; set -e
[ "$code" = 3 ]
"#;

#[test]
fn a_shell_task_reports_sections_with_testbay_report() {
    let f = Bed::new();
    let pack = f.pack(
        "sh",
        "name: sh\nversion: '1'\ngroups:\n  g:\n    tests: [shell]\n",
        &[("shell", "", SHELL_TASK)],
    );
    let out = f.testbay(&["run", pack.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{}\n{err}", text(&out.stdout));
    for want in [
        "[local] shell: section boot ...",
        "[local] shell: section login ...",
        "[local] shell: login_time = 1.5 s (within limits)",
        "[local] shell: section login: Passed",
        "[local] shell: section boot: Passed",
        "[local] shell asks the operator (prompt 1): Serial number?",
        "[local] shell: nobody answered in time",
        "[local] shell: Passed",
    ] {
        assert!(err.contains(want), "missing {want:?} in\n{err}");
    }
    let id = run_id_of(&text(&out.stdout));
    let junit = text(&f.testbay(&["export", &id, "--format", "junit"]).stdout);
    assert!(junit.contains("name=\"shell / boot / login\""), "{junit}");
    let yaml = text(&f.testbay(&["export", &id, "--format", "yaml"]).stdout);
    for want in ["name: login", "login_time", "prompt seen", "firmware"] {
        assert!(yaml.contains(want), "missing {want:?} in\n{yaml}");
    }
}

#[test]
fn outside_a_task_report_warns_and_does_nothing() {
    let out = bin()
        .args(["report", "detail", "hello"])
        .env_remove("TESTBAY_REPORTER")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("not inside a Testbay task"),
        "{}",
        text(&out.stderr)
    );
    let bad = bin()
        .args(["report", "measure", "x", "1", "--comparison", "between"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("not a comparison"));
}

/// On a terminal (`script` gives the run a pseudo-terminal), `testbay run` asks a task's
/// prompt: a wrong answer is refused and asked again, the right one reaches the task.
#[test]
fn testbay_run_asks_a_prompt_on_its_terminal() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let f = Bed::new();
    let pack = f.pack(
        "ask",
        "name: ask\nversion: '1'\ngroups:\n  g:\n    tests: [hdmi]\n",
        &[(
            "hdmi",
            "",
            "a=$(testbay report prompt 'Plug in HDMI' --choice done --choice fail --timeout 60)\n[ \"$a\" = done ]\n",
        )],
    );
    let cmd = format!(
        "'{}' --data-dir '{}' run '{}'",
        env!("CARGO_BIN_EXE_testbay"),
        f.data.display(),
        pack.display()
    );
    let mut child = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(2));
        let _ = stdin.write_all(b"maybe\n");
        std::thread::sleep(std::time::Duration::from_millis(500));
        let _ = stdin.write_all(b"done\n");
        // Held open until the run is over: an end of input would end the terminal.
        std::thread::sleep(std::time::Duration::from_secs(20));
    });
    let out = child.wait_with_output().unwrap();
    drop(feeder);
    let all = text(&out.stdout) + &text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{all}");
    for want in [
        "hdmi asks (prompt 1): Plug in HDMI",
        "answer with one of: done / fail, then Enter:",
        "prompt 1: `maybe` is not one of the choices: done, fail",
        "1 Passed",
    ] {
        assert!(all.contains(want), "missing {want:?} in\n{all}");
    }
}
