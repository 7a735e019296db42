//! A system notification when a task asks the operator (a prompt) while the console
//! window is not focused: the operator may be at the rack, or in another window. The
//! dialog itself stays the page's (Live); this only calls the operator back to it.

use std::sync::Arc;

use tauri::{AppHandle, Manager};
use tauri_plugin_notification::NotificationExt;
use testbay_engine::api::{Console, Event, RunEvent};

/// Listen to the console's events for as long as the app runs.
pub fn start(app: AppHandle, console: &Arc<dyn Console>) {
    let mut events = console.subscribe();
    tauri::async_runtime::spawn(async move {
        loop {
            match events.recv().await {
                Ok(Event::Run(RunEvent::Prompt {
                    prompt, task, lane, ..
                })) => {
                    let focused = app
                        .get_webview_window("main")
                        .and_then(|w| w.is_focused().ok())
                        .unwrap_or(false);
                    if focused {
                        continue;
                    }
                    let shown = app
                        .notification()
                        .builder()
                        .title(format!("Testbay: {task} on {lane} asks"))
                        .body(prompt.message.chars().take(300).collect::<String>())
                        .show();
                    if let Err(e) = shown {
                        tracing::warn!(error = %e, "cannot show a notification for a prompt");
                    }
                }
                Ok(_) => {}
                // Missed events: the prompts among them go unnotified; Live still shows them.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    });
}
