//! pack: loading, every error class with its file and line, discovery, content hash.

use std::path::Path;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use testbay_engine::diag::Diagnostic;
use testbay_engine::pack::{self, discover, LoadedPack};

use crate::support::repo;

const PACK: &str = "name: p\nversion: '1'\ngroups:\n  smoke:\n    tests: [a]\n";
const TASK_A: &str = "name: a\nrun: ['true']\n";

/// A pack folder in a fresh temp dir: (relative path, contents); `.sh` files are made
/// executable.
fn pack_dir(files: &[(&str, &str)]) -> TempDir {
    let t = tempfile::tempdir().unwrap();
    write_files(t.path(), files);
    t
}

fn write_files(root: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        if rel.ends_with(".sh") {
            chmod_x(&p);
        }
    }
}

fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn errors(dir: &Path) -> Vec<Diagnostic> {
    match pack::load(dir) {
        Ok(_) => panic!("expected {} to be broken", dir.display()),
        Err(e) => e.diagnostics,
    }
}

fn ok(dir: &Path) -> LoadedPack {
    pack::load(dir).unwrap_or_else(|e| panic!("{}", show(&e.diagnostics)))
}

fn show(d: &[Diagnostic]) -> String {
    d.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The one diagnostic whose message contains `needle`, as (file name, line, key path).
fn find<'a>(d: &'a [Diagnostic], needle: &str) -> &'a Diagnostic {
    let hits: Vec<_> = d.iter().filter(|d| d.message.contains(needle)).collect();
    assert_eq!(hits.len(), 1, "`{needle}` in:\n{}", show(d));
    hits[0]
}

fn at(d: &Diagnostic) -> (String, Option<u32>, Option<&str>) {
    (
        d.file.file_name().unwrap().to_string_lossy().into_owned(),
        d.line,
        d.key_path.as_deref(),
    )
}

#[test]
fn demo_packs_load_cleanly() {
    for name in ["stb-smoke", "net-regression"] {
        let p = ok(&repo().join("packs").join(name));
        assert_eq!(p.def.name, name);
        assert!(p.dir.is_absolute());
        assert_eq!(p.content_hash.len(), 64);
    }
    let p = ok(&repo().join("packs/stb-smoke"));
    assert!(p.tasks["tune_channel"]
        .def
        .prereq_tasks
        .contains(&"boot".to_string()));
    assert_eq!(p.tasks["boot"].file, p.dir.join("tasks/boot.yaml"));
    assert_eq!(p.tasks["boot"].dir, p.dir.join("tasks"));
}

#[test]
fn minimal_pack_loads_with_defaults() {
    let t = pack_dir(&[("pack.yaml", PACK), ("tasks/a.yaml", TASK_A)]);
    let p = ok(t.path());
    let a = &p.tasks["a"].def;
    assert_eq!(a.est_task_time, 3600.0);
    assert!(a.stop_suite_on_fail);
    assert_eq!(a.valid_duts, ["any"]);
    assert_eq!(p.def.params.process_limit, 5);
}

#[test]
fn typo_key_in_a_task_points_at_its_line() {
    let t = pack_dir(&[
        ("pack.yaml", PACK),
        (
            "tasks/a.yaml",
            "name: a\nrun: ['true']\n\nprereq_task: [b]\n",
        ),
    ]);
    let d = errors(t.path());
    let e = find(&d, "did you mean `prereq_tasks`?");
    assert_eq!(at(e), ("a.yaml".into(), Some(4), Some("prereq_task")));
    assert_eq!(e.column, Some(1));
}

#[test]
fn group_naming_a_missing_task() {
    let t = pack_dir(&[
        ("pack.yaml", "name: p\nversion: '1'\nsetup: [a]\ngroups:\n  smoke:\n    tests:\n      - a\n      - aa\n      - zzz\n"),
        ("tasks/a.yaml", TASK_A),
    ]);
    let d = errors(t.path());
    assert_eq!(d.len(), 2, "{}", show(&d));
    assert_eq!(
        at(find(&d, "task `aa` does not exist; did you mean `a`?")),
        ("pack.yaml".into(), Some(8), Some("groups.smoke.tests[1]"))
    );
    assert_eq!(
        at(find(&d, "task `zzz` does not exist")),
        ("pack.yaml".into(), Some(9), Some("groups.smoke.tests[2]"))
    );
}

