//! The lab in the store (the lab file itself is tested in crates/core/tests/it/lab.rs).

use std::path::PathBuf;

use testbay_engine::lab;

fn demo_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../lab/demo-lab.yaml")
}

#[test]
fn lab_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = testbay_engine::store::Store::open_in(dir.path()).unwrap();
    let lab = lab::load(&demo_path()).unwrap();
    store.save_lab(&lab, 42).unwrap();
    let (path, at, def) = store.stored_lab().unwrap().unwrap();
    assert_eq!((path.as_str(), at), (&*lab.file.to_string_lossy(), 42));
    assert_eq!(def, lab.def);
}
