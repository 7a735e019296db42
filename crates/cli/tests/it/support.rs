//! Set-up shared by the test modules: the `testbay` binary, the test bed (a temp folder
//! with a data dir, where tests write packs and run the binary), processes as /proc shows
//! them, and waits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository's root folder.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The demo lab of the repository.
pub fn demo_lab() -> PathBuf {
    repo().join("lab/demo-lab.yaml")
}

/// The `testbay` binary, with no data dir from the environment, logging warnings only.
pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_testbay"));
    c.env_remove("TESTBAY_DATA_DIR").env("RUST_LOG", "warn");
    c
}

/// Output as text, invalid UTF-8 replaced.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A temp folder with a data dir, removed on drop.
pub struct Bed {
    _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub data: PathBuf,
}

impl Bed {
    pub fn new() -> Bed {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        Bed {
            data: root.join("data"),
            root,
            _tmp: tmp,
        }
    }
}

impl Bed {
    /// Write a pack `name` with tasks (name, extra yaml, bash body).
    pub fn pack(&self, name: &str, pack_yaml: &str, tasks: &[(&str, &str, &str)]) -> PathBuf {
        let dir = self.root.join(name);
        std::fs::create_dir_all(dir.join("tasks")).unwrap();
        std::fs::write(dir.join("pack.yaml"), pack_yaml).unwrap();
        for (t, extra, body) in tasks {
            std::fs::write(
                dir.join(format!("tasks/{t}.yaml")),
                format!("name: {t}\nrun: [bash, {t}.sh]\n{extra}"),
            )
            .unwrap();
            std::fs::write(dir.join(format!("tasks/{t}.sh")), body).unwrap();
        }
        dir
    }

    pub fn testbay(&self, args: &[&str]) -> Output {
        bin()
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

/// The run id `testbay run` printed.
pub fn run_id_of(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("details: testbay results "))
        .unwrap_or_else(|| panic!("no run id in\n{stdout}"))
        .trim()
        .to_string()
}

/// `testbay run PACK` in the background, its output captured (for Ctrl-C tests).
pub fn start_run(f: &Bed, pack: &Path) -> std::process::Child {
    bin()
        .arg("--data-dir")
        .arg(&f.data)
        .args(["run", pack.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Result of each task of stored run `id`, by task name (`testbay results ID --json`).
pub fn results_by_task(f: &Bed, id: &str) -> HashMap<String, String> {
    let tree: Value =
        serde_json::from_slice(&f.testbay(&["results", id, "--json"]).stdout).unwrap();
    tree["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task"].as_str().unwrap().to_string(),
                t["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Wait until `p` holds a whole line (10 s at most); its text.
pub fn wait_for_file(p: &Path) -> String {
    for _ in 0..1000 {
        if let Ok(s) = std::fs::read_to_string(p) {
            if s.ends_with('\n') {
                return s;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never appeared", p.display());
}

/// Whether `pid` runs: it has a /proc entry that is not a zombie's.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s[s.rfind(')').unwrap() + 2..].chars().next(),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

/// Whether `pid` is gone within two seconds.
pub fn ends_soon(pid: i32) -> bool {
    for _ in 0..200 {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Wait for `child` at most `limit`; kill it when it overstays.
pub fn finish_within(mut child: Child, limit: Duration) -> Option<Output> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Make a named pipe at `p`.
pub fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: plain syscall on a valid C string.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {p:?}"
    );
}

/// The address (`host:port`) a `testbay serve` child prints on its first line of stdout,
/// read from its piped stdout.
pub fn served_address(child: &mut Child) -> String {
    use std::io::{BufRead, BufReader};
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .unwrap();
    address_in(&line).unwrap_or_else(|| panic!("no address in {line:?}"))
}

/// The `host:port` of the first `http://` URL in `line`.
pub fn address_in(line: &str) -> Option<String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("http://"))
        .map(|a| a.trim_end_matches('/').to_string())
}
