//! The results tree in the pyATS reporter's shape (run > task > sections and sub-results):
//! what `results.yaml` holds.

use serde_json::{json, Map, Value};

use crate::judge;
use crate::measure::Measurement;
use crate::outcome::{COMPLETED, ERRORED, PASSED, SKIPPED};
use crate::reporter::Section;
use crate::store::{MeasurementRecord, RunRecord, TaskRecord};
use crate::timefmt::format_utc;

/// A measurement in one line: `7.2 dB (GELE 5..9) pass`.
pub fn measurement_text(m: &MeasurementRecord) -> String {
    let units = m
        .units
        .as_deref()
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    let limits = judge::limits_text(&Measurement {
        name: m.name.clone(),
        value: m.value,
        units: None,
        low: m.low,
        high: m.high,
        comparison: Some(m.comparison),
    });
    let verdict = match m.passed {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "logged",
    };
    format!("{}{units} ({limits}) {verdict}", m.value)
}

/// Measurements as the results tree lists them.
fn measurements_node(ms: &[MeasurementRecord]) -> Value {
    Value::Array(
        ms.iter()
            .map(|m| {
                let mut n = Map::new();
                n.insert("name".into(), json!(m.name));
                n.insert("value".into(), json!(m.value));
                if let Some(u) = &m.units {
                    n.insert("units".into(), json!(u));
                }
                if let Some(l) = m.low {
                    n.insert("low".into(), json!(l));
                }
                if let Some(h) = m.high {
                    n.insert("high".into(), json!(h));
                }
                n.insert("comparison".into(), json!(m.comparison.as_str()));
                n.insert(
                    "result".into(),
                    json!(match m.passed {
                        Some(true) => "passed",
                        Some(false) => "failed",
                        None => "logged",
                    }),
                );
                Value::Object(n)
            })
            .collect(),
    )
}

/// The results tree as a JSON value (what `results.yaml` holds).
pub fn results_tree(run: &RunRecord, tasks: &[TaskRecord]) -> Value {
    let mut summary = Map::new();
    summary.insert("total".into(), json!(run.counts.total));
    summary.insert("done".into(), json!(run.counts.done));
    summary.insert("failures".into(), json!(run.counts.failures));
    summary.insert("aborted".into(), json!(run.counts.aborted));
    for (k, v) in &run.counts.by_result {
        summary.insert(k.to_lowercase(), json!(v));
    }
    let ok = run
        .counts
        .done
        .saturating_sub(run.counts.failures)
        .saturating_sub(run.counts.aborted);
    let rate = if run.counts.done > 0 {
        (ok as f64 * 1000.0 / run.counts.done as f64).round() / 10.0
    } else {
        0.0
    };
    summary.insert("success_rate".into(), json!(rate));
    let task_nodes: Vec<Value> = tasks
        .iter()
        .map(|t| {
            let mut n = Map::new();
            n.insert(
                "id".into(),
                json!(format!("{}/{}", t.lane.clone().unwrap_or_default(), t.task)),
            );
            n.insert("name".into(), json!(t.task));
            n.insert("kind".into(), json!(t.kind.as_str()));
            if let Some(g) = &t.group {
                n.insert("group".into(), json!(g));
            }
            if let Some(l) = &t.lane {
                n.insert("lane".into(), json!(l));
            }
            if !t.description.is_empty() {
                n.insert("description".into(), json!(t.description));
            }
            n.insert(
                "result".into(),
                json!(t.result.clone().unwrap_or_else(|| "(not run)".into())),
            );
            if let Some(m) = t.message.as_ref().filter(|m| !m.is_empty()) {
                n.insert("message".into(), json!(m));
            }
            if let Some(s) = t.started_ms {
                n.insert("starttime".into(), json!(format_utc(s)));
            }
            if let Some(s) = t.finished_ms {
                n.insert("stoptime".into(), json!(format_utc(s)));
            }
            if let Some(rt) = t.run_time {
                n.insert("runtime".into(), json!(rt));
            }
            n.insert("est_task_time".into(), json!(t.est_task_time));
            if let Some(d) = t.run_time_delta {
                n.insert("run_time_delta".into(), json!(d));
            }
            let mut logs = Map::new();
            for (k, p) in [
                ("setup", &t.paths.setup_log),
                ("main", &t.paths.main_log),
                ("teardown", &t.paths.teardown_log),
            ] {
                if let Some(p) = p {
                    logs.insert(k.into(), json!(p));
                }
            }
            if !logs.is_empty() {
                n.insert("logs".into(), Value::Object(logs));
            }
            if let Some(a) = &t.paths.artifacts_dir {
                n.insert("artifacts".into(), json!(a));
            }
            if let Some(m) = &t.metadata {
                n.insert("metadata".into(), m.clone());
            }
            if !t.measurements.is_empty() {
                n.insert("measurements".into(), measurements_node(&t.measurements));
            }
            if !t.sub_results.is_empty() {
                let subs: Vec<Value> = t
                    .sub_results
                    .iter()
                    .map(|s| {
                        let mut sn = Map::new();
                        sn.insert("name".into(), json!(s.name));
                        if !s.description.is_empty() {
                            sn.insert("description".into(), json!(s.description));
                        }
                        sn.insert("result".into(), json!(s.result));
                        if !s.message.is_empty() {
                            sn.insert("message".into(), json!(s.message));
                        }
                        if let Some(m) = &s.metadata {
                            sn.insert("metadata".into(), m.clone());
                        }
                        if !s.measurements.is_empty() {
                            sn.insert("measurements".into(), measurements_node(&s.measurements));
                        }
                        Value::Object(sn)
                    })
                    .collect();
                n.insert("sections".into(), Value::Array(subs));
            }
            let reported = section_nodes(t);
            if !reported.is_empty() {
                match n.get_mut("sections") {
                    Some(Value::Array(a)) => a.extend(reported),
                    _ => {
                        n.insert("sections".into(), Value::Array(reported));
                    }
                }
            }
            Value::Object(n)
        })
        .collect();
    let mut suite = Map::new();
    suite.insert("name".into(), json!(run.pack_name));
    suite.insert("version".into(), json!(run.pack_version));
    suite.insert("run_id".into(), json!(run.id));
    suite.insert("content_hash".into(), json!(run.content_hash));
    suite.insert("status".into(), json!(run.status.as_str()));
    if let Some(v) = run.verdict {
        suite.insert("verdict".into(), json!(v.as_str()));
    }
    if let Some(r) = &run.reason {
        suite.insert("reason".into(), json!(r));
    }
    suite.insert("groups".into(), json!(run.groups));
    suite.insert("duts".into(), json!(run.duts));
    if let Some(a) = &run.ats {
        suite.insert("ats".into(), json!(a));
    }
    suite.insert("resource_mode".into(), json!(run.resource_mode));
    suite.insert("coverage_mode".into(), json!(run.coverage_mode));
    if let Some(s) = run.started_ms {
        suite.insert("starttime".into(), json!(format_utc(s)));
    }
    if let Some(s) = run.finished_ms {
        suite.insert("stoptime".into(), json!(format_utc(s)));
    }
    if let (Some(a), Some(b)) = (run.started_ms, run.finished_ms) {
        suite.insert("runtime".into(), json!((b - a) as f64 / 1000.0));
    }
    suite.insert("summary".into(), Value::Object(summary));
    suite.insert("tasks".into(), Value::Array(task_nodes));
    json!({"version": 1, "testsuite": Value::Object(suite)})
}

