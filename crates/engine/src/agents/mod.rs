//! Rack agents (StormTest's client daemons, LAVA's workers): a `testbay agent` on the
//! machine wired to a rack runs the phases of the runs on that rack, with the same `exec`
//! code as a console, and sends back their live output, files and outcomes.
//!
//! Server side, [`AgentHub`]: the agents connected to this console (a transport hands
//! each connection to [`AgentHub::connect`] and pumps its messages), the racks whose
//! lab-file entry says `agent: true`, and the [`crate::run::AgentDirectory`] the run
//! manager asks at launch: a run on such a rack is bound to a live, undrained agent
//! serving it (else it could not start, "no agent for rack-a") and its phases go there
//! through an [`AgentRunner`]. An agent not heard from for one and a half heartbeats (or
//! whose connection closed) stalls its runs; one silent for the grace period is lost: its
//! phases end `Aborted` and its runs `interrupted`. An agent whose heartbeat reports
//! CPU use above the threshold is passed over for 30 s (StormTest 6.2): a run that
//! would go to it waits in the run queue ([`AgentHub::busy`] says why and until when),
//! and the queue is told ([`AgentHub::on_change`]) when the agent is back under.
//!
//! A network cut loses no stored result: the agent's phases run on while it is away,
//! every message about them numbered in its [`outbox::Outbox`] until the server
//! acknowledges it (cumulative [`ServerMsg::Ack`]s, in batches). Back within the grace
//! period, the agent names the phases it still has and the server's [`ServerMsg::Welcome`]
//! the last number it took: the agent sends the rest again, the server takes each number
//! once (per agent life, its `boot`), and the run goes on. After the grace period the
//! phases are `Aborted`; an outcome that comes later is refused (logged), none of it stored.
//!
//! Agent side, [`worker::Worker`]: runs the phases it is sent from a bounded cache of
//! pack snapshots fetched by content hash.
//!
//! `wire` holds the messages; `runner` the server's end of one run's phases; `prompts`
//! the operator prompts of a phase on an agent, raised on the server; `snapshot` a
//! snapshot's files as the agent fetches them; `outbox` the agent's unacknowledged ones;
//! `home` which server of a lab an agent belongs to (the book's owner's).

mod home;
pub mod outbox;
mod prompts;
mod runner;
pub mod snapshot;
pub mod wire;
pub mod worker;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use ts_rs::TS;

use crate::clock::{Clock, EpochMs};
use crate::exec::{LiveLog, PhaseOutcome};
use crate::outcome::Phase;
use crate::run::{AgentDirectory, PhaseJob, PhaseRunner, RackBusy, RunnerHealth};
pub use home::{agent_home, AgentHome};
pub use runner::AgentRunner;
use wire::{AgentMsg, ServerMsg};

/// Pack snapshots the hub can hand out (the newest, by hash).
const SNAPSHOTS_KEPT: usize = 256;

/// Numbered messages taken before the hub acknowledges them without waiting for the
/// agent's next heartbeat (an outcome is acknowledged at once).
const ACK_EVERY: u64 = 256;

/// What an agent says of itself when it connects, beyond its racks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resume {
    /// This life of the agent process (its message numbers start at 1 in each); empty
    /// for an agent that numbers none.
    pub boot: String,
    /// The phases it still runs, or still has messages of.
    pub running: Vec<u64>,
}

/// How the hub judges its agents.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AgentConfig {
    /// How often agents heartbeat; one silent for 1.5 of these stalls its runs.
    pub heartbeat: Duration,
    /// How long a silent agent's runs stay stalled before they are interrupted.
    pub grace: Duration,
    /// Host CPU use, in percent, above which an agent is passed over.
    pub cpu_threshold: f64,
    /// How long an agent above the threshold is passed over.
    pub pass_over: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(5),
            grace: Duration::from_secs(60),
            cpu_threshold: 90.0,
            pass_over: Duration::from_secs(crate::bounds::AGENT_PASS_OVER_S),
        }
    }
}

