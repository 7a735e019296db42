//! `testbay serve`: the web UI, the engine API and its event stream over HTTP.
//!
//! Routes:
//! - `POST /api` — a [`Request`](testbay_engine::api::Request) as JSON → its `Response`
//!   (200) or `{"error": ApiError}` with a status from the error code.
//! - `POST /api/packs?private=BOOL` — a pack pushed into the lab's library as its raw
//!   archive (`application/octet-stream`, module `packs`): the `push_pack` request
//!   without base64 or the `/api` body limit, within `bounds::MAX_PACK_ARCHIVE_BYTES`.
//! - `GET /api/events` — WebSocket; every engine `Event` as a JSON text frame (several at
//!   once as a JSON array). A client that falls behind gets a `resync` event.
//! - `GET /api/agent` — WebSocket of a rack agent (a user with the `agent` role; see
//!   `agents`).
//! - `GET /files/runs/...` — a log or artifact below `<data_dir>/runs`; nothing else of
//!   the data directory (no database), no `..`, no symlink that leads out.
//! - anything else — the built UI from disk (`ui/dist`, see [`ServeConfig::ui_dir`]),
//!   `index.html` for unknown paths so the UI's own routes reload.
//!
//! Limits (see [`Limits`]): a connection must send each request head within
//! `header_timeout` of opening or of its previous response (so an idle keep-alive
//! connection closes then too), a request body must arrive within `body_timeout` of its
//! head (a pack upload: within `body_timeout` plus its bytes at `upload_min_rate`), an `/api` body may hold at most `api_body_limit` bytes (else 413 with the API's
//! error shape), and the event stream pings its client every `ping_interval`, dropping one
//! that stops answering. Stopping closes idle and half-sent connections at once, shuts the
//! console down (`Console::shutdown`: results and reservations flushed, store reads in
//! flight stopped, their requests answer `unavailable`), gives other
//! requests in flight `shutdown_grace` to finish, then closes what is left.
//!
//! Lab mode (the store has a user when the server binds, or [`AuthMode::Users`]): every `/api` request, the
//! event stream and every `/files/...` download needs an active user's token, as
//! `Authorization: Bearer` or the `testbay_token` cookie that `POST /signin` (the form at
//! `GET /signin`) sets; none, an unknown or a revoked one is 401 `unauthorized`, a role
//! too low 403 `forbidden` naming the role needed (`api::access`). A page of the UI
//! without a token goes to `/signin`. A revoked user's event stream closes within
//! [`Limits::user_recheck`]. The shared token and `?token=` are not used then, and
//! loopback is not trusted. Tokens are never logged.
//!
//! Single seat (no users): on a loopback address requests must name a loopback `Host` (no DNS rebinding),
//! `/api` takes only `application/json` and same-origin `Origin`s (no cross-site form
//! posts or socket hijacking). On any other address every request also needs the token
//! printed at start: `Authorization: Bearer`, `?token=` (which also sets an HttpOnly
//! cookie so the page's assets load) or that cookie.

mod agents;
mod auth;

pub use auth::token_is_url_safe;
mod events;
pub mod files;
mod packs;

/// Where a pack's archive is uploaded (`POST`, module `packs`).
pub(crate) const PACKS_PATH: &str = "/api/packs";

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use testbay_engine::access::Access;
use testbay_engine::api::{
    authorize, parse_request, ApiError, Caller, Console, ErrorCode, Request as ApiRequest,
    Response as ApiResponse,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt;
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
    /// Timeouts and sizes; [`Limits::default`] in production.
    pub limits: Limits,
    /// The console's users ([`LocalConsole::access`](testbay_engine::api::LocalConsole::access)),
    /// for lab mode.
    pub access: Option<Arc<Access>>,
    /// Whether requests need a user's token (see [`AuthMode`]).
    pub auth: AuthMode,
}

/// Who may talk to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Lab mode when the store has a user (revoked ones count: revoking everyone locks
    /// the lab, it does not open it), else single seat.
    #[default]
    Auto,
    /// Lab mode: every request carries a user's token (refused to start without a
    /// store that keeps users).
    Users,
    /// Single seat: loopback trusted, the shared token elsewhere, whatever users exist.
    Token,
}

/// Time and size limits that keep slow or idle clients from holding the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A connection must send a whole request head within this time of opening or of
    /// the end of its previous response: a head trickling in and an idle keep-alive
    /// connection are both closed then (hyper's header read timeout).
    pub header_timeout: Duration,
    /// A request body must arrive whole within this time of its head (408 otherwise).
    pub body_timeout: Duration,
    /// Largest `POST /api` body, in bytes (413 `too_large` otherwise).
    pub api_body_limit: usize,
    /// A pack upload (`POST /api/packs`) may take `body_timeout` plus its bytes at this
    /// many bytes a second: a client slower than that on average is cut off (408).
    pub upload_min_rate: u64,
    /// The event stream pings its client this often; a client that sends nothing (not
    /// even a pong) for two intervals, or does not take a frame within one, is dropped.
    pub ping_interval: Duration,
    /// When stopping, how long requests in flight may still finish.
    pub shutdown_grace: Duration,
    /// In lab mode, how often an open event stream checks that its user's token still
    /// stands (a revoked one's stream is closed).
    pub user_recheck: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            api_body_limit: 1 << 20,
            upload_min_rate: 128 << 10,
            ping_interval: Duration::from_secs(20),
            shutdown_grace: Duration::from_secs(1),
            user_recheck: Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
