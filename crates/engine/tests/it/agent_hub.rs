//! The rack agents' hub on a manual clock, its agent played by the test: silent for one
//! and a half heartbeats its runs stall, silent past the grace period they are lost (the
//! phase Aborted); an agent back within the grace goes on from the last message the hub
//! took, each numbered message taken once; an outcome after the loss is refused, nothing
//! of it stored; an operator's answer given during a cut reaches the agent when it is back.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Map;
use testbay_engine::agents::wire::{AgentMsg, ServerMsg};
use testbay_engine::agents::{AgentConfig, AgentHub, AgentSession, Resume};
use testbay_engine::clock::ManualClock;
use testbay_engine::exec::prompts::{PromptView, Prompts};
use testbay_engine::exec::{Exit, LogStats, PhaseOutcome, Verdict};
use testbay_engine::outcome::Phase;
use testbay_engine::run::runner::PhaseCall;
use testbay_engine::run::{AgentDirectory, PhaseJob, PhaseRunner, RunnerHealth};
use tokio::task::JoinHandle;

type Outcome = Result<PhaseOutcome, testbay_engine::exec::ExecError>;

fn hub(clock: &ManualClock) -> AgentHub {
    AgentHub::new(
        HashSet::from(["rack-a".to_string()]),
        AgentConfig {
            heartbeat: Duration::from_secs(1),
            grace: Duration::from_secs(10),
            ..AgentConfig::default()
        },
        Arc::new(clock.clone()),
    )
}

fn connect(hub: &AgentHub, boot: &str, running: Vec<u64>) -> AgentSession {
    hub.connect_resuming(
        "agent-a",
        vec!["rack-a".into()],
        "host".into(),
        "1".into(),
        Resume {
            boot: boot.into(),
            running,
        },
    )
    .unwrap()
}

fn job(run_id: &str) -> PhaseJob {
    PhaseJob {
        run_id: run_id.into(),
        item: 0,
        task: "probe".into(),
        lane: "stb-01".into(),
        phase: Phase::Main,
        snapshot_hash: "h1".into(),
        task_dir: "tasks".into(),
        argv: vec!["true".into()],
        dir: "probe".into(),
        log_file: "main.log".into(),
        result_file: "result.json".into(),
        params: None,
        max_runtime_ms: None,
        kill_grace_ms: 1000,
    }
}

/// A phase of run `run_id` sent to the agent: its runner, its future's task, the run's
/// folder and the phase's number.
struct Started {
    runner: Arc<dyn PhaseRunner>,
    outcome: JoinHandle<Outcome>,
    dir: PathBuf,
    job: u64,
}

async fn start(hub: &AgentHub, session: &mut AgentSession, root: &Path, run_id: &str) -> Started {
    start_asking(hub, session, root, run_id, None).await
}

/// [`start`], the phase's prompts raised in `prompts`.
async fn start_asking(
    hub: &AgentHub,
    session: &mut AgentSession,
    root: &Path,
    run_id: &str,
    prompts: Option<Arc<Prompts>>,
) -> Started {
    let run_dir = root.join(run_id);
    let snapshot = run_dir.join("snapshot");
    std::fs::create_dir_all(&snapshot).unwrap();
    let runner = hub
        .runner_for("rack-a", run_id, "h1", &snapshot)
        .unwrap()
        .expect("rack-a runs on its agent");
    let r = runner.clone();
    let phase = job(run_id);
    let outcome = tokio::spawn(async move {
        r.run_phase(PhaseCall {
            job: phase,
            reporter: None,
            live: None,
            report: None,
            prompts: prompts.as_ref(),
            stop: None,
            on_spawn: Box::new(|_| {}),
        })
        .await
    });
    let job = next_start(session).await;
    Started {
        runner,
        outcome,
        dir: run_dir.join("probe"),
        job,
    }
}

/// The number of the next phase the hub sends `session`.
async fn next_start(session: &mut AgentSession) -> u64 {
    loop {
        match session
            .outbox
            .recv()
            .await
            .expect("the hub sends the phase")
        {
            ServerMsg::Start { job, .. } => return job,
            _ => continue,
        }
    }
}

fn health(s: &Started) -> RunnerHealth {
    s.runner.health().unwrap().borrow().clone()
}

fn file(job: u64, path: &str, data: &str, append: bool) -> AgentMsg {
    AgentMsg::File {
        job,
        path: path.into(),
        data: base64::engine::general_purpose::STANDARD.encode(data),
        append,
    }
}

