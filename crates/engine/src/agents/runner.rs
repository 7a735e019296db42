//! The server's end of one run's phases on a rack agent: each phase is sent to the agent,
//! its live output passed to the run's sink, its operator prompts raised here
//! (`prompts`), its files written into the run's folder as for a local phase (so Results
//! reads them as always), and its outcome returned.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Map;
use tokio::sync::{mpsc, watch};

use super::prompts::Relayed;
use super::{Hub, JobEvent, StartError};
use crate::exec::reporter::ReportEvent;
use crate::exec::{stop_requested, Exit, LogStats, PhaseOutcome, Verdict};
use crate::outcome::{ABORTED, ERRORED};
use crate::reporter::{Change, PhaseReport};
use crate::run::runner::{plain_relative, PhaseCall, PhaseFuture};
use crate::run::{PhaseJob, PhaseRunner, RunnerHealth};

/// Runs one run's phases on the agent it was bound to at launch.
pub struct AgentRunner {
    hub: Arc<Hub>,
    agent: String,
    run_id: String,
    /// The run's folder on this server.
    run_dir: PathBuf,
    health: watch::Receiver<RunnerHealth>,
}

impl AgentRunner {
    pub(super) fn new(
        hub: Arc<Hub>,
        agent: String,
        run_id: String,
        run_dir: PathBuf,
        health: watch::Receiver<RunnerHealth>,
    ) -> Self {
        Self {
            hub,
            agent,
            run_id,
            run_dir,
            health,
        }
    }
}

impl Drop for AgentRunner {
    fn drop(&mut self) {
        self.hub.unbind(&self.agent, &self.run_id);
    }
}

/// Forgets the hub's record of a phase whose future was dropped before it ended.
struct JobGuard<'a> {
    hub: &'a Hub,
    agent: &'a str,
    job: u64,
}

impl Drop for JobGuard<'_> {
    fn drop(&mut self) {
        self.hub.forget_job(self.agent, self.job);
    }
}

impl PhaseRunner for AgentRunner {
    fn run_phase<'a>(&'a self, call: PhaseCall<'a>) -> PhaseFuture<'a> {
        Box::pin(async move {
            let PhaseCall {
                job,
                live,
                report,
                stop,
                on_spawn,
                prompts,
                ..
            } = call;
            // What the phase reported so far, as its sink reads it.
            let (mut report, mut reported) = (report, PhaseReport::default());
            let dir = job.dir_in(&self.run_dir);
            let started_ms = self.hub.clock.now_ms();
            let (tx, mut rx) = mpsc::unbounded_channel();
            let mut stop = stop;
            // `tx` goes with the start: once the hub drops the phase, `rx` ends.
            let id = match self.start(&job, tx, &mut stop).await {
                Ok(id) => id,
                Err(why) => return Ok(self.engine_outcome(&job, &dir, ABORTED, why, started_ms)),
            };
            let _guard = JobGuard {
                hub: &self.hub,
                agent: &self.agent,
                job: id,
            };
            let mut asked = Relayed::new(prompts, self.hub.clone(), &self.agent, id);
            let (mut on_spawn, mut live) = (Some(on_spawn), live);
            let mut stop_sent = false;
            loop {
                let event = tokio::select! {
                    ev = rx.recv() => ev,
                    () = stop_requested(&mut stop), if !stop_sent => {
                        stop_sent = true;
                        self.hub.stop_job(&self.agent, id);
                        continue;
                    }
                };
                match event {
                    Some(JobEvent::Spawned(pid)) => {
                        if let Some(f) = on_spawn.take() {
                            f(pid);
                        }
                    }
                    Some(JobEvent::Log(l)) => {
                        if let Some(sink) = live.as_mut() {
                            sink(l);
                        }
                    }
                    Some(JobEvent::Section(id, section)) => {
                        let i = id as usize;
                        if i < crate::reporter::MAX_SECTIONS {
                            reported
                                .sections
                                .resize(reported.sections.len().max(i + 1), (*section).clone());
                            reported.sections[i] = *section;
                            if let Some(sink) = report.as_mut() {
                                sink(ReportEvent::Changed(&Change::Started(id), &reported));
                            }
                        }
                    }
                    Some(JobEvent::Measured(section, measurement)) => {
                        if let Some(sink) = report.as_mut() {
                            let change = Change::Measured {
                                section,
                                measurement: *measurement,
                            };
                            sink(ReportEvent::Changed(&change, &reported));
                        }
                    }
                    Some(JobEvent::Asked(view)) => asked.asked(*view, report.as_mut()),
                    Some(JobEvent::Answered(on_agent, answer)) => {
                        asked.answered(on_agent, &answer, report.as_mut());
                    }
                    Some(JobEvent::File { path, data, append }) => {
                        if let Err(e) = write_piece(&dir, &path, &data, append) {
                            tracing::warn!(run_id = %job.run_id, task = %job.task, path, error = %e, "cannot store a file the agent sent");
                        }
                    }
                    Some(JobEvent::Done(Ok(outcome))) => return Ok(*outcome),
                    Some(JobEvent::Done(Err(why))) => {
                        let why = format!("agent {}: {why}", self.agent);
                        return Ok(self.engine_outcome(&job, &dir, ERRORED, why, started_ms));
                    }
                    Some(JobEvent::Lost(why)) => {
                        return Ok(self.engine_outcome(&job, &dir, ABORTED, why, started_ms))
                    }
                    None => {
                        let why = format!("agent {} dropped the phase", self.agent);
                        return Ok(self.engine_outcome(&job, &dir, ABORTED, why, started_ms));
                    }
                }
            }
        })
    }

