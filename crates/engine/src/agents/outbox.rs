//! The agent's outbox: every message about a phase (its start, live output, sections,
//! measurements, files and outcome) numbered in order and kept until the server
//! acknowledges it, so a network cut or a server restart loses none: the phase runs on,
//! its messages wait here, and on reconnect the agent sends again those after the last
//! one the server says it has ([`Outbox::resume`]); the server takes each number once.
//!
//! Bounded ([`AGENT_OUTBOX_MAX_MESSAGES`], [`AGENT_OUTBOX_MAX_BYTES`]): beyond either,
//! the oldest live log lines go first, a phase's dropped lines counted in one
//! [`LiveLog::Dropped`] at the place of the first of them (the phase's log file still
//! travels whole with its outcome). The stored state (files, sections, measurements,
//! outcomes) is never dropped: an outbox of nothing else may exceed the bound (logged).

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::wire::AgentMsg;
use crate::bounds::{AGENT_OUTBOX_MAX_BYTES, AGENT_OUTBOX_MAX_MESSAGES};
use crate::exec::LiveLog;

/// Bytes counted per message besides its text (framing, numbers, names).
const OVERHEAD: usize = 64;

struct Entry {
    seq: u64,
    job: u64,
    size: usize,
    body: Body,
}

enum Body {
    Msg(AgentMsg),
    /// Live log lines of `job` dropped here to keep the outbox within its bound.
    Dropped(u64),
}

/// An agent's numbered messages not acknowledged yet.
pub struct Outbox {
    max_messages: usize,
    max_bytes: usize,
    /// The number the next message gets.
    next: u64,
    /// The last number the server has.
    acked: u64,
    /// The last number sent on the current connection.
    sent: u64,
    entries: VecDeque<Entry>,
    bytes: usize,
    /// A job's [`Body::Dropped`] still here, by its number (lines dropped later are
    /// counted in it; one the server took already under-reports them).
    markers: HashMap<u64, u64>,
    /// Live log lines dropped, in all.
    dropped_lines: u64,
    warned: bool,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::with_bounds(AGENT_OUTBOX_MAX_MESSAGES, AGENT_OUTBOX_MAX_BYTES)
    }
}

fn size_of(msg: &AgentMsg) -> usize {
    OVERHEAD
        + match msg {
            AgentMsg::Log {
                log: LiveLog::Lines(lines),
                ..
            } => lines.iter().map(|l| l.len() + 4).sum(),
            AgentMsg::File { path, data, .. } => path.len() + data.len(),
            AgentMsg::Done { outcome: Ok(o), .. } => {
                o.message.len() + o.raw_result.as_ref().map_or(0, |r| r.len()) + 1024
            }
            AgentMsg::Section { section, .. } => section.name.len() + 256,
            _ => 0,
        }
}

impl Outbox {
    /// An outbox of at most `max_messages` messages and about `max_bytes` bytes.
    pub fn with_bounds(max_messages: usize, max_bytes: usize) -> Self {
        Self {
            max_messages: max_messages.max(1),
            max_bytes,
            next: 1,
            acked: 0,
            sent: 0,
            entries: VecDeque::new(),
            bytes: 0,
            markers: HashMap::new(),
            dropped_lines: 0,
            warned: false,
        }
    }

    /// Keep `msg` (a message about a phase) under the next number.
    pub fn push(&mut self, msg: AgentMsg) {
        let job = msg.job().unwrap_or(0);
        let size = size_of(&msg);
        self.entries.push_back(Entry {
            seq: self.next,
            job,
            size,
            body: Body::Msg(msg),
        });
        self.next += 1;
        self.bytes += size;
        self.shed();
    }

    /// The server has every message up to `seq`.
    pub fn ack(&mut self, seq: u64) {
        self.acked = self.acked.max(seq.min(self.next - 1));
        while self.entries.front().is_some_and(|e| e.seq <= self.acked) {
            let e = self.entries.pop_front().expect("checked");
            self.bytes -= e.size;
            if self.markers.get(&e.job) == Some(&e.seq) {
                self.markers.remove(&e.job);
            }
        }
        self.sent = self.sent.max(self.acked);
        if self.entries.is_empty() {
            self.warned = false;
        }
    }

    /// A new connection, whose server has every message up to `acked`: the next
    /// [`Outbox::next_unsent`] is the first after it.
    pub fn resume(&mut self, acked: u64) {
        self.ack(acked);
        self.sent = self.acked;
    }

    /// The next message to send on this connection, numbered.
    pub fn next_unsent(&mut self) -> Option<AgentMsg> {
        let at = self.entries.partition_point(|e| e.seq <= self.sent);
        let e = self.entries.get(at)?;
        self.sent = e.seq;
        let msg = match &e.body {
            Body::Msg(m) => m.clone(),
            Body::Dropped(lines) => AgentMsg::Log {
                job: e.job,
                log: LiveLog::Dropped(*lines),
            },
        };
        Some(AgentMsg::Seq {
            seq: e.seq,
            msg: Box::new(msg),
        })
    }

    /// Whether a message waits to be sent on this connection.
    pub fn has_unsent(&self) -> bool {
        self.entries.back().is_some_and(|e| e.seq > self.sent)
    }

    /// The phases with messages here.
    pub fn jobs(&self) -> BTreeSet<u64> {
        self.entries.iter().map(|e| e.job).collect()
    }

    /// The last number the server acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Messages kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes kept, about.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Live log lines dropped to keep within the bound, since the agent started.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    fn over(&self) -> bool {
        self.entries.len() > self.max_messages || self.bytes > self.max_bytes
    }

    /// Drop the oldest live log lines while over the bound.
    fn shed(&mut self) {
        while self.over() {
            let Some(i) = self
                .entries
                .iter()
                .position(|e| matches!(&e.body, Body::Msg(AgentMsg::Log { .. })))
            else {
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(
                        messages = self.entries.len(),
                        bytes = self.bytes,
                        "the agent's outbox is over its bound with phase results only; keeping them until the server takes them"
                    );
                }
                return;
            };
            let e = &self.entries[i];
            let (job, seq) = (e.job, e.seq);
            let lines = match &e.body {
                Body::Msg(AgentMsg::Log {
                    log: LiveLog::Lines(l),
                    ..
                }) => l.len() as u64,
                Body::Msg(AgentMsg::Log {
                    log: LiveLog::Dropped(n),
                    ..
                }) => *n,
                _ => 0,
            };
            self.dropped_lines += lines;
            let marker = self
                .markers
                .get(&job)
                .and_then(|m| self.entries.binary_search_by_key(m, |e| e.seq).ok())
                .filter(|&m| m < i);
            match marker {
                Some(m) => {
                    if let Body::Dropped(n) = &mut self.entries[m].body {
                        *n += lines;
                    }
                    let gone = self.entries.remove(i).expect("found");
                    self.bytes -= gone.size;
                }
                None => {
                    let e = &mut self.entries[i];
                    self.bytes -= e.size - OVERHEAD;
                    e.size = OVERHEAD;
                    e.body = Body::Dropped(lines);
                    self.markers.insert(job, seq);
                }
            }
        }
    }
}
