//! Server integration tests.

mod serve;
