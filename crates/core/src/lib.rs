//! Testbay's core: what is pure. The domain model, documents and their validation,
//! packs, run parameters, the lab inventory, the plan state machine and the reservation
//! book's logic. No async runtime, no database, no file watcher, no processes: the
//! engine (`testbay-engine`) sits on this crate and the transports on the engine.
//! `tests/it/layers.rs` keeps it so.
//!
//! See ARCHITECTURE.md for the module map.

pub mod bounds;
pub mod clock;
pub mod diag;
pub mod doc;
pub mod judge;
pub mod lab;
pub mod measure;
pub mod model;
pub mod outcome;
pub mod pack;
pub mod params;
pub mod reporter;
pub mod plan;
pub mod queue;
pub mod reserve;
pub mod schedule;
pub mod schema;
pub mod settings;
pub mod timefmt;
pub mod triage;
pub mod userfile;
