//! The lab's pack library (`pack::lab_library`, `api::packs`): a pushed pack's archive,
//! who sees which version (viewer, owner, admin, everyone once published), launching a
//! version by name, `NAME@VERSION` or content hash, and pushes refused (broken, a
//! version taken).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use testbay_engine::api::{
    parse_request, ApiError, Caller, Console, ConsolePaths, ErrorCode, LocalConsole, Request,
    Response,
};
use testbay_engine::outcome::RunStatus;
use testbay_engine::pack::{archive, hash};
use testbay_engine::store::Role;

use crate::support::{run_end, write, write_pack};

/// A pack `lib` of `version` whose one test echoes `said`.
fn lib_pack(dir: &Path, version: &str, said: &str) {
    write_pack(
        dir,
        &format!("name: lib\nversion: '{version}'\ngroups:\n  g:\n    tests: [say]\n"),
        &[("say", "", &format!("echo {said}\n"))],
    );
}

fn pushed(dir: &Path, private: bool) -> Request {
    let (bytes, _) = archive::pack_dir(dir).unwrap();
    Request::PushPack {
        archive: archive::to_text(&bytes),
        private,
    }
}

fn console(root: &Path) -> LocalConsole {
    std::fs::create_dir_all(root.join("packs")).unwrap();
    LocalConsole::open(ConsolePaths {
        data_dir: root.join("data"),
        pack_roots: vec![root.join("packs")],
        lab_file: None,
    })
    .unwrap()
}

async fn listed(c: &LocalConsole, who: &Caller) -> Vec<(String, String, String, bool)> {
    let Response::ListPacks(packs) = c.dispatch_as(who, Request::ListPacks).await.unwrap() else {
        panic!()
    };
    packs
        .into_iter()
        .filter_map(|p| {
            let l = p.library?;
            Some((p.name, p.version.unwrap_or_default(), l.owner, l.private))
        })
        .collect()
}

fn code(r: Result<Response, ApiError>) -> ErrorCode {
    r.expect_err("refused").code
}