#[test]
fn prereq_naming_a_missing_task() {
    let t = pack_dir(&[
        ("pack.yaml", PACK),
        (
            "tasks/a.yaml",
            "name: a\nrun: ['true']\nprereq_tasks: [boot]\n",
        ),
    ]);
    let d = errors(t.path());
    assert_eq!(
        at(find(&d, "prereq task `boot` does not exist")),
        ("a.yaml".into(), Some(3), Some("prereq_tasks[0]"))
    );
}

#[test]
fn prereq_cycle_is_named() {
    let t = pack_dir(&[
        ("pack.yaml", PACK),
        (
            "tasks/a.yaml",
            "name: a\nrun: ['true']\nprereq_tasks: [b]\n",
        ),
        (
            "tasks/b.yaml",
            "name: b\nrun: ['true']\nprereq_tasks: [c]\n",
        ),
        (
            "tasks/c.yaml",
            "name: c\nrun: ['true']\nprereq_tasks:\n  - d\n  - a\n",
        ),
        ("tasks/d.yaml", "name: d\nrun: ['true']\n"),
        (
            "tasks/s.yaml",
            "name: s\nrun: ['true']\nprereq_tasks: [s]\n",
        ),
    ]);
    let d = errors(t.path());
    assert_eq!(d.len(), 2, "{}", show(&d));
    let e = find(&d, "prereq cycle: a → b → c → a");
    assert_eq!(at(e), ("a.yaml".into(), Some(3), Some("prereq_tasks[0]")));
    assert_eq!(
        at(find(&d, "prereq cycle: s → s")),
        ("s.yaml".into(), Some(3), Some("prereq_tasks[0]"))
    );
}

#[test]
fn duplicate_task_names_and_name_file_mismatch() {
    let t = pack_dir(&[
        ("pack.yaml", PACK),
        ("tasks/a.yaml", TASK_A),
        (
            "tasks/a.yml",
            "# the same task again\nname: a\nrun: ['true']\n",
        ),
        ("tasks/b.yaml", "name: bee\nrun: ['true']\n"),
    ]);
    let d = errors(t.path());
    assert_eq!(d.len(), 2, "{}", show(&d));
    let dup = find(&d, "duplicate task name `a`");
    assert_eq!(at(dup), ("a.yml".into(), Some(2), Some("name")));
    assert!(
        dup.message.contains("a.yaml declares it too"),
        "{}",
        dup.message
    );
    assert_eq!(
        at(find(&d, "must match its file name (`b`)")),
        ("b.yaml".into(), Some(1), Some("name"))
    );
}

#[test]
fn programs_that_cannot_be_found() {
    let t = pack_dir(&[
        ("pack.yaml", PACK),
        ("tasks/a.yaml", "name: a\nrun: [./missing.sh]\nsetup: [no-such-program-4711]\nteardown: [python3, -u, gone.py]\n"),
        ("tasks/b.yaml", "name: b\nrun: [./plain.txt]\n"),
        ("tasks/plain.txt", "not executable"),
        ("tasks/c.yaml", "name: c\nrun: []\n"),
    ]);
    let d = errors(t.path());
    assert_eq!(d.len(), 5, "{}", show(&d));
    assert_eq!(
        at(find(&d, "`./missing.sh` not found")),
        ("a.yaml".into(), Some(2), Some("run[0]"))
    );
    assert_eq!(
        at(find(&d, "program `no-such-program-4711` not found on PATH")),
        ("a.yaml".into(), Some(3), Some("setup[0]"))
    );
    assert_eq!(
        at(find(&d, "`gone.py` not found")),
        ("a.yaml".into(), Some(4), Some("teardown[2]"))
    );
    assert_eq!(
        at(find(&d, "is not executable")),
        ("b.yaml".into(), Some(2), Some("run[0]"))
    );
    assert_eq!(
        at(find(&d, "must name a program")),
        ("c.yaml".into(), Some(2), Some("run"))
    );
}