struct AppState {
    console: Arc<dyn Console>,
    auth: Arc<auth::Guard>,
    runs_dir: PathBuf,
    limits: Arc<Limits>,
    shutdown: watch::Receiver<bool>,
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    router: Router,
    addr: SocketAddr,
    token: Option<String>,
    lab_mode: bool,
    console: Arc<dyn Console>,
    limits: Arc<Limits>,
    shutdown: watch::Sender<bool>,
}

impl Server {
    pub async fn bind(console: Arc<dyn Console>, config: ServeConfig) -> std::io::Result<Server> {
        let users = match (config.auth, &config.access) {
            (AuthMode::Token, _) => None,
            (AuthMode::Users, None) => {
                return Err(std::io::Error::other(
                    "--auth users: this console's store keeps no users",
                ))
            }
            (AuthMode::Users, Some(a)) => Some(a.clone()),
            (AuthMode::Auto, Some(a)) => {
                let access = a.clone();
                let any = tokio::task::spawn_blocking(move || access.has_users())
                    .await
                    .map_err(std::io::Error::other)?
                    .map_err(std::io::Error::other)?;
                any.then(|| a.clone())
            }
            (AuthMode::Auto, None) => None,
        };
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let token = if users.is_some() || addr.ip().is_loopback() {
            None
        } else {
            Some(config.token.unwrap_or_else(auth::new_token))
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let limits = Arc::new(config.limits);
        // `/files/runs/...` serves the console's data directory, as it names it.
        let runs_dir = match console.dispatch(ApiRequest::Info).await {
            Ok(ApiResponse::Info(info)) => PathBuf::from(info.data_dir).join("runs"),
            Ok(other) => {
                return Err(std::io::Error::other(format!(
                    "the console answered info with {other:?}"
                )))
            }
            Err(e) => return Err(std::io::Error::other(e)),
        };
        let state = AppState {
            runs_dir,
            console: console.clone(),
            auth: Arc::new(auth::Guard::new(addr, token.clone(), users.clone())),
            limits: limits.clone(),
            shutdown: shutdown_rx,
        };
        let router = router(state, config.ui_dir);
        Ok(Server {
            listener,
            router,
            addr,
            token,
            lab_mode: users.is_some(),
            console,
            limits,
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

    /// Whether every request needs a user's token (lab mode).
    pub fn lab_mode(&self) -> bool {
        self.lab_mode
    }

    /// The address to open in a browser (with the token when one is required).
    pub fn url(&self) -> String {
        match &self.token {
            Some(t) => format!("http://{}/?token={t}", self.addr),
            None => format!("http://{}/", self.addr),
        }
    }

    /// Serve until `stop` resolves. Then: stop accepting, close event streams, shut the
    /// console down (its store reads in flight stop), let requests in flight finish for at most
    /// [`Limits::shutdown_grace`] and close every connection left.
    pub async fn run(
        self,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        let (stop_conns, conns_stop) = watch::channel(false);
        let mut conns = JoinSet::new();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Event frames and a rack agent's messages are small: no Nagle delay.
                        let _ = stream.set_nodelay(true);
                        let conn = serve_connection(&http, stream, self.router.clone(), conns_stop.clone());
                        conns.spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!(%peer, error = %e, "connection ended with an error");
                            }
                        });
                    }
                    Err(e) => accept_failed(e).await,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(self.listener);
        let _ = self.shutdown.send(true);
        let _ = stop_conns.send(true);
        // Nothing in flight waits for a long query; what the console accepted is kept.
        self.console.shutdown();
        let all_done = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(self.limits.shutdown_grace, all_done)
            .await
            .is_err()
        {
            tracing::warn!(
                connections = conns.len(),
                "closing connections still busy at shutdown"
            );
            conns.shutdown().await;
        }
        Ok(())
    }
}

