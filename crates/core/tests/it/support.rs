//! Set-up shared by the test modules: where the virtual clocks start and where the
//! repository's demo files are.

use std::path::PathBuf;

/// Where the tests' virtual clocks start (2027-01-15 08:00 UTC).
pub const T0: i64 = 1_800_000_000_000;

/// The repository's root folder (demo lab, fixtures, every crate).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The demo lab of the repository.
pub fn demo_lab() -> PathBuf {
    repo().join("lab/demo-lab.yaml")
}
