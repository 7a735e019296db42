//! Turn the outcomes of an attempt's phases into its stored result: which phase decides
//! the result, what the measurements judge, the sub-results, timings and sections.

use serde_json::Value;

use crate::clock::EpochMs;
use crate::exec::{Exit, PhaseOutcome};
use crate::judge;
use crate::outcome::{ABORTED, FAILED};
use crate::pack::GlobalParams;
use crate::store::{NewSubResult, SectionRecord, TaskFinish, TaskPaths};

use super::{is_failure, ItemJob};

/// Outcomes of the phases that ran.
pub(super) struct Phases {
    pub(super) setup: Option<PhaseOutcome>,
    pub(super) main: Option<PhaseOutcome>,
    pub(super) teardown: Option<PhaseOutcome>,
}

impl Phases {
    pub(super) fn into_finish(
        self,
        params: &GlobalParams,
        job: &ItemJob,
        started_ms: EpochMs,
        finished_ms: EpochMs,
        paths: TaskPaths,
    ) -> (String, String, TaskFinish) {
        // The files exist once a phase was attempted.
        let attempted = self.setup.is_some() || self.main.is_some() || self.teardown.is_some();
        let failed = |o: &PhaseOutcome| is_failure(params, &o.result);
        // Task result: a failed setup decides; then main; a failed teardown after a good
        // main decides too.
        let (mut result, mut message, mut exit) = match (&self.setup, &self.main) {
            (Some(s), _) if failed(s) => {
                (s.result.clone(), format!("setup: {}", s.message), s.exit)
            }
            (_, Some(m)) => (m.result.clone(), m.message.clone(), m.exit),
            // Stopped between phases or before the first one.
            _ => (
                ABORTED.to_string(),
                "run stopped before the task ran".to_string(),
                Exit::NotStarted,
            ),
        };
        if let Some(t) = &self.teardown {
            if failed(t) && !is_failure(params, &result) {
                result = t.result.clone();
                message = format!("teardown: {}", t.message);
                exit = t.exit;
            }
        }
        let main = self.main.as_ref();
        // The main phase's measurements: one out of limits fails the task (unless the
        // result file overrides it with a reason); the message names it either way.
        let measurements = main.map(|m| m.measurements.clone()).unwrap_or_default();
        if let Some(m) = main {
            let j = judge::judge(&m.measurements, &m.metadata);
            if j.fails() && !is_failure(params, &result) {
                result = FAILED.to_string();
            }
            message = j.message_with_note(&message);
        }
        let metadata = main
            .filter(|m| !m.metadata.is_empty())
            .map(|m| Value::Object(m.metadata.clone()));
        let raw_result = [&self.setup, &self.main, &self.teardown]
            .into_iter()
            .flatten()
            .find_map(|o| o.raw_result.clone());
        let sub_results = main
            .map(|m| {
                m.multi_result
                    .iter()
                    .map(|s| {
                        // A sub-result's measurements judge the sub-result alone.
                        let j = judge::judge(&s.measurements, &s.metadata.extra);
                        let result = if j.fails() && !is_failure(params, &s.result) {
                            FAILED.to_string()
                        } else {
                            s.result.clone()
                        };
                        NewSubResult {
                            name: s.name.clone(),
                            description: s.description.clone(),
                            failure: is_failure(params, &result),
                            result,
                            message: j.message_with_note(&s.metadata.message),
                            metadata: (!s.metadata.extra.is_empty())
                                .then(|| Value::Object(s.metadata.extra.clone())),
                            measurements: s.measurements.clone(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let dur = |o: &Option<PhaseOutcome>| o.as_ref().map(|o| o.finished_ms - o.started_ms);
        let run_time = (finished_ms - started_ms) as f64 / 1000.0;
        let truncated = [&self.setup, &self.main, &self.teardown]
            .into_iter()
            .flatten()
            .any(|o| o.log.truncated);
        let (exit_code, signal) = match exit {
            Exit::Code(c) => (Some(c), None),
            Exit::Signal(s) => (None, Some(s)),
            Exit::NotStarted => (None, None),
        };
        let finish = TaskFinish {
            lane: Some(job.lane.clone()),
            result: result.clone(),
            failure: is_failure(params, &result),
            message: message.clone(),
            metadata,
            raw_result,
            run_time: Some(run_time),
            run_time_delta: Some(run_time - job.def.est_task_time),
            started_ms: Some(started_ms),
            finished_ms,
            setup_ms: dur(&self.setup),
            main_ms: dur(&self.main),
            teardown_ms: dur(&self.teardown),
            exit_code,
            signal,
            log_truncated: truncated,
            sub_results,
            measurements,
            sections: [&self.setup, &self.main, &self.teardown]
                .into_iter()
                .flatten()
                .flat_map(|o| {
                    let phase = o.phase.as_str();
                    o.report.iter().flat_map(move |r| {
                        r.sections.iter().map(move |s| SectionRecord {
                            phase: phase.to_string(),
                            section: s.clone(),
                        })
                    })
                })
                .collect(),
            paths: if attempted {
                paths
            } else {
                TaskPaths::default()
            },
            ..Default::default()
        };
        (result, message, finish)
    }
}
