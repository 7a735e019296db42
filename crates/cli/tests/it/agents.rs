//! Rack agents with real processes: a `testbay serve` lab console (users, the demo lab
//! with rack-a marked `agent: true`) and a `testbay agent` child for rack-a on loopback.
//! A run on rack-a without an agent could not start; with one its tasks run in the
//! agent's work directory, their logs, artifacts and results stored by the server; a
//! repeat run fetches no snapshot again; an agent SIGKILLed mid-task takes its phase with
//! it, its run goes `stalled`, then `interrupted` after the grace period with the task
//! Aborted.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{ends_soon, text, Bed};

/// `POST /api` with a user's token; the answer's JSON.
pub(crate) fn api(addr: &str, token: &str, body: &Value) -> Value {
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (_, json) = out.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Poll `f` every 50 ms for at most `limit`.
pub(crate) fn wait_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Killed (SIGKILL) and reaped when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) struct Lab {
    pub(crate) f: Bed,
    pub(crate) addr: String,
    ops: String,
    pub(crate) agent_token: String,
    /// rack-b's agent's.
    agent_b_token: String,
    pub(crate) work: PathBuf,
    packs: PathBuf,
    lab: PathBuf,
    serve: Proc,
}

/// `testbay serve` on `bind`, the lab file `lab` and packs `packs`: it and its address.
fn serve(f: &Bed, packs: &Path, lab: &Path, bind: &str) -> (Proc, String) {
    let mut serve = Command::new(env!("CARGO_BIN_EXE_testbay"))
        .args(["serve", "--bind", bind, "--packs"])
        .arg(packs)
        .arg("--lab")
        .arg(lab)
        .env("TESTBAY_DATA_DIR", &f.data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no address in {first}"));
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    // Keep reading its output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Proc(serve), addr)
}

fn token_of(out: &std::process::Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().last().unwrap().trim().to_string()
}

impl Lab {
    /// A lab server on the demo lab, rack-a served by an agent; heartbeat 200 ms, grace
    /// 30 s (a loaded machine never loses the agent of a test not about losing it); an
    /// operator and an agent user; packs `where`, `ask` and `slow`.
    fn start() -> Lab {
        Self::with_grace(30)
    }

    /// [`Lab::start`] with another grace period, in seconds.
    pub(crate) fn with_grace(grace_s: u32) -> Lab {
        Self::build(grace_s, &["Set-top box rack, bench 1"], "")
    }

    /// A lab server whose racks described `described` are served by agents (rack-a's
    /// by the user `agent-a`, rack-b's by `agent-b`), `settings` added to its
    /// `settings.yaml`. Unless `settings` says otherwise, no agent is passed over for its
    /// CPU (the test machine may well be busy).
    fn build(grace_s: u32, described: &[&str], settings: &str) -> Lab {
        let settings = if settings.contains("agent_cpu_threshold_pct") {
            settings.to_string()
        } else {
            format!("agent_cpu_threshold_pct: 100\n{settings}")
        };
        let f = Bed::new();
        std::fs::create_dir_all(&f.data).unwrap();
        let demo = std::fs::read_to_string(crate::support::demo_lab()).unwrap();
        let mut marked = demo.clone();
        for d in described {
            let entry = format!("    description: {d}\n    slots: 8\n");
            assert!(
                marked.contains(&entry),
                "the demo lab's entry for the rack `{d}` changed; adapt this test"
            );
            marked = marked.replacen(&entry, &format!("{entry}    agent: true\n"), 1);
        }
        let lab = f.root.join("lab.yaml");
        std::fs::write(&lab, marked).unwrap();
        std::fs::write(
            f.data.join("settings.yaml"),
            format!("agent_heartbeat_ms: 200\nagent_grace_s: {grace_s}\n{settings}"),
        )
        .unwrap();
        let packs = f.root.join("packs");
        std::fs::create_dir_all(&packs).unwrap();
        let pid_file = f.root.join("slow.pid");
        write_pack(
            &packs.join("where"),
            "where",
            "echo \"cwd=$PWD\"\necho \"params=$TESTBAY_PARAMS\"\necho \"pid=$$\"\necho proof > \"$TESTBAY_ARTIFACTS/proof.txt\"\n",
        );
        write_pack(
            &packs.join("slow"),
            "slow",
            &format!(
                "testbay report section-start warm-up\necho $$ > {}\nexec sleep 60\n",
                pid_file.display()
            ),
        );
        // It asks the operator three times.
        write_pack(
            &packs.join("ask"),
            "ask",
            "a=$(testbay report prompt 'Plug in HDMI' --choice done --choice fail --timeout 60)\n\
         echo \"first=$a\"\n\
         testbay report prompt 'Serial number?' --pattern 'SN[0-9]+' --timeout 0.3\n\
         echo \"second=$?\"\n\
         c=$(testbay report prompt 'All set?' --choice yes --timeout 60)\n\
         echo \"third=$c\"\n\
         [ \"$a\" = done ] && [ \"$c\" = yes ]\n",
        );
        // A second test after the slow one.
        std::fs::write(
            packs.join("slow/pack.yaml"),
            "name: slow\nversion: '1'\ngroups:\n  g:\n    tests: [probe, after]\n",
        )
        .unwrap();
        std::fs::write(
            packs.join("slow/tasks/after.yaml"),
            "name: after\nrun: [bash, after.sh]\n",
        )
        .unwrap();
        std::fs::write(packs.join("slow/tasks/after.sh"), "echo after\n").unwrap();
        std::fs::write(
            packs.join("slow/tasks/probe.yaml"),
            "name: probe\nrun: [bash, probe.sh]\nstop_suite_on_fail: false\n",
        )
        .unwrap();
        crate::agent_cuts::write_packs(&f.root, &packs);
        let ops = token_of(&f.testbay(&["users", "add", "ops", "--role", "operator"]));
        let agent_token = token_of(&f.testbay(&["users", "add", "agent-a", "--role", "agent"]));
        let agent_b_token = token_of(&f.testbay(&["users", "add", "agent-b", "--role", "agent"]));
        let (serve, addr) = serve(&f, &packs, &lab, "127.0.0.1:0");
        Lab {
            work: f.root.join("agent-work"),
            f,
            addr,
            ops,
            agent_token,
            agent_b_token,
            packs,
            lab,
            serve,
        }
    }

    /// Kill the server (SIGKILL), do `meanwhile`, and start it again on the same data
    /// dir and address.
    pub(crate) fn restart_server(&mut self, meanwhile: impl FnOnce()) {
        self.serve.0.kill().unwrap();
        self.serve.0.wait().unwrap();
        meanwhile();
        let (serve, addr) = serve(&self.f, &self.packs, &self.lab, &self.addr);
        assert_eq!(addr, self.addr);
        self.serve = serve;
    }

    /// Send `signal` (`STOP`, `CONT`) to the server process.
    pub(crate) fn signal_server(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.serve.0.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal}");
    }

    pub(crate) fn agent(&self) -> Proc {
        self.agent_on("rack-a", &self.agent_token, &self.work, &[])
    }

    /// `testbay agent` for `rack` with `token`, working in `work`, with `env` set.
    fn agent_on(&self, rack: &str, token: &str, work: &Path, env: &[(&str, &str)]) -> Proc {
        let child = Command::new(env!("CARGO_BIN_EXE_testbay"))
            .args(["agent", "--server"])
            .arg(format!("http://{}", self.addr))
            .args(["--token", token, "--rack", rack, "--work-dir"])
            .arg(work)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .env_remove("TESTBAY_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Proc(child)
    }

    fn call(&self, body: Value) -> Value {
        api(&self.addr, &self.ops, &body)
    }

    /// `testbay --server URL --token OPS ARGS`.
    fn testbay(&self, args: &[&str]) -> std::process::Output {
        crate::support::bin()
            .arg("--server")
            .arg(format!("http://{}", self.addr))
            .args(["--token", &self.ops])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    pub(crate) fn agents(&self) -> Value {
        self.call(json!({"cmd": "agents"}))["data"].clone()
    }

    pub(crate) fn launch(&self, pack: &str) -> String {
        let r = self.call(json!({"cmd": "launch", "pack": pack, "duts": ["stb-01"]}));
        r["data"]["run_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"))
            .to_string()
    }

    /// A launch that could not start: the stored run, whose reason says why.
    fn launch_refused(&self, pack: &str) -> Value {
        let r = self.call(json!({"cmd": "launch", "pack": pack, "duts": ["stb-01"]}));
        let message = r["error"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("{r}"));
        let id = message
            .strip_prefix("run ")
            .and_then(|m| m.split_whitespace().next())
            .unwrap_or_else(|| panic!("{r}"));
        self.wait_status(id, &["could_not_start"], Duration::from_secs(10))
    }

    pub(crate) fn run(&self, id: &str) -> Value {
        self.call(json!({"cmd": "get_run", "run_id": id}))["data"].clone()
    }

    pub(crate) fn wait_status(&self, id: &str, want: &[&str], limit: Duration) -> Value {
        wait_until(limit, || {
            let r = self.run(id);
            want.contains(&r["run"]["status"].as_str()?).then_some(r)
        })
        .unwrap_or_else(|| panic!("run {id} not {want:?} in {limit:?}: {}", self.run(id)))
    }
}

pub(crate) fn write_pack(dir: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(dir.join("tasks")).unwrap();
    std::fs::write(
        dir.join("pack.yaml"),
        format!("name: {name}\nversion: '1'\ngroups:\n  g:\n    tests: [probe]\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("tasks/probe.yaml"),
        "name: probe\nrun: [bash, probe.sh]\n",
    )
    .unwrap();
    std::fs::write(dir.join("tasks/probe.sh"), body).unwrap();
}

/// Every file named `name` below `dir`.
pub(crate) fn find(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_rack_agent_runs_its_racks_tasks_and_the_server_stores_them() {
    let lab = Lab::start();

    // No agent for rack-a yet: the run could not start, and says why.
    let r = lab.launch_refused("where");
    assert_eq!(r["run"]["reason"], "no agent for rack-a", "{r}");

    // The agent user may do nothing but an agent's requests.
    let refused = api(&lab.addr, &lab.agent_token, &json!({"cmd": "list_runs"}));
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");

    let _agent = lab.agent();
    let seen = wait_until(Duration::from_secs(20), || {
        let a = lab.agents();
        (a[0]["state"] == "ok").then_some(a)
    })
    .expect("the agent connects");
    assert_eq!(seen[0]["name"], "agent-a");
    assert_eq!(seen[0]["racks"], json!(["rack-a"]));

    let id = lab.launch("where");
    let r = lab.wait_status(&id, &["completed"], Duration::from_secs(30));
    let tasks = r["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{r}");
    assert_eq!(tasks[0]["result"], "Passed", "{r}");
    // It ran on the agent: in the agent's work directory, its log stored by the server.
    let run_dir = lab.f.data.join("runs").join(&id);
    let logs = find(&run_dir, "main.log");
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    let work = std::fs::canonicalize(&lab.work).unwrap();
    assert!(
        log.contains(&format!("cwd={}/snapshots/", work.display())),
        "{log}"
    );
    assert!(
        log.contains(&format!("params={}/runs/{id}/", work.display())),
        "{log}"
    );
    let artifacts = find(&run_dir, "proof.txt");
    assert_eq!(artifacts.len(), 1, "the artifact is stored by the server");
    assert_eq!(std::fs::read_to_string(&artifacts[0]).unwrap(), "proof\n");
    assert_eq!(lab.agents()[0]["snapshot_fetches"], 1);

    // A repeat run of the same pack uses the agent's copy: no second fetch.
    let again = lab.launch("where");
    lab.wait_status(&again, &["completed"], Duration::from_secs(30));
    assert_eq!(lab.agents()[0]["snapshot_fetches"], 1);
    assert_eq!(
        std::fs::read_dir(lab.work.join("snapshots"))
            .unwrap()
            .count(),
        1
    );

    // `testbay agents` lists it; drained (from the command line), it takes no new run.
    let listed = lab.testbay(&["agents", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["name"], "agent-a");
    assert!(listed[0]["last_heartbeat_ms"].as_i64().unwrap() > 0);
    let out = lab.testbay(&["agents", "drain", "agent-a"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("draining"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(lab.agents()[0]["draining"], true);
    let r = lab.launch_refused("where");
    assert!(
        r["run"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("no agent for rack-a"),
        "{r}"
    );
    let d = lab.call(json!({"cmd": "drain_agent", "name": "agent-a", "drain": false}));
    assert_eq!(d["data"]["draining"], false, "{d}");
}

#[test]
fn an_agent_killed_mid_task_stalls_then_interrupts_its_run() {
    let lab = Lab::with_grace(5);
    let mut agent = lab.agent();
    wait_until(Duration::from_secs(20), || {
        (lab.agents()[0]["state"] == "ok").then_some(())
    })
    .expect("the agent connects");
    let id = lab.launch("slow");
    let pid_file = lab.f.root.join("slow.pid");
    let pid: i32 = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    })
    .expect("the task starts on the agent");
    let running = lab.agents()[0]["running"].clone();
    assert_eq!(running[0]["run_id"], id.as_str(), "{running}");
    // The section it opened on the agent is in the run's live state (as Live shows it).
    let live = wait_until(Duration::from_secs(10), || {
        let live = lab.call(json!({"cmd": "task_sections", "run_id": id, "item": 0}));
        (live["data"][0]["section"]["name"] == "warm-up").then_some(live)
    });
    assert!(live.is_some(), "the agent relays the section it opened");

    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    let r = lab.wait_status(&id, &["stalled"], Duration::from_secs(5));
    assert!(
        r["run"]["reason"].as_str().unwrap().contains("agent-a"),
        "{r}"
    );
    assert!(ends_soon(pid), "the phase dies with its agent (pdeathsig)");
    let r = lab.wait_status(&id, &["interrupted"], Duration::from_secs(20));
    assert!(
        r["run"]["reason"].as_str().unwrap().contains("agent-a"),
        "{r}"
    );
    assert_eq!(r["tasks"][0]["result"], "Aborted", "{r}");
    assert_eq!(lab.agents()[0]["state"], "lost");
    // Its DUT is free again: nothing of the run is left in the book.
    let res = lab.call(json!({"cmd": "reservations"}));
    assert!(!res.to_string().contains(&id), "{res}");
}

#[test]
fn an_agent_back_within_the_grace_period_carries_on_with_the_run() {
    let lab = Lab::with_grace(30);
    let mut agent = lab.agent();
    wait_until(Duration::from_secs(20), || {
        (lab.agents()[0]["state"] == "ok").then_some(())
    })
    .expect("the agent connects");
    let id = lab.launch("slow");
    let pid_file = lab.f.root.join("slow.pid");
    let pid: i32 = wait_until(Duration::from_secs(30), || {
        std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
    })
    .expect("the task starts on the agent");
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
    assert!(ends_soon(pid), "the phase dies with its agent (pdeathsig)");
    lab.wait_status(&id, &["stalled"], Duration::from_secs(5));

    // Back well within the grace period: the run goes on, the lost phase Aborted.
    let _agent = lab.agent();
    let r = lab.wait_status(&id, &["completed"], Duration::from_secs(30));
    let results: Vec<(&str, &str)> = r["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["task"].as_str().unwrap(), t["result"].as_str().unwrap()))
        .collect();
    assert_eq!(results, [("probe", "Aborted"), ("after", "Passed")], "{r}");
    assert_eq!(lab.agents()[0]["state"], "ok");
}

#[test]
fn a_run_on_duts_of_two_racks_sends_each_lane_to_its_racks_agent() {
    let lab = Lab::build(
        10,
        &["Set-top box rack, bench 1", "Mixed rack, bench 2"],
        "",
    );
    let (work_a, work_b) = (lab.f.root.join("work-a"), lab.f.root.join("work-b"));
    let _a = lab.agent_on("rack-a", &lab.agent_token, &work_a, &[]);
    // rack-b has no agent yet: a run with a lane there could not start.
    wait_until(Duration::from_secs(20), || {
        (lab.agents().as_array()?.len() == 1 && lab.agents()[0]["state"] == "ok").then_some(())
    })
    .expect("rack-a's agent connects");
    let r = lab.call(json!({"cmd": "launch", "pack": "where", "duts": ["stb-01", "stb-07"]}));
    let message = r["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    assert!(message.contains("no agent for rack-b"), "{r}");
    // No run is left bound to rack-a's agent by the refused launch.
    assert_eq!(lab.agents()[0]["runs"], json!([]));

    let _b = lab.agent_on("rack-b", &lab.agent_b_token, &work_b, &[]);
    wait_until(Duration::from_secs(20), || {
        let a = lab.agents();
        let ok = a.as_array()?.iter().filter(|a| a["state"] == "ok").count();
        (ok == 2).then_some(())
    })
    .expect("rack-b's agent connects");
    let r = lab.call(json!({"cmd": "launch", "pack": "where", "duts": ["stb-01", "stb-07"]}));
    let id = r["data"]["run_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    let r = lab.wait_status(id, &["completed"], Duration::from_secs(30));
    let tasks = r["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{r}");
    assert!(tasks.iter().all(|t| t["result"] == "Passed"), "{r}");
    // Each lane's task ran on its rack's agent: in that agent's work directory, its log
    // and artifact stored by the server.
    let run_dir = lab.f.data.join("runs").join(id);
    let logs = find(&run_dir, "main.log");
    assert_eq!(logs.len(), 2, "{logs:?}");
    for (dut, work) in [("stb-01", &work_a), ("stb-07", &work_b)] {
        let log = logs
            .iter()
            .find(|l| l.strip_prefix(&run_dir).unwrap().starts_with(dut))
            .unwrap_or_else(|| panic!("no log of lane {dut} in {logs:?}"));
        let log = std::fs::read_to_string(log).unwrap();
        let work = std::fs::canonicalize(work).unwrap();
        assert!(
            log.contains(&format!("cwd={}/snapshots/", work.display())),
            "{dut}: {log}"
        );
        assert!(
            log.contains(&format!("params={}/runs/{id}/", work.display())),
            "{dut}: {log}"
        );
    }
    assert_eq!(find(&run_dir, "proof.txt").len(), 2);
    for a in lab.agents().as_array().unwrap() {
        assert_eq!(a["snapshot_fetches"], 1, "{a}");
        assert_eq!(a["runs"], json!([]), "{a}");
    }
}

#[test]
fn a_run_waits_in_the_queue_while_its_racks_agent_is_above_its_cpu_threshold() {
    let lab = Lab::build(
        10,
        &["Set-top box rack, bench 1"],
        // The host's own dispatch threshold is not what this test is about.
        "agent_cpu_threshold_pct: 90\ndispatch_cpu_threshold: 100\n",
    );
    // The agent reports the figure in this file as its CPU use (its test seam).
    let cpu = lab.f.root.join("cpu");
    std::fs::write(&cpu, "97\n").unwrap();
    let cpu_env = cpu.to_str().unwrap();
    let _agent = lab.agent_on(
        "rack-a",
        &lab.agent_token,
        &lab.work,
        &[("TESTBAY_AGENT_CPU_FILE", cpu_env)],
    );
    wait_until(Duration::from_secs(20), || {
        let a = lab.agents();
        a[0]["passed_over_until_ms"].as_i64().map(|_| ())
    })
    .expect("the agent reports 97% and is passed over");

    // The launch does not fail: it waits in the queue, which says why.
    let r = lab.call(json!({"cmd": "launch", "pack": "where", "duts": ["stb-01"]}));
    assert_eq!(r["data"]["queued"], true, "{r}");
    let id = r["data"]["run_id"].as_str().unwrap().to_string();
    let q = lab.call(json!({"cmd": "queue"}));
    let why = q["data"]["runs"][0]["waits_for"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("agent agent-a busy: CPU 97% > 90%, passed over until "),
        "{q}"
    );

    // Back under the threshold: the run starts at its next heartbeat and completes.
    std::fs::write(&cpu, "12\n").unwrap();
    let r = lab.wait_status(&id, &["completed"], Duration::from_secs(20));
    assert_eq!(r["tasks"][0]["result"], "Passed", "{r}");
    assert_eq!(lab.agents()[0]["passed_over_until_ms"], Value::Null);
}

/// A task on the agent asks the operator: each prompt is raised on the server (listed,
/// the run's live view says the task waits for it), a wrong answer is refused there, the
/// right one reaches the task on the agent, a prompt that times out on the agent leaves
/// the server's list, and the result records every answer and who gave it.
#[test]
fn a_prompt_of_a_task_on_an_agent_is_answered_through_the_server() {
    let lab = Lab::start();
    let _agent = lab.agent();
    wait_until(Duration::from_secs(20), || {
        (lab.agents()[0]["state"] == "ok").then_some(())
    })
    .expect("the agent connects");
    let id = lab.launch("ask");
    let waiting = |message: &str| {
        wait_until(Duration::from_secs(30), || {
            let list = lab.call(json!({"cmd": "list_prompts"}))["data"].clone();
            let list = list.as_array()?.clone();
            list.iter().any(|p| p["message"] == message).then_some(list)
        })
        .unwrap_or_else(|| panic!("no prompt `{message}`: {}", lab.run(&id)))
    };
    let list = waiting("Plug in HDMI");
    assert_eq!(list.len(), 1, "{list:?}");
    let p = &list[0];
    assert_eq!(p["run_id"], id.as_str());
    assert_eq!(p["task"], "probe");
    assert_eq!(p["choices"], json!(["done", "fail"]));
    let view = lab.call(json!({"cmd": "run_view", "run_id": id}))["data"].clone();
    assert!(
        view.to_string()
            .contains("waiting for the operator: Plug in HDMI"),
        "{view}"
    );
    let refused = lab.call(json!({"cmd": "answer_prompt", "id": p["id"], "answer": "maybe"}));
    assert!(
        refused["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("not one of the choices: done, fail")),
        "{refused}"
    );
    let ok = lab.call(json!({"cmd": "answer_prompt", "id": p["id"], "answer": "done"}));
    assert!(ok["error"].is_null(), "{ok}");

    // The second prompt times out on the agent: only the third is left waiting.
    let list = waiting("All set?");
    assert_eq!(list.len(), 1, "{list:?}");
    let ok = lab.call(json!({"cmd": "answer_prompt", "id": list[0]["id"], "answer": "yes"}));
    assert!(ok["error"].is_null(), "{ok}");

    let r = lab.wait_status(&id, &["completed"], Duration::from_secs(30));
    let task = &r["tasks"][0];
    assert_eq!(task["result"], "Passed", "{r}");
    let prompts = &task["metadata"]["prompts"];
    assert_eq!(prompts[0]["message"], "Plug in HDMI", "{r}");
    assert_eq!(prompts[0]["answer"]["text"], "done", "{r}");
    assert_eq!(prompts[0]["answer"]["by"], "ops", "{r}");
    assert_eq!(prompts[1]["answer"]["timed_out"], true, "{r}");
    assert_eq!(prompts[2]["answer"]["text"], "yes", "{r}");
    let log =
        std::fs::read_to_string(&find(&lab.f.data.join("runs").join(&id), "main.log")[0]).unwrap();
    assert!(log.contains("first=done"), "{log}");
    assert!(log.contains("second=3"), "{log}");
    assert!(log.contains("third=yes"), "{log}");
    assert_eq!(lab.call(json!({"cmd": "list_prompts"}))["data"], json!([]));
}
