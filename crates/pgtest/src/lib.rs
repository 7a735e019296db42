//! A throwaway PostgreSQL cluster for tests, benchmarks and the "Run a lab" script.
//!
//! [`Cluster::start`] runs Debian's `initdb` into a fresh folder under the temp dir and
//! starts one `postgres` on a free loopback port (trust auth; fsync off, which loses
//! nothing when the server is killed, only when the machine is). Started by root, both run as the `postgres` user (PostgreSQL refuses to
//! run as root). The server dies with the thread that spawned it (`PR_SET_PDEATHSIG`),
//! which [`shared`] keeps alive for the whole process, so a test binary that ends or is
//! killed leaves no server behind; its folder is removed by [`Cluster`]'s `Drop` or by
//! the next start, which sweeps the folders of clusters whose starter is gone.
//!
//! Kept to `std` and `libc`: it only runs PostgreSQL's own programs.

use std::fs;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The user PostgreSQL runs as when root starts it, and the superuser of the cluster.
pub const SUPERUSER: &str = "postgres";

/// One running throwaway cluster.
pub struct Cluster {
    root: PathBuf,
    port: u16,
    bin: PathBuf,
    child: Mutex<Option<Child>>,
    /// Whether dropping removes the folder (not for a failed try that the next reuses).
    owns_folder: bool,
}

/// What went wrong starting a cluster, with what PostgreSQL printed.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

fn err(msg: impl Into<String>) -> StartError {
    StartError(msg.into())
}

/// The folder of PostgreSQL's server programs: `$TESTBAY_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian's layout), else the folder of `initdb`
/// on `PATH`.
pub fn bin_dir() -> Result<PathBuf, StartError> {
    if let Some(dir) = std::env::var_os("TESTBAY_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if dir.join("initdb").exists() && dir.join("postgres").exists() {
            return Ok(dir);
        }
    }
    Err(err(
        "PostgreSQL's server programs were not found (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH); \
         install Debian's `postgresql` package (scripts/setup.sh does) or set TESTBAY_PG_BIN",
    ))
}

/// The uid and gid of `postgres` when this process runs as root.
fn run_as() -> Result<Option<(u32, u32)>, StartError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = std::ffi::CString::new(SUPERUSER).expect("no NUL");
    // SAFETY: getpwnam returns a pointer into static storage or null; read at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(err(
            "running as root, but there is no `postgres` user to run PostgreSQL as (Debian's `postgresql` package creates it)",
        ));
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

