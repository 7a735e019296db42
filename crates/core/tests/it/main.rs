//! Integration tests of testbay-core, one module per core module, and the layers check.
mod book;
mod doc;
mod lab;
mod layers;
mod params;
mod plan;
mod queue;
mod schedule;
mod support;
