//! Scheduling decisions of `plan` on a virtual clock, without processes.

use indexmap::IndexMap;
use serde_json::{json, Map, Value};
use testbay_core::clock::{Clock, ManualClock};
use testbay_core::model::TaskKind;
use testbay_core::outcome::*;
use testbay_core::pack::*;
use testbay_core::plan::*;

use crate::support::T0;

fn task(name: &str, extra: Value) -> TaskDef {
    let mut v = json!({"name": name, "run": ["true"]});
    for (k, x) in extra.as_object().cloned().unwrap_or_default() {
        v[k] = x;
    }
    serde_json::from_value(v).unwrap()
}

/// (name, setup, tests, teardown)
type GroupSpec = (
    &'static str,
    Vec<&'static str>,
    Vec<&'static str>,
    Vec<&'static str>,
);

struct PackSpec {
    setup: Vec<&'static str>,
    teardown: Vec<&'static str>,
    groups: Vec<GroupSpec>,
    tasks: Vec<TaskDef>,
    params: Value,
}

fn pack(spec: PackSpec) -> LoadedPack {
    let mut groups = IndexMap::new();
    for (name, setup, tests, teardown) in spec.groups {
        groups.insert(
            name.to_string(),
            GroupDef {
                description: String::new(),
                tests: tests.into_iter().map(String::from).collect(),
                setup: setup.into_iter().map(String::from).collect(),
                teardown: teardown.into_iter().map(String::from).collect(),
            },
        );
    }
    let def = PackDef {
        name: "p".into(),
        version: "1".into(),
        description: String::new(),
        params: serde_json::from_value(spec.params).unwrap(),
        setup: spec.setup.into_iter().map(String::from).collect(),
        teardown: spec.teardown.into_iter().map(String::from).collect(),
        groups,
        scheduler: None,
    };
    let tasks = spec
        .tasks
        .into_iter()
        .map(|t| {
            (
                t.name.clone(),
                LoadedTask {
                    file: format!("/p/tasks/{}.yaml", t.name).into(),
                    dir: "/p/tasks".into(),
                    def: t,
                },
            )
        })
        .collect();
    LoadedPack {
        dir: "/p".into(),
        def,
        tasks,
        content_hash: "h".into(),
    }
}

fn names(tasks: &[&str], extra: Value) -> Vec<TaskDef> {
    tasks.iter().map(|t| task(t, extra.clone())).collect()
}

fn dut(name: &str, model: &str) -> DutTarget {
    DutTarget {
        name: name.into(),
        model: Some(model.into()),
        rack: None,
        slot: None,
    }
}

fn build(p: &LoadedPack, duts: Vec<DutTarget>, ats: Option<&str>) -> Plan {
    Plan::build(PlanInput {
        pack: p,
        groups: vec![],
        duts,
        ats: ats.map(String::from),
        params: p.def.params.clone(),
        test_order: None,
    })
    .unwrap()
}

/// Run the plan to the end, finishing every started item at once with the result
/// `decide` gives. Returns (task, lane, result) in finishing order, plan-made results
/// included.
fn drive(plan: &mut Plan, decide: impl Fn(&str) -> &'static str) -> Vec<(String, String, String)> {
    let mut log = Vec::new();
    for _ in 0..1000 {
        let starts = plan.next_starts(T0);
        record_settled(plan, &mut log);
        if starts.is_empty() {
            break;
        }
        for s in starts {
            let task = plan.item(s.item).task.clone();
            let r = decide(&task);
            plan.finish(s.item, r, "");
            log.push((task, plan.lane_name(s.lane).to_string(), r.to_string()));
        }
    }
    record_settled(plan, &mut log);
    assert!(plan.is_done(), "plan did not finish");
    log
}

fn record_settled(plan: &mut Plan, log: &mut Vec<(String, String, String)>) {
    for id in plan.drain_settled() {
        if let ItemState::Done { result, lane, .. } = plan.state(id).clone() {
            let lane = lane
                .map(|l| plan.lane_name(l).to_string())
                .unwrap_or_default();
            log.push((plan.item(id).task.clone(), lane, result));
        }
    }
}

