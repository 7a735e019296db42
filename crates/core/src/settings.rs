//! The console's settings file, `<data_dir>/settings.yaml`: how the console itself
//! behaves (not the lab, not a pack). Every key is optional; a missing file is the
//! defaults. Problems name the file, line and key ([`crate::diag::Diagnostic`]).
//!
//! ```yaml
//! dispatch_cpu_threshold: 80   # percent; no queued run starts while the host is busier
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
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            dispatch_cpu_threshold: 80.0,
        }
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
