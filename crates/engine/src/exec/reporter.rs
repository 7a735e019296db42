//! The reporter of one run: a Unix socket the console serves while the run lives, which
//! every task phase finds in `TESTBAY_REPORTER` (pyATS's per-job report server). The
//! protocol and the section tree are `testbay_core::reporter`; this module reads lines,
//! ties connections to phases by the `TESTBAY_REPORTER_TOKEN` they say hello with, and
//! answers each line.
//!
//! Bounds: a line over `MAX_MESSAGE_BYTES` is answered `too_large` and skipped; a
//! connection reads at most [`RATE_PER_SEC`] messages a second (a faster client is slowed
//! down, not refused); a connection that has not said hello within [`HELLO_WITHIN`] is
//! closed; at most [`MAX_CONNECTIONS`] connections at once per run. A connection that
//! says hello and then writes nothing costs one idle task until the run ends. Each
//! connection runs as its own task, so none waits on another.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

use super::prompts::{PromptView, Prompts};
use crate::clock::Clock;
use crate::outcome::Phase;
use crate::reporter::{
    check_prompt, parse_line, Change, Client, ClientMessage, PhaseReport, PromptAnswer,
    ProtocolError, Reply, MAX_MESSAGE_BYTES, MAX_PROMPT_S,
};

/// Messages a connection may send per second before it is slowed down.
pub const RATE_PER_SEC: u32 = 50_000;
/// Messages a connection may send at once before the rate applies.
const BURST: u32 = 5_000;
/// Time a new connection has to say hello.
pub const HELLO_WITHIN: Duration = Duration::from_secs(10);
/// Connections open at once per run; more are closed at once.
pub const MAX_CONNECTIONS: usize = 1_024;
/// Longest socket path the kernel takes is 108 bytes; a run folder deeper than this puts
/// its socket in the temporary folder.
const MAX_SOCKET_PATH: usize = 100;

/// What a phase reported, for the event stream.
pub enum ReportEvent<'a> {
    /// A message changed the report (shown as it is now).
    Changed(&'a Change, &'a PhaseReport),
    /// The phase asks the operator.
    Asked(&'a PromptView),
    /// Its prompt was answered, or timed out.
    Answered(&'a PromptView, &'a PromptAnswer),
}

