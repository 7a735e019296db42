//! What a phase's end means: its exit, how the engine ended it and its result file
//! become a result name, a message and sub-results.

use std::io::Read;
use std::path::Path;

use serde_json::Map;

use super::{ExecLimits, Exit, LogStats, PhaseCommand, PhaseOutcome};
use crate::clock::EpochMs;
use crate::outcome::{ABORTED, ERRORED, FAILED, PASSED, TIMEOUT};
use crate::pack::model::TaskReturn;
use crate::reporter::PhaseReport;

/// Why the phase was ended early by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum EndedBy {
    Itself,
    Timeout,
    Stop,
}

/// How a phase that started ended, before its result is read.
pub(super) struct Ended {
    pub by: EndedBy,
    /// `Err` when waiting for the process failed.
    pub exit: Result<Exit, ()>,
    pub pid: u32,
    pub started_ms: EpochMs,
    pub finished_ms: EpochMs,
    pub log: LogStats,
}

/// The phase's outcome: a timeout or a stop wins, then a death by signal, then the
/// result file, then the exit status.
pub(super) fn interpret(cmd: &PhaseCommand, ended: Ended) -> PhaseOutcome {
    let Ended {
        by: ended_by,
        exit,
        pid,
        started_ms,
        finished_ms,
        log,
    } = ended;
    let phase = cmd.env.phase;
    let (exit, status_ok) = match exit {
        Ok(e) => (e, true),
        Err(()) => (Exit::Code(-1), false),
    };
    let mut out = PhaseOutcome {
        phase,
        result: String::new(),
        message: String::new(),
        metadata: Map::new(),
        multi_result: Vec::new(),
        raw_result: None,
        measurements: Vec::new(),
        report: None,
        verdict: Verdict::Engine,
        exit,
        pid: Some(pid),
        started_ms,
        finished_ms,
        log,
    };
    match ended_by {
        EndedBy::Timeout => {
            out.result = TIMEOUT.into();
            out.message = format!(
                "max_runtime of {}s elapsed; process group terminated",
                cmd.max_runtime.unwrap_or_default().as_secs_f64()
            );
            return out;
        }
        EndedBy::Stop => {
            out.result = ABORTED.into();
            out.message = "run stopped by the operator".into();
            return out;
        }
        EndedBy::Itself => {}
    }
    if !status_ok {
        out.result = ERRORED.into();
        out.message = "could not wait for the process (its pidfd failed)".into();
        return out;
    }
    if let Exit::Signal(sig) = exit {
        out.result = ERRORED.into();
        out.message = format!("killed by signal {sig} ({})", signal_name(sig));
        return out;
    }
    let code = match exit {
        Exit::Code(c) => c,
        _ => -1,
    };
    match read_result_file(&cmd.env.result_file, &cmd.limits) {
        ResultFile::Missing => {
            out.verdict = Verdict::Exit;
            if code == 0 {
                out.result = PASSED.into();
            } else {
                out.result = FAILED.into();
                out.message = format!("exit status {code}");
            }
        }
        ResultFile::Valid(ret) => {
            out.result = ret.result;
            out.message = ret.metadata.message;
            out.metadata = ret.metadata.extra;
            out.multi_result = ret.multi_result.unwrap_or_default();
            out.measurements = ret.measurements;
            out.verdict = Verdict::ResultFile;
        }
        ResultFile::Invalid { reason, raw } => {
            out.result = ERRORED.into();
            out.message = format!(
                "invalid result file {}: {reason}",
                cmd.env.result_file.display()
            );
            out.raw_result = raw;
        }
    }
    out
}

/// What a phase's result name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Verdict {
    /// The engine: a timeout, a stop, a signal, a start or wait that failed, an invalid
    /// result file.
    Engine,
    /// The task's result file.
    ResultFile,
    /// The exit status alone.
    Exit,
    /// The reporter: the task's `set_result`, or its sections' roll-up.
    Reporter,
}

/// Adds what the phase reported live to its outcome. The engine's verdict and a result
/// file's stand; over an exit status, the reporter's `set_result` wins, and a phase that
/// exited 0 takes its top-level sections' worst failure (`Errored` over `Failed`).
/// Measurements and sections stay in every case; extra data, details and attachments
/// outside any section join the metadata.
pub fn apply_report(out: &mut PhaseOutcome, report: PhaseReport) {
    if report.is_empty() {
        return;
    }
    if out.verdict == Verdict::Exit {
        if let Some((result, message)) = &report.result {
            out.result = result.clone();
            out.message = message.clone();
            out.verdict = Verdict::Reporter;
        } else if let (Some(worst), Exit::Code(0)) = (report.rollup(), out.exit) {
            let failed = report
                .sections
                .iter()
                .filter(|s| s.parent.is_none() && s.result.as_deref() == Some(worst))
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(", ");
            out.result = worst.into();
            out.message = format!("section {failed} {worst}");
            out.verdict = Verdict::Reporter;
        }
    }
    out.measurements.extend(report.measurements.iter().cloned());
    // What was reported outside any section joins the task's metadata (a result file's
    // keys stand).
    for (k, v) in &report.extra {
        out.metadata.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if !report.prompts.is_empty() {
        let prompts: Vec<serde_json::Value> = report
            .prompts
            .iter()
            .map(|p| serde_json::json!({"message": p.message, "answer": p.answer}))
            .collect();
        out.metadata
            .entry("prompts")
            .or_insert(serde_json::Value::Array(prompts));
    }
    for (key, list) in [
        ("details", &report.details),
        ("attachments", &report.attachments),
    ] {
        if !list.is_empty() {
            out.metadata
                .entry(key)
                .or_insert_with(|| serde_json::json!(list));
        }
    }
    out.report = Some(report);
}

pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => "signal",
    }
}

