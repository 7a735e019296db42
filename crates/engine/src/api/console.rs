//! [`Console`]: the engine parts of one running console, composed, behind `dispatch`.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::{ApiError, ConsoleInfo, ConsolePaths, Event, Request, Response};
use crate::clock::{Clock, SystemClock};

/// Events buffered per subscriber before it lags and gets `resync`.
pub const EVENT_CAPACITY: usize = 4096;

pub struct Console {
    paths: ConsolePaths,
    #[allow(dead_code)] // read by the run and reservation commands
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<Event>,
}

impl Console {
    /// Open a console on `paths` with wall-clock time.
    pub fn open(paths: ConsolePaths) -> Result<Self, ApiError> {
        Self::open_with_clock(paths, Arc::new(SystemClock))
    }

    pub fn open_with_clock(paths: ConsolePaths, clock: Arc<dyn Clock>) -> Result<Self, ApiError> {
        std::fs::create_dir_all(&paths.data_dir).map_err(|e| {
            ApiError::internal(format!(
                "cannot create data directory {}: {e}",
                paths.data_dir.display()
            ))
        })?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        Ok(Self {
            paths,
            clock,
            events,
        })
    }

    pub fn paths(&self) -> &ConsolePaths {
        &self.paths
    }

    /// A new subscriber to every [`Event`] from now on. A subscriber that falls more than
    /// [`EVENT_CAPACITY`] events behind gets `RecvError::Lagged`; transports turn that into
    /// [`Event::Resync`].
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Answer one request.
    pub async fn dispatch(&self, request: Request) -> Result<Response, ApiError> {
        tracing::debug!(?request, "dispatch");
        match request {
            Request::Info => Ok(Response::Info(self.info())),
        }
    }

    fn info(&self) -> ConsoleInfo {
        let s = |p: &std::path::Path| p.display().to_string();
        ConsoleInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            data_dir: s(&self.paths.data_dir),
            pack_roots: self.paths.pack_roots.iter().map(|p| s(p)).collect(),
            lab_file: self.paths.lab_file.as_deref().map(s),
        }
    }
}
