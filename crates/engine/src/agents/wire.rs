//! What a rack agent and its server say to each other: JSON messages, one per WebSocket
//! text frame (`GET /api/agent`), in order. The agent speaks first ([`AgentMsg::Hello`]);
//! the server answers [`ServerMsg::Welcome`] with the heartbeat interval, then sends
//! phases to run; a server that does not own the book answers [`ServerMsg::Redirect`]
//! instead of the welcome. An agent sends a phase's files before its [`AgentMsg::Done`], and
//! every message about a phase numbered ([`AgentMsg::Seq`]) so none is lost or doubled
//! across a cut ([`ServerMsg::Ack`], `outbox`). A phase's operator prompt goes to the
//! server and its answer comes back.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::exec::prompts::PromptView;
use crate::exec::{LiveLog, PhaseOutcome};
use crate::measure::Measurement;
use crate::reporter::{PromptAnswer, Section};
use crate::run::PhaseJob;

/// From the agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMsg {
    /// The racks it serves (its name is its user's).
    Hello {
        racks: Vec<String>,
        host: String,
        version: String,
        /// This life of the agent process (its sequence numbers count from 1 in each).
        #[serde(default)]
        boot: String,
        /// Back after a cut: the phases it still runs or has unacknowledged messages of.
        #[serde(default)]
        running: Vec<u64>,
    },
    /// Still there; the host's CPU use in percent since the previous heartbeat.
    Heartbeat { cpu: Option<f64> },
    /// The phase's process started (its pid on the agent's machine).
    Spawned { job: u64, pid: u32 },
    /// Live output of a phase.
    Log { job: u64, log: LiveLog },
    /// A piece of one of the phase's files (its log, result file, an artifact), `path`
    /// relative to the attempt's folder; `append` continues the previous piece.
    File {
        job: u64,
        path: String,
        /// Standard base64.
        data: String,
        append: bool,
    },
    /// The phase ended (or could not be attempted: the error).
    Done {
        job: u64,
        outcome: Result<Box<PhaseOutcome>, String>,
    },
    /// A section the phase opened or closed through its reporter, as it stands now
    /// (details and extra data left out, as live events carry them); `id` is its place
    /// in the phase's report.
    Section {
        job: u64,
        id: u32,
        section: Box<Section>,
    },
    /// A measurement the phase reported through its reporter.
    Measured {
        job: u64,
        section: Option<u32>,
        measurement: Box<Measurement>,
    },
    /// The phase asks the operator (`prompt.id` is the agent's number for it); the
    /// server raises it like a prompt of its own and sends the answer back
    /// ([`ServerMsg::Answer`]). The agent keeps the timeout.
    Prompt { job: u64, prompt: Box<PromptView> },
    /// The phase's prompt `prompt` got its answer, or timed out, as the phase saw it.
    PromptAnswered {
        job: u64,
        prompt: u64,
        answer: PromptAnswer,
    },
    /// One of the messages above (all but `hello` and `heartbeat`) with its place in the
    /// agent's outbox: numbered from 1, in order, per life of the agent (`boot`). The
    /// agent sends them again after a cut from the first the server did not
    /// acknowledge; the server takes each number once.
    Seq { seq: u64, msg: Box<AgentMsg> },
}

impl AgentMsg {
    /// The phase a message is about.
    pub fn job(&self) -> Option<u64> {
        match self {
            AgentMsg::Hello { .. } | AgentMsg::Heartbeat { .. } => None,
            AgentMsg::Spawned { job, .. }
            | AgentMsg::Log { job, .. }
            | AgentMsg::File { job, .. }
            | AgentMsg::Done { job, .. }
            | AgentMsg::Section { job, .. }
            | AgentMsg::Measured { job, .. }
            | AgentMsg::Prompt { job, .. }
            | AgentMsg::PromptAnswered { job, .. } => Some(*job),
            AgentMsg::Seq { msg, .. } => msg.job(),
        }
    }
}

/// From the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// Taken on, under this name; heartbeat this often.
    Welcome {
        name: String,
        heartbeat_ms: u64,
        /// The last of this agent life's numbered messages the server has (0: none).
        #[serde(default)]
        acked: u64,
    },
    /// Run this phase.
    Start { job: u64, phase: Box<PhaseJob> },
    /// Terminate this phase (its process group; the result is `Aborted`).
    Stop { job: u64 },
    /// The server has every numbered message up to `seq` (cumulative, sent in batches).
    Ack { seq: u64 },
    /// The operator's answer to the phase's prompt `prompt` (the agent's number for it),
    /// and who gave it.
    Answer {
        job: u64,
        prompt: u64,
        text: String,
        by: Option<String>,
    },
    /// Instead of the welcome: this server does not own the reservation book, so the
    /// agent belongs elsewhere (`agents::home`). `url`: the owner's address, to connect
    /// to now; none: nobody owns it yet (`why`), try again later.
    Redirect { url: Option<String>, why: String },
}

/// One file of a pack snapshot (`agent_snapshot`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct SnapshotFile {
    /// Relative to the pack's root.
    pub path: String,
    /// Whether it is a program (any execute bit).
    pub executable: bool,
    /// The bytes, standard base64.
    pub data: String,
}

/// A run's pack snapshot, as an agent fetches it by its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Snapshot {
    pub hash: String,
    pub files: Vec<SnapshotFile>,
}