fn result_of(plan: &Plan, task: &str) -> (String, String) {
    let it = plan.items().iter().find(|i| i.task == task).unwrap();
    match plan.state(it.id) {
        ItemState::Done {
            result, message, ..
        } => (result.clone(), message.clone()),
        s => panic!("{task} not done: {s:?}"),
    }
}

fn lifecycle_pack(extra: Value) -> LoadedPack {
    pack(PackSpec {
        setup: vec!["gs"],
        teardown: vec!["gt"],
        groups: vec![
            ("g1", vec!["s1"], vec!["a", "b"], vec!["t1"]),
            ("g2", vec!["s2"], vec!["c"], vec!["t2"]),
        ],
        tasks: names(&["gs", "gt", "s1", "a", "b", "t1", "s2", "c", "t2"], extra),
        params: json!({}),
    })
}

#[test]
fn lifecycle_order() {
    let p = lifecycle_pack(json!({}));
    let mut plan = build(&p, vec![], None);
    let order: Vec<String> = drive(&mut plan, |_| PASSED)
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(order, ["gs", "s1", "a", "b", "t1", "s2", "c", "t2", "gt"]);
    let kinds: Vec<TaskKind> = plan.items().iter().map(|i| i.kind).collect();
    assert_eq!(kinds[0], TaskKind::Setup);
    assert_eq!(*kinds.last().unwrap(), TaskKind::Teardown);
}

#[test]
fn only_chosen_groups_run_in_the_order_given() {
    let p = lifecycle_pack(json!({}));
    let mut plan = Plan::build(PlanInput {
        pack: &p,
        groups: vec!["g2".into(), "g1".into()],
        duts: vec![],
        ats: None,
        params: p.def.params.clone(),
        test_order: None,
    })
    .unwrap();
    let order: Vec<String> = drive(&mut plan, |_| PASSED)
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(order, ["gs", "s2", "c", "t2", "s1", "a", "b", "t1", "gt"]);
    let err = Plan::build(PlanInput {
        pack: &p,
        groups: vec!["nope".into()],
        duts: vec![],
        ats: None,
        params: p.def.params.clone(),
        test_order: None,
    })
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("group `nope`") && err.to_string().contains("g1, g2"),
        "{err}"
    );
}

#[test]
fn priority_orders_tests_lower_first() {
    let p = pack(PackSpec {
        setup: vec![],
        teardown: vec![],
        groups: vec![("g", vec![], vec!["a", "b", "c", "d"], vec![])],
        tasks: vec![
            task("a", json!({"priority": 5})),
            task("b", json!({"priority": 1})),
            task("c", json!({"priority": 3})),
            task("d", json!({"priority": 1})),
        ],
        params: json!({}),
    });
    let mut plan = build(&p, vec![], None);
    let order: Vec<String> = drive(&mut plan, |_| PASSED)
        .into_iter()
        .map(|x| x.0)
        .collect();
    assert_eq!(order, ["b", "d", "c", "a"]);
}

#[test]
fn stop_suite_on_fail_skips_the_rest_but_runs_entered_teardowns() {
    let p = lifecycle_pack(json!({}));
    let mut plan = build(&p, vec![], None);
    let log = drive(&mut plan, |t| if t == "a" { FAILED } else { PASSED });
    let ran: Vec<&str> = log
        .iter()
        .filter(|x| x.2 != SKIPPED)
        .map(|x| x.0.as_str())
        .collect();
    assert_eq!(ran, ["gs", "s1", "a", "t1", "gt"]);
    for t in ["b", "s2", "c"] {
        let (r, m) = result_of(&plan, t);
        assert_eq!(r, SKIPPED, "{t}");
        assert!(m.contains("stop_suite_on_fail"), "{m}");
    }
    let (r, m) = result_of(&plan, "t2");
    assert_eq!(r, SKIPPED);
    assert!(m.contains("g2 did not start"), "{m}");
}

