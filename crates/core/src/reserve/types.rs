//! Public types of the reservation book: requests, answers, views and events.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::clock::EpochMs;

/// A reservation or pre-reservation id. A `u64` inside, a decimal string on the wire
/// (JavaScript numbers cannot hold every `u64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, TS)]
#[ts(export, type = "string")]
pub struct ResId(pub u64);

impl fmt::Display for ResId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for ResId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(ResId)
    }
}

impl Serialize for ResId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(ResId(n)),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// kissats `reservation_mode`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema, TS,
)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ReservationMode {
    /// The whole resource (on a shared resource: all of its capacity).
    #[default]
    Exclusive,
    /// One unit of a shared resource's capacity.
    Shared,
}

impl fmt::Display for ReservationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReservationMode::Exclusive => "exclusive",
            ReservationMode::Shared => "shared",
        })
    }
}

/// How a resource may be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[ts(export)]
pub enum ResourceKind {
    /// One holder at a time (every DUT is one of these).
    Exclusive,
    /// Up to `capacity` shared holders at a time.
    Shared { capacity: u32 },
}

impl ResourceKind {
    pub fn capacity(&self) -> u32 {
        match self {
            ResourceKind::Exclusive => 1,
            ResourceKind::Shared { capacity } => *capacity,
        }
    }
}

/// A resource the book manages: a lab resource or a DUT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ResourceSpec {
    pub name: String,
    pub kind: ResourceKind,
    /// Current configuration (kissats `get_resource_config`).
    #[serde(default)]
    pub config: Value,
}

/// Who holds or waits for a reservation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[ts(export)]
pub enum Holder {
    /// A lane (and optionally one task) of a run.
    Run {
        run_id: String,
        lane: String,
        #[serde(default)]
        task: Option<String>,
    },
    /// A person holding something by hand (a debug hold).
    Operator { name: String },
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Run { run_id, lane, task } => {
                write!(f, "run {run_id}/{lane}")?;
                if let Some(t) = task {
                    write!(f, "/{t}")?;
                }
                Ok(())
            }
            Holder::Operator { name } => write!(f, "operator {name}"),
        }
    }
}

/// A reservation request (kissats `request_reservation`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReservationRequest<'a> {
    pub resource: &'a str,
    /// Shared so a lane's many requests do not copy its name each time.
    pub holder: Arc<Holder>,
    /// Requested configuration, overlaid on the resource's current configuration.
    pub config: Value,
    /// When the resource is needed; `None` (or a past time) means now.
    pub time_needed: Option<EpochMs>,
    pub duration_ms: i64,
    /// If `time_needed` is taken, book the next window instead of failing.
    pub next_available: bool,
    pub mode: ReservationMode,
    /// When set, the claim is a lease: it lapses unless renewed within this many ms.
    pub lease_ms: Option<i64>,
    /// Claim automatically when the window starts (operator holds: nobody is left to claim).
    pub auto_claim: bool,
}

impl<'a> ReservationRequest<'a> {
    pub fn new(resource: &'a str, holder: impl Into<Arc<Holder>>, duration_ms: i64) -> Self {
        Self {
            resource,
            holder: holder.into(),
            config: Value::Null,
            time_needed: None,
            duration_ms,
            next_available: true,
            mode: ReservationMode::Exclusive,
            lease_ms: None,
            auto_claim: false,
        }
    }
    pub fn mode(mut self, mode: ReservationMode) -> Self {
        self.mode = mode;
        self
    }
    pub fn at(mut self, t: EpochMs) -> Self {
        self.time_needed = Some(t);
        self
    }
    pub fn config(mut self, config: Value) -> Self {
        self.config = config;
        self
    }
    pub fn next_available(mut self, yes: bool) -> Self {
        self.next_available = yes;
        self
    }
    pub fn lease(mut self, ms: i64) -> Self {
        self.lease_ms = Some(ms);
        self
    }
    pub fn auto_claim(mut self, yes: bool) -> Self {
        self.auto_claim = yes;
        self
    }
}

/// A time window `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Window {
    pub start: EpochMs,
    pub end: EpochMs,
}

