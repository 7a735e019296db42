//! Run one attempt's phases (setup, main, teardown) in the occurrence's folder: write its
//! parameters file, start each phase on the run's runner as stops allow, and stream its
//! log lines.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::EpochMs;
use crate::exec::{self, LiveLog, PhaseOutcome, StopSignal};
use crate::model::StopLevel;
use crate::outcome::{Phase, ABORTED, ERRORED, TIMEOUT};
use crate::run::events::{RunEvent, TaskState};
use crate::run::runner::{relative_to, PhaseCall, PhaseJob};
use crate::run::taskfiles::{log_name, open_params_file, ParamsFile, PARAMS_FILE};
use crate::store::{TaskKind, TaskPaths};

use super::finish::Phases;
use super::report::report_sink;
use super::{is_failure, stopped, ItemJob, NotRun, RunCtx, COMMIT_WITHIN};

pub(super) async fn run_phases(
    ctx: &Arc<RunCtx>,
    job: &ItemJob,
    occ_dir: &std::path::Path,
    artifacts: &std::path::Path,
    paths: &TaskPaths,
) -> Result<Phases, NotRun> {
    let params_file = occ_dir.join(PARAMS_FILE);
    let params_doc = ParamsFile {
        run_id: &ctx.run_id,
        task: &job.def.name,
        kind: job.kind,
        group: job.group.as_deref(),
        lane: &job.lane,
        dut: job.dut.as_ref(),
        ats: ctx.ats.as_deref(),
        rack: job.dut.as_ref().and_then(|d| d.rack.as_deref()),
        slot: job.dut.as_ref().and_then(|d| d.slot),
        global_params: &ctx.params_json,
        task_params: &job.def,
        reservations: &job.holdings,
    };
    let params = serde_json::to_vec_pretty(&params_doc).expect("plain JSON");
    open_params_file(occ_dir, artifacts, &params_file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &params))
        .map_err(|e| NotRun {
            message: format!("cannot write {}: {e}", params_file.display()),
            files: true,
        })?;

    let mut phases = Phases {
        setup: None,
        main: None,
        teardown: None,
    };
    let ended_itself = |o: &PhaseOutcome| !matches!(o.result.as_str(), ERRORED | TIMEOUT | ABORTED);
    // A graceful stop ends setups and tests; teardown tasks (and a task's own teardown
    // phase) only end on a stop at once.
    let first_at = if job.kind == TaskKind::Teardown {
        StopLevel::AtOnce
    } else {
        StopLevel::Graceful
    };
    if let (Some(argv), false) = (&job.def.setup, stopped(ctx, first_at)) {
        let o = run_one(
            ctx,
            job,
            Phase::Setup,
            first_at,
            argv,
            occ_dir,
            &params_file,
            paths,
        )
        .await?;
        phases.setup = Some(o);
    }
    let setup_ok = phases
        .setup
        .as_ref()
        .is_none_or(|s| !is_failure(&ctx.params, &s.result));
    if setup_ok && !stopped(ctx, first_at) {
        let o = run_one(
            ctx,
            job,
            Phase::Main,
            first_at,
            &job.def.run,
            occ_dir,
            &params_file,
            paths,
        )
        .await?;
        phases.main = Some(o);
    } else if !setup_ok {
        tracing::info!(run_id = %ctx.run_id, task = %job.def.name, "setup failed; main phase not run");
    }
    if let Some(argv) = &job.def.teardown {
        let clean = setup_ok && phases.main.as_ref().is_some_and(ended_itself);
        if (clean || job.def.always_teardown) && !stopped(ctx, StopLevel::AtOnce) {
            let o = run_one(
                ctx,
                job,
                Phase::Teardown,
                StopLevel::AtOnce,
                argv,
                occ_dir,
                &params_file,
                paths,
            )
            .await?;
            phases.teardown = Some(o);
        }
    }
    Ok(phases)
}

