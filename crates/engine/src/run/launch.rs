//! Starting a run: the pack snapshot loaded, parameters and plan settled, the run and
//! its task rows stored, the broker's `begin_run`, then the driver spawned. What fails
//! before any task starts is stored as a `could_not_start` run.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::watch;

use super::driver::Driver;
use super::item::RunCtx;
use super::placement::LaneRunners;
use super::runner::{LocalRunner, PhaseRunner};
use super::snapshot::snapshot_pack;
use super::view::estimate_total;
use super::{
    events, order, prepare, LaunchRequest, LiveHandle, LiveRun, RunError, RunEvent, RunManager,
    TaskNeeds,
};
use crate::clock::EpochMs;
use crate::model::StopLevel;
use crate::outcome::{RunStatus, RunVerdict};
use crate::pack::{self, LoadedPack, ResourceMode};
use crate::plan::{ItemState, Plan, PlanInput};
use crate::store::{NewRun, NewTaskRow};

impl RunManager {
    /// Start a run. Returns its id once it is stored and its driver started. Problems found
    /// before any task starts (unknown group, missing `req_param_keys`, bad parameter)
    /// store the run as `could_not_start` and return [`RunError::CouldNotStart`].
    /// Must be called within a tokio runtime.
    pub fn launch(&self, req: LaunchRequest) -> Result<String, RunError> {
        let run_id = new_run_id(self.inner.clock.now_ms());
        self.launch_as(req, run_id)
    }

