//! Answers about results across runs, computed from what the store reads: flaky tasks
//! (`flaky`) and the comparison of two runs (`compare`). No SQL here: the store's reads
//! (`Store::recent_results`, `Store::run_tasks`) start from indexes; this module only
//! folds their rows.

pub mod compare;
pub mod flaky;

pub use compare::{compare_runs, CompareOptions, ParamDiff, RunCompare, TaskDiff};
pub use flaky::{flaky_tasks, flips, FlakyQuery, FlakyTask, FlipPoint};
