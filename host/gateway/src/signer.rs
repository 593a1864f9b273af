//! Who signs the certificates of enrolling devices.
//!
//! By default a gateway holds the device CA's private key and decides and
//! signs enrollments itself ([`Signing::Local`]): pairing, pre-authorised
//! keys and revocations are this gateway's. Behind a load balancer that is
//! wrong (a device re-enrolling through another gateway would get a second
//! id), so a gateway may instead forward each enrollment to a
//! [`FleetSigner`] ([`Signing::Fleet`]): in production the API server
//! ([`ApiSigner`], `POST /api/v1/enrollments`), which keeps one id per key
//! and the pairing window for the whole fleet. Either way the gateway
//! checks the proof of possession and its rate limits first.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tracing::warn;
use wasmbed_gateway_api::{EnrollmentAnswer, EnrollmentOutcome, EnrollmentRequest};
use wasmbed_pki::DeviceIssuer;
use wasmbed_protocol::{DeviceId, EnrollRefusal, PUBLIC_KEY_LEN};

/// How enrollments are signed at this gateway.
#[derive(Debug, Clone)]
pub enum Signing {
    /// With the device CA this gateway holds; decisions are this
    /// gateway's.
    Local(Arc<DeviceIssuer>),
    /// By the fleet's signer; decisions are fleet-wide.
    Fleet(Arc<dyn FleetSigner>),
}

/// An enrollment whose proof of possession the gateway checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    pub public_key: [u8; PUBLIC_KEY_LEN],
    pub board: String,
    pub firmware_version: String,
}

/// A signed enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub device_id: DeviceId,
    /// The device certificate, DER.
    pub certificate: Vec<u8>,
    pub outcome: EnrollmentOutcome,
}

/// What a [`FleetSigner`] returns, in time.
pub type SignFuture = Pin<Box<dyn Future<Output = Result<Signed, EnrollRefusal>> + Send>>;

/// Decides and signs enrollments for every gateway of the fleet: the same
/// key always gets the same id. A refusal is passed on to the device;
/// [`EnrollRefusal::Internal`] (the signer unreachable, say) makes it
/// retry later.
pub trait FleetSigner: Send + Sync + fmt::Debug {
    fn sign(&self, request: SignRequest) -> SignFuture;
}

/// Most bytes of an answer read from the API server: a certificate and
/// some JSON, or a problem document.
const MAX_ANSWER: usize = 64 * 1024;

/// Why an [`ApiSigner`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SignerSetupError {
    #[error("{0:?} is not an http:// or https:// URL")]
    BadUrl(String),
    #[error("the API CA is not a PEM certificate: {0}")]
    BadCa(String),
    #[error("making the HTTP client: {0}")]
    Client(String),
}

/// The API server as the fleet's signer: `POST /api/v1/enrollments` with a
/// gateway token.
#[derive(Clone)]
pub struct ApiSigner {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl fmt::Debug for ApiSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiSigner")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ApiSigner {
    /// The signer at the API server `base` (`http://host:port` or
    /// `https://...`), called with the gateway token `token`; over https it
    /// trusts `api_ca` (PEM), e.g. the installation's control-ca.pem.
    /// A call that takes longer than `timeout` is refused `internal`.
    pub fn new(
        base: &str,
        token: String,
        api_ca: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<ApiSigner, SignerSetupError> {
        let url = reqwest::Url::parse(base).map_err(|_| SignerSetupError::BadUrl(base.into()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SignerSetupError::BadUrl(base.into()));
        }
        let mut http = reqwest::Client::builder().timeout(timeout);
        if let Some(pem) = api_ca {
            let cas = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| SignerSetupError::BadCa(e.to_string()))?;
            if cas.is_empty() {
                return Err(SignerSetupError::BadCa("no certificate in it".into()));
            }
            for ca in cas {
                http = http.add_root_certificate(ca);
            }
        }
        let http = http
            .build()
            .map_err(|e| SignerSetupError::Client(e.to_string()))?;
        Ok(ApiSigner {
            url: format!("{}/api/v1/enrollments", base.trim_end_matches('/')),
            token,
            http,
        })
    }

