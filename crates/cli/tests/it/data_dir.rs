//! One data directory shared by several `testbay` processes.

use std::process::{Command, Stdio};

/// Processes opening one fresh data dir at the same moment all open it (before the open
/// lock, two failed 15 times in 20 with "migration 0 ... table runs already exists").
#[test]
fn processes_opening_a_fresh_data_dir_at_once_all_succeed() {
    const AT_ONCE: usize = 6;
    let packs = tempfile::tempdir().unwrap();
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let children: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_testbay"))
                    .args(["results", "--json", "--packs"])
                    .arg(packs.path())
                    .env("TESTBAY_DATA_DIR", &data)
                    .env_remove("TESTBAY_LAB")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(page["total"], 0);
        }
    }
}
