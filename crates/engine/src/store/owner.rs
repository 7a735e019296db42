//! Which process owns a run: the console that stored it, known by pid and start time
//! (together they survive pid reuse). Recovery takes a run whose owner is gone for
//! interrupted; the reservation book gives back what such a run holds.
//!
//! Only this process's identity and a pid's liveness are read here (`/proc/<pid>/stat`);
//! killing what is left of a run is `exec::reap`'s job.

/// The console process that stored a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOwner {
    pub pid: i64,
    /// Start time in clock ticks since boot; `None` if it could not be read.
    pub start: Option<i64>,
}

impl RunOwner {
    /// This process.
    pub fn this_process() -> Self {
        let pid = std::process::id() as i32;
        Self {
            pid: pid as i64,
            start: process_start_time(pid).map(|t| t as i64),
        }
    }

    /// Whether the owner still runs: the same pid with the same start time. An owner
    /// whose start time was never known counts as gone.
    pub fn is_alive(&self) -> bool {
        match self.start {
            Some(start) => process_start_time(self.pid as i32) == Some(start as u64),
            None => false,
        }
    }

    /// Whether the owner recorded as `pid` and `start` (either possibly missing) is
    /// alive; a run without a recorded owner has none.
    pub fn alive(pid: Option<i64>, start: Option<i64>) -> bool {
        pid.is_some_and(|pid| RunOwner { pid, start }.is_alive())
    }
}

/// Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat); `None`
/// once it has exited, even while its parent has not reaped it yet (a zombie).
fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses; fields after the
    // last ')' are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    if matches!(fields.next(), Some("Z" | "X")) {
        return None;
    }
    fields.nth(18)?.parse().ok()
}
