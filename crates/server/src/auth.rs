//! Who may talk to the server: loopback `Host` names, same-origin `Origin`s, JSON-only
//! API posts, and the token on non-loopback addresses; in lab mode a user's token on
//! every request (the sign-in page sets it as a cookie).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use testbay_engine::access::Access;
use testbay_engine::api::{ApiError, Caller, ErrorCode};

use crate::AppState;

const COOKIE: &str = "testbay_token";

/// A fresh random token: 256 bits as hex.
pub fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// True when `token` can travel in a URL and a cookie unescaped.
pub fn token_is_url_safe(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

pub(crate) struct Guard {
    token: Option<String>,
    loopback: bool,
    /// Lab mode: the console's users.
    pub(crate) users: Option<Arc<Access>>,
}

impl Guard {
    pub(crate) fn new(addr: SocketAddr, token: Option<String>, users: Option<Arc<Access>>) -> Self {
        Self {
            token,
            loopback: addr.ip().is_loopback(),
            users,
        }
    }
}

/// The token a lab-mode request was let in with, for the event stream's rechecks. Its
/// `Debug` hides it.
#[derive(Clone)]
pub(crate) struct UserToken(pub(crate) String);

impl std::fmt::Debug for UserToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserToken(..)")
    }
}

/// The active user `token` belongs to (off the async workers: a store read).
pub(crate) async fn user_of(access: &Arc<Access>, token: String) -> Option<Caller> {
    let access = access.clone();
    match tokio::task::spawn_blocking(move || access.authenticate(&token)).await {
        Ok(Ok(user)) => user.as_ref().map(Caller::user),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot look a user up");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "user lookup failed");
            None
        }
    }
}

fn unauthorized(why: &str) -> Response {
    tracing::warn!(why, "request refused: no valid user token");
    let mut res = crate::error_response(ApiError::new(ErrorCode::Unauthorized, why));
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

fn is_api_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/") || path.starts_with("/files/")
}

/// Lab mode: let in a request with an active user's token (the [`Caller`] and the token
/// put in its extensions), send a page without one to the sign-in page, refuse the rest.
async fn lab_guard(users: &Arc<Access>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path == "/signin" {
        return next.run(req).await;
    }
    let token = bearer(req.headers())
        .or_else(|| cookie(req.headers()))
        .map(str::to_string);
    let caller = match token.clone() {
        Some(t) => user_of(users, t).await,
        None => None,
    };
    match (caller, token) {
        (Some(caller), Some(token)) => {
            req.extensions_mut().insert(caller);
            req.extensions_mut().insert(UserToken(token));
            next.run(req).await
        }
        (_, token) if is_api_path(&path) => unauthorized(if token.is_some() {
            "the user token is unknown or revoked; sign in again"
        } else {
            "this lab needs a user token: sign in at /signin or send Authorization: Bearer"
        }),
        _ => (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, HeaderValue::from_static("/signin"))],
        )
            .into_response(),
    }
}

const SIGNIN_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in · Testbay</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font:15px system-ui,sans-serif;background:#f4f5f7;display:grid;place-items:center;min-height:100vh;margin:0}
form{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002;display:grid;gap:.8rem;min-width:22rem}
input{font:inherit;padding:.5rem;border:1px solid #999;border-radius:4px}button{font:inherit;padding:.5rem;border-radius:4px}
.err{color:#a40000}</style></head>
<body><form method="post" action="/signin"><h1>Testbay lab</h1>
<label for="token">Your user token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<!--MESSAGE--><button type="submit">Sign in</button>
<p>An admin gives you a token with <code>testbay users add NAME --role ROLE</code>.</p></form></body></html>
"#;

fn page(status: StatusCode, message: Option<&str>) -> Response {
    let body = match message {
        Some(m) => SIGNIN_PAGE.replace(
            "<!--MESSAGE-->",
            &format!("<p class=\"err\" role=\"alert\">{m}</p>"),
        ),
        None => SIGNIN_PAGE.to_string(),
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // A form post carries `Origin` only when the page lets it.
            (header::REFERRER_POLICY, "same-origin"),
        ],
        body,
    )
        .into_response()
}

/// `GET /signin`: the sign-in form (lab mode; a single seat's goes back to the UI).
pub(crate) async fn signin_page(State(st): State<AppState>) -> Response {
    if st.auth.users.is_none() {
        return (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, HeaderValue::from_static("/"))],
        )
            .into_response();
    }
    page(StatusCode::OK, None)
}

