//! [`Console`]: the front door every transport (the CLI, `testbay serve`, the desktop app)
//! uses, and the only part of the engine they call. [`super::LocalConsole`] is the engine
//! in this process; `testbay_remote::RemoteConsole` (crate `testbay-remote`) is a client
//! of another `testbay serve`, and the transports take either unchanged.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::broadcast;

use super::{ApiError, Caller, Event, Request, Response};

/// Events buffered per subscriber before it lags and gets `resync`.
pub const EVENT_CAPACITY: usize = 4096;

/// A subscriber's stream of [`Event`]s. One that falls more than [`EVENT_CAPACITY`]
/// events behind gets `RecvError::Lagged`; transports turn that into [`Event::Resync`].
pub type EventReceiver = broadcast::Receiver<Event>;

/// The answer to one [`Console::dispatch`], to be awaited.
pub type Reply<'a> = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send + 'a>>;

/// One console, as its transports see it.
pub trait Console: Send + Sync {
    /// Answer one request.
    fn dispatch(&self, request: Request) -> Reply<'_>;

    /// Answer one request for `caller` (a lab's signed-in user): an implementation that
    /// knows users refuses what the caller's role does not allow and records who acted.
    /// By default the same as [`Console::dispatch`].
    fn dispatch_as(&self, caller: &Caller, request: Request) -> Reply<'_> {
        let _ = caller;
        self.dispatch(request)
    }

    /// Push a pack into the lab's pack library for `caller`: [`Request::PushPack`] with
    /// the archive (`pack::archive`) as bytes rather than base64, so a transport hands
    /// it over as it arrived (`POST /api/packs`) and a client sends it so (a lab server's
    /// request body is too small for a pack's JSON). The same role rules, checks and
    /// audit as the request; by default the request itself.
    fn push_pack_as(&self, caller: &Caller, archive: Vec<u8>, private: bool) -> Reply<'_> {
        self.dispatch_as(
            caller,
            Request::PushPack {
                archive: crate::pack::archive::to_text(&archive),
                private,
            },
        )
    }

    /// A new subscriber to every [`Event`] from now on.
    fn subscribe(&self) -> EventReceiver;

    /// The transport is about to exit: what the console has accepted is made durable
    /// (task results and the reservation book are flushed) and store reads in flight stop
    /// (their requests end with `unavailable`); later reads are refused. Runs still going
    /// are not stopped: they end with the process (and are marked interrupted at the next
    /// start). Safe to call more than once.
    fn shutdown(&self);

    /// The rack agents of a console that runs phases (a transport connects agents to
    /// it); `None` for one that does not (a client of another server).
    fn agent_hub(&self) -> Option<crate::agents::AgentHub> {
        None
    }

    /// Where a rack agent saying hello belongs (`agents::home`): here unless this is one
    /// of several servers of a lab database and another owns the reservation book.
    /// Blocking (it may read the store).
    fn agent_home(&self) -> crate::agents::AgentHome {
        crate::agents::AgentHome::Here
    }

    /// The transport serves this console at `address` (an `http://HOST:PORT` others can
    /// reach); a server of a lab database records it for the rack agents other servers
    /// send here. Blocking.
    fn serving_at(&self, address: &str) {
        let _ = address;
    }
}