enum ResultFile {
    Missing,
    Valid(TaskReturn),
    Invalid { reason: String, raw: Option<String> },
}

/// The phase's result file, read on the phase's own thread: it is opened without waiting
/// and only when it is a regular file (a task's named pipe or link to a device is refused,
/// `userfile`), and read up to its cap.
fn read_result_file(path: &Path, limits: &ExecLimits) -> ResultFile {
    let f = match crate::userfile::open_regular(path) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return ResultFile::Missing,
        Err(e) => {
            return ResultFile::Invalid {
                reason: e.to_string(),
                raw: None,
            }
        }
    };
    let cap = limits.result_file_cap_bytes;
    let size = f.metadata().map_or(0, |m| m.len());
    // Only the head of a file over the cap is read; a file still growing is cut off by
    // `take`, not read without bound.
    let want = if size > cap {
        limits.raw_result_cap_bytes as u64
    } else {
        cap.saturating_add(1)
    };
    let mut bytes = Vec::new();
    if let Err(e) = (&f).take(want).read_to_end(&mut bytes) {
        return ResultFile::Invalid {
            reason: format!("cannot read: {e}"),
            raw: None,
        };
    }
    if size > cap || bytes.len() as u64 > cap {
        let size = size.max(bytes.len() as u64);
        bytes.truncate(limits.raw_result_cap_bytes);
        return ResultFile::Invalid {
            reason: format!("file is {size} bytes, more than the {cap} byte limit"),
            raw: Some(String::from_utf8_lossy(&bytes).into_owned()),
        };
    }
    let raw = || {
        Some(cap_string(
            &String::from_utf8_lossy(&bytes),
            limits.raw_result_cap_bytes,
        ))
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            return ResultFile::Invalid {
                reason: format!("not UTF-8 ({e})"),
                raw: raw(),
            }
        }
    };
    match serde_json::from_str::<TaskReturn>(text) {
        Ok(r) => match control_in_names(&r) {
            None => ResultFile::Valid(r),
            Some(reason) => ResultFile::Invalid { reason, raw: raw() },
        },
        Err(e) => ResultFile::Invalid {
            reason: format!(
                "{} (line {}, column {}); expected the Task Return schema: {{\"result\": string, \"metadata\": {{\"message\": string, ...}}, \"multi_result\": [{{\"name\", \"description\", \"result\", \"metadata\"}}]}}",
                strip_position(&e.to_string()),
                e.line(),
                e.column()
            ),
            raw: raw(),
        },
    }
}

/// Result names are plain words (kissats): a result or sub-result name with a control
/// character (a terminal escape, a line break) is refused, shown escaped. Messages and
/// other metadata may hold anything; who prints them escapes them.
fn control_in_names(r: &TaskReturn) -> Option<String> {
    let bad = |key: String, v: &str| {
        v.chars()
            .any(char::is_control)
            .then(|| format!("{key} {v:?} has a control character; result names are plain words"))
    };
    bad("result".into(), &r.result).or_else(|| {
        r.multi_result
            .iter()
            .flatten()
            .enumerate()
            .find_map(|(i, s)| {
                bad(format!("multi_result[{i}].name"), &s.name)
                    .or_else(|| bad(format!("multi_result[{i}].result"), &s.result))
            })
    })
}

fn strip_position(msg: &str) -> &str {
    msg.rsplit_once(" at line ").map(|(m, _)| m).unwrap_or(msg)
}

/// Cut `s` to at most `cap` bytes on a char boundary, marking the cut.
pub fn cap_string(s: &str, cap: usize) -> String {
    if s.len() <= cap {
        return s.to_string();
    }
    let mut end = cap;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} more bytes]", &s[..end], s.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_string_cuts_on_char_boundary() {
        let s = "ééééé"; // 10 bytes
        let c = cap_string(s, 3);
        assert!(c.starts_with('é'));
        assert!(c.contains("more bytes"));
        assert_eq!(cap_string("abc", 3), "abc");
    }
}
