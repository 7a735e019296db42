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
//!   `TESTBAY_RUN_ID`; `store::Store::recover_interrupted` kills every process carrying
//!   the id of an interrupted run at the next start (the process group is recorded in the
//!   store too, for operators).
//! - When the phase's process exits, anything it left in its group is killed, and so is
//!   any process that left the group but still holds the phase's output pipe: a phase's
//!   processes end with the phase.
//! - Processes start through `clone(CLONE_VM | CLONE_VFORK)` (see `spawn`), not `fork`.
//! - The phase's task does all the waiting on the runtime's own thread: the exit through a
//!   pidfd, the output through its non-blocking pipe. No other thread takes part, so the
//!   end of one task and the start of the next need no hand-over between threads (each
//!   costs a wake-up, the largest single cost between two tasks on a busy machine). A
//!   flood of output is read in 64 KiB pieces that yield to other tasks like any I/O.

mod guard;
mod spawn;

pub use guard::{guard_pid, start as start_guard, CONSOLE_ENV};

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::watch;

use crate::clock::{Clock, EpochMs};
use crate::outcome::{Phase, ABORTED, ERRORED, FAILED, PASSED, TIMEOUT};
use crate::pack::model::{SubResult, TaskReturn};

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
#[derive(Debug, Clone, PartialEq)]
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

/// Output quiet for this long counts as idle: what is buffered is written out at once.
const LOG_IDLE: Duration = Duration::from_millis(20);

/// Receives live output. Called on the thread that runs the phase; must not block.
pub type LiveSink = Box<dyn FnMut(LiveLog) + Send + 'static>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// The program could not be started.
    NotStarted,
}

/// The interpreted outcome of one phase.
#[derive(Debug, Clone)]
pub struct PhaseOutcome {
    pub phase: Phase,
    pub result: String,
    pub message: String,
    /// `metadata` of the result file other than `message`.
    pub metadata: Map<String, Value>,
    pub multi_result: Vec<SubResult>,
    /// The result file's text when it could not be used (capped).
    pub raw_result: Option<String>,
    pub exit: Exit,
    pub pid: Option<u32>,
    pub started_ms: EpochMs,
    pub finished_ms: EpochMs,
    pub log: LogStats,
}

/// Why the phase was ended early by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndedBy {
    Itself,
    Timeout,
    Stop,
}

/// Asks phases to end: a phase is terminated (result Aborted) once `level` reaches `at`.
/// One channel serves a whole run: a graceful stop (level 1) ends setups and tests while
/// teardowns (which wait for level 2) go on.
#[derive(Debug, Clone)]
pub struct StopSignal {
    pub level: watch::Receiver<u8>,
    pub at: u8,
}

impl StopSignal {
    pub fn is_set(&self) -> bool {
        *self.level.borrow() >= self.at
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

    let protocol_env = [
        ("TESTBAY_RUN_ID", OsStr::new(&cmd.env.run_id)),
        ("TESTBAY_TASK", OsStr::new(&cmd.env.task)),
        ("TESTBAY_PHASE", OsStr::new(phase.as_str())),
        ("TESTBAY_PARAMS", cmd.env.params_file.as_os_str()),
        ("TESTBAY_RESULT", cmd.env.result_file.as_os_str()),
        ("TESTBAY_ARTIFACTS", cmd.env.artifacts_dir.as_os_str()),
    ];

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
                let n = kill_pipe_holders(r);
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
    let finished_ms = clock.now_ms();
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
            return Ok(out);
        }
        EndedBy::Stop => {
            out.result = ABORTED.into();
            out.message = "run stopped by the operator".into();
            return Ok(out);
        }
        EndedBy::Itself => {}
    }
    if !status_ok {
        out.result = ERRORED.into();
        out.message = "could not wait for the process (its pidfd failed)".into();
        return Ok(out);
    }
    if let Exit::Signal(sig) = exit {
        out.result = ERRORED.into();
        out.message = format!("killed by signal {sig} ({})", signal_name(sig));
        return Ok(out);
    }
    let code = match exit {
        Exit::Code(c) => c,
        _ => -1,
    };
    match read_result_file(&cmd.env.result_file, &cmd.limits) {
        ResultFile::Missing => {
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
    Ok(out)
}

/// The console's environment as tasks get it, read once: the console's own `TESTBAY_*`
/// variables left out, `TESTBAY_CONSOLE` (see `guard`) added, `PYTHONUNBUFFERED=1` added
/// unless set (Python tasks then stream
/// their output live instead of in 8 KiB blocks).
fn base_env() -> &'static Vec<(OsString, OsString)> {
    static ENV: std::sync::OnceLock<Vec<(OsString, OsString)>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| !k.as_bytes().starts_with(b"TESTBAY_"))
            .collect();
        if !env.iter().any(|(k, _)| k == "PYTHONUNBUFFERED") {
            env.push(("PYTHONUNBUFFERED".into(), "1".into()));
        }
        env.push((CONSOLE_ENV.into(), guard::token().into()));
        env
    })
}

