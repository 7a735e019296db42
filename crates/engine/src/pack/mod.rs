//! Packs: the model, loading, hashing, discovery and views come from `testbay-core`
//! (`testbay_core::pack`); the engine adds the [`Library`] that keeps them current with
//! a file watcher.

pub mod library;

pub use library::{Library, LibraryChange};
pub use testbay_core::pack::*;
