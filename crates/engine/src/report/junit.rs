//! JUnit XML: one `testsuite` per lane and group, one `testcase` per task occurrence and
//! per sub-result, measurements as properties.

use std::fmt::Write as _;

use crate::outcome::{ABORTED, BLOCKED, ERRORED, SKIPPED, TIMEOUT};
use crate::store::{MeasurementRecord, RunRecord, TaskRecord};
use crate::timefmt::format_utc;

use super::measurement_text;
use super::tree::{section_failed, section_paths};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timefmt::format_utc;

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
