//! Run one task phase as a child process (easypy tasks): own process group, the
//! environment protocol of DESIGN.md, live log capture, `max_runtime` kill, result parsing.
//!
//! Process lifetime rules:
//! - Every phase runs in its own process group (pgid = pid of the phase's process), so a
//!   timeout or a stop signals the whole group, grandchildren included.
//! - The child gets `PR_SET_PDEATHSIG(SIGKILL)`: when the console dies (even by SIGKILL) the
//!   phase process is killed by the kernel. The signal is tied to the *thread* that forked
//!   the child, so [`run_phase`] must be polled on a long-lived thread (a tokio worker or a
//!   current-thread runtime's thread), never inside `spawn_blocking`, whose threads exit
//!   when idle and would take their children with them.
//! - Grandchildren do not get the death signal. Everything a phase starts inherits its
//!   `TESTBAY_RUN_ID`; at the next start, recovery kills every process carrying the id of
//!   a run the store reports interrupted ([`reap::kill_run_leftovers`]; the process group
//!   is recorded in the store too, for operators).
//! - When the phase's process exits, anything it left in its group is killed, and so is
//!   any process that left the group but still holds the phase's output pipe: a phase's
//!   processes end with the phase.
//! - Processes start through `clone(CLONE_VM | CLONE_VFORK)` (see `spawn`), not `fork`.
//! - The phase's task does all the waiting on the runtime's own thread: the exit through a
//!   pidfd, the output through its non-blocking pipe. No other thread takes part, so the
//!   end of one task and the start of the next need no hand-over between threads (each
//!   costs a wake-up, the largest single cost between two tasks on a busy machine). A
//!   flood of output is read in 64 KiB pieces that yield to other tasks like any I/O.
//!
//! The parts: `spawn` (the clone-based start), `guard` (the process that outlives a dead
//! console), `program` (the tasks' environment, `PATH` lookups cached), `output` (log
//! capture and the live stream), `outcome` (exit and result file → result), `reap`
//! (signalling groups, killing leftovers found through /proc).

mod guard;
mod spawn;
mod outcome;
mod output;
mod program;
mod sdk;
pub mod reap;
pub mod prompts;
pub mod reporter;

pub use guard::{guard_pid, start as start_guard, CONSOLE_ENV};
pub use outcome::{apply_report, cap_string, signal_name, Verdict};
pub use reap::{group_alive, signal_group};
pub use sdk::python_sdk_dir;

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::clock::{Clock, EpochMs};
use crate::measure::Measurement;
use crate::model::StopLevel;
use crate::outcome::{Phase, ERRORED};
use crate::pack::model::SubResult;
use crate::reporter::PhaseReport;
use outcome::EndedBy;
use output::{lock, pump, set_nonblocking, Output, QUIET_START};
use program::{base_envp, forget_program, resolve_program};

/// Failures that prevent a phase from being attempted at all. A program that cannot be
/// started is not an error here: it is an `Errored` [`PhaseOutcome`].
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot create log file {path}: {source}")]
    LogFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create output pipe: {0}")]
    Pipe(std::io::Error),
    #[error("phase has an empty argv")]
    EmptyArgv,
}

/// Limits of one phase. The defaults suit a console: output is never held in memory.
#[derive(Debug, Clone)]
pub struct ExecLimits {
    /// Time between SIGTERM and SIGKILL to the process group.
    pub kill_grace: Duration,
    /// Bytes written to the log file before it is truncated with a marker line.
    pub log_cap_bytes: u64,
    /// Longer output lines are split into pieces of at most this many bytes.
    pub line_cap_bytes: usize,
    /// Lines per second forwarded to live viewers; the log file gets every line.
    pub live_lines_per_sec: u32,
    /// Lines that may be forwarded at once before the rate applies.
    pub live_burst: u32,
    /// Live lines are cut to this many bytes (the log file keeps the full line).
    pub live_line_cap_bytes: usize,
    /// Result files larger than this are refused (Errored).
    pub result_file_cap_bytes: u64,
    /// Raw text of an invalid result file kept for the operator, at most this many bytes.
    pub raw_result_cap_bytes: usize,
    /// How long to wait for the output pipe to close after the group was killed (a process
    /// that left the group with setsid may still hold it).
    pub drain_timeout: Duration,
}

