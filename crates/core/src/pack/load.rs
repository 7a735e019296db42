//! `pack::load`: read `pack.yaml` and `tasks/*.yaml`, validate them against the generated
//! schemas, then check what a schema cannot see (names that refer to missing tasks, prereq
//! cycles, programs that cannot be found or leave the pack folder). Every problem of the
//! pack is collected before returning.
//!
//! Decisions:
//! - A task's `name` must equal its file stem (`tasks/boot.yaml` declares `name: boot`), so
//!   two files can never declare the same task unnoticed; a second file declaring a name
//!   already taken (`boot.yml` beside `boot.yaml`) is a duplicate.
//! - argv[0] containing a `/` is a path relative to the task file's folder; without one it
//!   is looked up on `PATH`. For a known interpreter (`python3`, `bash`, ...) the script
//!   argument is checked the same way. Paths must stay inside the pack folder once
//!   symlinks are resolved; absolute paths are refused (name system programs bare).

use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;

use super::{LoadedPack, LoadedTask, PackDef, PackErrors, ResourceMode, TaskDef};
use crate::diag::{did_you_mean, Diagnostic};
use crate::doc::{self, Located};

/// Load and check the pack in `dir`, reporting every problem at once.
pub fn load(dir: &Path) -> Result<LoadedPack, PackErrors> {
    load_with_hash(dir, None)
}

/// [`load`], with the content hash already known (a snapshot hashes what it copies, so
/// the files need not be read again).
pub fn load_with_hash(dir: &Path, known_hash: Option<String>) -> Result<LoadedPack, PackErrors> {
    let mut diags = Vec::new();
    let fail = |diags: Vec<Diagnostic>, name: Option<String>, version: Option<String>| PackErrors {
        dir: dir.to_path_buf(),
        name,
        version,
        diagnostics: diags,
    };
    let root = match dir.canonicalize() {
        Ok(r) if r.is_dir() => r,
        Ok(_) | Err(_) => {
            return Err(fail(vec![whole_file(dir, "not a folder")], None, None));
        }
    };
    let pack_file = dir.join("pack.yaml");
    // One that exists but is not a file is reported by reading it (`doc::read_limited`).
    if !pack_file.exists() {
        return Err(fail(
            vec![whole_file(
                &pack_file,
                "missing: a pack folder holds a pack.yaml",
            )],
            None,
            None,
        ));
    }
    let pack = load_partial::<PackDef>(&pack_file, &mut diags);
    let (tasks, broken, task_diags) = load_tasks(dir, &root);
    diags.extend(task_diags);
    // Tasks whose own file is broken exist for references: their file's error is enough.
    let known = Known {
        tasks: &tasks,
        broken: &broken,
    };
    if let Some(pack) = &pack {
        check_pack_refs(pack, &known, &root, &mut diags);
    }
    check_prereqs(&known, &mut diags);
    for t in tasks.values() {
        check_task(t, &root, &mut diags);
    }

    let (name, version) = pack_identity(&pack_file, pack.as_ref());
    if !diags.is_empty() {
        doc::sort_diags(&mut diags);
        return Err(fail(diags, name, version));
    }
    let pack = pack.expect("no diagnostics means pack.yaml loaded");
    let hashed = match known_hash {
        Some(h) => Ok(h),
        None => super::hash::content_hash(&root),
    };
    let content_hash = match hashed {
        Ok(h) => h,
        Err(e) => {
            return Err(fail(
                vec![whole_file(dir, format!("cannot read the pack folder: {e}"))],
                name,
                version,
            ))
        }
    };
    Ok(LoadedPack {
        dir: root,
        def: pack.value,
        tasks: tasks
            .into_iter()
            .map(|(name, t)| {
                (
                    name,
                    LoadedTask {
                        def: t.doc.value,
                        file: t.abs_file,
                        dir: t.abs_dir,
                    },
                )
            })
            .collect(),
        content_hash,
    })
}

/// Name and version of a pack whose pack.yaml may be broken (for listing broken packs).
fn pack_identity(file: &Path, pack: Option<&Located<PackDef>>) -> (Option<String>, Option<String>) {
    if let Some(p) = pack {
        return (Some(p.value.name.clone()), Some(p.value.version.clone()));
    }
    let Ok(bytes) = doc::read_limited(file) else {
        return (None, None);
    };
    let Ok(text) = doc::decode_utf8(file, &bytes) else {
        return (None, None);
    };
    let Ok(node) = doc::parse_yaml(file, text, doc::Limits::default()) else {
        return (None, None);
    };
    let json = node.to_json();
    let get = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_string);
    (get("name"), get("version"))
}