/// Whether a reported section counts as a failure (a result other than Passed, Skipped
/// or Completed; a pack's own result names are the task's business).
pub(super) fn section_failed(s: &Section) -> bool {
    !matches!(s.result.as_deref(), Some(PASSED | SKIPPED | COMPLETED))
}

/// Every reported section of a task with its path (`task / section / step`), in order.
pub(super) fn section_paths(t: &TaskRecord) -> Vec<(String, &Section)> {
    let mut out = Vec::new();
    for r in &t.sections {
        let s = &r.section;
        let mut names = vec![s.name.as_str()];
        let mut up = s.parent;
        while let Some(p) = up {
            match t
                .sections
                .iter()
                .find(|x| x.phase == r.phase && x.section.id == p)
            {
                Some(x) => {
                    names.push(&x.section.name);
                    up = x.section.parent;
                }
                None => break,
            }
        }
        names.push(&t.task);
        names.reverse();
        let mut path = names.join(" / ");
        if r.phase != "main" {
            path = format!("{} ({})", path, r.phase);
        }
        out.push((path, s));
    }
    out
}

/// The task's reported sections as pyATS's tree: each section with its children under
/// `sections`; the phase named unless it is `main`.
fn section_nodes(t: &TaskRecord) -> Vec<Value> {
    fn node(t: &TaskRecord, phase: &str, s: &Section) -> Value {
        let mut n = Map::new();
        n.insert("name".into(), json!(s.name));
        if phase != "main" {
            n.insert("phase".into(), json!(phase));
        }
        if let Some(d) = &s.description {
            n.insert("description".into(), json!(d));
        }
        n.insert(
            "result".into(),
            json!(s.result.clone().unwrap_or_else(|| ERRORED.into())),
        );
        if !s.message.is_empty() {
            n.insert("message".into(), json!(s.message));
        }
        n.insert("starttime".into(), json!(format_utc(s.started_ms)));
        if let Some(f) = s.finished_ms {
            n.insert("stoptime".into(), json!(format_utc(f)));
            n.insert("runtime".into(), json!((f - s.started_ms) as f64 / 1000.0));
        }
        if !s.details.is_empty() {
            n.insert("details".into(), json!(s.details));
        }
        if !s.extra.is_empty() {
            n.insert("extra".into(), Value::Object(s.extra.clone()));
        }
        if !s.measurements.is_empty() {
            let ms: Vec<Value> = s
                .measurements
                .iter()
                .map(|m| {
                    let mut v = serde_json::to_value(m).expect("plain data");
                    if let (Value::Object(o), Some(p)) = (&mut v, m.passed()) {
                        o.insert("passed".into(), json!(p));
                    }
                    v
                })
                .collect();
            n.insert("measurements".into(), Value::Array(ms));
        }
        if !s.attachments.is_empty() {
            n.insert("attachments".into(), json!(s.attachments));
        }
        let children: Vec<Value> = t
            .sections
            .iter()
            .filter(|c| c.phase == phase && c.section.parent == Some(s.id))
            .map(|c| node(t, phase, &c.section))
            .collect();
        if !children.is_empty() {
            n.insert("sections".into(), Value::Array(children));
        }
        Value::Object(n)
    }
    t.sections
        .iter()
        .filter(|r| r.section.parent.is_none())
        .map(|r| node(t, &r.phase, &r.section))
        .collect()
}
