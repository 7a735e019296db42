//! The phase guard: one small process per console that waits for the console to die, by
//! any means (SIGKILL included), and then kills everything its phases started.
//!
//! `PR_SET_PDEATHSIG` reaches only a phase's own process: what that process started (the
//! `sleep` of `sh -c "sleep 30"`) is re-parented to init when the console dies. The guard
//! closes that gap without a process or a system call per phase:
//!
//! - It is forked from the console: by [`start`], which the front doors call first thing
//!   in `main` while the process is small and has one thread, or else at the first phase.
//!   (It keeps a copy-on-write image of the console as of the fork: forked early, that is a
//!   few hundred KiB; forked late by a large process, as much as the console has rewritten
//!   since.)
//!   It holds the read end of a pipe whose write end only the console holds (close-on-exec,
//!   so no phase inherits it) and blocks reading it. Nobody writes: the read returns
//!   end-of-file when the console is gone, however it ended.
//! - Phase process groups are marked in a bitmap shared with the guard (`MAP_SHARED`, one
//!   bit per possible pid, 512 KiB of address space, pages made on first touch): the phase's
//!   child process sets its bit before it execs (so no window where a group is unknown), the
//!   console clears it once the group is gone. Two atomic operations per phase.
//! - Every phase gets `TESTBAY_CONSOLE=<token>` (unique to this console) in its environment,
//!   and passes it on to what it starts.
//! - At end-of-file the guard SIGKILLs every marked group, then every process whose
//!   environment carries the token (processes that left their group: `setsid`, daemons),
//!   scanning /proc until a pass finds none, and exits. It skips other guards (a console
//!   run by a phase has a guard of its own, which must outlive that console to do its job).
//! - After the fork the guard makes only plain system calls on memory prepared before the
//!   fork (other threads of the console may have held locks at that instant). It closes
//!   every descriptor but its pipe (a copy of the reservation book's `flock` or of a phase's
//!   output pipe would otherwise stay held), leaves the console's process group (a
//!   terminal's Ctrl-C is the console's to handle) and ignores SIGINT, SIGTERM, SIGHUP and
//!   SIGQUIT: it ends with the console, not before.
//! - If the guard dies anyway, the next phase start notices (`waitpid`, no hang) and forks a
//!   new one over the same bitmap. The console's recovery at the next start (every process
//!   carrying an interrupted run's `TESTBAY_RUN_ID`) stays the last resort.
//!
//! Why not a supervisor per phase or a helper per run: each costs a process start or a
//! round trip per phase, against a per-task overhead target of 0.3 ms. A cgroup per run
//! needs a delegated cgroup tree, which a desktop session or a container rarely has.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Name of the environment variable that marks a console's phase processes.
pub const CONSOLE_ENV: &str = "TESTBAY_CONSOLE";

/// The guard's name in `ps` and /proc (at most 15 bytes).
const GUARD_NAME: &[u8] = b"testbay-guard\0";

/// One bit per pid: `PID_MAX_LIMIT` on 64-bit Linux (2^22).
const PID_LIMIT: usize = 1 << 22;

/// Passes over /proc at the end; each kills what the previous one missed (a process that
/// forked while the pass went by).
const SCAN_PASSES: usize = 16;

struct Guard {
    /// Marked phase process groups, shared with every guard process forked.
    bits: Option<&'static [AtomicU64]>,
    /// `TESTBAY_CONSOLE`'s value.
    token: String,
    /// `\0TESTBAY_CONSOLE=<token>\0`: what the guard looks for in /proc/<pid>/environ.
    needle: Vec<u8>,
    /// The guard process: its pid, 0 before the first, -1 when none could be started.
    pid: AtomicI32,
    /// Write end of the current guard's pipe. Held, never written.
    write_end: Mutex<Option<OwnedFd>>,
}

static GUARD: OnceLock<Guard> = OnceLock::new();

