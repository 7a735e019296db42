//! Engine overhead benchmark (run by `bench/engine.sh`; prints figures, asserts nothing).
//!
//! - N trivial tasks (`true` as `run`) through the engine, sequentially and with
//!   `process_limit` 2 (`process_safe`), against N bare spawns of `/bin/true`;
//! - start-up time of `testbay run` on a pack with no tasks;
//! - peak RSS of `testbay run` on a 100-task pack.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use testbay_engine::clock::{Clock, SystemClock};
use testbay_engine::outcome::RunStatus;
use testbay_engine::run::{AlwaysGrant, LaunchRequest, RunManager};
use testbay_engine::store::{SqliteStore, Store};

fn write_pack(dir: &Path, n: usize, process_safe: bool, process_limit: u32) {
    std::fs::create_dir_all(dir.join("tasks")).unwrap();
    let mut tests = String::new();
    for i in 0..n {
        let name = format!("t{i:04}");
        tests.push_str(&format!("      - {name}\n"));
        std::fs::write(
            dir.join(format!("tasks/{name}.yaml")),
            format!("name: {name}\nrun: [\"true\"]\nprocess_safe: {process_safe}\nstop_suite_on_fail: false\nest_task_time: 0.01\n"),
        )
        .unwrap();
    }
    let groups = if n == 0 {
        String::new()
    } else {
        format!("groups:\n  all:\n    tests:\n{tests}")
    };
    std::fs::write(
        dir.join("pack.yaml"),
        format!("name: bench\nversion: '1'\nparams:\n  process_limit: {process_limit}\n{groups}"),
    )
    .unwrap();
}

fn bare_spawns(n: usize) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        let st = std::process::Command::new("/bin/true").status().unwrap();
        assert!(st.success());
    }
    t.elapsed()
}

fn engine_run(root: &Path, pack: &Path) -> Duration {
    let data = root.join(format!(
        "data-{}",
        pack.file_name().unwrap().to_string_lossy()
    ));
    let store = Arc::new(SqliteStore::open_in(&data).unwrap());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mgr = RunManager::new(store.clone(), &data, Arc::new(AlwaysGrant), clock);
        let t = Instant::now();
        let id = mgr
            .launch(LaunchRequest {
                pack_dir: pack.display().to_string(),
                ..Default::default()
            })
            .unwrap();
        let launched = t.elapsed();
        let st = mgr.wait(&id).await.unwrap();
        let took = t.elapsed();
        eprintln!(
            "  (launch: snapshot, load, plan, store: {:.1} ms)",
            ms(launched)
        );
        assert_eq!(st, RunStatus::Completed);
        let run = store.get_run(&id).unwrap();
        assert_eq!(run.counts.failures, 0, "bench tasks failed");
        took
    })
}

/// `exec::run_phase` alone (no plan, no store): the cost of one phase's machinery.
fn exec_only(root: &Path, n: usize) -> Duration {
    use testbay_engine::exec::{run_phase, ExecLimits, PhaseCommand, ProtocolEnv};
    use testbay_engine::outcome::Phase;
    let dir = root.join("exec-only");
    std::fs::create_dir_all(&dir).unwrap();
    let cmd = PhaseCommand {
        argv: vec!["true".into()],
        cwd: dir.clone(),
        env: ProtocolEnv {
            run_id: "bench".into(),
            task: "t".into(),
            phase: Phase::Main,
            params_file: dir.join("params.json"),
            result_file: dir.join("result.json"),
            artifacts_dir: dir.clone(),
            reporter: None,
        },
        log_file: dir.join("main.log"),
        max_runtime: None,
        limits: ExecLimits::default(),
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = Instant::now();
        for _ in 0..n {
            let o = run_phase(&cmd, &clock, None, None, |_| {}).await.unwrap();
            assert_eq!(o.result, "Passed");
        }
        t.elapsed()
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// CPU time (user + system) this process has used, all threads, children excluded.
fn self_cpu() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Wall time and this process's CPU time of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let c = self_cpu();
    let out = f();
    (out, self_cpu() - c)
}

fn children_maxrss_kib() -> i64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    ru.ru_maxrss
}