impl Default for ExecLimits {
    fn default() -> Self {
        Self {
            kill_grace: Duration::from_secs(5),
            log_cap_bytes: 64 * 1024 * 1024,
            line_cap_bytes: 8 * 1024,
            live_lines_per_sec: 200,
            live_burst: 500,
            live_line_cap_bytes: 2 * 1024,
            result_file_cap_bytes: 4 * 1024 * 1024,
            raw_result_cap_bytes: 64 * 1024,
            drain_timeout: Duration::from_secs(2),
        }
    }
}

/// The environment protocol (`TESTBAY_*` variables) of one phase.
#[derive(Debug, Clone)]
pub struct ProtocolEnv {
    pub run_id: String,
    pub task: String,
    pub phase: Phase,
    /// `TESTBAY_PARAMS`: JSON file with global params, task params, DUT, ATS, reservations.
    pub params_file: PathBuf,
    /// `TESTBAY_RESULT`: where the phase may write its Task Return.
    pub result_file: PathBuf,
    /// `TESTBAY_ARTIFACTS`: folder for attachments.
    pub artifacts_dir: PathBuf,
    /// `TESTBAY_REPORTER` and `TESTBAY_REPORTER_TOKEN`: the run's reporter socket and
    /// this phase's token (`reporter`).
    pub reporter: Option<ReporterEnv>,
}

/// Where a phase finds its run's reporter.
#[derive(Debug, Clone)]
pub struct ReporterEnv {
    pub socket: PathBuf,
    pub token: String,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct PhaseCommand {
    /// argv; a relative program path containing `/` is taken relative to `cwd`, a bare
    /// name is looked up on `PATH`.
    pub argv: Vec<String>,
    /// Working directory: the task file's folder.
    pub cwd: PathBuf,
    pub env: ProtocolEnv,
    pub log_file: PathBuf,
    pub max_runtime: Option<Duration>,
    pub limits: ExecLimits,
}

/// A line for live viewers (rate-limited; the log file has everything).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum LiveLog {
    /// Lines of one read of the output, in order.
    Lines(Vec<String>),
    /// This many lines were not forwarded live since the previous `Dropped`. Sent at most
    /// once per [`DROPPED_EVERY`] per phase (and once more when the phase ends), however
    /// many lines are held back.
    Dropped(u64),
}

/// Least time between two [`LiveLog::Dropped`] of one phase.
pub const DROPPED_EVERY: Duration = Duration::from_secs(1);

/// Written log lines reach the file at most this long after they were read, while output
/// keeps coming (live readers of the log file follow it this closely).
pub const LOG_FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Receives live output. Called on the thread that runs the phase; must not block.
pub type LiveSink = Box<dyn FnMut(LiveLog) + Send + 'static>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogStats {
    /// Bytes of output the phase produced (all of it, written or not).
    pub bytes: u64,
    pub lines: u64,
    /// The log file hit its cap; the rest was discarded.
    pub truncated: bool,
    /// Lines not forwarded live because of the rate limit.
    pub live_dropped: u64,
}

/// How the phase ended, before result interpretation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// The program could not be started.
    NotStarted,
}

/// The interpreted outcome of one phase (it travels from a rack agent as JSON).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PhaseOutcome {
    pub phase: Phase,
    pub result: String,
    pub message: String,
    /// `metadata` of the result file other than `message`.
    pub metadata: Map<String, Value>,
    pub multi_result: Vec<SubResult>,
    /// The result file's text when it could not be used (capped).
    pub raw_result: Option<String>,
    /// Measurements of the result file, then those reported live (not yet judged).
    pub measurements: Vec<Measurement>,
    /// What the phase reported through the reporter (sections, details, its result).
    pub report: Option<PhaseReport>,
    /// What the result name came from.
    pub verdict: Verdict,
    pub exit: Exit,
    pub pid: Option<u32>,
    pub started_ms: EpochMs,
    pub finished_ms: EpochMs,
    pub log: LogStats,
}

/// How long after the phase's process exited its output may stay open before whatever
/// holds it is killed.
const HOLDER_GRACE: Duration = Duration::from_millis(100);

/// Asks phases to end: a phase is terminated (result Aborted) once `level` reaches `at`.
/// One channel serves a whole run: a graceful stop ends setups and tests while teardowns
/// (which wait for a stop at once) go on.
#[derive(Debug, Clone)]
pub struct StopSignal {
    /// The run's stop level; `None` while it is not stopped.
    pub level: watch::Receiver<Option<StopLevel>>,
    pub at: StopLevel,
}

