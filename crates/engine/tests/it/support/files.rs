//! Files and packs in temp folders.

use std::path::Path;

/// Write `text` to `p`, creating its parent folders.
pub fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Write task `name` of the pack in `pack`: `tasks/NAME.yaml` running `bash NAME.sh` with
/// `extra` yaml appended, and `tasks/NAME.sh` holding `body`.
pub fn write_task(pack: &Path, name: &str, extra: &str, body: &str) {
    write(
        &pack.join(format!("tasks/{name}.yaml")),
        &format!("name: {name}\nrun: [bash, {name}.sh]\n{extra}"),
    );
    write(&pack.join(format!("tasks/{name}.sh")), body);
}

/// A temp folder for one phase: an empty `params.json` and an `artifacts` folder in it.
pub struct PhaseDir {
    _tmp: tempfile::TempDir,
    pub dir: std::path::PathBuf,
}

impl PhaseDir {
    pub fn new() -> PhaseDir {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("artifacts")).unwrap();
        std::fs::write(dir.join("params.json"), "{}").unwrap();
        PhaseDir { _tmp: tmp, dir }
    }
}

/// Write a pack in `dir`: `pack.yaml` and, for each of `tasks` (name, extra task yaml,
/// bash body), a task running its script (see [`write_task`]) every phase.
pub fn write_pack(dir: &Path, pack_yaml: &str, tasks: &[(&str, &str, &str)]) {
    write(&dir.join("pack.yaml"), pack_yaml);
    for (name, extra, body) in tasks {
        write_task(
            dir,
            name,
            &format!("description: test task {name}\n{extra}"),
            body,
        );
    }
}

/// The repository's root folder (demo packs, demo lab, fixtures).
pub fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The demo lab of the repository.
pub fn demo_lab() -> std::path::PathBuf {
    repo().join("lab/demo-lab.yaml")
}