/// [`base_env`] as `KEY=value` C strings, made once.
fn base_envp() -> &'static Vec<std::ffi::CString> {
    static ENVP: std::sync::OnceLock<Vec<std::ffi::CString>> = std::sync::OnceLock::new();
    ENVP.get_or_init(|| {
        base_env()
            .iter()
            .filter_map(|(k, v)| spawn::env_entry(k, v).ok())
            .collect()
    })
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

/// The file to execute for `program`: a relative path with a slash is relative to `cwd`;
/// a bare name is looked up in the tasks' `PATH` once per console and remembered (a
/// `PATH` search is a failed `execve` per directory before the right one, every phase).
fn resolve_program(program: &str, cwd: &Path) -> PathBuf {
    let p = Path::new(program);
    if program.contains('/') {
        return if p.is_relative() {
            cwd.join(p)
        } else {
            p.to_path_buf()
        };
    }
    let mut found = found_programs().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = found.get(program) {
        return path.clone();
    }
    match search_path(program) {
        Some(path) => {
            found.insert(program.to_string(), path.clone());
            path
        }
        // Not found: exec the bare name and let the kernel's error be the message.
        None => p.to_path_buf(),
    }
}

fn found_programs() -> &'static std::sync::Mutex<HashMap<String, PathBuf>> {
    static FOUND: std::sync::OnceLock<std::sync::Mutex<HashMap<String, PathBuf>>> =
        std::sync::OnceLock::new();
    FOUND.get_or_init(Default::default)
}

/// A remembered program that could not be executed any more (removed or moved since)
/// is looked up again next time.
fn forget_program(program: &str) {
    found_programs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(program);
}