/// Start this console's guard if it is not running yet. Front doors call this first thing
/// in `main`; otherwise the first phase does. Cheap after the first call.
pub fn start() {
    let g = guard();
    if g.pid.load(Ordering::Acquire) == 0 {
        g.restart(0);
    }
}

fn guard() -> &'static Guard {
    GUARD.get_or_init(|| {
        let token = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let mut needle = Vec::with_capacity(token.len() + CONSOLE_ENV.len() + 3);
        needle.push(0);
        needle.extend_from_slice(CONSOLE_ENV.as_bytes());
        needle.push(b'=');
        needle.extend_from_slice(token.as_bytes());
        needle.push(0);
        Guard {
            bits: shared_bitmap(),
            token,
            needle,
            pid: AtomicI32::new(0),
            write_end: Mutex::new(None),
        }
    })
}

/// `TESTBAY_CONSOLE`'s value for this console's phases.
pub(super) fn token() -> &'static str {
    &guard().token
}

/// Make sure a guard runs (start one, or a new one if it died); the bitmap a phase's child
/// marks its group in, null if there is none.
pub(super) fn for_spawn() -> *const AtomicU64 {
    let g = guard();
    let pid = g.pid.load(Ordering::Acquire);
    let alive = pid > 0 && {
        let mut st = 0;
        // SAFETY: plain syscall on our own child; 0 means it still runs.
        unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) == 0 }
    };
    if !alive && pid >= 0 {
        if pid > 0 {
            tracing::warn!(
                pid,
                "the phase guard ended before the console; starting a new one"
            );
        }
        g.restart(pid);
    }
    g.bits.map_or(std::ptr::null(), |b| b.as_ptr())
}

/// Mark `pgid` as a phase group. Only atomic memory operations: called in the phase's
/// child between clone and exec.
///
/// # Safety
/// `bits` is null or the bitmap [`for_spawn`] returned.
pub(super) unsafe fn mark(bits: *const AtomicU64, pgid: libc::pid_t) {
    let i = pgid as usize;
    if !bits.is_null() && pgid > 0 && i < PID_LIMIT {
        (*bits.add(i / 64)).fetch_or(1 << (i % 64), Ordering::Relaxed);
    }
}

/// The phase group `pgid` is gone (or going: its processes were sent SIGKILL).
pub(super) fn forget(pgid: libc::pid_t) {
    let i = pgid as usize;
    if let (Some(bits), true) = (GUARD.get().and_then(|g| g.bits), pgid > 0 && i < PID_LIMIT) {
        bits[i / 64].fetch_and(!(1 << (i % 64)), Ordering::Relaxed);
    }
}

/// Pid of the running guard process, if any (for tests and diagnostics).
pub fn guard_pid() -> Option<u32> {
    let pid = GUARD.get()?.pid.load(Ordering::Acquire);
    (pid > 0).then_some(pid as u32)
}

/// The shared bitmap, or `None` when it cannot be mapped (then only the environment scan
/// finds the phases' processes).
fn shared_bitmap() -> Option<&'static [AtomicU64]> {
    let len = PID_LIMIT / 8;
    // SAFETY: a fresh anonymous mapping; zero-filled, which is a valid [AtomicU64].
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot map the phase guard's bitmap");
            return None;
        }
        Some(std::slice::from_raw_parts(p as *const AtomicU64, len / 8))
    }
}

impl Guard {
    /// Fork a guard, unless another thread already replaced the one whose pid was `seen`.
    fn restart(&self, seen: libc::pid_t) {
        let mut write_end = self.write_end.lock().unwrap_or_else(|p| p.into_inner());
        if self.pid.load(Ordering::Acquire) != seen {
            return;
        }
        match self.fork() {
            Ok((pid, w)) => {
                // The previous guard, if any, is gone: its pipe's write end can go too.
                *write_end = Some(w);
                self.pid.store(pid, Ordering::Release);
                tracing::debug!(pid, "phase guard started");
            }
            Err(e) => {
                self.pid.store(-1, Ordering::Release);
                tracing::warn!(error = %e, "cannot start the phase guard: a phase's grandchildren may outlive a console that is killed (the next start kills them)");
            }
        }
    }

