//! Where a lab server is and the token it takes.

use reqwest::Url;
use testbay_engine::api::ApiError;

/// A lab server's address and the bearer token for it.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// The server's base address, as the user gave it minus any `?token=`, ending in `/`.
    pub url: Url,
    pub token: Option<String>,
}

impl std::fmt::Debug for Target {
    // The token never goes into logs or error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("url", &self.url.as_str())
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Target {
    /// `http://HOST:PORT/` (or `HOST:PORT`), as `testbay serve` prints it. A `?token=` in
    /// the address is taken as the token unless `token` is given.
    pub fn parse(address: &str, token: Option<String>) -> Result<Self, ApiError> {
        let address = address.trim();
        let with_scheme = if address.contains("://") {
            address.to_string()
        } else {
            format!("http://{address}")
        };
        let mut url = Url::parse(&with_scheme).map_err(|e| {
            ApiError::invalid(format!(
                "lab server address {address:?}: {e} (give it as http://HOST:PORT)"
            ))
        })?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(ApiError::invalid(format!(
                    "lab server address {address:?}: https is not supported (this client speaks plain http; put a local proxy in front, or use the server's http address)"
                )))
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "lab server address {address:?}: scheme {other}:// is not http:// (give it as http://HOST:PORT)"
                )))
            }
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ApiError::invalid(format!(
                "lab server address {address:?} names no host (give it as http://HOST:PORT)"
            )));
        }
        let from_query = url
            .query_pairs()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned());
        url.set_query(None);
        url.set_fragment(None);
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        let token = token
            .filter(|t| !t.is_empty())
            .or(from_query.filter(|t| !t.is_empty()));
        Ok(Self { url, token })
    }

    /// `POST` requests go here.
    pub fn api_url(&self) -> Url {
        self.url.join("api").unwrap_or_else(|_| self.url.clone())
    }

    /// Where a pack's archive is uploaded (`POST`).
    pub fn packs_url(&self) -> Url {
        self.url
            .join("api/packs")
            .unwrap_or_else(|_| self.url.clone())
    }

    /// The event stream's WebSocket address.
    pub fn events_url(&self) -> String {
        let http = self
            .url
            .join("api/events")
            .unwrap_or_else(|_| self.url.clone());
        format!("ws{}", &http.as_str()["http".len()..])
    }

    /// A rack agent's WebSocket address.
    pub fn agent_url(&self) -> String {
        let http = self
            .url
            .join("api/agent")
            .unwrap_or_else(|_| self.url.clone());
        format!("ws{}", &http.as_str()["http".len()..])
    }

    /// The host (and port) the server is at, for people: `lab.example:7780`.
    pub fn host(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_serve_prints() {
        let t = Target::parse("http://10.0.0.5:7780/?token=abc", None).unwrap();
        assert_eq!(t.url.as_str(), "http://10.0.0.5:7780/");
        assert_eq!(t.token.as_deref(), Some("abc"));
        assert_eq!(t.api_url().as_str(), "http://10.0.0.5:7780/api");
        assert_eq!(t.events_url(), "ws://10.0.0.5:7780/api/events");
        assert_eq!(t.host(), "10.0.0.5:7780");
        let t = Target::parse("lab:7780", Some("x".into())).unwrap();
        assert_eq!(t.url.as_str(), "http://lab:7780/");
        assert_eq!(t.token.as_deref(), Some("x"));
        let t = Target::parse("http://lab/testbay", None).unwrap();
        assert_eq!(t.api_url().as_str(), "http://lab/testbay/api");
    }

    #[test]
    fn refuses_tls_and_others() {
        let e = Target::parse("https://lab:7780", None).unwrap_err();
        assert!(e.message.contains("https is not supported"), "{e}");
        assert!(Target::parse("ftp://lab", None).is_err());
        assert!(Target::parse("http://", None).is_err());
    }

    #[test]
    fn debug_hides_the_token() {
        let t = Target::parse("http://lab:1/", Some("secret".into())).unwrap();
        assert!(!format!("{t:?}").contains("secret"));
    }
}