#[test]
fn failed_setup_stops_the_suite_too() {
    let p = lifecycle_pack(json!({}));
    let mut plan = build(&p, vec![], None);
    let log = drive(&mut plan, |t| if t == "gs" { ERRORED } else { PASSED });
    let ran: Vec<&str> = log
        .iter()
        .filter(|x| x.2 != SKIPPED)
        .map(|x| x.0.as_str())
        .collect();
    assert_eq!(ran, ["gs", "gt"]);
}

#[test]
fn without_stop_suite_on_fail_the_suite_goes_on() {
    let p = lifecycle_pack(json!({"stop_suite_on_fail": false}));
    let mut plan = build(&p, vec![], None);
    let log = drive(&mut plan, |t| if t == "a" { FAILED } else { PASSED });
    assert_eq!(log.len(), 9);
    assert!(log.iter().all(|x| x.2 != SKIPPED));
}

#[test]
fn valid_result_decides_what_fails() {
    let p = pack(PackSpec {
        setup: vec![],
        teardown: vec![],
        groups: vec![("g", vec![], vec!["a", "b"], vec![])],
        tasks: names(&["a", "b"], json!({})),
        params: json!({"valid_result": ["Passed", "Failed"]}),
    });
    let mut plan = build(&p, vec![], None);
    let log = drive(&mut plan, |t| if t == "a" { FAILED } else { "Weird" });
    assert_eq!(log[1].2, "Weird", "b ran: Failed is valid here");
    assert!(!plan.is_failure(FAILED));
    assert!(plan.is_failure("Weird"));
    assert!(!plan.is_failure(PASSED));
}

fn prereq_pack(ignore: bool) -> LoadedPack {
    pack(PackSpec {
        setup: vec![],
        teardown: vec![],
        groups: vec![("g", vec![], vec!["a", "b", "c"], vec![])],
        tasks: vec![
            task("a", json!({"stop_suite_on_fail": false})),
            task(
                "b",
                json!({"prereq_tasks": ["a"], "stop_suite_on_fail": false}),
            ),
            task("c", json!({"prereq_tasks": ["b"]})),
        ],
        params: json!({"ignore_prereq": ignore}),
    })
}

#[test]
fn prereq_failed_means_blocked_down_the_chain() {
    let p = prereq_pack(false);
    let mut plan = build(&p, vec![], None);
    drive(&mut plan, |t| if t == "a" { FAILED } else { PASSED });
    let (r, m) = result_of(&plan, "b");
    assert_eq!(r, BLOCKED);
    assert!(m.contains("prereq a did not pass (Failed)"), "{m}");
    let (r, m) = result_of(&plan, "c");
    assert_eq!(r, BLOCKED);
    assert!(m.contains("prereq b"), "{m}");
}

#[test]
fn ignore_prereq_runs_anyway() {
    let p = prereq_pack(true);
    let mut plan = build(&p, vec![], None);
    let log = drive(&mut plan, |t| if t == "a" { FAILED } else { PASSED });
    assert_eq!(result_of(&plan, "b").0, PASSED);
    assert_eq!(result_of(&plan, "c").0, PASSED);
    assert_eq!(log.len(), 3);
}

#[test]
fn prereq_not_in_run_or_later_blocks() {
    let p = pack(PackSpec {
        setup: vec![],
        teardown: vec![],
        groups: vec![
            ("g1", vec![], vec!["x"], vec![]),
            ("g2", vec![], vec!["later"], vec![]),
        ],
        tasks: vec![
            task(
                "x",
                json!({"prereq_tasks": ["later"], "stop_suite_on_fail": false}),
            ),
            task("later", json!({})),
            task("absent", json!({})),
        ],
        params: json!({}),
    });
    let mut plan = build(&p, vec![], None);
    drive(&mut plan, |_| PASSED);
    let (r, m) = result_of(&plan, "x");
    assert_eq!(r, BLOCKED);
    assert!(m.contains("had not run before"), "{m}");
    assert_eq!(result_of(&plan, "later").0, PASSED);
}