#[test]
fn run_paths_that_leave_the_pack_folder() {
    let outside = tempfile::tempdir().unwrap();
    write_files(outside.path(), &[("evil.sh", "#!/bin/sh\n")]);
    let t = pack_dir(&[
        ("pack.yaml", PACK),
        ("tasks/a.yaml", "name: a\nrun: [../../escape.sh]\n"),
        ("tasks/b.yaml", "name: b\nrun: [/bin/true]\n"),
        ("tasks/c.yaml", "name: c\nrun: [./link.sh]\n"),
        (
            "tasks/d.yaml",
            "name: d\nrun: [bash, ../tasks/../../x.sh]\n",
        ),
        ("tasks/e.yaml", "name: e\nrun: [../bin/ok.sh]\n"),
        ("bin/ok.sh", "#!/bin/sh\n"),
    ]);
    std::os::unix::fs::symlink(
        outside.path().join("evil.sh"),
        t.path().join("tasks/link.sh"),
    )
    .unwrap();
    let d = errors(t.path());
    assert_eq!(d.len(), 4, "{}", show(&d));
    assert_eq!(
        at(find(&d, "`../../escape.sh` leaves the pack folder")),
        ("a.yaml".into(), Some(2), Some("run[0]"))
    );
    assert_eq!(
        at(find(&d, "`/bin/true` is an absolute path")),
        ("b.yaml".into(), Some(2), Some("run[0]"))
    );
    let link = find(&d, "`./link.sh` leaves the pack folder (it resolves to");
    assert_eq!(at(link), ("c.yaml".into(), Some(2), Some("run[0]")));
    assert_eq!(
        at(find(&d, "`../tasks/../../x.sh` leaves the pack folder")),
        ("d.yaml".into(), Some(2), Some("run[1]"))
    );
}

#[test]
fn a_symlink_inside_the_pack_is_fine() {
    let t = pack_dir(&[
        ("pack.yaml", PACK),
        ("tasks/a.yaml", "name: a\nrun: [./link.sh]\n"),
        ("lib/real.sh", "#!/bin/sh\n"),
    ]);
    std::os::unix::fs::symlink("../lib/real.sh", t.path().join("tasks/link.sh")).unwrap();
    ok(t.path());
}

#[test]
fn non_utf8_files_are_named_with_line() {
    let t = pack_dir(&[("pack.yaml", PACK), ("tasks/a.yaml", TASK_A)]);
    std::fs::write(
        t.path().join("tasks/b.yaml"),
        b"name: b\n# caf\xe9\nrun: ['true']\n",
    )
    .unwrap();
    let d = errors(t.path());
    assert_eq!(d.len(), 1, "{}", show(&d));
    assert_eq!(at(&d[0]), ("b.yaml".into(), Some(2), None));
    assert!(d[0].message.contains("not valid UTF-8"), "{}", d[0].message);
}

#[test]
fn absurd_numbers() {
    let t = pack_dir(&[
        (
            "pack.yaml",
            "name: p\nversion: '1'\nparams:\n  process_limit: 0\n",
        ),
        (
            "tasks/a.yaml",
            "name: a\nrun: ['true']\nmax_runtime: -5\nest_task_time: -1\nmax_resource_retry: -2\n",
        ),
        (
            "tasks/b.yaml",
            "name: b\nrun: ['true']\nmax_runtime: 0\nmax_resource_wait: -1\n",
        ),
    ]);
    let d = errors(t.path());
    assert_eq!(d.len(), 6, "{}", show(&d));
    assert_eq!(
        at(find(&d, "must be at least 1 (found 0)")),
        ("pack.yaml".into(), Some(4), Some("params.process_limit"))
    );
    assert_eq!(
        at(find(&d, "must be at least 0 (found -5)")),
        ("a.yaml".into(), Some(3), Some("max_runtime"))
    );
    assert_eq!(key(&d, "a.yaml", "est_task_time").line, Some(4));
    assert_eq!(
        key(&d, "a.yaml", "max_resource_retry").message,
        "must be at least 0 (found -2)"
    );
    assert!(key(&d, "b.yaml", "max_runtime")
        .message
        .contains("must be more than 0 seconds"));
    assert_eq!(
        key(&d, "b.yaml", "max_resource_wait").message,
        "must be at least 0 (found -1)"
    );
}

