//! The section tree of one task phase, built from its clients' messages within the bounds
//! the protocol sets (see the parent module).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use ts_rs::TS;

use super::*;
use crate::clock::EpochMs;
use crate::measure::Measurement;
use crate::outcome::ERRORED;

/// One section of a task phase as the reporter built it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, TS)]
#[ts(export)]
pub struct Section {
    /// Its number within the phase, from 0 in the order sections started.
    pub id: u32,
    /// The section it sits in; `None` at the top of the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub parent: Option<u32>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub description: Option<String>,
    /// `None` while it is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub result: Option<String>,
    #[serde(default)]
    pub message: String,
    #[ts(type = "number")]
    pub started_ms: EpochMs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub finished_ms: Option<EpochMs>,
    #[serde(default)]
    pub details: Vec<String>,
    #[serde(default)]
    #[ts(type = "Record<string, unknown>")]
    pub extra: Map<String, Value>,
    #[serde(default)]
    pub measurements: Vec<Measurement>,
    /// Attached files, relative to the phase's artifacts folder.
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// What one connection has open.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// The section it started inside (its parent's innermost open one when it said hello).
    base: Option<u32>,
    /// Its own open sections, innermost last.
    stack: Vec<u32>,
}

/// What a message changed, for the live event stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    None,
    Started(u32),
    Stopped(u32),
    Measured {
        section: Option<u32>,
        measurement: Measurement,
    },
    Result,
}

/// Everything one task phase reported: its section tree and what sits on the task itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseReport {
    pub sections: Vec<Section>,
    /// Set by `set_result`: result and message.
    pub result: Option<(String, String)>,
    /// Details, extra data and attachments outside any section.
    pub details: Vec<String>,
    pub extra: Map<String, Value>,
    pub attachments: Vec<String>,
    /// Every measurement of the phase, sections' included, in the order recorded (the
    /// task's measurements, as a result file's `measurements` gives them).
    pub measurements: Vec<Measurement>,
    /// Prompts the phase asked, with their answers, in order.
    pub prompts: Vec<PromptRecord>,
    /// The section opened last that is still open, where a new connection starts.
    #[serde(skip)]
    latest_open: Option<u32>,
    #[serde(skip)]
    details_count: usize,
    #[serde(skip)]
    extra_count: usize,
}

fn limit(count: usize, limit: usize, what: &'static str) -> Result<(), ProtocolError> {
    if count >= limit {
        return Err(ProtocolError::Limit { what, limit });
    }
    Ok(())
}

impl PhaseReport {
    /// A connection that said hello: it starts inside the section opened last that is
    /// still open (its parent's, for a forked child).
    pub fn connect(&self) -> Client {
        Client {
            base: self.latest_open,
            stack: Vec::new(),
        }
    }

    fn innermost(&self, client: &Client) -> Option<u32> {
        client.stack.last().copied().or(client.base).filter(|id| {
            self.sections
                .get(*id as usize)
                .is_some_and(|s| s.result.is_none())
        })
    }

    fn depth(&self, mut id: Option<u32>) -> usize {
        let mut d = 0;
        while let Some(i) = id {
            d += 1;
            id = self.sections.get(i as usize).and_then(|s| s.parent);
        }
        d
    }

