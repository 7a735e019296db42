//! Reporter benchmark: messages per second one task pushes through its run's reporter
//! socket, and the time a task that reports 10 sections adds over one that reports none.
//!
//! `cargo bench -p testbay-engine --bench reporter` (env `REPORTER_BENCH_MESSAGES` changes
//! the number of messages, `REPORTER_BENCH_TASKS` the tasks timed). Prints figures;
//! asserts nothing. The client is in this process and speaks the real socket, as the SDK
//! does: "pipelined" writes every message before reading the replies (the rate bound,
//! `RATE_PER_SEC`, applies), "one by one" waits for each reply as `testbay.section` does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use testbay_engine::clock::{Clock, SystemClock};
use testbay_engine::exec::reporter::{PhaseHandle, PhaseInfo, Reporter};

fn env_or(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn info() -> PhaseInfo {
    PhaseInfo {
        task: "bench".into(),
        lane: "local".into(),
        item: 0,
        phase: testbay_engine::outcome::Phase::Main,
    }
}

struct Client {
    rd: BufReader<tokio::net::unix::OwnedReadHalf>,
    wr: tokio::net::unix::OwnedWriteHalf,
    line: String,
}

impl Client {
    async fn hello(r: &Reporter, h: &PhaseHandle) -> Client {
        let (rd, wr) = UnixStream::connect(r.path()).await.unwrap().into_split();
        let mut c = Client {
            rd: BufReader::new(rd),
            wr,
            line: String::new(),
        };
        c.call(&format!(
            "{{\"type\":\"hello\",\"token\":\"{}\"}}\n",
            h.token
        ))
        .await;
        c
    }

    async fn call(&mut self, msg: &str) {
        self.wr.write_all(msg.as_bytes()).await.unwrap();
        self.line.clear();
        self.rd.read_line(&mut self.line).await.unwrap();
        assert!(self.line.starts_with("{\"ok\":true"), "{}", self.line);
    }
}

async fn pipelined(r: &Reporter, dir: &std::path::Path, n: usize) -> f64 {
    let h = r.open_phase(info(), dir, None);
    let Client { mut rd, mut wr, .. } = Client::hello(r, &h).await;
    let t = Instant::now();
    let writer = tokio::spawn(async move {
        let mut buf = Vec::new();
        for i in 0..n {
            buf.extend_from_slice(
                format!(
                    "{{\"type\":\"extra\",\"key\":\"k{}\",\"value\":{i}}}\n",
                    i % 500
                )
                .as_bytes(),
            );
            if buf.len() > 64 * 1024 {
                wr.write_all(&buf).await.unwrap();
                buf.clear();
            }
        }
        wr.write_all(&buf).await.unwrap();
        wr
    });
    let mut line = String::new();
    for _ in 0..n {
        line.clear();
        rd.read_line(&mut line).await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = writer.await;
    h.finish("bench", 0);
    n as f64 / secs
}

async fn one_by_one(r: &Reporter, dir: &std::path::Path, n: usize) -> f64 {
    let h = r.open_phase(info(), dir, None);
    let mut c = Client::hello(r, &h).await;
    let t = Instant::now();
    for i in 0..n {
        c.call(&format!("{{\"type\":\"detail\",\"text\":\"line {i}\"}}\n"))
            .await;
    }
    let secs = t.elapsed().as_secs_f64();
    h.finish("bench", 0);
    n as f64 / secs
}

/// One task's reporter cost: register, (connect, hello, `sections` start/stop pairs with
/// a measurement each, one by one), finish.
async fn task(r: &Reporter, dir: &std::path::Path, sections: usize) -> Duration {
    let t = Instant::now();
    let h = r.open_phase(info(), dir, None);
    if sections > 0 {
        let mut c = Client::hello(r, &h).await;
        for i in 0..sections {
            c.call(&format!(
                "{{\"type\":\"section_start\",\"name\":\"s{i}\"}}\n"
            ))
            .await;
            c.call(&format!(
                "{{\"type\":\"measurement\",\"name\":\"m{i}\",\"value\":{i},\"high\":100}}\n"
            ))
            .await;
            c.call(&format!(
                "{{\"type\":\"section_stop\",\"name\":\"s{i}\"}}\n"
            ))
            .await;
        }
    }
    let report = h.finish("bench", SystemClock.now_ms());
    assert_eq!(report.sections.len(), sections);
    t.elapsed()
}

fn main() {
    let n = env_or("REPORTER_BENCH_MESSAGES", 200_000);
    let tasks = env_or("REPORTER_BENCH_TASKS", 500);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tmp = tempfile::tempdir().unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let r = Reporter::start(tmp.path(), "bench", clock, Arc::default()).unwrap();
        let dir = tmp.path();
        println!("reporter: one task, {n} messages");
        println!(
            "  pipelined   {:>10.0} messages/s (bounded at {} per connection)",
            pipelined(&r, dir, n).await,
            testbay_engine::exec::reporter::RATE_PER_SEC
        );
        println!(
            "  one by one  {:>10.0} messages/s ({} details, each reply awaited)",
            one_by_one(&r, dir, testbay_engine::reporter::MAX_DETAILS).await,
            testbay_engine::reporter::MAX_DETAILS
        );
        // Warm up, then time alternately.
        for _ in 0..20 {
            task(&r, dir, 0).await;
            task(&r, dir, 10).await;
        }
        let (mut none, mut ten) = (Vec::new(), Vec::new());
        for _ in 0..tasks {
            none.push(task(&r, dir, 0).await);
            ten.push(task(&r, dir, 10).await);
        }
        none.sort();
        ten.sort();
        let med = |v: &[Duration]| v[v.len() / 2].as_secs_f64() * 1000.0;
        let p95 = |v: &[Duration]| v[v.len() * 95 / 100].as_secs_f64() * 1000.0;
        println!(
            "reporter: per task ({tasks} tasks each; 10 sections = 31 messages, replies awaited)"
        );
        println!(
            "  no sections  median {:.3} ms  p95 {:.3} ms",
            med(&none),
            p95(&none)
        );
        println!(
            "  10 sections  median {:.3} ms  p95 {:.3} ms",
            med(&ten),
            p95(&ten)
        );
        println!(
            "  added        median {:.3} ms (target < 1 ms)",
            med(&ten) - med(&none)
        );
    });
}
