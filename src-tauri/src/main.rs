//! Testbay desktop: the Tauri shell around the engine API. It forwards one command and one
//! event stream, saves the files the page offers, and does nothing else; every behaviour
//! lives in `testbay_engine::api`.
//!
//! Contract with the UI (ui/src/lib/backend/tauri.ts):
//! - `invoke("dispatch", { request })` with a `Request` (`{"cmd": ...}`) resolves to its
//!   `Response` (`{"cmd": ..., "data": ...}`) or rejects with an `ApiError`
//!   (`{"code", "message", "diagnostics"}`).
//! - engine `Event`s (`{"kind": ..., "data": ...}`) are emitted to the window as the Tauri
//!   event `testbay://event`, one event or an array of them (`api::frames`); a `resync`
//!   event means events were missed.
//! - a file the page saves through `<a download>` goes to the download folder, and
//!   `testbay://saved` (`{"path", "ok"}`) says where.
//!
//! - `invoke("seat")` says which lab the app is on (`seat::SeatView`); none means the first
//!   screen shows: `invoke("join", { choice: {"lab": "local"} | {"lab": "server", "url"},
//!   token })` joins one (a server is checked by a real request; the choice is remembered,
//!   module `remember`), `invoke("leave")` goes back to that screen.
//!
//! The app holds this computer's console (`LocalConsole`) or a lab server's
//! (`RemoteConsole`), module `seat`. `TESTBAY_SERVER` (and `TESTBAY_TOKEN`) joins that
//! server at start without asking or remembering; otherwise the remembered lab is joined,
//! and when none is remembered the first screen asks. This computer's console opens on
//! `TESTBAY_DATA_DIR`, `TESTBAY_PACKS` (`:`-separated) and `TESTBAY_LAB` when set, else
//! the platform data directory, the repository's demo packs and demo lab (see
//! `testbay_engine::api::ConsolePaths::resolve`).
//!
//! On Linux the page is drawn without GPU compositing (see [`use_software_compositing`]);
//! `WEBKIT_DISABLE_COMPOSITING_MODE=0` in the environment turns GPU compositing back on.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

mod notify;
mod remember;
mod seat;

use tauri::webview::DownloadEvent;
use tauri::{Emitter, Manager};
use testbay_engine::api::{ApiError, ConsolePaths, Request, Response};

use remember::{Choice, Memory};
use seat::{LabInfo, Seat, SeatView};

#[tauri::command]
async fn dispatch(
    seat: tauri::State<'_, Arc<Seat>>,
    request: Request,
) -> Result<Response, ApiError> {
    let console = seat.console()?;
    console.dispatch(request).await
}

#[tauri::command]
fn seat(seat: tauri::State<'_, Arc<Seat>>) -> SeatView {
    seat.view()
}

#[tauri::command]
async fn join(
    app: tauri::AppHandle,
    seat: tauri::State<'_, Arc<Seat>>,
    choice: Choice,
    token: Option<String>,
) -> Result<LabInfo, ApiError> {
    seat.join(&app, choice, token, true).await
}

#[tauri::command]
fn leave(seat: tauri::State<'_, Arc<Seat>>) {
    seat.leave();
}

fn paths_from_env() -> ConsolePaths {
    let path = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let packs = std::env::var_os("TESTBAY_PACKS")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    ConsolePaths::resolve(path("TESTBAY_DATA_DIR"), packs, path("TESTBAY_LAB"))
}

/// Make WebKitGTK draw the page in software instead of compositing it with OpenGL.
///
/// The console is a calm table-and-form UI: it gains nothing from GPU compositing, and on a
/// machine without a GPU (a lab PC, Xvfb) "GPU" means Mesa's llvmpipe. Composited, the web
/// process holds GL contexts, compositor and llvmpipe threads and their buffers. Measured
/// under Xvfb, release build, same run: idle RSS over the app and its WebKit processes
/// 490-495 MiB composited, 400-402 MiB not (PSS 300-309 -> 224-228 MiB); the web process
/// alone 247-261 -> 175 MiB. Time to the loaded page did not change.
///
/// This is an environment variable rather than `WebKitSettings`' hardware-acceleration
/// policy because wry starts loading the page while it creates the webview, before the
/// app can reach its settings: set afterwards, the first page is already composited and
/// keeps its compositor threads (measured 182 MiB instead of 175 for the web process).
/// WebKit reads the variable in this process and passes the choice to the web process.
/// A value already set by the user wins.
#[cfg(target_os = "linux")]
fn use_software_compositing() {
    const VAR: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";
    if std::env::var_os(VAR).is_none() {
        // Called first thing in `main`, before any thread exists, so no one reads the
        // environment concurrently.
        std::env::set_var(VAR, "1");
    }
}

