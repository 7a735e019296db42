//! The `custom_*` resource modes' ordering hook (kissats' registered scheduler): the pack's
//! `scheduler` program gets the test queue as JSON on stdin and prints the order it wants,
//! as a JSON list of queue ids.
//!
//! stdin: `{"resource_mode": "custom_all", "queue": [{"id": "smoke/boot", "group": "smoke",
//! "task": "boot", "priority": 5, "est_task_time": 120, "exclusive_resources": [...],
//! "shared_resources": [...], "prereq_tasks": [...]}, ...]}`; stdout: `["smoke/boot", ...]`,
//! every id exactly once.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::pack::{LoadedPack, ResourceMode};

/// One test of the queue, as the ordering program sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueEntry {
    /// `<group>/<task>`.
    pub id: String,
    pub group: String,
    pub task: String,
    pub priority: i32,
    pub est_task_time: f64,
    pub exclusive_resources: Vec<String>,
    pub shared_resources: Vec<String>,
    pub prereq_tasks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("resource mode is custom but pack {0} names no `scheduler` program")]
    NoScheduler(String),
    #[error("scheduler {program} could not start: {message}")]
    Spawn { program: String, message: String },
    #[error("scheduler {program} did not answer within {secs} s; it was killed")]
    Timeout { program: String, secs: u64 },
    #[error("scheduler {program} exited with {status}: {stderr}")]
    Failed {
        program: String,
        status: String,
        stderr: String,
    },
    #[error("scheduler {program} printed {problem}")]
    BadOrder { program: String, problem: String },
}

/// The queue of the given groups (every group when empty), in the pack's own order.
pub fn queue(pack: &LoadedPack, groups: &[String]) -> Vec<QueueEntry> {
    let names: Vec<&String> = if groups.is_empty() {
        pack.def.groups.keys().collect()
    } else {
        groups.iter().collect()
    };
    let mut out = Vec::new();
    for g in names {
        let Some(gd) = pack.def.groups.get(g) else {
            continue;
        };
        for t in &gd.tests {
            let def = pack.tasks.get(t).map(|lt| &lt.def);
            out.push(QueueEntry {
                id: format!("{g}/{t}"),
                group: g.clone(),
                task: t.clone(),
                priority: def.map_or(0, |d| d.priority),
                est_task_time: def.map_or(0.0, |d| d.est_task_time),
                exclusive_resources: def
                    .map(|d| d.exclusive_resources.clone())
                    .unwrap_or_default(),
                shared_resources: def.map(|d| d.shared_resources.clone()).unwrap_or_default(),
                prereq_tasks: def.map(|d| d.prereq_tasks.clone()).unwrap_or_default(),
            });
        }
    }
    out
}

/// Run the pack's scheduler on `queue` and return, per group, its tests in the order the
/// program chose. The program runs in the pack folder and is killed after `timeout`.
pub fn custom_order(
    pack: &LoadedPack,
    mode: ResourceMode,
    queue: &[QueueEntry],
    timeout: Duration,
) -> Result<HashMap<String, Vec<String>>, OrderError> {
    let argv = pack
        .def
        .scheduler
        .as_ref()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| OrderError::NoScheduler(pack.def.name.clone()))?;
    let program = argv.join(" ");
    let input = serde_json::json!({ "resource_mode": mode, "queue": queue }).to_string();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .current_dir(&pack.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| OrderError::Spawn {
            program: program.clone(),
            message: e.to_string(),
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.by_ref().take(1 << 20).read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.by_ref().take(64 << 10).read_to_end(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(OrderError::Timeout {
                    program,
                    secs: timeout.as_secs(),
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                return Err(OrderError::Spawn {
                    program,
                    message: e.to_string(),
                })
            }
        }
    };
    let _ = writer.join();
    let out = reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    if !status.success() {
        return Err(OrderError::Failed {
            program,
            status: status.to_string(),
            stderr: String::from_utf8_lossy(&err).trim().to_string(),
        });
    }
    let bad = |problem: String| OrderError::BadOrder {
        program: program.clone(),
        problem,
    };
    let ids: Vec<String> = serde_json::from_slice(&out).map_err(|e| {
        bad(format!(
            "something that is not a JSON list of queue ids ({e})"
        ))
    })?;
    let known: HashSet<&str> = queue.iter().map(|q| q.id.as_str()).collect();
    let mut seen = HashSet::new();
    for id in &ids {
        if !known.contains(id.as_str()) {
            let hint = crate::diag::did_you_mean(id, known.iter().copied())
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(bad(format!("unknown queue id `{id}`{hint}")));
        }
        if !seen.insert(id.as_str()) {
            return Err(bad(format!("queue id `{id}` twice")));
        }
    }
    if let Some(missing) = queue.iter().find(|q| !seen.contains(q.id.as_str())) {
        return Err(bad(format!(
            "an order without `{}`; every queue id must appear once",
            missing.id
        )));
    }
    let by_id: HashMap<&str, &QueueEntry> = queue.iter().map(|q| (q.id.as_str(), q)).collect();
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    for id in &ids {
        let q = by_id[id.as_str()];
        order
            .entry(q.group.clone())
            .or_default()
            .push(q.task.clone());
    }
    Ok(order)
}