    fn fork(&self) -> std::io::Result<(libc::pid_t, OwnedFd)> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: plain syscall; both descriptors are new and ours.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let (read_end, write_end) =
            unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // Everything the guard will use, made before the fork.
        let mut dir_buf = vec![0u8; 32 * 1024];
        let mut env_buf = vec![0u8; 64 * 1024 + self.needle.len()];
        let ctx = GuardCtx {
            read_fd: read_end.as_raw_fd(),
            bits: self.bits.map_or(std::ptr::null(), |b| b.as_ptr()),
            needle: &self.needle,
            dir_buf: &mut dir_buf,
            env_buf: &mut env_buf,
        };
        // SAFETY: the child runs `guard_main`, which makes only system calls on memory
        // prepared above and never returns. Signals are blocked across the fork so that no
        // handler of the console runs in the child before it has reset them.
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let pid = libc::fork();
            if pid == 0 {
                guard_main(ctx);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            pid
        };
        if pid < 0 {
            return Err(std::io::Error::last_os_error());
        }
        drop(read_end);
        Ok((pid, write_end))
    }
}

/// What the guard process works with, all allocated before the fork.
struct GuardCtx<'a> {
    read_fd: RawFd,
    bits: *const AtomicU64,
    needle: &'a [u8],
    dir_buf: &'a mut [u8],
    env_buf: &'a mut [u8],
}

/// The guard process. Plain system calls only (see the module docs); never returns.
unsafe fn guard_main(mut c: GuardCtx<'_>) -> ! {
    libc::setpgid(0, 0);
    for sig in 1..65 {
        let mut sa: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(sig, std::ptr::null(), &mut sa) == 0
            && sa.sa_sigaction != libc::SIG_DFL
            && sa.sa_sigaction != libc::SIG_IGN
        {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGPIPE,
        libc::SIGTSTP,
        libc::SIGTTIN,
        libc::SIGTTOU,
    ] {
        libc::signal(sig, libc::SIG_IGN);
    }
    let mut none: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut none);
    libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    libc::prctl(
        libc::PR_SET_NAME,
        GUARD_NAME.as_ptr() as libc::c_ulong,
        0,
        0,
        0,
    );
    close_all_but(c.read_fd);

    // Wait for the console to go: nobody writes, end-of-file comes when it is gone.
    let mut b = [0u8; 64];
    loop {
        let n = libc::read(c.read_fd, b.as_mut_ptr().cast(), b.len());
        if n > 0 || (n < 0 && *libc::__errno_location() == libc::EINTR) {
            continue;
        }
        break;
    }

    if !c.bits.is_null() {
        for i in 0..PID_LIMIT / 64 {
            let mut w = (*c.bits.add(i)).load(Ordering::Relaxed);
            while w != 0 {
                let pgid = (i * 64 + w.trailing_zeros() as usize) as libc::pid_t;
                if pgid > 1 {
                    libc::killpg(pgid, libc::SIGKILL);
                }
                w &= w - 1;
            }
        }
    }
    for _ in 0..SCAN_PASSES {
        if kill_carriers(&mut c) == 0 {
            break;
        }
    }
    libc::_exit(0)
}

/// Close every descriptor except `keep`.
unsafe fn close_all_but(keep: RawFd) {
    let keep = keep as libc::c_uint;
    let below = keep == 0 || libc::syscall(libc::SYS_close_range, 0u32, keep - 1, 0u32) == 0;
    let above = libc::syscall(libc::SYS_close_range, keep + 1, libc::c_uint::MAX, 0u32) == 0;
    if below && above {
        return;
    }
    // Kernels before 5.9: one close per possible descriptor.
    let mut lim: libc::rlimit = std::mem::zeroed();
    let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
        lim.rlim_cur.min(1 << 20) as libc::c_uint
    } else {
        4096
    };
    for fd in 0..max {
        if fd != keep {
            libc::close(fd as RawFd);
        }
    }
}

