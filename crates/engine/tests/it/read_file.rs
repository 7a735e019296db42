//! engine::api `read_file`: a run's logs and artifacts as bytes, never anything outside
//! the run's folder, never more than the cap.

use std::path::Path;

use base64::Engine as _;
use testbay_engine::api::files::MAX_READ_FILE;
use testbay_engine::api::{
    parse_request, ApiError, Console, ConsolePaths, ErrorCode, FileContent, LocalConsole, Response,
};

use crate::support::{run_end, write};

async fn read_file(c: &LocalConsole, run_id: &str, path: &str) -> Result<FileContent, ApiError> {
    let req = serde_json::json!({"cmd": "read_file", "run_id": run_id, "path": path});
    match c
        .dispatch(parse_request(req.to_string().as_bytes())?)
        .await?
    {
        Response::ReadFile(f) => Ok(f),
        other => panic!("unexpected answer {other:?}"),
    }
}

fn decode(f: &FileContent) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(&f.content_base64)
        .unwrap()
}

/// A console with one pack whose task leaves a picture, a report and a symlink to a file
/// outside the data directory; runs it to the end and answers the run id.
async fn finished_run(dir: &Path) -> (LocalConsole, String) {
    let pack = dir.join("packs/art");
    write(
        &pack.join("pack.yaml"),
        "name: art\nversion: 1.0.0\ngroups:\n  smoke:\n    tests: [shoot]\n",
    );
    write(
        &pack.join("tasks/shoot.yaml"),
        "name: shoot\nrun: [bash, shoot.sh]\nest_task_time: 2\n",
    );
    write(&dir.join("secret.txt"), "not for clients\n");
    write(
        &pack.join("tasks/shoot.sh"),
        &format!(
            "a=\"$TESTBAY_ARTIFACTS\"\nmkdir -p \"$a/shots\"\nprintf '\\x89PNG\\x00\\xff' > \"$a/shots/tv.png\"\n\
             echo ok > \"$a/report.txt\"\nln -s {} \"$a/secret.txt\"\necho done\n",
            dir.join("secret.txt").display()
        ),
    );
    let c = LocalConsole::open(ConsolePaths {
        data_dir: dir.join("data"),
        pack_roots: vec![dir.join("packs")],
        lab_file: None,
    })
    .unwrap();
    let mut events = c.subscribe();
    let req = parse_request(br#"{"cmd":"launch","pack":"art"}"#).unwrap();
    let Response::Launch { run_id, .. } = c.dispatch(req).await.unwrap() else {
        panic!()
    };
    run_end(&mut events, &run_id).await;
    (c, run_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_artifacts_and_logs_of_a_run_and_nothing_outside() {
    let dir = tempfile::tempdir().unwrap();
    let (c, run_id) = finished_run(dir.path()).await;
    let req = parse_request(format!(r#"{{"cmd":"get_run","run_id":"{run_id}"}}"#).as_bytes());
    let Response::GetRun(d) = c.dispatch(req.unwrap()).await.unwrap() else {
        panic!()
    };
    let run_folder = dir.path().join("data/runs").join(&run_id);
    let rel = |abs: &str| {
        Path::new(abs)
            .strip_prefix(&run_folder)
            .unwrap_or_else(|_| panic!("{abs} is not below {}", run_folder.display()))
            .to_str()
            .unwrap()
            .to_string()
    };
    let paths = &d.tasks[0].record.paths;
    let artifacts = rel(paths.artifacts_dir.as_deref().unwrap());

    // An artifact: its exact bytes (not UTF-8), size, name and type.
    let png = read_file(&c, &run_id, &format!("{artifacts}/shots/tv.png"))
        .await
        .unwrap();
    assert_eq!(decode(&png), b"\x89PNG\x00\xff");
    assert_eq!(png.size, 6);
    assert_eq!(png.filename, "tv.png");
    assert_eq!(png.mime, "image/png");
    let report = read_file(&c, &run_id, &format!("{artifacts}/report.txt"))
        .await
        .unwrap();
    assert_eq!(decode(&report), b"ok\n");
    assert!(report.mime.starts_with("text/plain"), "{}", report.mime);
    // The task's log, by the path the store keeps.
    let log = read_file(&c, &run_id, &rel(paths.main_log.as_deref().unwrap()))
        .await
        .unwrap();
    assert_eq!(decode(&log), b"done\n");

    // A symlink out of the folder reads as missing, like a file that is not there.
    let e = read_file(&c, &run_id, &format!("{artifacts}/secret.txt"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");
    assert!(!e.message.contains("not for clients"));
    let e = read_file(&c, &run_id, &format!("{artifacts}/nope.txt"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");

    // `..`, absolute paths, an empty path and a run id that is not one name are refused
    // before the disk is looked at.
    let secret = dir.path().join("secret.txt");
    for (run, path) in [
        (run_id.as_str(), "../../../secret.txt".to_string()),
        (
            run_id.as_str(),
            format!("{artifacts}/../../../../secret.txt"),
        ),
        (run_id.as_str(), secret.display().to_string()),
        (run_id.as_str(), String::new()),
        ("..", "../secret.txt".to_string()),
        ("../..", "secret.txt".to_string()),
        ("", "secret.txt".to_string()),
    ] {
        let e = read_file(&c, run, &path).await.unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest, "{run:?} {path:?}: {e}");
    }
    // A folder is not a file.
    let e = read_file(&c, &run_id, &artifacts).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_files_over_the_cap_and_run_folders_that_lead_outside() {
    let dir = tempfile::tempdir().unwrap();
    let c = LocalConsole::open(ConsolePaths {
        data_dir: dir.path().join("data"),
        pack_roots: vec![],
        lab_file: None,
    })
    .unwrap();
    let run = dir.path().join("data/runs/r-1");
    std::fs::create_dir_all(&run).unwrap();
    // Sparse: the size is what counts, the disk holds almost nothing.
    let big = std::fs::File::create(run.join("big.bin")).unwrap();
    big.set_len(MAX_READ_FILE + 1).unwrap();
    let e = read_file(&c, "r-1", "big.bin").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::TooLarge, "{e}");
    assert!(e.message.contains("big.bin"), "{e}");
    let at_cap = std::fs::File::create(run.join("cap.bin")).unwrap();
    at_cap.set_len(MAX_READ_FILE).unwrap();
    let f = read_file(&c, "r-1", "cap.bin").await.unwrap();
    assert_eq!(f.size, MAX_READ_FILE);
    assert_eq!(f.mime, "application/octet-stream");

    // A run folder that is itself a symlink out of runs/ reads nothing.
    let outside = dir.path().join("outside");
    write(&outside.join("x.txt"), "outside\n");
    std::os::unix::fs::symlink(&outside, dir.path().join("data/runs/r-2")).unwrap();
    let e = read_file(&c, "r-2", "x.txt").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");
    // Nor does a symlinked folder inside the run that leads out.
    std::os::unix::fs::symlink(&outside, run.join("sub")).unwrap();
    let e = read_file(&c, "r-1", "sub/x.txt").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound, "{e}");
}
