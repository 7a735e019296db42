//! The reporter protocol and the section tree it builds, pure: what a task process says to
//! the console while it runs (pyATS's reporter: a client per task process, sections
//! started and stopped as the task goes) and the checks on it. The engine serves it on a
//! Unix socket per run (`engine::exec::reporter`); this module knows no sockets.
//!
//! The protocol is newline-delimited JSON: every line a client writes is one
//! [`ClientMessage`], every line the console writes back is one [`Reply`], in order. A
//! connection first says `hello` with the `TESTBAY_REPORTER_TOKEN` of its phase; that ties
//! it to one task phase. Sections nest (pyATS's TestSuite > Task > Section): a
//! `section_start` opens a section inside the connection's innermost open section, a
//! `section_stop` closes that innermost one and must name it (a connection with no
//! section of its own open closes the section opened last, so a shell task may open and
//! close a section with two commands). A connection that says hello
//! while another connection of the same phase has sections open (a forked child, pyATS's
//! client tree) starts inside the section opened last. Details, extra data, measurements
//! and attachments go to the innermost open section, or to the task when none is open.
//!
//! Bounds: [`MAX_MESSAGE_BYTES`] per line; [`MAX_SECTIONS`], [`MAX_DETAILS`],
//! [`MAX_MEASUREMENTS`], [`MAX_ATTACHMENTS`] and [`MAX_EXTRA`] per phase; names and texts
//! within [`MAX_NAME_BYTES`] and [`MAX_TEXT_BYTES`]. What goes over is refused with an
//! error reply, so a flood keeps the console's memory flat.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::clock::EpochMs;
use crate::measure::Comparison;

mod section;

pub use section::{Change, Client, PhaseReport, Section};

/// Environment variable with the socket's path, set for every task phase.
pub const SOCKET_ENV: &str = "TESTBAY_REPORTER";
/// Environment variable with the phase's token, which a client sends in its `hello`.
pub const TOKEN_ENV: &str = "TESTBAY_REPORTER_TOKEN";

/// Longest line a client may send, bytes (newline excluded).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Sections one phase may open.
pub const MAX_SECTIONS: usize = 10_000;
/// Details one phase may add.
pub const MAX_DETAILS: usize = 10_000;
/// Measurements one phase may record.
pub const MAX_MEASUREMENTS: usize = 10_000;
/// Files one phase may attach.
pub const MAX_ATTACHMENTS: usize = 1_000;
/// Extra keys one phase may set.
pub const MAX_EXTRA: usize = 1_000;
/// Longest section, result, measurement or extra key name, bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest detail, description or message, bytes.
pub const MAX_TEXT_BYTES: usize = 8 * 1024;
/// Deepest nesting of sections.
pub const MAX_DEPTH: usize = 32;

/// One line a task sends to the reporter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message of a connection: the phase's `TESTBAY_REPORTER_TOKEN`.
    Hello {
        token: String,
        /// The client's process id, for the log.
        #[serde(default)]
        #[schemars(range(min = 1, max = 4_194_304))]
        pid: Option<u32>,
    },
    /// Open a section inside the connection's innermost open section.
    SectionStart {
        name: String,
        #[serde(default)]
        description: Option<String>,
    },
    /// Close the connection's innermost open section, which must be `name`.
    SectionStop {
        name: String,
        /// Its result (pyATS result names); `Passed` when absent.
        #[serde(default)]
        result: Option<String>,
        #[serde(default)]
        message: Option<String>,
    },
    /// A line of text for the innermost open section (or the task).
    Detail { text: String },
    /// A key and any JSON value for the innermost open section (or the task).
    Extra { key: String, value: Value },
    /// A measurement (the model of `Measurement`), judged against its limits.
    Measurement {
        name: String,
        value: f64,
        #[serde(default)]
        units: Option<String>,
        #[serde(default)]
        low: Option<f64>,
        #[serde(default)]
        high: Option<f64>,
        #[serde(default)]
        comparison: Option<Comparison>,
    },
    /// A file inside the phase's artifacts folder (`TESTBAY_ARTIFACTS`), absolute or
    /// relative to that folder.
    Attach { path: String },
    /// The task's result, once per phase (a result file, when written, wins).
    SetResult {
        result: String,
        #[serde(default)]
        message: Option<String>,
    },
    /// Ask the operator and wait for the answer (the reply's `answer`): one of `choices`
    /// when given, else free text matching `pattern` (a regular expression, whole text)
    /// when given. After `timeout_s` (default and at most [`MAX_PROMPT_S`]) the answer is
    /// a timeout.
    Prompt {
        message: String,
        #[serde(default)]
        choices: Vec<String>,
        #[serde(default)]
        pattern: Option<String>,
        #[serde(default)]
        #[schemars(range(min = 0, max = 86_400))]
        timeout_s: Option<f64>,
    },
}

/// Longest a prompt waits for its answer, seconds (also its default).
pub const MAX_PROMPT_S: f64 = 86_400.0;
/// Choices one prompt may offer.
pub const MAX_CHOICES: usize = 32;

/// The operator's answer to a prompt, or its timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[ts(export)]
pub struct PromptAnswer {
    /// The answer; empty when it timed out.
    pub text: String,
    /// Who answered (as the console knows them); `None` on a timeout.
    #[serde(default)]
    pub by: Option<String>,
    #[ts(type = "number")]
    #[schemars(range(min = 0, max = 253_402_300_799_999i64))]
    pub at_ms: EpochMs,
    pub timed_out: bool,
}

