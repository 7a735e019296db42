//! The table `testbay run` prints when the run is over: every task occurrence lane by
//! lane with its sub-results, the counts, and why the run ended as it did.

use std::collections::HashMap;

use testbay_engine::api::{RunStatus, RunVerdict, RunView, TaskRecord, TaskState};
use testbay_engine::outcome::ABORTED;

use crate::term::{safe, width};

/// The stored tasks, each with the result the run gave it where the store does not have
/// that result (its write failed); such results are marked `(not stored)`.
pub fn with_live_results(mut tasks: Vec<TaskRecord>, view: Option<&RunView>) -> Vec<TaskRecord> {
    let Some(view) = view else { return tasks };
    let done: HashMap<i64, (&str, &str, bool)> = view
        .lanes
        .iter()
        .flat_map(|l| {
            l.setup
                .iter()
                .chain(&l.test)
                .chain(&l.teardown)
                .chain(&l.delay)
        })
        .chain(&view.shared)
        .filter_map(|t| match &t.state {
            TaskState::Done {
                result,
                message,
                failure,
                ..
            } => Some((t.task_id, (result.as_str(), message.as_str(), *failure))),
            _ => None,
        })
        .collect();
    for t in &mut tasks {
        let Some(&(result, message, failure)) = done.get(&t.id) else {
            continue;
        };
        if t.result.as_deref() != Some(result) {
            t.result = Some(result.to_string());
            t.failure = Some(failure);
            t.message = Some(format!("(not stored) {message}"));
        }
    }
    tasks
}

/// `850ms`, `12.3s`, `4m05s`, `2h03m`.
pub fn fmt_dur(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// The first line of `s`, escaped (`term::safe`), in at most `n` characters.
fn cut(s: &str, n: usize) -> String {
    let line = safe(s.lines().next().unwrap_or(""));
    if line.chars().count() <= n {
        line.into_owned()
    } else {
        format!("{}…", line.chars().take(n - 1).collect::<String>())
    }
}

pub fn print(
    run_id: &str,
    status: RunStatus,
    verdict: Option<RunVerdict>,
    reason: Option<&str>,
    tasks: &[TaskRecord],
) {
    // Lane by lane, each in plan order.
    let mut lanes: Vec<Option<&str>> = Vec::new();
    for t in tasks {
        if !lanes.contains(&t.lane.as_deref()) {
            lanes.push(t.lane.as_deref());
        }
    }
    let mut sorted: Vec<&TaskRecord> = tasks.iter().collect();
    sorted.sort_by_key(|t| lanes.iter().position(|l| *l == t.lane.as_deref()));
    let tasks = sorted;
    // Columns as printed: every cell escaped (`term::safe`), widths in characters.
    let lane_w = tasks
        .iter()
        .map(|t| width(t.lane.as_deref().unwrap_or("-")))
        .max()
        .unwrap_or(4)
        .max(4);
    let task_w = tasks
        .iter()
        .map(|t| width(&t.task))
        .max()
        .unwrap_or(4)
        .max(4);
    let group_w = tasks
        .iter()
        .map(|t| width(t.group.as_deref().unwrap_or("-")))
        .max()
        .unwrap_or(5)
        .max(5);
    out!(
        "{:<lane_w$}  {:<group_w$}  {:<task_w$}  {:<8}  {:<9}  {:>7}  MESSAGE",
        "LANE",
        "GROUP",
        "TASK",
        "KIND",
        "RESULT",
        "TIME"
    );
    let mut by_result: std::collections::BTreeMap<String, u32> = Default::default();
    let mut failures = 0;
    let mut aborted = 0;
    for t in &tasks {
        let result = t.result.as_deref().unwrap_or("-");
        *by_result.entry(result.to_string()).or_default() += 1;
        if result == ABORTED {
            aborted += 1;
        } else if t.failure == Some(true) {
            failures += 1;
        }
        let time = t
            .run_time
            .map(|s| fmt_dur((s * 1000.0) as i64))
            .unwrap_or_default();
        out!(
            "{:<lane_w$}  {:<group_w$}  {:<task_w$}  {:<8}  {:<9}  {:>7}  {}",
            safe(t.lane.as_deref().unwrap_or("-")),
            safe(t.group.as_deref().unwrap_or("-")),
            safe(&t.task),
            t.kind.as_str(),
            safe(result),
            time,
            if t.flaky {
                format!(
                    "flaky (attempt {}): {}",
                    t.attempts.len(),
                    cut(t.message.as_deref().unwrap_or(""), 40)
                )
            } else {
                cut(t.message.as_deref().unwrap_or(""), 60)
            }
        );
        for s in &t.sub_results {
            out!(
                "{:<w$}↳ {:<n$}  {:<9}  {:>7}  {}",
                "",
                safe(&s.name),
                safe(&s.result),
                "",
                cut(&s.message, 60),
                w = lane_w + group_w + 6,
                n = task_w + 8,
            );
        }
    }
    let counts: Vec<String> = by_result.iter().map(|(k, v)| format!("{v} {k}")).collect();
    out!();
    let verdict = verdict
        .map(|v| format!(", {}", v.as_str()))
        .unwrap_or_default();
    let aborted = if aborted > 0 {
        format!(", {aborted} aborted")
    } else {
        String::new()
    };
    out!(
        "run {run_id} {}{verdict}: {} task(s): {}; {} failure(s){aborted}",
        status.as_str(),
        tasks.len(),
        counts.join(", "),
        failures
    );
    if let (Some(r), true) = (reason, status != RunStatus::Completed) {
        out!("why: {r}");
    }
    out!("details: testbay results {run_id}");
}
