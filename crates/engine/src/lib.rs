//! Testbay engine: the product minus its transports.
//!
//! See ARCHITECTURE.md for the module map. Nothing here knows about Tauri or HTTP. What is
//! pure (documents, packs, params, the lab, the plan, the book's logic) lives in
//! `testbay-core` and is re-exported here under the paths it always had.

pub mod access;
pub mod agents;
pub mod analysis;
pub mod api;
mod blocking;
pub mod exec;
pub mod health;
pub mod pack;
pub mod report;
pub mod reserve;
pub mod run;
pub mod store;
pub mod webhook;

pub use testbay_core::{
    bounds, clock, diag, doc, judge, lab, measure, model, outcome, params, plan, queue, reporter,
    schedule, schema, settings, timefmt, userfile,
};
