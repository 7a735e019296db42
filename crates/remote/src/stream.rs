//! The lab server's event stream (`GET /api/events`, a WebSocket) fed to the remote
//! console's subscribers. A stream that drops (the server restarted, the network
//! blinked, nothing heard for [`SILENCE`]) is opened again with backoff from
//! [`FIRST_RETRY`] up to [`LAST_RETRY`]; once it is back every subscriber gets
//! [`Event::Resync`] (`missed: 0`: how many is not known), since what happened meanwhile
//! was not heard.

use std::time::Duration;

use futures_util::StreamExt as _;
use testbay_engine::api::{ApiError, ErrorCode, Event};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, watch};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::Target;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The server pings every 20 s; a stream silent this long is taken as dropped.
pub const SILENCE: Duration = Duration::from_secs(60);
/// First wait before opening a dropped stream again; doubled after each failure.
pub const FIRST_RETRY: Duration = Duration::from_millis(200);
/// Longest wait between two tries.
pub const LAST_RETRY: Duration = Duration::from_secs(5);
/// How long opening the stream may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Open the event stream, with the token.
pub async fn open(target: &Target) -> Result<Socket, ApiError> {
    let url = target.events_url();
    let unavailable = |why: String| {
        ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "cannot open the event stream of the lab server at {}: {why}",
                target.url
            ),
        )
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| unavailable(e.to_string()))?;
    if let Some(token) = &target.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| ApiError::invalid("the token holds characters a header cannot"))?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    match tokio::time::timeout(OPEN_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tungstenite::Error::Http(res))) if res.status().as_u16() == 401 => {
            Err(ApiError::invalid(format!(
                "the lab server at {} refused the token for its event stream (401 Unauthorized)",
                target.url
            )))
        }
        Ok(Err(e)) => Err(unavailable(e.to_string())),
        Err(_) => Err(unavailable(format!(
            "no answer within {} s",
            OPEN_TIMEOUT.as_secs()
        ))),
    }
}

/// Forward the stream's events to `events` until `stop` turns true (or its sender goes),
/// opening the stream again whenever it drops.
pub async fn pump(
    target: Target,
    mut socket: Socket,
    events: broadcast::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if !forward(&mut socket, &events, &mut stop).await {
            let _ = socket.close(None).await;
            return;
        }
        tracing::warn!(server = %target.url, "the lab server's event stream dropped; opening it again");
        match reopen(&target, &mut stop).await {
            Some(s) => socket = s,
            None => return,
        }
        tracing::info!(server = %target.url, "the lab server's event stream is back; subscribers resync");
        // Nobody listening is not an error.
        let _ = events.send(Event::Resync { missed: 0 });
    }
}

/// Forward frames until the stream drops (`true`) or the console stops (`false`).
async fn forward(
    socket: &mut Socket,
    events: &broadcast::Sender<Event>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        let msg = tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return false;
                }
                continue;
            }
            msg = tokio::time::timeout(SILENCE, socket.next()) => msg,
        };
        let text = match msg {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Close(_)))) | Ok(Some(Err(_))) | Ok(None) => return true,
            // Pings are answered by the socket as it reads.
            Ok(Some(Ok(_))) => continue,
            Err(_) => {
                tracing::warn!(
                    silent_s = SILENCE.as_secs(),
                    "nothing heard from the lab server's event stream"
                );
                return true;
            }
        };
        for event in decode(text.as_str()) {
            let _ = events.send(event);
        }
    }
}

/// One frame: an event, or several as a JSON array. One this client cannot read (a
/// newer server's) is logged and stands as a resync, since the screens miss something.
pub fn decode(text: &str) -> Vec<Event> {
    let parsed = if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<Event>>(text)
    } else {
        serde_json::from_str::<Event>(text).map(|e| vec![e])
    };
    match parsed {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(error = %e, "an event from the lab server cannot be read; resyncing");
            vec![Event::Resync { missed: 1 }]
        }
    }
}

/// Open the stream again with backoff; `None` when the console stopped meanwhile.
async fn reopen(target: &Target, stop: &mut watch::Receiver<bool>) -> Option<Socket> {
    let mut wait = FIRST_RETRY;
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return None;
                }
                continue;
            }
            () = tokio::time::sleep(wait) => {}
        }
        match open(target).await {
            Ok(socket) => return Some(socket),
            Err(e) => {
                tracing::debug!(error = %e.message, retry_ms = wait.as_millis() as u64, "the lab server's event stream is still down");
                wait = (wait * 2).min(LAST_RETRY);
            }
        }
    }
}
