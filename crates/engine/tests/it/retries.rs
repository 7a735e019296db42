//! `max_retries`: a failed task runs again, each attempt stored with its own logs; a task
//! that passed only on a retry is flaky. Real processes, a real SQLite file.

use testbay_engine::outcome::*;
use testbay_engine::run::*;

use crate::support::{write_pack, Bed};

const PACK: &str =
    "name: retry\nversion: 1.0.0\ngroups:\n  g:\n    tests: [flaky, broken, steady]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_failing_once_passes_on_its_retry_and_is_flaky() {
    let f = Bed::new();
    let marker = f.data.join("flaky.marker");
    // Fails while the marker is missing (and makes it), passes once it is there.
    let flaky = format!(
        "if [ -e '{m}' ]; then echo second try; exit 0; fi\ntouch '{m}'\necho first try; exit 3\n",
        m = marker.display()
    );
    write_pack(
        &f.pack,
        PACK,
        &[
            ("flaky", "max_retries: 2\n", &flaky),
            (
                "broken",
                "max_retries: 1\nstop_suite_on_fail: false\n",
                "echo always; exit 1\n",
            ),
            ("steady", "", "exit 0\n"),
        ],
    );
    let mut events = f.mgr.subscribe();
    let id = f
        .mgr
        .launch(LaunchRequest {
            pack_dir: f.pack.display().to_string(),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(f.mgr.wait(&id).await.unwrap(), RunStatus::Completed);
    let tasks = f.mgr.store().run_tasks(&id).unwrap();
    let get = |n: &str| tasks.iter().find(|t| t.task == n).unwrap();

    let t = get("flaky");
    assert_eq!(t.result.as_deref(), Some(PASSED));
    assert_eq!(t.failure, Some(false));
    assert!(t.flaky, "passed only on its retry");
    let results: Vec<_> = t
        .attempts
        .iter()
        .map(|a| (a.attempt, a.result.as_str()))
        .collect();
    assert_eq!(results, [(1, FAILED), (2, PASSED)]);
    assert_eq!(t.attempts[0].exit_code, Some(3));
    // Each attempt has its own log, and the task's files are its last attempt's.
    let log = |i: usize| {
        std::fs::read_to_string(t.attempts[i].paths.main_log.as_deref().unwrap()).unwrap()
    };
    assert!(log(0).contains("first try"), "{}", log(0));
    assert!(log(1).contains("second try"), "{}", log(1));
    assert_ne!(t.attempts[0].paths.main_log, t.attempts[1].paths.main_log);
    assert_eq!(t.paths.main_log, t.attempts[1].paths.main_log);

    let t = get("broken");
    assert_eq!(t.result.as_deref(), Some(FAILED));
    assert!(!t.flaky, "it never passed");
    assert_eq!(t.attempts.len(), 2, "one try and max_retries: 1");

    let t = get("steady");
    assert_eq!(t.result.as_deref(), Some(PASSED));
    assert!(
        !t.flaky && t.attempts.is_empty(),
        "no retries asked: one attempt"
    );

    // The live view and the event say flaky too.
    let view = f.mgr.view(&id).unwrap();
    let live = view.lanes[0]
        .test
        .iter()
        .find(|t| t.task == "flaky")
        .unwrap();
    assert!(
        matches!(&live.state, TaskState::Done { flaky: true, result, .. } if result == PASSED),
        "{:?}",
        live.state
    );
    let mut heard = false;
    while let Ok(ev) = events.try_recv() {
        if let RunEvent::TaskState {
            task,
            state: TaskState::Done { flaky, .. },
            ..
        } = ev
        {
            assert_eq!(flaky, task == "flaky", "{task}");
            heard |= flaky;
        }
    }
    assert!(heard, "the flaky result was announced");
}
