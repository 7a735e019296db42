//! What a webhook's settings must be: an `http://` URL (this console sends no TLS), at
//! least one event, each once, a secret within bounds.

use crate::store::{WebhookEvent, WebhookRow};

/// Longest webhook URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest shared secret, in bytes.
pub const MAX_SECRET_BYTES: usize = 256;
/// Most webhooks a console keeps.
pub const MAX_WEBHOOKS: usize = 100;

/// A webhook setting that cannot be used, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("url: {0}")]
    Url(String),
    #[error("events: {0}")]
    Events(String),
    #[error("secret: {0}")]
    Secret(String),
    #[error("at most {MAX_WEBHOOKS} webhooks; remove one first")]
    TooMany,
    #[error("webhook {0} not found")]
    NotFound(i64),
}

impl WebhookError {
    /// A stable name for the kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            WebhookError::Url(_) => "url",
            WebhookError::Events(_) => "events",
            WebhookError::Secret(_) => "secret",
            WebhookError::TooMany => "too_many",
            WebhookError::NotFound(_) => "not_found",
        }
    }
}

/// Check `row`; an empty secret means none.
pub fn check(mut row: WebhookRow) -> Result<WebhookRow, WebhookError> {
    row.url = row.url.trim().to_string();
    if row.url.len() > MAX_URL_BYTES {
        return Err(WebhookError::Url(format!(
            "{} bytes; at most {MAX_URL_BYTES}",
            row.url.len()
        )));
    }
    let url = reqwest::Url::parse(&row.url)
        .map_err(|e| WebhookError::Url(format!("{:?} is not a URL ({e})", row.url)))?;
    if url.scheme() != "http" {
        return Err(WebhookError::Url(format!(
            "{:?}: only http:// URLs (this console sends webhooks without TLS; put a TLS proxy in front of an https receiver)",
            row.url
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(WebhookError::Url(format!("{:?} names no host", row.url)));
    }
    if row.events.is_empty() {
        return Err(WebhookError::Events(format!(
            "name at least one of {}",
            WebhookEvent::ALL.map(WebhookEvent::as_str).join(", ")
        )));
    }
    let mut seen = row.events.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != row.events.len() {
        return Err(WebhookError::Events("an event is named twice".into()));
    }
    if row.secret.as_deref().is_some_and(str::is_empty) {
        row.secret = None;
    }
    if let Some(s) = &row.secret {
        if s.len() > MAX_SECRET_BYTES {
            return Err(WebhookError::Secret(format!(
                "{} bytes; at most {MAX_SECRET_BYTES}",
                s.len()
            )));
        }
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(url: &str, events: Vec<WebhookEvent>) -> WebhookRow {
        WebhookRow {
            url: url.into(),
            events,
            secret: Some(String::new()),
            enabled: true,
        }
    }

    #[test]
    fn bad_settings_name_their_key() {
        let ev = vec![WebhookEvent::RunFinished];
        assert_eq!(check(row("ftp://x", ev.clone())).unwrap_err().code(), "url");
        assert_eq!(
            check(row("https://x/h", ev.clone())).unwrap_err().code(),
            "url"
        );
        assert_eq!(
            check(row("not a url", ev.clone())).unwrap_err().code(),
            "url"
        );
        assert_eq!(
            check(row("http://x/h", vec![])).unwrap_err().code(),
            "events"
        );
        let twice = vec![WebhookEvent::DutBad, WebhookEvent::DutBad];
        assert_eq!(
            check(row("http://x/h", twice)).unwrap_err().code(),
            "events"
        );
        let ok = check(row(" http://127.0.0.1:9/h ", ev)).unwrap();
        assert_eq!((ok.url.as_str(), ok.secret), ("http://127.0.0.1:9/h", None));
    }
}