    /// [`RunManager::launch`] under an id given beforehand (a run that waited in the run
    /// queue keeps the id it was queued under).
    pub fn launch_as(&self, req: LaunchRequest, run_id: String) -> Result<String, RunError> {
        let inner = &self.inner;
        let now = inner.clock.now_ms();
        let run_dir = self.run_dir(&run_id);
        let snapshot = run_dir.join("pack");
        let src = PathBuf::from(&req.pack_dir);
        // Copy first, then load the copy: what is checked is exactly what runs. A broken
        // pack is reported against its own files and leaves no run folder behind.
        let hash = match snapshot_pack(&src, &snapshot) {
            Ok(h) => h,
            Err(source) => {
                let _ = std::fs::remove_dir_all(&run_dir);
                if !src.is_dir() {
                    // Not a pack folder at all: let the loader say so, naming the path given.
                    pack::load(&src)?;
                }
                return Err(RunError::Snapshot {
                    dir: src.clone(),
                    to: snapshot.clone(),
                    source,
                });
            }
        };
        let loaded = match pack::load_with_hash(&snapshot, Some(hash)) {
            Ok(p) => p,
            Err(mut e) => {
                let _ = std::fs::remove_dir_all(&run_dir);
                let root = src.canonicalize().unwrap_or_else(|_| src.clone());
                e.dir = src.clone();
                for d in &mut e.diagnostics {
                    if let Ok(rel) = d.file.strip_prefix(&snapshot) {
                        d.file = root.join(rel);
                    }
                }
                return Err(e.into());
            }
        };
        let mut overrides = req.params.clone();
        if let Some(m) = req.resource_mode {
            overrides.insert(
                "resource_mode".into(),
                serde_json::to_value(m).expect("enum"),
            );
        }
        if let Some(m) = req.coverage_mode {
            overrides.insert(
                "coverage_mode".into(),
                serde_json::to_value(m).expect("enum"),
            );
        }
        let params = crate::params::effective_params(&loaded.def.params, &overrides);
        let narrowed = req.tests.as_deref().map(|only| only_tests(&loaded, only));
        let plan_pack = narrowed.as_ref().unwrap_or(&loaded);
        let plan = params.map_err(param_errors).and_then(|params| {
            let test_order = custom_test_order(plan_pack, &req.groups, params.resource_mode)?;
            Plan::build(PlanInput {
                pack: plan_pack,
                groups: req.groups.clone(),
                duts: req.duts.clone(),
                ats: req.ats.clone(),
                params,
                test_order,
            })
            .map_err(|e| e.to_string())
        });
        let params_json = match &plan {
            Ok(p) => serde_json::to_value(p.params()).unwrap_or(Value::Null),
            Err(_) => {
                let mut m = serde_json::to_value(&loaded.def.params)
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default();
                m.extend(overrides.clone());
                Value::Object(m)
            }
        };
        let mut new_run = NewRun {
            id: run_id.clone(),
            pack_name: loaded.def.name.clone(),
            pack_version: loaded.def.version.clone(),
            content_hash: loaded.content_hash.clone(),
            pack_dir: src
                .canonicalize()
                .unwrap_or(src.clone())
                .display()
                .to_string(),
            snapshot_dir: Some(snapshot.display().to_string()),
            groups: req.groups.clone(),
            duts: req.duts.clone(),
            ats: req.ats.clone(),
            params: params_json.clone(),
            resource_mode: mode_str(params_json.get("resource_mode")),
            coverage_mode: mode_str(params_json.get("coverage_mode")),
            status: RunStatus::Queued,
            reason: None,
            created_ms: now,
            est_run_time: 0.0,
        };
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                return Err(self.could_not_start(new_run, &e));
            }
        };
        if new_run.groups.is_empty() {
            new_run.groups = plan.groups().to_vec();
        }
        new_run.est_run_time = estimate_total(&plan);
        let rows: Vec<NewTaskRow> = plan
            .items()
            .iter()
            .map(|it| NewTaskRow {
                seq: it.id as u32,
                lane: it.lane.map(|l| plan.lane_name(l).to_string()),
                task: it.task.clone(),
                kind: it.kind,
                group: it.group.clone(),
                description: it.def.description.clone(),
                est_task_time: it.def.est_task_time,
            })
            .collect();
        // Resource mode `all` and friends reserve up front.
        let needs: Vec<TaskNeeds<'_>> = plan
            .items()
            .iter()
            .filter(|it| !matches!(plan.state(it.id), ItemState::Done { .. }))
            .map(|it| {
                let lane = it.lane.unwrap_or(0);
                TaskNeeds::from_def(
                    &run_id,
                    it.id,
                    &it.def,
                    plan.lane_name(lane),
                    plan.lane_dut(lane),
                    plan.ats(),
                    now,
                )
            })
            .collect();
        // A lane on a rack run by an agent runs there; none live for it: the run cannot
        // start.
        let runners = match self.runners_for(&plan, &run_id, &loaded, &run_dir) {
            Ok(r) => r,
            Err(reason) => {
                drop(needs);
                return Err(self.could_not_start(new_run, &reason));
            }
        };
        let begin = inner
            .broker
            .begin_run(&run_id, plan.params().resource_mode, &needs);
        drop(needs);
        if let Err(reason) = begin {
            return Err(self.could_not_start(new_run, &format!("resources: {reason}")));
        }
        let task_ids = match inner.store.insert_run(&new_run, &rows) {
            Ok(ids) => ids,
            Err(e) => {
                inner.broker.end_run(&run_id);
                return Err(e.into());
            }
        };

        let n = plan.items().len();
        let seq = events::Seq::default();
        let state = Arc::new(Mutex::new(LiveRun {
            run_id: run_id.clone(),
            pack_name: loaded.def.name.clone(),
            pack_version: loaded.def.version.clone(),
            status: RunStatus::Queued,
            reason: None,
            started_ms: now,
            ended_ms: None,
            plan,
            task_ids,
            started: vec![None; n],
            finished: vec![None; n],
            phase: vec![None; n],
            operator: vec![None; n],
            sections: HashMap::new(),
            flaky: vec![false; n],
            storage: Default::default(),
            seq: seq.clone(),
        }));
        let (stop_tx, stop_rx) = watch::channel(None::<StopLevel>);
        let (fin_tx, fin_rx) = watch::channel(None);
        let mut live = inner.live.lock().unwrap_or_else(|p| p.into_inner());
        live.insert(
            run_id.clone(),
            LiveHandle {
                state: state.clone(),
                items: n,
                stop: stop_tx,
                finished: fin_rx,
            },
        );
        drop(live);
        let reporter = match crate::exec::reporter::Reporter::start(
            &run_dir,
            &run_id,
            inner.clock.clone(),
            inner.prompts.clone(),
        ) {
            Ok(r) => Some(Arc::new(r)),
            Err(e) => {
                tracing::warn!(run_id = %run_id, error = %e, "cannot serve the run's reporter socket; its tasks run without TESTBAY_REPORTER");
                None
            }
        };
        let ctx = Arc::new(RunCtx {
            run_id: run_id.clone(),
            run_dir,
            store: inner.store.clone(),
            clock: inner.clock.clone(),
            events: inner.events.clone(),
            seq,
            params: state.lock().expect("fresh").plan.params().clone(),
            params_json,
            ats: req.ats.clone(),
            limits: inner.limits.clone(),
            stop: stop_rx.clone(),
            live: state.clone(),
            reporter,
            runners,
            prompts: inner.prompts.clone(),
            pack_dir: loaded.dir.clone(),
            snapshot_hash: loaded.content_hash.clone(),
        });
        let driver = Driver {
            inner: inner.clone(),
            ctx,
            state,
            pack: loaded,
            stop: stop_rx,
            dir_names: HashMap::new(),
            prep: prepare::Preparer::start(),
            occurrences: HashMap::new(),
            lost: None,
        };
        let manager = inner.clone();
        tokio::spawn(async move {
            let status = driver.drive().await;
            let _ = fin_tx.send(Some(status));
            manager.forget_finished();
        });
        Ok(run_id)
    }

    /// Where each lane's phases go: the agent of its DUT's rack (of the run's ATS for a
    /// lane without a DUT) when that rack has one ([`super::AgentDirectory`]), else this
    /// process. One runner per rack: its lanes share it.
    fn runners_for(
        &self,
        plan: &Plan,
        run_id: &str,
        loaded: &LoadedPack,
        run_dir: &std::path::Path,
    ) -> Result<LaneRunners, String> {
        let inner = &self.inner;
        let local: Arc<dyn PhaseRunner> = Arc::new(LocalRunner {
            run_dir: run_dir.to_path_buf(),
            pack_dir: loaded.dir.clone(),
            limits: inner.limits.clone(),
            clock: inner.clock.clone(),
        });
        let Some(agents) = inner.agents.get() else {
            return Ok(LaneRunners::single(local));
        };
        let mut by_rack: BTreeMap<&str, Option<Arc<dyn PhaseRunner>>> = BTreeMap::new();
        let mut by_lane = HashMap::new();
        for lane in 0..plan.lane_count() {
            let rack = plan
                .lane_dut(lane)
                .and_then(|d| d.rack.as_deref())
                .or(plan.ats());
            let Some(rack) = rack else { continue };
            let runner = match by_rack.get(rack) {
                Some(r) => r.clone(),
                None => {
                    let r = agents.runner_for(rack, run_id, &loaded.content_hash, &loaded.dir)?;
                    by_rack.insert(rack, r.clone());
                    r
                }
            };
            if let Some(r) = runner {
                by_lane.insert(plan.lane_name(lane).to_string(), r);
            }
        }
        Ok(LaneRunners::new(local, by_lane))
    }

    fn could_not_start(&self, mut run: NewRun, reason: &str) -> RunError {
        let inner = &self.inner;
        run.status = RunStatus::CouldNotStart;
        run.reason = Some(reason.to_string());
        let id = run.id.clone();
        if let Err(e) = inner.store.insert_run(&run, &[]) {
            return RunError::Store(e);
        }
        let now = inner.clock.now_ms();
        let _ = inner
            .store
            .set_run_status(&id, RunStatus::CouldNotStart, Some(reason), now);
        inner.events.send(RunEvent::RunStatus {
            run_id: id.clone(),
            // Its first and only event.
            seq: 1,
            status: RunStatus::CouldNotStart,
            reason: Some(reason.into()),
            verdict: RunVerdict::of(RunStatus::CouldNotStart, 0, 0),
            ts: now,
        });
        tracing::warn!(run_id = %id, reason, "run could not start");
        RunError::CouldNotStart {
            run_id: id,
            reason: reason.into(),
        }
    }
}