#[test]
fn a_test_waits_for_its_pending_prereq_and_others_pass_it() {
    let p = pack(PackSpec {
        setup: vec![],
        teardown: vec![],
        groups: vec![("g", vec![], vec!["b", "a", "z"], vec![])],
        tasks: vec![
            task("b", json!({"prereq_tasks": ["a"], "process_safe": true})),
            task("a", json!({"process_safe": true, "priority": 5})),
            task("z", json!({"process_safe": true})),
        ],
        params: json!({"process_limit": 1}),
    });
    let mut plan = build(&p, vec![], None);
    let first = plan.next_starts(T0);
    assert_eq!(first.len(), 1);
    assert_eq!(
        plan.item(first[0].item).task,
        "a",
        "b waits for a, a goes first"
    );
    let b = plan.items().iter().find(|i| i.task == "b").unwrap().id;
    assert!(plan.wait_reason(b, T0).unwrap().contains("prereq a"));
    plan.finish(first[0].item, PASSED, "");
    let next = plan.next_starts(T0);
    assert_eq!(plan.item(next[0].item).task, "b");
}

#[test]
fn process_limit_and_process_safe() {
    let p = pack(PackSpec {
        setup: vec![],
        teardown: vec![],
        groups: vec![("g", vec![], vec!["s1", "s2", "s3", "u", "s4"], vec![])],
        tasks: vec![
            task("s1", json!({"process_safe": true})),
            task("s2", json!({"process_safe": true})),
            task("s3", json!({"process_safe": true})),
            task("u", json!({})),
            task("s4", json!({"process_safe": true})),
        ],
        params: json!({"process_limit": 2}),
    });
    let mut plan = build(&p, vec![], None);
    let id = |plan: &Plan, t: &str| plan.items().iter().find(|i| i.task == t).unwrap().id;
    let tasks = |plan: &Plan, s: &[Start]| -> Vec<String> {
        s.iter().map(|s| plan.item(s.item).task.clone()).collect()
    };
    let s = plan.next_starts(T0);
    assert_eq!(tasks(&plan, &s), ["s1", "s2"]);
    assert!(plan
        .wait_reason(id(&plan, "s3"), T0)
        .unwrap()
        .contains("process_limit 2"));
    plan.finish(id(&plan, "s1"), PASSED, "");
    let s = plan.next_starts(T0);
    assert_eq!(tasks(&plan, &s), ["s3"]);
    plan.finish(id(&plan, "s2"), PASSED, "");
    // u is not process_safe: it waits for the lane to be idle, and s4 does not overtake it.
    assert!(plan.next_starts(T0).is_empty());
    assert!(plan
        .wait_reason(id(&plan, "u"), T0)
        .unwrap()
        .contains("idle"));
    plan.finish(id(&plan, "s3"), PASSED, "");
    let s = plan.next_starts(T0);
    assert_eq!(tasks(&plan, &s), ["u"]);
    // Nothing beside a task that is not process_safe.
    assert!(plan.next_starts(T0).is_empty());
    plan.finish(id(&plan, "u"), PASSED, "");
    let s = plan.next_starts(T0);
    assert_eq!(tasks(&plan, &s), ["s4"]);
}

#[test]
fn setup_lists_run_one_at_a_time_even_if_process_safe() {
    let p = pack(PackSpec {
        setup: vec!["x", "y"],
        teardown: vec![],
        groups: vec![],
        tasks: names(&["x", "y"], json!({"process_safe": true})),
        params: json!({"process_limit": 4}),
    });
    let mut plan = build(&p, vec![], None);
    assert_eq!(plan.next_starts(T0).len(), 1);
}