/// A document with its schema problems added to `diags`; the value when it is still usable
/// for the checks a schema cannot make.
fn load_partial<T: serde::de::DeserializeOwned + schemars::JsonSchema + 'static>(
    file: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<Located<T>> {
    let bytes = match doc::read_limited(file) {
        Ok(b) => b,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let (doc, problems) = doc::parse_document_partial::<T>(file, &bytes);
    diags.extend(problems);
    doc
}

pub(crate) fn whole_file(file: &Path, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        line: None,
        column: None,
        key_path: None,
        message: message.into(),
    }
}

struct TaskDoc {
    doc: Located<TaskDef>,
    abs_file: PathBuf,
    abs_dir: PathBuf,
}

/// Task names a reference may use: loaded tasks plus the file stems of broken task files.
struct Known<'a> {
    tasks: &'a IndexMap<String, TaskDoc>,
    broken: &'a HashSet<String>,
}

impl Known<'_> {
    fn contains(&self, name: &str) -> bool {
        self.tasks.contains_key(name) || self.broken.contains(name)
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.tasks
            .keys()
            .map(String::as_str)
            .chain(self.broken.iter().map(String::as_str))
    }
}

type LoadedTasks = (IndexMap<String, TaskDoc>, HashSet<String>, Vec<Diagnostic>);

/// Every `tasks/*.yaml` (and `*.yml`) in file-name order, by task name; plus the stems of
/// the files that did not load.
fn load_tasks(dir: &Path, root: &Path) -> LoadedTasks {
    let mut diags = Vec::new();
    let mut tasks: IndexMap<String, TaskDoc> = IndexMap::new();
    let mut broken = HashSet::new();
    let tasks_dir = dir.join("tasks");
    if !tasks_dir.exists() {
        return (tasks, broken, diags);
    }
    let entries = match std::fs::read_dir(&tasks_dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(whole_file(&tasks_dir, format!("cannot list: {e}")));
            return (tasks, broken, diags);
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "yaml" || x == "yml")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    for file in files {
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(loaded) = load_partial::<TaskDef>(&file, &mut diags) else {
            broken.insert(stem);
            continue;
        };
        let name = loaded.value.name.clone();
        if let Some(problem) = bad_name(&name) {
            diags.push(loaded.diag("name", problem));
            continue;
        }
        if let Some(first) = tasks.get(&name) {
            diags.push(loaded.diag(
                "name",
                format!(
                    "duplicate task name `{name}`: {} declares it too",
                    first.doc.file.display()
                ),
            ));
            continue;
        }
        if name != stem {
            diags.push(loaded.diag(
                "name",
                format!(
                    "task name `{name}` must match its file name (`{stem}`); rename one of them"
                ),
            ));
        }
        let abs_file = root
            .join("tasks")
            .join(file.file_name().unwrap_or_default());
        let abs_dir = root.join("tasks");
        tasks.insert(
            name,
            TaskDoc {
                doc: loaded,
                abs_file,
                abs_dir,
            },
        );
    }
    (tasks, broken, diags)
}

/// Task and pack names become folder names: keep them plain.
fn bad_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Some(format!(
            "`{name}` is not a plain name: use letters, digits, `_`, `-` and `.` (not first)"
        ));
    }
    None
}

fn missing_task_message<'a>(
    what: &str,
    name: &str,
    tasks: impl IntoIterator<Item = &'a str>,
) -> String {
    match did_you_mean(name, tasks) {
        Some(m) => format!("{what} `{name}` does not exist; did you mean `{m}`?"),
        None => format!("{what} `{name}` does not exist (no tasks/{name}.yaml)"),
    }
}

fn check_pack_refs(
    pack: &Located<PackDef>,
    tasks: &Known<'_>,
    root: &Path,
    diags: &mut Vec<Diagnostic>,
) {
    let def = &pack.value;
    if let Some(problem) = bad_name(&def.name) {
        diags.push(pack.diag("name", problem));
    }
    let mut refer = |list: &[String], path: &str| {
        for (i, t) in list.iter().enumerate() {
            if !tasks.contains(t) {
                diags.push(pack.diag(
                    &format!("{path}[{i}]"),
                    missing_task_message("task", t, tasks.names()),
                ));
            }
        }
    };
    refer(&def.setup, "setup");
    refer(&def.teardown, "teardown");
    for (g, group) in &def.groups {
        let base = doc::child_path("groups", g);
        refer(&group.tests, &format!("{base}.tests"));
        refer(&group.setup, &format!("{base}.setup"));
        refer(&group.teardown, &format!("{base}.teardown"));
    }
    let custom = matches!(
        def.params.resource_mode,
        ResourceMode::CustomAll | ResourceMode::CustomSeparate | ResourceMode::CustomCombine
    );
    match &def.scheduler {
        None if custom => diags.push(pack.diag(
            "params.resource_mode",
            "a custom_* resource mode needs a `scheduler` program in pack.yaml",
        )),
        Some(argv) => {
            for (path, msg) in check_argv(argv, root, root) {
                let key = if path.is_empty() {
                    "scheduler".to_string()
                } else {
                    format!("scheduler{path}")
                };
                diags.push(pack.diag(&key, msg));
            }
        }
        None => {}
    }
}

