//! Integration tests of testbay-engine, one module per engine module (core's pure
//! modules are tested in crates/core/tests/it).
mod pack;
mod queue;
mod schemas;
mod reserve;
mod exec;
mod store;
mod store_contract;
mod store_reads;
mod history;
mod run;
mod run_seq;
mod api_types;
mod api;
mod resources;
mod read_file;
mod schedules;
mod bounds;
mod support;
mod waiters;
mod retries;
mod webhooks;
mod health;
mod reporter;
mod extend_hold;
mod triage;
mod retention;