fn main() {
    let mut n = 500usize;
    let mut testbay: Option<PathBuf> = None;
    let mut profile_seq = false;
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--tasks" => n = args.next().unwrap().parse().unwrap(),
            "--testbay" => testbay = Some(args.next().unwrap().into()),
            "--profile-seq" => profile_seq = true,
            "--rounds" => rounds = args.next().unwrap().parse().unwrap(),
            _ => panic!(
                "usage: engine_bench [--tasks N] [--rounds R] [--testbay PATH] [--profile-seq]"
            ),
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let seq = root.join("seq");
    let par = root.join("par");
    write_pack(&seq, n, false, 1);
    write_pack(&par, n, true, 2);
    if profile_seq {
        // Only the sequential engine run, for a profiler to look at.
        let t = engine_run(root, &seq);
        println!("engine, sequential: {:.3} ms/task", ms(t) / n as f64);
        return;
    }

    // Warm up the page cache and the dynamic loader.
    bare_spawns(20);
    // Rounds of bare / sequential / bare / process_limit 2 / exec only: each variant is
    // compared with the bare spawns of its own round, and the figures are the median and
    // the best round, so a busy neighbour on the machine shows as spread, not as overhead.
    // A round's bare figure is the mean of its two bare loops, which run just before and
    // just after the sequential run: drift cancels. (Taking the faster of the two, as this
    // bench once did, compares one noisy sample with the best of two and so reports the
    // host's noise as overhead; that figure is printed too.)
    let per = |d: Duration| ms(d) / n as f64;
    let mut rows: Vec<[f64; 9]> = Vec::new();
    for r in 0..rounds {
        let (b1, cb1) = timed(|| bare_spawns(n));
        let (t_seq, c_seq) = timed(|| engine_run(&root.join(format!("round{r}")), &seq));
        let (b2, cb2) = timed(|| bare_spawns(n));
        let (t_par, c_par) = timed(|| engine_run(&root.join(format!("round{r}")), &par));
        let (t_exec, c_exec) = timed(|| exec_only(root, n));
        let bare = per((b1 + b2) / 2);
        let c_bare = per((cb1 + cb2) / 2);
        rows.push([
            bare,
            per(t_seq),
            per(t_par),
            per(t_exec),
            c_bare,
            per(c_seq),
            per(c_par),
            per(c_exec),
            per(b1.min(b2)),
        ]);
        eprintln!(
            "  round {}: bare {bare:.3}, sequential {:.3} ({:+.3}), process_limit 2 {:.3} ({:+.3}) ms/task",
            r + 1,
            per(t_seq),
            per(t_seq) - bare,
            per(t_par),
            per(t_par) - bare
        );
    }
    let col = |i: usize| rows.iter().map(|r| r[i]).collect::<Vec<f64>>();
    let diff = |i: usize, base: usize| rows.iter().map(|r| r[i] - r[base]).collect::<Vec<f64>>();
    let min = |v: Vec<f64>| v.into_iter().fold(f64::INFINITY, f64::min);
    println!("tasks: {n}, rounds: {rounds} (figures: median of the rounds, each against the mean of its two bare loops; in brackets, best of the variant minus best bare)");
    println!(
        "bare spawn of /bin/true:            {:.3} ms/task [{:.3}]",
        median(col(0)),
        min(col(0))
    );
    for (name, i) in [
        ("exec::run_phase alone:          ", 3),
        ("engine, sequential:             ", 1),
        ("engine, process_limit 2 (safe): ", 2),
    ] {
        println!(
            "{name}    {:.3} ms/task  overhead {:+.3} ms/task [{:+.3}]  ratio {:.2}x",
            median(col(i)),
            median(diff(i, 0)),
            min(col(i)) - min(col(0)),
            median(rows.iter().map(|r| r[i] / r[0]).collect())
        );
    }
    println!(
        "engine, sequential, against the faster bare loop of each round: overhead {:+.3} ms/task",
        median(diff(1, 8))
    );
    println!("CPU time of this process (children excluded) above the bare loop's, per task; steadier than wall time on a busy machine:");
    println!(
        "  exec::run_phase {:+.3} ms; engine sequential {:+.3} ms; engine process_limit 2 {:+.3} ms",
        median(diff(7, 4)),
        median(diff(5, 4)),
        median(diff(6, 4))
    );

    let Some(testbay) = testbay else { return };
    let empty = root.join("empty");
    write_pack(&empty, 0, false, 1);
    let data = root.join("cli-data");
    let run_cli = |pack: &Path| {
        let t = Instant::now();
        let st = std::process::Command::new(&testbay)
            .arg("--data-dir")
            .arg(&data)
            .arg("run")
            .arg(pack)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "testbay run {} failed", pack.display());
        t.elapsed()
    };
    run_cli(&empty); // creates the database
    let startup = median((0..15).map(|_| ms(run_cli(&empty))).collect());
    println!("testbay run, pack with no tasks:    {startup:.1} ms (median of 15, wall, process start to exit)");

    let hundred = root.join("hundred");
    write_pack(&hundred, 100, false, 1);
    let t100 = run_cli(&hundred);
    // Largest RSS of any waited-for child so far: the 100-task console is the biggest.
    let rss = children_maxrss_kib();
    println!(
        "testbay run, 100 tasks:             {:.0} ms wall; peak RSS {:.1} MiB (getrusage, largest child)",
        ms(t100),
        rss as f64 / 1024.0
    );
}
