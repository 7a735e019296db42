//! `testbay lab`: show, find, hold, holds, release on the demo lab and a broken lab.

use std::path::Path;
use std::process::Command;

use crate::support::demo_lab;

/// Run `testbay --lab LAB lab ARGS` on data dir `data`: (exit code, stdout, stderr).
fn lab(data: &Path, lab: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .arg("--lab")
        .arg(lab)
        .arg("lab")
        .args(args)
        .env("TESTBAY_DATA_DIR", data)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn show_and_find_on_the_demo_lab() {
    let data = tempfile::tempdir().unwrap();
    let (code, out, _) = lab(data.path(), &demo_lab(), &["show"]);
    assert_eq!(code, 0);
    assert!(out.contains("rack rack-a — 8 slots"), "{out}");
    assert!(out.contains("stb-06   TP-5000  Acme     offline"), "{out}");
    assert!(out.contains("stream_server  shared 0/4 in use"), "{out}");
    let (code, out, _) = lab(
        data.path(),
        &demo_lab(),
        &["find", "ModelName==GX*", "Slot==6"],
    );
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 2, "header and stb-12: {out}");
    assert!(out.contains("stb-12"));
    let (code, _, err) = lab(data.path(), &demo_lab(), &["find", "Manufactuer==Acme"]);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean `Manufacturer`?"), "{err}");
    let (code, out, _) = lab(data.path(), &demo_lab(), &["find", "Name==nothing*"]);
    assert_eq!((code, out.trim()), (3, "no DUT matches"));
}

#[test]
fn holds_persist_across_commands_and_waiters_are_listed() {
    let data = tempfile::tempdir().unwrap();
    let (code, out, _) = lab(
        data.path(),
        &demo_lab(),
        &["hold", "stb-03", "--for", "30m", "--by", "ann"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("held stb-03 (id 1) by operator ann until"),
        "{out}"
    );
    let (code, out, _) = lab(
        data.path(),
        &demo_lab(),
        &["hold", "stb-03", "--for", "10m", "--by", "bob"],
    );
    assert_eq!(code, 0);
    assert!(
        out.starts_with("stb-03 is busy; hold 2 by operator bob starts"),
        "{out}"
    );
    let (code, _, err) = lab(
        data.path(),
        &demo_lab(),
        &["hold", "stb-03", "--for", "5m", "--no-wait"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("is not available"), "{err}");
    let (_, out, _) = lab(data.path(), &demo_lab(), &["holds"]);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{out}");
    assert!(
        rows[0].contains("holds") && rows[0].contains("operator ann"),
        "{out}"
    );
    assert!(
        rows[1].contains("waits") && rows[1].contains("operator bob"),
        "{out}"
    );
    let (_, out, _) = lab(data.path(), &demo_lab(), &["show"]);
    assert!(
        out.contains("stb-03   TP-4000  Acme     held by operator ann"),
        "{out}"
    );
    let (code, out, _) = lab(data.path(), &demo_lab(), &["release", "1"]);
    assert_eq!((code, out.trim()), (0, "released 1"));
    let (code, _, err) = lab(data.path(), &demo_lab(), &["release", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown reservation id 1"), "{err}");
    let (_, out, _) = lab(data.path(), &demo_lab(), &["holds", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["holder"]["name"], "bob");
    assert_eq!(
        v[0]["status"], "held",
        "bob's waiting hold moved up when ann released"
    );
}

#[test]
fn bad_input_is_named() {
    let data = tempfile::tempdir().unwrap();
    let (code, _, err) = lab(data.path(), &demo_lab(), &["hold", "stb-3", "--for", "1m"]);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean `stb-03`?"), "{err}");
    let (code, _, err) = lab(
        data.path(),
        &demo_lab(),
        &["hold", "stb-03", "--for", "soon"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("--for \"soon\""), "{err}");
    let broken = data.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "racks:\n  - {name: r, slots: 2}\nduts:\n  - {name: a, location: {rack: r, slot: 3}}\n",
    )
    .unwrap();
    let (code, _, err) = lab(data.path(), &broken, &["show"]);
    assert_eq!(code, 1);
    assert!(err.contains("broken.yaml:4:"), "{err}");
    assert!(err.contains("which has slots 1-2"), "{err}");
}