    fn reports_here(&self) -> bool {
        false
    }

    fn health(&self) -> Option<watch::Receiver<RunnerHealth>> {
        Some(self.health.clone())
    }
}

impl AgentRunner {
    /// Send `job` to the agent. While the agent is away (its connection just dropped, a
    /// new one not yet made) the phase waits for it as the run does: until it is back, or
    /// lost after the grace period, or the run is stopped. (A Start sent on a connection
    /// that was dying is sent again when the agent comes back: see `Hub::connect`.)
    async fn start(
        &self,
        job: &PhaseJob,
        events: mpsc::UnboundedSender<JobEvent>,
        stop: &mut Option<crate::exec::StopSignal>,
    ) -> Result<u64, String> {
        let mut health = self.health.clone();
        let mut said = false;
        loop {
            // Listening for a connection before trying: one made in between still wakes
            // the wait below.
            let connected = self.hub.connected.notified();
            tokio::pin!(connected);
            connected.as_mut().enable();
            // Lost first: a run given up on sends nothing more, even to an agent back.
            if let RunnerHealth::Lost(lost) = &*health.borrow() {
                return Err(if lost.is_empty() {
                    format!("agent {} was lost", self.agent)
                } else {
                    lost.clone()
                });
            }
            let why = match self.hub.start_job(&self.agent, job, events.clone()) {
                Ok(id) => return Ok(id),
                Err(StartError::Gone(why)) => return Err(why),
                Err(StartError::Away(why)) => why,
            };
            if !std::mem::replace(&mut said, true) {
                tracing::info!(agent = %self.agent, run_id = %job.run_id, task = %job.task, "the agent is away; the phase waits for it");
            }
            tokio::select! {
                changed = health.changed() => {
                    if changed.is_err() {
                        return Err(why);
                    }
                }
                // A connection made without a change of health (it never stalled).
                () = &mut connected => {}
                () = stop_requested(stop) => {
                    return Err(format!("stopped while waiting for agent {}", self.agent));
                }
            }
        }
    }

    /// The outcome of a phase the agent did not run to its end, noted in its log.
    fn engine_outcome(
        &self,
        job: &PhaseJob,
        dir: &Path,
        result: &str,
        message: String,
        started_ms: crate::clock::EpochMs,
    ) -> PhaseOutcome {
        let note = format!("[testbay] {message}\n");
        let _ = write_piece(dir, &job.log_file, note.as_bytes(), true);
        PhaseOutcome {
            phase: job.phase,
            result: result.to_string(),
            message,
            metadata: Map::new(),
            multi_result: Vec::new(),
            raw_result: None,
            measurements: Vec::new(),
            report: None,
            verdict: Verdict::Engine,
            exit: Exit::NotStarted,
            pid: None,
            started_ms,
            finished_ms: self.hub.clock.now_ms(),
            log: LogStats::default(),
        }
    }
}

/// Write a piece of a phase's file into its attempt folder (`path` relative to it).
fn write_piece(dir: &Path, path: &str, data: &[u8], append: bool) -> std::io::Result<()> {
    let rel = plain_relative(path).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("`{path}` is not a plain relative path"),
        )
    })?;
    let to = dir.join(rel);
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&to)?;
    f.write_all(data)
}