/// Answer to a request: a preliminary lock, to be claimed from `available_from` until
/// `expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct PreReservation {
    pub id: ResId,
    pub available_from: EpochMs,
    pub expires: EpochMs,
}

/// A claimed reservation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Reservation {
    pub id: ResId,
    /// End of the reserved window.
    pub expire_time: EpochMs,
    /// When the lease lapses unless renewed (equals `expire_time` without a lease).
    pub lease_until: EpochMs,
    /// The configuration the holder gets: the resource's configuration overlaid with the
    /// requested one.
    pub resource_config: Value,
}

/// Result of `claim`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[ts(export)]
pub enum ClaimOutcome {
    Claimed(Reservation),
    /// Claimed late and the window was gone: the old id is released and this new
    /// pre-reservation replaces it (kissats: `pre_reservation_id`, `new_avail`, `new_expire`).
    Rebooked {
        pre_reservation_id: ResId,
        new_avail: EpochMs,
        new_expire: EpochMs,
    },
}

/// kissats `get_resource_availability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct Availability {
    /// Free for the whole requested window.
    pub available: bool,
    /// The requested window if available, otherwise the soonest window of the same length.
    pub avail_start: EpochMs,
    pub avail_end: EpochMs,
}

/// Where a live reservation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum ReservationStatus {
    /// Pre-reserved for the window asked for, not yet claimed.
    Booked,
    /// Pre-reserved for a later window than asked for: the holder waits.
    Waiting,
    /// Claimed.
    Held,
}

/// One live reservation or pre-reservation, as listed and as carried by events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ReservationView {
    pub id: ResId,
    #[ts(type = "string")]
    pub resource: Arc<str>,
    pub mode: ReservationMode,
    pub holder: Arc<Holder>,
    pub status: ReservationStatus,
    /// When the holder asked to have it.
    pub needed_at: EpochMs,
    /// Reserved window.
    pub start: EpochMs,
    pub end: EpochMs,
    /// Booked/waiting: claim by this time or lose it. Held: lease end.
    pub expires: EpochMs,
    pub claimed_at: Option<EpochMs>,
    pub lease_ms: Option<i64>,
    pub auto_claim: bool,
    pub created_at: EpochMs,
    /// Requested configuration.
    #[ts(type = "unknown")]
    pub config: Arc<Value>,
}

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum BookEventKind {
    /// Pre-reserved for the window asked for.
    Requested,
    /// Pre-reserved for a later window: the holder waits.
    Waiting,
    Claimed,
    Renewed,
    /// The window's end moved later.
    Extended,
    Released,
    Expired,
}

/// Why a reservation left the book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
#[ts(export)]
pub enum EndReason {
    /// Released by its holder.
    Released,
    /// Claimed late; replaced by a new pre-reservation.
    Rebooked,
    /// A pre-reservation nobody claimed in time.
    Unclaimed,
    /// The holder stopped renewing its lease.
    LeaseLapsed,
    /// The reserved window is over.
    WindowEnded,
    /// On reload the lab no longer allows it (resource gone or capacity lowered).
    LabChanged,
    /// Its holder is a run that is over without having released it: the console running
    /// it exited (or was killed), and the next owner of the book gave it back.
    HolderEnded,
}

/// One change in the book. `seq` increases by one per event, across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct BookEvent {
    pub seq: u64,
    pub ts: EpochMs,
    pub kind: BookEventKind,
    pub reason: Option<EndReason>,
    pub reservation: ReservationView,
}

/// Live reservations of one resource: who holds it, who is booked, who waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ResourceHolds {
    pub resource: String,
    pub kind: ResourceKind,
    pub holders: Vec<ReservationView>,
    pub booked: Vec<ReservationView>,
    pub waiters: Vec<ReservationView>,
}

/// A resource with its state now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[ts(export)]
pub struct ResourceInfo {
    pub name: String,
    pub kind: ResourceKind,
    /// Units in use now (0 or 1 for exclusive resources).
    pub in_use: u32,
    #[ts(type = "unknown")]
    pub config: Value,
}
