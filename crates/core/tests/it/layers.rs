//! The layers of ARCHITECTURE.md, checked: `testbay-core` holds what is pure (no async
//! runtime, no database, no file watcher, no HTTP, no process code), the engine sits on
//! core and the transports on the engine, and within each crate no two top-level modules
//! import each other, directly or through others. The compiler allows module cycles
//! inside a crate; this test does not.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::repo;

/// The `src` folder of every crate of the workspace, by crate folder.
fn crate_sources() -> Vec<(String, PathBuf)> {
    let root = repo();
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(root.join("crates"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("src").is_dir())
        .map(|p| {
            (
                format!("crates/{}", p.file_name().unwrap().to_string_lossy()),
                p.join("src"),
            )
        })
        .collect();
    out.push(("src-tauri".into(), root.join("src-tauri/src")));
    out.sort();
    out
}

/// Every `.rs` file at or below `path`.
fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out
}

/// The top-level modules of the crate whose root folder is `src` (`src/x.rs` and
/// everything under `src/x/` are module `x`), with their files. The crate root
/// (`lib.rs`, `main.rs`) is not a module of its own.
fn top_level_modules(src: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for e in std::fs::read_dir(src).unwrap().flatten() {
        let p = e.path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        if p.is_dir()
            || (p.extension().is_some_and(|x| x == "rs") && name != "lib" && name != "main")
        {
            out.entry(name).or_default().extend(rust_files(&p));
        }
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first path segments after every `crate::` of `text`, comments left out (strings
/// kept: `#[schemars(range(max = "crate::bounds::MAX_CAPACITY"))]` is a use too).
/// `crate::{a, b::c}` names `a` and `b`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" // ").next().unwrap_or(code);
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 0usize;
                let mut start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = true,
                        c if start && !c.is_whitespace() => {
                            out.insert(ident(&group[j..]).to_string());
                            start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                out.insert(ident(rest).to_string());
            }
        }
    }
    out
}

/// Which top-level modules each top-level module of the crate at `src` imports.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let modules = top_level_modules(src);
    modules
        .iter()
        .map(|(name, files)| {
            let uses = files
                .iter()
                .flat_map(|f| crate_paths(&std::fs::read_to_string(f).unwrap()))
                .filter(|m| m != name && modules.contains_key(m))
                .collect();
            (name.clone(), uses)
        })
        .collect()
}

