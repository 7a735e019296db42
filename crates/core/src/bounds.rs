//! The documented range of every number and size a user gives the engine, in one place:
//! pack files, lab files, launch requests and holds (README, "Bounds", lists them).
//!
//! - Pack and lab files: the model types name these constants in
//!   `#[schemars(range(...))]`, so `schemas/` carries each range and the loader reports a
//!   value outside it with file, line, key and the bound it broke.
//! - Launch requests: [`check_request_size`] (groups, DUTs, parameter overrides) before
//!   anything is looked up, [`crate::pack::check_task_count`] once the pack is known;
//!   both before the run is stored. The console's `launch` and `testbay run` call them.
//! - Holds: [`hold_duration_ms`] and [`check_hold`], from the console's `hold` and
//!   `testbay lab hold`.
//!
//! Within these bounds the engine's arithmetic on them is far from overflowing (a run of
//! [`MAX_RUN_TASKS`] tasks of [`MAX_TASK_TIME_S`] each is about 2e13 ms). The code that
//! computes with them (reservation book, broker, exec timer) saturates besides, so a value
//! that reaches it some other way degrades instead of panicking.

use serde_json::{Map, Value};

use crate::clock::EpochMs;

/// `est_task_time` and `max_runtime`, seconds: at most 7 days.
pub const MAX_TASK_TIME_S: u32 = 7 * 86_400;
/// `max_resource_wait`, seconds: at most 30 days.
pub const MAX_RESOURCE_WAIT_S: u32 = 30 * 86_400;
/// `max_resource_retry`: at most 10,000 retries.
pub const MAX_RESOURCE_RETRY: u32 = 10_000;
/// `max_retries` (a failed task run again): at most 10 more attempts.
pub const MAX_TASK_RETRIES: u32 = 10;
/// A lab health check's `interval`, seconds: from one minute ...
pub const MIN_HEALTH_INTERVAL_S: u32 = 60;
/// ... to 30 days.
pub const MAX_HEALTH_INTERVAL_S: u32 = 30 * 86_400;
/// A lab health check's `after_failures`: at most 1,000.
pub const MAX_HEALTH_FAILURES: u32 = 1000;
/// `priority`: from -1,000,000 ...
pub const MIN_PRIORITY: i32 = -1_000_000;
/// ... to 1,000,000.
pub const MAX_PRIORITY: i32 = 1_000_000;
/// `process_limit`: 1 to 1,024 tasks side by side on one DUT.
pub const MAX_PROCESS_LIMIT: u32 = 1_024;
/// A rack's `slots`, and so a DUT's slot number: 1 to 1,024.
pub const MAX_RACK_SLOTS: u32 = 1_024;

/// How often rack agents heartbeat (`agent_heartbeat_ms` in `settings.yaml`), in ms.
pub const MIN_AGENT_HEARTBEAT_MS: u64 = 100;
pub const MAX_AGENT_HEARTBEAT_MS: u64 = 60_000;

/// How long a silent agent's runs wait for it (`agent_grace_s` in `settings.yaml`), in s.
pub const MIN_AGENT_GRACE_S: u64 = 1;
pub const MAX_AGENT_GRACE_S: u64 = 3_600;
/// What a rack agent keeps of the messages its server has not acknowledged yet (its
/// outbox, which carries a phase's output, files and outcome across a network cut): at
/// most this many messages ...
pub const AGENT_OUTBOX_MAX_MESSAGES: usize = 100_000;
/// ... and about this many bytes. Beyond either, the oldest live log lines go first (the
/// server hears how many; the log file still travels with the phase's outcome).
pub const AGENT_OUTBOX_MAX_BYTES: usize = 256 * 1024 * 1024;
/// The CPU use, in percent, above which a rack agent is passed over
/// (`agent_cpu_threshold_pct` in `settings.yaml`): 1 to 100 (100 never passes one over).
pub const MIN_AGENT_CPU_THRESHOLD_PCT: u32 = 1;
pub const MAX_AGENT_CPU_THRESHOLD_PCT: u32 = 100;
/// How long a rack agent reporting CPU above its threshold is passed over, in s
/// (StormTest 6.2: tried again 30 s later).
pub const AGENT_PASS_OVER_S: u64 = 30;
/// A shared resource's `capacity`: 1 to 10,000 holders.
pub const MAX_CAPACITY: u32 = 10_000;
/// An operator hold's `duration_s`: more than 0, at most 30 days.
pub const MAX_HOLD_S: u32 = 30 * 86_400;
/// An operator hold's `from_ms`: within 10 years (3,653 days) of now, either way.
pub const MAX_HOLD_OFFSET_MS: EpochMs = 3_653 * 86_400_000;
/// A lab server's lease (`TESTBAY_SERVER_LEASE_MS`): 1 s to 10 minutes. A server that
/// has not renewed it for that long is taken for gone by the others.
pub const MIN_SERVER_LEASE_MS: i64 = 1_000;
pub const MAX_SERVER_LEASE_MS: i64 = 600_000;
/// Groups one launch names (a group may be named more than once).
pub const MAX_LAUNCH_GROUPS: usize = 100;
/// DUTs one launch names (one lane each).
pub const MAX_LAUNCH_DUTS: usize = 256;
/// Parameter overrides of one launch.
pub const MAX_LAUNCH_PARAMS: usize = 256;
/// Size of one launch's parameter overrides as JSON, bytes.
pub const MAX_LAUNCH_PARAMS_BYTES: usize = 64 * 1024;
/// Task occurrences one launch may expand to (every lane's setups, tests and teardowns).
pub const MAX_RUN_TASKS: usize = 10_000;
/// Bytes of a pack's files together (what its content hash covers): 1 GiB. Every load
/// hashes them and every run copies them; checked by size before anything is read, so a
/// huge (sparse) file makes a broken pack at once.
pub const MAX_PACK_BYTES: u64 = 1024 * 1024 * 1024;

