//! `testbay agent`'s connection to its lab server: `GET /api/agent` (a WebSocket, with
//! the agent user's token), the hello naming its racks, a heartbeat with the host's CPU
//! use, and the phases the server sends run by the engine's agent
//! [`Worker`](testbay_engine::agents::worker::Worker), which fetches pack snapshots with
//! `agent_snapshot` over `POST /api`.
//!
//! A connection that drops (the server restarted, the network blinked, nothing heard for
//! three heartbeats: the agent pings with each heartbeat, so an idle one hears the pongs)
//! is opened again with backoff ([`FIRST_RETRY`] doubling up to
//! [`LAST_RETRY`]); the phases running go on meanwhile. Every message about a phase waits
//! in the agent's [`Outbox`] (bounded) until the server acknowledges it; the hello of a
//! new connection names the phases the agent still has, and the agent sends again what
//! follows the last message the server's welcome says it took. A server that refuses the
//! agent (a wrong role, a rack that is not an agent rack) ends it and its phases.
//!
//! In a lab of several servers on one database the agent belongs to the server that
//! owns the reservation book (it runs the launches). The agent is given any of them
//! (`--server`, repeated); one that does not own the book answers the hello with a
//! redirect to the owner, and the agent connects there, a redirect being just another
//! reconnect (the second in a row and after waiting the backoff, so servers naming each
//! other during a takeover make no hot loop). A send stalled for three heartbeats drops
//! the connection as silence does. A connection that drops goes on to the next server of the list, so
//! when the owner dies the agent is sent to whichever server took the book over.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use testbay_engine::agents::outbox::Outbox;
use testbay_engine::agents::wire::{AgentMsg, ServerMsg, Snapshot};
use testbay_engine::agents::worker::{SnapshotSource, Worker};
use testbay_engine::api::queue::cpu::{CpuProbe, ProcStat};
use testbay_engine::api::{ApiError, ErrorCode, Request, Response};
use testbay_engine::clock::{Clock as _, SystemClock};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::http::Client;
use crate::stream::{FIRST_RETRY, LAST_RETRY};
use crate::Target;

/// What `testbay agent` was given.
pub struct AgentOptions {
    /// The lab's servers (any of them; at least one), tried in turn.
    pub targets: Vec<Target>,
    pub racks: Vec<String>,
    pub work_dir: PathBuf,
}

/// Fetches snapshots with `agent_snapshot`, from the server the agent is connected to.
struct Fetch(std::sync::Mutex<Client>);

impl SnapshotSource for Fetch {
    fn fetch<'a>(
        &'a self,
        hash: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Snapshot, String>> + Send + 'a>> {
        Box::pin(async move {
            let request = Request::AgentSnapshot {
                hash: hash.to_string(),
            };
            let client = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match client.call(&request).await {
                Ok(Response::AgentSnapshot(s)) => Ok(s),
                Ok(other) => Err(format!("the server answered agent_snapshot with {other:?}")),
                Err(e) => Err(format!("cannot fetch pack snapshot {hash}: {e}")),
            }
        })
    }
}

/// Numbered messages sent per turn of the connection's loop (so acknowledgements and
/// heartbeats keep flowing while a long backlog goes out).
const SEND_BATCH: usize = 64;

/// What the phases say, on its way to the server: the worker's messages come in on `rx`
/// and wait, numbered, in `outbox` until acknowledged.
struct Pump {
    rx: mpsc::UnboundedReceiver<AgentMsg>,
    tx: mpsc::UnboundedSender<AgentMsg>,
    outbox: Outbox,
    /// This life of the agent (the server takes each message number once per life).
    boot: String,
}

impl Pump {
    fn drain(&mut self) {
        while let Ok(m) = self.rx.try_recv() {
            self.outbox.push(m);
        }
    }

    /// `fut`, while the phases' messages keep going into the outbox.
    async fn meanwhile<T>(&mut self, fut: impl Future<Output = T>) -> T {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                v = &mut fut => return v,
                Some(m) = self.rx.recv() => self.outbox.push(m),
            }
        }
    }
}

/// How one connection ended.
enum Ended {
    /// Dropped: connect again (the next server of the list).
    Dropped(String),
    /// The server sent the agent to the book's owner at this address.
    Redirected(Target, String),
    /// The server refused the agent: give up.
    Refused(String),
    /// Asked to stop.
    Stopped,
}