/// The groups of modules that import each other (strongly connected, more than one).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for n in graph.get(&m).into_iter().flatten() {
                if seen.insert(n.clone()) {
                    todo.push(n.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        graph.keys().map(|m| (m, reach(m))).collect();
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut placed = BTreeSet::new();
    for m in graph.keys() {
        if placed.contains(m) || !reaches[m].contains(m) {
            continue;
        }
        let group: Vec<String> = reaches[m]
            .iter()
            .filter(|n| reaches[*n].contains(m))
            .cloned()
            .collect();
        placed.extend(group.iter().cloned());
        out.push(group);
    }
    out
}

/// Who imports whom within `group`, for the failure message.
fn edges(graph: &BTreeMap<String, BTreeSet<String>>, group: &[String]) -> String {
    group
        .iter()
        .map(|m| {
            let to: Vec<&str> = graph[m]
                .iter()
                .filter(|n| group.contains(n))
                .map(String::as_str)
                .collect();
            format!("{m} → {}", to.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn no_crate_has_an_import_cycle_between_its_top_level_modules() {
    let mut problems = Vec::new();
    for (krate, src) in crate_sources() {
        let graph = module_graph(&src);
        if krate == "crates/engine" {
            assert!(
                graph["run"].contains("store"),
                "the engine's modules were read: {graph:?}"
            );
        }
        for group in cycles(&graph) {
            problems.push(format!("{krate}: {}", edges(&graph, &group)));
        }
    }
    assert!(
        problems.is_empty(),
        "top-level modules that import each other in a cycle:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_cycle_check_sees_cycles() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("doc", &["diag", "pack"][..]),
        ("pack", &["lab"]),
        ("lab", &["doc"]),
        ("diag", &[]),
    ]
    .into_iter()
    .map(|(m, to)| (m.to_string(), to.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(cycles(&graph), [["doc", "lab", "pack"]]);
    let text = "use crate::{doc::{self, Node}, diag};\n// crate::plan\n#[schemars(max = \"crate::bounds::MAX\")]\nlet x = crate::lab::Lab::new(); // crate::store\n";
    assert_eq!(
        crate_paths(text).into_iter().collect::<Vec<_>>(),
        ["bounds", "diag", "doc", "lab"]
    );
}

/// The names under `[section]` of a Cargo.toml (`name = ...` and `name.workspace = true`).
fn dependency_names(manifest: &str, section: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line == format!("[{section}]");
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            out.push(ident_dashed(line).to_string());
        }
    }
    out
}

fn ident_dashed(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .unwrap_or(s.len());
    &s[..end]
}

fn manifest(krate: &str) -> String {
    std::fs::read_to_string(repo().join(krate).join("Cargo.toml")).unwrap()
}

#[test]
fn core_depends_on_no_runtime_database_watcher_http_or_process_crate() {
    const NOT_IN_CORE: &[&str] = &[
        "tokio",
        "rusqlite",
        "notify",
        "axum",
        "hyper",
        "hyper-util",
        "tower",
        "tower-http",
        "tokio-tungstenite",
        "futures-util",
        "reqwest",
        "ureq",
        "tauri",
        "testbay-engine",
        "testbay-server",
        "testbay-cli",
    ];
    let deps = dependency_names(&manifest("crates/core"), "dependencies");
    assert!(
        deps.contains(&"serde".to_string()),
        "the manifest was read: {deps:?}"
    );
    let bad: Vec<&String> = deps
        .iter()
        .filter(|d| NOT_IN_CORE.contains(&d.as_str()))
        .collect();
    assert!(bad.is_empty(), "testbay-core depends on {bad:?}");
}

#[test]
fn core_code_starts_no_process_and_uses_libc_only_to_open_user_files() {
    let src = repo().join("crates/core/src");
    let mut bad = Vec::new();
    for f in rust_files(&src) {
        let text = std::fs::read_to_string(&f).unwrap();
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        for word in ["std::process", "Command::new", "tokio", "rusqlite"] {
            if text.contains(word) {
                bad.push(format!("{rel}: {word}"));
            }
        }
        if text.contains("libc::") && rel != "userfile.rs" {
            bad.push(format!("{rel}: libc"));
        }
    }
    assert!(
        bad.is_empty(),
        "process or I/O code in testbay-core: {bad:?}"
    );
}

#[test]
fn each_layer_depends_only_on_the_layers_below() {
    let below: &[(&str, &[&str])] = &[
        (
            "crates/core",
            &[
                "testbay-engine",
                "testbay-server",
                "testbay-remote",
                "testbay-cli",
                "testbay-desktop",
            ],
        ),
        (
            "crates/engine",
            &[
                "testbay-server",
                "testbay-remote",
                "testbay-cli",
                "testbay-desktop",
            ],
        ),
        ("crates/server", &["testbay-cli", "testbay-desktop"]),
        // A client of a server, not a part of one.
        (
            "crates/remote",
            &["testbay-server", "testbay-cli", "testbay-desktop"],
        ),
    ];
    for (krate, not) in below {
        let deps = dependency_names(&manifest(krate), "dependencies");
        for n in *not {
            assert!(!deps.iter().any(|d| d == n), "{krate} depends on {n}");
        }
    }
    let engine = dependency_names(&manifest("crates/engine"), "dependencies");
    assert!(
        engine.iter().any(|d| d == "testbay-core"),
        "the engine sits on core"
    );
}
