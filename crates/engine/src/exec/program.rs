//! The environment tasks get and the programs they name: the console's environment read
//! once, and bare program names looked up on `PATH` once per console.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{guard, spawn, CONSOLE_ENV};

/// The console's environment as tasks get it, read once: the console's own `TESTBAY_*`
/// variables left out, `TESTBAY_CONSOLE` (see `guard`) added, `PYTHONUNBUFFERED=1` added
/// unless set (Python tasks then stream
/// their output live instead of in 8 KiB blocks).
fn base_env() -> &'static Vec<(OsString, OsString)> {
    static ENV: std::sync::OnceLock<Vec<(OsString, OsString)>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| !k.as_bytes().starts_with(b"TESTBAY_"))
            .collect();
        if !env.iter().any(|(k, _)| k == "PYTHONUNBUFFERED") {
            env.push(("PYTHONUNBUFFERED".into(), "1".into()));
        }
        // The task needs no install to report: the bundled Python SDK goes at the end of
        // PYTHONPATH and the `testbay` binary's folder at the end of PATH.
        if let Some(sdk) = super::sdk::python_sdk_dir() {
            append_path(&mut env, "PYTHONPATH", &sdk);
        }
        if let Some(bin) = testbay_bin_dir() {
            append_path(&mut env, "PATH", &bin);
        }
        env.push((CONSOLE_ENV.into(), guard::token().into()));
        env
    })
}

/// `dir` added at the end of the `:`-separated variable `key` (set to `dir` when unset).
fn append_path(env: &mut Vec<(OsString, OsString)>, key: &str, dir: &Path) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) if !v.is_empty() => {
            v.push(":");
            v.push(dir.as_os_str());
        }
        Some((_, v)) => *v = dir.as_os_str().to_owned(),
        None => env.push((key.into(), dir.as_os_str().to_owned())),
    }
}

/// The folder of the `testbay` binary: the running program's own folder, or the one
/// above it (a test binary in `target/debug/deps`), when it holds an executable `testbay`.
fn testbay_bin_dir() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let ok = d
            .join("testbay")
            .metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if ok {
            return Some(d.to_path_buf());
        }
    }
    None
}

/// [`base_env`] as `KEY=value` C strings, made once.
pub(super) fn base_envp() -> &'static Vec<std::ffi::CString> {
    static ENVP: std::sync::OnceLock<Vec<std::ffi::CString>> = std::sync::OnceLock::new();
    ENVP.get_or_init(|| {
        base_env()
            .iter()
            .filter_map(|(k, v)| spawn::env_entry(k, v).ok())
            .collect()
    })
}

/// The file to execute for `program`: a relative path with a slash is relative to `cwd`;
/// a bare name is looked up in the tasks' `PATH` once per console and remembered (a
/// `PATH` search is a failed `execve` per directory before the right one, every phase).
pub(super) fn resolve_program(program: &str, cwd: &Path) -> PathBuf {
    let p = Path::new(program);
    if program.contains('/') {
        return if p.is_relative() {
            cwd.join(p)
        } else {
            p.to_path_buf()
        };
    }
    let mut found = found_programs().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(path) = found.get(program) {
        return path.clone();
    }
    match search_path(program) {
        Some(path) => {
            found.insert(program.to_string(), path.clone());
            path
        }
        // Not found: exec the bare name and let the kernel's error be the message.
        None => p.to_path_buf(),
    }
}

fn found_programs() -> &'static std::sync::Mutex<HashMap<String, PathBuf>> {
    static FOUND: std::sync::OnceLock<std::sync::Mutex<HashMap<String, PathBuf>>> =
        std::sync::OnceLock::new();
    FOUND.get_or_init(Default::default)
}

/// A remembered program that could not be executed any more (removed or moved since)
/// is looked up again next time.
pub(super) fn forget_program(program: &str) {
    found_programs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(program);
}

/// The first executable regular file named `program` in the tasks' `PATH`.
fn search_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = base_env().iter().find(|(k, _)| k == "PATH")?.1.clone();
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(program))
        .find(|f| {
            f.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}
