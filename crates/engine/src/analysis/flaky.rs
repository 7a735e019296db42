//! Flaky tasks: a task is flaky on a DUT model when its verdict flipped between pass and
//! failure within its last N runs there (N = [`DEFAULT_WINDOW`] unless asked), or when it
//! passed there only on a retry (`max_retries`: its stored result is marked `flaky`).
//! The flip rate is flips / (verdicts - 1); the retry rate is the share of the window's
//! verdicts that were passes on a retry; the score is the higher of the two. A task that
//! always passes at the first attempt or always fails there is not flaky. One run's verdict for a task on a model is a
//! failure when any of its occurrences there failed; occurrences that did not really run
//! (`Skipped`, `Blocked`, `Aborted`) are left out.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::clock::EpochMs;
use crate::outcome::{ABORTED, BLOCKED, SKIPPED};
use crate::store::{Result, Store, TaskHistoryEntry};

/// Runs per task and DUT model looked at unless asked otherwise.
pub const DEFAULT_WINDOW: u32 = 10;
/// The most runs per task and DUT model a query may look at.
pub const MAX_WINDOW: u32 = 100;
/// Of a pack's newest runs, at most how many are looked at per window run: a model run
/// rarely among others gets its window from that many.
const RUNS_PER_WINDOW_RUN: u32 = 5;

/// Which packs, and how many runs per task and DUT model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, TS)]
#[serde(default)]
#[ts(export)]
pub struct FlakyQuery {
    /// One pack; none: every pack with stored runs.
    pub pack: Option<String>,
    /// Runs per task and DUT model: 0 means 10; 2 to 100.
    pub window: u32,
}

impl FlakyQuery {
    pub fn window(&self) -> u32 {
        if self.window == 0 {
            DEFAULT_WINDOW
        } else {
            self.window.clamp(2, MAX_WINDOW)
        }
    }
}

/// One run's verdict of a task on a DUT model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct FlipPoint {
    pub run_id: String,
    pub run_created_ms: EpochMs,
    /// The result shown (the first failing one when several occurrences ran).
    pub result: String,
    pub failure: bool,
    /// It passed only on a retry.
    pub retried: bool,
}

/// A task that flipped on a DUT model within its window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct FlakyTask {
    pub pack: String,
    pub task: String,
    pub dut_model: Option<String>,
    pub flips: u32,
    /// flips / (runs looked at - 1), 0 to 1.
    pub flip_rate: f64,
    /// Runs looked at whose verdict was a pass on a retry.
    pub retried_passes: u32,
    /// The higher of the flip rate and retried passes / runs looked at, 0 to 1.
    pub score: f64,
    /// The runs looked at, oldest first.
    pub runs: Vec<FlipPoint>,
}

/// Flips of a verdict sequence (oldest first) and the flip rate; `None` for fewer than
/// two verdicts.
pub fn flips(failures: &[bool]) -> Option<(u32, f64)> {
    if failures.len() < 2 {
        return None;
    }
    let n = failures.windows(2).filter(|w| w[0] != w[1]).count() as u32;
    Some((n, n as f64 / (failures.len() - 1) as f64))
}

type Series = BTreeMap<(String, Option<String>), Vec<FlipPoint>>;

/// A pack's recent results (oldest run first) as verdicts per task and DUT model, one per
/// run.
fn series(rows: &[TaskHistoryEntry]) -> Series {
    let mut series = Series::new();
    for r in rows {
        let (Some(result), Some(failure)) = (&r.result, r.failure) else {
            continue;
        };
        if [SKIPPED, BLOCKED, ABORTED].contains(&result.as_str()) {
            continue;
        }
        let points = series
            .entry((r.task.clone(), r.dut_model.clone()))
            .or_default();
        let retried = r.flaky && !failure;
        match points.last_mut() {
            Some(p) if p.run_id == r.run_id => {
                if failure && !p.failure {
                    p.failure = true;
                    p.result = result.clone();
                }
                p.retried = (p.retried || retried) && !p.failure;
            }
            _ => points.push(FlipPoint {
                run_id: r.run_id.clone(),
                run_created_ms: r.run_created_ms,
                result: result.clone(),
                failure,
                retried,
            }),
        }
    }
    series
}

/// Fold a pack's recent results (oldest run first) into its flaky tasks.
pub fn fold(pack: &str, rows: &[TaskHistoryEntry], window: u32) -> Vec<FlakyTask> {
    let mut out = Vec::new();
    for ((task, dut_model), mut points) in series(rows) {
        let keep = points.len().saturating_sub(window as usize);
        points.drain(..keep);
        let verdicts: Vec<bool> = points.iter().map(|p| p.failure).collect();
        let (n, rate) = flips(&verdicts).unwrap_or((0, 0.0));
        let retried = points.iter().filter(|p| p.retried).count() as u32;
        if n == 0 && retried == 0 {
            continue;
        }
        let retry_rate = retried as f64 / points.len() as f64;
        out.push(FlakyTask {
            pack: pack.to_string(),
            task,
            dut_model,
            flips: n,
            flip_rate: rate,
            retried_passes: retried,
            score: rate.max(retry_rate),
            runs: points,
        });
    }
    out
}

/// Flaky tasks of the asked packs, highest score first.
pub fn flaky_tasks(store: &dyn Store, q: &FlakyQuery) -> Result<Vec<FlakyTask>> {
    let window = q.window();
    let packs = match &q.pack {
        Some(p) => vec![p.clone()],
        None => store.run_packs()?,
    };
    let mut out = Vec::new();
    for pack in packs {
        let rows = store.recent_results(&pack, window, window * RUNS_PER_WINDOW_RUN)?;
        out.extend(fold(&pack, &rows, window));
    }
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(b.flips.cmp(&a.flips))
            .then(b.retried_passes.cmp(&a.retried_passes))
            .then_with(|| (&a.pack, &a.task, &a.dut_model).cmp(&(&b.pack, &b.task, &b.dut_model)))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::flips;

    #[test]
    fn flip_edges() {
        assert_eq!(flips(&[]), None);
        assert_eq!(flips(&[true]), None);
        assert_eq!(flips(&[true, true, true]), Some((0, 0.0)));
        assert_eq!(flips(&[false, true]), Some((1, 1.0)));
        assert_eq!(flips(&[false, true, false, false, false]), Some((2, 0.5)));
    }
}
