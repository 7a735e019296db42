//! A system notification when a task asks the operator (a prompt) while the console
//! window is not focused: the operator may be at the rack, or in another window. The
//! dialog itself stays the page's (Live); this only calls the operator back to it.

use tauri::{AppHandle, Manager};
use tauri_plugin_notification::NotificationExt;
use testbay_engine::api::{Event, RunEvent};

/// Call the operator back when `event` is a task asking them and the window is not
/// focused; every event the window gets passes here (`seat`).
pub fn on_event(app: &AppHandle, event: &Event) {
    let Event::Run(RunEvent::Prompt {
        prompt, task, lane, ..
    }) = event
    else {
        return;
    };
    let focused = app
        .get_webview_window("main")
        .and_then(|w| w.is_focused().ok())
        .unwrap_or(false);
    if focused {
        return;
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
