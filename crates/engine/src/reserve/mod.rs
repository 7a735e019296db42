//! The reservation book: its logic (`Book`, pure, clock injected) comes from
//! `testbay-core` (`testbay_core::reserve`); the engine runs it as a persistent service
//! ([`live`]) and puts it behind the runs' resource broker ([`broker`]); [`labdb`] is the
//! lab's book in PostgreSQL, shared by several servers.

pub mod broker;
pub mod fence;
pub mod handover;
pub mod labdb;
pub mod live;

pub use broker::{resources_named, BookBroker, BrokerConfig};
pub use fence::{Fence, FenceClaim, FenceHold, NoFence};
pub use live::{BookClient, BookCommand, BookHandle, BookReply, LiveBook, LiveError};
pub use testbay_core::reserve::*;
