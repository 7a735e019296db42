//! pack: loading, every error class with its file and line, discovery, content hash.

use std::path::{Path, PathBuf};

use testbay_engine::pack::{self, PackErrors};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn demo_packs_load_cleanly() {
    for name in ["stb-smoke"] {
        let dir = repo().join("packs").join(name);
        match pack::load(&dir) {
            Ok(p) => assert_eq!(p.def.name, name),
            Err(PackErrors { diagnostics, .. }) => panic!(
                "{name}:\n{}",
                diagnostics
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }
    let _ = Path::new("");
}
