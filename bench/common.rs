//! What the store benchmarks share (`#[path = "common.rs"] mod common;`): sizes from the
//! environment and one synthetic run and its task rows.

use testbay_engine::model::TaskKind;
use testbay_engine::outcome::RunStatus;
use testbay_engine::plan::DutTarget;
use testbay_engine::store::{NewRun, NewTaskRow};

pub const T0: i64 = 1_800_000_000_000;

/// `key` from the environment as a number, else `default`.
pub fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run `i`: id `r{i:06}`, created a minute after run `i - 1`, on DUT `stb-{i % 16}` of
/// `model` in rack-a, still running.
pub fn run(i: usize, pack: &str, model: &str) -> NewRun {
    NewRun {
        id: format!("r{i:06}"),
        pack_name: pack.into(),
        pack_version: "1.0.0".into(),
        content_hash: "h".into(),
        pack_dir: "/packs/x".into(),
        snapshot_dir: None,
        groups: vec!["smoke".into()],
        duts: vec![DutTarget {
            name: format!("stb-{:02}", i % 16),
            model: Some(model.into()),
            rack: Some("rack-a".into()),
            slot: Some((i % 16) as u32),
        }],
        ats: Some("rack-a".into()),
        params: serde_json::json!({"process_limit": 2}),
        resource_mode: "all".into(),
        coverage_mode: "dut".into(),
        status: RunStatus::Running,
        reason: None,
        created_ms: T0 + i as i64 * 60_000,
        est_run_time: 60.0,
    }
}

/// `n` test rows of group smoke on `lane`.
pub fn tasks(n: u32, lane: &str) -> Vec<NewTaskRow> {
    (0..n)
        .map(|seq| NewTaskRow {
            seq,
            lane: Some(lane.into()),
            task: format!("task{seq}"),
            kind: TaskKind::Test,
            group: Some("smoke".into()),
            description: String::new(),
            est_task_time: 3.0,
        })
        .collect()
}
