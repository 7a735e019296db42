//! kissats task modules: `testbay packs import-kissats` writes a pack from them and
//! `testbay run` runs them unchanged through `python3 -m testbay.kissats`.

use crate::support::{repo, results_by_task, run_id_of, text, Bed};

#[test]
fn a_folder_of_kissats_modules_becomes_a_pack_that_runs() {
    let f = Bed::new();
    let src = f.root.join("kiss");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(
        repo().join("sdk/python/tests/fixtures/sample_task.py"),
        src.join("sample_task.py"),
    )
    .unwrap();
    std::fs::write(src.join("helpers.py"), "X = 1\n").unwrap();
    let out = f.root.join("kiss-pack");
    let o = f.testbay(&[
        "packs",
        "import-kissats",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("wrote pack kiss with 1 task(s)"),
        "{}",
        text(&o.stdout)
    );
    // A second import into the same folder is refused.
    let again = f.testbay(&[
        "packs",
        "import-kissats",
        src.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_ne!(again.status.code(), Some(0));
    assert!(text(&again.stderr).contains("is not empty"));

    let run = f.testbay(&["run", out.to_str().unwrap(), "-p", "channels=[101,102]"]);
    let stdout = text(&run.stdout);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&run.stderr)
    );
    assert!(stdout.contains("channel_102"), "{stdout}");
    let id = run_id_of(&stdout);
    assert_eq!(
        results_by_task(&f, &id)
            .get("sample_task")
            .map(String::as_str),
        Some("Passed")
    );

    // Without the parameter its setup raises: the task is Errored with the message.
    let run = f.testbay(&["run", out.to_str().unwrap(), "-p", "channels=[]"]);
    let stdout = text(&run.stdout);
    assert!(
        stdout.contains("task_setup: RuntimeError: no channels to check"),
        "{stdout}\n{}",
        text(&run.stderr)
    );
}
