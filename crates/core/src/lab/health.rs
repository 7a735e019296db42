//! Device health checks (LAVA): which health pack and group checks a DUT, how often, and
//! after how many consecutive infrastructure failures it runs early; when one is due.
//! Pure: the engine keeps each DUT's health and counts, and launches the checks.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::clock::EpochMs;

/// `health_checks:` entry of the lab file: for one DUT (`dut`) or every DUT of a model
/// (`model`), exactly one of the two. A DUT's own entry wins over its model's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(deny_unknown_fields)]
#[ts(export)]
pub struct HealthCheck {
    /// The DUT this check is for.
    #[serde(default)]
    pub dut: Option<String>,
    /// The DUT model this check is for: every DUT of that model.
    #[serde(default)]
    pub model: Option<String>,
    /// The health pack, by name.
    pub pack: String,
    /// The pack's group to run; none runs every group.
    #[serde(default)]
    pub group: Option<String>,
    /// Seconds between two checks of a DUT: 60 to 30 days.
    #[schemars(range(
        min = "crate::bounds::MIN_HEALTH_INTERVAL_S",
        max = "crate::bounds::MAX_HEALTH_INTERVAL_S"
    ))]
    pub interval: u32,
    /// After this many consecutive infrastructure failures of runs on the DUT (a task
    /// `Errored` or `Timeout`, or the run could not start) the check runs at once: 1 to
    /// 1,000; none waits for the interval.
    #[serde(default)]
    #[schemars(range(min = 1, max = "crate::bounds::MAX_HEALTH_FAILURES"))]
    pub after_failures: Option<u32>,
}

/// Why a health check is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum HealthDue {
    /// Never checked, or the interval has passed since the last check.
    Interval,
    /// `after_failures` consecutive infrastructure failures.
    Failures,
}

impl HealthDue {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthDue::Interval => "interval",
            HealthDue::Failures => "infrastructure failures",
        }
    }
}

/// Whether `check` is due for a DUT last checked at `last_check` (started), with
/// `infra_failures` consecutive infrastructure failures since, at `now`.
pub fn due(
    check: &HealthCheck,
    last_check: Option<EpochMs>,
    infra_failures: u32,
    now: EpochMs,
) -> Option<HealthDue> {
    if check
        .after_failures
        .is_some_and(|n| n > 0 && infra_failures >= n)
    {
        return Some(HealthDue::Failures);
    }
    match last_check {
        None => Some(HealthDue::Interval),
        Some(t) if now.saturating_sub(t) >= i64::from(check.interval) * 1000 => {
            Some(HealthDue::Interval)
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: EpochMs = 1_800_000_000_000;

    fn check(after: Option<u32>) -> HealthCheck {
        HealthCheck {
            dut: None,
            model: Some("TP-4000".into()),
            pack: "health".into(),
            group: None,
            interval: 3600,
            after_failures: after,
        }
    }

    #[test]
    fn due_when_never_checked_after_the_interval_or_after_failures() {
        let c = check(Some(3));
        assert_eq!(due(&c, None, 0, T0), Some(HealthDue::Interval));
        assert_eq!(due(&c, Some(T0), 0, T0 + 3_599_999), None);
        assert_eq!(
            due(&c, Some(T0), 0, T0 + 3_600_000),
            Some(HealthDue::Interval)
        );
        assert_eq!(due(&c, Some(T0), 2, T0 + 1), None);
        assert_eq!(due(&c, Some(T0), 3, T0 + 1), Some(HealthDue::Failures));
        assert_eq!(
            due(&check(None), Some(T0), 1000, T0 + 1),
            None,
            "no after_failures"
        );
    }
}