/// The first executable regular file named `program` in the tasks' `PATH`.
fn search_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = base_env().iter().find(|(k, _)| k == "PATH")?.1.clone();
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(program))
        .find(|f| {
            f.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn stop_requested(stop: &mut Option<StopSignal>) {
    match stop {
        Some(StopSignal { level, at }) => {
            let at = *at;
            if level.wait_for(|v| *v >= at).await.is_err() {
                // Sender gone: nobody can stop us any more.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Send `sig` to every process of group `pgid`. A group that is gone is fine.
pub fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: plain syscall.
    unsafe {
        libc::killpg(pgid, sig);
    }
}

/// Whether any process (zombies included) is still in group `pgid`.
pub fn group_alive(pgid: libc::pid_t) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::killpg(pgid, 0) == 0 }
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

/// The read end of a phase's output pipe, made non-blocking.
fn set_nonblocking(reader: std::io::PipeReader) -> std::io::Result<std::io::PipeReader> {
    let fd = reader.as_raw_fd();
    // SAFETY: plain fcntl on our own descriptor.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(reader)
}

fn lock<'a, 'l>(out: &'a std::sync::Mutex<Output<'l>>) -> std::sync::MutexGuard<'a, Output<'l>> {
    out.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long a phase's output is left in its pipe before it is read as it comes. A phase
/// that ends sooner is read once, at its end, and its pipe is never watched: most tasks
/// of a big pack are short, and each wake-up costs more than reading. Live viewers see
/// a phase's first lines at most this late; 64 KiB fit in the pipe meanwhile.
const QUIET_START: Duration = Duration::from_millis(5);

/// Read the phase's output as it comes, from `after` on, until EOF (at once with no
/// reader). Between two reads the output is not borrowed, so the caller may add notes to
/// the log while this waits. Buffered log lines are written out once the output is quiet
/// for [`LOG_IDLE`].
async fn pump(
    reader: Option<&std::io::PipeReader>,
    out: &std::sync::Mutex<Output<'_>>,
    after: Duration,
) {
    let Some(reader) = reader else { return };
    if !after.is_zero() {
        tokio::time::sleep(after).await;
    }
    // SAFETY: `reader` outlives this registration (it is borrowed for this future's life).
    let watched = match unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(
            std::os::fd::AsFd::as_fd(reader),
            tokio::io::Interest::READABLE,
        )
    } {
        Ok(r) => r,
        Err(e) => {
            let e = std::io::Error::from(e);
            lock(out).note(&format!("cannot watch the phase's output: {e}"));
            return;
        }
    };
    loop {
        let quiet_for = lock(out).w.poll_timeout(-1);
        let ready = if quiet_for < 0 {
            watched.readable().await
        } else {
            tokio::select! {
                r = watched.readable() => r,
                _ = tokio::time::sleep(Duration::from_millis(quiet_for as u64)) => {
                    lock(out).w.idle();
                    continue;
                }
            }
        };
        let Ok(mut ready) = ready else { return };
        let mut o = lock(out);
        match ready.try_io(|_| o.read_once(reader)) {
            Ok(Ok(true)) => return,
            Ok(Ok(false)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(_)) => return,
            // Not readable after all: readiness was cleared, wait again.
            Err(_) => {}
        }
    }
}

/// Largest read of a phase's output.
const READ_MAX: usize = 64 * 1024;

/// A phase's output on its way to the log file and live viewers: the writer, the read
/// buffer and the line being gathered. Memory stays bounded by the buffer and one line
/// whatever the phase prints.
struct Output<'a> {
    w: LineWriter<'a>,
    buf: Vec<u8>,
    line: Vec<u8>,
    cap: usize,
}

impl<'a> Output<'a> {
    fn new(log_file: File, limits: &'a ExecLimits, live: Option<LiveSink>) -> Self {
        Output {
            w: LineWriter {
                log: BufWriter::with_capacity(64 * 1024, log_file),
                limits,
                written: 0,
                stats: LogStats::default(),
                live,
                bucket: TokenBucket::new(limits.live_lines_per_sec, limits.live_burst),
                pending_dropped: 0,
                dropped_sent: None,
                unflushed_since: None,
                log_failed: false,
                live_lines: Vec::new(),
            },
            buf: vec![0u8; 4096],
            line: Vec::new(),
            cap: limits.line_cap_bytes.max(16),
        }
    }

    /// One read of the (non-blocking) pipe into the log; `true` at EOF. `WouldBlock`
    /// when nothing is there.
    fn read_once(&mut self, reader: &std::io::PipeReader) -> std::io::Result<bool> {
        let Output { w, buf, line, cap } = self;
        let n = (&mut &*reader).read(buf)?;
        if n == 0 {
            return Ok(true);
        }
        w.take_chunk(&buf[..n], line, *cap);
        // Busy output is read in large pieces; most phases never need them.
        if n == buf.len() && buf.len() < READ_MAX {
            buf.resize(READ_MAX, 0);
        }
        Ok(false)
    }

    /// Read what the pipe holds now, a pipe's worth at most (a process still writing is
    /// left to the watched reading and its drain timeout); `true` if that reached EOF.
    fn read_available(&mut self, reader: &std::io::PipeReader) -> bool {
        for _ in 0..16 {
            match self.read_once(reader) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
        false
    }

    /// A line of the console's own in the log (`[testbay] ...`).
    fn note(&mut self, text: &str) {
        let _ = writeln!(self.w.log, "[testbay] {text}");
    }

    /// The last line even without its newline, then the figures.
    fn finish(mut self) -> LogStats {
        if !self.line.is_empty() {
            self.w.emit(&self.line);
        }
        self.w.finish()
    }
}

/// How long after the phase's process exited its output may stay open before whatever
/// holds it is killed.
const HOLDER_GRACE: Duration = Duration::from_millis(100);

/// SIGKILL every process that has the write end of this phase's output pipe open (found
/// through /proc/<pid>/fd). Only the phase's own process tree inherits that pipe, so these
/// are processes the phase started that left its process group. Returns how many.
fn kill_pipe_holders(reader: &std::io::PipeReader) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(format!("/proc/self/fd/{}", reader.as_raw_fd())) else {
        return 0;
    };
    let target = format!("pipe:[{}]", meta.ino());
    let me = std::process::id() as i32;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str())
        });
        // SAFETY: plain syscall on a process holding our pipe.
        if holds && unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
            tracing::warn!(
                pid,
                "killed a process that kept a finished phase's output open"
            );
            killed += 1;
        }
    }
    killed
}