/// Bytes of one pack archive uploaded to a lab server (`POST /api/packs`, the deflated
/// files `testbay packs push` sends): 256 MiB. Refused `too_large` past it, before the
/// archive is unpacked.
pub const MAX_PACK_ARCHIVE_BYTES: u64 = 256 * 1024 * 1024;

/// A value outside its documented range, or a request over its size limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoundError {
    /// A number outside its range; the API answers `invalid_request`.
    #[error("{key}: {message}")]
    OutOfRange { key: String, message: String },
    /// A request larger than its limit; the API answers `too_large`.
    #[error("{key}: {message}")]
    TooLarge { key: String, message: String },
}

impl BoundError {
    /// The request key the error is about (`duration_s`, `groups`, ...).
    pub fn key(&self) -> &str {
        match self {
            BoundError::OutOfRange { key, .. } | BoundError::TooLarge { key, .. } => key,
        }
    }

    fn range(key: &str, message: String) -> Self {
        BoundError::OutOfRange {
            key: key.into(),
            message,
        }
    }

    pub(crate) fn size(key: &str, message: String) -> Self {
        BoundError::TooLarge {
            key: key.into(),
            message,
        }
    }
}

/// Groups, DUTs and parameter overrides of a launch against their limits. Cheap: call it
/// before looking anything up.
pub fn check_request_size(
    groups: usize,
    duts: usize,
    params: &Map<String, Value>,
) -> Result<(), BoundError> {
    if groups > MAX_LAUNCH_GROUPS {
        return Err(BoundError::size(
            "groups",
            format!("a launch names at most {MAX_LAUNCH_GROUPS} groups (got {groups})"),
        ));
    }
    if duts > MAX_LAUNCH_DUTS {
        return Err(BoundError::size(
            "duts",
            format!("a launch names at most {MAX_LAUNCH_DUTS} DUTs (got {duts})"),
        ));
    }
    if params.len() > MAX_LAUNCH_PARAMS {
        return Err(BoundError::size(
            "params",
            format!(
                "a launch overrides at most {MAX_LAUNCH_PARAMS} parameters (got {})",
                params.len()
            ),
        ));
    }
    let bytes = json_len(params);
    if bytes > MAX_LAUNCH_PARAMS_BYTES {
        return Err(BoundError::size(
            "params",
            format!(
                "the parameter overrides are {bytes} bytes as JSON; at most {MAX_LAUNCH_PARAMS_BYTES}"
            ),
        ));
    }
    Ok(())
}

/// Bytes of `v` as compact JSON, counted without building the text.
pub fn json_len<T: serde::Serialize + ?Sized>(v: &T) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail; a value that cannot be serialised counts what was
    // written before it failed.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// A hold's `duration_s` in milliseconds, if it is more than 0 and at most
/// [`MAX_HOLD_S`] (and at least 1 ms once rounded).
pub fn hold_duration_ms(duration_s: f64) -> Result<i64, BoundError> {
    let ms = (duration_s * 1000.0).round();
    if !(duration_s.is_finite() && ms >= 1.0 && duration_s <= f64::from(MAX_HOLD_S)) {
        return Err(BoundError::range(
            "duration_s",
            format!(
                "must be more than 0 and at most {MAX_HOLD_S} seconds (30 days), got {}",
                short_num(duration_s)
            ),
        ));
    }
    Ok(ms as i64)
}

/// A hold of `duration_ms` from `from` (default now) against its bounds: the duration
/// more than 0 and at most [`MAX_HOLD_S`], the start within [`MAX_HOLD_OFFSET_MS`] of
/// `now`.
pub fn check_hold(duration_ms: i64, from: Option<EpochMs>, now: EpochMs) -> Result<(), BoundError> {
    if !(1..=i64::from(MAX_HOLD_S) * 1000).contains(&duration_ms) {
        return Err(BoundError::range(
            "duration_s",
            format!(
                "must be more than 0 and at most {MAX_HOLD_S} seconds (30 days), got {}",
                short_num(duration_ms as f64 / 1000.0)
            ),
        ));
    }
    if let Some(from) = from {
        let lo = now.saturating_sub(MAX_HOLD_OFFSET_MS);
        let hi = now.saturating_add(MAX_HOLD_OFFSET_MS);
        if !(lo..=hi).contains(&from) {
            return Err(BoundError::range(
                "from_ms",
                format!(
                    "must be within 10 years of now ({} to {}, {lo} to {hi} ms since the epoch), got {from}",
                    crate::timefmt::fmt_ms(lo),
                    crate::timefmt::fmt_ms(hi)
                ),
            ));
        }
    }
    Ok(())
}

/// `1e300` rather than its 301 digits.
fn short_num(x: f64) -> String {
    if x.is_finite() && x.abs() < 1e15 {
        x.to_string()
    } else {
        format!("{x:e}")
    }
}