    async fn call(self, request: SignRequest) -> Result<Signed, EnrollRefusal> {
        let body = EnrollmentRequest {
            public_key: hex::encode(request.public_key),
            board: request.board,
            firmware_version: request.firmware_version,
        };
        let internal = |why: String| {
            warn!(api = %self.url, reason = %why, "the API server did not sign the enrollment; the device is told to retry");
            EnrollRefusal::Internal
        };
        let mut response = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| internal(format!("unreachable: {e}")))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| internal(format!("reading the answer: {e}")))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                return Err(internal(format!("an answer over {MAX_ANSWER} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(refusal_of(status, &bytes).map_err(internal)?);
        }
        let answer: EnrollmentAnswer = serde_json::from_slice(&bytes)
            .map_err(|e| internal(format!("an answer that does not decode: {e}")))?;
        signed_of(answer).map_err(internal)
    }
}

impl FleetSigner for ApiSigner {
    fn sign(&self, request: SignRequest) -> SignFuture {
        Box::pin(self.clone().call(request))
    }
}

/// The refusal an error answer names (`Ok`), or why it names none (`Err`):
/// a bad token, no device CA there, a server error.
fn refusal_of(status: reqwest::StatusCode, body: &[u8]) -> Result<EnrollRefusal, String> {
    #[derive(serde::Deserialize)]
    struct Problem {
        code: String,
        #[serde(default)]
        detail: String,
    }
    let problem: Problem =
        serde_json::from_slice(body).map_err(|_| format!("{status} without a problem document"))?;
    match wasmbed_gateway_api::refusal_of_code(&problem.code) {
        Some(EnrollRefusal::Internal) | None => {
            Err(format!("{status} {}: {}", problem.code, problem.detail))
        }
        Some(refusal) => Ok(refusal),
    }
}

fn signed_of(answer: EnrollmentAnswer) -> Result<Signed, String> {
    let mut id = [0u8; 16];
    hex::decode_to_slice(&answer.device_id, &mut id)
        .map_err(|_| format!("device id {:?} is not 32 hex digits", answer.device_id))?;
    let certificate = base64::engine::general_purpose::STANDARD
        .decode(&answer.certificate)
        .map_err(|_| "a certificate that is not base64".to_owned())?;
    Ok(Signed {
        device_id: DeviceId(id),
        certificate,
        outcome: answer.outcome,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_name_refusals_and_other_errors_do_not() {
        let status = reqwest::StatusCode::FORBIDDEN;
        assert_eq!(
            refusal_of(status, br#"{"code":"pairing_closed","detail":"closed"}"#),
            Ok(EnrollRefusal::PairingClosed)
        );
        assert_eq!(
            refusal_of(status, br#"{"code":"key_revoked"}"#),
            Ok(EnrollRefusal::KeyRevoked)
        );
        // A token that may not enroll: the operator must see it.
        let wrong_token = refusal_of(status, br#"{"code":"forbidden","detail":"gateway only"}"#);
        assert!(wrong_token.is_err_and(|why| why.contains("gateway only")));
        assert!(refusal_of(reqwest::StatusCode::BAD_GATEWAY, b"<html>").is_err());
    }

    #[test]
    fn answers_must_carry_an_id_and_a_certificate() {
        let answer = |id: &str, cert: &str| EnrollmentAnswer {
            device_id: id.to_owned(),
            certificate: cert.to_owned(),
            outcome: EnrollmentOutcome::Accepted,
        };
        let signed = signed_of(answer(&"ab".repeat(16), "MAA=")).expect("fine");
        assert_eq!(signed.device_id, DeviceId([0xab; 16]));
        assert_eq!(signed.certificate, [0x30, 0]);
        assert!(signed_of(answer("abc", "MAA=")).is_err());
        assert!(signed_of(answer(&"ab".repeat(16), "not base64!")).is_err());
    }

    #[test]
    fn only_http_urls_are_taken() {
        let make = |url| ApiSigner::new(url, "t".into(), None, Duration::from_secs(1));
        assert!(make("http://127.0.0.1:8080/").is_ok());
        assert!(matches!(make("ftp://x"), Err(SignerSetupError::BadUrl(_))));
        assert!(matches!(
            make("not a url"),
            Err(SignerSetupError::BadUrl(_))
        ));
        assert!(matches!(
            ApiSigner::new(
                "https://x",
                "t".into(),
                Some(b"junk"),
                Duration::from_secs(1)
            ),
            Err(SignerSetupError::BadCa(_))
        ));
    }
}
