//! The console the desktop app holds: this computer's (`LocalConsole`) or a lab server's
//! (`RemoteConsole`), as the first screen chose. Every screen talks to whichever it is
//! through `dispatch` and hears its events; joining another lab reloads the screens.
//!
//! The local console, once opened, stays open until the app exits (its runs go on while
//! the app looks at a server); a server's console is shut down when the app leaves it.

use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;
use tauri::async_runtime::JoinHandle;
use tauri::{AppHandle, Emitter};
use testbay_engine::api::frames::Framer;
use testbay_engine::api::{ApiError, Console, ConsolePaths, ErrorCode, Event, LocalConsole};
use testbay_remote::{RemoteConsole, Target};

use crate::remember::{Choice, Memory, TokenPlace};

/// Name of the Tauri event that carries engine events.
pub const EVENT: &str = "testbay://event";

/// Which lab the app is on, for the side bar and the first screen.
#[derive(Debug, Clone, Serialize)]
pub struct LabInfo {
    /// `local` or `server`.
    pub kind: &'static str,
    /// "this computer", or the server's host and port.
    pub name: String,
    /// The server's address (without its token).
    pub url: Option<String>,
    /// The user the server knows the token as, when it says.
    pub user: Option<String>,
}

/// What the first screen needs to know.
#[derive(Debug, Clone, Serialize)]
pub struct SeatView {
    /// The lab joined now; none while the first screen shows.
    pub lab: Option<LabInfo>,
    /// The remembered server address, to fill the form with.
    pub remembered_url: Option<String>,
    /// The file a server's token is kept in when no OS keyring answers (only this user
    /// can read it).
    pub token_file: String,
    /// Where the last remembered token went (`keyring`, `file`), if one was saved.
    pub token_in: Option<TokenPlace>,
    /// Why the remembered lab could not be joined at start, if so.
    pub error: Option<String>,
}

pub struct Seat {
    paths: ConsolePaths,
    memory: Option<Memory>,
    current: RwLock<Option<(Arc<dyn Console>, LabInfo)>>,
    local: Mutex<Option<Arc<dyn Console>>>,
    pump: Mutex<Option<JoinHandle<()>>>,
    joining: tokio::sync::Mutex<()>,
    error: Mutex<Option<String>>,
    token_in: Mutex<Option<TokenPlace>>,
}

impl Seat {
    pub fn new(paths: ConsolePaths, memory: Option<Memory>) -> Self {
        Self {
            paths,
            memory,
            current: RwLock::new(None),
            local: Mutex::new(None),
            pump: Mutex::new(None),
            joining: tokio::sync::Mutex::new(()),
            error: Mutex::new(None),
            token_in: Mutex::new(None),
        }
    }

    /// The console of the lab joined now.
    pub fn console(&self) -> Result<Arc<dyn Console>, ApiError> {
        read(&self.current)
            .as_ref()
            .map(|(c, _)| c.clone())
            .ok_or_else(|| {
                ApiError::new(
                    ErrorCode::Unavailable,
                    "no lab joined yet: choose this computer or a lab server first",
                )
            })
    }

    pub fn view(&self) -> SeatView {
        let remembered_url = match self.memory.as_ref().and_then(Memory::choice) {
            Some(Choice::Server { url }) => Some(url),
            _ => None,
        };
        SeatView {
            lab: read(&self.current).as_ref().map(|(_, l)| l.clone()),
            remembered_url,
            token_file: self
                .memory
                .as_ref()
                .map(|m| m.token_file().display().to_string())
                .unwrap_or_default(),
            error: lock(&self.error).clone(),
            token_in: *lock(&self.token_in),
        }
    }

    /// The remembered choice, if any.
    pub fn remembered(&self) -> Option<(Choice, Option<String>)> {
        let m = self.memory.as_ref()?;
        let choice = m.choice()?;
        let token = match &choice {
            Choice::Server { url } => m.token(url),
            Choice::Local => None,
        };
        Some((choice, token))
    }