#[test]
fn an_archive_holds_the_files_their_modes_and_their_hash() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    lib_pack(&src, "1", "hi");
    write(&src.join(".git/HEAD"), "ignored\n");
    let script = src.join("tasks/say.sh");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (bytes, h) = archive::pack_dir(&src).unwrap();
    assert_eq!(h, hash::content_hash(&src).unwrap());
    let to = dir.path().join("to");
    assert_eq!(archive::unpack(&bytes, &to).unwrap(), h);
    assert_eq!(hash::content_hash(&to).unwrap(), h);
    assert!(!to.join(".git").exists());
    let mode = std::fs::metadata(to.join("tasks/say.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    // Damaged: cut short, or not an archive at all.
    assert!(archive::unpack(&bytes[..bytes.len() / 2], &dir.path().join("cut")).is_err());
    assert!(archive::unpack(b"plain text", &dir.path().join("junk")).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_pack_is_seen_by_its_owner_and_admins_until_published() {
    let dir = tempfile::tempdir().unwrap();
    let c = console(dir.path());
    let access = c.access().unwrap();
    let add = |name: &str, role| Caller::user(&access.add_user(name, role).unwrap().0);
    let (vera, otto, ana, adam) = (
        add("vera", Role::Viewer),
        add("otto", Role::Operator),
        add("ana", Role::Operator),
        add("adam", Role::Admin),
    );
    let src = dir.path().join("src");
    lib_pack(&src, "1", "one");

    assert_eq!(
        code(c.dispatch_as(&vera, pushed(&src, true)).await),
        ErrorCode::Forbidden
    );
    let Response::PushPack(p) = c.dispatch_as(&otto, pushed(&src, true)).await.unwrap() else {
        panic!()
    };
    assert!(!p.unchanged && p.pack.ok);
    let mine = ("lib".to_string(), "1".to_string(), "otto".to_string(), true);
    assert_eq!(listed(&c, &otto).await, std::slice::from_ref(&mine));
    assert_eq!(listed(&c, &adam).await, [mine]);
    assert!(listed(&c, &vera).await.is_empty());
    assert!(listed(&c, &ana).await.is_empty());
    let get = || Request::GetPack { name: "lib".into() };
    assert_eq!(code(c.dispatch_as(&ana, get()).await), ErrorCode::NotFound);
    let launch = || parse_request(br#"{"cmd":"launch","pack":"lib"}"#).unwrap();
    assert_eq!(
        code(c.dispatch_as(&ana, launch()).await),
        ErrorCode::NotFound
    );
    let by_hash = Request::Launch(testbay_engine::api::LaunchSpec {
        pack: p.pack.content_hash.clone().unwrap(),
        ..Default::default()
    });
    assert_eq!(
        code(c.dispatch_as(&ana, by_hash).await),
        ErrorCode::NotFound
    );

    // Only its owner or an admin publishes it.
    let publish = || Request::PublishPack { pack: "lib".into() };
    assert_eq!(
        code(c.dispatch_as(&ana, publish()).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(c.dispatch_as(&vera, publish()).await),
        ErrorCode::Forbidden
    );
    let Response::PublishPack(s) = c.dispatch_as(&otto, publish()).await.unwrap() else {
        panic!()
    };
    assert!(!s.library.unwrap().private);
    let public = (
        "lib".to_string(),
        "1".to_string(),
        "otto".to_string(),
        false,
    );
    assert_eq!(listed(&c, &vera).await, std::slice::from_ref(&public));
    assert_eq!(listed(&c, &ana).await, [public]);
    let Response::GetPack(d) = c.dispatch_as(&vera, get()).await.unwrap() else {
        panic!()
    };
    assert_eq!(d.tasks.len(), 1);

    // Another's private version: an operator may not publish it, an admin may.
    lib_pack(&src, "2", "two");
    c.dispatch_as(&otto, pushed(&src, true)).await.unwrap();
    let two = || Request::PublishPack {
        pack: "lib@2".into(),
    };
    assert_eq!(code(c.dispatch_as(&ana, two()).await), ErrorCode::NotFound);
    c.dispatch_as(&adam, two()).await.unwrap();
    assert_eq!(listed(&c, &ana).await.len(), 2);

    // The audit log names the version pushed.
    let q = testbay_engine::api::AuditQuery {
        user: Some("otto".into()),
        ..Default::default()
    };
    let Response::Audit(log) = c.dispatch_as(&adam, Request::Audit(q)).await.unwrap() else {
        panic!()
    };
    let pushes: Vec<_> = log.iter().filter(|e| e.action == "push_pack").collect();
    let targets: Vec<&str> = pushes.iter().map(|e| e.target.as_str()).collect();
    assert_eq!(targets, ["lib@2", "lib@1"]);
    assert!(
        pushes[0].detail.len() < 200,
        "no archive in the log: {}",
        pushes[0].detail
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_stay_launchable_by_name_version_and_hash() {
    let dir = tempfile::tempdir().unwrap();
    let c = console(dir.path());
    let src = dir.path().join("src");
    lib_pack(&src, "1", "said-one");
    let Response::PushPack(one) = c.dispatch(pushed(&src, false)).await.unwrap() else {
        panic!()
    };
    let hash_one = one.pack.content_hash.unwrap();
    // The same again changes nothing; other content under that version is refused.
    let Response::PushPack(again) = c.dispatch(pushed(&src, false)).await.unwrap() else {
        panic!()
    };
    assert!(again.unchanged);
    write(&src.join("tasks/say.sh"), "echo changed\n");
    let taken = c.dispatch(pushed(&src, false)).await.unwrap_err();
    assert_eq!(taken.code, ErrorCode::Conflict, "{taken:?}");
    assert!(taken.message.contains("new version"), "{}", taken.message);
    lib_pack(&src, "2", "said-two");
    c.dispatch(pushed(&src, false)).await.unwrap();

    let mut events = c.subscribe();
    for (reference, version, said) in [
        ("lib", "2", "said-two"),
        ("lib@1", "1", "said-one"),
        (hash_one.as_str(), "1", "said-one"),
    ] {
        let launch = Request::Launch(testbay_engine::api::LaunchSpec {
            pack: reference.into(),
            ..Default::default()
        });
        let Response::Launch { run_id, .. } = c.dispatch(launch).await.unwrap() else {
            panic!()
        };
        assert_eq!(run_end(&mut events, &run_id).await, RunStatus::Completed);
        let Response::GetRun(run) = c
            .dispatch(Request::GetRun {
                run_id: run_id.clone(),
                offset: None,
                limit: None,
            })
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(run.run.launch.pack_version, version, "{reference}");
        let log = run.tasks[0].record.paths.main_log.clone().unwrap();
        let log = std::fs::read_to_string(dir.path().join("data").join(&log))
            .or_else(|_| std::fs::read_to_string(&log))
            .unwrap();
        assert!(log.contains(said), "{reference}: {log}");
        // The run executed from its own snapshot, not from the library's folder.
        let snapshot = run.run.launch.snapshot_dir.clone().unwrap();
        assert!(
            Path::new(&snapshot).starts_with(dir.path().join("data/runs")),
            "{snapshot}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_pack_is_refused_naming_its_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let c = console(dir.path());
    let src = dir.path().join("src");
    lib_pack(&src, "1", "x");
    write(
        &src.join("tasks/say.yaml"),
        "name: say\nrun: [bash, say.sh]\nest_task_time: soon\n",
    );
    let e = c.dispatch(pushed(&src, false)).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::PackBroken, "{e:?}");
    let d = &e.diagnostics[0];
    assert_eq!(d.file, Path::new("tasks/say.yaml"), "{d:?}");
    assert_eq!(d.line, Some(3), "{d:?}");
    assert_eq!(d.key_path.as_deref(), Some("est_task_time"), "{d:?}");
    let Response::ListPacks(packs) = c.dispatch(Request::ListPacks).await.unwrap() else {
        panic!()
    };
    assert!(packs.is_empty(), "nothing stored: {packs:?}");
}

/// A pack pushed as its archive's bytes (`Console::push_pack_as`, what `POST /api/packs`
/// hands over) is the `push_pack` request's push: refused to a viewer, stored private to
/// its owner, the same content hash, audited with its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pack_pushed_as_bytes_is_the_requests_push() {
    let dir = tempfile::tempdir().unwrap();
    let c = console(dir.path());
    let access = c.access().unwrap();
    let add = |name: &str, role| Caller::user(&access.add_user(name, role).unwrap().0);
    let (vera, otto, adam) = (
        add("vera", Role::Viewer),
        add("otto", Role::Operator),
        add("adam", Role::Admin),
    );
    let src = dir.path().join("src");
    lib_pack(&src, "1", "one");
    let (bytes, h) = archive::pack_dir(&src).unwrap();

    assert_eq!(
        code(c.push_pack_as(&vera, bytes.clone(), true).await),
        ErrorCode::Forbidden
    );
    let Response::PushPack(p) = c.push_pack_as(&otto, bytes.clone(), true).await.unwrap() else {
        panic!()
    };
    assert!(!p.unchanged && p.pack.ok);
    assert_eq!(p.pack.content_hash.as_deref(), Some(h.as_str()));
    let mine = ("lib".to_string(), "1".to_string(), "otto".to_string(), true);
    assert_eq!(listed(&c, &otto).await, [mine]);
    assert!(listed(&c, &vera).await.is_empty());
    // Not an archive: refused, nothing stored.
    assert_eq!(
        code(c.push_pack_as(&otto, b"plain text".to_vec(), false).await),
        ErrorCode::InvalidRequest
    );

    let q = testbay_engine::api::AuditQuery {
        user: Some("otto".into()),
        ..Default::default()
    };
    let Response::Audit(log) = c.dispatch_as(&adam, Request::Audit(q)).await.unwrap() else {
        panic!()
    };
    let push = log.iter().find(|e| e.action == "push_pack").unwrap();
    assert_eq!(push.target, "lib@1");
    assert!(
        push.detail
            .contains(&format!("({} bytes uploaded)", bytes.len())),
        "{}",
        push.detail
    );
}
