//! The console's settings file, `<data_dir>/settings.yaml`: how the console itself
//! behaves (not the lab, not a pack). Every key is optional; a missing file is the
//! defaults. Problems name the file, line and key ([`crate::diag::Diagnostic`]).
//!
//! ```yaml
//! dispatch_cpu_threshold: 80   # percent; no queued run starts while the host is busier
//! retention:                    # what `testbay results prune` removes (none: nothing)
//!   days: 90                    # runs created more than 90 days ago
//!   runs_per_pack: 500          # runs of a pack beyond its newest 500
//! agent_heartbeat_ms: 5000      # rack agents heartbeat this often
//! agent_grace_s: 60             # a silent agent's runs are interrupted after this
//! agent_cpu_threshold_pct: 90   # an agent reporting more CPU use is passed over for 30 s
//! ```

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::diag::Diagnostic;
use crate::doc;

/// The settings file's name in the data directory.
pub const SETTINGS_FILE: &str = "settings.yaml";

/// What `settings.yaml` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Host CPU use, in percent, above which no run is started (StormTest's dispatch
    /// threshold): a run that would start waits in the queue and is tried again 30 s
    /// later. 100 never holds a run back.
    #[schemars(range(min = 1, max = 100))]
    pub dispatch_cpu_threshold: f64,
    /// Which stored runs pruning removes; nothing without a limit.
    pub retention: RetentionPolicy,
    /// How often rack agents heartbeat, in milliseconds; an agent not heard from for one
    /// and a half of these stalls its runs.
    #[schemars(range(
        min = "crate::bounds::MIN_AGENT_HEARTBEAT_MS",
        max = "crate::bounds::MAX_AGENT_HEARTBEAT_MS"
    ))]
    pub agent_heartbeat_ms: u64,
    /// How long, in seconds, a silent agent's runs stay stalled before its unfinished
    /// tasks are Aborted and its runs end `interrupted`.
    #[schemars(range(
        min = "crate::bounds::MIN_AGENT_GRACE_S",
        max = "crate::bounds::MAX_AGENT_GRACE_S"
    ))]
    pub agent_grace_s: u64,
    /// Host CPU use, in percent, above which a rack agent (its heartbeat says) is passed
    /// over for 30 s (StormTest 6.2): a run that would go to it waits in the queue, and
    /// starts once the agent reports less or the 30 s are over. 100 never passes one over.
    #[schemars(range(
        min = "crate::bounds::MIN_AGENT_CPU_THRESHOLD_PCT",
        max = "crate::bounds::MAX_AGENT_CPU_THRESHOLD_PCT"
    ))]
    pub agent_cpu_threshold_pct: u32,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            dispatch_cpu_threshold: 80.0,
            retention: RetentionPolicy::default(),
            agent_heartbeat_ms: 5_000,
            agent_grace_s: 60,
            agent_cpu_threshold_pct: 90,
        }
    }
}

/// Which stored runs pruning removes: a run breaking any limit given (older than `days`,
/// or beyond its pack's newest `runs_per_pack`) goes, with its logs and artifacts, unless
/// it is pinned as a baseline, marked keep, or not finished (queued, running, stalled).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema, ts_rs::TS)]
#[serde(deny_unknown_fields, default)]
#[ts(export)]
pub struct RetentionPolicy {
    /// Keep runs created within this many days.
    #[schemars(range(min = 1, max = 36500))]
    pub days: Option<u32>,
    /// Keep the newest this many runs of each pack.
    #[schemars(range(min = 1, max = 1000000))]
    pub runs_per_pack: Option<u32>,
}

impl RetentionPolicy {
    /// Whether the policy removes anything at all.
    pub fn is_set(&self) -> bool {
        self.days.is_some() || self.runs_per_pack.is_some()
    }
}

/// Load `<data_dir>/settings.yaml`; the defaults when there is none.
pub fn load(data_dir: &Path) -> Result<ConsoleSettings, Vec<Diagnostic>> {
    let path = data_dir.join(SETTINGS_FILE);
    if !path.exists() {
        return Ok(ConsoleSettings::default());
    }
    doc::load_document::<ConsoleSettings>(&path).map(|d| d.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_problems_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap().dispatch_cpu_threshold, 80.0);
        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            "dispatch_cpu_threshold: 50\n",
        )
        .unwrap();
        assert_eq!(load(dir.path()).unwrap().dispatch_cpu_threshold, 50.0);
        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            "\ndispatch_cpu_threshold: 150\n",
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err();
        assert_eq!(e[0].line, Some(2), "{e:?}");
        assert!(
            e[0].to_string().contains("dispatch_cpu_threshold"),
            "{}",
            e[0]
        );
        std::fs::write(
            dir.path().join(SETTINGS_FILE),
            "dispatch_cpu_treshold: 50\n",
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(
            e[0].to_string().contains("dispatch_cpu_threshold"),
            "did you mean: {}",
            e[0]
        );
    }
}
