//! Network cuts between a rack agent and its lab server, with real processes.
//!
//! The agent talks to the server through a TCP proxy the test cuts mid-task: the run goes
//! `stalled`, the task finishes on the agent during the cut, its output, result file and
//! artifact wait in the agent's outbox, and once the proxy lets the agent back (within
//! the grace period) they are stored exactly once and the run completes.
//!
//! The server stopped (SIGSTOP) mid-task and continued after a while: a cut seen from
//! the agent's side (its sends go unanswered), the task's results delivered once when
//! the server answers again, the run completing.
//!
//! The server killed mid-task and started again: the agent lives through it and serves
//! the new server process, which (recovering) has marked the run `interrupted`; the
//! outcome the agent kept for the old process is refused, none of it stored.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::agents::{find, wait_until, write_pack, Lab, Proc};

/// The packs these tests launch, written with the lab's (`root` holds their gate files).
/// `cut`: a task that waits for `cut.go`, then writes 200 lines, an artifact and a
/// result file and says `cut.done`; a second task after it.
pub(crate) fn write_packs(root: &Path, packs: &Path) {
    let (pid, go, done) = (
        root.join("cut.pid"),
        root.join("cut.go"),
        root.join("cut.done"),
    );
    write_pack(
        &packs.join("cut"),
        "cut",
        &format!(
            "echo before\necho $$ > {}\nwhile [ ! -e {} ]; do sleep 0.05; done\n\
             i=0; while [ $i -lt 200 ]; do echo \"line $i\"; i=$((i+1)); done\n\
             echo proof > \"$TESTBAY_ARTIFACTS/proof.txt\"\n\
             echo '{{\"result\": \"Passed\", \"metadata\": {{\"message\": \"through the cut\"}}}}' > \"$TESTBAY_RESULT\"\n\
             touch {}\n",
            pid.display(),
            go.display(),
            done.display()
        ),
    );
    std::fs::write(
        packs.join("cut/pack.yaml"),
        "name: cut\nversion: '1'\ngroups:\n  g:\n    tests: [probe, after]\n",
    )
    .unwrap();
    std::fs::write(
        packs.join("cut/tasks/after.yaml"),
        "name: after\nrun: [bash, after.sh]\n",
    )
    .unwrap();
    std::fs::write(packs.join("cut/tasks/after.sh"), "echo after\n").unwrap();
}

