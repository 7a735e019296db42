//! `testbay serve`: the web UI, the engine API and its event stream over HTTP.
//!
//! Routes:
//! - `POST /api` — a [`Request`](testbay_engine::api::Request) as JSON → its `Response`
//!   (200) or `{"error": ApiError}` with a status from the error code.
//! - `GET /api/events` — WebSocket; every engine `Event` as a JSON text frame (several at
//!   once as a JSON array). A client that falls behind gets a `resync` event.
//! - `GET /files/runs/...` — a log or artifact below `<data_dir>/runs`; nothing else of
//!   the data directory (no database), no `..`, no symlink that leads out.
//! - anything else — the built UI from disk (`ui/dist`, see [`ServeConfig::ui_dir`]),
//!   `index.html` for unknown paths so the UI's own routes reload.
//!
//! Trust: on a loopback address requests must name a loopback `Host` (no DNS rebinding),
//! `/api` takes only `application/json` and same-origin `Origin`s (no cross-site form
//! posts or socket hijacking). On any other address every request also needs the token
//! printed at start: `Authorization: Bearer`, `?token=` (which also sets an HttpOnly
//! cookie so the page's assets load) or that cookie.

mod auth;

pub use auth::token_is_url_safe;
mod events;
pub mod files;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use testbay_engine::api::{parse_request, ApiError, Console, ErrorCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower_http::services::{ServeDir, ServeFile};

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Address to bind; port 0 picks a free one.
    pub bind: SocketAddr,
    /// The built UI (`ui/dist`). Served from disk so a UI rebuild needs no server rebuild;
    /// `None` serves the API only and a page that says how to build the UI.
    pub ui_dir: Option<PathBuf>,
    /// Token required on non-loopback addresses; generated when `None`.
    pub token: Option<String>,
}

#[derive(Clone)]
struct AppState {
    console: Arc<Console>,
    auth: Arc<auth::Guard>,
    runs_dir: PathBuf,
    shutdown: watch::Receiver<bool>,
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    router: Router,
    addr: SocketAddr,
    token: Option<String>,
    shutdown: watch::Sender<bool>,
}

impl Server {
    pub async fn bind(console: Arc<Console>, config: ServeConfig) -> std::io::Result<Server> {
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let token = if addr.ip().is_loopback() {
            None
        } else {
            Some(config.token.unwrap_or_else(auth::new_token))
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = AppState {
            runs_dir: console.paths().runs_dir(),
            console,
            auth: Arc::new(auth::Guard::new(addr, token.clone())),
            shutdown: shutdown_rx,
        };
        let router = router(state, config.ui_dir);
        Ok(Server {
            listener,
            router,
            addr,
            token,
            shutdown,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token clients must present, when one is required.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The address to open in a browser (with the token when one is required).
    pub fn url(&self) -> String {
        match &self.token {
            Some(t) => format!("http://{}/?token={t}", self.addr),
            None => format!("http://{}/", self.addr),
        }
    }

    /// Serve until `stop` resolves; then close event streams and finish open requests.
    pub async fn run(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shutdown = self.shutdown;
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move {
                stop.await;
                let _ = shutdown.send(true);
            })
            .await
    }
}

fn router(state: AppState, ui_dir: Option<PathBuf>) -> Router {
    let api = Router::new()
        .route("/api", post(api))
        .route("/api/events", get(events::upgrade))
        .route("/files/runs/{*path}", get(files::download));
    let ui = match ui_dir {
        Some(dir) => {
            let index = dir.join("index.html");
            Router::new().fallback_service(ServeDir::new(dir).fallback(ServeFile::new(index)))
        }
        None => Router::new().fallback(no_ui),
    };
    api.merge(ui)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The token may travel in the address; never pass it on.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
             connect-src 'self' ws: wss:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'",
        ),
    );
    res
}

async fn no_ui() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        "The Testbay UI is not built. Build it with `npm ci && npm run build` in ui/ \
         (or run scripts/console --web), or pass --ui-dir. The API is at POST /api.\n",
    )
}

async fn api(State(st): State<AppState>, body: Bytes) -> Response {
    let result = match parse_request(&body) {
        Ok(req) => st.console.dispatch(req).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(res) => Json(res).into_response(),
        Err(e) => error_response(e),
    }
}

/// `{"error": ApiError}` with the HTTP status that matches its code.
pub(crate) fn error_response(e: ApiError) -> Response {
    let status = match e.code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::PackBroken => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Busy | ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::error!(code = e.code.as_str(), message = %e.message, "request failed");
    }
    (status, Json(serde_json::json!({ "error": e }))).into_response()
}
