//! The reservation book (kissats' ATS client semantics): pre-reserve, claim, release,
//! renew, expire, availability and the next free window, for exclusive and shared
//! resources. Claims are leases; every change is a [`BookEvent`].

mod book;
mod error;
mod index;
pub mod broker;
pub mod live;
pub mod order;
mod types;

pub use book::{Book, BookConfig};
pub use broker::{resources_named, BookBroker, BrokerConfig};
pub use error::BookError;
pub use index::{ExclusiveIndex, SharedProfile};
pub use live::{owner_of, BookClient, BookCommand, BookHandle, BookReply, LiveBook, LiveError};
pub use types::*;

/// The closest candidate to `name` by edit distance, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<String> {
    let lower = name.to_lowercase();
    candidates
        .map(|c| (strsim::levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// Short UTC time for reasons shown next to a task (`20:15:03Z`).
pub(crate) fn fmt_ms_short(ms: crate::clock::EpochMs) -> String {
    let full = crate::timefmt::fmt_ms(ms);
    full.split_once(' ')
        .map_or(full.clone(), |(_, t)| t.to_string())
}