/// A phase an agent runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct AgentPhaseView {
    pub run_id: String,
    pub task: String,
    pub lane: String,
    pub phase: Phase,
}

/// An agent as `agents` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct AgentView {
    /// Its user's name.
    pub name: String,
    pub racks: Vec<String>,
    pub host: String,
    pub version: String,
    /// Whether its connection is open.
    pub connected: bool,
    /// `ok`, `disconnected` (gone, with no runs), `stalled` (silent; its runs wait) or
    /// `lost` (silent past the grace period).
    pub state: String,
    pub last_heartbeat_ms: EpochMs,
    /// Host CPU use in percent, from its last heartbeat.
    pub cpu: Option<f64>,
    /// Takes no new runs (finishes those it has).
    pub draining: bool,
    /// Runs whose phases it runs.
    pub runs: Vec<String>,
    /// Phases running on it now.
    pub running: Vec<AgentPhaseView>,
    /// Pack snapshots it fetched from this server.
    pub snapshot_fetches: u32,
    /// Passed over until then: its heartbeat reported CPU use above the threshold.
    pub passed_over_until_ms: Option<EpochMs>,
}

/// What the server's end of a phase hears about it.
pub(crate) enum JobEvent {
    Spawned(u32),
    Log(LiveLog),
    File {
        path: String,
        data: Vec<u8>,
        append: bool,
    },
    Done(Result<Box<PhaseOutcome>, String>),
    Section(u32, Box<crate::reporter::Section>),
    Measured(Option<u32>, Box<crate::measure::Measurement>),
    /// The agent is gone or dropped the phase.
    Lost(String),
    /// The phase asks the operator (the agent's number for the prompt in its view).
    Asked(Box<crate::exec::prompts::PromptView>),
    /// The phase's prompt (the agent's number) got its answer or timed out.
    Answered(u64, crate::reporter::PromptAnswer),
}

struct Job {
    /// What was sent, to send again when it never reached the agent.
    phase: PhaseJob,
    events: mpsc::UnboundedSender<JobEvent>,
    /// Asked to stop (asked again when the agent comes back after a cut).
    stopping: bool,
    /// The operator's answers the agent has not said it took (sent again when it comes
    /// back after a cut), by the agent's prompt number: text and who.
    answers: BTreeMap<u64, (String, Option<String>)>,
}

impl Job {
    /// What `agents` shows of it.
    fn view(&self) -> AgentPhaseView {
        let p = &self.phase;
        AgentPhaseView {
            run_id: p.run_id.clone(),
            task: p.task.clone(),
            lane: p.lane.clone(),
            phase: p.phase,
        }
    }
}

struct Agent {
    racks: Vec<String>,
    host: String,
    version: String,
    /// The open connection: its number and outbox.
    conn: Option<(u64, mpsc::UnboundedSender<ServerMsg>)>,
    last_heard_ms: EpochMs,
    /// The agent life whose numbered messages `received` counts.
    boot: String,
    /// The last numbered message taken (each is taken once).
    received: u64,
    /// The last number acknowledged to the agent.
    acked: u64,
    cpu: Option<f64>,
    draining: bool,
    health: watch::Sender<RunnerHealth>,
    jobs: HashMap<u64, Job>,
    /// Runs bound to it, each with how many of its runners (one per rack it serves for
    /// the run).
    runs: BTreeMap<String, u32>,
    fetches: u32,
    /// Set by a heartbeat above the CPU threshold; cleared by one at or under it.
    passed_over_until: Option<EpochMs>,
}

impl Agent {
    /// Acknowledge the numbered messages taken (`always`: even with none new, which
    /// answers a heartbeat, so the agent hears its server is there).
    fn ack(&mut self, always: bool) {
        if always || self.received > self.acked {
            if let Some((_, out)) = &self.conn {
                let _ = out.send(ServerMsg::Ack { seq: self.received });
            }
            self.acked = self.received;
        }
    }