fn check_task(t: &TaskDoc, root: &Path, diags: &mut Vec<Diagnostic>) {
    let def = &t.doc.value;
    let phases = [
        ("run", Some(&def.run)),
        ("setup", def.setup.as_ref()),
        ("teardown", def.teardown.as_ref()),
    ];
    for (key, argv) in phases {
        let Some(argv) = argv else { continue };
        for (sub, msg) in check_argv(argv, &t.abs_dir, root) {
            diags.push(t.doc.diag(&format!("{key}{sub}"), msg));
        }
    }
    let resources: HashSet<&str> = def
        .exclusive_resources
        .iter()
        .chain(&def.shared_resources)
        .map(String::as_str)
        .collect();
    for key in def.resource_configs.keys() {
        if !resources.contains(key.as_str()) {
            let hint = match did_you_mean(key, resources.iter().copied()) {
                Some(m) => format!("; did you mean `{m}`?"),
                None => " (list it in exclusive_resources or shared_resources)".into(),
            };
            diags.push(t.doc.diag(
                &format!("resource_configs.{key}"),
                format!("`{key}` is not a resource of this task{hint}"),
            ));
        }
    }
    for r in &def.shared_resources {
        if def.exclusive_resources.contains(r) {
            diags.push(t.doc.diag(
                "shared_resources",
                format!("`{r}` is listed as both exclusive and shared"),
            ));
        }
    }
    if def.max_runtime == Some(0.0) {
        diags.push(t.doc.diag(
            "max_runtime",
            "must be more than 0 seconds (leave it out for no limit)",
        ));
    }
    if def.valid_duts.is_empty() {
        diags.push(
            t.doc
                .diag("valid_duts", "an empty list matches no DUT; use `[any]`"),
        );
    }
    if def.valid_ats.is_empty() {
        diags.push(
            t.doc
                .diag("valid_ats", "an empty list matches no ATS; use `[any]`"),
        );
    }
}

fn check_prereqs(known: &Known<'_>, diags: &mut Vec<Diagnostic>) {
    let tasks = known.tasks;
    for t in tasks.values() {
        for (i, p) in t.doc.value.prereq_tasks.iter().enumerate() {
            if !known.contains(p) {
                diags.push(t.doc.diag(
                    &format!("prereq_tasks[{i}]"),
                    missing_task_message("prereq task", p, known.names()),
                ));
            }
        }
    }
    for cycle in prereq_cycles(
        tasks
            .iter()
            .map(|(n, t)| (n.as_str(), &t.doc.value.prereq_tasks[..])),
    ) {
        let first = &tasks[cycle[0].as_str()];
        let idx = first
            .doc
            .value
            .prereq_tasks
            .iter()
            .position(|p| *p == cycle[1 % cycle.len()])
            .unwrap_or(0);
        let mut shown = cycle.clone();
        shown.push(cycle[0].clone());
        diags.push(first.doc.diag(
            &format!("prereq_tasks[{idx}]"),
            format!("prereq cycle: {}", shown.join(" → ")),
        ));
    }
}

