//! Integration tests of testbay-engine, one module per engine module.
mod doc;
mod pack;
mod params;
mod schemas;
mod reserve;
mod exec;
mod store;
mod plan;
mod run;
mod run_seq;
mod api_types;
mod api;
mod lab;
mod resources;
mod read_file;
mod support;
