//! Start a phase process without `fork`: `clone(CLONE_VM | CLONE_VFORK)` as `posix_spawn`
//! does, so the console's page tables are neither copied nor made copy-on-write (a plain
//! `fork` of a 10 MB console costs about a millisecond more per task here). The child sets
//! `PR_SET_PDEATHSIG`, its own process group (marked in the phase guard's bitmap, see
//! `guard`), its standard streams and working directory, then `execvpe`. Between clone and exec it runs on its own stack in the parent's memory
//! and only makes plain system calls; `execvpe` searches `PATH` without allocating (it is
//! what glibc's own `posix_spawnp` uses in the same situation).

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use super::guard;

/// Everything the child needs, prepared by the parent (the child must not allocate).
struct ChildArgs {
    file: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    cwd: CString,
    stdin: RawFd,
    out: RawFd,
    parent: libc::pid_t,
    /// The phase guard's bitmap, where the child marks its process group (null: none).
    guard_bits: *const AtomicU64,
    /// errno of the step that failed in the child, 0 if exec succeeded.
    error: AtomicI32,
    /// Which step failed (for the message).
    step: AtomicI32,
}

const STEP_PDEATHSIG: i32 = 1;
const STEP_SETPGID: i32 = 2;
const STEP_DUP: i32 = 3;
const STEP_CHDIR: i32 = 4;
const STEP_EXEC: i32 = 5;

extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` points to the parent's `ChildArgs`, alive until the parent resumes,
    // which CLONE_VFORK holds off until this exec's or exits. Only system calls below.
    unsafe {
        let a = &*(arg as *const ChildArgs);
        let fail = |step: i32| -> libc::c_int {
            a.step.store(step, Ordering::Relaxed);
            a.error.store(*libc::__errno_location(), Ordering::Relaxed);
            libc::_exit(127)
        };
        if libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        ) != 0
        {
            return fail(STEP_PDEATHSIG);
        }
        // The console may have died before prctl took effect.
        if libc::getppid() != a.parent {
            libc::_exit(127);
        }
        if libc::setpgid(0, 0) != 0 {
            return fail(STEP_SETPGID);
        }
        // Known to the guard before anything runs in the group.
        guard::mark(a.guard_bits, libc::syscall(libc::SYS_getpid) as libc::pid_t);
        if libc::dup2(a.stdin, 0) < 0 || libc::dup2(a.out, 1) < 0 || libc::dup2(a.out, 2) < 0 {
            return fail(STEP_DUP);
        }
        if libc::chdir(a.cwd.as_ptr()) != 0 {
            return fail(STEP_CHDIR);
        }
        // Signals are blocked (the parent blocked them before clone). Handlers of the
        // console must not run here, in its memory: reset them before unblocking. Rust
        // ignores SIGPIPE and ignored signals survive exec; tasks get the default.
        for sig in 1..65 {
            let mut sa: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut sa) == 0
                && (sa.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
                && sa.sa_sigaction != libc::SIG_DFL
            {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::execvpe(a.file.as_ptr(), a.argv.as_ptr(), a.envp.as_ptr());
        fail(STEP_EXEC)
    }
}

/// A started phase process: its pid (= process group id) and, where the kernel has
/// them, a pidfd to wait on.
pub(super) struct Spawned {
    pub pid: libc::pid_t,
    pub pidfd: Option<OwnedFd>,
}

/// `KEY=value` as an environment entry for `execve`.
pub(super) fn env_entry(key: &OsStr, value: &OsStr) -> std::io::Result<CString> {
    let mut kv = key.as_bytes().to_vec();
    kv.push(b'=');
    kv.extend_from_slice(value.as_bytes());
    CString::new(kv).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "environment contains a NUL byte",
        )
    })
}

fn cstr(what: &str, s: &OsStr) -> std::io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what} contains a NUL byte"),
        )
    })
}

/// `/dev/null` for the children's stdin, opened once (close-on-exec; `dup2` gives each
/// child its own descriptor).
fn dev_null() -> std::io::Result<&'static std::fs::File> {
    static DEV_NULL: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    if let Some(f) = DEV_NULL.get() {
        return Ok(f);
    }
    let f = std::fs::File::open("/dev/null")?;
    Ok(DEV_NULL.get_or_init(|| f))
}

/// Start `argv` in `cwd` with the environment `base` (made once) plus `extra`, stdin from
/// /dev/null and stdout + stderr to `out`.
pub(super) fn spawn(
    program: &Path,
    argv: &[String],
    cwd: &Path,
    (base, extra): (&[CString], &[(&str, &OsStr)]),
    out: &impl AsRawFd,
) -> std::io::Result<Spawned> {
    let argv_c: Vec<CString> = argv
        .iter()
        .enumerate()
        .map(|(i, a)| {
            // A bare name keeps its name as argv[0] (as a shell does); a path is passed
            // as resolved.
            if i == 0 && a.contains('/') {
                cstr("program", program.as_os_str())
            } else {
                cstr("argument", OsStr::new(a))
            }
        })
        .collect::<std::io::Result<_>>()?;
    let extra_c: Vec<CString> = extra
        .iter()
        .map(|(k, v)| env_entry(OsStr::new(k), v))
        .collect::<std::io::Result<_>>()?;
    let devnull = dev_null()?;
    let mut argv_p: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> =
        base.iter().chain(&extra_c).map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    let args = ChildArgs {
        file: cstr("program", program.as_os_str())?,
        argv: argv_p,
        envp: envp_p,
        cwd: cstr("working directory", cwd.as_os_str())?,
        stdin: devnull.as_raw_fd(),
        out: out.as_raw_fd(),
        parent: std::process::id() as libc::pid_t,
        guard_bits: guard::for_spawn(),
        error: AtomicI32::new(0),
        step: AtomicI32::new(0),
    };
    // The child's stack: this thread's, reused. The thread is suspended while the child
    // runs on it (CLONE_VFORK), so nothing else touches it meanwhile.
    thread_local! {
        static STACK: std::cell::RefCell<Box<[u8]>> =
            std::cell::RefCell::new(vec![0u8; 64 * 1024].into_boxed_slice());
    }
    let pid = STACK.with(|stack| {
        let mut stack = stack.borrow_mut();
        // SAFETY: x86_64 and aarch64 stacks grow down; pass the 16-byte aligned top.
        let top = unsafe { stack.as_mut_ptr().add(stack.len()) } as usize & !15;
        clone_child(top, &args)
    });
    finish_spawn(pid, &args)
}

/// clone(CLONE_VM | CLONE_VFORK) onto the stack ending at `top`. Every signal is blocked
/// across the clone so no handler runs in the child before it has reset them (as
/// posix_spawn does).
fn clone_child(top: usize, args: &ChildArgs) -> libc::pid_t {
    // SAFETY: `args` outlives the child's use of it (the parent is suspended until the
    // child execs or exits); `top` is the top of a live, unused stack.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            args as *const ChildArgs as *mut libc::c_void,
        );
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        pid
    }
}

fn finish_spawn(pid: libc::pid_t, args: &ChildArgs) -> std::io::Result<Spawned> {
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let err = args.error.load(Ordering::Relaxed);
    if err != 0 {
        // The child exited with 127; reap it.
        let mut st = 0;
        unsafe { libc::waitpid(pid, &mut st, 0) };
        guard::forget(pid);
        let step = match args.step.load(Ordering::Relaxed) {
            STEP_PDEATHSIG => "prctl(PR_SET_PDEATHSIG)",
            STEP_SETPGID => "setpgid",
            STEP_DUP => "redirecting output",
            STEP_CHDIR => "changing to the working directory",
            _ => "exec",
        };
        let e = std::io::Error::from_raw_os_error(err);
        return Err(if step == "exec" {
            e
        } else {
            std::io::Error::new(e.kind(), format!("{step}: {e}"))
        });
    }
    // SAFETY: plain syscall; a pidfd is a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let pidfd = if fd >= 0 {
        use std::os::fd::FromRawFd;
        Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    } else {
        None
    };
    Ok(Spawned { pid, pidfd })
}

/// Exit status of a reaped process, as `waitpid` reports it.
pub(super) fn decode_status(st: libc::c_int) -> super::Exit {
    if libc::WIFEXITED(st) {
        super::Exit::Code(libc::WEXITSTATUS(st))
    } else if libc::WIFSIGNALED(st) {
        super::Exit::Signal(libc::WTERMSIG(st))
    } else {
        super::Exit::Code(-1)
    }
}

/// Reap `pid` if it has exited. `None` while it runs.
pub(super) fn try_reap(pid: libc::pid_t) -> Option<super::Exit> {
    let mut st = 0;
    // SAFETY: plain syscall on our own child.
    let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
    if r == pid {
        Some(decode_status(st))
    } else if r < 0 {
        // Already reaped elsewhere (should not happen) or not our child.
        Some(super::Exit::Code(-1))
    } else {
        None
    }
}