/// Serve phases until `stop` resolves (or the server refuses the agent: that error).
pub async fn run(
    opts: AgentOptions,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), ApiError> {
    let Some(first) = opts.targets.first().cloned() else {
        return Err(ApiError::invalid(
            "a rack agent needs a lab server (--server URL)",
        ));
    };
    let fetch = Arc::new(Fetch(std::sync::Mutex::new(Client::new(first.clone())?)));
    let worker =
        Worker::new(&opts.work_dir, Arc::new(SystemClock), fetch.clone()).map_err(|e| {
            ApiError::invalid(format!(
                "cannot use the work directory {}: {e}",
                opts.work_dir.display()
            ))
        })?;
    tracing::info!(work_dir = %worker.work_dir().display(), cached = worker.cached().len(), "agent work directory");
    tokio::pin!(stop);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut pump = Pump {
        rx,
        tx,
        outbox: Outbox::default(),
        boot: format!("{}-{}", std::process::id(), SystemClock.now_ms()),
    };
    let mut retry = FIRST_RETRY;
    // The server of the list tried last, and where a redirect sent the agent.
    let mut listed = 0;
    let mut target = first;
    // Redirects in a row (no connection welcomed the agent since): past the first the
    // agent waits its backoff, so servers sending it to each other (stale rows during a
    // takeover) are no hot loop.
    let mut redirects = 0u32;
    loop {
        *fetch.0.lock().unwrap_or_else(|p| p.into_inner()) = Client::new(target.clone())?;
        let ended = tokio::select! {
            e = connection(&opts, &target, &worker, &mut pump, &mut retry) => e,
            () = &mut stop => Ended::Stopped,
        };
        if matches!(ended, Ended::Stopped | Ended::Refused(_)) {
            worker.stop_all();
            settle(&worker).await;
        }
        match ended {
            Ended::Stopped => return Ok(()),
            Ended::Refused(why) => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    format!("the lab server at {} refused this agent: {why}", target.url),
                ))
            }
            Ended::Redirected(to, why) => {
                tracing::info!(server = %target.url, to = %to.url, why, "sent to the server that owns the reservation book");
                redirects += 1;
                if redirects > 1 {
                    let stopped = pump
                        .meanwhile(async {
                            tokio::select! {
                                () = tokio::time::sleep(retry) => false,
                                () = &mut stop => true,
                            }
                        })
                        .await;
                    if stopped {
                        worker.stop_all();
                        settle(&worker).await;
                        return Ok(());
                    }
                    retry = (retry * 2).min(LAST_RETRY);
                }
                target = to;
            }
            Ended::Dropped(why) => {
                redirects = 0;
                listed = (listed + 1) % opts.targets.len();
                tracing::warn!(server = %target.url, next = %opts.targets[listed].url, why, retry_ms = retry.as_millis() as u64, running = worker.running(), unacknowledged = pump.outbox.len(), "lost the lab server; connecting again");
                let stopped = pump
                    .meanwhile(async {
                        tokio::select! {
                            () = tokio::time::sleep(retry) => false,
                            () = &mut stop => true,
                        }
                    })
                    .await;
                if stopped {
                    worker.stop_all();
                    settle(&worker).await;
                    return Ok(());
                }
                retry = (retry * 2).min(LAST_RETRY);
                target = opts.targets[listed].clone();
            }
        }
    }
}