fn passed(job: u64) -> AgentMsg {
    AgentMsg::Done {
        job,
        outcome: Ok(Box::new(PhaseOutcome {
            phase: Phase::Main,
            result: "Passed".into(),
            message: String::new(),
            metadata: Map::new(),
            multi_result: Vec::new(),
            raw_result: None,
            measurements: Vec::new(),
            report: None,
            verdict: Verdict::Engine,
            exit: Exit::Code(0),
            pid: Some(1),
            started_ms: 0,
            finished_ms: 0,
            log: LogStats::default(),
        })),
    }
}

fn seq(seq: u64, msg: AgentMsg) -> AgentMsg {
    AgentMsg::Seq {
        seq,
        msg: Box::new(msg),
    }
}

fn sent(session: &mut AgentSession) -> Vec<ServerMsg> {
    std::iter::from_fn(|| session.outbox.try_recv().ok()).collect()
}

#[tokio::test]
async fn a_silent_agent_stalls_its_run_then_is_lost_and_its_late_outcome_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let hub = hub(&clock);
    let mut session = connect(&hub, "b1", vec![]);
    let s = start(&hub, &mut session, tmp.path(), "run-1").await;

    clock.advance(1_400);
    hub.check();
    assert_eq!(health(&s), RunnerHealth::Healthy);
    clock.advance(200);
    hub.check();
    assert!(
        matches!(health(&s), RunnerHealth::Stalled(_)),
        "{:?}",
        health(&s)
    );

    // Heard again: healthy; then silent past the grace period: lost, the phase Aborted.
    session.receive(AgentMsg::Heartbeat { cpu: None });
    assert_eq!(health(&s), RunnerHealth::Healthy);
    clock.advance(9_000);
    hub.check();
    assert!(matches!(health(&s), RunnerHealth::Stalled(_)));
    clock.advance(1_001);
    hub.check();
    assert!(
        matches!(health(&s), RunnerHealth::Lost(_)),
        "{:?}",
        health(&s)
    );
    let outcome = s.outcome.await.unwrap().unwrap();
    assert_eq!(outcome.result, "Aborted");

    // The agent comes back with the phase done: the hub stops it and refuses its
    // messages, storing none of them.
    drop(session);
    let mut again = connect(&hub, "b1", vec![s.job]);
    assert!(
        sent(&mut again)
            .iter()
            .any(|m| matches!(m, ServerMsg::Stop { job } if *job == s.job)),
        "the hub stops a phase it no longer runs"
    );
    again.receive(seq(
        1,
        file(s.job, "result.json", "{\"result\": \"Passed\"}", false),
    ));
    again.receive(seq(2, passed(s.job)));
    assert!(
        !s.dir.join("result.json").exists(),
        "a late result is not stored"
    );
    let log = std::fs::read_to_string(s.dir.join("main.log")).unwrap();
    assert!(log.contains("not heard from"), "{log}");
}

#[tokio::test]
async fn an_agent_back_within_the_grace_goes_on_and_each_message_is_taken_once() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let hub = hub(&clock);
    let mut session = connect(&hub, "b1", vec![]);
    assert!(matches!(
        session.welcome(),
        ServerMsg::Welcome { acked: 0, .. }
    ));
    let s = start(&hub, &mut session, tmp.path(), "run-1").await;

    session.receive(seq(1, file(s.job, "main.log", "a\n", false)));
    session.receive(seq(2, file(s.job, "main.log", "b\n", true)));
    // Acknowledged in a batch, with the next heartbeat.
    assert!(sent(&mut session).is_empty());
    session.receive(AgentMsg::Heartbeat { cpu: None });
    assert!(matches!(
        sent(&mut session)[..],
        [ServerMsg::Ack { seq: 2 }]
    ));
    session.receive(seq(3, file(s.job, "main.log", "c\n", true)));

    // The connection drops before 3 is acknowledged: the run waits.
    drop(session);
    assert!(matches!(health(&s), RunnerHealth::Stalled(_)));
    clock.advance(5_000);
    hub.check();
    assert!(matches!(health(&s), RunnerHealth::Stalled(_)));

    // Back in time: the welcome names the last message taken, the agent sends again
    // from the last one it had acknowledged; the repeats are dropped.
    let mut again = connect(&hub, "b1", vec![s.job]);
    assert!(matches!(
        again.welcome(),
        ServerMsg::Welcome { acked: 3, .. }
    ));
    assert_eq!(health(&s), RunnerHealth::Healthy);
    again.receive(seq(3, file(s.job, "main.log", "c\n", true)));
    again.receive(seq(4, file(s.job, "main.log", "d\n", true)));
    again.receive(seq(5, passed(s.job)));
    again.receive(seq(5, passed(s.job)));
    let outcome = s.outcome.await.unwrap().unwrap();
    assert_eq!(outcome.result, "Passed");
    assert_eq!(
        std::fs::read_to_string(s.dir.join("main.log")).unwrap(),
        "a\nb\nc\nd\n"
    );
    // The outcome is acknowledged at once.
    assert!(matches!(sent(&mut again)[..], [ServerMsg::Ack { seq: 5 }]));
}