/// Name of the Tauri event that tells the page where a saved file went: `{"path", "ok"}`.
const SAVED: &str = "testbay://saved";

/// Files the page offers for saving (`<a download>`: exports, logs, artifacts) go to the
/// user's download folder (`~/Downloads` when the desktop names none) under the name the
/// page gives, numbered when taken; the page is told where each one went, since a webview
/// has no download bar. Without this handler WebKitGTK saves nothing.
fn save_download(app: &tauri::AppHandle, event: DownloadEvent<'_>) -> bool {
    match event {
        DownloadEvent::Requested { destination, .. } => {
            let dir = app
                .path()
                .download_dir()
                .or_else(|_| app.path().home_dir().map(|h| h.join("Downloads")));
            let Ok(dir) = dir else {
                tracing::warn!("no download folder and no home folder; not saving");
                return false;
            };
            if let Err(e) = std::fs::create_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot create the download folder");
                return false;
            }
            let name = destination
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_else(|| "download".into());
            *destination = unique_path(&dir, Path::new(&name));
            true
        }
        DownloadEvent::Finished { path, success, .. } => {
            let path = path.map(|p| p.display().to_string()).unwrap_or_default();
            tracing::info!(path = %path, ok = success, "file saved");
            if let Err(e) = app.emit(SAVED, serde_json::json!({ "path": path, "ok": success })) {
                tracing::warn!(error = %e, "cannot tell the window about a saved file");
            }
            true
        }
        _ => true,
    }
}

/// `dir/name`, or `dir/stem (n).ext` for the first n not taken.
fn unique_path(dir: &Path, name: &Path) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let stem = name.file_stem().unwrap_or_default().to_string_lossy();
    let ext = name
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (1..)
        .map(|n| dir.join(format!("{stem} ({n}){ext}")))
        .find(|p| !p.exists())
        .expect("some number is free")
}

fn main() {
    let started = Instant::now();
    #[cfg(target_os = "linux")]
    use_software_compositing();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // While this process is small and has one thread (see `testbay_engine::exec`).
    testbay_engine::exec::start_guard();

    let paths = paths_from_env();
    let server = std::env::var("TESTBAY_SERVER")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let token = std::env::var("TESTBAY_TOKEN").ok();
    // Built once the app knows its config folder (in `setup`).
    let seats: Arc<std::sync::OnceLock<Arc<Seat>>> = Arc::default();
    let on_exit = seats.clone();
    let app = tauri::Builder::default()
        .plugin(tauri_plugin_notification::init())
        .invoke_handler(tauri::generate_handler![dispatch, seat, join, leave])
        .setup(move |app| {
            let memory = app
                .path()
                .config_dir()
                .ok()
                .map(|d| Memory::in_config_dir(&d));
            let seat = Arc::new(Seat::new(paths, memory));
            let _ = seats.set(seat.clone());
            app.manage(seat.clone());
            // The lab to join before the window shows: TESTBAY_SERVER, else the
            // remembered one; none leaves the first screen to ask.
            let start = match server {
                Some(url) => Some((Choice::Server { url }, token, false)),
                None => seat.remembered().map(|(c, t)| (c, t, true)),
            };
            if let Some((choice, token, remembered)) = start {
                let handle = app.handle().clone();
                let joined =
                    tauri::async_runtime::block_on(seat.join(&handle, choice, token, false));
                match joined {
                    Ok(_) => {}
                    Err(e) if remembered => {
                        tracing::warn!(error = %e, "cannot join the remembered lab; asking");
                        seat.set_error(&e);
                    }
                    Err(e) => {
                        eprintln!("testbay-desktop: cannot join the lab server: {e}");
                        std::process::exit(2);
                    }
                }
            }
            let config = app
                .config()
                .app
                .windows
                .iter()
                .find(|w| w.label == "main")
                .cloned()
                .ok_or("tauri.conf.json has no window labelled main")?;
            let saves = app.handle().clone();
            tauri::WebviewWindowBuilder::from_config(app.handle(), &config)?
                .on_download(move |_webview, event| save_download(&saves, event))
                .build()?;
            Ok(())
        })
        .on_page_load(move |_webview, payload| {
            if matches!(payload.event(), tauri::webview::PageLoadEvent::Finished) {
                // Read by bench/desktop.sh: start-up to a loaded page.
                tracing::info!(
                    target: "testbay_desktop::startup",
                    ms = started.elapsed().as_millis() as u64,
                    url = %payload.url(),
                    "page loaded"
                );
            }
        })
        .build(tauri::generate_context!());
    match app {
        Ok(app) => app.run(move |_, event| {
            if let (tauri::RunEvent::Exit, Some(seat)) = (event, on_exit.get()) {
                seat.shutdown();
            }
        }),
        Err(e) => {
            eprintln!("testbay-desktop: {e}");
            std::process::exit(1);
        }
    }
}