/// Wait (a bounded time) for stopped phases to end.
async fn settle(worker: &Worker) {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while worker.running() > 0 && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

async fn connection(
    opts: &AgentOptions,
    target: &Target,
    worker: &Arc<Worker>,
    pump: &mut Pump,
    retry: &mut Duration,
) -> Ended {
    let mut request = match target.agent_url().as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => return Ended::Refused(e.to_string()),
    };
    if let Some(token) = &target.token {
        match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(v) => {
                request.headers_mut().insert(header::AUTHORIZATION, v);
            }
            Err(_) => return Ended::Refused("the token holds characters a header cannot".into()),
        }
    }
    let socket = match pump
        .meanwhile(tokio::time::timeout(
            Duration::from_secs(10),
            // Small messages both ways (a phase's start, its end): no Nagle delay.
            tokio_tungstenite::connect_async_with_config(request, None, true),
        ))
        .await
    {
        Ok(Ok((s, _))) => s,
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(res)))
            if matches!(res.status().as_u16(), 401 | 403) =>
        {
            let body = res
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).to_string())
                .unwrap_or_default();
            return Ended::Refused(format!("{} {body}", res.status()));
        }
        Ok(Err(e)) => return Ended::Dropped(e.to_string()),
        Err(_) => return Ended::Dropped("no answer within 10 s".into()),
    };
    let (mut tx, mut rx) = socket.split();
    // The phases it still has: those running (read first: one leaves that list only once
    // its outcome is on its way to the outbox) and those with messages waiting.
    let mut running = worker.running_jobs();
    pump.drain();
    running.extend(pump.outbox.jobs());
    running.sort_unstable();
    running.dedup();
    let hello = AgentMsg::Hello {
        racks: opts.racks.clone(),
        host: host_name(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        boot: pump.boot.clone(),
        running,
    };
    let text = serde_json::to_string(&hello).expect("plain JSON");
    if let Err(why) = send_within(&mut tx, Message::Text(text.into()), HANDSHAKE).await {
        return Ended::Dropped(why);
    }
    let welcome = pump
        .meanwhile(tokio::time::timeout(Duration::from_secs(10), rx.next()))
        .await;
    let heartbeat = match welcome {
        Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<ServerMsg>(&t) {
            Ok(ServerMsg::Welcome {
                name,
                heartbeat_ms,
                acked,
            }) => {
                pump.outbox.resume(acked);
                tracing::info!(agent = name, racks = ?opts.racks, acked, resending = pump.outbox.len(), "connected to the lab server");
                *retry = FIRST_RETRY;
                Duration::from_millis(heartbeat_ms.max(10))
            }
            Ok(ServerMsg::Redirect {
                url: Some(url),
                why,
            }) => {
                return match Target::parse(&url, target.token.clone()) {
                    Ok(to) => Ended::Redirected(to, why),
                    Err(e) => {
                        Ended::Dropped(format!("{why}; its address {url} is no server's: {e}"))
                    }
                }
            }
            Ok(ServerMsg::Redirect { url: None, why }) => return Ended::Dropped(why),
            _ => return Ended::Dropped("the server's first message is not a welcome".into()),
        },
        Ok(Some(Ok(Message::Close(Some(f))))) if f.code == CloseCode::Policy => {
            return Ended::Refused(f.reason.to_string())
        }
        Ok(Some(Ok(other))) => return Ended::Dropped(format!("unexpected first frame {other:?}")),
        Ok(Some(Err(e))) => return Ended::Dropped(e.to_string()),
        Ok(None) => return Ended::Dropped("the server closed the connection".into()),
        Err(_) => return Ended::Dropped("no welcome within 10 s".into()),
    };
    let cpu: Box<dyn CpuProbe> = match std::env::var_os(CPU_FILE_ENV) {
        Some(file) => Box::new(CpuFromFile(file.into())),
        None => Box::new(ProcStat::new()),
    };
    let mut beats = tokio::time::interval(heartbeat);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = tokio::time::Instant::now();
    // Nothing heard for this long drops the connection; a send stalled for as long too.
    let patience = 3 * heartbeat.max(Duration::from_secs(1));
    loop {
        for _ in 0..SEND_BATCH {
            let Some(msg) = pump.outbox.next_unsent() else {
                break;
            };
            let text = serde_json::to_string(&msg).expect("plain JSON");
            if let Err(why) = send_within(&mut tx, Message::Text(text.into()), patience).await {
                return Ended::Dropped(why);
            }
        }
        let more = pump.outbox.has_unsent();
        let msg = tokio::select! {
            () = std::future::ready(()), if more => continue,
            _ = beats.tick() => {
                if heard.elapsed() > patience {
                    return Ended::Dropped("nothing heard from the server".into());
                }
                // The server says nothing to an idle agent: its pong is what is heard.
                if let Err(why) = send_within(&mut tx, Message::Ping(Default::default()), patience).await {
                    return Ended::Dropped(why);
                }
                AgentMsg::Heartbeat { cpu: cpu.busy_percent() }
            }
            Some(m) = pump.rx.recv() => {
                pump.outbox.push(m);
                pump.drain();
                continue;
            }
            frame = rx.next() => {
                heard = tokio::time::Instant::now();
                match frame {
                    Some(Ok(Message::Text(t))) => {
                        match serde_json::from_str::<ServerMsg>(&t) {
                            Ok(ServerMsg::Start { job, phase }) => worker.start(job, *phase, pump.tx.clone()),
                            Ok(ServerMsg::Stop { job }) => worker.stop(job),
                            Ok(ServerMsg::Ack { seq }) => pump.outbox.ack(seq),
                            Ok(ServerMsg::Answer { job, prompt, text, by }) => worker.answer(job, prompt, text, by),
                            Ok(ServerMsg::Welcome { .. } | ServerMsg::Redirect { .. }) => {}
                            Err(e) => tracing::warn!(error = %e, "a server message the agent does not understand; ignored"),
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(f))) => {
                        return Ended::Dropped(f.map(|f| f.reason.to_string()).unwrap_or_else(|| "closed".into()))
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Ended::Dropped(e.to_string()),
                    None => return Ended::Dropped("the server closed the connection".into()),
                }
            }
        };
        let text = serde_json::to_string(&msg).expect("plain JSON");
        if let Err(why) = send_within(&mut tx, Message::Text(text.into()), patience).await {
            return Ended::Dropped(why);
        }
    }
}

/// The bound on the handshake's steps (connecting, the hello, the welcome).
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Send `msg` on the connection, giving up after `limit`: on a stalled TCP connection a
/// send blocks, and meanwhile nothing else (the "nothing heard" check, taking the
/// worker's messages into the bounded outbox) would run.
async fn send_within<S>(tx: &mut S, msg: Message, limit: Duration) -> Result<(), String>
where
    S: futures_util::Sink<Message> + Unpin,
    S::Error: std::fmt::Display,
{
    match tokio::time::timeout(limit, tx.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "a send to the server stalled for {} s",
            limit.as_secs()
        )),
    }
}

/// A test seam: when set, the agent reports the number in the file it names as its CPU
/// use (read at each heartbeat) instead of measuring it, so the tests of the server's
/// CPU threshold can make an agent busy and idle again. Not for production use.
pub const CPU_FILE_ENV: &str = "TESTBAY_AGENT_CPU_FILE";

/// [`CPU_FILE_ENV`]'s figure.
struct CpuFromFile(std::path::PathBuf);

impl CpuProbe for CpuFromFile {
    fn busy_percent(&self) -> Option<f64> {
        std::fs::read_to_string(&self.0).ok()?.trim().parse().ok()
    }
}