impl StopSignal {
    pub fn is_set(&self) -> bool {
        self.level.borrow().is_some_and(|l| l >= self.at)
    }
}

/// Run one phase to its end. `stop` reaching its level terminates the group (result
/// Aborted).
/// `on_spawn` gets the pid (= pgid) as soon as the process exists.
///
/// Must be polled on a long-lived thread; see the module docs (pdeathsig).
pub async fn run_phase(
    cmd: &PhaseCommand,
    clock: &Arc<dyn Clock>,
    live: Option<LiveSink>,
    mut stop: Option<StopSignal>,
    on_spawn: impl FnOnce(u32),
) -> Result<PhaseOutcome, ExecError> {
    let phase = cmd.env.phase;
    let program = cmd.argv.first().ok_or(ExecError::EmptyArgv)?;
    let log_file = create_empty(&cmd.log_file).map_err(|source| ExecError::LogFile {
        path: cmd.log_file.clone(),
        source,
    })?;
    // A result file from an earlier attempt must not be mistaken for this one's.
    let _ = std::fs::remove_file(&cmd.env.result_file);
    let (reader, writer) = std::io::pipe().map_err(ExecError::Pipe)?;

    let mut protocol_env = vec![
        ("TESTBAY_RUN_ID", OsStr::new(&cmd.env.run_id)),
        ("TESTBAY_TASK", OsStr::new(&cmd.env.task)),
        ("TESTBAY_PHASE", OsStr::new(phase.as_str())),
        ("TESTBAY_PARAMS", cmd.env.params_file.as_os_str()),
        ("TESTBAY_RESULT", cmd.env.result_file.as_os_str()),
        ("TESTBAY_ARTIFACTS", cmd.env.artifacts_dir.as_os_str()),
    ];
    if let Some(r) = &cmd.env.reporter {
        protocol_env.push((crate::reporter::SOCKET_ENV, r.socket.as_os_str()));
        protocol_env.push((crate::reporter::TOKEN_ENV, OsStr::new(&r.token)));
    }

    let started_ms = clock.now_ms();
    let program_path = resolve_program(program, &cmd.cwd);
    let env = (base_envp().as_slice(), &protocol_env[..]);
    let mut spawned = spawn::spawn(&program_path, &cmd.argv, &cmd.cwd, env, &writer);
    if spawned.is_err() && !program.contains('/') && program_path != Path::new(program) {
        // The remembered file is gone: search PATH afresh.
        forget_program(program);
        spawned = spawn::spawn(Path::new(program), &cmd.argv, &cmd.cwd, env, &writer);
    }
    // Our copy of the write end must go, or the pipe never reaches EOF.
    drop(writer);
    let spawned = match spawned {
        Ok(s) => s,
        Err(e) => {
            let message = format!("could not start `{program}`: {e}");
            let mut lf = log_file;
            let _ = writeln!(lf, "[testbay] {message}");
            return Ok(PhaseOutcome {
                phase,
                result: ERRORED.into(),
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
                finished_ms: clock.now_ms(),
                log: LogStats::default(),
            });
        }
    };
    let pid = spawned.pid as u32;
    on_spawn(pid);
    let pgid = spawned.pid;

    // The exit and the output both wake this task, on this thread: no other thread is
    // involved between a task's end and the next start.
    let exit_waiter = spawned
        .pidfd
        .as_ref()
        .and_then(|fd| fd.try_clone().ok())
        // SAFETY: the pidfd is our own duplicate, owned by the AsyncFd and closed with it.
        .and_then(|fd| unsafe { tokio::io::unix::AsyncFd::register(fd) }.ok());
    let exit_fut = async {
        match &exit_waiter {
            Some(fd) => loop {
                let Ok(mut ready) = fd.readable().await else {
                    break Err(());
                };
                if let Some(e) = spawn::try_reap(pgid) {
                    break Ok(e);
                }
                ready.clear_ready();
            },
            // Without a pidfd (kernels before 5.3), look at the process now and then.
            None => loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if let Some(e) = spawn::try_reap(pgid) {
                    break Ok(e);
                }
            },
        }
    };
    tokio::pin!(exit_fut);
    let out = std::sync::Mutex::new(Output::new(log_file, &cmd.limits, live));
    let reader = set_nonblocking(reader);
    if let Err(e) = &reader {
        lock(&out).note(&format!("cannot read the phase's output: {e}"));
    }
    let reader = reader.ok();
    let mut pump = Box::pin(pump(reader.as_ref(), &out, QUIET_START));
    let mut pump_done = reader.is_none();

    // A limit beyond what the clock can represent is no limit (it cannot elapse).
    let deadline = cmd
        .max_runtime
        .and_then(|d| tokio::time::Instant::now().checked_add(d));
    let mut ended_by = EndedBy::Itself;
    let exit = loop {
        tokio::select! {
            e = &mut exit_fut => break Some(e),
            _ = &mut pump, if !pump_done => pump_done = true,
            _ = sleep_until_opt(deadline) => { ended_by = EndedBy::Timeout; break None }
            _ = stop_requested(&mut stop) => { ended_by = EndedBy::Stop; break None }
        }
    };
    let exit = match exit {
        Some(e) => e,
        None => {
            tracing::info!(pid, task = %cmd.env.task, phase = phase.as_str(), reason = ?ended_by, "terminating process group");
            signal_group(pgid, libc::SIGTERM);
            let grace = tokio::time::sleep(cmd.limits.kill_grace);
            tokio::pin!(grace);
            let in_grace = loop {
                tokio::select! {
                    e = &mut exit_fut => break Some(e),
                    _ = &mut pump, if !pump_done => pump_done = true,
                    _ = &mut grace => break None,
                }
            };
            match in_grace {
                Some(e) => e,
                None => {
                    signal_group(pgid, libc::SIGKILL);
                    loop {
                        tokio::select! {
                            e = &mut exit_fut => break e,
                            _ = &mut pump, if !pump_done => pump_done = true,
                        }
                    }
                }
            }
        }
    };
    // Whatever the phase left behind in its group ends with it.
    if group_alive(pgid) {
        tracing::warn!(pid, task = %cmd.env.task, phase = phase.as_str(), "killing processes left in the phase's process group");
        signal_group(pgid, libc::SIGKILL);
    }
    // Output written before the exit is normally read by now (EOF). A process that left
    // the group (setsid, a daemon) may still hold the pipe: after a moment, end whatever
    // holds it, it belongs to this phase; stop reading `drain_timeout` after the exit.
    if !pump_done {
        // Read what is there now; usually the output ends with the process.
        pump_done = reader.as_ref().is_none_or(|r| lock(&out).read_available(r));
        pump = Box::pin(self::pump(reader.as_ref(), &out, Duration::ZERO));
    }
    if !pump_done {
        let drain = cmd.limits.drain_timeout;
        let first = HOLDER_GRACE.min(drain);
        if tokio::time::timeout(first, &mut pump).await.is_err() {
            if let Some(r) = &reader {
                let n = reap::kill_pipe_holders(r);
                if n > 0 {
                    lock(&out).note(&format!(
                        "killed {n} process(es) that left the phase's process group but kept its output open"
                    ));
                }
            }
            if tokio::time::timeout(drain.saturating_sub(first), &mut pump)
                .await
                .is_err()
            {
                lock(&out).note(&format!(
                    "output still open {drain:?} after the phase ended; stopped reading"
                ));
            }
        }
    }
    drop(pump);
    // The group is gone or dying: the guard need not kill it if the console dies now.
    guard::forget(pgid);
    let log = out.into_inner().unwrap_or_else(|p| p.into_inner()).finish();
    let ended = outcome::Ended {
        by: ended_by,
        exit,
        pid,
        started_ms,
        finished_ms: clock.now_ms(),
        log,
    };
    Ok(outcome::interpret(cmd, ended))
}

/// `File::create` that leaves an existing empty file alone: a task's files are usually
/// made empty ahead of time (`run::prepare`), and truncating one, even to no change, is a
/// journalled operation of its own on ext4.
pub fn create_empty(path: &Path) -> std::io::Result<File> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    if f.metadata()?.len() > 0 {
        f.set_len(0)?;
    }
    Ok(f)
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves once the stop level reaches the phase's `at` (never, without a signal).
pub(crate) async fn stop_requested(stop: &mut Option<StopSignal>) {
    match stop {
        Some(StopSignal { level, at }) => {
            let at = *at;
            if level
                .wait_for(|v| v.is_some_and(|l| l >= at))
                .await
                .is_err()
            {
                // Sender gone: nobody can stop us any more.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}