/// Every elementary cycle found by a depth-first search, each reported once (rotated so
/// it starts at its first task in file order).
pub fn prereq_cycles<'a>(
    graph: impl IntoIterator<Item = (&'a str, &'a [String])>,
) -> Vec<Vec<String>> {
    let graph: IndexMap<&str, &[String]> = graph.into_iter().collect();
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark: HashMap<&str, Mark> = graph.keys().map(|k| (*k, Mark::New)).collect();
    let mut cycles: Vec<Vec<String>> = Vec::new();
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    for start in graph.keys() {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, next edge index); `path` mirrors the stack.
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        mark.insert(start, Mark::Active);
        while let Some((node, i)) = stack.last().copied() {
            let edges = graph.get(node).copied().unwrap_or(&[]);
            if i >= edges.len() {
                mark.insert(node, Mark::Done);
                stack.pop();
                continue;
            }
            stack.last_mut().expect("non-empty").1 += 1;
            let next = edges[i].as_str();
            match mark.get(next).copied() {
                None | Some(Mark::Done) => {}
                Some(Mark::Active) => {
                    let from = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                    let cycle: Vec<String> =
                        stack[from..].iter().map(|(n, _)| n.to_string()).collect();
                    let min = cycle
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, n)| graph.get_index_of(n.as_str()))
                        .map_or(0, |(i, _)| i);
                    let mut rotated = cycle[min..].to_vec();
                    rotated.extend_from_slice(&cycle[..min]);
                    if seen.insert(rotated.clone()) {
                        cycles.push(rotated);
                    }
                }
                Some(Mark::New) => {
                    let key = graph.get_key_value(next).map(|(k, _)| *k).unwrap_or(next);
                    mark.insert(key, Mark::Active);
                    stack.push((key, 0));
                }
            }
        }
    }
    cycles
}

/// Interpreters whose first non-option argument is a script in the pack.
const INTERPRETERS: &[&str] = &[
    "python", "python3", "bash", "sh", "dash", "zsh", "node", "perl", "ruby", "pwsh", "lua",
    "tclsh",
];

/// Problems with one argv: (key suffix such as `[0]`, message).
fn check_argv(argv: &[String], base: &Path, root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(prog) = argv.first() else {
        out.push((String::new(), "must name a program to run".into()));
        return out;
    };
    if prog.contains('/') {
        if let Err(msg) = check_pack_path(prog, base, root, true) {
            out.push(("[0]".into(), msg));
        }
    } else if prog.is_empty() {
        out.push(("[0]".into(), "program name is empty".into()));
    } else if !on_path_cached(prog) {
        out.push(("[0]".into(), format!("program `{prog}` not found on PATH")));
    }
    let interp = Path::new(prog)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if INTERPRETERS.contains(&interp.as_str()) {
        // `python3 -u script.py`, but not `bash -c '...'` or `python3 -m module`.
        for (i, a) in argv.iter().enumerate().skip(1) {
            if a == "-c" || a == "-m" || a == "-e" {
                break;
            }
            if a.starts_with('-') {
                continue;
            }
            if let Err(msg) = check_pack_path(a, base, root, false) {
                out.push((format!("[{i}]"), msg));
            }
            break;
        }
    }
    out
}

/// `p` relative to `base` must exist inside `root` (symlinks resolved).
fn check_pack_path(p: &str, base: &Path, root: &Path, must_execute: bool) -> Result<(), String> {
    let path = Path::new(p);
    if path.is_absolute() {
        return Err(format!(
            "`{p}` is an absolute path; a pack's programs live in its folder (name a system program without a folder to find it on PATH)"
        ));
    }
    let joined = base.join(path);
    // Lexical check first, so `../x` is refused even when it does not exist.
    let mut depth: i64 = base
        .strip_prefix(root)
        .map_or(0, |r| r.components().count() as i64);
    for c in path.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            return Err(format!("`{p}` leaves the pack folder"));
        }
    }
    let real = match joined.canonicalize() {
        Ok(r) => r,
        Err(_) => return Err(format!("`{p}` not found (relative to {})", base.display())),
    };
    if !real.starts_with(root) {
        return Err(format!(
            "`{p}` leaves the pack folder (it resolves to {})",
            real.display()
        ));
    }
    if !real.is_file() {
        return Err(format!("`{p}` is not a file"));
    }
    if must_execute && !is_executable(&real) {
        return Err(format!(
            "`{p}` is not executable (chmod +x it, or run it through its interpreter)"
        ));
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// [`find_on_path`], remembered per thread for the length of one `PATH` value: a pack of
/// 500 tasks names the same few programs over and over.
fn on_path_cached(prog: &str) -> bool {
    use std::cell::RefCell;
    thread_local! {
        static CACHE: RefCell<(Option<std::ffi::OsString>, HashMap<String, bool>)> =
            RefCell::new((None, HashMap::new()));
    }
    let path = std::env::var_os("PATH");
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != path {
            *c = (path, HashMap::new());
        }
        *c.1.entry(prog.to_string())
            .or_insert_with(|| find_on_path(prog).is_some())
    })
}

/// `prog` looked up on `PATH`, as the exec module will.
pub fn find_on_path(prog: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|c| c.is_file() && is_executable(c))
}
