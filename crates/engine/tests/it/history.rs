//! Results across runs: measurements judged and stored (real runs, real result files),
//! a task's and a measurement's history, yield, flaky tasks, run compare, and the plans
//! of their queries, on a real SQLite file.

use serde_json::json;
use testbay_engine::analysis::{compare_runs, flaky_tasks, CompareOptions, FlakyQuery};
use testbay_engine::measure::{Comparison, Measurement};
use testbay_engine::outcome::*;
use testbay_engine::plan::DutTarget;
use testbay_engine::report::{render, ReportFormat};
use testbay_engine::store::*;

use crate::store_contract::new_run;
use crate::support::{write_pack, Bed, T0};

fn result_file(json: serde_json::Value) -> String {
    format!("cat > \"$TESTBAY_RESULT\" <<'EOF'\n{json}\nEOF\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurements_out_of_limits_fail_their_task_or_sub_result() {
    let f = Bed::new();
    let snr = result_file(json!({
        "result": "Passed",
        "measurements": [{"name": "snr_db", "value": 7.2, "units": "dB", "low": 5, "high": 9}],
        "multi_result": [
            {"name": "channel_101", "result": "Passed",
             "measurements": [{"name": "snr_db", "value": 3.5, "units": "dB", "low": 5, "high": 9}]},
            {"name": "channel_102", "result": "Passed",
             "measurements": [{"name": "snr_db", "value": 6.0, "units": "dB", "low": 5, "high": 9},
                              {"name": "lock_ms", "value": 120}]}
        ]
    }));
    let power = result_file(json!({
        "result": "Passed", "metadata": {"message": "tuned"},
        "measurements": [{"name": "power", "value": 12, "units": "dBm", "high": 10}]
    }));
    let waived = result_file(json!({
        "result": "Passed",
        "metadata": {"message": "tuned", "measurements_override": "amplifier under repair, LAB-12"},
        "measurements": [{"name": "power", "value": 12, "units": "dBm", "high": 10}]
    }));
    let unjudgeable = result_file(json!({
        "result": "Passed",
        "measurements": [{"name": "ber", "value": 0.1, "comparison": "LE"},
                         {"name": "freq", "value": 5.0, "low": 5, "comparison": "EQ"}]
    }));
    write_pack(
        &f.pack,
        "name: rf\nversion: 1.0.0\ngroups:\n  g:\n    tests: [snr, power, waived, unjudgeable]\n",
        &[
            ("snr", "stop_suite_on_fail: false\n", snr.as_str()),
            ("power", "stop_suite_on_fail: false\n", power.as_str()),
            ("waived", "stop_suite_on_fail: false\n", waived.as_str()),
            (
                "unjudgeable",
                "stop_suite_on_fail: false\n",
                unjudgeable.as_str(),
            ),
        ],
    );
    let req = testbay_engine::run::LaunchRequest {
        pack_dir: f.pack.display().to_string(),
        ..Default::default()
    };
    let id = f.mgr.launch(req).unwrap();
    f.mgr.wait(&id).await.unwrap();
    let tasks = f.mgr.store().run_tasks(&id).unwrap();
    let t = |name: &str| tasks.iter().find(|t| t.task == name).unwrap().clone();

    let snr = t("snr");
    assert_eq!(snr.result.as_deref(), Some(PASSED), "{:?}", snr.message);
    assert_eq!(snr.measurements.len(), 1);
    assert_eq!(snr.measurements[0].passed, Some(true));
    assert_eq!(snr.measurements[0].comparison, Comparison::GELE);
    let ch101 = &snr.sub_results[0];
    assert_eq!(ch101.result, FAILED);
    assert!(ch101.failure);
    assert_eq!(
        ch101.message,
        "measurement `snr_db` = 3.5 dB out of limits (GELE 5..9)"
    );
    assert_eq!(ch101.measurements[0].passed, Some(false));
    let ch102 = &snr.sub_results[1];
    assert_eq!(ch102.result, PASSED);
    assert_eq!(ch102.measurements.len(), 2);
    assert_eq!(ch102.measurements[1].comparison, Comparison::LOG);
    assert_eq!(ch102.measurements[1].passed, None);

    let power = t("power");
    assert_eq!(power.result.as_deref(), Some(FAILED));
    assert_eq!(power.failure, Some(true));
    assert_eq!(
        power.message.as_deref(),
        Some("tuned; measurement `power` = 12 dBm out of limits (LE 10)")
    );

    let waived = t("waived");
    assert_eq!(waived.result.as_deref(), Some(PASSED));
    assert!(
        waived
            .message
            .as_deref()
            .unwrap()
            .ends_with("(not failing it: measurements_override: amplifier under repair, LAB-12)"),
        "{:?}",
        waived.message
    );
    assert_eq!(waived.measurements[0].passed, Some(false));

    let u = t("unjudgeable");
    assert_eq!(u.result.as_deref(), Some(FAILED));
    assert_eq!(
        u.message.as_deref(),
        Some("cannot judge measurement `ber`: comparison LE needs `high`")
    );

    let run = f.mgr.store().get_run(&id).unwrap();
    assert_eq!(run.counts.failures, 2);
    let junit = render(ReportFormat::Junit, &run, &tasks);
    assert!(
        junit.contains("<property name=\"measurement.snr_db\" value=\"3.5 dB (GELE 5..9) FAIL\"/>"),
        "{junit}"
    );
    let yaml = render(ReportFormat::Yaml, &run, &tasks);
    assert!(yaml.contains("measurements:"), "{yaml}");
    let exported: serde_json::Value =
        serde_json::from_str(&render(ReportFormat::Json, &run, &tasks)).unwrap();
    let power_json = exported["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == "power")
        .unwrap()
        .clone();
    assert_eq!(power_json["measurements"][0]["comparison"], "LE");
    assert_eq!(power_json["measurements"][0]["passed"], false);
}

/// A store with runs of pack `p` on `dut` (model `model`), one task per name.
struct Lab {
    _dir: tempfile::TempDir,
    s: SqliteStore,
    n: i64,
}

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open_in(dir.path()).unwrap();
        Lab { _dir: dir, s, n: 0 }
    }

    /// A finished run of `pack` on `dut:model` with `results` (task, result, run_time).
    fn run(
        &mut self,
        pack: &str,
        dut: &str,
        model: &str,
        results: &[(&str, &str, f64)],
    ) -> (String, Vec<i64>) {
        self.run_with(pack, dut, model, results, &[], None)
    }

    /// As [`Lab::run`], the first task finished with `measured` (its sub-result, or its
    /// own with `None`; the measurement).
    fn run_measured(
        &mut self,
        pack: &str,
        dut: &str,
        model: &str,
        results: &[(&str, &str, f64)],
        measured: (Option<&str>, Measurement),
    ) -> (String, Vec<i64>) {
        self.run_with(pack, dut, model, results, &[], Some(measured))
    }

    /// As [`Lab::run`], the tasks named in `retried` marked as passed only on a retry.
    fn run_retried(
        &mut self,
        pack: &str,
        dut: &str,
        model: &str,
        results: &[(&str, &str, f64)],
        retried: &[&str],
    ) -> (String, Vec<i64>) {
        self.run_with(pack, dut, model, results, retried, None)
    }

    fn run_with(
        &mut self,
        pack: &str,
        dut: &str,
        model: &str,
        results: &[(&str, &str, f64)],
        retried: &[&str],
        mut measured: Option<(Option<&str>, Measurement)>,
    ) -> (String, Vec<i64>) {
        self.n += 1;
        let id = format!("run{:03}", self.n);
        let mut r = new_run(&id, pack, T0 + self.n * 1000);
        r.duts = vec![DutTarget {
            name: dut.into(),
            model: Some(model.into()),
            rack: None,
            slot: None,
        }];
        let rows: Vec<NewTaskRow> = results
            .iter()
            .enumerate()
            .map(|(i, (task, _, _))| NewTaskRow {
                seq: i as u32,
                lane: Some(dut.into()),
                task: task.to_string(),
                kind: TaskKind::Test,
                group: Some("g".into()),
                description: String::new(),
                est_task_time: 2.0,
            })
            .collect();
        let ids = self.s.insert_run(&r, &rows).unwrap();
        for (tid, (task, result, secs)) in ids.iter().zip(results) {
            let failure = *result != PASSED;
            let mut f = TaskFinish {
                result: result.to_string(),
                failure,
                message: if failure {
                    format!("{result} here")
                } else {
                    String::new()
                },
                run_time: Some(*secs),
                finished_ms: T0 + self.n * 1000 + 500,
                flaky: retried.contains(task),
                ..Default::default()
            };
            match measured.take() {
                Some((Some(sub), m)) => {
                    f.sub_results = vec![NewSubResult {
                        name: sub.into(),
                        result: PASSED.into(),
                        measurements: vec![m],
                        ..Default::default()
                    }]
                }
                Some((None, m)) => f.measurements = vec![m],
                None => {}
            }
            self.s.finish_task(*tid, &f).unwrap();
        }
        self.s
            .set_run_status(&id, RunStatus::Completed, None, T0 + self.n * 1000 + 900)
            .unwrap();
        (id, ids)
    }
}

