//! The controller's view of a gateway: the calls it makes to a gateway's
//! HTTP interface ([`GatewayClient`]), typed by the gateway's contract
//! ([`wasmbed_gateway_api`]), and the real client over HTTPS.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::de::{DeserializeOwned, IgnoredAny};
use tracing::{error, warn};
use wasmbed_gateway_api::{DeployRequest, DeploymentView, DeviceView, ErrorBody, ResultView};

/// Largest gateway answer read. The biggest legitimate one is a device
/// list or a thousand results with their logs, a few MiB at most; a
/// broken or hostile gateway must not make the API server buffer more.
pub const MAX_GATEWAY_ANSWER: usize = 16 * 1024 * 1024;

/// Why a call to a gateway failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// Not reached, or it failed (5xx): back off.
    Unreachable(String),
    /// It answered with a client error: its status and message.
    Refused(u16, String),
    /// Its answer does not match the gateway's contract (e.g. a deployment
    /// state this build does not know): back off, as from a broken gateway.
    Malformed(String),
}

impl CallError {
    /// Whether the gateway answered 404 (it does not know the object).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CallError::Refused(404, _))
    }

    /// Whether the gateway should be left alone for a while: it was not
    /// reached, failed, or answered nonsense (not when it refused a call).
    pub fn backs_off(&self) -> bool {
        !matches!(self, CallError::Refused(..))
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "gateway unreachable: {e}"),
            CallError::Refused(status, message) => {
                write!(f, "gateway refused ({status}): {message}")
            }
            CallError::Malformed(e) => write!(f, "gateway answer off contract: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

/// The calls the controller makes to a gateway whose HTTP interface is at
/// `base` (e.g. `https://gw:8443`, no trailing slash).
pub trait GatewayClient: Send + Sync {
    /// `GET /v1/devices`.
    fn devices(
        &self,
        base: &str,
    ) -> impl Future<Output = Result<Vec<DeviceView>, CallError>> + Send;

    /// `GET /v1/deployments?device=ID`.
    fn deployments_of(
        &self,
        base: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<Vec<DeploymentView>, CallError>> + Send;

    /// `POST /v1/deployments`.
    fn deploy(
        &self,
        base: &str,
        request: &DeployRequest,
    ) -> impl Future<Output = Result<Vec<DeploymentView>, CallError>> + Send;

    /// `GET /v1/deployments/{id}`.
    fn deployment(
        &self,
        base: &str,
        id: u64,
    ) -> impl Future<Output = Result<DeploymentView, CallError>> + Send;

    /// `DELETE /v1/deployments/{id}`.
    fn remove_deployment(
        &self,
        base: &str,
        id: u64,
    ) -> impl Future<Output = Result<(), CallError>> + Send;

    /// `POST /v1/deployments/{id}/forget`: drop a deployment that moved
    /// with its device, of which the caller collected `results` results.
    fn forget(
        &self,
        base: &str,
        id: u64,
        results: u32,
    ) -> impl Future<Output = Result<(), CallError>> + Send;

    /// `GET /v1/results?deployment={id}&limit={limit}`, newest first.
    fn results(
        &self,
        base: &str,
        deployment: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ResultView>, CallError>> + Send;

    /// `DELETE /v1/devices/{id}`: revoke the device.
    fn revoke(
        &self,
        base: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<(), CallError>> + Send;
}

/// A shared client is a client (the controller owns its client; tests keep
/// a handle on their fake).
impl<G: GatewayClient> GatewayClient for Arc<G> {
    fn devices(
        &self,
        base: &str,
    ) -> impl Future<Output = Result<Vec<DeviceView>, CallError>> + Send {
        (**self).devices(base)
    }

    fn deployments_of(
        &self,
        base: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<Vec<DeploymentView>, CallError>> + Send {
        (**self).deployments_of(base, device_id)
    }

    fn deploy(
        &self,
        base: &str,
        request: &DeployRequest,
    ) -> impl Future<Output = Result<Vec<DeploymentView>, CallError>> + Send {
        (**self).deploy(base, request)
    }

    fn deployment(
        &self,
        base: &str,
        id: u64,
    ) -> impl Future<Output = Result<DeploymentView, CallError>> + Send {
        (**self).deployment(base, id)
    }

    fn remove_deployment(
        &self,
        base: &str,
        id: u64,
    ) -> impl Future<Output = Result<(), CallError>> + Send {
        (**self).remove_deployment(base, id)
    }

    fn forget(
        &self,
        base: &str,
        id: u64,
        results: u32,
    ) -> impl Future<Output = Result<(), CallError>> + Send {
        (**self).forget(base, id, results)
    }

    fn results(
        &self,
        base: &str,
        deployment: u64,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<ResultView>, CallError>> + Send {
        (**self).results(base, deployment, limit)
    }

    fn revoke(
        &self,
        base: &str,
        device_id: &str,
    ) -> impl Future<Output = Result<(), CallError>> + Send {
        (**self).revoke(base, device_id)
    }
}

/// The real [`GatewayClient`]: HTTPS with the API server's control
/// certificate, a timeout per request, answers capped at
/// [`MAX_GATEWAY_ANSWER`].
#[derive(Debug, Clone)]
pub struct HttpsGatewayClient {
    client: reqwest::Client,
}

impl HttpsGatewayClient {
    /// A client presenting `tls` (which trusts the gateway CA and holds the
    /// control certificate). Without it gateways refuse every call (401).
    pub fn new(tls: Option<&Arc<rustls::ClientConfig>>, timeout: Duration) -> Self {
        let mut client = reqwest::Client::builder().timeout(timeout);
        match tls {
            Some(tls) => client = client.use_preconfigured_tls((**tls).clone()),
            None => warn!(
                "no client certificate for gateways: they will refuse the controller (start the API server with --pki)"
            ),
        }
        let client = client.build().unwrap_or_else(|e| {
            // Not expected (the TLS configuration is built already); without
            // it gateways refuse every call, and their statuses say so.
            error!(error = %e, "the HTTP client of gateways could not be built; gateways will refuse the controller");
            reqwest::Client::default()
        });
        HttpsGatewayClient { client }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CallError> {
        let response = request
            .send()
            .await
            .map_err(|e| CallError::Unreachable(without_url(&e)))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(CallError::Unreachable(format!("status {status}")));
        }
        let body = read_capped(response).await?;
        decode_answer(status, &body)
    }
}

/// A gateway's answer: the value for a success (`null` for 204), a typed
/// error for anything else.
fn decode_answer<T: DeserializeOwned>(
    status: reqwest::StatusCode,
    body: &[u8],
) -> Result<T, CallError> {
    if status.is_server_error() {
        return Err(CallError::Unreachable(format!("status {status}")));
    }
    if !status.is_success() {
        let message = serde_json::from_slice::<ErrorBody>(body)
            .map(|error| error.message)
            .unwrap_or_default();
        return Err(CallError::Refused(status.as_u16(), message));
    }
    let body = if status == reqwest::StatusCode::NO_CONTENT {
        b"null".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        warn!(error = %e, "a gateway answer does not match the gateway's contract");
        // It quotes the answer, which a broken gateway makes as long as it
        // likes: a status reason keeps the start.
        let mut reason = e.to_string();
        if let Some((cut, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
            reason.truncate(cut);
            reason.push('…');
        }
        CallError::Malformed(reason)
    })
}

/// Longest text of a [`CallError::Malformed`], in characters.
const MAX_REASON_CHARS: usize = 200;

impl GatewayClient for HttpsGatewayClient {
    async fn devices(&self, base: &str) -> Result<Vec<DeviceView>, CallError> {
        self.call(self.client.get(format!("{base}/v1/devices")))
            .await
    }

    async fn deployments_of(
        &self,
        base: &str,
        device_id: &str,
    ) -> Result<Vec<DeploymentView>, CallError> {
        let url = format!("{base}/v1/deployments?device={device_id}");
        self.call(self.client.get(url)).await
    }

    async fn deploy(
        &self,
        base: &str,
        request: &DeployRequest,
    ) -> Result<Vec<DeploymentView>, CallError> {
        let url = format!("{base}/v1/deployments");
        self.call(self.client.post(url).json(request)).await
    }

    async fn deployment(&self, base: &str, id: u64) -> Result<DeploymentView, CallError> {
        let url = format!("{base}/v1/deployments/{id}");
        self.call(self.client.get(url)).await
    }

    async fn remove_deployment(&self, base: &str, id: u64) -> Result<(), CallError> {
        let url = format!("{base}/v1/deployments/{id}");
        self.call::<IgnoredAny>(self.client.delete(url)).await?;
        Ok(())
    }

    async fn forget(&self, base: &str, id: u64, results: u32) -> Result<(), CallError> {
        let url = format!("{base}/v1/deployments/{id}/forget");
        let body = wasmbed_gateway_api::ForgetRequest { results };
        self.call::<IgnoredAny>(self.client.post(url).json(&body))
            .await?;
        Ok(())
    }

    async fn results(
        &self,
        base: &str,
        deployment: u64,
        limit: u32,
    ) -> Result<Vec<ResultView>, CallError> {
        let url = format!("{base}/v1/results?deployment={deployment}&limit={limit}");
        self.call(self.client.get(url)).await
    }

    async fn revoke(&self, base: &str, device_id: &str) -> Result<(), CallError> {
        let url = format!("{base}/v1/devices/{device_id}");
        self.call::<IgnoredAny>(self.client.delete(url)).await?;
        Ok(())
    }
}

/// A gateway answer's body, refused once it exceeds [`MAX_GATEWAY_ANSWER`].
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, CallError> {
    let too_large = || CallError::Unreachable(format!("answer over {MAX_GATEWAY_ANSWER} bytes"));
    if response
        .content_length()
        .is_some_and(|length| length > MAX_GATEWAY_ANSWER as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| CallError::Unreachable(without_url(&e)))?
    {
        if body.len() + chunk.len() > MAX_GATEWAY_ANSWER {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A reqwest error's text without the URL (kept out of statuses).
fn without_url(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection failed".into()
    } else if e.is_decode() {
        "answer does not decode".into()
    } else {
        "request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use reqwest::StatusCode;

    use super::*;

    const DEPLOYMENT: &str = r#"{"id":7,"device":"d","application_id":42,"module_sha256":"ab","module_size":1,"desired":"running","state":"running","reason":null,"bytes_acked":1,"updated_at_ms":1}"#;

    #[test]
    fn a_deployment_in_a_state_this_build_does_not_know_is_a_typed_error() {
        let view: DeploymentView =
            decode_answer(StatusCode::OK, DEPLOYMENT.as_bytes()).expect("a known state decodes");
        assert_eq!(view.state, wasmbed_gateway_api::DeploymentState::Running);
        let unknown = DEPLOYMENT.replace(r#""state":"running""#, r#""state":"hibernating""#);
        let error = decode_answer::<DeploymentView>(StatusCode::OK, unknown.as_bytes())
            .expect_err("an unknown state is refused, not taken for a failure");
        assert!(
            matches!(&error, CallError::Malformed(e) if e.contains("hibernating")),
            "{error:?}"
        );
        assert!(error.backs_off());
        let huge = DEPLOYMENT.replace(
            r#""state":"running""#,
            &format!(r#""state":"{}""#, "x".repeat(10_000)),
        );
        let error =
            decode_answer::<DeploymentView>(StatusCode::OK, huge.as_bytes()).expect_err("refused");
        assert!(error.to_string().chars().count() < 300, "{error}");
    }

    #[test]
    fn refusals_carry_the_error_body_and_failures_back_off() {
        let body = br#"{"code":"not_found","message":"deployment not found"}"#;
        let error = decode_answer::<DeploymentView>(StatusCode::NOT_FOUND, body).expect_err("404");
        assert_eq!(
            error,
            CallError::Refused(404, "deployment not found".to_owned())
        );
        assert!(error.is_not_found() && !error.backs_off());
        let error = decode_answer::<DeploymentView>(StatusCode::BAD_GATEWAY, b"").expect_err("502");
        assert!(matches!(error, CallError::Unreachable(_)) && error.backs_off());
        decode_answer::<IgnoredAny>(StatusCode::NO_CONTENT, b"").expect("204 is a success");
    }
}
