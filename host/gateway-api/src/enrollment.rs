//! Enrollment signed in one place: what a gateway sends the API server
//! (`POST /api/v1/enrollments`) when the API server holds the device CA,
//! and what it answers. A refusal is a problem document whose `code` is
//! one of [`refusal_code`]'s, the protocol's `EnrollRefusal` by name.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use wasmbed_protocol::EnrollRefusal;

/// An enrollment whose proof of possession the gateway has checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentRequest {
    /// The device's SEC1 uncompressed P-256 public key, hex (130 digits).
    pub public_key: String,
    /// The board the device says it is, e.g. `mps2-an385`.
    pub board: String,
    /// The firmware version the device reports.
    pub firmware_version: String,
}

/// Whether the key was new or enrolled already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnrollmentOutcome {
    /// A new device, with a new id.
    Accepted,
    /// The key was enrolled before (through any gateway): the same id, a
    /// fresh certificate.
    Reissued,
}

impl EnrollmentOutcome {
    /// The outcome as the JSON and the metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentOutcome::Accepted => "accepted",
            EnrollmentOutcome::Reissued => "reissued",
        }
    }
}

/// The signed enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollmentAnswer {
    /// The device's id, 32 hex digits.
    pub device_id: String,
    /// The device certificate, DER in standard base64.
    pub certificate: String,
    pub outcome: EnrollmentOutcome,
}

/// A refusal's stable name, as a problem's `code` and a metric label.
pub fn refusal_code(reason: EnrollRefusal) -> &'static str {
    match reason {
        EnrollRefusal::PairingClosed => "pairing_closed",
        EnrollRefusal::KeyAlreadyEnrolled => "key_already_enrolled",
        EnrollRefusal::BadProof => "bad_proof",
        EnrollRefusal::InvalidKey => "invalid_key",
        EnrollRefusal::RateLimited => "rate_limited",
        EnrollRefusal::KeyRevoked => "key_revoked",
        EnrollRefusal::Internal | EnrollRefusal::Unknown(_) => "internal",
    }
}

/// The refusal a problem's `code` names; `None` for any other code.
pub fn refusal_of_code(code: &str) -> Option<EnrollRefusal> {
    [
        EnrollRefusal::PairingClosed,
        EnrollRefusal::KeyAlreadyEnrolled,
        EnrollRefusal::BadProof,
        EnrollRefusal::InvalidKey,
        EnrollRefusal::RateLimited,
        EnrollRefusal::KeyRevoked,
        EnrollRefusal::Internal,
    ]
    .into_iter()
    .find(|reason| refusal_code(*reason) == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_codes_round_trip() {
        for reason in [
            EnrollRefusal::PairingClosed,
            EnrollRefusal::KeyRevoked,
            EnrollRefusal::InvalidKey,
            EnrollRefusal::Internal,
        ] {
            assert_eq!(refusal_of_code(refusal_code(reason)), Some(reason));
        }
        assert_eq!(refusal_of_code("not_found"), None);
    }

    #[test]
    fn an_answer_keeps_its_json() {
        let json = r#"{"device_id":"00112233445566778899aabbccddeeff","certificate":"MAA=","outcome":"reissued"}"#;
        let answer: EnrollmentAnswer = serde_json::from_str(json).expect("decodes");
        assert_eq!(answer.outcome, EnrollmentOutcome::Reissued);
        assert_eq!(serde_json::to_string(&answer).expect("encodes"), json);
    }
}
