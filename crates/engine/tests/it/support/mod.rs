//! Set-up shared by the test modules: files and packs in temp folders, the test bed (a run
//! manager on a real SQLite file, reserving through a lab's book if asked), process checks
//! and waits. Tests differ in what they do, not in how they set up.

mod bed;
mod files;
mod procs;
mod wait;

pub use bed::Bed;
pub use files::{demo_lab, repo, write, write_pack, write_task, PhaseDir};
pub use procs::{alive, ends_soon, pid_in, rss_kib};
pub use wait::run_end;

/// Where the tests' virtual clocks start (2027-01-15 08:00 UTC).
pub const T0: i64 = 1_800_000_000_000;
