//! The domain's shared words as types: what kind a planned task is, how far a stop goes
//! and which DUT a lane runs on. Plan, store, run events and the API all speak them.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Kind of a planned task: global or group setup, a test, global or group teardown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum TaskKind {
    Setup,
    Test,
    Teardown,
}

impl TaskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Setup => "setup",
            TaskKind::Test => "test",
            TaskKind::Teardown => "teardown",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "setup" => TaskKind::Setup,
            "test" => TaskKind::Test,
            "teardown" => TaskKind::Teardown,
            _ => return None,
        })
    }
}

/// How far an operator's stop of a run goes. The first stop is graceful: setups and
/// tests end, teardowns go on; a second stops everything at once. Ordered: a stop at
/// once is past a graceful one (and any stop past `None`, not stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StopLevel {
    Graceful,
    AtOnce,
}

impl StopLevel {
    /// The level after one more stop request on a run stopped at `now`.
    pub fn after(now: Option<StopLevel>) -> StopLevel {
        match now {
            None => StopLevel::Graceful,
            Some(_) => StopLevel::AtOnce,
        }
    }
}

/// A DUT a run targets; each is one lane.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct DutTarget {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u32>,
}