#[test]
fn numbers_beyond_their_documented_range_are_reported_with_line_key_and_bound() {
    // Each of these passed the check before and then broke the engine: an overflow in the
    // broker, a panic in the phase timer, a hold until the year 292,278,994.
    let d = errors(&repo().join("tests/fixtures/bounds/out-of-range"));
    let expect = [
        (
            "pack.yaml",
            6,
            "params.process_limit",
            "must be at most 1024 (found 100000)",
        ),
        (
            "forever.yaml",
            3,
            "max_runtime",
            "must be at most 604800 (found 1e20)",
        ),
        (
            "forever.yaml",
            4,
            "max_resource_wait",
            "must be at most 2592000 (found 1e300)",
        ),
        (
            "huge_estimate.yaml",
            3,
            "est_task_time",
            "must be at most 604800 (found 1e300)",
        ),
        (
            "huge_estimate.yaml",
            4,
            "max_resource_retry",
            "must be at most 10000 (found 4000000000)",
        ),
        (
            "huge_estimate.yaml",
            5,
            "priority",
            "must be at most 1000000 (found 2000000000)",
        ),
        (
            "far_estimate.yaml",
            3,
            "est_task_time",
            "must be at most 604800 (found 1e20)",
        ),
    ];
    for (file, line, key_path, message) in expect {
        let got = key(&d, file, key_path);
        assert_eq!(
            (got.line, got.message.as_str()),
            (Some(line), message),
            "{}",
            show(&d)
        );
    }
    assert_eq!(d.len(), expect.len(), "{}", show(&d));
    // The lower ends are bounds too.
    let t = pack_dir(&[
        ("pack.yaml", PACK),
        (
            "tasks/a.yaml",
            "name: a\nrun: ['true']\npriority: -1000001\n",
        ),
    ]);
    assert_eq!(
        key(&errors(t.path()), "a.yaml", "priority").message,
        "must be at least -1000000 (found -1000001)"
    );
    // At the bounds, a pack loads.
    let t = pack_dir(&[
        ("pack.yaml", "name: p\nversion: '1'\nparams:\n  process_limit: 1024\ngroups:\n  smoke:\n    tests: [a]\n"),
        ("tasks/a.yaml", "name: a\nrun: ['true']\nest_task_time: 604800\nmax_runtime: 604800\nmax_resource_wait: 2592000\nmax_resource_retry: 10000\npriority: -1000000\n"),
    ]);
    ok(t.path());
}

/// The one diagnostic of `file` at `key_path`.
fn key<'a>(d: &'a [Diagnostic], file: &str, key_path: &str) -> &'a Diagnostic {
    let hits: Vec<_> = d
        .iter()
        .filter(|x| x.file.ends_with(file) && x.key_path.as_deref() == Some(key_path))
        .collect();
    assert_eq!(hits.len(), 1, "{file} {key_path} in:\n{}", show(d));
    hits[0]
}

#[test]
fn resource_configs_must_name_a_resource_of_the_task() {
    let t = pack_dir(&[
        ("pack.yaml", PACK),
        ("tasks/a.yaml", "name: a\nrun: ['true']\nshared_resources: [stream_server]\nresource_configs:\n  stream_server: {profile: hd}\n  stream_sever: {}\n  ir_blaster: {}\n"),
    ]);
    let d = errors(t.path());
    assert_eq!(d.len(), 2, "{}", show(&d));
    assert!(key(&d, "a.yaml", "resource_configs.stream_sever")
        .message
        .contains("did you mean `stream_server`?"));
    assert_eq!(
        key(&d, "a.yaml", "resource_configs.ir_blaster").line,
        Some(7)
    );
}

#[test]
fn custom_resource_modes_need_a_scheduler() {
    let t = pack_dir(&[(
        "pack.yaml",
        "name: p\nversion: '1'\nparams:\n  resource_mode: custom_all\n",
    )]);
    let d = errors(t.path());
    assert_eq!(
        at(find(&d, "needs a `scheduler`")),
        ("pack.yaml".into(), Some(4), Some("params.resource_mode"))
    );
    let t = pack_dir(&[
        ("pack.yaml", "name: p\nversion: '1'\nparams:\n  resource_mode: custom_all\nscheduler: [./order.sh]\n"),
        ("order.sh", "#!/bin/sh\ncat\n"),
    ]);
    ok(t.path());
}

#[test]
fn global_params_allow_free_keys_but_not_near_misses() {
    let t = pack_dir(&[(
        "pack.yaml",
        "name: p\nversion: '1'\nparams:\n  channel_list: [1]\n  proces_limit: 2\n",
    )]);
    let d = errors(t.path());
    assert_eq!(d.len(), 1, "{}", show(&d));
    assert_eq!(
        at(&d[0]),
        ("pack.yaml".into(), Some(5), Some("params.proces_limit"))
    );
    assert!(d[0].message.contains("did you mean `process_limit`?"));
}

