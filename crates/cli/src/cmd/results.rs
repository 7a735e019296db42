//! `testbay results`: list stored runs; `testbay results RUN`: one run's task tree with
//! sub-results and log paths.

use testbay_engine::api::{
    ReportFormat, Request, Response, RunQuery, RunRecord, RunSort, RunStatus, StoredTaskState,
    TaskKind, TaskRecord,
};
// Formatting and reading UTC times for people is the CLI's own job; `timefmt` is the
// engine's one implementation of it.
use testbay_engine::report::measurement_text;
use testbay_engine::timefmt::{format_utc, parse_utc};

use super::run::fmt_dur;
use super::Ctx;
use crate::console::{error_text, read_back, unexpected, Session};
use crate::term::{safe, width};

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    /// Results across runs: a task's history, a measurement's, yield, flaky tasks, compare
    #[command(subcommand)]
    pub view: Option<Box<super::history::View>>,
    /// A run id: show its task tree instead of the list
    pub run: Option<String>,
    /// Only runs of this pack
    #[arg(long)]
    pub pack: Option<String>,
    /// Only runs that included this group
    #[arg(long)]
    pub group: Option<String>,
    /// Only runs on this DUT
    #[arg(long)]
    pub dut: Option<String>,
    /// Only runs on this ATS
    #[arg(long)]
    pub ats: Option<String>,
    /// Only runs with this status (queued, running, completed, stopped, stalled,
    /// could_not_start, interrupted, errored)
    #[arg(long, value_parser = parse_status)]
    pub status: Option<RunStatus>,
    /// Only runs with at least one task with this result
    #[arg(long)]
    pub result: Option<String>,
    /// Only runs with at least one failure, and every errored run
    #[arg(long)]
    pub failed: bool,
    /// Only runs created at or after this UTC time: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]
    #[arg(long, value_parser = parse_time)]
    pub since: Option<i64>,
    /// Only runs created before this UTC time (same forms; a bare date means its start)
    #[arg(long, value_parser = parse_time)]
    pub until: Option<i64>,
    /// Search run ids, pack names, reasons, task names and messages
    #[arg(long)]
    pub search: Option<String>,
    /// created, pack, status, duration, failures
    #[arg(long, default_value = "created", value_parser = parse_sort)]
    pub sort: RunSort,
    /// Oldest / smallest first
    #[arg(long)]
    pub asc: bool,
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[arg(long, default_value_t = 0)]
    pub offset: u32,
    /// The page after this run (keyset paging, newest first or with --asc; sort by
    /// creation only): pass the last run id of the page before
    #[arg(long, value_name = "RUN_ID", conflicts_with = "offset")]
    pub after: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `YYYY-MM-DD[THH:MM[:SS]]` (UTC) to epoch milliseconds.
fn parse_time(s: &str) -> Result<i64, String> {
    parse_utc(s).ok_or_else(|| format!("`{s}`: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] (UTC)"))
}

fn parse_status(s: &str) -> Result<RunStatus, String> {
    RunStatus::parse(s).ok_or_else(|| format!("unknown status `{s}`"))
}

fn parse_sort(s: &str) -> Result<RunSort, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("unknown sort `{s}` (created, pack, status, duration, failures)"))
}

