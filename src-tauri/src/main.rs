//! Testbay desktop: the Tauri shell around the engine API. It forwards one command and one
//! event stream and does nothing else; every behaviour lives in `testbay_engine::api`.
//!
//! Contract with the UI (ui/src/lib/backend/tauri.ts):
//! - `invoke("dispatch", { request })` with a `Request` (`{"cmd": ...}`) resolves to its
//!   `Response` (`{"cmd": ..., "data": ...}`) or rejects with an `ApiError`
//!   (`{"code", "message", "diagnostics"}`).
//! - every engine `Event` (`{"kind": ..., "data": ...}`) is emitted to the window as the
//!   Tauri event `testbay://event`; a `resync` event means events were missed.
//!
//! The console opens on `TESTBAY_DATA_DIR`, `TESTBAY_PACKS` (`:`-separated) and
//! `TESTBAY_LAB` when set, else the platform data directory, the repository's demo packs
//! and demo lab (see `testbay_engine::api::ConsolePaths::resolve`).

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use tauri::Emitter;
use testbay_engine::api::{ApiError, Console, ConsolePaths, Event, Request, Response};
use tokio::sync::broadcast::error::RecvError;

/// Name of the Tauri event that carries engine events.
const EVENT: &str = "testbay://event";

#[tauri::command]
async fn dispatch(
    console: tauri::State<'_, Arc<Console>>,
    request: Request,
) -> Result<Response, ApiError> {
    console.dispatch(request).await
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

fn main() {
    let started = Instant::now();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let paths = paths_from_env();
    let console = match tauri::async_runtime::block_on(async { Console::open(paths.clone()) }) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!(
                "testbay-desktop: cannot open the console on {}: {e}",
                paths.data_dir.display()
            );
            std::process::exit(2);
        }
    };

    let app = tauri::Builder::default()
        .manage(console.clone())
        .invoke_handler(tauri::generate_handler![dispatch])
        .setup(move |app| {
            let handle = app.handle().clone();
            let mut rx = console.subscribe();
            tauri::async_runtime::spawn(async move {
                loop {
                    let ev = match rx.recv().await {
                        Ok(ev) => ev,
                        Err(RecvError::Lagged(missed)) => Event::Resync { missed },
                        Err(RecvError::Closed) => break,
                    };
                    if let Err(e) = handle.emit(EVENT, &ev) {
                        tracing::warn!(error = %e, "cannot emit event to the window");
                    }
                }
            });
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
        Ok(app) => app.run(|_, _| {}),
        Err(e) => {
            eprintln!("testbay-desktop: {e}");
            std::process::exit(1);
        }
    }
}