#[test]
fn missing_pack_yaml_and_missing_folder() {
    let t = tempfile::tempdir().unwrap();
    let d = errors(t.path());
    assert!(
        d[0].message.contains("a pack folder holds a pack.yaml"),
        "{}",
        show(&d)
    );
    let d = errors(&t.path().join("nope"));
    assert_eq!(d[0].message, "not a folder");
}

#[test]
fn alias_bomb_in_a_pack_is_refused_fast() {
    let mut text =
        String::from("name: p\nversion: '1'\nparams:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..40 {
        let p = i - 1;
        text.push_str(&format!("  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"));
    }
    let t = pack_dir(&[("pack.yaml", &text)]);
    let start = Instant::now();
    let e = pack::load(t.path()).unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(e.diagnostics.len(), 1, "{}", show(&e.diagnostics));
    assert!(e.diagnostics[0].message.contains("alias bomb"));
    assert_eq!(e.diagnostics[0].line, Some(8));
}

#[test]
fn every_problem_of_the_broken_fixture_at_once() {
    let dir = repo().join("tests/fixtures/packs/broken-typo");
    let e = pack::load(&dir).unwrap_err();
    let d = &e.diagnostics;
    // The broken pack is still named, so a listing can show it.
    assert_eq!(e.name.as_deref(), Some("broken-typo"));
    assert_eq!(e.version.as_deref(), Some("0.3.0"));
    assert_eq!(
        at(find(d, "did you mean `prereq_tasks`?")),
        ("tune_channel.yaml".into(), Some(4), Some("prereq_task"))
    );
    assert_eq!(
        at(find(
            d,
            "task `tune_chanel` does not exist; did you mean `tune_channel`?"
        ))
        .1,
        Some(8)
    );
    assert_eq!(
        at(find(d, "`./missing_program.sh` not found")),
        ("record.yaml".into(), Some(3), Some("run[0]"))
    );
    assert_eq!(
        at(find(d, "did you mean `process_limit`?")),
        ("pack.yaml".into(), Some(5), Some("params.proces_limit"))
    );
    assert_eq!(
        at(find(d, "must be at least 0 (found -30)")),
        ("soak.yaml".into(), Some(4), Some("max_runtime"))
    );
    assert_eq!(d.len(), 5, "{}", show(d));
}

