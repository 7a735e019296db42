//! Who may talk to the server: loopback `Host` names, same-origin `Origin`s, JSON-only
//! API posts, and the token on non-loopback addresses.

use std::net::SocketAddr;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

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
}

impl Guard {
    pub(crate) fn new(addr: SocketAddr, token: Option<String>) -> Self {
        Self {
            token,
            loopback: addr.ip().is_loopback(),
        }
    }
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

    let path = req.uri().path();
    if path == "/api" || path.starts_with("/api/") {
        if let Some(origin) = headers.get(header::ORIGIN) {
            if !origin_matches(origin.to_str().unwrap_or(""), host) {
                return reject(StatusCode::FORBIDDEN, "cross-origin requests are refused");
            }
        }
        if req.method() == Method::POST && !is_json(headers) {
            return reject(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the API takes application/json",
            );
        }
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