/// Every problem of the launch parameters in one line, each naming its key.
fn param_errors(errors: Vec<crate::params::ParamError>) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn mode_str(v: Option<&Value>) -> String {
    v.and_then(|v| v.as_str()).unwrap_or("").to_string()
}

/// How long the pack's `scheduler` may take to order the queue.
pub const SCHEDULER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// In the `custom_*` resource modes, the test order per group the pack's `scheduler`
/// program chose (see [`order`]); `None` in the other modes, and when a
/// group is unknown (the plan then says so).
/// The pack as a plan of only `tests` sees it: every group's tests narrowed to them (the
/// snapshot on disk, and its content hash, stay the whole pack).
fn only_tests(pack: &LoadedPack, tests: &[String]) -> LoadedPack {
    let mut p = pack.clone();
    for g in p.def.groups.values_mut() {
        g.tests.retain(|t| tests.contains(t));
    }
    p
}

fn custom_test_order(
    pack: &LoadedPack,
    groups: &[String],
    mode: ResourceMode,
) -> Result<Option<HashMap<String, Vec<String>>>, String> {
    if !matches!(
        mode,
        ResourceMode::CustomAll | ResourceMode::CustomSeparate | ResourceMode::CustomCombine
    ) || groups.iter().any(|g| !pack.def.groups.contains_key(g))
    {
        return Ok(None);
    }
    let queue = order::queue(pack, groups);
    order::custom_order(pack, mode, &queue, SCHEDULER_TIMEOUT)
        .map(Some)
        .map_err(|e| format!("ordering the queue: {e}"))
}

pub fn new_run_id(now: EpochMs) -> String {
    let rand = uuid::Uuid::new_v4().as_u128() as u16;
    format!("r{}-{rand:04x}", crate::timefmt::fmt_compact(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_id_format() {
        // 2026-11-21 19:55:00 UTC
        let id = new_run_id(1_795_290_900_000);
        assert!(id.starts_with("r20261121-195500-"), "{id}");
        assert_eq!(id.len(), "r20261121-195500-3f9a".len());
    }
}
