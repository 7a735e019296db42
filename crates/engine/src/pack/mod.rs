//! Packs: the model, loading, hashing, discovery and views come from `testbay-core`
//! (`testbay_core::pack`); the engine adds the [`Library`] that keeps them current with
//! a file watcher, and the lab's pack library ([`LabLibrary`]: packs pushed into the
//! store, `archive` their files in one archive).

pub mod archive;
pub mod lab_library;
pub mod library;

pub use lab_library::{LabLibrary, LabLibraryError, Viewer};
pub use library::{Library, LibraryChange};
pub use testbay_core::pack::*;
