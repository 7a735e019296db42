//! Relative `--data-dir`, `TESTBAY_DATA_DIR`, `--packs` and `--lab`: made absolute once at
//! start, so a task (which runs in its pack snapshot's folder) finds every path it is given.

use std::process::Stdio;

use crate::support::{bin, run_id_of, text, Bed};

/// The task fails unless each `TESTBAY_*` path is absolute and usable from the task's
/// own folder.
const CHECK: &str = r#"for v in "$TESTBAY_PARAMS" "$TESTBAY_RESULT" "$TESTBAY_ARTIFACTS"; do
  case "$v" in /*) ;; *) echo "relative path: $v"; exit 3;; esac
done
grep -q '"task": "check"' "$TESTBAY_PARAMS" || { echo "cannot read $TESTBAY_PARAMS"; exit 4; }
echo kept > "$TESTBAY_ARTIFACTS/note.txt" || exit 5
echo '{"result": "Passed", "metadata": {"message": "paths ok"}}' > "$TESTBAY_RESULT" || exit 6
"#;

#[test]
fn relative_data_dir_packs_and_lab_are_made_absolute() {
    let f = Bed::new();
    let packs = f.root.join("packs");
    std::fs::create_dir_all(&packs).unwrap();
    let pack = f.pack(
        "packs/rel",
        "name: rel\nversion: '1'\ngroups:\n  g:\n    tests: [check]\n",
        &[("check", "", CHECK)],
    );
    assert!(pack.join("pack.yaml").is_file());
    std::fs::write(
        f.root.join("lab.yaml"),
        "name: t\nracks:\n  - {name: rack-x, slots: 2}\nduts:\n  - {name: box-1, model: BX-1, location: {rack: rack-x, slot: 1}}\n",
    )
    .unwrap();

    // Flags, all relative to the current directory.
    let out = bin()
        .current_dir(&f.root)
        .args([
            "--data-dir",
            "data",
            "--packs",
            "packs",
            "--lab",
            "lab.yaml",
            "run",
            "rel",
            "--dut",
            "box-1",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("paths ok"), "{stdout}");
    let id = run_id_of(&stdout);
    let artifact = f
        .data
        .join("runs")
        .join(&id)
        .join("box-1/check/artifacts/note.txt");
    assert_eq!(std::fs::read_to_string(&artifact).unwrap(), "kept\n");
    // The lab came from the relative --lab: the run's ATS is the DUT's rack.
    let run = f.testbay(&["results", &id, "--json"]);
    assert!(
        text(&run.stdout).contains("rack-x"),
        "{}",
        text(&run.stdout)
    );

    // The environment variables, relative too.
    let out = bin()
        .current_dir(&f.root)
        .env("TESTBAY_DATA_DIR", "data2")
        .env("TESTBAY_PACKS", "packs")
        .env("TESTBAY_LAB", "lab.yaml")
        .args(["run", "rel", "--dut", "box-1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let id = run_id_of(&stdout);
    assert!(f
        .root
        .join("data2/runs")
        .join(&id)
        .join("box-1/check/artifacts/note.txt")
        .is_file());
}
