//! `testbay results history|measurement|yield|flaky|compare`: results across runs, through
//! the console like every other read.

use testbay_engine::api::{
    CompareOptions, FlakyQuery, MeasurementQuery, Request, Response, TaskHistoryQuery,
};
use testbay_engine::report::measurement_text;
use testbay_engine::timefmt::format_utc;

use super::Ctx;
use crate::console::{error_text, unexpected, Session};
use crate::term::safe;

#[derive(clap::Subcommand)]
pub enum View {
    /// One task's results across runs, newest first
    History {
        pack: String,
        task: String,
        /// Only occurrences on DUTs of this model
        #[arg(long)]
        model: Option<String>,
        /// Newest occurrences (at most 1000)
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One measurement's values across runs, newest first, with its limits
    Measurement {
        pack: String,
        task: String,
        name: String,
        /// The sub-result that reports it (none: the task's own)
        #[arg(long)]
        sub: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Share of runs whose measurements all passed, per DUT model
    Yield {
        pack: String,
        /// Last runs of the pack looked at (at most 1000)
        #[arg(long, default_value_t = 100)]
        runs: u32,
        #[arg(long)]
        json: bool,
    },
    /// Tasks whose verdict flipped within their last N runs per DUT model
    Flaky {
        #[arg(long)]
        pack: Option<String>,
        /// Runs per task and DUT model (2 to 100)
        #[arg(long, default_value_t = 10)]
        window: u32,
        #[arg(long)]
        json: bool,
    },
    /// Run A (the reference) compared with run B; A `baseline` is the baseline pinned for
    /// B's pack and first DUT model
    Compare {
        a: String,
        b: String,
        /// A duration regression is B over A by more than this share
        #[arg(long, default_value_t = 0.2)]
        threshold: f64,
        #[arg(long)]
        json: bool,
    },
    /// Pin a run as its pack's baseline on a DUT model (default: its first DUT's model)
    Pin {
        run: String,
        #[arg(long)]
        model: Option<String>,
    },
    /// Unpin a pack's baseline on a DUT model
    Unpin {
        pack: String,
        /// The DUT model (none: runs without a model)
        #[arg(long)]
        model: Option<String>,
    },
    /// Pinned baselines
    Baselines {
        #[arg(long)]
        pack: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove the runs the retention policy (settings.yaml `retention`) removes, with
    /// their logs and artifacts; never running, pinned or kept runs
    Prune {
        /// Only say what would go and how many bytes
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Mark a run keep: pruning never removes it
    Keep {
        run: String,
        /// Unmark it
        #[arg(long)]
        off: bool,
        #[arg(long)]
        json: bool,
    },
    /// The data directory's size: database, logs, artifacts; the retention policy
    Usage {
        #[arg(long)]
        json: bool,
    },
}

/// The baseline pinned for run `b`'s pack and first DUT model.
fn baseline_of(session: &Session, b: &str) -> anyhow::Result<String> {
    let resp = call(
        session,
        Request::GetRun {
            run_id: b.into(),
            offset: None,
            limit: Some(1),
        },
        "compare",
    )?;
    let Response::GetRun(detail) = resp else {
        return Err(unexpected("get_run", resp));
    };
    let run = &detail.run;
    let model = run.duts.first().and_then(|d| d.model.clone());
    let resp = call(
        session,
        Request::Baselines {
            pack: Some(run.pack_name.clone()),
        },
        "compare",
    )?;
    let Response::Baselines(list) = resp else {
        return Err(unexpected("baselines", resp));
    };
    list.into_iter()
        .find(|x| x.dut_model == model)
        .map(|x| x.run_id)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "compare: no baseline pinned for {} on {}; pin one with `testbay results pin RUN`",
                run.pack_name,
                model.as_deref().unwrap_or("runs without a DUT model")
            )
        })
}

fn call(session: &Session, request: Request, what: &str) -> anyhow::Result<Response> {
    session
        .call(request)
        .map_err(|e| anyhow::anyhow!("{what}: {}", error_text(&e)))
}

pub fn run(view: View, ctx: &Ctx) -> anyhow::Result<i32> {
    match view {
        View::Prune { dry_run, json } => return super::retention::prune(ctx, dry_run, json),
        View::Keep { run, off, json } => return super::retention::keep(ctx, run, off, json),
        View::Usage { json } => return super::retention::usage(ctx, json),
        _ => {}
    }
    let session = Session::reading(ctx)?;
    match view {
        View::History {
            pack,
            task,
            model,
            limit,
            json,
        } => {
            let q = TaskHistoryQuery {
                pack,
                task,
                dut_model: model,
                limit,
            };
            let resp = call(&session, Request::TaskHistory(q), "history")?;
            let Response::TaskHistory(rows) = resp else {
                return Err(unexpected("task_history", resp));
            };
            if json {
                crate::term::print_json(&rows)?;
                return Ok(0);
            }
            for e in &rows {
                out!(
                    "{}  {:<20}  {:<12}  {:<10}  {:>8}  {}",
                    &format_utc(e.run_created_ms)[..19],
                    safe(&e.run_id),
                    safe(e.lane.as_deref().unwrap_or("-")),
                    safe(e.result.as_deref().unwrap_or("(not run)")),
                    e.run_time.map_or("-".into(), |t| format!("{t:.1}s")),
                    safe(e.message.as_deref().unwrap_or(""))
                );
            }
            if rows.is_empty() {
                out!("no results of this task");
            }
        }
        View::Measurement {
            pack,
            task,
            name,
            sub,
            model,
            limit,
            json,
        } => {
            let q = MeasurementQuery {
                pack,
                task,
                sub_result: sub,
                name,
                dut_model: model,
                limit,
            };
            let resp = call(&session, Request::MeasurementHistory(q), "measurement")?;
            let Response::MeasurementHistory(rows) = resp else {
                return Err(unexpected("measurement_history", resp));
            };
            if json {
                crate::term::print_json(&rows)?;
                return Ok(0);
            }
            for p in &rows {
                out!(
                    "{}  {:<20}  {:<12}  {}",
                    &format_utc(p.run_created_ms)[..19],
                    safe(&p.run_id),
                    safe(p.lane.as_deref().unwrap_or("-")),
                    safe(&measurement_text(&p.measurement))
                );
            }
            if rows.is_empty() {
                out!("no values of this measurement");
            }
        }
        View::Yield { pack, runs, json } => {
            let resp = call(
                &session,
                Request::MeasurementYield {
                    pack,
                    last_runs: runs,
                },
                "yield",
            )?;
            let Response::MeasurementYield(rows) = resp else {
                return Err(unexpected("measurement_yield", resp));
            };
            if json {
                crate::term::print_json(&rows)?;
                return Ok(0);
            }
            for y in &rows {
                out!(
                    "{:<20}  {:>5.1}%  ({} of {} runs)",
                    safe(y.dut_model.as_deref().unwrap_or("(no model)")),
                    y.yield_rate * 100.0,
                    y.passed_runs,
                    y.runs
                );
            }
            if rows.is_empty() {
                out!("no runs with measurements");
            }
        }
        View::Flaky { pack, window, json } => {
            let resp = call(
                &session,
                Request::Flaky(FlakyQuery { pack, window }),
                "flaky",
            )?;
            let Response::Flaky(rows) = resp else {
                return Err(unexpected("flaky", resp));
            };
            if json {
                crate::term::print_json(&rows)?;
                return Ok(0);
            }
            for f in &rows {
                let strip: String = f
                    .runs
                    .iter()
                    .map(|p| if p.failure { 'x' } else { '.' })
                    .collect();
                out!(
                    "{:>4.0}%  {:<16}  {:<24}  {:<12}  {strip}",
                    f.flip_rate * 100.0,
                    safe(&f.pack),
                    safe(&f.task),
                    safe(f.dut_model.as_deref().unwrap_or("-"))
                );
            }
            if rows.is_empty() {
                out!("no flaky tasks");
            }
        }
        View::Compare {
            a,
            b,
            threshold,
            json,
        } => {
            let a = if a == "baseline" {
                baseline_of(&session, &b)?
            } else {
                a
            };
            let resp = call(
                &session,
                Request::CompareRuns {
                    a,
                    b,
                    options: Some(CompareOptions {
                        duration_threshold: threshold,
                    }),
                },
                "compare",
            )?;
            let Response::CompareRuns(c) = resp else {
                return Err(unexpected("compare_runs", resp));
            };
            if json {
                crate::term::print_json(&c)?;
                return Ok(0);
            }
            for (label, list) in [
                ("new failures", &c.new_failures),
                ("fixed", &c.fixed),
                ("still failing", &c.still_failing),
                ("added", &c.added),
                ("removed", &c.removed),
                ("message changes", &c.message_changes),
                ("duration regressions", &c.duration_regressions),
            ] {
                out!("{label}: {}", list.len());
                for d in list.iter() {
                    out!(
                        "  {:<24} {:<12} {} -> {}",
                        safe(&d.task),
                        safe(d.lane.as_deref().unwrap_or("-")),
                        safe(d.a_result.as_deref().unwrap_or("-")),
                        safe(d.b_result.as_deref().unwrap_or("-"))
                    );
                }
            }
            out!("{} -> {}", safe(&c.a), safe(&c.b));
            out!("still passing: {}", c.still_passing.len());
            for p in &c.param_differences {
                out!(
                    "param {}: {} -> {}",
                    safe(&p.key),
                    p.a.as_ref().map_or("-".into(), |v| v.to_string()),
                    p.b.as_ref().map_or("-".into(), |v| v.to_string())
                );
            }
        }
        View::Pin { run, model } => {
            let resp = call(
                &session,
                Request::PinBaseline {
                    run_id: run,
                    dut_model: model,
                },
                "pin",
            )?;
            let Response::PinBaseline(b) = resp else {
                return Err(unexpected("pin_baseline", resp));
            };
            out!(
                "{} is the baseline of {} on {}",
                safe(&b.run_id),
                safe(&b.pack),
                safe(b.dut_model.as_deref().unwrap_or("runs without a DUT model"))
            );
        }
        View::Unpin { pack, model } => {
            let resp = call(
                &session,
                Request::UnpinBaseline {
                    pack,
                    dut_model: model,
                },
                "unpin",
            )?;
            let Response::UnpinBaseline { removed } = resp else {
                return Err(unexpected("unpin_baseline", resp));
            };
            out!(
                "{}",
                if removed {
                    "unpinned"
                } else {
                    "no baseline was pinned there"
                }
            );
        }
        View::Baselines { pack, json } => {
            let resp = call(&session, Request::Baselines { pack }, "baselines")?;
            let Response::Baselines(list) = resp else {
                return Err(unexpected("baselines", resp));
            };
            if json {
                crate::term::print_json(&list)?;
                return Ok(0);
            }
            for b in &list {
                out!(
                    "{:<16}  {:<16}  {}  pinned {}",
                    safe(&b.pack),
                    safe(b.dut_model.as_deref().unwrap_or("-")),
                    safe(&b.run_id),
                    &format_utc(b.pinned_ms)[..19]
                );
            }
            if list.is_empty() {
                out!("no baselines pinned");
            }
        }
        View::Prune { .. } | View::Keep { .. } | View::Usage { .. } => {
            unreachable!("answered above")
        }
    }
    Ok(0)
}
