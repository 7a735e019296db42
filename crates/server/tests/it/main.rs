//! Server integration tests.

mod serve;
mod limits;
mod support;
mod users;