struct LineWriter<'a> {
    log: BufWriter<File>,
    limits: &'a ExecLimits,
    written: u64,
    stats: LogStats,
    live: Option<LiveSink>,
    bucket: TokenBucket,
    /// Lines held back from live viewers not yet reported by a `Dropped`.
    pending_dropped: u64,
    /// When the last `Dropped` went out.
    dropped_sent: Option<Instant>,
    /// When the oldest line not yet flushed to the log file was written to its buffer.
    unflushed_since: Option<Instant>,
    log_failed: bool,
    /// Lines for live viewers from the current read, sent together after it.
    live_lines: Vec<String>,
}

impl LineWriter<'_> {
    /// One read's bytes: complete lines are emitted (long ones split at `cap`), the
    /// unfinished end stays in `line`.
    fn take_chunk(&mut self, mut chunk: &[u8], line: &mut Vec<u8>, cap: usize) {
        self.stats.bytes += chunk.len() as u64;
        while !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&chunk[..i]);
                    self.emit_split(line, cap);
                    self.emit(line);
                    line.clear();
                    chunk = &chunk[i + 1..];
                }
                None => {
                    line.extend_from_slice(chunk);
                    self.emit_split(line, cap);
                    chunk = &[];
                }
            }
        }
        self.tick();
    }

    /// Emit full `cap`-sized pieces from the front of `line`, keeping the rest.
    fn emit_split(&mut self, line: &mut Vec<u8>, cap: usize) {
        while line.len() > cap {
            let mut end = cap;
            // Do not cut a UTF-8 sequence in half.
            while end > cap - 4 && (line[end] & 0xC0) == 0x80 {
                end -= 1;
            }
            let rest = line.split_off(end);
            self.emit(line);
            *line = rest;
        }
    }

    fn emit(&mut self, raw: &[u8]) {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = String::from_utf8_lossy(raw);
        self.stats.lines += 1;
        if !self.stats.truncated && !self.log_failed {
            let need = text.len() as u64 + 1;
            if self.written + need > self.limits.log_cap_bytes {
                self.stats.truncated = true;
                self.unflushed_since.get_or_insert_with(Instant::now);
                let _ = writeln!(
                    self.log,
                    "[testbay] log truncated: the {} byte limit was reached; further output is discarded",
                    self.limits.log_cap_bytes
                );
            } else if self
                .log
                .write_all(text.as_bytes())
                .and_then(|_| self.log.write_all(b"\n"))
                .is_err()
            {
                self.log_failed = true;
            } else {
                self.written += need;
                if self.unflushed_since.is_none() {
                    self.unflushed_since = Some(Instant::now());
                }
            }
        }
        if self.live.is_some() {
            if self.bucket.take() {
                if self.pending_dropped > 0 {
                    self.report_dropped(Instant::now());
                }
                self.live_lines
                    .push(cap_string(&text, self.limits.live_line_cap_bytes));
            } else {
                self.pending_dropped += 1;
                self.stats.live_dropped += 1;
            }
        }
    }

    /// Send the live lines gathered from the current read as one event.
    fn send_live(&mut self) {
        if self.live_lines.is_empty() {
            return;
        }
        let lines = std::mem::take(&mut self.live_lines);
        if let Some(sink) = self.live.as_mut() {
            sink(LiveLog::Lines(lines));
        }
    }

    /// Send the held-back count if the last `Dropped` is [`DROPPED_EVERY`] old.
    fn report_dropped(&mut self, now: Instant) {
        if self
            .dropped_sent
            .is_some_and(|t| now.duration_since(t) < DROPPED_EVERY)
        {
            return;
        }
        // Lines already gathered came before the ones held back since.
        self.send_live();
        if let Some(sink) = self.live.as_mut() {
            sink(LiveLog::Dropped(self.pending_dropped));
        }
        self.pending_dropped = 0;
        self.dropped_sent = Some(now);
    }

    /// After a read: flush the log if its oldest buffered line is [`LOG_FLUSH_EVERY`]
    /// old, report held-back lines when due. One clock read per read(2), none per line.
    fn tick(&mut self) {
        self.send_live();
        if self.unflushed_since.is_none() && self.pending_dropped == 0 {
            return;
        }
        let now = Instant::now();
        if self
            .unflushed_since
            .is_some_and(|t| now.duration_since(t) >= LOG_FLUSH_EVERY)
        {
            self.flush_log();
        }
        if self.pending_dropped > 0 {
            self.report_dropped(now);
        }
    }

    /// The output went quiet: write out what is buffered, report held-back lines when due.
    fn idle(&mut self) {
        self.flush_log();
        if self.pending_dropped > 0 {
            self.report_dropped(Instant::now());
        }
    }

    fn flush_log(&mut self) {
        if self.unflushed_since.take().is_some() && self.log.flush().is_err() {
            self.log_failed = true;
        }
    }

    /// `timeout_ms` for poll(2), shortened so that buffered log lines are written once
    /// the output is quiet for [`LOG_IDLE`] and held-back lines are reported when due.
    fn poll_timeout(&self, timeout_ms: i32) -> i32 {
        let mut limit: Option<Duration> = None;
        if self.unflushed_since.is_some() {
            limit = Some(LOG_IDLE);
        }
        if self.pending_dropped > 0 {
            let due = self.dropped_sent.map_or(Duration::ZERO, |t| {
                DROPPED_EVERY.saturating_sub(t.elapsed())
            });
            limit = Some(limit.map_or(due, |l| l.min(due)));
        }
        match limit {
            None => timeout_ms,
            Some(l) => {
                let l = l.as_millis().clamp(1, i32::MAX as u128) as i32;
                if timeout_ms < 0 {
                    l
                } else {
                    timeout_ms.min(l)
                }
            }
        }
    }

    fn finish(mut self) -> LogStats {
        if self.stats.truncated {
            let _ = writeln!(
                self.log,
                "[testbay] {} bytes of output in total; {} bytes written before truncation",
                self.stats.bytes, self.written
            );
        }
        let _ = self.log.flush();
        self.send_live();
        if self.pending_dropped > 0 {
            if let Some(sink) = self.live.as_mut() {
                sink(LiveLog::Dropped(self.pending_dropped));
            }
        }
        self.stats
    }
}

/// Lines-per-second limiter for live output.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: rate as f64,
            burst: burst.max(1) as f64,
            tokens: burst.max(1) as f64,
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        if self.tokens < 1.0 {
            let now = Instant::now();
            let dt = now.duration_since(self.last).as_secs_f64();
            self.last = now;
            self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
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

    #[test]
    fn token_bucket_limits_burst() {
        let mut b = TokenBucket::new(0, 3);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
    }
}