    /// Applies one message (not `hello`, which the engine handles) from `client`.
    /// `Attach` carries the path already checked by the caller, relative to the artifacts
    /// folder.
    pub fn apply(
        &mut self,
        client: &mut Client,
        msg: ClientMessage,
        now: EpochMs,
    ) -> Result<Change, ProtocolError> {
        match msg {
            ClientMessage::Hello { .. } => Err(ProtocolError::HelloTwice),
            // The engine waits for the operator; it records the outcome with `prompted`.
            ClientMessage::Prompt { .. } => Ok(Change::None),
            ClientMessage::SectionStart { name, description } => {
                check_name("section name", &name)?;
                if let Some(d) = &description {
                    check_text("description", d)?;
                }
                limit(self.sections.len(), MAX_SECTIONS, "sections")?;
                let parent = self.innermost(client);
                if self.depth(parent) >= MAX_DEPTH {
                    return Err(ProtocolError::Limit {
                        what: "levels of nested sections",
                        limit: MAX_DEPTH,
                    });
                }
                let id = self.sections.len() as u32;
                self.sections.push(Section {
                    id,
                    parent,
                    name,
                    description,
                    result: None,
                    message: String::new(),
                    started_ms: now,
                    finished_ms: None,
                    details: Vec::new(),
                    extra: Map::new(),
                    measurements: Vec::new(),
                    attachments: Vec::new(),
                });
                client.stack.push(id);
                self.latest_open = Some(id);
                Ok(Change::Started(id))
            }
            ClientMessage::SectionStop {
                name,
                result,
                message,
            } => {
                let result = result.unwrap_or_else(|| crate::outcome::PASSED.into());
                check_name("result", &result)?;
                if let Some(m) = &message {
                    check_text("message", m)?;
                }
                let Some(&id) = client.stack.last() else {
                    // A connection with nothing open of its own (one `testbay report`
                    // command per line of a shell task) stops the section opened last.
                    return match self.latest_open {
                        Some(id) if self.sections[id as usize].name == name => {
                            self.finish(id, result, message.unwrap_or_default(), now);
                            Ok(Change::Stopped(id))
                        }
                        _ => Err(ProtocolError::NotOpen(name)),
                    };
                };
                let open = &self.sections[id as usize];
                if open.name != name {
                    let is_open = client
                        .stack
                        .iter()
                        .any(|i| self.sections[*i as usize].name == name);
                    return Err(if is_open {
                        ProtocolError::NotInnermost {
                            asked: name,
                            open: open.name.clone(),
                        }
                    } else {
                        ProtocolError::NotOpen(name)
                    });
                }
                client.stack.pop();
                self.finish(id, result, message.unwrap_or_default(), now);
                Ok(Change::Stopped(id))
            }
            ClientMessage::Detail { text } => {
                check_text("detail", &text)?;
                limit(self.details_count, MAX_DETAILS, "details")?;
                self.details_count += 1;
                match self.innermost(client) {
                    Some(id) => self.sections[id as usize].details.push(text),
                    None => self.details.push(text),
                }
                Ok(Change::None)
            }
            ClientMessage::Extra { key, value } => {
                check_name("extra key", &key)?;
                if value.to_string().len() > MAX_TEXT_BYTES {
                    return Err(ProtocolError::BadValue {
                        what: "extra value".into(),
                        rule: format!("at most {MAX_TEXT_BYTES} bytes as JSON"),
                    });
                }
                limit(self.extra_count, MAX_EXTRA, "extra keys")?;
                self.extra_count += 1;
                match self.innermost(client) {
                    Some(id) => self.sections[id as usize].extra.insert(key, value),
                    None => self.extra.insert(key, value),
                };
                Ok(Change::None)
            }
            ClientMessage::Measurement {
                name,
                value,
                units,
                low,
                high,
                comparison,
            } => {
                let m = Measurement {
                    name,
                    value,
                    units,
                    low,
                    high,
                    comparison,
                };
                check_name("measurement name", &m.name)?;
                if let Some(u) = &m.units {
                    check_name("units", u)?;
                }
                m.check()
                    .map_err(|e| ProtocolError::BadMeasurement(e.to_string()))?;
                limit(self.measurements.len(), MAX_MEASUREMENTS, "measurements")?;
                if self.measurements.iter().any(|x| x.name == m.name) {
                    return Err(ProtocolError::DuplicateMeasurement(m.name));
                }
                let section = self.innermost(client);
                if let Some(id) = section {
                    self.sections[id as usize].measurements.push(m.clone());
                }
                self.measurements.push(m.clone());
                Ok(Change::Measured {
                    section,
                    measurement: m,
                })
            }
            ClientMessage::Attach { path } => {
                let count = self.attachments.len()
                    + self
                        .sections
                        .iter()
                        .map(|s| s.attachments.len())
                        .sum::<usize>();
                limit(count, MAX_ATTACHMENTS, "attachments")?;
                match self.innermost(client) {
                    Some(id) => self.sections[id as usize].attachments.push(path),
                    None => self.attachments.push(path),
                }
                Ok(Change::None)
            }
            ClientMessage::SetResult { result, message } => {
                check_name("result", &result)?;
                if let Some(m) = &message {
                    check_text("message", m)?;
                }
                if let Some((r, _)) = &self.result {
                    return Err(ProtocolError::ResultTwice(r.clone()));
                }
                self.result = Some((result, message.unwrap_or_default()));
                Ok(Change::Result)
            }
        }
    }