impl PromptAnswer {
    /// The answer a prompt gets when nobody answered in time.
    pub fn timeout(at_ms: EpochMs) -> Self {
        PromptAnswer {
            text: String::new(),
            by: None,
            at_ms,
            timed_out: true,
        }
    }
}

/// A prompt a task asked and what came of it, kept with the phase's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromptRecord {
    pub message: String,
    pub answer: PromptAnswer,
}

/// Checks a prompt as asked: its message, choices and timeout.
pub fn check_prompt(
    message: &str,
    choices: &[String],
    timeout_s: Option<f64>,
) -> Result<(), ProtocolError> {
    if message.trim().is_empty() {
        return Err(ProtocolError::BadValue {
            what: "prompt message".into(),
            rule: "not empty".into(),
        });
    }
    check_text("prompt message", message)?;
    if choices.len() > MAX_CHOICES {
        return Err(ProtocolError::BadValue {
            what: "choices".into(),
            rule: format!("at most {MAX_CHOICES}"),
        });
    }
    for c in choices {
        check_name("choice", c)?;
    }
    if let Some(t) = timeout_s {
        if !(t > 0.0 && t <= MAX_PROMPT_S) {
            return Err(ProtocolError::BadValue {
                what: "timeout_s".into(),
                rule: format!("more than 0 and at most {MAX_PROMPT_S}"),
            });
        }
    }
    Ok(())
}

/// The console's answer to one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub ok: bool,
    /// The id of the section a `section_start` opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 9_999))]
    pub id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
    /// The answer to a `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<PromptAnswer>,
}

/// Why a message was refused; the client may show `message` as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyError {
    pub code: String,
    pub message: String,
}

impl Reply {
    pub fn ok(id: Option<u32>) -> Self {
        Reply {
            ok: true,
            id,
            error: None,
            answer: None,
        }
    }

    pub fn err(e: &ProtocolError) -> Self {
        Reply {
            ok: false,
            id: None,
            error: Some(ReplyError {
                code: e.code().into(),
                message: e.to_string(),
            }),
            answer: None,
        }
    }
}

/// The whole protocol, for `schemas/reporter.schema.json`: what a client sends and what it
/// gets back.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ReporterProtocol {
    pub client: ClientMessage,
    pub reply: Reply,
}

/// A message the console refused, with a stable code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    #[error("not a reporter message: {0}")]
    BadMessage(String),
    #[error("message is over {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("say hello with the phase's TESTBAY_REPORTER_TOKEN first")]
    NoHello,
    #[error("already said hello")]
    HelloTwice,
    #[error("unknown token: not a phase of this run that is running")]
    UnknownToken,
    #[error("the phase has ended")]
    PhaseOver,
    #[error("section `{0}` is not open")]
    NotOpen(String),
    #[error("section `{asked}` is not the innermost open section (`{open}` is)")]
    NotInnermost { asked: String, open: String },
    #[error("the result is already set (to {0})")]
    ResultTwice(String),
    #[error("{0}")]
    BadMeasurement(String),
    #[error("measurement `{0}` was already recorded in this task")]
    DuplicateMeasurement(String),
    #[error("cannot attach `{0}`: {1}")]
    BadAttachment(String, String),
    #[error("{what} must be {rule}")]
    BadValue { what: String, rule: String },
    #[error("over the limit of {limit} {what} per phase")]
    Limit { what: &'static str, limit: usize },
}

impl ProtocolError {
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::BadMessage(_) => "bad_message",
            ProtocolError::TooLarge => "too_large",
            ProtocolError::NoHello => "no_hello",
            ProtocolError::HelloTwice => "hello_twice",
            ProtocolError::UnknownToken => "unknown_token",
            ProtocolError::PhaseOver => "phase_over",
            ProtocolError::NotOpen(_) => "not_open",
            ProtocolError::NotInnermost { .. } => "not_innermost",
            ProtocolError::ResultTwice(_) => "result_twice",
            ProtocolError::BadMeasurement(_) => "bad_measurement",
            ProtocolError::DuplicateMeasurement(_) => "duplicate_measurement",
            ProtocolError::BadAttachment(..) => "bad_attachment",
            ProtocolError::BadValue { .. } => "bad_value",
            ProtocolError::Limit { .. } => "limit",
        }
    }
}

/// Parses one line (without its newline).
pub fn parse_line(line: &[u8]) -> Result<ClientMessage, ProtocolError> {
    if line.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge);
    }
    serde_json::from_slice(line).map_err(|e| {
        let msg = e.to_string();
        ProtocolError::BadMessage(
            msg.rsplit_once(" at line ")
                .map(|(m, _)| m.to_string())
                .unwrap_or(msg),
        )
    })
}

fn check_name(what: &str, s: &str) -> Result<(), ProtocolError> {
    if s.trim().is_empty() || s.len() > MAX_NAME_BYTES || s.chars().any(char::is_control) {
        return Err(ProtocolError::BadValue {
            what: what.into(),
            rule: format!(
                "a non-empty name of at most {MAX_NAME_BYTES} bytes without control characters"
            ),
        });
    }
    Ok(())
}

fn check_text(what: &str, s: &str) -> Result<(), ProtocolError> {
    if s.len() > MAX_TEXT_BYTES {
        return Err(ProtocolError::BadValue {
            what: what.into(),
            rule: format!("at most {MAX_TEXT_BYTES} bytes"),
        });
    }
    Ok(())
}
