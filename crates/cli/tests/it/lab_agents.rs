//! Rack agents in a lab of two servers on one PostgreSQL database (issue 16, item 7):
//! two `testbay serve` (lab mode, the demo lab with rack-a and rack-b run by agents) and
//! one `testbay agent` per rack given both servers' addresses, the one that does not own
//! the book first. The agents are sent to the book's owner; a run on both racks
//! launched on the other server completes on them; the owner SIGKILLed, the survivor
//! takes the book over, the agents follow it and a new run on both racks completes.
//! Leases of 2 s (`TESTBAY_SERVER_LEASE_MS`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::agents::{api, find, wait_until, write_pack, Proc};
use crate::support::{text, Bed};

const RACKS: [&str; 2] = ["Set-top box rack, bench 1", "Mixed rack, bench 2"];

struct Lab {
    f: Bed,
    store: String,
    packs: PathBuf,
    lab: PathBuf,
    ops: String,
}

impl Lab {
    fn new() -> Lab {
        let store = testbay_pgtest::shared()
            .expect("a throwaway PostgreSQL (Debian's postgresql package)")
            .fresh_db("lab_agents")
            .unwrap();
        let f = Bed::new();
        let mut marked = std::fs::read_to_string(crate::support::demo_lab()).unwrap();
        for d in RACKS {
            let entry = format!("    description: {d}\n    slots: 8\n");
            assert!(
                marked.contains(&entry),
                "the demo lab's entry for the rack `{d}` changed; adapt this test"
            );
            marked = marked.replacen(&entry, &format!("{entry}    agent: true\n"), 1);
        }
        let lab = f.root.join("lab.yaml");
        std::fs::write(&lab, marked).unwrap();
        let packs = f.root.join("packs");
        write_pack(
            &packs.join("where"),
            "where",
            "echo \"cwd=$PWD\"\necho proof > \"$TESTBAY_ARTIFACTS/proof.txt\"\n",
        );
        let mut lab = Lab {
            f,
            store,
            packs,
            lab,
            ops: String::new(),
        };
        lab.ops = lab.user("ops", "operator");
        lab
    }

