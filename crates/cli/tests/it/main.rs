//! CLI integration tests.
mod run;
