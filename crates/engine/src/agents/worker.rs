//! The agent's side: runs the phases its server sends with the same `exec` code as a
//! console (process group, pdeathsig, `max_runtime`, the environment protocol, a
//! reporter socket of its own per run), from a bounded cache of pack snapshots, and sends
//! back the phase's live output, its files (log, result file, artifacts) and its outcome.
//!
//! Its work directory holds `snapshots/<hash>/` (at most [`SNAPSHOTS_CACHED`], the least
//! recently used one not in use removed first; one already there costs no transfer) and
//! `runs/<id>/`, the folders of the phases running now (each removed once its files are
//! sent) and the reporter socket of each of the last runs (the least recently used idle
//! ones beyond [`IDLE_RUNS_KEPT`] removed).

use std::collections::HashMap;
use std::future::Future;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tokio::sync::{mpsc, watch};

use super::snapshot;
use super::wire::{AgentMsg, Snapshot};
use crate::clock::Clock;
use crate::exec::{self, ExecLimits, LiveSink, PhaseOutcome, StopSignal};
use crate::model::StopLevel;
use crate::run::execute::{run_job, Hooks, Site};
use crate::run::runner::PARAMS_FILE;
use crate::run::PhaseJob;

/// Pack snapshots an agent keeps (StormTest keeps four working copies).
pub const SNAPSHOTS_CACHED: usize = 4;

/// Bytes of a file per [`AgentMsg::File`] piece.
const PIECE: usize = 256 * 1024;

/// Artifact files sent back per phase, at most.
const MAX_ARTIFACTS: usize = 1_000;

/// Where the agent fetches a snapshot it does not have (its server's `agent_snapshot`).
pub trait SnapshotSource: Send + Sync {
    fn fetch<'a>(
        &'a self,
        hash: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Snapshot, String>> + Send + 'a>>;
}

#[derive(Default)]
struct Cache {
    /// Hashes, least recently used first.
    order: Vec<String>,
    in_use: HashMap<String, usize>,
}

struct Run {
    reporter: Option<Arc<exec::reporter::Reporter>>,
    phases: usize,
    last_used: std::time::Instant,
}

/// Runs whose reporter and folder an agent keeps while none of their phases runs (the
/// least recently used idle ones go beyond this).
const IDLE_RUNS_KEPT: usize = 8;

/// Runs phases for one agent.
pub struct Worker {
    work_dir: PathBuf,
    clock: Arc<dyn Clock>,
    limits: ExecLimits,
    source: Arc<dyn SnapshotSource>,
    cache: Mutex<Cache>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    jobs: Mutex<HashMap<u64, watch::Sender<Option<StopLevel>>>>,
    runs: Mutex<HashMap<String, Run>>,
    prompts: Arc<exec::prompts::Prompts>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A snapshot in use by a phase; released when dropped.
struct InUse<'a> {
    worker: &'a Worker,
    hash: String,
    dir: PathBuf,
}

impl Drop for InUse<'_> {
    fn drop(&mut self) {
        let mut c = lock(&self.worker.cache);
        if let Some(n) = c.in_use.get_mut(&self.hash) {
            *n -= 1;
            if *n == 0 {
                c.in_use.remove(&self.hash);
            }
        }
    }
}