/// One HTTP/1.1 connection, upgradable to a WebSocket. Once `stop` turns true it closes
/// at once when no request is in flight, else after its response.
fn serve_connection(
    http: &hyper::server::conn::http1::Builder,
    stream: TcpStream,
    router: Router,
    mut stop: watch::Receiver<bool>,
) -> impl std::future::Future<Output = hyper::Result<()>> + Send + 'static {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counted = in_flight.clone();
    let service = tower::service_fn(move |req: Request<hyper::body::Incoming>| {
        let busy = InFlight::new(&counted);
        let answer = router.clone().oneshot(req.map(axum::body::Body::new));
        async move {
            let res = answer.await;
            drop(busy);
            res
        }
    });
    let conn = http
        .serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(service),
        )
        .with_upgrades();
    async move {
        tokio::pin!(conn);
        tokio::select! {
            res = conn.as_mut() => return res,
            _ = stop.wait_for(|s| *s) => {}
        }
        if in_flight.load(Ordering::Acquire) == 0 {
            // Idle, or a request head still coming in: nothing to finish.
            return Ok(());
        }
        conn.as_mut().graceful_shutdown();
        conn.await
    }
}

/// Counts a request in flight on its connection while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An `accept` error: those of one connection (it was reset before we took it) need
/// nothing; others (out of file descriptors) get a pause so the loop does not spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn router(state: AppState, ui_dir: Option<PathBuf>) -> Router {
    let api = Router::new()
        .route("/api", post(api))
        .route(PACKS_PATH, post(packs::upload))
        .route("/api/events", get(events::upgrade))
        .route("/api/agent", get(agents::upgrade))
        .route("/files/runs/{*path}", get(files::download))
        .route("/signin", get(auth::signin_page).post(auth::signin));
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
    // (The sign-in page says `same-origin`: its form post must carry its `Origin`.)
    h.entry(header::REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
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

async fn api(State(st): State<AppState>, req: Request) -> Response {
    let caller = req
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::local);
    let body = match read_body(req, &st.limits).await {
        Ok(body) => body,
        Err(res) => return res,
    };
    let result = match parse_request(&body) {
        Ok(req) => match authorize(&caller, &req) {
            Ok(()) => st.console.dispatch_as(&caller, req).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match result {
        Ok(res) => Json(res).into_response(),
        Err(e) => error_response(e),
    }
}

/// The whole body of an `/api` request, within [`Limits::api_body_limit`] and
/// [`Limits::body_timeout`]; else the error response (the connection then closes, as its
/// body was not read to the end).
async fn read_body(req: Request, limits: &Limits) -> Result<Vec<u8>, Response> {
    let limit = limits.api_body_limit as u64;
    read_bounded(
        req,
        limit,
        &format!("request body over the limit of {limit} bytes"),
        limits.body_timeout,
        None,
    )
    .await
}

/// The whole body of a request, at most `limit` bytes (else 413 `too_large` saying
/// `too_large`), arriving within `grace` of its head, plus, with a `min_rate` (bytes a
/// second), the time its bytes so far take at that rate: a client that trickles is cut
/// off (408 `timeout`) however long its body. Else the error response (the connection
/// then closes, as its body was not read to the end).
pub(crate) async fn read_bounded(
    req: Request,
    limit: u64,
    too_large: &str,
    grace: Duration,
    min_rate: Option<u64>,
) -> Result<Vec<u8>, Response> {
    let refuse = || error_response(ApiError::new(ErrorCode::TooLarge, too_large));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(refuse());
    }
    let start = tokio::time::Instant::now();
    let deadline = |received: u64| match min_rate {
        Some(rate) => start + grace + Duration::from_secs_f64(received as f64 / rate.max(1) as f64),
        None => start + grace,
    };
    let mut stream = req.into_body().into_data_stream();
    let mut body = Vec::with_capacity(declared.unwrap_or(0) as usize);
    loop {
        let next = tokio::time::timeout_at(deadline(body.len() as u64), stream.next()).await;
        let chunk = match next {
            Ok(Some(chunk)) => chunk.map_err(|e| {
                error_response(ApiError::invalid(format!(
                    "cannot read the request body: {e}"
                )))
            })?,
            Ok(None) => return Ok(body),
            Err(_) => {
                let why = match min_rate {
                    Some(rate) => format!(
                        "the request body arrived slower than {} KiB/s (after {} s)",
                        rate / 1024,
                        grace.as_secs_f64()
                    ),
                    None => format!(
                        "the request body did not arrive within {} s",
                        grace.as_secs_f64()
                    ),
                };
                tracing::warn!(received = body.len(), why, "request body too slow");
                let mut res = error_response(ApiError::new(ErrorCode::Timeout, why));
                *res.status_mut() = StatusCode::REQUEST_TIMEOUT;
                return Err(res);
            }
        };
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(refuse());
        }
        body.extend_from_slice(&chunk);
    }
}

/// `{"error": ApiError}` with the HTTP status that matches its code.
pub(crate) fn error_response(e: ApiError) -> Response {
    let status = match e.code {
        ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::PackBroken => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Busy | ErrorCode::Conflict | ErrorCode::DutBad => StatusCode::CONFLICT,
        ErrorCode::Unavailable | ErrorCode::Timeout => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
    };
    if status.is_server_error() {
        tracing::error!(code = e.code.as_str(), message = %e.message, "request failed");
    }
    (status, Json(serde_json::json!({ "error": e }))).into_response()
}
