//! DUT health as the store keeps it: each DUT's health now, its count of consecutive
//! infrastructure failures and last health check, and its history (when, why, which run,
//! an operator's note).

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::Result;
use crate::clock::EpochMs;

/// A DUT's health (LAVA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum Health {
    /// No health check has passed or failed yet.
    #[default]
    Unknown,
    Good,
    /// A health check failed: launches on it are refused unless forced, until a passing
    /// check or an operator restores it.
    Bad,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Good => "good",
            Health::Bad => "bad",
        }
    }
    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "good" => Health::Good,
            "bad" => Health::Bad,
            _ => Health::Unknown,
        }
    }
}

/// One DUT's health now.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct DutHealth {
    pub dut: String,
    pub health: Health,
    /// Since when it has this health.
    pub since_ms: Option<EpochMs>,
    /// Why (the failing check, the operator's note).
    pub reason: Option<String>,
    /// The health run that decided it.
    pub run_id: Option<String>,
    /// Consecutive runs on the DUT with an infrastructure failure (a task `Errored` or
    /// `Timeout`, or the run could not start).
    pub infra_failures: u32,
    /// When its last health check started.
    pub last_check_ms: Option<EpochMs>,
}

/// One change of a DUT's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct HealthChange {
    pub ts_ms: EpochMs,
    pub health: Health,
    pub reason: String,
    pub run_id: Option<String>,
    /// An operator's note (a restore).
    pub note: Option<String>,
}

/// The health tables on a handle of their own (one connection).
pub trait HealthStore: Send {
    /// Every DUT with a stored health, by name.
    fn all_health(&self) -> Result<Vec<DutHealth>>;
    /// One DUT's health (`unknown` when nothing is stored).
    fn health(&self, dut: &str) -> Result<DutHealth>;
    /// Set a DUT's health and add the change to its history.
    fn set_health(&self, dut: &str, change: &HealthChange) -> Result<()>;
    /// A health check of the DUT started (run `run_id`): its time is the last check's,
    /// and its infrastructure failure count starts again.
    fn check_started(&self, dut: &str, now: EpochMs) -> Result<()>;
    /// A run on the DUT ended: with an infrastructure failure the count goes up, else it
    /// starts again; the count now.
    fn count_run(&self, dut: &str, infra_failure: bool) -> Result<u32>;
    /// The DUT's health history, newest first, at most `limit`.
    fn health_history(&self, dut: &str, limit: u32) -> Result<Vec<HealthChange>>;
    /// Run `run_id` (queued or started) is a health check of `dut`.
    fn health_run_add(&self, run_id: &str, dut: &str, now: EpochMs) -> Result<()>;
    /// Health run `run_id` was settled (or forgotten).
    fn health_run_remove(&self, run_id: &str) -> Result<()>;
    /// Health runs not settled yet: (run id, DUT), oldest first.
    fn health_runs(&self) -> Result<Vec<(String, String)>>;
}
