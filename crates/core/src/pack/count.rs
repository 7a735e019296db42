//! How many task occurrences a launch of a pack expands to, against the run's bound
//! ([`crate::bounds::MAX_RUN_TASKS`]).

use serde_json::{Map, Value};

use super::{CoverageMode, GroupDef, LoadedPack};
use crate::bounds::{BoundError, MAX_RUN_TASKS};

/// How many task occurrences a launch of `groups` (empty: every group) of `pack` on
/// `duts` DUTs expands to: per lane (one per DUT, at least one) the global and group
/// setups and teardowns and, except in `split` coverage, the tests; in `split` coverage
/// each test once. Unknown groups count nothing (the launch reports them). The coverage
/// mode is `coverage`, else the `coverage_mode` override in `params`, else the pack's.
pub fn task_count(
    pack: &LoadedPack,
    groups: &[String],
    duts: usize,
    params: &Map<String, Value>,
    coverage: Option<CoverageMode>,
) -> usize {
    let coverage = coverage
        .or_else(|| {
            params
                .get("coverage_mode")
                .and_then(|v| serde_json::from_value(v.clone()).ok())
        })
        .unwrap_or(pack.def.params.coverage_mode);
    let chosen: Vec<&GroupDef> = if groups.is_empty() {
        pack.def.groups.values().collect()
    } else {
        groups
            .iter()
            .filter_map(|g| pack.def.groups.get(g))
            .collect()
    };
    let mut per_lane = pack.def.setup.len().saturating_add(pack.def.teardown.len());
    let mut shared = 0usize;
    for g in chosen {
        per_lane = per_lane
            .saturating_add(g.setup.len())
            .saturating_add(g.teardown.len());
        if coverage == CoverageMode::Split {
            shared = shared.saturating_add(g.tests.len());
        } else {
            per_lane = per_lane.saturating_add(g.tests.len());
        }
    }
    per_lane.saturating_mul(duts.max(1)).saturating_add(shared)
}

/// [`task_count`] against [`MAX_RUN_TASKS`].
pub fn check_task_count(
    pack: &LoadedPack,
    groups: &[String],
    duts: usize,
    params: &Map<String, Value>,
    coverage: Option<CoverageMode>,
) -> Result<(), BoundError> {
    let n = task_count(pack, groups, duts, params, coverage);
    if n > MAX_RUN_TASKS {
        return Err(BoundError::size(
            "tasks",
            format!(
                "this launch of pack {} expands to {n} task occurrences ({} group(s) on {} lane(s)); a run holds at most {MAX_RUN_TASKS}",
                pack.def.name,
                if groups.is_empty() { pack.def.groups.len() } else { groups.len() },
                duts.max(1),
            ),
        ));
    }
    Ok(())
}
