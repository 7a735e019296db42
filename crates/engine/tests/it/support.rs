//! Helpers shared by the test modules.

use std::path::Path;

/// Write `text` to `p`, creating its parent folders.
pub fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}