fn chown(path: &Path, ids: Option<(u32, u32)>) -> io::Result<()> {
    if let Some((uid, gid)) = ids {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    }
    Ok(())
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Folders of earlier clusters whose starting process is gone.
fn sweep(parent: &Path) {
    for entry in fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.split('-').nth(1))
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        // SAFETY: kill with signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(pid, 0) } == 0
            || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !alive {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// initdb and start a cluster, waiting until it accepts connections (at most 60 s).
    ///
    /// The server is a child of a thread this call starts and keeps parked, so it lives
    /// until the process ends or the cluster is dropped.
    pub fn start() -> Result<Cluster, StartError> {
        let bin = bin_dir()?;
        let ids = run_as()?;
        let parent = std::env::temp_dir().join("testbay-pgtest");
        fs::create_dir_all(&parent).map_err(|e| err(format!("{}: {e}", parent.display())))?;
        // Root's temp folder must let `postgres` through to its own cluster folder.
        let _ = fs::set_permissions(&parent, fs::Permissions::from_mode(0o1777));
        sweep(&parent);
        let root = parent.join(format!(
            "cluster-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let data = root.join("data");
        let sock = root.join("sock");
        for dir in [&root, &sock] {
            fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
            chown(dir, ids).map_err(|e| err(format!("chown {}: {e}", dir.display())))?;
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .stdin(Stdio::null());
        if let Some((uid, gid)) = ids {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().map_err(|e| err(format!("initdb: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "initdb failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port().map_err(|e| err(format!("no free port: {e}")))?;
            let child = spawn_server(&bin, &data, &sock, &root.join("server.log"), port, ids)?;
            let cluster = Cluster {
                root: root.clone(),
                port,
                bin: bin.clone(),
                child: Mutex::new(Some(child)),
                owns_folder: true,
            };
            match cluster.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return Ok(cluster),
                Err(e) => {
                    last = e.0;
                    let mut cluster = cluster;
                    cluster.owns_folder = false;
                }
            }
        }
        let _ = fs::remove_dir_all(&root);
        Err(err(format!("postgres did not start: {last}")))
    }

    fn wait_ready(&self, within: Duration) -> Result<(), StartError> {
        let until = Instant::now() + within;
        loop {
            if let Some(child) = self.child.lock().unwrap().as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(err(format!(
                        "postgres exited ({status}): {}",
                        self.log_tail()
                    )));
                }
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let ok = Command::new(self.bin.join("pg_isready"))
                    .args([
                        "-q",
                        "-h",
                        "127.0.0.1",
                        "-U",
                        SUPERUSER,
                        "-p",
                        &self.port.to_string(),
                    ])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ok {
                    return Ok(());
                }
            }
            if Instant::now() > until {
                return Err(err(format!(
                    "not ready within {within:?}: {}",
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.root.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// The loopback port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for database `db` as the superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Create database `name` and return its URL.
    pub fn create_db(&self, name: &str) -> Result<String, StartError> {
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                SUPERUSER,
                "-p",
                &self.port.to_string(),
                name,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| err(format!("createdb: {e}")))?;
        if !out.status.success() {
            return Err(err(format!(
                "createdb {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(self.url(name))
    }

    /// Create a database with a name no other call in this process gives and return its URL.
    pub fn fresh_db(&self, prefix: &str) -> Result<String, StartError> {
        let name = format!(
            "{}_{}_{}",
            prefix
                .to_ascii_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        self.create_db(&name)
    }

    /// Kill the postmaster (SIGKILL, as a crash would), keeping the folder; its backends
    /// notice and end on their own. Tests of
    /// a database that goes away use it with [`Cluster::restart`].
    pub fn kill(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop the server the quick way (SIGQUIT: the postmaster ends its backends and
    /// exits), SIGKILL after 10 s.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            // SAFETY: signalling our own child, which has not been waited for.
            unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
            let until = Instant::now() + Duration::from_secs(10);
            while Instant::now() < until {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start the server again on the same port and folder after [`Cluster::kill`].
    pub fn restart(&self) -> Result<(), StartError> {
        self.kill();
        let ids = run_as()?;
        // A killed postmaster leaves its pid file; postgres checks the pid is not alive.
        // Its backends end on their own once they notice; until the last has, the new
        // postmaster refuses the shared memory they still hold and exits: it is
        // started again (for up to 10 s).
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let child = spawn_server(
                &self.bin,
                &self.root.join("data"),
                &self.root.join("sock"),
                &self.root.join("server.log"),
                self.port,
                ids,
            )?;
            *self.child.lock().unwrap() = Some(child);
            match self.wait_ready(Duration::from_secs(60)) {
                Err(e) if e.0.starts_with("postgres exited") && Instant::now() < until => {
                    self.kill();
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => return other,
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        if self.owns_folder {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Start `postgres` from a thread that stays parked for the life of the process, so the
/// server's parent-death signal fires only when the process ends.
fn spawn_server(
    bin: &Path,
    data: &Path,
    sock: &Path,
    log: &Path,
    port: u16,
    ids: Option<(u32, u32)>,
) -> Result<Child, StartError> {
    let mut cmd = Command::new(bin.join("postgres"));
    cmd.arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(sock)
        .args([
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
        ])
        .stdin(Stdio::null());
    let log_file = fs::File::create(log).map_err(|e| err(format!("{}: {e}", log.display())))?;
    chown(log, ids).map_err(|e| err(format!("chown {}: {e}", log.display())))?;
    cmd.stdout(log_file.try_clone().map_err(|e| err(e.to_string()))?)
        .stderr(log_file);
    if let Some((uid, gid)) = ids {
        cmd.uid(uid).gid(gid);
    }
    // SAFETY: prctl is async-signal-safe; the closure runs after the uid change (which
    // would clear the setting) and before exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGQUIT as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawner().send(cmd)
}

/// The thread that spawns servers and never ends.
struct Spawner {
    tx: Mutex<mpsc::Sender<(Command, mpsc::Sender<io::Result<Child>>)>>,
}

impl Spawner {
    fn send(&self, cmd: Command) -> Result<Child, StartError> {
        let (reply_tx, reply_rx) = mpsc::channel();
        self.tx
            .lock()
            .unwrap()
            .send((cmd, reply_tx))
            .map_err(|_| err("the spawner thread is gone"))?;
        reply_rx
            .recv()
            .map_err(|_| err("the spawner thread is gone"))?
            .map_err(|e| err(format!("postgres: {e}")))
    }
}

fn spawner() -> &'static Spawner {
    static SPAWNER: OnceLock<Spawner> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Command, mpsc::Sender<io::Result<Child>>)>();
        std::thread::Builder::new()
            .name("pgtest-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // Every sender is gone only when the process ends; park so the servers
                // outlive nothing but the process.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawn the pgtest spawner thread");
        Spawner { tx: Mutex::new(tx) }
    })
}

/// One cluster for the whole process, started on first use; tests take a
/// [`Cluster::fresh_db`] each.
pub fn shared() -> Result<&'static Cluster, StartError> {
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| Cluster::start().map_err(|e| e.0))
        .as_ref()
        .map_err(|e| err(e.clone()))
}