fn m(name: &str, value: f64, low: f64, high: f64) -> Measurement {
    Measurement {
        name: name.into(),
        value,
        units: Some("dB".into()),
        low: Some(low),
        high: Some(high),
        comparison: None,
    }
}

#[test]
fn history_merges_finished_and_unfinished_occurrences_newest_first() {
    let mut lab = Lab::new();
    lab.run("p", "a1", "TP-4000", &[("tune", PASSED, 1.0)]);
    // A run still going: `tune` running, `other` planned.
    // Created after the next run (an earlier launch that started late): the history's
    // order is the occurrences', not the runs' creation.
    let mut r = new_run("going", "p", T0 + 5000);
    r.duts = vec![DutTarget {
        name: "a1".into(),
        model: Some("TP-4000".into()),
        rack: None,
        slot: None,
    }];
    let row = |seq: u32, task: &str| NewTaskRow {
        seq,
        lane: Some("a1".into()),
        task: task.into(),
        kind: TaskKind::Test,
        group: Some("g".into()),
        description: String::new(),
        est_task_time: 2.0,
    };
    let going = lab
        .s
        .insert_run(&r, &[row(0, "tune"), row(1, "other")])
        .unwrap();
    lab.s
        .task_phase_started(
            going[0],
            "a1",
            "main",
            T0 + 1600,
            None,
            &TaskPaths::default(),
        )
        .unwrap();
    lab.run_measured(
        "p",
        "a1",
        "TP-4000",
        &[("tune", FAILED, 1.0), ("other", PASSED, 1.0)],
        (None, m("snr_db", 4.0, 5.0, 9.0)),
    );

    let history = |lab: &Lab, task: &str| {
        lab.s
            .task_history(&TaskHistoryQuery {
                pack: "p".into(),
                task: task.into(),
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|e| (e.run_id, e.state))
            .collect::<Vec<_>>()
    };
    let done = StoredTaskState::Done;
    assert_eq!(
        history(&lab, "tune"),
        [
            ("run002".to_string(), done),
            ("going".to_string(), StoredTaskState::Running),
            ("run001".to_string(), done),
        ]
    );
    assert_eq!(
        history(&lab, "other"),
        [
            ("run002".to_string(), done),
            ("going".to_string(), StoredTaskState::Pending)
        ]
    );
    let snr = MeasurementQuery {
        pack: "p".into(),
        task: "tune".into(),
        sub_result: None,
        name: "snr_db".into(),
        dut_model: None,
        limit: 0,
    };
    let runs = |lab: &Lab| -> Vec<String> {
        lab.s
            .measurement_history(&snr)
            .unwrap()
            .into_iter()
            .map(|p| p.run_id)
            .collect()
    };
    // Measurements come with a finish: only the finished occurrence has any yet.
    assert_eq!(runs(&lab), ["run002"]);
    // The limit is taken from the merged order: the newest only.
    let newest = lab
        .s
        .task_history(&TaskHistoryQuery {
            pack: "p".into(),
            task: "tune".into(),
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(newest[0].run_id, "run002");

    // Finished, it keeps its place among the others, and so do its measurements.
    lab.s
        .finish_task(
            going[0],
            &TaskFinish {
                result: PASSED.into(),
                finished_ms: T0 + 1700,
                measurements: vec![m("snr_db", 6.0, 5.0, 9.0)],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        history(&lab, "tune"),
        [
            ("run002".to_string(), done),
            ("going".to_string(), done),
            ("run001".to_string(), done),
        ]
    );
    assert_eq!(runs(&lab), ["run002", "going"]);
}

#[test]
fn task_and_measurement_history_newest_first_per_model_with_yield() {
    let mut lab = Lab::new();
    let mut ids = Vec::new();
    for (i, (dut, model)) in [("a1", "TP-4000"), ("b1", "TP-5000"), ("a2", "TP-4000")]
        .iter()
        .enumerate()
    {
        let value = [7.0, 8.0, 3.0][i];
        let (run, _) = lab.run_measured(
            "p",
            dut,
            model,
            &[("tune", PASSED, 1.0 + i as f64), ("other", PASSED, 1.0)],
            (Some("channel_101"), m("snr_db", value, 5.0, 9.0)),
        );
        lab.s.commit_now().unwrap();
        ids.push(run);
    }
    // Another pack's task of the same name is not in the history.
    lab.run("q", "a1", "TP-4000", &[("tune", FAILED, 1.0)]);

    let h = lab
        .s
        .task_history(&TaskHistoryQuery {
            pack: "p".into(),
            task: "tune".into(),
            ..Default::default()
        })
        .unwrap();
    let runs: Vec<&str> = h.iter().map(|e| e.run_id.as_str()).collect();
    assert_eq!(runs, ["run003", "run002", "run001"]);
    assert_eq!(h[0].dut_model.as_deref(), Some("TP-4000"));
    assert_eq!(h[0].run_time, Some(3.0));
    assert_eq!(h[0].est_task_time, 2.0);
    let only = lab
        .s
        .task_history(&TaskHistoryQuery {
            pack: "p".into(),
            task: "tune".into(),
            dut_model: Some("TP-5000".into()),
            limit: 0,
        })
        .unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].lane.as_deref(), Some("b1"));

    let q = MeasurementQuery {
        pack: "p".into(),
        task: "tune".into(),
        sub_result: Some("channel_101".into()),
        name: "snr_db".into(),
        dut_model: Some("TP-4000".into()),
        limit: 0,
    };
    let pts = lab.s.measurement_history(&q).unwrap();
    let values: Vec<f64> = pts.iter().map(|p| p.measurement.value).collect();
    assert_eq!(values, [3.0, 7.0]);
    assert_eq!(pts[0].measurement.passed, Some(false));
    assert_eq!(
        (pts[0].measurement.low, pts[0].measurement.high),
        (Some(5.0), Some(9.0))
    );
    // The task's own measurements are another series.
    let own = lab
        .s
        .measurement_history(&MeasurementQuery {
            sub_result: None,
            ..q.clone()
        })
        .unwrap();
    assert!(own.is_empty());

    let y = lab.s.measurement_yield("p", 0).unwrap();
    assert_eq!(y.len(), 2, "{y:?}");
    let tp4 = y
        .iter()
        .find(|r| r.dut_model.as_deref() == Some("TP-4000"))
        .unwrap();
    assert_eq!((tp4.runs, tp4.passed_runs), (2, 1));
    assert_eq!(tp4.yield_rate, 0.5);
    let tp5 = y
        .iter()
        .find(|r| r.dut_model.as_deref() == Some("TP-5000"))
        .unwrap();
    assert_eq!((tp5.runs, tp5.passed_runs), (1, 1));
}

#[test]
fn flaky_means_a_flip_within_the_window_per_model() {
    let mut lab = Lab::new();
    // Oldest first. `flaky` flips three times in its last 5 runs on TP-4000; `steady_fail` always fails;
    // `steady_pass` always passes; `old_flip` flipped only before the window (5).
    let seq = [
        (PASSED, FAILED, PASSED),
        (PASSED, FAILED, FAILED),
        (FAILED, FAILED, PASSED),
        (PASSED, FAILED, PASSED),
        (FAILED, FAILED, PASSED),
        (PASSED, FAILED, PASSED),
        (PASSED, FAILED, PASSED),
    ];
    for (flaky, steady_fail, old_flip) in seq {
        lab.run(
            "p",
            "a1",
            "TP-4000",
            &[
                ("flaky", flaky, 1.0),
                ("steady_fail", steady_fail, 1.0),
                ("steady_pass", PASSED, 1.0),
                ("old_flip", old_flip, 1.0),
                (
                    "skipped",
                    if flaky == FAILED { SKIPPED } else { PASSED },
                    1.0,
                ),
            ],
        );
    }
    // On another model `flaky` fails once in its only two runs: flaky there too, alone.
    lab.run("p", "b1", "TP-5000", &[("flaky", PASSED, 1.0)]);
    lab.run("p", "b1", "TP-5000", &[("flaky", FAILED, 1.0)]);

    let out = flaky_tasks(
        &lab.s,
        &FlakyQuery {
            pack: Some("p".into()),
            window: 5,
        },
    )
    .unwrap();
    let names: Vec<(String, Option<String>, u32)> = out
        .iter()
        .map(|f| (f.task.clone(), f.dut_model.clone(), f.flips))
        .collect();
    assert_eq!(
        names,
        [
            ("flaky".to_string(), Some("TP-5000".to_string()), 1),
            ("flaky".to_string(), Some("TP-4000".to_string()), 3),
        ]
    );
    assert_eq!(out[1].runs.len(), 5);
    assert_eq!(out[1].flip_rate, 0.75);
    assert_eq!(out[0].flip_rate, 1.0);
    // With a window of 7, `old_flip`'s flips are in it.
    let wide = flaky_tasks(
        &lab.s,
        &FlakyQuery {
            pack: None,
            window: 7,
        },
    )
    .unwrap();
    assert!(wide.iter().any(|f| f.task == "old_flip"), "{wide:?}");
    assert!(!wide
        .iter()
        .any(|f| f.task.starts_with("steady") || f.task == "skipped"));
}

/// A task that passed only on a retry (`max_retries`) counts as flaky though its verdict
/// never flips: its score is at least its share of retried passes in the window.
#[test]
fn passes_on_a_retry_are_flaky_too() {
    let mut lab = Lab::new();
    // Oldest first: `retry` always passes, twice in 4 runs only on a retry; `both` flips
    // once (1/3) and passed on a retry once (1/4; a failure marked so does not count);
    // `steady` passes at the first attempt.
    let runs: [(&str, &[&str]); 4] = [
        (PASSED, &["retry", "both"]),
        (PASSED, &[]),
        (FAILED, &["retry", "both"]),
        (FAILED, &[]),
    ];
    for (both, retried) in runs {
        lab.run_retried(
            "p",
            "a1",
            "TP-4000",
            &[
                ("retry", PASSED, 1.0),
                ("both", both, 1.0),
                ("steady", PASSED, 1.0),
            ],
            retried,
        );
    }
    let out = flaky_tasks(
        &lab.s,
        &FlakyQuery {
            pack: Some("p".into()),
            window: 10,
        },
    )
    .unwrap();
    let got: Vec<(&str, u32, u32, f64)> = out
        .iter()
        .map(|f| (f.task.as_str(), f.flips, f.retried_passes, f.score))
        .collect();
    assert_eq!(got, [("retry", 0, 2, 0.5), ("both", 1, 1, 1.0 / 3.0)]);
    assert_eq!(out[0].flip_rate, 0.0);
    let marks: Vec<bool> = out[0].runs.iter().map(|p| p.retried).collect();
    assert_eq!(marks, [true, false, true, false]);
}

#[test]
fn compare_sorts_every_occurrence_into_its_category() {
    let mut lab = Lab::new();
    let (a, _) = lab.run(
        "p",
        "a1",
        "TP-4000",
        &[
            ("newly", PASSED, 1.0),
            ("fixed", FAILED, 1.0),
            ("still_f", FAILED, 1.0),
            ("still_p", PASSED, 1.0),
            ("slower", PASSED, 1.0),
            ("gone", PASSED, 1.0),
        ],
    );
    let (b, _) = lab.run(
        "p",
        "a2",
        "TP-4000",
        &[
            ("newly", FAILED, 1.0),
            ("fixed", PASSED, 1.0),
            ("still_f", ERRORED, 1.0),
            ("still_p", PASSED, 1.05),
            ("slower", PASSED, 2.0),
            ("new_task", PASSED, 1.0),
        ],
    );
    let (ra, rb) = (lab.s.get_run(&a).unwrap(), lab.s.get_run(&b).unwrap());
    let mut rb2 = rb.clone();
    rb2.launch.params = json!({"process_limit": 3, "channel": 101});
    let c = compare_runs(
        &ra,
        &lab.s.run_tasks(&a).unwrap(),
        &rb2,
        &lab.s.run_tasks(&b).unwrap(),
        &CompareOptions::default(),
    );
    let names = |v: &[testbay_engine::analysis::TaskDiff]| {
        v.iter().map(|d| d.task.clone()).collect::<Vec<_>>()
    };
    assert_eq!(names(&c.new_failures), ["newly"]);
    assert_eq!(names(&c.fixed), ["fixed"]);
    assert_eq!(names(&c.still_failing), ["still_f"]);
    let mut sp = names(&c.still_passing);
    sp.sort();
    assert_eq!(sp, ["slower", "still_p"]);
    assert_eq!(names(&c.added), ["new_task"]);
    assert_eq!(names(&c.removed), ["gone"]);
    let mut rc = names(&c.result_changes);
    rc.sort();
    assert_eq!(rc, ["fixed", "newly", "still_f"]);
    assert!(c.message_changes.is_empty(), "{:?}", c.message_changes);
    // 1.05 s is within 20%, 2 s is not.
    assert_eq!(names(&c.duration_regressions), ["slower"]);
    let keys: Vec<&str> = c.param_differences.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["channel", "process_limit"]);
}

#[test]
fn history_queries_start_from_indexes() {
    let lab = Lab::new();
    for (name, plan) in lab.s.history_plans().unwrap() {
        let text = plan.join("\n");
        for line in &plan {
            // A scan is allowed only of the DUT list of one run (json_each) or of an
            // index of runs (the distinct pack names).
            let scan = line.starts_with("SCAN") || line.contains(" SCAN ");
            let allowed = line.contains("VIRTUAL TABLE")
                || line.contains("COVERING INDEX runs_pack")
                || line.contains("USING INDEX runs_pack_created");
            assert!(!scan || allowed, "{name} scans:\n{text}");
        }
        // Sorting is allowed within one run's rows only.
        let per_run = ["run_measurements", "run_done", "run_yield"].contains(&name);
        assert!(
            per_run || !text.contains("TEMP B-TREE"),
            "{name} sorts:\n{text}"
        );
        // A task's history merges its finished occurrences and the others, each part
        // newest first from its own index; a measurement's has finished ones only.
        if name == "task_history" {
            for index in ["task_results_task ", "task_results_task_open "] {
                assert!(text.contains(index), "{name} does not use {index}:\n{text}");
            }
            assert!(
                text.contains("MERGE (UNION ALL)"),
                "{name} does not merge:\n{text}"
            );
        }
        let used = match name {
            "run_measurements" => "(run_id=?",
            "last_runs" => "runs_pack_created",
            // (run_id, result) or the unique (run_id, seq): either starts at the run.
            "run_yield" | "run_done" => "(run_id=?",
            "measurement_history" => "USING INDEX task_results_task (task=?)",
            _ => "",
        };
        assert!(text.contains(used), "{name} does not use {used}:\n{text}");
    }
}

#[test]
fn a_baseline_is_pinned_per_pack_and_model_and_replaced() {
    let mut lab = Lab::new();
    let (r1, _) = lab.run("p", "a1", "TP-4000", &[("t", PASSED, 1.0)]);
    let (r2, _) = lab.run("p", "a2", "TP-4000", &[("t", PASSED, 1.0)]);
    let (r3, _) = lab.run("p", "b1", "TP-5000", &[("t", PASSED, 1.0)]);
    let b = lab.s.pin_baseline(&r1, None, T0).unwrap();
    assert_eq!(
        (b.pack.as_str(), b.dut_model.as_deref()),
        ("p", Some("TP-4000"))
    );
    lab.s.pin_baseline(&r3, None, T0).unwrap();
    // Another run on the same model replaces it; a named model wins over the run's.
    lab.s.pin_baseline(&r2, None, T0 + 1).unwrap();
    lab.s.pin_baseline(&r2, Some("TP-9000"), T0 + 2).unwrap();
    let all: Vec<(Option<String>, String)> = lab
        .s
        .baselines(Some("p"))
        .unwrap()
        .into_iter()
        .map(|b| (b.dut_model, b.run_id))
        .collect();
    assert_eq!(
        all,
        [
            (Some("TP-4000".into()), r2.clone()),
            (Some("TP-5000".into()), r3.clone()),
            (Some("TP-9000".into()), r2.clone()),
        ]
    );
    assert!(lab.s.unpin_baseline("p", Some("TP-9000")).unwrap());
    assert!(!lab.s.unpin_baseline("p", Some("TP-9000")).unwrap());
    assert!(lab.s.baselines(Some("q")).unwrap().is_empty());
    assert!(matches!(
        lab.s.pin_baseline("nope", None, T0),
        Err(StoreError::RunNotFound(_))
    ));
}

#[test]
fn a_model_run_rarely_still_gets_its_window() {
    let mut lab = Lab::new();
    // 30 runs, oldest first; TP-9000 ran twice among them (passed, then failed).
    for i in 0..30 {
        match i {
            5 => lab.run("p", "z1", "TP-9000", &[("t", PASSED, 1.0)]),
            10 => lab.run("p", "z1", "TP-9000", &[("t", FAILED, 1.0)]),
            _ => lab.run(
                "p",
                "a1",
                "TP-4000",
                &[("t", if i % 2 == 0 { PASSED } else { FAILED }, 1.0)],
            ),
        };
    }
    let out = flaky_tasks(
        &lab.s,
        &FlakyQuery {
            pack: Some("p".into()),
            window: 5,
        },
    )
    .unwrap();
    let rare = out
        .iter()
        .find(|f| f.dut_model.as_deref() == Some("TP-9000"))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert_eq!(rare.runs.len(), 2);
    assert_eq!(rare.flips, 1);
    let common = out
        .iter()
        .find(|f| f.dut_model.as_deref() == Some("TP-4000"))
        .unwrap();
    // Only its newest 5 runs are read, alternating: 4 flips.
    assert_eq!(common.runs.len(), 5);
    assert_eq!((common.flips, common.flip_rate), (4, 1.0));
    assert_eq!(common.runs.last().unwrap().run_id, "run030");
}