impl Worker {
    /// A worker on `work_dir` (made if missing); the snapshots already there are its
    /// cache, oldest first.
    pub fn new(
        work_dir: &Path,
        clock: Arc<dyn Clock>,
        source: Arc<dyn SnapshotSource>,
    ) -> std::io::Result<Arc<Self>> {
        let work_dir = std::path::absolute(work_dir)?;
        let snaps = work_dir.join("snapshots");
        std::fs::create_dir_all(&snaps)?;
        // Phases of an earlier life of this agent are over.
        let _ = std::fs::remove_dir_all(work_dir.join("runs"));
        let mut found: Vec<(std::time::SystemTime, String)> = Vec::new();
        for e in std::fs::read_dir(&snaps)?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                let _ = std::fs::remove_dir_all(e.path());
                continue;
            }
            let t = e
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            found.push((t, name));
        }
        found.sort();
        Ok(Arc::new(Self {
            work_dir,
            clock,
            limits: ExecLimits::default(),
            source,
            cache: Mutex::new(Cache {
                order: found.into_iter().map(|(_, n)| n).collect(),
                in_use: HashMap::new(),
            }),
            fetching: tokio::sync::Mutex::new(()),
            jobs: Mutex::default(),
            runs: Mutex::default(),
            prompts: Arc::default(),
        }))
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The hashes of the snapshots it keeps, least recently used first.
    pub fn cached(&self) -> Vec<String> {
        lock(&self.cache).order.clone()
    }

    /// Phases running now.
    pub fn running(&self) -> usize {
        lock(&self.jobs).len()
    }

    /// The phases running now. A phase leaves this list only after its
    /// [`AgentMsg::Done`] went to its sender.
    pub fn running_jobs(&self) -> Vec<u64> {
        lock(&self.jobs).keys().copied().collect()
    }

    /// Run phase `id`; what it says goes to `out`, [`AgentMsg::Done`] last.
    pub fn start(self: &Arc<Self>, id: u64, job: PhaseJob, out: mpsc::UnboundedSender<AgentMsg>) {
        let (stop_tx, stop_rx) = watch::channel(None);
        lock(&self.jobs).insert(id, stop_tx);
        let me = self.clone();
        tokio::spawn(async move {
            let outcome = me.attempt(id, &job, &out, stop_rx).await;
            if let Err(e) = &outcome {
                tracing::warn!(run_id = %job.run_id, task = %job.task, error = %e, "phase not run");
            }
            let _ = out.send(AgentMsg::Done {
                job: id,
                outcome: outcome.map(Box::new),
            });
            lock(&me.jobs).remove(&id);
        });
    }

    /// Terminate phase `id` (its group gets SIGTERM, SIGKILL after the grace).
    pub fn stop(&self, id: u64) {
        if let Some(s) = lock(&self.jobs).get(&id) {
            s.send_replace(Some(StopLevel::AtOnce));
        }
    }

    /// The operator's answer (from the server) to prompt `prompt` of phase `job`; its
    /// phase gets it, unless the prompt timed out or its phase ended meanwhile.
    pub fn answer(&self, job: u64, prompt: u64, text: String, by: Option<String>) {
        if let Err(e) = self.prompts.answer(prompt, text, by) {
            tracing::info!(job, prompt, error = %e, "an answer the phase no longer waits for");
        }
    }

    /// Terminate every phase (the agent stops).
    pub fn stop_all(&self) {
        for s in lock(&self.jobs).values() {
            s.send_replace(Some(StopLevel::AtOnce));
        }
    }

    async fn attempt(
        &self,
        id: u64,
        job: &PhaseJob,
        out: &mpsc::UnboundedSender<AgentMsg>,
        stop: watch::Receiver<Option<StopLevel>>,
    ) -> Result<PhaseOutcome, String> {
        job.check().map_err(|e| e.to_string())?;
        let snap = self.snapshot(&job.snapshot_hash).await?;
        let run_dir = self.work_dir.join("runs").join(&job.run_id);
        let dir = job.dir_in(&run_dir);
        let artifacts = dir.join("artifacts");
        let prepared = std::fs::create_dir_all(&artifacts).and_then(|()| {
            std::fs::write(dir.join(PARAMS_FILE), job.params.as_deref().unwrap_or("{}"))
        });
        if let Err(e) = prepared {
            return Err(format!("cannot prepare {}: {e}", dir.display()));
        }
        let reporter = self.enter_run(&job.run_id, &run_dir);
        let live_out = out.clone();
        let live: LiveSink = Box::new(move |log| {
            let _ = live_out.send(AgentMsg::Log { job: id, log });
        });
        let spawn_out = out.clone();
        let site = Site {
            run_dir: &run_dir,
            pack_dir: &snap.dir,
            limits: &self.limits,
            clock: &self.clock,
            reporter: reporter.as_deref(),
        };
        let hooks = Hooks {
            live: Some(live),
            report: Some(relay(id, out.clone())),
            stop: Some(StopSignal {
                level: stop,
                at: StopLevel::Graceful,
            }),
            on_spawn: Box::new(move |pid| {
                let _ = spawn_out.send(AgentMsg::Spawned { job: id, pid });
            }),
        };
        let ran = run_job(site, job, hooks).await;
        if ran.is_ok() {
            send_files(&dir, job, id, out);
        }
        drop(snap);
        self.leave_run(&job.run_id, &dir);
        ran.map_err(|e| e.to_string())
    }

    /// The run's reporter (started with its first phase here).
    fn enter_run(&self, run_id: &str, run_dir: &Path) -> Option<Arc<exec::reporter::Reporter>> {
        let mut runs = lock(&self.runs);
        if !runs.contains_key(run_id) {
            let mut idle: Vec<(std::time::Instant, String)> = runs
                .iter()
                .filter(|(_, r)| r.phases == 0)
                .map(|(id, r)| (r.last_used, id.clone()))
                .collect();
            if idle.len() >= IDLE_RUNS_KEPT {
                idle.sort();
                for (_, id) in &idle[..=idle.len() - IDLE_RUNS_KEPT] {
                    runs.remove(id);
                    let _ = std::fs::remove_dir_all(self.work_dir.join("runs").join(id));
                }
            }
        }
        let run = runs.entry(run_id.to_string()).or_insert_with(|| Run {
            reporter: exec::reporter::Reporter::start(
                run_dir,
                run_id,
                self.clock.clone(),
                self.prompts.clone(),
            )
            .map_err(
                |e| tracing::warn!(run_id, error = %e, "no reporter socket for this run's phases"),
            )
            .ok()
            .map(Arc::new),
            phases: 0,
            last_used: std::time::Instant::now(),
        });
        run.phases += 1;
        run.last_used = std::time::Instant::now();
        run.reporter.clone()
    }

    /// A phase of the run ended (its files are with the server now: its folder goes).
    fn leave_run(&self, run_id: &str, dir: &Path) {
        let _ = std::fs::remove_dir_all(dir);
        if let Some(run) = lock(&self.runs).get_mut(run_id) {
            run.phases -= 1;
            run.last_used = std::time::Instant::now();
        }
    }

    /// The snapshot `hash`, from the cache or fetched into it.
    async fn snapshot(&self, hash: &str) -> Result<InUse<'_>, String> {
        if let Some(u) = self.cached_use(hash) {
            return Ok(u);
        }
        let _one = self.fetching.lock().await;
        if let Some(u) = self.cached_use(hash) {
            return Ok(u);
        }
        let snaps = self.work_dir.join("snapshots");
        let snap = self.source.fetch(hash).await?;
        if snap.hash != hash {
            return Err(format!("asked for snapshot {hash}, got {}", snap.hash));
        }
        let tmp = snaps.join(format!(".fetch-{hash}"));
        let dir = snaps.join(hash);
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_dir_all(&dir);
        snapshot::write(&snap, &tmp)
            .and_then(|()| std::fs::rename(&tmp, &dir))
            .map_err(|e| {
                let _ = std::fs::remove_dir_all(&tmp);
                format!("cannot keep snapshot {hash}: {e}")
            })?;
        tracing::info!(hash, files = snap.files.len(), "pack snapshot fetched");
        let mut c = lock(&self.cache);
        c.order.retain(|h| h != hash);
        c.order.push(hash.to_string());
        *c.in_use.entry(hash.to_string()).or_default() += 1;
        // The least recently used copies not in use go beyond the bound.
        while c.order.len() > SNAPSHOTS_CACHED {
            let Some(pos) = c.order.iter().position(|h| !c.in_use.contains_key(h)) else {
                break;
            };
            let old = c.order.remove(pos);
            let _ = std::fs::remove_dir_all(snaps.join(&old));
            tracing::info!(hash = %old, "pack snapshot dropped from the cache");
        }
        Ok(InUse {
            worker: self,
            hash: hash.to_string(),
            dir,
        })
    }

    fn cached_use(&self, hash: &str) -> Option<InUse<'_>> {
        let dir = self.work_dir.join("snapshots").join(hash);
        let mut c = lock(&self.cache);
        let pos = c.order.iter().position(|h| h == hash)?;
        if !dir.is_dir() {
            c.order.remove(pos);
            return None;
        }
        let h = c.order.remove(pos);
        c.order.push(h);
        *c.in_use.entry(hash.to_string()).or_default() += 1;
        Some(InUse {
            worker: self,
            hash: hash.to_string(),
            dir,
        })
    }
}

