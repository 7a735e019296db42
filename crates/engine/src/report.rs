//! Reports of a stored run: JUnit XML (for CI dashboards), a `results.yaml` tree in the
//! pyATS reporter's shape (run > task > sub-results), and a JSON export.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use ts_rs::TS;

use crate::judge;
use crate::measure::Measurement;
use crate::outcome::{ABORTED, BLOCKED, COMPLETED, ERRORED, PASSED, SKIPPED, TIMEOUT};
use crate::reporter::Section;
use crate::store::{MeasurementRecord, RunRecord, TaskRecord};
use crate::timefmt::format_utc;

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ReportFormat {
    Junit,
    Yaml,
    Json,
}

impl ReportFormat {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "junit" | "xml" => ReportFormat::Junit,
            "yaml" | "yml" => ReportFormat::Yaml,
            "json" => ReportFormat::Json,
            _ => return None,
        })
    }

    pub fn extension(self) -> &'static str {
        match self {
            ReportFormat::Junit => "xml",
            ReportFormat::Yaml => "yaml",
            ReportFormat::Json => "json",
        }
    }
}

/// A run with its task tree: the JSON export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct RunExport {
    pub run: RunRecord,
    pub tasks: Vec<TaskRecord>,
}

pub fn render(format: ReportFormat, run: &RunRecord, tasks: &[TaskRecord]) -> String {
    match format {
        ReportFormat::Junit => junit(run, tasks),
        ReportFormat::Yaml => results_yaml(run, tasks),
        ReportFormat::Json => {
            let export = RunExport {
                run: run.clone(),
                tasks: tasks.to_vec(),
            };
            serde_json::to_string_pretty(&export).expect("plain data") + "\n"
        }
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

enum Verdict {
    Pass,
    Skip,
    Failure,
    Error,
}

fn verdict(result: Option<&str>, failure: Option<bool>) -> Verdict {
    match (result, failure) {
        (None, _) => Verdict::Error,
        (Some(SKIPPED), Some(false)) => Verdict::Skip,
        (Some(_), Some(false)) => Verdict::Pass,
        (Some(ERRORED | TIMEOUT | ABORTED), _) => Verdict::Error,
        (Some(BLOCKED), _) => Verdict::Failure,
        (Some(_), _) => Verdict::Failure,
    }
}

fn task_seconds(t: &TaskRecord) -> f64 {
    t.run_time.unwrap_or(0.0)
}

/// JUnit XML: one `testsuite` per lane and group (global setup/teardown in `global`), one
/// `testcase` per task occurrence and per sub-result.
pub fn junit(run: &RunRecord, tasks: &[TaskRecord]) -> String {
    // Suites in plan order of their first task.
    let mut suites: Vec<(String, Vec<&TaskRecord>)> = Vec::new();
    for t in tasks {
        let lane = t.lane.as_deref().unwrap_or("unassigned");
        let group = t.group.as_deref().unwrap_or("global");
        let name = format!("{lane}.{group}");
        match suites.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(t),
            None => suites.push((name, vec![t])),
        }
    }
    let mut total = (0u32, 0u32, 0u32, 0u32, 0.0f64);
    let mut body = String::new();
    for (name, ts) in &suites {
        let mut cases = String::new();
        let mut c = (0u32, 0u32, 0u32, 0u32, 0.0f64);
        for t in ts {
            let classname = format!("{}.{}", run.pack_name, name);
            push_case(
                &mut cases,
                &classname,
                &t.task,
                task_seconds(t),
                t.result.as_deref(),
                t.failure,
                t.message.as_deref().unwrap_or(""),
                Some(t),
                &t.measurements,
                &mut c,
            );
            for s in &t.sub_results {
                push_case(
                    &mut cases,
                    &format!("{classname}.{}", t.task),
                    &s.name,
                    0.0,
                    Some(&s.result),
                    Some(s.failure),
                    &s.message,
                    None,
                    &s.measurements,
                    &mut c,
                );
            }
            for (path, sec) in section_paths(t) {
                let secs = sec
                    .finished_ms
                    .map_or(0.0, |f| (f - sec.started_ms) as f64 / 1000.0);
                push_case(
                    &mut cases,
                    &format!("{classname}.{}", t.task),
                    &path,
                    secs,
                    sec.result.as_deref(),
                    Some(section_failed(sec)),
                    &sec.message,
                    None,
                    &[],
                    &mut c,
                );
            }
        }
        let ts0 = ts.iter().filter_map(|t| t.started_ms).min();
        let _ = writeln!(
            body,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\"{}>",
            xml_escape(name),
            c.0,
            c.1,
            c.2,
            c.3,
            c.4,
            ts0.map(|t| format!(" timestamp=\"{}\"", &format_utc(t)[..19]))
                .unwrap_or_default()
        );
        let _ = writeln!(body, "    <properties>");
        for (k, v) in [
            ("run_id", run.id.clone()),
            ("pack", run.pack_name.clone()),
            ("pack_version", run.pack_version.clone()),
            ("content_hash", run.content_hash.clone()),
            ("ats", run.ats.clone().unwrap_or_default()),
        ] {
            let _ = writeln!(
                body,
                "      <property name=\"{k}\" value=\"{}\"/>",
                xml_escape(&v)
            );
        }
        let _ = writeln!(body, "    </properties>");
        body.push_str(&cases);
        let _ = writeln!(body, "  </testsuite>");
        total.0 += c.0;
        total.1 += c.1;
        total.2 += c.2;
        total.3 += c.3;
        total.4 += c.4;
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"{} {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">\n{body}</testsuites>\n",
        xml_escape(&run.pack_name),
        xml_escape(&run.id),
        total.0,
        total.1,
        total.2,
        total.3,
        total.4
    )
}

#[allow(clippy::too_many_arguments)]
fn push_case(
    out: &mut String,
    classname: &str,
    name: &str,
    secs: f64,
    result: Option<&str>,
    failure: Option<bool>,
    message: &str,
    task: Option<&TaskRecord>,
    measurements: &[MeasurementRecord],
    c: &mut (u32, u32, u32, u32, f64),
) {
    c.0 += 1;
    c.4 += secs;
    let _ = writeln!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{secs:.3}\">",
        xml_escape(classname),
        xml_escape(name)
    );
    if !measurements.is_empty() {
        let _ = writeln!(out, "      <properties>");
        for m in measurements {
            let _ = writeln!(
                out,
                "        <property name=\"measurement.{}\" value=\"{}\"/>",
                xml_escape(&m.name),
                xml_escape(&measurement_text(m))
            );
        }
        let _ = writeln!(out, "      </properties>");
    }
    let r = result.unwrap_or("(not run)");
    match verdict(result, failure) {
        Verdict::Pass => {}
        Verdict::Skip => {
            c.3 += 1;
            let _ = writeln!(out, "      <skipped message=\"{}\"/>", xml_escape(message));
        }
        Verdict::Failure => {
            c.1 += 1;
            let _ = writeln!(
                out,
                "      <failure type=\"{}\" message=\"{}\">{}</failure>",
                xml_escape(r),
                xml_escape(message),
                xml_escape(message)
            );
        }
        Verdict::Error => {
            c.2 += 1;
            let _ = writeln!(
                out,
                "      <error type=\"{}\" message=\"{}\">{}</error>",
                xml_escape(r),
                xml_escape(message),
                xml_escape(message)
            );
        }
    }
    if let Some(t) = task {
        let logs: Vec<String> = [
            ("setup", &t.paths.setup_log),
            ("main", &t.paths.main_log),
            ("teardown", &t.paths.teardown_log),
        ]
        .iter()
        .filter_map(|(k, p)| p.as_ref().map(|p| format!("{k} log: {p}")))
        .collect();
        if !logs.is_empty() {
            let _ = writeln!(
                out,
                "      <system-out>{}</system-out>",
                xml_escape(&logs.join("\n"))
            );
        }
    }
    let _ = writeln!(out, "    </testcase>");
}

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
fn section_failed(s: &Section) -> bool {
    !matches!(s.result.as_deref(), Some(PASSED | SKIPPED | COMPLETED))
}

