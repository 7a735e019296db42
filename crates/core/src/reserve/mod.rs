//! The reservation book (kissats' ATS client semantics): pre-reserve, claim, release,
//! renew, expire, availability and the next free window, for exclusive and shared
//! resources. Claims are leases; every change is a [`BookEvent`].

mod book;
mod error;
mod index;
mod types;

pub use book::{Book, BookConfig};
pub use error::BookError;
pub use index::{ExclusiveIndex, SharedProfile};
pub use types::*;

/// Short UTC time for reasons shown next to a task (`20:15:03Z`).
pub fn fmt_ms_short(ms: crate::clock::EpochMs) -> String {
    let full = crate::timefmt::fmt_ms(ms);
    full.split_once(' ')
        .map_or(full.clone(), |(_, t)| t.to_string())
}