#[allow(clippy::too_many_arguments)]
async fn run_one(
    ctx: &Arc<RunCtx>,
    job: &ItemJob,
    phase: Phase,
    stop_at: StopLevel,
    argv: &[String],
    occ_dir: &std::path::Path,
    params_file: &std::path::Path,
    paths: &TaskPaths,
) -> Result<PhaseOutcome, NotRun> {
    let result_name = match phase {
        Phase::Main => "result.json".to_string(),
        p => format!("{}.result.json", p.as_str()),
    };
    let runner = ctx.runners.lane(&job.lane);
    let here = runner.reports_here();
    let phase_job = PhaseJob {
        run_id: ctx.run_id.clone(),
        item: job.item as u32,
        task: job.def.name.clone(),
        lane: job.lane.clone(),
        phase,
        snapshot_hash: ctx.snapshot_hash.clone(),
        task_dir: relative_to(&job.task_dir, &ctx.pack_dir),
        argv: argv.to_vec(),
        dir: relative_to(occ_dir, &ctx.run_dir),
        log_file: log_name(phase),
        result_file: result_name,
        params: if here {
            None
        } else {
            // The runner is on another machine: it gets the file's content.
            std::fs::read_to_string(params_file).ok()
        },
        // Within `bounds::MAX_TASK_TIME_S` once loaded; clamped here too, as a float
        // beyond Duration's range would panic.
        max_runtime_ms: job.def.max_runtime.filter(|s| *s >= 0.0).and_then(|s| {
            Duration::try_from_secs_f64(s.min(f64::from(crate::bounds::MAX_TASK_TIME_S)))
                .ok()
                .map(|d| d.as_millis() as u64)
        }),
        kill_grace_ms: ctx.limits.kill_grace.as_millis() as u64,
    };
    let live = {
        let events = ctx.events.clone();
        let seq = ctx.seq.clone();
        let clock = ctx.clock.clone();
        let run_id = ctx.run_id.clone();
        let task = job.def.name.clone();
        let lane = job.lane.clone();
        let item = job.item as u32;
        Box::new(move |l: LiveLog| {
            if !events.has_listeners() {
                return;
            }
            let ts = clock.now_ms();
            let ev = match l {
                LiveLog::Lines(lines) => RunEvent::Log {
                    run_id: run_id.clone(),
                    seq: seq.next(),
                    item,
                    task: task.clone(),
                    lane: lane.clone(),
                    phase,
                    lines,
                    ts,
                },
                LiveLog::Dropped(n) => RunEvent::LogDropped {
                    run_id: run_id.clone(),
                    seq: seq.next(),
                    item,
                    task: task.clone(),
                    lane: lane.clone(),
                    phase,
                    count: n.min(u32::MAX as u64) as u32,
                    ts,
                },
            };
            events.send(ev);
        }) as exec::LiveSink
    };
    // The store hears of the start only if the phase still runs `COMMIT_WITHIN` later:
    // a shorter phase's start would be overwritten by its result before either is
    // committed, so nobody outside could see it anyway. (The result carries the paths.)
    let spawned = std::sync::OnceLock::<(u32, EpochMs)>::new();
    let on_spawn = |pid: u32| {
        let now = ctx.clock.now_ms();
        let _ = spawned.set((pid, now));
        {
            let mut live = ctx.live.lock().unwrap_or_else(|p| p.into_inner());
            live.phase[job.item] = Some(phase);
            live.operator[job.item] = None;
        }
        ctx.events.send_with(|| RunEvent::TaskState {
            run_id: ctx.run_id.clone(),
            seq: ctx.seq.next(),
            item: job.item as u32,
            task: job.def.name.clone(),
            kind: job.kind,
            group: job.group.clone(),
            lane: Some(job.lane.clone()),
            state: TaskState::Running {
                phase,
                waiting: None,
            },
            ts: now,
        });
    };
    let running = runner.run_phase(PhaseCall {
        job: phase_job,
        reporter: ctx.reporter.as_deref(),
        live: Some(live),
        report: Some(report_sink(ctx, job, phase)),
        prompts: Some(&ctx.prompts),
        stop: Some(StopSignal {
            level: ctx.stop.clone(),
            at: stop_at,
        }),
        on_spawn: Box::new(on_spawn),
    });
    tokio::pin!(running);
    let outcome = tokio::select! {
        biased;
        o = &mut running => o,
        _ = tokio::time::sleep(COMMIT_WITHIN) => {
            if let Some(&(pid, at)) = spawned.get() {
                if let Err(e) = ctx.store.task_phase_started(
                    job.task_id,
                    &job.lane,
                    phase.as_str(),
                    at,
                    Some(pid as i32),
                    paths,
                ) {
                    ctx.store_failed("running task", Some(&job.def.name), &e);
                }
            }
            running.await
        }
    };
    let outcome = outcome.map_err(|e| NotRun {
        files: matches!(e, exec::ExecError::LogFile { .. }),
        message: e.to_string(),
    })?;
    // A prompt still open when the phase ended waits no more.
    ctx.live.lock().unwrap_or_else(|p| p.into_inner()).operator[job.item] = None;
    Ok(outcome)
}
