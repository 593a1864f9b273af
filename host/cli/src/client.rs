//! A small client of the API server's REST API: bearer token, JSON bodies,
//! problem documents turned into errors that say what went wrong.

use std::time::Duration;

use anyhow::Context as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Default address of the API server.
pub(crate) const DEFAULT_API: &str = "http://127.0.0.1:8080";

/// An error answer of the API server: its problem document's title and
/// detail, or the status and body when it sent none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) title: String,
    pub(crate) detail: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{} ({})", self.title, self.status)
        } else {
            write!(f, "{} ({}): {}", self.title, self.status, self.detail)
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// The error for a non-success answer with body `body`.
    pub(crate) fn from_answer(status: StatusCode, body: &str) -> ApiError {
        let problem: Option<Value> = serde_json::from_str(body).ok();
        let field = |name: &str| {
            problem
                .as_ref()
                .and_then(|p| p.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let title = field("title")
            .or_else(|| status.canonical_reason().map(str::to_owned))
            .unwrap_or_else(|| "Error".to_owned());
        let detail = field("detail").unwrap_or_else(|| {
            if problem.is_some() {
                String::new()
            } else {
                body.trim().chars().take(200).collect()
            }
        });
        ApiError {
            status: status.as_u16(),
            title,
            detail,
        }
    }
}

/// Items per page when [`ApiClient::get_all`] reads a list.
const PAGE: usize = 500;

/// The API server at `base`, with a bearer token.
#[derive(Debug, Clone)]
pub(crate) struct ApiClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client of the API server at `base`; over https it trusts the
    /// public roots, and `api_ca` (a PEM CA certificate, such as the
    /// installation's control-ca.pem) when given.
    pub(crate) fn new(
        base: &str,
        token: Option<String>,
        api_ca: Option<&std::path::Path>,
    ) -> anyhow::Result<ApiClient> {
        let url =
            reqwest::Url::parse(base).with_context(|| format!("--api {base:?} is not a URL"))?;
        anyhow::ensure!(
            matches!(url.scheme(), "http" | "https"),
            "--api {base:?} must be an http:// or https:// URL"
        );
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30));
        if let Some(path) = api_ca {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading --api-ca {}", path.display()))?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("--api-ca {} is not a PEM certificate", path.display()))?;
            http = http.add_root_certificate(ca);
        }
        let http = http.build().context("making the HTTP client")?;
        Ok(ApiClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    /// Sends a request; returns the JSON answer, `Value::Null` for an
    /// empty one (204).
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        Ok(self.exchange(method, path, body).await?.0)
    }

    /// Every item of a paged list (`path` without `limit`), read in pages
    /// of [`PAGE`] that follow the `X-Continue` header, so that a large
    /// fleet needs no single huge answer. A server that does not page
    /// answers the first request with everything and no header.
    pub(crate) async fn get_all(&self, path: &str) -> anyhow::Result<Value> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let first = format!("{path}{separator}limit={PAGE}");
        let mut items = Vec::new();
        let mut next = first.clone();
        loop {
            let (page, token) = self.exchange(Method::GET, &next, None).await?;
            let Value::Array(page) = page else {
                anyhow::bail!("GET {}{next}: the answer is not a JSON array", self.base);
            };
            let empty = page.is_empty();
            items.extend(page);
            match token {
                // An empty page with a token would never end.
                Some(token) if !empty => next = format!("{first}&continue={}", segment(&token)),
                _ => return Ok(Value::Array(items)),
            }
        }
    }

    /// Sends a request; the JSON answer and its `X-Continue` header.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(Value, Option<String>)> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}: no answer from the API server"))?;
        let status = response.status();
        let continue_token = response
            .headers()
            .get("x-continue")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response
            .text()
            .await
            .with_context(|| format!("{method} {url}: reading the answer"))?;
        if !status.is_success() {
            let mut error = ApiError::from_answer(status, &text);
            if status == StatusCode::UNAUTHORIZED && self.token.is_none() {
                error.detail = "no token given: use --token or WASMBED_TOKEN".into();
            }
            return Err(error.into());
        }
        if text.trim().is_empty() {
            return Ok((Value::Null, continue_token));
        }
        let answer = serde_json::from_str(&text)
            .with_context(|| format!("{method} {url}: the answer is not JSON"))?;
        Ok((answer, continue_token))
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.request(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.request(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.request(Method::PUT, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.request(Method::DELETE, path, None).await
    }
}

/// A path segment, percent-encoded (names are DNS labels, but an odd one
/// typed by hand must not change the route).
pub(crate) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_documents_become_title_and_detail() {
        let body = r#"{"type":"urn:wasmbed:problem:not_found","title":"Not Found","status":404,"code":"not_found","detail":"Device x not found"}"#;
        let error = ApiError::from_answer(StatusCode::NOT_FOUND, body);
        assert_eq!(error.title, "Not Found");
        assert_eq!(error.detail, "Device x not found");
        assert_eq!(error.to_string(), "Not Found (404): Device x not found");
    }

    #[test]
    fn other_bodies_are_shown_as_they_are() {
        let error = ApiError::from_answer(StatusCode::BAD_GATEWAY, "upstream down\n");
        assert_eq!(error.to_string(), "Bad Gateway (502): upstream down");
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(segment("dev-1"), "dev-1");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn only_http_urls_are_taken() {
        assert!(ApiClient::new("http://127.0.0.1:8080/", None, None).is_ok());
        assert!(ApiClient::new("ftp://x", None, None).is_err());
        assert!(ApiClient::new("not a url", None, None).is_err());
        assert!(
            ApiClient::new(
                "https://h:1",
                None,
                Some(std::path::Path::new("/nonexistent.pem"))
            )
            .is_err()
        );
    }
}