#[test]
fn valid_duts_and_valid_ats_skip_with_reason() {
    let p = pack(PackSpec {
        setup: vec![],
        teardown: vec![],
        groups: vec![(
            "g",
            vec![],
            vec!["stb_only", "any_dut", "rack_b_only", "by_name"],
            vec![],
        )],
        tasks: vec![
            task("stb_only", json!({"valid_duts": ["TP-*"]})),
            task("any_dut", json!({})),
            task("rack_b_only", json!({"valid_ats": ["rack-b"]})),
            task("by_name", json!({"valid_duts": ["rtr-0?"]})),
        ],
        params: json!({}),
    });
    let mut plan = build(
        &p,
        vec![dut("stb-01", "TP-4000"), dut("rtr-01", "RT-1")],
        Some("rack-a"),
    );
    let log = drive(&mut plan, |_| PASSED);
    let find = |t: &str, l: &str| log.iter().find(|x| x.0 == t && x.1 == l).unwrap().2.clone();
    assert_eq!(find("stb_only", "stb-01"), PASSED);
    assert_eq!(find("stb_only", "rtr-01"), SKIPPED);
    assert_eq!(find("by_name", "stb-01"), SKIPPED);
    assert_eq!(find("by_name", "rtr-01"), PASSED);
    assert_eq!(find("any_dut", "rtr-01"), PASSED);
    let skipped = plan
        .items()
        .iter()
        .find(|i| i.task == "stb_only" && i.lane == Some(1))
        .unwrap();
    match plan.state(skipped.id) {
        ItemState::Done { message, .. } => {
            assert!(
                message.contains("rtr-01 (RT-1)") && message.contains("TP-*"),
                "{message}"
            )
        }
        s => panic!("{s:?}"),
    }
    let (r, m) = result_of(&plan, "rack_b_only");
    assert_eq!(r, SKIPPED);
    assert!(m.contains("ATS rack-a"), "{m}");
}

#[test]
fn missing_req_param_keys_refuse_the_run_before_anything_starts() {
    let p = pack(PackSpec {
        setup: vec![],
        teardown: vec![],
        groups: vec![("g", vec![], vec!["a", "b"], vec![])],
        tasks: vec![
            task("a", json!({"req_param_keys": ["channel_list", "dut"]})),
            task("b", json!({"req_param_keys": ["firmware", "ats"]})),
        ],
        params: json!({"channel_list": [1, 2]}),
    });
    let err = Plan::build(PlanInput {
        pack: &p,
        groups: vec![],
        duts: vec![],
        ats: None,
        params: p.def.params.clone(),
        test_order: None,
    })
    .err()
    .unwrap();
    match &err {
        PlanError::MissingParamKeys(m) => {
            assert_eq!(m[0], ("a".to_string(), vec!["dut".to_string()]));
            assert_eq!(
                m[1],
                (
                    "b".to_string(),
                    vec!["firmware".to_string(), "ats".to_string()]
                )
            );
        }
        e => panic!("{e}"),
    }
    assert!(
        err.to_string().contains("task b needs firmware, ats"),
        "{err}"
    );
    // With the overrides and targets given, it builds.
    let mut over = Map::new();
    over.insert("firmware".into(), json!("2.0"));
    let params = testbay_core::params::effective_params(&p.def.params, &over).unwrap();
    assert!(Plan::build(PlanInput {
        pack: &p,
        groups: vec![],
        duts: vec![dut("stb-01", "TP-4000")],
        ats: Some("rack-a".into()),
        params,
        test_order: None,
    })
    .is_ok());
}

fn coverage_pack(mode: &str) -> LoadedPack {
    pack(PackSpec {
        setup: vec!["prep"],
        teardown: vec![],
        groups: vec![("g", vec![], vec!["a", "b", "c", "d"], vec![])],
        tasks: names(&["prep", "a", "b", "c", "d"], json!({})),
        params: json!({"coverage_mode": mode}),
    })
}

#[test]
fn coverage_dut_runs_the_whole_list_on_every_lane_in_order() {
    let p = coverage_pack("dut");
    let mut plan = build(&p, vec![dut("d1", "m"), dut("d2", "m")], None);
    let log = drive(&mut plan, |_| PASSED);
    for lane in ["d1", "d2"] {
        let order: Vec<&str> = log
            .iter()
            .filter(|x| x.1 == lane)
            .map(|x| x.0.as_str())
            .collect();
        assert_eq!(order, ["prep", "a", "b", "c", "d"]);
    }
}