    /// Whether it is passed over at `now` (its CPU above the threshold).
    fn passed_over(&self, now: EpochMs) -> bool {
        self.passed_over_until.is_some_and(|u| u > now)
    }

    /// Whether it may take a run of `rack` (whatever its CPU).
    fn takes(&self, rack: &str) -> bool {
        self.racks.iter().any(|r| r == rack)
            && self.conn.is_some()
            && *self.health.borrow() == RunnerHealth::Healthy
    }

    fn state(&self) -> &'static str {
        match &*self.health.borrow() {
            RunnerHealth::Healthy if self.conn.is_some() => "ok",
            RunnerHealth::Healthy => "disconnected",
            RunnerHealth::Stalled(_) => "stalled",
            RunnerHealth::Lost(_) => "lost",
        }
    }
}

#[derive(Default)]
struct HubState {
    agents: BTreeMap<String, Agent>,
    /// Snapshot folders by content hash, newest last.
    snapshots: VecDeque<(String, PathBuf)>,
    next_conn: u64,
    watching: bool,
}

/// Told when an agent may take runs it could not take before.
type ChangeHook = Arc<dyn Fn() + Send + Sync>;

struct Hub {
    config: AgentConfig,
    hooks: Mutex<Vec<ChangeHook>>,
    clock: Arc<dyn Clock>,
    /// Racks whose phases run on their agent (`agent: true` in the lab file).
    agent_racks: HashSet<String>,
    state: Mutex<HubState>,
    next_job: AtomicU64,
    /// Woken at every connection made: a phase waiting for its agent to come back tries
    /// again (a connection made while the agent never stalled changes no health).
    connected: tokio::sync::Notify,
}

/// The console's rack agents. Cheap to clone.
#[derive(Clone)]
pub struct AgentHub {
    hub: Arc<Hub>,
}

/// Why a connection or a request of an agent is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("agent {0}: rack {1} is not in the lab file, or does not say `agent: true`")]
    UnknownRack(String, String),
    #[error("no agent named {0}")]
    NoSuchAgent(String),
    #[error(
        "no pack snapshot with hash {0} on this server (it serves those of runs on agent racks)"
    )]
    NoSnapshot(String),
}