/// `POST /signin` (`token=...`, form-encoded): a valid token becomes the HttpOnly cookie
/// and the browser goes to the UI; `signout=1` clears the cookie.
pub(crate) async fn signin(State(st): State<AppState>, req: Request) -> Response {
    let Some(users) = &st.auth.users else {
        return (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, HeaderValue::from_static("/"))],
        )
            .into_response();
    };
    let body = match axum::body::to_bytes(req.into_body(), 4096).await {
        Ok(b) => b,
        Err(_) => return page(StatusCode::BAD_REQUEST, Some("The form was too large.")),
    };
    let body = String::from_utf8_lossy(&body);
    let field = |name: &str| {
        body.split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(str::trim)
    };
    if field("signout").is_some() {
        let mut res = (
            StatusCode::SEE_OTHER,
            [(header::LOCATION, HeaderValue::from_static("/signin"))],
        )
            .into_response();
        res.headers_mut().append(
            header::SET_COOKIE,
            HeaderValue::from_static(
                "testbay_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
            ),
        );
        return res;
    }
    let token = field("token").unwrap_or("").to_string();
    if token.is_empty() || !token_is_url_safe(&token) {
        return page(
            StatusCode::UNAUTHORIZED,
            Some("That is not a Testbay token."),
        );
    }
    let Some(caller) = user_of(users, token.clone()).await else {
        tracing::warn!("sign-in refused: unknown or revoked token");
        return page(
            StatusCode::UNAUTHORIZED,
            Some("Unknown or revoked token. Ask an admin for a new one."),
        );
    };
    tracing::info!(user = caller.name(), "signed in");
    let mut res = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, HeaderValue::from_static("/"))],
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
    )) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

fn reject(status: StatusCode, why: &'static str) -> Response {
    tracing::warn!(status = status.as_u16(), why, "request refused");
    let mut res = (status, format!("{why}\n")).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}

pub(crate) async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let g = &st.auth;
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if g.loopback && !is_loopback_host(host) {
        return reject(
            StatusCode::FORBIDDEN,
            "this console only answers to a loopback host name",
        );
    }

    let path = req.uri().path();
    if path == "/api" || path.starts_with("/api/") || path == "/signin" {
        if let Some(origin) = headers.get(header::ORIGIN) {
            if !origin_matches(origin.to_str().unwrap_or(""), host) {
                return reject(StatusCode::FORBIDDEN, "cross-origin requests are refused");
            }
        }
    }
    if (path == "/api" || path.starts_with("/api/"))
        && req.method() == Method::POST
        && !is_json(headers)
        && !(path == crate::PACKS_PATH && crate::packs::is_archive(headers))
    {
        return reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the API takes application/json (a pack upload application/octet-stream)",
        );
    }
    if let Some(users) = &g.users {
        return lab_guard(users, req, next).await;
    }

    let mut set_cookie = false;
    if let Some(token) = &g.token {
        let from_query = query_token(req.uri().query());
        let ok = bearer(headers).is_some_and(|t| same(t, token))
            || cookie(headers).is_some_and(|t| same(t, token))
            || from_query.is_some_and(|t| same(t, token));
        if !ok {
            return reject(
                StatusCode::UNAUTHORIZED,
                "missing or wrong token; use the address `testbay serve` printed",
            );
        }
        set_cookie = from_query.is_some_and(|t| same(t, token));
    }

    let mut res = next.run(req).await;
    if set_cookie {
        if let Some(token) = &g.token {
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
            )) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }
    res
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `Origin: http://host:port` names the same host:port the request went to.
fn origin_matches(origin: &str, host: &str) -> bool {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    rest.is_some_and(|r| r.trim_end_matches('/').eq_ignore_ascii_case(host))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| kv.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

fn query_token(query: Option<&str>) -> Option<&str> {
    query?.split('&').find_map(|kv| kv.strip_prefix("token="))
}

/// Compare without an early exit, so timing does not tell how much of a guess was right.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost:80",
            "127.0.0.1:7780",
            "127.1.2.3",
            "[::1]:9",
            "LOCALHOST",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:7780",
            "10.0.0.1:80",
            "",
            "localhost.evil:1",
            "[::2]:1",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn origins() {
        assert!(origin_matches("http://127.0.0.1:7780", "127.0.0.1:7780"));
        assert!(!origin_matches("http://evil.example", "127.0.0.1:7780"));
        assert!(!origin_matches("null", "127.0.0.1:7780"));
    }

    #[test]
    fn token_compare_and_parse() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
        assert_eq!(query_token(Some("a=1&token=xyz")), Some("xyz"));
        assert!(token_is_url_safe(&new_token()));
        assert!(!token_is_url_safe("a b"));
    }
}