/// Every reported section of a task with its path (`task / section / step`), in order.
fn section_paths(t: &TaskRecord) -> Vec<(String, &Section)> {
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

/// `results.yaml`: the results tree as YAML.
pub fn results_yaml(run: &RunRecord, tasks: &[TaskRecord]) -> String {
    yaml_text(&results_tree(run, tasks))
}

/// `v` as block-style YAML, written straight from the tree (a run's end waits for it).
/// A string is plain only where it cannot read as anything else, a multi-line one is a
/// literal block, the rest is JSON-quoted (a JSON string is a YAML double-quoted scalar).
fn yaml_text(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => yaml_map(&mut out, m, 0),
        Value::Array(a) if !a.is_empty() => yaml_seq(&mut out, a, 0),
        other => {
            yaml_scalar(&mut out, other, 2);
            out.push('\n');
        }
    }
    out
}

fn yaml_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn yaml_map(out: &mut String, m: &Map<String, Value>, indent: usize) {
    for (i, (k, v)) in m.iter().enumerate() {
        // The first entry of a map in a sequence goes on the dash's line.
        if i > 0 || indent == 0 || !out.ends_with("- ") {
            yaml_indent(out, indent);
        }
        yaml_entry(out, k, v, indent);
    }
}

/// `key: value` at `indent`, the key already indented.
fn yaml_entry(out: &mut String, k: &str, v: &Value, indent: usize) {
    // A key is one line: plain, or JSON-quoted.
    if yaml_plain_ok(k) && !k.contains(':') {
        out.push_str(k);
    } else {
        out.push_str(&serde_json::to_string(k).expect("a string serialises"));
    }
    out.push(':');
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            yaml_map(out, m, indent + 2);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            yaml_seq(out, a, indent + 2);
        }
        _ => {
            out.push(' ');
            yaml_scalar(out, v, indent + 2);
            out.push('\n');
        }
    }
}