    /// Say why the remembered lab could not be joined (shown on the first screen).
    pub fn set_error(&self, e: &ApiError) {
        *lock(&self.error) = Some(e.message.clone());
    }

    /// Join `choice`: open its console (a server's is checked by a real request), hold it
    /// instead of the one before, and, when `remember`, keep the choice for next time.
    pub async fn join(
        &self,
        app: &AppHandle,
        choice: Choice,
        token: Option<String>,
        remember: bool,
    ) -> Result<LabInfo, ApiError> {
        let _one_at_a_time = self.joining.lock().await;
        let (console, lab, token) = match &choice {
            Choice::Local => (self.local_console()?, local_info(), None),
            Choice::Server { url } => {
                let target = Target::parse(url, token)?;
                let remote = RemoteConsole::connect(target.clone()).await?;
                let lab = LabInfo {
                    kind: "server",
                    name: target.host(),
                    url: Some(target.url.to_string()),
                    user: None,
                };
                (remote.shared(), lab, target.token)
            }
        };
        if remember {
            let choice = match choice {
                Choice::Server { .. } => Choice::Server {
                    url: lab.url.clone().unwrap_or_default(),
                },
                Choice::Local => Choice::Local,
            };
            if let Some(m) = self.memory.clone() {
                // The keyring is D-Bus calls: off the async threads.
                let saved = tauri::async_runtime::spawn_blocking(move || {
                    m.save(&choice, token.as_deref()).map_err(|e| (m.dir, e))
                })
                .await;
                match saved {
                    Ok(Ok(place)) => *lock(&self.token_in) = Some(place),
                    Ok(Err((dir, e))) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remember the lab")
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot remember the lab"),
                }
            }
        }
        *lock(&self.error) = None;
        self.hold(app, console, lab.clone());
        Ok(lab)
    }

    /// Back to the first screen: the server's console (if any) is closed.
    pub fn leave(&self) {
        let old = write(&self.current).take();
        if let Some(pump) = lock(&self.pump).take() {
            pump.abort();
        }
        if let Some((console, lab)) = old {
            if lab.kind == "server" {
                console.shutdown();
            }
        }
    }

    /// The app exits: every console it opened is shut down.
    pub fn shutdown(&self) {
        self.leave();
        if let Some(local) = lock(&self.local).take() {
            local.shutdown();
        }
    }

    fn local_console(&self) -> Result<Arc<dyn Console>, ApiError> {
        let mut local = lock(&self.local);
        if let Some(c) = &*local {
            return Ok(c.clone());
        }
        let c = LocalConsole::open(self.paths.clone())?.shared();
        *local = Some(c.clone());
        Ok(c)
    }

    /// Hold `console`: its events go to the window (the first at once, a busy stream as
    /// batches at most every 50 ms, as the server's WebSocket sends them), and the page
    /// gets a `resync` so every screen reloads from it.
    fn hold(&self, app: &AppHandle, console: Arc<dyn Console>, lab: LabInfo) {
        self.leave();
        let mut frames = Framer::new(console.subscribe());
        let handle = app.clone();
        let pump = tauri::async_runtime::spawn(async move {
            while let Some(batch) = frames.next().await {
                for event in &batch {
                    crate::notify::on_event(&handle, event);
                }
                let sent = match batch.as_slice() {
                    [one] => handle.emit(EVENT, one),
                    all => handle.emit(EVENT, all),
                };
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "cannot emit events to the window");
                }
            }
        });
        *write(&self.current) = Some((console, lab));
        *lock(&self.pump) = Some(pump);
        if let Err(e) = app.emit(EVENT, Event::Resync { missed: 0 }) {
            tracing::warn!(error = %e, "cannot tell the window to reload");
        }
    }
}

fn local_info() -> LabInfo {
    LabInfo {
        kind: "local",
        name: "this computer".into(),
        url: None,
        user: None,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}