pub fn run(args: Args, ctx: &Ctx) -> anyhow::Result<i32> {
    if let Some(view) = args.view {
        return super::history::run(*view, ctx);
    }
    let session = Session::reading(ctx)?;
    if let Some(id) = &args.run {
        if args.json {
            let request = Request::Export {
                run_id: id.clone(),
                format: ReportFormat::Json,
                new_failures_since: None,
            };
            match session.call(request) {
                Ok(Response::Export(file)) => print!("{}", file.content),
                Ok(other) => return Err(unexpected("export", other)),
                Err(e) => anyhow::bail!("run {id}: {}", error_text(&e)),
            }
        } else {
            let (run, tasks, _) = session
                .block_on(read_back(session.console(), id))
                .map_err(|e| anyhow::anyhow!("run {id}: {}", error_text(&e)))?;
            print_tree(&run, &tasks);
        }
        return Ok(0);
    }
    let query = RunQuery {
        pack: args.pack,
        group: args.group,
        dut: args.dut,
        ats: args.ats,
        status: args.status,
        result: args.result,
        failed_only: args.failed,
        from_ms: args.since,
        // `to_ms` is inclusive; --until is exclusive.
        to_ms: args.until.map(|t| t - 1),
        text: args.search,
        sort: args.sort,
        ascending: args.asc,
        offset: args.offset,
        limit: args.limit,
        after: args.after,
    };
    let page = match session.call(Request::ListRuns(query)) {
        Ok(Response::ListRuns(page)) => page,
        Ok(other) => return Err(unexpected("list_runs", other)),
        Err(e) => anyhow::bail!("{}", error_text(&e)),
    };
    if args.json {
        crate::term::print_json(&page)?;
        return Ok(0);
    }
    if page.runs.is_empty() {
        out!(
            "no runs{}",
            if page.total > 0 { " on this page" } else { "" }
        );
        return Ok(0);
    }
    let id_w = page.runs.iter().map(|r| width(&r.id)).max().unwrap_or(2);
    let pack_w = page
        .runs
        .iter()
        .map(|r| width(&r.pack_name) + width(&r.pack_version) + 1)
        .max()
        .unwrap_or(4)
        .max(4);
    out!(
        "{:<id_w$}  {:<pack_w$}  {:<15}  {:<19}  {:>8}  {:>7}  {:>8}  DUTS",
        "RUN",
        "PACK",
        "STATUS",
        "CREATED (UTC)",
        "DURATION",
        "TASKS",
        "FAILURES"
    );
    for r in &page.runs {
        let dur = match (r.started_ms, r.finished_ms) {
            (Some(a), Some(b)) => fmt_dur(b - a),
            (Some(_), None) => "running".into(),
            _ => "-".into(),
        };
        out!(
            "{:<id_w$}  {:<pack_w$}  {:<15}  {:<19}  {:>8}  {:>7}  {:>8}  {}",
            safe(&r.id),
            safe(&format!("{}@{}", r.pack_name, r.pack_version)),
            r.status.as_str(),
            &format_utc(r.created_ms)[..19].replace('T', " "),
            dur,
            format!("{}/{}", r.counts.done, r.counts.total),
            r.counts.failures,
            r.duts
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    let shown = args.offset as usize + page.runs.len();
    if (shown as u32) < page.total {
        out!(
            "{} of {} runs; next page: --offset {}",
            page.runs.len(),
            page.total,
            shown
        );
    }
    Ok(0)
}

fn print_tree(run: &RunRecord, tasks: &[TaskRecord]) {
    out!(
        "run {}  {}@{}  {}{}{}",
        run.id,
        run.pack_name,
        run.pack_version,
        run.status.as_str(),
        run.verdict
            .map(|v| format!(", {}", v.as_str()))
            .unwrap_or_default(),
        run.reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );
    let dur = match (run.started_ms, run.finished_ms) {
        (Some(a), Some(b)) => fmt_dur(b - a),
        _ => "-".into(),
    };
    out!(
        "  created {}  duration {}  content {}",
        format_utc(run.created_ms),
        dur,
        &run.content_hash[..run.content_hash.len().min(12)]
    );
    out!(
        "  groups {}  DUTs {}  ATS {}  resource_mode {}  coverage_mode {}",
        if run.groups.is_empty() {
            "-".into()
        } else {
            run.groups.join(",")
        },
        if run.duts.is_empty() {
            "-".into()
        } else {
            run.duts
                .iter()
                .map(|d| d.name.clone())
                .collect::<Vec<_>>()
                .join(",")
        },
        run.ats.as_deref().unwrap_or("-"),
        run.resource_mode,
        run.coverage_mode
    );
    out!(
        "  {} task(s), {} done, {} failure(s), {} aborted",
        run.counts.total,
        run.counts.done,
        run.counts.failures,
        run.counts.aborted
    );
    let mut lanes: Vec<String> = Vec::new();
    for t in tasks {
        let l = t.lane.clone().unwrap_or_else(|| "(unassigned)".into());
        if !lanes.contains(&l) {
            lanes.push(l);
        }
    }
    for lane in lanes {
        out!("{lane}");
        let mut section = String::new();
        for t in tasks
            .iter()
            .filter(|t| t.lane.as_deref().unwrap_or("(unassigned)") == lane)
        {
            let sec = match (&t.group, t.kind) {
                (None, k) => format!("global {}", k.as_str()),
                (Some(g), TaskKind::Test) => format!("group {g}"),
                (Some(g), k) => format!("group {g} {}", k.as_str()),
            };
            if sec != section {
                out!("  {sec}");
                section = sec;
            }
            let mark = match (t.failure, t.flaky) {
                (Some(true), _) => "FAIL",
                (Some(false), true) => "FLKY",
                (Some(false), false) => " ok ",
                (None, _) => " .. ",
            };
            let time = t
                .run_time
                .map(|s| fmt_dur((s * 1000.0) as i64))
                .unwrap_or_default();
            out!(
                "    [{mark}] {:<24} {:<9} {:>7}  {}",
                safe(&t.task),
                safe(t.result.as_deref().unwrap_or(match t.state {
                    StoredTaskState::Running => "running",
                    _ => "pending",
                })),
                time,
                t.message
                    .as_deref()
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            );
            for m in &t.measurements {
                out!(
                    "           = {:<22} {}",
                    safe(&m.name),
                    safe(&measurement_text(m))
                );
            }
            for s in &t.sub_results {
                out!(
                    "           ↳ {:<22} {:<9}          {}",
                    safe(&s.name),
                    safe(&s.result),
                    s.message
                );
                for m in &s.measurements {
                    out!(
                        "             = {:<20} {}",
                        safe(&m.name),
                        safe(&measurement_text(m))
                    );
                }
            }
            for (k, p) in [
                ("setup", &t.paths.setup_log),
                ("main", &t.paths.main_log),
                ("teardown", &t.paths.teardown_log),
            ] {
                if let Some(p) = p {
                    if std::path::Path::new(p).exists() {
                        out!("           {k} log: {p}");
                    }
                }
            }
            if t.attempts.len() > 1 {
                out!(
                    "           {}attempts: {}",
                    if t.flaky {
                        "flaky: passed on a retry; "
                    } else {
                        ""
                    },
                    t.attempts.len()
                );
                for a in &t.attempts {
                    out!(
                        "           attempt {}: {:<9} {}",
                        a.attempt,
                        safe(&a.result),
                        safe(a.message.lines().next().unwrap_or(""))
                    );
                    if let Some(p) = &a.paths.main_log {
                        out!("             main log: {p}");
                    }
                }
            }
            if t.log_truncated {
                out!("           (log truncated at its size limit)");
            }
            if let Some(raw) = &t.raw_result {
                out!(
                    "           raw result: {}",
                    raw.lines().next().unwrap_or("")
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_utc() {
        assert_eq!(parse_time("1970-01-01"), Ok(0));
        assert_eq!(parse_time("2026-11-21T19:55:00"), Ok(1_795_290_900_000));
        assert_eq!(parse_time("2026-11-21 19:55"), Ok(1_795_290_900_000));
        assert!(parse_time("2026-13-01").is_err());
        assert!(parse_time("yesterday").is_err());
    }
}