/// Send the phase's log, its result file and its artifacts, in pieces.
fn send_files(dir: &Path, job: &PhaseJob, id: u64, out: &mpsc::UnboundedSender<AgentMsg>) {
    let mut files = vec![job.log_file.clone()];
    if dir.join(&job.result_file).is_file() {
        files.push(job.result_file.clone());
    }
    let mut stack = vec![PathBuf::from("artifacts")];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let child = rel.join(e.file_name());
            if t.is_dir() {
                stack.push(child);
            } else if t.is_file() && files.len() < MAX_ARTIFACTS {
                files.push(child.display().to_string());
            }
        }
    }
    for rel in files {
        if let Err(e) = send_file(dir, &rel, id, out) {
            tracing::warn!(run_id = %job.run_id, task = %job.task, file = rel, error = %e, "cannot send a phase's file");
        }
    }
}

fn send_file(
    dir: &Path,
    rel: &str,
    id: u64,
    out: &mpsc::UnboundedSender<AgentMsg>,
) -> std::io::Result<()> {
    let mut f = crate::userfile::open_regular(&dir.join(rel)).map_err(|e| match e {
        crate::userfile::OpenError::Io(e) => e,
        e => std::io::Error::other(e.to_string()),
    })?;
    let mut buf = vec![0u8; PIECE];
    let mut append = false;
    loop {
        let mut n = 0;
        while n < PIECE {
            let r = f.read(&mut buf[n..])?;
            if r == 0 {
                break;
            }
            n += r;
        }
        if n == 0 && append {
            return Ok(());
        }
        let _ = out.send(AgentMsg::File {
            job: id,
            path: rel.to_string(),
            data: base64::engine::general_purpose::STANDARD.encode(&buf[..n]),
            append,
        });
        if n < PIECE {
            return Ok(());
        }
        append = true;
    }
}