/// One pass over /proc: SIGKILL every process (other than guards) whose environment
/// carries the console's token. How many were signalled.
unsafe fn kill_carriers(c: &mut GuardCtx<'_>) -> usize {
    let dir = libc::open(
        c"/proc".as_ptr(),
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
    );
    if dir < 0 {
        return 0;
    }
    let me = libc::getpid();
    let mut killed = 0;
    loop {
        let n = libc::syscall(
            libc::SYS_getdents64,
            dir,
            c.dir_buf.as_mut_ptr(),
            c.dir_buf.len(),
        );
        if n <= 0 {
            break;
        }
        let n = n as usize;
        let mut off = 0;
        // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name.
        while off + 19 < n {
            let ent = c.dir_buf.as_ptr().add(off);
            let reclen = std::ptr::read_unaligned(ent.add(16) as *const u16) as usize;
            if reclen == 0 {
                break;
            }
            let pid = parse_pid(ent.add(19));
            off += reclen;
            let Some(pid) = pid else { continue };
            if pid == me {
                continue;
            }
            if proc_file_contains(pid, b"environ", c.needle, c.env_buf)
                && !proc_file_contains(pid, b"comm", b"\0testbay-guard\n", c.env_buf)
                && libc::kill(pid, libc::SIGKILL) == 0
            {
                killed += 1;
            }
        }
    }
    libc::close(dir);
    killed
}

/// The pid a /proc entry name stands for (a NUL-terminated run of digits), if it is one.
unsafe fn parse_pid(mut name: *const u8) -> Option<libc::pid_t> {
    let mut pid: libc::pid_t = 0;
    let mut digits = 0;
    while *name != 0 {
        let d = *name;
        if !d.is_ascii_digit() || digits >= 9 {
            return None;
        }
        pid = pid * 10 + (d - b'0') as libc::pid_t;
        digits += 1;
        name = name.add(1);
    }
    (digits > 0).then_some(pid)
}

/// Whether `/proc/<pid>/<file>`, read as if preceded by a NUL byte, contains `needle`.
/// `buf` is scratch space longer than `needle`.
unsafe fn proc_file_contains(pid: libc::pid_t, file: &[u8], needle: &[u8], buf: &mut [u8]) -> bool {
    // "/proc/" + up to 10 digits + "/" + file + NUL.
    let mut path = [0u8; 40];
    let mut len = 0;
    let mut put = |bytes: &[u8]| {
        for &b in bytes {
            if len < path.len() - 1 {
                path[len] = b;
                len += 1;
            }
        }
    };
    put(b"/proc/");
    let mut digits = [0u8; 10];
    let mut nd = 0;
    let mut v = pid;
    loop {
        digits[nd] = b'0' + (v % 10) as u8;
        nd += 1;
        v /= 10;
        if v == 0 || nd == digits.len() {
            break;
        }
    }
    digits[..nd].reverse();
    put(&digits[..nd]);
    put(b"/");
    put(file);
    let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
    if fd < 0 {
        return false;
    }
    let keep = needle.len() - 1;
    buf[0] = 0;
    let mut have = 1;
    let mut found = false;
    loop {
        let n = libc::read(fd, buf.as_mut_ptr().add(have).cast(), buf.len() - have);
        if n < 0 && *libc::__errno_location() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        have += n as usize;
        if buf[..have].windows(needle.len()).any(|w| w == needle) {
            found = true;
            break;
        }
        // Keep the tail that could start a match across two reads.
        if have > keep {
            buf.copy_within(have - keep..have, 0);
            have = keep;
        }
    }
    libc::close(fd);
    found
}