#[test]
fn discover_lists_every_pack_and_a_broken_one_never_stops_the_others() {
    let root = tempfile::tempdir().unwrap();
    write_files(
        root.path(),
        &[
            ("good/pack.yaml", PACK),
            ("good/tasks/a.yaml", TASK_A),
            (
                "bad/pack.yaml",
                "name: bad\nversion: '1'\ngroups: {g: {tests: [nope]}}\n",
            ),
            ("zz-good/pack.yaml", "name: zz\nversion: '2'\n"),
            ("not-a-pack/readme.txt", "hi"),
            (".hidden/pack.yaml", PACK),
        ],
    );
    let single = pack_dir(&[("pack.yaml", "name: solo\nversion: '1'\n")]);
    let missing = root.path().join("missing-root");
    let entries = discover(&[
        root.path().to_path_buf(),
        single.path().to_path_buf(),
        missing.clone(),
    ]);
    let names: Vec<_> = entries
        .iter()
        .map(|e| e.dir.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let single_name = single
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(
        names,
        [
            "bad",
            "good",
            "zz-good",
            single_name.as_str(),
            "missing-root"
        ]
    );
    assert!(entries[0].result.is_err());
    assert_eq!(entries[1].result.as_ref().unwrap().def.name, "p");
    assert_eq!(entries[2].result.as_ref().unwrap().def.name, "zz");
    assert_eq!(entries[3].result.as_ref().unwrap().def.name, "solo");
    let e = entries[4].result.as_ref().unwrap_err();
    assert!(
        e.diagnostics[0].message.contains("no such folder"),
        "{}",
        show(&e.diagnostics)
    );
}

#[test]
fn content_hash_follows_the_files() {
    let t = pack_dir(&[
        ("pack.yaml", PACK),
        ("tasks/a.yaml", TASK_A),
        ("tasks/data.txt", "1"),
    ]);
    let h1 = ok(t.path()).content_hash;
    assert_eq!(ok(t.path()).content_hash, h1);
    write_files(
        t.path(),
        &[("tasks/__pycache__/x.pyc", "junk"), (".git/HEAD", "x")],
    );
    assert_eq!(
        ok(t.path()).content_hash,
        h1,
        "caches and hidden files are not part of a pack"
    );
    write_files(t.path(), &[("tasks/data.txt", "2")]);
    let h2 = ok(t.path()).content_hash;
    assert_ne!(h2, h1);
    std::fs::rename(
        t.path().join("tasks/data.txt"),
        t.path().join("tasks/data2.txt"),
    )
    .unwrap();
    assert_ne!(ok(t.path()).content_hash, h2, "a rename changes the hash");
}

/// Poll `rx` until a change arrives; the bound only keeps a broken watcher from hanging.
fn wait_change(
    rx: &mut tokio::sync::broadcast::Receiver<pack::LibraryChange>,
) -> pack::LibraryChange {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rx.try_recv() {
            Ok(c) => return c,
            Err(tokio::sync::broadcast::error::TryRecvError::Empty) => {
                assert!(Instant::now() < deadline, "no library change arrived");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn library_watches_its_roots_and_reloads_changed_packs() {
    let root = tempfile::tempdir().unwrap();
    write_files(
        root.path(),
        &[("one/pack.yaml", PACK), ("one/tasks/a.yaml", TASK_A)],
    );
    let lib = pack::Library::open(vec![root.path().to_path_buf()]);
    assert!(lib.summaries()[0].ok);
    let mut rx = lib.subscribe();
    lib.watch().unwrap();

    // Break a task: the pack is listed broken, with the line.
    write_files(
        root.path(),
        &[("one/tasks/a.yaml", "name: a\nrun: ['true']\npriorty: 1\n")],
    );
    let broken_at_line_3 = || {
        let s = &lib.summaries()[0];
        !s.ok && s.diagnostics.first().and_then(|d| d.line) == Some(3)
    };
    while !broken_at_line_3() {
        let change = wait_change(&mut rx);
        assert_eq!(change.dirs, [root.path().join("one")]);
    }
    assert!(lib.get("p").is_none());

    // A new pack folder appears beside it; the old entry is kept as it was. (Its files
    // may arrive in more than one batch of events: wait until the library shows them.)
    write_files(
        root.path(),
        &[("two/pack.yaml", "name: two\nversion: '1'\n")],
    );
    let names = || -> Vec<(String, bool)> {
        lib.summaries()
            .into_iter()
            .map(|s| (s.name, s.ok))
            .collect()
    };
    let want = [("p".to_string(), false), ("two".to_string(), true)];
    while names() != want {
        let change = wait_change(&mut rx);
        assert!(change.dirs.contains(&root.path().join("two")), "{change:?}");
    }

    // Fix the task: loaded again.
    write_files(root.path(), &[("one/tasks/a.yaml", TASK_A)]);
    while lib.get("p").is_none() {
        wait_change(&mut rx);
    }
}

#[test]
fn pack_detail_shows_resources_prereqs_and_estimates() {
    let lib = pack::Library::open(vec![repo().join("packs")]);
    let d = lib.detail("stb-smoke").unwrap();
    assert!(d.summary.ok);
    assert_eq!(d.summary.task_count, 13);
    let ir = d.resources.iter().find(|r| r.name == "ir_blaster").unwrap();
    assert_eq!(
        ir.exclusive_in,
        ["ir_remote", "record_show", "tune_channel"]
    );
    let stream = d
        .resources
        .iter()
        .find(|r| r.name == "stream_server")
        .unwrap();
    assert!(stream.exclusive_in.is_empty());
    assert!(stream.shared_in.contains(&"tune_channel".to_string()));
    assert!(d
        .prereq_edges
        .iter()
        .any(|e| e.task == "tune_channel" && e.prereq == "boot"));
    let smoke = d.summary.groups.iter().find(|g| g.name == "smoke").unwrap();
    let p = lib.get("stb-smoke").unwrap();
    let sum: f64 = [
        "clear_cache",
        "boot",
        "tune_channel",
        "channel_scan",
        "ir_remote",
        "soak_playback",
        "record_show",
        "collect_logs",
    ]
    .iter()
    .map(|t| p.tasks[*t].def.est_task_time)
    .sum();
    assert_eq!(smoke.est_time, sum);
    assert_eq!(d.global_est_time, 2.0);
    let boot = d.tasks.iter().find(|t| t.name == "boot").unwrap();
    assert_eq!(boot.used_by, ["smoke", "regression"]);
    let channel_list = d.params.iter().find(|p| p.key == "channel_list").unwrap();
    assert!(!channel_list.known);
    assert!(d
        .params
        .iter()
        .any(|p| p.key == "process_limit" && p.known && p.value == 2));
    // A broken pack has a detail page too: its diagnostics.
    let lib = pack::Library::open(vec![repo().join("tests/fixtures/packs")]);
    let d = lib.detail("broken-typo").unwrap();
    assert!(!d.summary.ok && d.def.is_none());
    assert_eq!(d.summary.diagnostics.len(), 5);
}

#[test]
fn a_second_pack_with_the_same_name_is_listed_broken() {
    let root = tempfile::tempdir().unwrap();
    write_files(
        root.path(),
        &[
            ("a/pack.yaml", "name: same\nversion: '1'\n"),
            ("b/pack.yaml", "name: same\nversion: '2'\n"),
        ],
    );
    let entries = discover(&[root.path().to_path_buf()]);
    assert_eq!(entries[0].result.as_ref().unwrap().def.version, "1");
    let e = entries[1].result.as_ref().unwrap_err();
    assert_eq!(e.version.as_deref(), Some("2"));
    assert_eq!(
        at(&e.diagnostics[0]),
        ("pack.yaml".into(), None, Some("name"))
    );
    assert!(e.diagnostics[0]
        .message
        .starts_with("another pack named `same` is at"));
}

#[test]
fn yaml_syntax_errors_point_at_what_to_fix() {
    // Each file of the fixture breaks YAML in its own way; each is reported where a reader
    // must fix it, with the parser's own place as context (before, only where the parser gave
    // up: pack.yaml at 9:1, the end of the file, for the `[` left open on line 8).
    let dir = repo().join("tests/fixtures/syntax/broken-yaml");
    let e = pack::load(&dir).unwrap_err();
    let got: Vec<(String, String, &str, &str)> = e
        .diagnostics
        .iter()
        .map(|d| {
            let (head, stop) = d.message.split_once(" (the parser stopped at ").unwrap();
            let place = format!("{}:{}", d.line.unwrap(), d.column.unwrap());
            (at(d).0, place, head, stop.split(": ").next().unwrap())
        })
        .collect();
    let want = [
        ("pack.yaml", "8:12", "YAML syntax: unclosed `[`: the list opened here is still open where the parser stopped; close it with `]`", "9:1"),
        ("boot.yaml", "4:1", "YAML syntax: a tab indents this line; YAML indents with spaces only", "4:2"),
        ("clean.yaml", "4:11", "YAML syntax: unclosed `{`: the mapping opened here is still open where the parser stopped; close it with `}`", "6:14"),
        ("flash.yaml", "2:17", "YAML syntax: this `'` ends the quoted value started at 2:14, and text follows it; write `''` for a `'` inside the value", "2:18"),
        ("record.yaml", "2:14", "YAML syntax: unclosed `\"`: the quoted value started here is not closed on its line; write the closing `\"`", "3:1"),
        ("soak.yaml", "4:19", "YAML syntax: the list opened here with `[` is closed by `}` at 4:24; close it with `]`", "4:24"),
        ("tune.yaml", "6:4", "YAML syntax: bad indentation: this line is indented 3 spaces, deeper than the key above it, so it continues the value started at 5:12, and a value cannot hold `: `; indent it like a key above: 2 (line 5) or 0 (line 4)", "6:8"),
    ];
    let want: Vec<(String, String, &str, &str)> = want
        .iter()
        .map(|(f, p, m, s)| (f.to_string(), p.to_string(), *m, *s))
        .collect();
    assert_eq!(got, want, "{}", show(&e.diagnostics));
    assert!(
        e.diagnostics[0].message.ends_with(
            "(the parser stopped at 9:1: while parsing a flow sequence, expected ',' or ']')"
        ),
        "{}",
        e.diagnostics[0].message
    );
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: plain syscall on a valid C string.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) },
        0,
        "mkfifo {p:?}"
    );
}

/// `f()` on a thread of its own; fails the test when it has not returned within 20 s
/// (the thread is left behind: what it waits on never comes).
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what} did not return within 20 s"))
}

