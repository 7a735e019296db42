//! Where a console finds its data directory, pack folders and lab file. Shared by the
//! CLI, `testbay serve` and the desktop app so all three open the same things.

use std::path::{Path, PathBuf};

/// The folders and files one console works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsolePaths {
    /// Holds `testbay.db` and `runs/`.
    pub data_dir: PathBuf,
    /// Folders searched for packs (each pack is a sub-folder with `pack.yaml`, or the
    /// folder itself).
    pub pack_roots: Vec<PathBuf>,
    /// The lab inventory file, if any.
    pub lab_file: Option<PathBuf>,
}

impl ConsolePaths {
    /// Fill what was not given: the platform data directory, the repository's `packs/`
    /// and the data directory's `lab.yaml` or else the repository's demo lab. Every path
    /// is made absolute against the current directory, here and only here: a task runs in
    /// its pack snapshot's folder, so a relative `TESTBAY_PARAMS` (or log, artifact or lab
    /// path) would point elsewhere.
    pub fn resolve(
        data_dir: Option<PathBuf>,
        pack_roots: Vec<PathBuf>,
        lab_file: Option<PathBuf>,
    ) -> Self {
        let data_dir = absolute(data_dir.unwrap_or_else(default_data_dir));
        let pack_roots = if pack_roots.is_empty() {
            repo_dir()
                .map(|r| vec![r.join("packs")])
                .unwrap_or_default()
        } else {
            pack_roots.into_iter().map(absolute).collect()
        };
        let lab_file = lab_file.map(absolute).or_else(|| {
            let own = data_dir.join("lab.yaml");
            if own.is_file() {
                Some(own)
            } else {
                repo_dir()
                    .map(|r| r.join("lab/demo-lab.yaml"))
                    .filter(|p| p.is_file())
            }
        });
        Self {
            data_dir,
            pack_roots,
            lab_file,
        }
    }

    /// `runs/` in the data directory: logs and artifacts of every run.
    pub fn runs_dir(&self) -> PathBuf {
        self.data_dir.join("runs")
    }
}

/// `path` made absolute against the current directory (`.` and `..` kept, symbolic links
/// not followed, the path need not exist). Unchanged if the current directory is gone.
pub fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// `$XDG_DATA_HOME/testbay`, else `~/.local/share/testbay`, else `./testbay-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(x).join("testbay");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(h).join(".local/share/testbay");
    }
    PathBuf::from("testbay-data")
}

/// The Testbay source checkout this program runs from, if any: the current directory or
/// one of its parents holding `packs/` and `crates/engine/`, else the checkout the binary
/// was built from when it still exists. Used only for defaults (demo packs, demo lab, UI).
pub fn repo_dir() -> Option<PathBuf> {
    let is_repo = |d: &Path| d.join("packs").is_dir() && d.join("crates/engine").is_dir();
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(d) = cwd.ancestors().find(|d| is_repo(d)) {
            return Some(d.to_path_buf());
        }
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    is_repo(&built_from).then(|| built_from.canonicalize().unwrap_or(built_from))
}