    fn command(&self, data: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_testbay"));
        c.env("TESTBAY_DATA_DIR", data)
            .env("TESTBAY_PACKS", &self.packs)
            .env("TESTBAY_LAB", &self.lab)
            .env("TESTBAY_STORE", &self.store)
            .env("TESTBAY_SERVER_LEASE_MS", "2000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    /// A user of the lab database; its token.
    fn user(&self, name: &str, role: &str) -> String {
        let out = self
            .command(&self.f.root.join("cli"))
            .args(["users", "add", name, "--role", role])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().last().unwrap().trim().to_string()
    }

    fn data(&self, server: &str) -> PathBuf {
        let d = self.f.root.join(format!("data-{server}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("settings.yaml"),
            "agent_heartbeat_ms: 200\nagent_grace_s: 10\nagent_cpu_threshold_pct: 100\ndispatch_cpu_threshold: 100\n",
        )
        .unwrap();
        d
    }

    /// `testbay serve` with the data dir `data-NAME`: it and its address.
    fn serve(&self, name: &str) -> (Proc, String) {
        let data = self.data(name);
        let log = std::fs::File::create(data.join("serve.log")).unwrap();
        let mut child = self
            .command(&data)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr =
            crate::support::address_in(&first).unwrap_or_else(|| panic!("no address in {first}"));
        // Keep reading its output so it never writes to a closed pipe.
        std::thread::spawn(move || for _ in lines {});
        (Proc(child), addr)
    }

    /// `testbay agent` for `rack` given `servers`, in order.
    fn agent(&self, rack: &str, servers: &[&str]) -> Proc {
        let token = self.user(&format!("{rack}-ctl"), "agent");
        let mut c = Command::new(env!("CARGO_BIN_EXE_testbay"));
        for s in servers {
            c.arg("--server").arg(format!("http://{s}"));
        }
        let log = std::fs::File::create(self.f.root.join(format!("agent-{rack}.log"))).unwrap();
        let child = c
            .args(["agent", "--token", &token, "--rack", rack, "--work-dir"])
            .arg(self.f.root.join(format!("work-{rack}")))
            .env("RUST_LOG", "info")
            .env_remove("TESTBAY_DATA_DIR")
            .env_remove("TESTBAY_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Proc(child)
    }

    fn call(&self, addr: &str, body: Value) -> Value {
        api(addr, &self.ops, &body)
    }

    /// The names of the agents connected to the server at `addr` and heard from.
    fn agents_on(&self, addr: &str) -> Vec<String> {
        let a = self.call(addr, json!({"cmd": "agents"}));
        let mut names: Vec<String> = a["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "ok")
            .filter_map(|a| a["name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// A run of `where` on stb-01 (rack-a) and stb-07 (rack-b) launched on `addr`,
    /// waited for: it completed, each lane's task passed.
    fn run_on_both_racks(&self, addr: &str) -> String {
        let r = wait_until(Duration::from_secs(60), || {
            let r = self.call(
                addr,
                json!({"cmd": "launch", "pack": "where", "duts": ["stb-01", "stb-07"]}),
            );
            r["data"]["run_id"].as_str().map(str::to_string)
        });
        let id = r.unwrap_or_else(|| panic!("no launch on {addr} took"));
        let run = wait_until(Duration::from_secs(60), || {
            let r = self.call(addr, json!({"cmd": "get_run", "run_id": id}))["data"].clone();
            match r["run"]["status"].as_str()? {
                "completed" => Some(r),
                "queued" | "running" | "stalled" => None,
                other => panic!("run {id} ended {other}: {r}"),
            }
        })
        .unwrap_or_else(|| panic!("run {id} did not complete"));
        let tasks = run["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), 2, "{run}");
        assert!(tasks.iter().all(|t| t["result"] == "Passed"), "{run}");
        id
    }

    /// The run `id`'s two lanes ran on their racks' agents, their logs and artifacts
    /// stored by the server whose data dir is `data-SERVER`.
    fn stored_by(&self, server: &str, id: &str) {
        let run_dir = self.f.root.join(format!("data-{server}/runs/{id}"));
        let logs = find(&run_dir, "main.log");
        assert_eq!(logs.len(), 2, "{logs:?}");
        for (dut, rack) in [("stb-01", "rack-a"), ("stb-07", "rack-b")] {
            let log = logs
                .iter()
                .find(|l| l.strip_prefix(&run_dir).unwrap().starts_with(dut))
                .unwrap_or_else(|| panic!("no log of lane {dut} in {logs:?}"));
            let log = std::fs::read_to_string(log).unwrap();
            let work = std::fs::canonicalize(self.f.root.join(format!("work-{rack}"))).unwrap();
            assert!(
                log.contains(&format!("cwd={}/snapshots/", work.display())),
                "{dut}: {log}"
            );
        }
        assert_eq!(find(&run_dir, "proof.txt").len(), 2);
    }
}

impl Drop for Lab {
    /// A failed test shows what the servers and agents logged.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for name in [
            "data-a/serve.log",
            "data-b/serve.log",
            "agent-rack-a.log",
            "agent-rack-b.log",
        ] {
            if let Ok(text) = std::fs::read_to_string(self.f.root.join(name)) {
                eprintln!("--- {name} ---\n{text}");
            }
        }
    }
}

#[test]
fn agents_given_both_servers_follow_the_books_owner_through_a_takeover() {
    let lab = Lab::new();
    // `a` is up first and owns the book.
    let (mut a, addr_a) = lab.serve("a");
    let (_b, addr_b) = lab.serve("b");
    // Each agent is given the server that does not own the book first.
    let _agent_a = lab.agent("rack-a", &[&addr_b, &addr_a]);
    let _agent_b = lab.agent("rack-b", &[&addr_b, &addr_a]);
    let both = vec!["rack-a-ctl".to_string(), "rack-b-ctl".to_string()];
    wait_until(Duration::from_secs(30), || {
        (lab.agents_on(&addr_a) == both).then_some(())
    })
    .expect("both agents are sent to the book's owner");
    assert!(lab.agents_on(&addr_b).is_empty());

    // Launched on the server that does not own the book: forwarded to the owner, run
    // on the agents, stored by the owner.
    let first = lab.run_on_both_racks(&addr_b);
    lab.stored_by("a", &first);

    // The owner dies: the survivor takes the book over, the agents follow it.
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(a.0.id() as i32, libc::SIGKILL) };
    let _ = a.0.wait();
    wait_until(Duration::from_secs(60), || {
        (lab.agents_on(&addr_b) == both).then_some(())
    })
    .expect("both agents reconnect to the server that took the book over");
    let second = lab.run_on_both_racks(&addr_b);
    lab.stored_by("b", &second);
    let again = lab.call(&addr_b, json!({"cmd": "get_run", "run_id": first}));
    assert_eq!(again["data"]["run"]["status"], "completed", "{again}");
}

#[test]
fn only_the_agent_takes_several_servers() {
    let f = Bed::new();
    let out = crate::support::bin()
        .args([
            "--server",
            "http://127.0.0.1:1",
            "--server",
            "http://127.0.0.1:2",
        ])
        .args(["--data-dir"])
        .arg(&f.data)
        .arg("results")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("--server is given 2 times: only `testbay agent` takes several"),
        "{err}"
    );
}