/// A named pipe where a pack file goes used to be opened for reading, which waits for a
/// writer forever (`packs check` hung, `serve` never listened). Now it is a problem of
/// the file, and a device link is one too.
#[test]
fn pack_files_that_are_not_files_are_named_not_waited_on() {
    let t = pack_dir(&[("pack.yaml", PACK), ("tasks/a.yaml", TASK_A)]);
    mkfifo(&t.path().join("tasks/b.yaml"));
    std::os::unix::fs::symlink("/dev/zero", t.path().join("tasks/c.yaml")).unwrap();
    let dir = t.path().to_path_buf();
    let d = within("pack::load", move || errors(&dir));
    let e = find(&d, "is a named pipe, not a file");
    assert_eq!(at(e), ("b.yaml".into(), None, None));
    let e = find(&d, "is a device, not a file");
    assert_eq!(at(e), ("c.yaml".into(), None, None));

    // pack.yaml itself: a broken pack that says so, in discovery too.
    let t = pack_dir(&[("tasks/a.yaml", TASK_A)]);
    mkfifo(&t.path().join("pack.yaml"));
    let dir = t.path().to_path_buf();
    let d = within("pack::load", move || errors(&dir));
    let e = find(&d, "is a named pipe, not a file");
    assert_eq!(at(e), ("pack.yaml".into(), None, None));
    let roots = vec![t.path().to_path_buf()];
    let entries = within("discover", move || discover(&roots));
    assert_eq!(entries.len(), 1);
    let d = &entries[0].result.as_ref().unwrap_err().diagnostics;
    find(d, "is a named pipe, not a file");
}

