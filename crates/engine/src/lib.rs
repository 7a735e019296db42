//! Testbay engine: the product minus its transports.
//!
//! See ARCHITECTURE.md for the module map. Nothing here knows about Tauri or HTTP.

pub mod api;
pub mod bounds;
pub mod clock;
pub mod doc;
pub mod diag;
pub mod exec;
pub mod lab;
pub mod outcome;
pub mod pack;
pub mod params;
pub mod plan;
pub mod report;
pub mod reserve;
pub mod run;
pub mod schedule;
pub mod store;
pub mod timefmt;
pub mod userfile;
