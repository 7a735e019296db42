//! Integration tests of testbay-engine, one module per engine module.
mod doc;
mod schemas;
mod reserve;
mod exec;
mod store;
