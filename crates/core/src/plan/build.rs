//! A launch into a plan: the stage list every lane shares (global setup, each chosen
//! group's setup, tests and teardown, global teardown), a group's tests in priority order
//! (stable: equal priorities keep the group's order) or in the order the pack's
//! `scheduler` chose, one item per task occurrence and lane (one shared item per test in
//! `split` coverage). Refused before anything runs: an unknown group or task, a DUT named
//! twice, required run parameters (`req_param_keys`) missing.

use std::collections::{HashMap, HashSet};

use super::{
    ItemId, ItemState, LaneState, Plan, PlanError, PlanInput, PlanItem, Stage, LOCAL_LANE,
};
use crate::model::TaskKind;
use crate::pack::CoverageMode;

impl Plan {
    pub fn build(input: PlanInput<'_>) -> Result<Plan, PlanError> {
        let pack = input.pack;
        let params = input.params;
        let group_names: Vec<String> = if input.groups.is_empty() {
            pack.def.groups.keys().cloned().collect()
        } else {
            input.groups.clone()
        };
        for g in &group_names {
            if !pack.def.groups.contains_key(g) {
                return Err(PlanError::UnknownGroup {
                    group: g.clone(),
                    pack: pack.def.name.clone(),
                    known: pack
                        .def
                        .groups
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        let mut seen = HashSet::new();
        for d in &input.duts {
            if !seen.insert(d.name.clone()) {
                return Err(PlanError::DuplicateDut(d.name.clone()));
            }
        }
        let lanes: Vec<LaneState> = if input.duts.is_empty() {
            vec![LaneState::new(None, LOCAL_LANE.into())]
        } else {
            input
                .duts
                .iter()
                .map(|d| LaneState::new(Some(d.clone()), d.name.clone()))
                .collect()
        };

        // Stage list, shared by all lanes.
        let mut stages = vec![Stage {
            kind: TaskKind::Setup,
            group: None,
        }];
        let mut stage_tasks: Vec<Vec<String>> = vec![pack.def.setup.clone()];
        for (gi, g) in group_names.iter().enumerate() {
            let gd = &pack.def.groups[g];
            stages.push(Stage {
                kind: TaskKind::Setup,
                group: Some(gi),
            });
            stage_tasks.push(gd.setup.clone());
            stages.push(Stage {
                kind: TaskKind::Test,
                group: Some(gi),
            });
            let mut tests = gd.tests.clone();
            // Stable: equal priorities keep the group's order.
            tests.sort_by_key(|t| pack.tasks.get(t).map(|lt| lt.def.priority).unwrap_or(0));
            if let Some(order) = input.test_order.as_ref().and_then(|o| o.get(g)) {
                let mut rest = tests;
                tests = Vec::with_capacity(rest.len());
                for t in order {
                    if let Some(i) = rest.iter().position(|r| r == t) {
                        tests.push(rest.remove(i));
                    }
                }
                tests.extend(rest);
            }
            stage_tasks.push(tests);
            stages.push(Stage {
                kind: TaskKind::Teardown,
                group: Some(gi),
            });
            stage_tasks.push(gd.teardown.clone());
        }
        stages.push(Stage {
            kind: TaskKind::Teardown,
            group: None,
        });
        stage_tasks.push(pack.def.teardown.clone());

        // Every task must exist, and its required keys must be present.
        let mut missing: Vec<(String, Vec<String>)> = Vec::new();
        let mut checked = HashSet::new();
        let mut defs: Vec<&crate::pack::TaskDef> = Vec::new();
        for (si, tasks) in stage_tasks.iter().enumerate() {
            for t in tasks {
                let Some(lt) = pack.tasks.get(t) else {
                    let place = match stages[si].group {
                        Some(g) => format!("group {} {}", group_names[g], stages[si].kind.as_str()),
                        None => format!("global {}", stages[si].kind.as_str()),
                    };
                    return Err(PlanError::UnknownTask {
                        task: t.clone(),
                        place,
                    });
                };
                if checked.insert(t.clone()) {
                    defs.push(&lt.def);
                }
            }
        }
        // What tasks get as `global_params`, plus the run's targets.
        let mut given = crate::params::global_params_json(&params);
        if let Some(ats) = &input.ats {
            given.insert("ats".into(), ats.as_str().into());
        }
        if let Some(d) = input.duts.first() {
            given.insert("dut".into(), d.name.as_str().into());
        }
        for m in crate::params::missing_param_keys(&given, defs) {
            match missing.iter_mut().find(|(t, _)| *t == m.task) {
                Some((_, keys)) => keys.push(m.key),
                None => missing.push((m.task, vec![m.key])),
            }
        }
        if !missing.is_empty() {
            return Err(PlanError::MissingParamKeys(missing));
        }

        let split = params.coverage_mode == CoverageMode::Split;
        let mut items: Vec<PlanItem> = Vec::new();
        let mut stage_items: Vec<Vec<Vec<ItemId>>> =
            vec![vec![Vec::new(); lanes.len()]; stages.len()];
        for (si, tasks) in stage_tasks.iter().enumerate() {
            let shared = split && stages[si].kind == TaskKind::Test;
            let lane_list: Vec<Option<usize>> = if shared {
                vec![None]
            } else {
                (0..lanes.len()).map(Some).collect()
            };
            for lane in lane_list {
                for t in tasks {
                    let id = items.len();
                    items.push(PlanItem {
                        id,
                        task: t.clone(),
                        kind: stages[si].kind,
                        group: stages[si].group.map(|g| group_names[g].clone()),
                        lane,
                        def: pack.tasks[t].def.clone(),
                        stage: si,
                    });
                    match lane {
                        Some(l) => stage_items[si][l].push(id),
                        None => {
                            for per_lane in stage_items[si].iter_mut() {
                                per_lane.push(id);
                            }
                        }
                    }
                }
            }
        }
        // Lane-major order for fixed items keeps a lane's tasks together in listings; ids
        // are what the store uses as `seq`, so renumbering is not needed.
        let states = vec![ItemState::Pending; items.len()];
        let done_prefix = vec![vec![0; lanes.len()]; stages.len()];
        let mut plan = Plan {
            items,
            states,
            stages,
            stage_items,
            done_prefix,
            groups: group_names,
            lanes,
            params,
            ats: input.ats,
            settled: Vec::new(),
            run_counts: HashMap::new(),
            delay_mem: HashMap::new(),
            by_task: HashMap::new(),
        };
        for it in &plan.items {
            plan.by_task.entry(it.task.clone()).or_default().push(it.id);
        }
        plan.skip_invalid_targets();
        Ok(plan)
    }
}
