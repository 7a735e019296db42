//! CLI integration tests.
mod run;
mod packs;
mod serve;
mod lab;
mod paths;
mod signals;
mod disk_full;