#[tokio::test]
async fn a_new_life_of_the_agent_has_none_of_the_old_ones_phases() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let hub = hub(&clock);
    let mut session = connect(&hub, "b1", vec![]);
    let s = start(&hub, &mut session, tmp.path(), "run-1").await;
    session.receive(seq(1, file(s.job, "main.log", "a\n", false)));
    drop(session);
    // Restarted (another boot): its numbers start again, the old phase is lost.
    let again = connect(&hub, "b2", vec![]);
    assert!(matches!(
        again.welcome(),
        ServerMsg::Welcome { acked: 0, .. }
    ));
    let outcome = s.outcome.await.unwrap().unwrap();
    assert_eq!(outcome.result, "Aborted");
}

/// An operator's answer given while the agent's connection is cut is kept and sent when
/// the agent comes back, again on each return until the agent says the phase took it.
#[tokio::test]
async fn an_answer_given_during_a_cut_reaches_the_agent_when_it_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let hub = hub(&clock);
    let prompts = Arc::new(Prompts::default());
    let mut session = connect(&hub, "b1", vec![]);
    let s = start_asking(
        &hub,
        &mut session,
        tmp.path(),
        "run-1",
        Some(prompts.clone()),
    )
    .await;
    let view = PromptView {
        id: 7,
        run_id: "run-1".into(),
        task: "probe".into(),
        lane: "stb-01".into(),
        item: 0,
        phase: Phase::Main,
        message: "Plug the cable".into(),
        choices: vec!["done".into()],
        pattern: None,
        timeout_s: 60.0,
        asked_ms: 1_000_000,
    };
    session.receive(seq(
        1,
        AgentMsg::Prompt {
            job: s.job,
            prompt: Box::new(view),
        },
    ));
    let raised = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(p) = prompts.list().into_iter().next() {
                return p;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the prompt is raised on the server");

    // The connection drops; the operator answers meanwhile.
    drop(session);
    prompts
        .answer(raised.id, "done".into(), Some("alice".into()))
        .unwrap();
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let is_answer = |m: &ServerMsg| {
        matches!(m, ServerMsg::Answer { job, prompt: 7, text, by }
            if *job == s.job && text == "done" && by.as_deref() == Some("alice"))
    };
    let mut again = connect(&hub, "b1", vec![s.job]);
    assert!(
        sent(&mut again).iter().any(is_answer),
        "the answer is sent on the agent's return"
    );
    // Cut again before the agent said it took it: sent again.
    drop(again);
    let mut third = connect(&hub, "b1", vec![s.job]);
    assert!(sent(&mut third).iter().any(is_answer));
    third.receive(seq(
        2,
        AgentMsg::PromptAnswered {
            job: s.job,
            prompt: 7,
            answer: testbay_engine::reporter::PromptAnswer {
                text: "done".into(),
                by: Some("alice".into()),
                at_ms: 1_000_000,
                timed_out: false,
            },
        },
    ));
    drop(third);
    let mut fourth = connect(&hub, "b1", vec![s.job]);
    assert!(
        !sent(&mut fourth).iter().any(is_answer),
        "an answer the agent took is not sent again"
    );
}

/// The next phase of a run through its `runner`, sent while the test looks on.
fn next_phase(runner: &Arc<dyn PhaseRunner>, run_id: &str) -> JoinHandle<Outcome> {
    let r = runner.clone();
    let mut phase = job(run_id);
    phase.task = "after".into();
    phase.dir = "after".into();
    tokio::spawn(async move {
        r.run_phase(PhaseCall {
            job: phase,
            reporter: None,
            live: None,
            report: None,
            prompts: None,
            stop: None,
            on_spawn: Box::new(|_| {}),
        })
        .await
    })
}

/// A run's first phase, passed on the agent: the agent's session and the run's runner.
async fn first_phase_passed(hub: &AgentHub, root: &Path) -> (AgentSession, Arc<dyn PhaseRunner>) {
    let mut session = connect(hub, "b1", vec![]);
    let s = start(hub, &mut session, root, "run-1").await;
    session.receive(seq(1, passed(s.job)));
    assert_eq!(s.outcome.await.unwrap().unwrap().result, "Passed");
    (session, s.runner)
}