fn yaml_seq(out: &mut String, a: &[Value], indent: usize) {
    for v in a {
        yaml_indent(out, indent);
        match v {
            Value::Object(m) if !m.is_empty() => {
                out.push_str("- ");
                yaml_map(out, m, indent + 2);
            }
            Value::Array(b) if !b.is_empty() => {
                out.push_str("-\n");
                yaml_seq(out, b, indent + 2);
            }
            _ => {
                out.push_str("- ");
                yaml_scalar(out, v, indent + 2);
                out.push('\n');
            }
        }
    }
}

/// A scalar (or an empty map or list); block content goes at `indent`.
fn yaml_scalar(out: &mut String, v: &Value, indent: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => yaml_string(out, s, indent),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn yaml_string(out: &mut String, s: &str, indent: usize) {
    if yaml_plain_ok(s) {
        out.push_str(s);
    } else if yaml_literal_ok(s) {
        out.push_str("|-");
        for line in s.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                yaml_indent(out, indent);
                out.push_str(line);
            }
        }
    } else {
        out.push_str(&serde_json::to_string(s).expect("a string serialises"));
    }
}

/// Whether `s` reads back as this same string unquoted, in any YAML parser (1.1 and 1.2
/// alike: no booleans like `yes`, no numbers, no timestamps).
fn yaml_plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if !(first.is_alphabetic() || first == '_' || first == '/') {
        return false;
    }
    if s.ends_with([' ', ':']) || s.contains(": ") || s.contains(" #") {
        return false;
    }
    if !s.chars().all(|c| {
        c.is_alphanumeric()
            || matches!(
                c,
                ' ' | '_' | '-' | '.' | '/' | ':' | '+' | '@' | '(' | ')' | '=' | ','
            )
    }) {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    !matches!(
        lower.as_str(),
        "null" | "true" | "false" | "yes" | "no" | "on" | "off" | "y" | "n" | "inf" | "nan"
    )
}

/// Whether `s` can be a `|-` literal block: several lines of printable text, the first
/// not starting with a blank, no trailing line break.
fn yaml_literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.ends_with('\n')
        && !s.starts_with([' ', '\n'])
        && !s.chars().any(|c| c.is_control() && c != '\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_yaml(y: &yaml_rust2::Yaml) -> Value {
        use yaml_rust2::Yaml;
        match y {
            Yaml::Null => Value::Null,
            Yaml::Boolean(b) => json!(b),
            Yaml::Integer(i) => json!(i),
            Yaml::Real(r) => json!(r.parse::<f64>().unwrap()),
            Yaml::String(s) => json!(s),
            Yaml::Array(a) => Value::Array(a.iter().map(from_yaml).collect()),
            Yaml::Hash(h) => Value::Object(
                h.iter()
                    .map(|(k, v)| (k.as_str().unwrap().to_string(), from_yaml(v)))
                    .collect(),
            ),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn yaml_reads_back_as_the_tree() {
        let tricky = [
            "",
            " lead",
            "trail ",
            "yes",
            "No",
            "on",
            "null",
            "~",
            "1",
            "1.5",
            "-1",
            "+1",
            ".5",
            "1e3",
            "0x1f",
            "inf",
            "2026-11-21T19:55:00.123Z",
            "a: b",
            "a:b",
            "x #y",
            "#c",
            "- d",
            "[e]",
            "{f}",
            "*g",
            "&h",
            "!i",
            "%j",
            "@k",
            "`l",
            "|m",
            ">n",
            "'o'",
            "\"p\"",
            "q,r",
            "two\nlines",
            "two\n\nlines with gap",
            "ends\n",
            "tab\there",
            "é unicode",
            "t0001",
            "quick/main.log",
            "a\u{7}bell",
            "\nstarts",
            "  two\nspaces",
        ];
        let tree = json!({
            "version": 1,
            "strings": tricky.to_vec(),
            "keys": tricky.iter().map(|k| (k.to_string(), json!(k))).collect::<Map<String, Value>>(),
            "nested": [{"a": 1, "b": [1, [2, 3], {}], "c": {"d": null, "e": [], "f": true}}, [], [[1]]],
            "numbers": [0, -5, 0.01, 1e-7, 12345678901i64, 2.5],
            "empty_map": {},
            "deep": {"x": {"y": {"z": "multi\nline\ntext"}}},
        });
        let text = yaml_text(&tree);
        let docs =
            yaml_rust2::YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(from_yaml(&docs[0]), tree, "{text}");
        // Plain where it is safe, literal blocks for messages.
        assert!(text.contains("- t0001\n"), "{text}");
        assert!(
            text.contains("z: |-\n        multi\n        line\n"),
            "{text}"
        );
    }

    #[test]
    fn utc_format() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc(1_795_290_900_123), "2026-11-21T19:55:00.123Z");
    }

    #[test]
    fn xml_escaping() {
        assert_eq!(
            xml_escape("a<b & \"c\"\u{1}"),
            "a&lt;b &amp; &quot;c&quot;\u{FFFD}"
        );
    }
}
