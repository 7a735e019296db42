//! CLI integration tests.
mod run;
mod packs;
mod schedule;
mod serve;
mod lab;
mod data_dir;
mod recovery;
mod bounds;
mod paths;
mod signals;
mod disk_full;
mod hostile;
mod webhook_health;
mod history;
mod report;
mod kissats;
mod support;
