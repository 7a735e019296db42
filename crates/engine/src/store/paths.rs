//! A task occurrence's paths stored once: each path under its run's folder (the folder
//! holding the run's pack snapshot, `runs.snapshot_dir`'s parent) is stored relative to
//! it, so the rows of a run do not repeat the data directory and the run's id in five
//! columns each. Readers see the absolute paths written. A path outside the run's folder,
//! and every path of a run without a snapshot or whose snapshot path is relative, is
//! stored as given. Both backends write and read through these two functions, and their
//! migrations convert older rows by the same rule (the folder is the snapshot path up to
//! its last `/`).

use super::TaskPaths;

/// The run's folder with its trailing `/`, from its snapshot path: the paths of its
/// tasks are stored relative to it. `None` without a snapshot or for a relative one.
pub fn run_folder(snapshot_dir: Option<&str>) -> Option<&str> {
    let s = snapshot_dir?;
    if !s.starts_with('/') {
        return None;
    }
    s.rfind('/').map(|i| &s[..=i])
}

/// `paths` as stored for a run whose folder is `folder`.
pub fn to_stored(paths: &TaskPaths, folder: Option<&str>) -> TaskPaths {
    let rel = |p: &Option<String>| -> Option<String> {
        let p = p.as_deref()?;
        Some(match folder {
            Some(f) if p.len() > f.len() && p.starts_with(f) => p[f.len()..].to_string(),
            _ => p.to_string(),
        })
    };
    TaskPaths {
        task_dir: rel(&paths.task_dir),
        setup_log: rel(&paths.setup_log),
        main_log: rel(&paths.main_log),
        teardown_log: rel(&paths.teardown_log),
        artifacts_dir: rel(&paths.artifacts_dir),
    }
}

/// Stored `paths` of a run whose folder is `folder` made absolute again, in place.
pub fn from_stored(paths: &mut TaskPaths, folder: Option<&str>) {
    let Some(f) = folder else {
        return;
    };
    for p in [
        &mut paths.task_dir,
        &mut paths.setup_log,
        &mut paths.main_log,
        &mut paths.teardown_log,
        &mut paths.artifacts_dir,
    ]
    .into_iter()
    .flatten()
    {
        if !p.starts_with('/') {
            p.insert_str(0, f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_the_run_folder_go_relative_and_come_back() {
        let folder = run_folder(Some("/data/runs/r1/pack"));
        assert_eq!(folder, Some("/data/runs/r1/"));
        let paths = TaskPaths {
            task_dir: Some("/data/runs/r1/stb-01/t0".into()),
            main_log: Some("/data/runs/r1/stb-01/t0/main.log".into()),
            setup_log: Some("/elsewhere/setup.log".into()),
            teardown_log: None,
            artifacts_dir: Some("/data/runs/r1/".into()),
        };
        let stored = to_stored(&paths, folder);
        assert_eq!(stored.task_dir.as_deref(), Some("stb-01/t0"));
        assert_eq!(stored.main_log.as_deref(), Some("stb-01/t0/main.log"));
        assert_eq!(stored.setup_log.as_deref(), Some("/elsewhere/setup.log"));
        assert_eq!(stored.artifacts_dir.as_deref(), Some("/data/runs/r1/"));
        let mut back = stored;
        from_stored(&mut back, folder);
        assert_eq!(back, paths);
        assert_eq!(run_folder(None), None);
        assert_eq!(run_folder(Some("data/runs/r1/pack")), None);
    }
}