/// A TCP proxy to `to` on loopback. Cut, it closes the connections it carries and
/// refuses new ones until healed.
struct Proxy {
    addr: String,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn to(to: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (to, c, o) = (to.to_string(), cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&to) else {
                    continue;
                };
                let mut o = o.lock().unwrap();
                o.push(client.try_clone().unwrap());
                o.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { addr, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copy `from` to `to` on a thread until either ends.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

/// `testbay agent` for rack-a, talking to the server at `addr`.
fn agent_via(lab: &Lab, addr: &str) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .args(["agent", "--server"])
        .arg(format!("http://{addr}"))
        .args([
            "--token",
            &lab.agent_token,
            "--rack",
            "rack-a",
            "--work-dir",
        ])
        .arg(&lab.work)
        .env("RUST_LOG", "warn")
        .env_remove("TESTBAY_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child)
}

fn results(r: &Value) -> Vec<(String, String)> {
    r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task"].as_str().unwrap().to_string(),
                t["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_connection_cut_mid_task_loses_nothing_and_the_run_goes_on() {
    let lab = Lab::with_grace(60);
    let proxy = Proxy::to(&lab.addr);
    let _agent = agent_via(&lab, &proxy.addr);
    let id = cut_run_started(&lab);

    // Cut: the server sees the agent go, the run waits for it.
    proxy.cut();
    let r = lab.wait_status(&id, &["stalled"], Duration::from_secs(10));
    assert!(
        r["run"]["reason"].as_str().unwrap().contains("agent-a"),
        "{r}"
    );
    // The task finishes on the agent during the cut; its results wait there.
    std::fs::write(lab.f.root.join("cut.go"), "").unwrap();
    wait_until(Duration::from_secs(20), || {
        lab.f.root.join("cut.done").is_file().then_some(())
    })
    .expect("the task goes on through the cut");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.run(&id)["run"]["status"], "stalled");

    // Back: the buffered results arrive, once, and the run goes on.
    proxy.heal();
    delivered_once(&lab, &id, Duration::from_secs(30));
    assert_eq!(lab.agents()[0]["state"], "ok");
}

#[test]
fn a_server_killed_and_restarted_mid_task_keeps_its_agent_and_refuses_the_old_outcome() {
    let mut lab = Lab::with_grace(60);
    let _agent = lab.agent();
    let id = cut_run_started(&lab);

    // The server dies; the task finishes on the agent meanwhile.
    let root = lab.f.root.clone();
    lab.restart_server(|| {
        std::fs::write(root.join("cut.go"), "").unwrap();
        wait_until(Duration::from_secs(20), || {
            root.join("cut.done").is_file().then_some(())
        })
        .expect("the task goes on while the server is away");
    });

    // The agent comes back to the new server process and takes a new run; the old run
    // stays interrupted, the outcome the agent kept for it refused: none of it stored.
    wait_until(Duration::from_secs(30), || {
        (lab.agents()[0]["state"] == "ok").then_some(())
    })
    .expect("the agent connects to the restarted server");
    let again = lab.launch("where");
    lab.wait_status(&again, &["completed"], Duration::from_secs(30));
    let r = lab.run(&id);
    assert_eq!(r["run"]["status"], "interrupted", "{r}");
    assert_eq!(
        results(&r),
        [
            ("probe".to_string(), "Aborted".to_string()),
            ("after".to_string(), "Aborted".to_string())
        ],
        "{r}"
    );
    let run_dir = lab.f.data.join("runs").join(&id);
    assert!(
        find(&run_dir, "proof.txt").is_empty(),
        "nothing of it stored"
    );
}

#[test]
fn a_server_stopped_mid_task_and_continued_loses_nothing_and_the_run_goes_on() {
    let lab = Lab::with_grace(60);
    let _agent = lab.agent();
    let id = cut_run_started(&lab);

    // The server stops answering; the task finishes on the agent meanwhile, and the agent
    // keeps its results while nobody takes them.
    lab.signal_server("STOP");
    std::fs::write(lab.f.root.join("cut.go"), "").unwrap();
    let done = wait_until(Duration::from_secs(20), || {
        lab.f.root.join("cut.done").is_file().then_some(())
    });
    // Several heartbeats and a send timeout's worth of silence.
    std::thread::sleep(Duration::from_secs(4));
    lab.signal_server("CONT");
    done.expect("the task goes on while the server is stopped");

    delivered_once(&lab, &id, Duration::from_secs(60));
}

/// Once the lab's agent is connected, a `cut` run launched and its first task started on
/// the agent (waiting for `cut.go`): the run's id.
fn cut_run_started(lab: &Lab) -> String {
    wait_until(Duration::from_secs(20), || {
        (lab.agents()[0]["state"] == "ok").then_some(())
    })
    .expect("the agent connects");
    let id = lab.launch("cut");
    wait_until(Duration::from_secs(30), || {
        lab.f.root.join("cut.pid").is_file().then_some(())
    })
    .expect("the task starts on the agent");
    id
}

/// The `cut` run `id` completes within `limit` with both its tasks Passed, the one that
/// finished during the cut with its message, its log and its artifact stored once.
fn delivered_once(lab: &Lab, id: &str, limit: Duration) {
    let r = lab.wait_status(id, &["completed"], limit);
    assert_eq!(
        results(&r),
        [
            ("probe".to_string(), "Passed".to_string()),
            ("after".to_string(), "Passed".to_string())
        ],
        "{r}"
    );
    assert_eq!(r["tasks"][0]["message"], "through the cut", "{r}");
    let run_dir = lab.f.data.join("runs").join(id);
    let logs: Vec<String> = find(&run_dir, "main.log")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .filter(|l| l.contains("before"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    assert_eq!(log.matches("before\n").count(), 1, "{log}");
    for i in 0..200 {
        assert_eq!(log.matches(&format!("line {i}\n")).count(), 1, "{log}");
    }
    let artifacts = find(&run_dir, "proof.txt");
    assert_eq!(artifacts.len(), 1, "the artifact is stored once");
    assert_eq!(std::fs::read_to_string(&artifacts[0]).unwrap(), "proof\n");
}