/// Receives what a phase reports. Called with the phase's lock held: must not block.
pub type ReportSink = Box<dyn FnMut(ReportEvent<'_>) + Send + 'static>;

/// Which task phase a reporter token stands for (what its prompts say).
#[derive(Debug, Clone)]
pub struct PhaseInfo {
    pub task: String,
    pub lane: String,
    pub item: u32,
    pub phase: Phase,
}

struct PhaseState {
    report: PhaseReport,
    over: bool,
    artifacts: PathBuf,
    sink: Option<ReportSink>,
    info: PhaseInfo,
    token: String,
}

type Phases = Mutex<HashMap<String, Arc<Mutex<PhaseState>>>>;

/// The reporter of one run. Dropping it closes the socket, ends every connection and
/// removes the socket file.
pub struct Reporter {
    path: PathBuf,
    run_id: String,
    prompts: Arc<Prompts>,
    phases: Arc<Phases>,
    clock: Arc<dyn Clock>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

/// One phase's place in the reporter: what its environment says, and its report at the end.
pub struct PhaseHandle {
    pub socket: PathBuf,
    pub token: String,
    state: Arc<Mutex<PhaseState>>,
    phases: std::sync::Weak<Phases>,
    prompts: Arc<Prompts>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Reporter {
    /// Binds the run's socket (`<run_dir>/reporter.sock`, or a file in the temporary
    /// folder when that path is too long for a socket) and starts serving it. Must be
    /// called inside a tokio runtime.
    pub fn start(
        run_dir: &Path,
        run_id: &str,
        clock: Arc<dyn Clock>,
        prompts: Arc<Prompts>,
    ) -> std::io::Result<Self> {
        let mut path = run_dir.join("reporter.sock");
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            let uid = unsafe { libc::getuid() };
            let short: String = run_id
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(32)
                .collect();
            path = std::env::temp_dir().join(format!("testbay-{uid}-{short}.sock"));
        }
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let phases: Arc<Phases> = Arc::default();
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let accept = {
            let phases = phases.clone();
            let clock = clock.clone();
            let ask = Ask {
                prompts: prompts.clone(),
                run_id: run_id.to_string(),
            };
            let tasks_w = Arc::downgrade(&tasks);
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let Some(tasks) = tasks_w.upgrade() else {
                        return;
                    };
                    let mut set = lock(&tasks);
                    while set.try_join_next().is_some() {}
                    // The accept loop is one of the set's tasks.
                    if set.len() > MAX_CONNECTIONS {
                        tracing::warn!(
                            "reporter: over {MAX_CONNECTIONS} connections; closing a new one"
                        );
                        continue;
                    }
                    set.spawn(serve(stream, phases.clone(), clock.clone(), ask.clone()));
                }
            }
        };
        lock(&tasks).spawn(accept);
        Ok(Reporter {
            path,
            run_id: run_id.to_string(),
            prompts,
            phases,
            clock,
            tasks,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Registers a phase about to start; `artifacts` is the only folder it may attach
    /// files from.
    pub fn open_phase(
        &self,
        info: PhaseInfo,
        artifacts: &Path,
        sink: Option<ReportSink>,
    ) -> PhaseHandle {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let state = Arc::new(Mutex::new(PhaseState {
            report: PhaseReport::default(),
            over: false,
            artifacts: artifacts.to_path_buf(),
            sink,
            info,
            token: token.clone(),
        }));
        lock(&self.phases).insert(token.clone(), state.clone());
        PhaseHandle {
            socket: self.path.clone(),
            token,
            state,
            phases: Arc::downgrade(&self.phases),
            prompts: self.prompts.clone(),
        }
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        lock(&self.tasks).abort_all();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl PhaseHandle {
    /// The phase ended: later messages are answered `phase_over`; sections still open are
    /// closed `Errored` with `reason`. Returns the phase's report.
    pub fn finish(self, reason: &str, now: crate::clock::EpochMs) -> PhaseReport {
        if let Some(phases) = self.phases.upgrade() {
            lock(&phases).remove(&self.token);
        }
        self.prompts.drop_phase(&self.token);
        let mut st = lock(&self.state);
        st.over = true;
        let closed = st.report.close_open(reason, now);
        let PhaseState { report, sink, .. } = &mut *st;
        if let Some(sink) = sink {
            for id in closed {
                sink(ReportEvent::Changed(&Change::Stopped(id), report));
            }
        }
        st.sink = None;
        std::mem::take(&mut st.report)
    }
}

/// A token bucket: `take` waits while the connection is over its rate.
struct Rate {
    tokens: f64,
    last: tokio::time::Instant,
}

impl Rate {
    fn refill(&mut self) {
        let now = tokio::time::Instant::now();
        self.tokens = (self.tokens
            + now.duration_since(self.last).as_secs_f64() * f64::from(RATE_PER_SEC))
        .min(f64::from(BURST));
        self.last = now;
    }

    async fn take(&mut self) {
        self.refill();
        if self.tokens < 1.0 {
            // Timers tick in milliseconds: wait at least one and take what it brought.
            let wait = ((1.0 - self.tokens) / f64::from(RATE_PER_SEC)).max(0.001);
            tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            self.refill();
        }
        self.tokens -= 1.0;
    }
}

/// What reading one line gave.
enum Line {
    Eof,
    Ok,
    /// Over the size bound; the rest up to the newline was skipped.
    TooLarge,
}

async fn read_line(
    rd: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    buf: &mut Vec<u8>,
) -> std::io::Result<Line> {
    buf.clear();
    let limit = MAX_MESSAGE_BYTES as u64 + 1;
    let n = (&mut *rd).take(limit).read_until(b'\n', buf).await?;
    if n == 0 {
        return Ok(Line::Eof);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        return Ok(Line::Ok);
    }
    if buf.len() as u64 >= limit {
        // Skip the rest of the line without keeping it.
        loop {
            let avail = rd.fill_buf().await?;
            if avail.is_empty() {
                return Ok(Line::Eof);
            }
            match avail.iter().position(|b| *b == b'\n') {
                Some(i) => {
                    rd.consume(i + 1);
                    return Ok(Line::TooLarge);
                }
                None => {
                    let n = avail.len();
                    rd.consume(n);
                }
            }
        }
    }
    // The last line, without a newline.
    Ok(Line::Ok)
}

/// What a connection needs to ask the operator.
#[derive(Clone)]
struct Ask {
    prompts: Arc<Prompts>,
    run_id: String,
}

/// What one line asks of the connection.
enum Handled {
    Reply(Reply),
    /// A prompt to put to the operator, then answer.
    Prompt(PromptView),
}

async fn serve(stream: UnixStream, phases: Arc<Phases>, clock: Arc<dyn Clock>, ask: Ask) {
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(16 * 1024, rd);
    let mut wr = BufWriter::with_capacity(16 * 1024, wr);
    let mut buf = Vec::new();
    let mut conn: Option<(Arc<Mutex<PhaseState>>, Client)> = None;
    let mut rate = Rate {
        tokens: f64::from(BURST),
        last: tokio::time::Instant::now(),
    };
    let mut out = Vec::with_capacity(128);
    loop {
        let line = if conn.is_none() {
            match tokio::time::timeout(HELLO_WITHIN, read_line(&mut rd, &mut buf)).await {
                Ok(l) => l,
                Err(_) => {
                    tracing::debug!("reporter: a connection said no hello in time; closed");
                    return;
                }
            }
        } else {
            read_line(&mut rd, &mut buf).await
        };
        let reply = match line {
            Err(_) | Ok(Line::Eof) => break,
            Ok(Line::TooLarge) => Reply::err(&ProtocolError::TooLarge),
            Ok(Line::Ok) if buf.iter().all(u8::is_ascii_whitespace) => continue,
            Ok(Line::Ok) => {
                rate.take().await;
                match handle(&buf, &mut conn, &phases, &*clock, &ask.run_id) {
                    Ok(Handled::Reply(r)) => r,
                    Ok(Handled::Prompt(view)) => {
                        let state = conn.as_ref().map(|(s, _)| s.clone()).expect("said hello");
                        prompt(&ask.prompts, &state, view, &*clock).await
                    }
                    Err(e) => Reply::err(&e),
                }
            }
        };
        out.clear();
        serde_json::to_writer(&mut out, &reply).expect("plain JSON");
        out.push(b'\n');
        if wr.write_all(&out).await.is_err() {
            break;
        }
        // Replies to pipelined messages go out together.
        if rd.buffer().is_empty() && wr.flush().await.is_err() {
            break;
        }
    }
    let _ = wr.flush().await;
}

/// Puts a prompt to the operator and waits for the answer, its timeout or its phase's end.
async fn prompt(
    prompts: &Prompts,
    state: &Mutex<PhaseState>,
    view: PromptView,
    clock: &dyn Clock,
) -> Reply {
    let token = lock(state).token.clone();
    let (view, rx) = match prompts.ask(view, &token) {
        Ok(x) => x,
        Err(why) => {
            return Reply::err(&ProtocolError::BadValue {
                what: "pattern".into(),
                rule: why,
            })
        }
    };
    if let Some(sink) = &mut lock(state).sink {
        sink(ReportEvent::Asked(&view));
    }
    let wait = Duration::from_secs_f64(view.timeout_s);
    let answer = match tokio::time::timeout(wait, rx).await {
        Ok(Ok((text, by))) => PromptAnswer {
            text,
            by,
            at_ms: clock.now_ms(),
            timed_out: false,
        },
        // The phase ended: its prompts were dropped.
        Ok(Err(_)) => return Reply::err(&ProtocolError::PhaseOver),
        Err(_) => {
            prompts.forget(view.id);
            PromptAnswer::timeout(clock.now_ms())
        }
    };
    let mut st = lock(state);
    if st.over {
        return Reply::err(&ProtocolError::PhaseOver);
    }
    st.report.prompted(view.message.clone(), answer.clone());
    if let Some(sink) = &mut st.sink {
        sink(ReportEvent::Answered(&view, &answer));
    }
    Reply {
        answer: Some(answer),
        ..Reply::ok(None)
    }
}

fn handle(
    line: &[u8],
    conn: &mut Option<(Arc<Mutex<PhaseState>>, Client)>,
    phases: &Phases,
    clock: &dyn Clock,
    run_id: &str,
) -> Result<Handled, ProtocolError> {
    let msg = parse_line(line)?;
    let Some((state, client)) = conn else {
        let ClientMessage::Hello { token, pid } = msg else {
            return Err(ProtocolError::NoHello);
        };
        let state = lock(phases)
            .get(&token)
            .cloned()
            .ok_or(ProtocolError::UnknownToken)?;
        let client = lock(&state).report.connect();
        tracing::debug!(pid, "reporter: a client said hello");
        *conn = Some((state, client));
        return Ok(Handled::Reply(Reply::ok(None)));
    };
    let mut st = lock(state);
    if st.over {
        return Err(ProtocolError::PhaseOver);
    }
    let msg = match msg {
        ClientMessage::Attach { path } => ClientMessage::Attach {
            path: check_attachment(&st.artifacts, &path)?,
        },
        ClientMessage::Prompt {
            message,
            choices,
            pattern,
            timeout_s,
        } => {
            check_prompt(&message, &choices, timeout_s)?;
            let info = &st.info;
            return Ok(Handled::Prompt(PromptView {
                id: 0,
                run_id: run_id.to_string(),
                task: info.task.clone(),
                lane: info.lane.clone(),
                item: info.item,
                phase: info.phase,
                message,
                choices,
                pattern,
                timeout_s: timeout_s.unwrap_or(MAX_PROMPT_S),
                asked_ms: clock.now_ms(),
            }));
        }
        m => m,
    };
    let change = st.report.apply(client, msg, clock.now_ms())?;
    let PhaseState { report, sink, .. } = &mut *st;
    if let (Some(sink), false) = (sink, matches!(change, Change::None)) {
        sink(ReportEvent::Changed(&change, report));
    }
    Ok(Handled::Reply(Reply::ok(match change {
        Change::Started(id) => Some(id),
        _ => None,
    })))
}

/// A file inside `artifacts` (the path absolute or relative to it, links resolved), as a
/// path relative to it.
fn check_attachment(artifacts: &Path, path: &str) -> Result<String, ProtocolError> {
    let bad = |why: &str| ProtocolError::BadAttachment(path.to_string(), why.to_string());
    if path.is_empty() || path.len() > 4096 {
        return Err(bad("not a path"));
    }
    let root = artifacts
        .canonicalize()
        .map_err(|e| bad(&format!("the artifacts folder: {e}")))?;
    let full = root
        .join(path)
        .canonicalize()
        .map_err(|e| bad(&e.to_string()))?;
    let rel = full
        .strip_prefix(&root)
        .map_err(|_| bad("it is outside the artifacts folder (TESTBAY_ARTIFACTS)"))?;
    let meta = std::fs::metadata(&full).map_err(|e| bad(&e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file"));
    }
    rel.to_str()
        .map(str::to_string)
        .ok_or_else(|| bad("its name is not UTF-8"))
}
