//! `RemoteConsole`: the console of another `testbay serve` as an [`engine::api::Console`],
//! so the CLI and the desktop app work on a lab server exactly as on the embedded console.
//!
//! - `dispatch` is `POST /api` with the request's JSON and `Authorization: Bearer TOKEN`;
//!   the answer is the same `Response` JSON the server's other clients read. A refusal
//!   becomes the server's own [`ApiError`] (its code, message and diagnostics); a server
//!   that cannot be reached answers `unavailable` (module [`http`]).
//! - `push_pack_as` is `POST /api/packs` with the pack's archive as the body (no base64,
//!   no `/api` body limit; module [`http`]).
//! - `subscribe` hears the server's event stream (`GET /api/events`, a WebSocket opened
//!   when the console connects). A stream that drops is opened again with backoff; after
//!   such a gap every subscriber gets [`Event::Resync`] so screens reload (module
//!   [`stream`]).
//! - `shutdown` closes the stream: subscribers see it end, later requests answer
//!   `unavailable`. The server and its runs go on.
//!
//! Plain `http://` only: no TLS backend is built in (a lab served over TLS needs a local
//! proxy). [`Target::parse`] says so for an `https://` address.
//!
//! [`engine::api::Console`]: testbay_engine::api::Console

pub mod agent;
pub mod http;
pub mod stream;
mod target;

pub use target::Target;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use testbay_engine::api::{
    ApiError, Caller, Console, ConsoleInfo, ErrorCode, Event, EventReceiver, Reply, Request,
    Response, EVENT_CAPACITY,
};
use tokio::sync::{broadcast, watch};

/// A console served by another process (`testbay serve`), reached over HTTP.
pub struct RemoteConsole {
    http: http::Client,
    info: ConsoleInfo,
    /// Taken by `shutdown`, so subscribers see the stream end.
    events: Mutex<Option<broadcast::Sender<Event>>>,
    closed: AtomicBool,
    stop: watch::Sender<bool>,
}

impl RemoteConsole {
    /// Connect to the server at `target`: one real request (`info`) checks the address
    /// and the token, then the event stream opens. Must be called within a tokio runtime
    /// (the stream's task runs on it).
    pub async fn connect(target: Target) -> Result<Self, ApiError> {
        let http = http::Client::new(target.clone())?;
        let info = match http.call(&Request::Info).await? {
            Response::Info(info) => info,
            other => {
                return Err(ApiError::internal(format!(
                    "the server at {} answered info with {other:?}",
                    target.url
                )))
            }
        };
        let socket = stream::open(&target).await?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(stream::pump(target, socket, events.clone(), stopped));
        Ok(Self {
            http,
            info,
            events: Mutex::new(Some(events)),
            closed: AtomicBool::new(false),
            stop,
        })
    }

    /// What the server said about itself when this console connected.
    pub fn info(&self) -> &ConsoleInfo {
        &self.info
    }

    /// The server this console talks to.
    pub fn target(&self) -> &Target {
        self.http.target()
    }

    pub fn shared(self) -> Arc<dyn Console> {
        Arc::new(self)
    }

    /// `unavailable` once shut down.
    fn open(&self) -> Result<(), ApiError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(ApiError::new(
                ErrorCode::Unavailable,
                format!(
                    "the connection to the lab server at {} is closed",
                    self.target().url
                ),
            ));
        }
        Ok(())
    }
}

impl Console for RemoteConsole {
    fn dispatch(&self, request: Request) -> Reply<'_> {
        Box::pin(async move {
            self.open()?;
            self.http.call(&request).await
        })
    }

    /// `POST /api/packs` with the archive as the body (the server's token says who).
    fn push_pack_as(&self, _caller: &Caller, archive: Vec<u8>, private: bool) -> Reply<'_> {
        Box::pin(async move {
            self.open()?;
            self.http.push_pack(archive, private).await
        })
    }

    fn subscribe(&self) -> EventReceiver {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        match &*events {
            Some(tx) => tx.subscribe(),
            // Shut down: a stream that has already ended.
            None => broadcast::channel(1).1,
        }
    }

    fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        self.events.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Drop for RemoteConsole {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
