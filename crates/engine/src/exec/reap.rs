//! Ending processes: signalling a phase's process group, and finding through /proc the
//! processes that belong to a phase or a run but left its group (a daemon, a `setsid`)
//! and killing them. Recovery of interrupted runs asks the store which runs are over and
//! kills their leftovers here ([`kill_run_leftovers`]).

use std::os::fd::AsRawFd;

/// Send `sig` to every process of group `pgid`. A group that is gone is fine.
pub fn signal_group(pgid: libc::pid_t, sig: libc::c_int) {
    if pgid <= 1 {
        return;
    }
    // SAFETY: plain syscall.
    unsafe {
        libc::killpg(pgid, sig);
    }
}

/// Whether any process (zombies included) is still in group `pgid`.
pub fn group_alive(pgid: libc::pid_t) -> bool {
    if pgid <= 1 {
        return false;
    }
    // SAFETY: signal 0 only checks existence.
    unsafe { libc::killpg(pgid, 0) == 0 }
}

/// SIGKILL every process that has the write end of this phase's output pipe open (found
/// through /proc/<pid>/fd). Only the phase's own process tree inherits that pipe, so these
/// are processes the phase started that left its process group. Returns how many.
pub(super) fn kill_pipe_holders(reader: &std::io::PipeReader) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(format!("/proc/self/fd/{}", reader.as_raw_fd())) else {
        return 0;
    };
    let target = format!("pipe:[{}]", meta.ino());
    let me = std::process::id() as i32;
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str())
        });
        // SAFETY: plain syscall on a process holding our pipe.
        if holds && unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
            tracing::warn!(
                pid,
                "killed a process that kept a finished phase's output open"
            );
            killed += 1;
        }
    }
    killed
}

/// Process group of `pid` (field 5 of /proc/<pid>/stat).
fn process_group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Kill every process whose environment says it belongs to one of `run_ids`
/// (`TESTBAY_RUN_ID`, set for every task phase and inherited by what it starts). Returns
/// how many were killed. Processes of other users, or without that variable, are never
/// touched.
pub fn kill_run_leftovers(run_ids: &[String]) -> u32 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let markers: Vec<Vec<u8>> = run_ids
        .iter()
        .map(|id| format!("TESTBAY_RUN_ID={id}").into_bytes())
        .collect();
    let me = std::process::id() as i32;
    let mut killed = 0;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if env
            .split(|&b| b == 0)
            .any(|kv| markers.iter().any(|m| kv == m.as_slice()))
        {
            // SAFETY: plain syscall on a pid we just identified.
            if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
                tracing::warn!(pid, pgid = ?process_group_of(pid), "killed leftover task process");
                killed += 1;
            }
        }
    }
    killed
}