impl AgentHub {
    pub fn new(agent_racks: HashSet<String>, config: AgentConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            hub: Arc::new(Hub {
                config,
                hooks: Mutex::default(),
                clock,
                agent_racks,
                state: Mutex::default(),
                // Phase numbers differ from those of an earlier process of this server
                // (an agent back after a restart may still run one of those).
                next_job: AtomicU64::new(first_job()),
                connected: tokio::sync::Notify::new(),
            }),
        }
    }

    pub fn config(&self) -> AgentConfig {
        self.hub.config
    }

    /// Take on the agent `name` (its user) serving `racks`. Its messages go to
    /// [`AgentSession::receive`]; what the server sends it comes out of
    /// [`AgentSession::outbox`]. Dropping the session is its connection closing.
    pub fn connect(
        &self,
        name: &str,
        racks: Vec<String>,
        host: String,
        version: String,
    ) -> Result<AgentSession, AgentError> {
        self.connect_resuming(name, racks, host, version, Resume::default())
    }

    /// [`AgentHub::connect`] for an agent back after a cut: the phases of `resume.running`
    /// it ran for this server go on (their messages numbered after the welcome's `acked`
    /// come again), the others it was sent are lost; a phase it runs that this server
    /// does not know (lost after the grace period, or sent by an earlier server process)
    /// is stopped.
    pub fn connect_resuming(
        &self,
        name: &str,
        racks: Vec<String>,
        host: String,
        version: String,
        resume: Resume,
    ) -> Result<AgentSession, AgentError> {
        if let Some(r) = racks.iter().find(|r| !self.hub.agent_racks.contains(*r)) {
            return Err(AgentError::UnknownRack(name.into(), r.clone()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut st = self.hub.lock();
        // A connection of the same agent still open is an earlier life of it (restarted
        // before the server saw the old one close): the new one replaces it.
        st.next_conn += 1;
        let conn = st.next_conn;
        let now_ms = self.hub.clock.now_ms();
        let agent = st.agents.entry(name.to_string()).or_insert_with(|| Agent {
            racks: Vec::new(),
            host: String::new(),
            version: String::new(),
            conn: None,
            last_heard_ms: now_ms,
            boot: String::new(),
            received: 0,
            acked: 0,
            cpu: None,
            draining: false,
            health: watch::Sender::new(RunnerHealth::Healthy),
            jobs: HashMap::new(),
            runs: BTreeMap::new(),
            fetches: 0,
            passed_over_until: None,
        });
        // The same life of the agent goes on from the last message taken; a new one (or
        // one that numbers none) starts afresh.
        let same_life = !resume.boot.is_empty() && agent.boot == resume.boot;
        if !same_life {
            agent.boot = resume.boot;
            agent.received = 0;
        }
        agent.acked = agent.received;
        // Back within the grace period: the phases it still has go on, the others are
        // gone with its old connection (or never reached it).
        let still: HashSet<u64> = if same_life {
            resume.running.iter().copied().collect()
        } else {
            HashSet::new()
        };
        agent.jobs.retain(|id, job| {
            if same_life && !still.contains(id) && !job.stopping {
                // The same life never had it: its Start went out on a connection that was
                // dying. (A phase it had stays on its list until its outcome is taken.)
                tracing::info!(
                    agent = name,
                    job = id,
                    "a phase the agent never got; sent again"
                );
                let _ = tx.send(ServerMsg::Start {
                    job: *id,
                    phase: Box::new(job.phase.clone()),
                });
                return true;
            }
            if still.contains(id) {
                if job.stopping {
                    let _ = tx.send(ServerMsg::Stop { job: *id });
                }
                for (prompt, (text, by)) in &job.answers {
                    let _ = tx.send(ServerMsg::Answer {
                        job: *id,
                        prompt: *prompt,
                        text: text.clone(),
                        by: by.clone(),
                    });
                }
                return true;
            }
            let _ = job.events.send(JobEvent::Lost(format!(
                "agent {name} reconnected without this phase"
            )));
            false
        });
        for id in &resume.running {
            if !agent.jobs.contains_key(id) {
                tracing::warn!(agent = name, job = id, "the agent runs a phase this server does not (lost after the grace period, or of an earlier server); stopping it");
                let _ = tx.send(ServerMsg::Stop { job: *id });
            }
        }
        agent.racks = racks;
        agent.host = host;
        agent.version = version;
        agent.conn = Some((conn, tx));
        agent.last_heard_ms = now_ms;
        agent.health.send_if_modified(|h| {
            let changed = *h != RunnerHealth::Healthy;
            *h = RunnerHealth::Healthy;
            changed
        });
        let acked = agent.acked;
        let watch = !std::mem::replace(&mut st.watching, true);
        drop(st);
        if watch {
            tokio::spawn(watchdog(Arc::downgrade(&self.hub)));
        }
        tracing::info!(agent = name, acked, "rack agent connected");
        self.hub.connected.notify_waiters();
        self.hub.changed();
        Ok(AgentSession {
            hub: self.hub.clone(),
            name: name.to_string(),
            conn,
            acked,
            outbox: rx,
        })
    }

    /// Close every agent's connection (a server that stopped owning the book: its agents
    /// belong to the new owner, `home`). Their sessions end as if the agents had gone,
    /// and the agents connect again, to be sent where the book is now.
    pub fn disconnect_all(&self) {
        let mut st = self.hub.lock();
        for (name, a) in st.agents.iter_mut() {
            if a.conn.take().is_some() {
                tracing::warn!(agent = %name, "closed the rack agent's connection: this server no longer owns the book");
            }
        }
    }

    /// Stall the runs of agents silent for 1.5 heartbeats, lose those silent for the
    /// grace period, by the hub's clock. Its watchdog does this four times a heartbeat;
    /// a test on a manual clock calls it after moving the clock.
    pub fn check(&self) {
        self.hub.check();
    }

    /// Every agent known since the console started.
    pub fn list(&self) -> Vec<AgentView> {
        let st = self.hub.lock();
        st.agents
            .iter()
            .map(|(name, a)| {
                let mut running: Vec<AgentPhaseView> = a.jobs.values().map(|j| j.view()).collect();
                running.sort_by(|x, y| (&x.run_id, &x.lane).cmp(&(&y.run_id, &y.lane)));
                AgentView {
                    name: name.clone(),
                    racks: a.racks.clone(),
                    host: a.host.clone(),
                    version: a.version.clone(),
                    connected: a.conn.is_some(),
                    state: a.state().to_string(),
                    last_heartbeat_ms: a.last_heard_ms,
                    cpu: a.cpu,
                    draining: a.draining,
                    runs: a.runs.keys().cloned().collect(),
                    running,
                    snapshot_fetches: a.fetches,
                    passed_over_until_ms: a.passed_over_until,
                }
            })
            .collect()
    }

    /// Give the agent no new runs (it finishes those it has); `false` takes it back.
    pub fn drain(&self, name: &str, on: bool) -> Result<(), AgentError> {
        let mut st = self.hub.lock();
        let a = st
            .agents
            .get_mut(name)
            .ok_or_else(|| AgentError::NoSuchAgent(name.into()))?;
        a.draining = on;
        tracing::info!(agent = name, draining = on, "agent drain changed");
        drop(st);
        self.hub.changed();
        Ok(())
    }

    /// Call `f` whenever an agent may take runs it could not before (it connected, was
    /// undrained, its CPU went back under the threshold). It must not block.
    pub fn on_change(&self, f: ChangeHook) {
        self.hub
            .hooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(f);
    }

    /// Whether a run on `rack` must wait: it wants an agent (`agent: true`), some live,
    /// undrained agent serves it, and every such agent is passed over now. `None` when
    /// one may take the run, and when none can (the launch then could not start).
    pub fn busy(&self, rack: &str) -> Option<RackBusy> {
        if !self.hub.agent_racks.contains(rack) {
            return None;
        }
        let now = self.hub.clock.now_ms();
        let threshold = self.hub.config.cpu_threshold;
        let st = self.hub.lock();
        let mut busy = Vec::new();
        for (name, a) in st
            .agents
            .iter()
            .filter(|(_, a)| a.takes(rack) && !a.draining)
        {
            if !a.passed_over(now) {
                return None;
            }
            let until = a.passed_over_until.unwrap_or(now);
            busy.push((
                format!(
                    "agent {name} busy: CPU {:.0}% > {threshold:.0}%, passed over until {}",
                    a.cpu.unwrap_or(0.0),
                    crate::reserve::fmt_ms_short(until)
                ),
                until,
            ));
        }
        let until_ms = busy.iter().map(|(_, u)| *u).min()?;
        Some(RackBusy {
            reason: busy
                .into_iter()
                .map(|(r, _)| r)
                .collect::<Vec<_>>()
                .join("; "),
            until_ms,
        })
    }

    /// The folder of the snapshot with this hash, counted as a fetch of `agent`.
    pub fn snapshot_dir(&self, agent: &str, hash: &str) -> Result<PathBuf, AgentError> {
        let mut st = self.hub.lock();
        let dir = st
            .snapshots
            .iter()
            .rev()
            .find(|(h, _)| h == hash)
            .map(|(_, d)| d.clone())
            .ok_or_else(|| AgentError::NoSnapshot(hash.into()))?;
        if let Some(a) = st.agents.get_mut(agent) {
            a.fetches = a.fetches.saturating_add(1);
        }
        Ok(dir)
    }
}

impl AgentDirectory for AgentHub {
    fn busy(&self, rack: &str) -> Option<RackBusy> {
        AgentHub::busy(self, rack)
    }

    fn runner_for(
        &self,
        rack: &str,
        run_id: &str,
        snapshot_hash: &str,
        snapshot_dir: &Path,
    ) -> Result<Option<Arc<dyn PhaseRunner>>, String> {
        if !self.hub.agent_racks.contains(rack) {
            return Ok(None);
        }
        let now = self.hub.clock.now_ms();
        let mut st = self.hub.lock();
        let mut draining = None;
        let pick = st
            .agents
            .iter()
            .filter(|(_, a)| a.takes(rack))
            .filter(|(name, a)| {
                if a.draining {
                    draining = Some((*name).clone());
                }
                !a.draining
            })
            // One under its CPU threshold first (the run queue waits while all are over).
            .min_by_key(|(_, a)| (a.passed_over(now), a.runs.len()))
            .map(|(name, _)| name.clone());
        let Some(name) = pick else {
            return Err(match draining {
                Some(d) => format!("no agent for {rack} ({d} is draining)"),
                None => format!("no agent for {rack}"),
            });
        };
        let agent = st.agents.get_mut(&name).expect("picked");
        *agent.runs.entry(run_id.to_string()).or_default() += 1;
        let health = agent.health.subscribe();
        if !st.snapshots.iter().any(|(h, _)| h == snapshot_hash) {
            st.snapshots
                .push_back((snapshot_hash.to_string(), snapshot_dir.to_path_buf()));
            if st.snapshots.len() > SNAPSHOTS_KEPT {
                st.snapshots.pop_front();
            }
        }
        drop(st);
        tracing::info!(run_id, rack, agent = %name, "run bound to its rack's agent");
        Ok(Some(Arc::new(AgentRunner::new(
            self.hub.clone(),
            name,
            run_id.to_string(),
            snapshot_dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            health,
        ))))
    }
}

/// One agent's open connection, as the transport holds it.
pub struct AgentSession {
    hub: Arc<Hub>,
    name: String,
    conn: u64,
    /// The last of the agent's numbered messages taken before this connection.
    acked: u64,
    /// What to send the agent, in order.
    pub outbox: mpsc::UnboundedReceiver<ServerMsg>,
}

impl AgentSession {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first message: the agent's name and heartbeat interval.
    pub fn welcome(&self) -> ServerMsg {
        ServerMsg::Welcome {
            name: self.name.clone(),
            heartbeat_ms: self.hub.config.heartbeat.as_millis() as u64,
            acked: self.acked,
        }
    }

    /// A message from the agent.
    pub fn receive(&self, msg: AgentMsg) {
        use base64::Engine as _;
        let mut st = self.hub.lock();
        let Some(agent) = st.agents.get_mut(&self.name) else {
            return;
        };
        if agent.conn.as_ref().map(|(c, _)| *c) != Some(self.conn) {
            return;
        }
        agent.last_heard_ms = self.hub.clock.now_ms();
        let msg = match msg {
            AgentMsg::Seq { seq, msg } => {
                if seq <= agent.received {
                    tracing::debug!(agent = %self.name, seq, "a message taken before; dropped");
                    return;
                }
                agent.received = seq;
                if seq >= agent.acked + ACK_EVERY || matches!(*msg, AgentMsg::Done { .. }) {
                    agent.ack(false);
                }
                *msg
            }
            AgentMsg::Heartbeat { .. } => {
                agent.ack(true);
                msg
            }
            msg => msg,
        };
        if !matches!(&*agent.health.borrow(), RunnerHealth::Healthy) {
            agent.health.send_replace(RunnerHealth::Healthy);
        }
        let (job, event) = match msg {
            AgentMsg::Heartbeat { cpu } => {
                agent.cpu = cpu.filter(|c| c.is_finite());
                let freed = self.hub.judge_cpu(&self.name, agent);
                drop(st);
                if freed {
                    self.hub.changed();
                }
                return;
            }
            AgentMsg::Hello { .. } | AgentMsg::Seq { .. } => return,
            AgentMsg::Spawned { job, pid } => (job, JobEvent::Spawned(pid)),
            AgentMsg::Log { job, log } => (job, JobEvent::Log(log)),
            AgentMsg::Section { job, id, section } => (job, JobEvent::Section(id, section)),
            AgentMsg::Measured {
                job,
                section,
                measurement,
            } => (job, JobEvent::Measured(section, measurement)),
            AgentMsg::Prompt { job, prompt } => (job, JobEvent::Asked(prompt)),
            AgentMsg::PromptAnswered {
                job,
                prompt,
                answer,
            } => {
                if let Some(j) = agent.jobs.get_mut(&job) {
                    j.answers.remove(&prompt);
                }
                (job, JobEvent::Answered(prompt, answer))
            }
            AgentMsg::File {
                job,
                path,
                data,
                append,
            } => {
                let Ok(data) = base64::engine::general_purpose::STANDARD.decode(data) else {
                    tracing::warn!(agent = %self.name, job, "a file piece that is not base64; dropped");
                    return;
                };
                (job, JobEvent::File { path, data, append })
            }
            AgentMsg::Done { job, outcome } => {
                let Some(j) = agent.jobs.remove(&job) else {
                    tracing::warn!(agent = %self.name, job, "the outcome of a phase this server does not run (lost after the grace period, or of an earlier server); refused");
                    return;
                };
                let _ = j.events.send(JobEvent::Done(outcome));
                return;
            }
        };
        if let Some(j) = agent.jobs.get(&job) {
            let _ = j.events.send(event);
        }
    }
}

impl Drop for AgentSession {
    fn drop(&mut self) {
        let mut st = self.hub.lock();
        if let Some(a) = st.agents.get_mut(&self.name) {
            if a.conn.as_ref().map(|(c, _)| *c) == Some(self.conn) {
                a.conn = None;
                tracing::warn!(agent = %self.name, "rack agent disconnected");
                if !a.runs.is_empty() {
                    let reason = format!(
                        "agent {} lost its connection; waiting up to {} s for it",
                        self.name,
                        self.hub.config.grace.as_secs()
                    );
                    a.health.send_replace(RunnerHealth::Stalled(reason));
                }
            }
        }
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tell the hooks an agent may take runs it could not before.
    fn changed(&self) {
        let hooks = self.hooks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for f in hooks {
            f();
        }
    }

    /// After a heartbeat: pass the agent over for `pass_over` when its CPU is above the
    /// threshold and it is not passed over already (so one that stays above is taken
    /// again when the time is up, then passed over again at its next heartbeat); take
    /// it back at once when it is at or under. `true` when it was passed over and is no
    /// longer.
    fn judge_cpu(&self, name: &str, agent: &mut Agent) -> bool {
        let now = self.clock.now_ms();
        let over = agent.cpu.is_some_and(|c| c > self.config.cpu_threshold);
        if over {
            if !agent.passed_over(now) {
                let until = now + self.config.pass_over.as_millis() as EpochMs;
                agent.passed_over_until = Some(until);
                tracing::info!(
                    agent = name,
                    cpu = agent.cpu,
                    until,
                    "agent passed over: CPU above its threshold"
                );
            }
            false
        } else {
            agent.passed_over_until.take().is_some_and(|u| u > now)
        }
    }

    /// Send a phase to `agent`; its events come out of `events`.
    fn start_job(
        &self,
        agent: &str,
        job: &PhaseJob,
        events: mpsc::UnboundedSender<JobEvent>,
    ) -> Result<u64, StartError> {
        let id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        let a = st
            .agents
            .get_mut(agent)
            .ok_or_else(|| StartError::Gone(format!("agent {agent} is gone")))?;
        let away = || StartError::Away(format!("agent {agent} is not connected"));
        let Some((_, out)) = &a.conn else {
            return Err(away());
        };
        out.send(ServerMsg::Start {
            job: id,
            phase: Box::new(job.clone()),
        })
        .map_err(|_| away())?;
        a.jobs.insert(
            id,
            Job {
                phase: job.clone(),
                events,
                stopping: false,
                answers: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    fn stop_job(&self, agent: &str, job: u64) {
        let mut st = self.lock();
        let Some(a) = st.agents.get_mut(agent) else {
            return;
        };
        if let Some(j) = a.jobs.get_mut(&job) {
            j.stopping = true;
        }
        if let Some((_, out)) = &a.conn {
            let _ = out.send(ServerMsg::Stop { job });
        }
    }

    /// Send the operator's answer to prompt `prompt` of phase `job` to `agent`; kept
    /// until the agent says it took it, and sent again when it comes back after a cut
    /// (the agent ignores an answer to a prompt it no longer waits for).
    fn answer_prompt(&self, agent: &str, job: u64, prompt: u64, text: String, by: Option<String>) {
        let mut st = self.lock();
        let Some(a) = st.agents.get_mut(agent) else {
            return;
        };
        let Some(j) = a.jobs.get_mut(&job) else {
            return;
        };
        j.answers.insert(prompt, (text.clone(), by.clone()));
        if let Some((_, out)) = &a.conn {
            let _ = out.send(ServerMsg::Answer {
                job,
                prompt,
                text,
                by,
            });
        }
    }

    fn forget_job(&self, agent: &str, job: u64) {
        if let Some(a) = self.lock().agents.get_mut(agent) {
            a.jobs.remove(&job);
        }
    }

    fn unbind(&self, agent: &str, run_id: &str) {
        if let Some(a) = self.lock().agents.get_mut(agent) {
            if let Some(n) = a.runs.get_mut(run_id) {
                *n -= 1;
                if *n == 0 {
                    a.runs.remove(run_id);
                }
            }
        }
    }

    /// Stall the runs of agents silent for 1.5 heartbeats; lose those silent for the
    /// grace period.
    fn check(&self) {
        let now = self.clock.now_ms();
        let (hb, grace) = (self.config.heartbeat, self.config.grace);
        let mut st = self.lock();
        for (name, a) in st.agents.iter_mut() {
            let silent = Duration::from_millis(now.saturating_sub(a.last_heard_ms).max(0) as u64);
            let quiet = a.conn.is_none() || silent > hb + hb / 2;
            if !quiet || matches!(&*a.health.borrow(), RunnerHealth::Lost(_)) {
                continue;
            }
            if silent > grace {
                let reason = format!(
                    "agent {name} not heard from for {} s (grace period {} s)",
                    silent.as_secs(),
                    grace.as_secs()
                );
                tracing::warn!(agent = %name, "{reason}; its runs are interrupted");
                for (_, job) in a.jobs.drain() {
                    let _ = job.events.send(JobEvent::Lost(reason.clone()));
                }
                a.conn = None;
                a.runs.clear();
                a.health.send_replace(RunnerHealth::Lost(reason));
                // A later connection starts afresh.
                a.health = watch::Sender::new(RunnerHealth::Healthy);
                a.health.send_replace(RunnerHealth::Lost(String::new()));
            } else if !a.runs.is_empty() && *a.health.borrow() == RunnerHealth::Healthy {
                let reason = format!(
                    "agent {name} not heard from for {} s; waiting up to {} s for it",
                    silent.as_secs(),
                    grace.as_secs()
                );
                a.health.send_replace(RunnerHealth::Stalled(reason));
            }
        }
    }
}

/// Why a phase could not be sent to its agent.
#[derive(Debug)]
enum StartError {
    /// Not connected this moment (between two connections, or silent): it may come back
    /// within the grace period.
    Away(String),
    /// Not known to the hub.
    Gone(String),
}

/// The first phase number of this process: its start time in ms, times 1,024.
fn first_job() -> u64 {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ms.saturating_mul(1024).max(1)
}

/// Looks at the agents four times a heartbeat while the hub lives.
async fn watchdog(hub: Weak<Hub>) {
    loop {
        let every = match hub.upgrade() {
            Some(h) => {
                h.check();
                (h.config.heartbeat / 4).max(Duration::from_millis(10))
            }
            None => return,
        };
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests;