/// Relays the sections, measurements and prompts a phase reports to the server as they
/// happen.
fn relay(id: u64, out: mpsc::UnboundedSender<AgentMsg>) -> exec::reporter::ReportSink {
    use crate::reporter::{Change, Section};
    use exec::reporter::ReportEvent;
    Box::new(move |event| {
        let (change, report) = match event {
            ReportEvent::Changed(change, report) => (change, report),
            ReportEvent::Asked(view) => {
                let _ = out.send(AgentMsg::Prompt {
                    job: id,
                    prompt: Box::new(view.clone()),
                });
                return;
            }
            ReportEvent::Answered(view, answer) => {
                let _ = out.send(AgentMsg::PromptAnswered {
                    job: id,
                    prompt: view.id,
                    answer: answer.clone(),
                });
                return;
            }
        };
        let msg = match change {
            Change::Started(s) | Change::Stopped(s) => {
                let Some(section) = report.sections.get(*s as usize) else {
                    return;
                };
                AgentMsg::Section {
                    job: id,
                    id: *s,
                    section: Box::new(Section {
                        details: Vec::new(),
                        extra: Default::default(),
                        ..section.clone()
                    }),
                }
            }
            Change::Measured {
                section,
                measurement,
            } => AgentMsg::Measured {
                job: id,
                section: *section,
                measurement: Box::new(measurement.clone()),
            },
            Change::None | Change::Result => return,
        };
        let _ = out.send(msg);
    })
}