/// A run's first phase passes on the agent, the agent's connection drops, and the run's
/// next phase is due: it waits. Its future.
async fn next_phase_while_away(hub: &AgentHub, root: &Path) -> JoinHandle<Outcome> {
    let (session, runner) = first_phase_passed(hub, root).await;
    drop(session);
    let next = next_phase(&runner, "run-1");
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    assert!(!next.is_finished(), "the phase waits for its agent");
    next
}

/// A run's next phase, due while its agent is between two connections, waits for the
/// agent and goes to it as soon as it is back, with no time passing (it was Aborted "not
/// connected" at once).
#[tokio::test]
async fn a_phase_due_while_the_agent_is_away_waits_for_it() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let hub = hub(&clock);
    let next = next_phase_while_away(&hub, tmp.path()).await;

    let mut again = connect(&hub, "b1", vec![]);
    let job = start_sent_at_once(&mut again)
        .await
        .expect("the phase goes to the agent once it is back");
    again.receive(seq(2, passed(job)));
    assert_eq!(next.await.unwrap().unwrap().result, "Passed");
}

/// The phase the hub sent `session` once the tasks woken have run, with no time passing.
async fn start_sent_at_once(session: &mut AgentSession) -> Option<u64> {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    sent(session).into_iter().find_map(|m| match m {
        ServerMsg::Start { job, .. } => Some(job),
        _ => None,
    })
}

/// A phase due after the server closed its agents' connections (`disconnect_all`: the
/// book moved, no health changed) waits, and goes to the agent as soon as it connects
/// again, with no time passing.
#[tokio::test]
async fn a_phase_due_after_the_server_closed_the_connection_goes_when_the_agent_is_back() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let hub = hub(&clock);
    let (mut session, runner) = first_phase_passed(&hub, tmp.path()).await;
    hub.disconnect_all();
    let next = next_phase(&runner, "run-1");
    assert_eq!(start_sent_at_once(&mut session).await, None);
    assert!(!next.is_finished(), "the phase waits for its agent");

    let mut again = connect(&hub, "b1", vec![]);
    let job = start_sent_at_once(&mut again)
        .await
        .expect("the phase goes to the agent once it is back");
    again.receive(seq(2, passed(job)));
    assert_eq!(next.await.unwrap().unwrap().result, "Passed");
}

/// A phase waiting for an agent that does not come back within the grace period ends
/// Aborted with the reason.
#[tokio::test]
async fn a_phase_waiting_for_an_agent_that_stays_away_is_aborted_after_the_grace() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let hub = hub(&clock);
    let next = next_phase_while_away(&hub, tmp.path()).await;
    clock.advance(10_001);
    hub.check();
    let outcome = tokio::time::timeout(Duration::from_secs(20), next)
        .await
        .expect("the waiting phase ends")
        .unwrap()
        .unwrap();
    assert_eq!(outcome.result, "Aborted");
    assert!(
        outcome.message.contains("grace period"),
        "{}",
        outcome.message
    );
}

/// A phase whose Start went out on a connection that was dying never reached the agent:
/// when the same life of the agent comes back without it, it is sent again (it was
/// Aborted "reconnected without this phase").
#[tokio::test]
async fn a_start_lost_with_a_dying_connection_is_sent_again() {
    let tmp = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(1_000_000);
    let hub = hub(&clock);
    let mut session = connect(&hub, "b1", vec![]);
    let s = start(&hub, &mut session, tmp.path(), "run-1").await;
    // The agent never read it: its connection is gone, and it comes back without it.
    drop(session);
    let mut again = connect(&hub, "b1", vec![]);
    assert!(
        sent(&mut again)
            .iter()
            .any(|m| matches!(m, ServerMsg::Start { job, .. } if *job == s.job)),
        "the phase is sent again"
    );
    again.receive(seq(1, passed(s.job)));
    assert_eq!(s.outcome.await.unwrap().unwrap().result, "Passed");

    // Another life of the agent: a phase it had is lost with the old one, not sent again.
    let s2 = start(&hub, &mut again, tmp.path(), "run-2").await;
    drop(again);
    let mut other = connect(&hub, "b2", vec![]);
    assert!(!sent(&mut other)
        .iter()
        .any(|m| matches!(m, ServerMsg::Start { job, .. } if *job == s2.job)));
    assert_eq!(s2.outcome.await.unwrap().unwrap().result, "Aborted");
}
