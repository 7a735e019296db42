//! Load a pack directory, validate it against `schemas/`, report every problem with file
//! and line or key path.

pub mod model;

pub use model::*;