#[test]
fn coverage_test_runs_every_test_everywhere_least_run_first() {
    let p = coverage_pack("test");
    let mut plan = build(&p, vec![dut("d1", "m"), dut("d2", "m")], None);
    // Both lanes do their setup, then take tests: d2 must not start with `a` while d1 runs it.
    let s = plan.next_starts(T0);
    assert_eq!(s.len(), 2);
    for st in s {
        plan.finish(st.item, PASSED, "");
    }
    let s = plan.next_starts(T0);
    let first: Vec<String> = s.iter().map(|s| plan.item(s.item).task.clone()).collect();
    assert_eq!(first, ["a", "b"]);
    for st in s {
        plan.finish(st.item, PASSED, "");
    }
    let log = drive(&mut plan, |_| PASSED);
    assert_eq!(log.len(), 6, "each lane runs all four tests: {log:?}");
    for lane in ["d1", "d2"] {
        let mut got: Vec<&str> = log
            .iter()
            .filter(|x| x.1 == lane)
            .map(|x| x.0.as_str())
            .collect();
        got.sort();
        assert_eq!(got.len(), 3);
    }
}

#[test]
fn coverage_split_runs_each_test_once_on_a_free_lane() {
    let p = coverage_pack("split");
    let mut plan = build(&p, vec![dut("d1", "m"), dut("d2", "m")], None);
    let log = drive(&mut plan, |_| PASSED);
    let tests: Vec<&(String, String, String)> = log.iter().filter(|x| x.0 != "prep").collect();
    let mut names: Vec<&str> = tests.iter().map(|x| x.0.as_str()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c", "d"], "each test exactly once");
    assert!(tests.iter().any(|x| x.1 == "d1") && tests.iter().any(|x| x.1 == "d2"));
    assert_eq!(
        log.iter().filter(|x| x.0 == "prep").count(),
        2,
        "setup on every lane"
    );
}

#[test]
fn coverage_split_respects_valid_duts() {
    let p = pack(PackSpec {
        setup: vec![],
        teardown: vec![],
        groups: vec![("g", vec![], vec!["only_rt", "nowhere"], vec![])],
        tasks: vec![
            task("only_rt", json!({"valid_duts": ["RT-1"]})),
            task("nowhere", json!({"valid_duts": ["XX"]})),
        ],
        params: json!({"coverage_mode": "split"}),
    });
    let mut plan = build(&p, vec![dut("s", "TP-4000"), dut("r", "RT-1")], None);
    let log = drive(&mut plan, |_| PASSED);
    assert!(
        log.contains(&("only_rt".into(), "r".into(), PASSED.into())),
        "{log:?}"
    );
    assert_eq!(result_of(&plan, "nowhere").0, SKIPPED);
}

#[test]
fn busy_resources_use_the_delay_queue_on_virtual_time() {
    let clock = ManualClock::new(T0);
    let p = pack(PackSpec {
        setup: vec![],
        teardown: vec![],
        groups: vec![("g", vec![], vec!["needs_ir", "other"], vec![])],
        tasks: vec![
            task(
                "needs_ir",
                json!({"process_safe": true, "max_resource_retry": 2}),
            ),
            task("other", json!({"process_safe": true})),
        ],
        params: json!({"process_limit": 1}),
    });
    let mut plan = build(&p, vec![], None);
    let s = plan.next_starts(clock.now_ms());
    assert_eq!(plan.item(s[0].item).task, "needs_ir");
    let ir = s[0].item;
    let out = plan.resource_busy(ir, clock.now_ms(), T0 + 10_000, "ir_blaster held by run r2");
    assert_eq!(out, BusyOutcome::Delayed { until: T0 + 10_000 });
    assert_eq!(plan.next_wake(), Some(T0 + 10_000));
    assert!(plan.wait_reason(ir, T0).unwrap().contains("retry in 10s"));
    // The slot is free again: the next test goes while needs_ir waits.
    let s = plan.next_starts(clock.now_ms());
    assert_eq!(plan.item(s[0].item).task, "other");
    plan.finish(s[0].item, PASSED, "");
    assert!(
        plan.next_starts(clock.now_ms()).is_empty(),
        "not before its time"
    );
    clock.advance(10_000);
    let s = plan.next_starts(clock.now_ms());
    assert_eq!(s[0].item, ir);
    // Busy again: second retry allowed, the third is one too many.
    assert!(matches!(
        plan.resource_busy(ir, clock.now_ms(), T0 + 20_000, "held"),
        BusyOutcome::Delayed { .. }
    ));
    clock.advance(10_000);
    assert_eq!(plan.next_starts(clock.now_ms())[0].item, ir);
    match plan.resource_busy(ir, clock.now_ms(), T0 + 30_000, "held") {
        BusyOutcome::GaveUp { message } => {
            assert!(message.contains("max_resource_retry"), "{message}")
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(result_of(&plan, "needs_ir").0, ERRORED);
    assert_eq!(plan.drain_settled(), vec![ir]);
    assert!(plan.is_done());
}

#[test]
fn max_resource_wait_gives_up() {
    let p = pack(PackSpec {
        setup: vec![],
        teardown: vec![],
        groups: vec![("g", vec![], vec!["x"], vec![])],
        tasks: vec![task("x", json!({"max_resource_wait": 60}))],
        params: json!({}),
    });
    let mut plan = build(&p, vec![], None);
    let s = plan.next_starts(T0);
    match plan.resource_busy(s[0].item, T0, T0 + 3_600_000, "power_switch busy") {
        BusyOutcome::GaveUp { message } => {
            assert!(message.contains("max_resource_wait"), "{message}")
        }
        o => panic!("{o:?}"),
    }
}

#[test]
fn abort_pending_aborts_what_has_not_started() {
    let p = lifecycle_pack(json!({}));
    let mut plan = build(&p, vec![], None);
    let s = plan.next_starts(T0);
    plan.abort_pending("stopped");
    plan.finish(s[0].item, ABORTED, "stopped");
    assert!(plan.is_done());
    assert_eq!(result_of(&plan, "gt").0, ABORTED);
    assert_eq!(plan.drain_settled().len(), 8);
}

#[test]
fn duplicate_duts_are_refused() {
    let p = lifecycle_pack(json!({}));
    let e = Plan::build(PlanInput {
        pack: &p,
        groups: vec![],
        duts: vec![dut("x", "m"), dut("x", "m")],
        ats: None,
        params: p.def.params.clone(),
        test_order: None,
    })
    .err()
    .unwrap();
    assert_eq!(e, PlanError::DuplicateDut("x".into()));
}

#[test]
fn operator_stop_aborts_setups_and_tests_but_runs_entered_teardowns() {
    let p = lifecycle_pack(json!({}));
    let mut plan = build(&p, vec![], None);
    let mut log = Vec::new();
    // gs, s1 pass; a starts.
    for _ in 0..2 {
        let s = plan.next_starts(T0);
        plan.finish(s[0].item, PASSED, "");
    }
    let a = plan.next_starts(T0)[0].item;
    assert_eq!(plan.item(a).task, "a");
    plan.stop("run stopped by the operator");
    plan.finish(a, ABORTED, "terminated");
    record_settled(&mut plan, &mut log);
    let rest = drive(&mut plan, |_| PASSED);
    let ran: Vec<&str> = rest
        .iter()
        .filter(|x| x.2 == PASSED)
        .map(|x| x.0.as_str())
        .collect();
    assert_eq!(ran, ["t1", "gt"]);
    for t in ["b", "s2", "c"] {
        let (r, m) = result_of(&plan, t);
        assert_eq!(r, ABORTED, "{t}");
        assert!(m.contains("operator"), "{m}");
    }
    assert_eq!(result_of(&plan, "t2").0, SKIPPED, "g2 never started");
}