/// A named pipe made in a watched pack used to stop the watcher thread for good: packs
/// added afterwards never appeared.
#[test]
fn the_library_keeps_watching_after_a_named_pipe_appears() {
    let root = tempfile::tempdir().unwrap();
    write_files(
        root.path(),
        &[("one/pack.yaml", PACK), ("one/tasks/a.yaml", TASK_A)],
    );
    let lib = pack::Library::open(vec![root.path().to_path_buf()]);
    let mut rx = lib.subscribe();
    lib.watch().unwrap();
    mkfifo(&root.path().join("one/tasks/b.yaml"));
    let piped = || {
        let s = &lib.summaries()[0];
        !s.ok
            && s.diagnostics
                .iter()
                .any(|d| d.message == "is a named pipe, not a file")
    };
    while !piped() {
        wait_change(&mut rx);
    }
    write_files(
        root.path(),
        &[("two/pack.yaml", "name: two\nversion: '1'\n")],
    );
    while lib.get("two").is_none() {
        wait_change(&mut rx);
    }
}

/// A pack holding a huge (sparse) file used to be read whole into memory by every load
/// (and every run's snapshot): `packs check` of a pack with a 20 GiB sparse file ran out of
/// memory. The pack's size is checked before anything is read.
#[test]
fn a_pack_over_its_size_bound_is_broken_at_once() {
    let t = pack_dir(&[("pack.yaml", PACK), ("tasks/a.yaml", TASK_A)]);
    std::fs::File::create(t.path().join("blob.bin"))
        .unwrap()
        .set_len(testbay_engine::bounds::MAX_PACK_BYTES + 1)
        .unwrap();
    let dir = t.path().to_path_buf();
    let d = within("pack::load", move || errors(&dir));
    let e = find(&d, "the pack's files hold more than 1024 MiB");
    assert!(e.message.contains("blob.bin"), "{}", e.message);
}

/// The content hash is sha256 over each file's relative path, a 0 byte, its length (u64,
/// little-endian) and its bytes, in path order: stored runs name packs by it, so reading
/// the files piece by piece must not change it.
#[test]
fn content_hash_is_sha256_of_paths_lengths_and_bytes() {
    use sha2::{Digest, Sha256};
    let t = pack_dir(&[("pack.yaml", PACK), ("tasks/a.yaml", TASK_A)]);
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(t.path().join("data.bin"), &big).unwrap();
    let mut h = Sha256::new();
    for (rel, bytes) in [
        ("data.bin", &big[..]),
        ("pack.yaml", PACK.as_bytes()),
        ("tasks/a.yaml", TASK_A.as_bytes()),
    ] {
        h.update(rel.as_bytes());
        h.update([0u8]);
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    assert_eq!(ok(t.path()).content_hash, hex::encode(h.finalize()));
}