    /// A prompt was answered (or timed out).
    pub fn prompted(&mut self, message: String, answer: PromptAnswer) {
        if self.prompts.len() < MAX_DETAILS {
            self.prompts.push(PromptRecord { message, answer });
        }
    }

    fn finish(&mut self, id: u32, result: String, message: String, now: EpochMs) {
        let s = &mut self.sections[id as usize];
        s.result = Some(result);
        s.message = message;
        s.finished_ms = Some(now);
        if self.latest_open == Some(id) {
            self.latest_open = self
                .sections
                .iter()
                .rev()
                .find(|s| s.result.is_none())
                .map(|s| s.id);
        }
    }

    /// Closes every section still open as `Errored` with `reason` (the phase ended);
    /// returns their ids, innermost first.
    pub fn close_open(&mut self, reason: &str, now: EpochMs) -> Vec<u32> {
        let open: Vec<u32> = self
            .sections
            .iter()
            .rev()
            .filter(|s| s.result.is_none())
            .map(|s| s.id)
            .collect();
        for &id in &open {
            self.finish(id, ERRORED.into(), reason.into(), now);
        }
        open
    }

    /// The worst result of the top-level sections when one is a failure: `Errored` over
    /// `Failed` (pyATS's roll-up), `None` when every one passed or was skipped.
    pub fn rollup(&self) -> Option<&'static str> {
        let mut worst = None;
        for s in self.sections.iter().filter(|s| s.parent.is_none()) {
            match s.result.as_deref() {
                Some(ERRORED) | Some(crate::outcome::ABORTED) | Some(crate::outcome::TIMEOUT) => {
                    return Some(ERRORED)
                }
                Some(crate::outcome::FAILED) | Some(crate::outcome::BLOCKED) => {
                    worst = Some(crate::outcome::FAILED)
                }
                _ => {}
            }
        }
        worst
    }

    /// Whether anything was reported at all.
    pub fn is_empty(&self) -> bool {
        self.sections.is_empty()
            && self.result.is_none()
            && self.details.is_empty()
            && self.extra.is_empty()
            && self.attachments.is_empty()
            && self.measurements.is_empty()
            && self.prompts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(name: &str) -> ClientMessage {
        ClientMessage::SectionStart {
            name: name.into(),
            description: None,
        }
    }

    fn stop(name: &str, result: Option<&str>) -> ClientMessage {
        ClientMessage::SectionStop {
            name: name.into(),
            result: result.map(Into::into),
            message: None,
        }
    }

    #[test]
    fn sections_nest_and_close_innermost_first() {
        let mut r = PhaseReport::default();
        let mut c = r.connect();
        assert_eq!(r.apply(&mut c, start("tc"), 1), Ok(Change::Started(0)));
        assert_eq!(r.apply(&mut c, start("step"), 2), Ok(Change::Started(1)));
        let e = r.apply(&mut c, stop("tc", None), 3).unwrap_err();
        assert_eq!(e.code(), "not_innermost");
        assert_eq!(
            e.to_string(),
            "section `tc` is not the innermost open section (`step` is)"
        );
        assert_eq!(
            r.apply(&mut c, stop("nope", None), 3).unwrap_err().code(),
            "not_open"
        );
        r.apply(&mut c, stop("step", Some("Failed")), 4).unwrap();
        r.apply(&mut c, stop("tc", None), 5).unwrap();
        assert_eq!(r.sections[1].parent, Some(0));
        assert_eq!(r.sections[0].result.as_deref(), Some("Passed"));
        assert_eq!(
            r.apply(&mut c, stop("tc", None), 6).unwrap_err().code(),
            "not_open"
        );
    }

    #[test]
    fn a_second_client_starts_under_the_latest_open_section() {
        let mut r = PhaseReport::default();
        let mut parent = r.connect();
        r.apply(&mut parent, start("tc"), 1).unwrap();
        let mut child = r.connect();
        r.apply(&mut child, start("in child"), 2).unwrap();
        assert_eq!(r.sections[1].parent, Some(0));
        // The child cannot stop its parent's section.
        assert_eq!(
            r.apply(&mut child, stop("tc", None), 3).unwrap_err().code(),
            "not_open"
        );
        let closed = r.close_open("the phase ended with the section open", 9);
        assert_eq!(closed, vec![1, 0]);
        assert_eq!(r.sections[0].result.as_deref(), Some(ERRORED));
        assert_eq!(r.rollup(), Some(ERRORED));
    }

    #[test]
    fn one_connection_per_command_opens_and_closes_sections() {
        let mut r = PhaseReport::default();
        let mut a = r.connect();
        r.apply(&mut a, start("boot"), 1).unwrap();
        let mut b = r.connect();
        r.apply(&mut b, start("step"), 2).unwrap();
        let mut c = r.connect();
        assert_eq!(
            r.apply(&mut c, stop("boot", None), 3).unwrap_err().code(),
            "not_open"
        );
        r.apply(&mut c, stop("step", None), 3).unwrap();
        let mut d = r.connect();
        r.apply(&mut d, stop("boot", None), 4).unwrap();
        assert_eq!(r.sections[1].parent, Some(0));
        assert!(r.sections.iter().all(|s| s.result.is_some()));
    }

    #[test]
    fn result_twice_duplicate_and_bad_measurements_are_refused() {
        let mut r = PhaseReport::default();
        let mut c = r.connect();
        let set = || ClientMessage::SetResult {
            result: "Passed".into(),
            message: None,
        };
        r.apply(&mut c, set(), 1).unwrap();
        assert_eq!(
            r.apply(&mut c, set(), 1).unwrap_err().code(),
            "result_twice"
        );
        let m = |name: &str, low: Option<f64>, c: Option<Comparison>| ClientMessage::Measurement {
            name: name.into(),
            value: 1.0,
            units: None,
            low,
            high: None,
            comparison: c,
        };
        r.apply(&mut c, m("v", Some(0.0), None), 1).unwrap();
        assert_eq!(
            r.apply(&mut c, m("v", None, None), 1).unwrap_err().code(),
            "duplicate_measurement"
        );
        let e = r
            .apply(&mut c, m("w", None, Some(Comparison::LE)), 1)
            .unwrap_err();
        assert_eq!(e.code(), "bad_measurement");
        assert!(e.to_string().contains("needs `high`"), "{e}");
    }

    #[test]
    fn lines_parse_or_say_why() {
        assert_eq!(
            parse_line(br#"{"type":"detail","text":"hi"}"#),
            Ok(ClientMessage::Detail { text: "hi".into() })
        );
        assert_eq!(parse_line(b"garbage").unwrap_err().code(), "bad_message");
        let e = parse_line(br#"{"type":"detail","text":"hi","x":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(parse_line(&big).unwrap_err().code(), "too_large");
    }

    #[test]
    fn a_flood_of_details_stops_at_the_bound() {
        let mut r = PhaseReport::default();
        let mut c = r.connect();
        for i in 0..MAX_DETAILS {
            r.apply(
                &mut c,
                ClientMessage::Detail {
                    text: i.to_string(),
                },
                0,
            )
            .unwrap();
        }
        let e = r
            .apply(&mut c, ClientMessage::Detail { text: "x".into() }, 0)
            .unwrap_err();
        assert_eq!(e.code(), "limit");
        assert_eq!(r.details.len(), MAX_DETAILS);
    }
}
