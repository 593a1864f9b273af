//! Enrollment: a device without an identity proves it holds a key pair and
//! receives its certificate.
//!
//! The device connects with the shared claim certificate. The gateway sends
//! an [`EnrollChallenge`]; the device answers with an [`EnrollRequest`]
//! whose proof signs [`proof_payload`]; the gateway answers with an
//! [`EnrollResponse`] and the device reconnects with its own certificate.

use minicbor::{Decode, Encode};

use super::{Capabilities, DeviceId, DeviceInfo};
use crate::wire_enum::wire_enum;

/// Length of an uncompressed SEC1 P-256 public key (`0x04 || x || y`).
pub const PUBLIC_KEY_LEN: usize = 65;
/// Length of a raw P-256 ECDSA signature (`r || s`).
pub const SIGNATURE_LEN: usize = 64;
/// Length of the gateway's enrollment nonce.
pub const NONCE_LEN: usize = 32;

/// Domain separator of the enrollment proof, so that the signature can not
/// be replayed as a signature of anything else.
pub const PROOF_CONTEXT: &[u8; 18] = b"wasmbed-enroll-v1\0";

/// Length of [`proof_payload`]'s result.
pub const PROOF_PAYLOAD_LEN: usize = PROOF_CONTEXT.len() + NONCE_LEN + PUBLIC_KEY_LEN;

/// The bytes a device signs (ECDSA P-256 with SHA-256) to prove possession
/// of its private key: the context, the gateway's nonce, the public key.
pub fn proof_payload(
    nonce: &[u8; NONCE_LEN],
    public_key: &[u8; PUBLIC_KEY_LEN],
) -> [u8; PROOF_PAYLOAD_LEN] {
    let mut out = [0u8; PROOF_PAYLOAD_LEN];
    let (context, rest) = out.split_at_mut(PROOF_CONTEXT.len());
    let (nonce_part, key_part) = rest.split_at_mut(NONCE_LEN);
    context.copy_from_slice(PROOF_CONTEXT);
    nonce_part.copy_from_slice(nonce);
    key_part.copy_from_slice(public_key);
    out
}

/// Gateway → device: the nonce the enrollment proof must sign.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct EnrollChallenge {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub nonce: [u8; NONCE_LEN],
}

/// Device → gateway: the key to enroll and the proof that the device holds
/// its private half.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct EnrollRequest {
    #[cbor(n(0), with = "minicbor::bytes")]
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// Signature of [`proof_payload`] with the private key.
    #[cbor(n(1), with = "minicbor::bytes")]
    pub proof: [u8; SIGNATURE_LEN],
    #[n(2)]
    pub device: DeviceInfo,
    #[n(3)]
    pub capabilities: Capabilities,
}

/// Gateway → device: the outcome of an enrollment.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(flat)]
pub enum EnrollResponse<'a> {
    /// The device is enrolled; it stores its id and certificate and
    /// reconnects with them.
    #[n(0)]
    Accepted {
        #[n(0)]
        device_id: DeviceId,
        /// The device's X.509 certificate, DER.
        #[cbor(b(1), with = "minicbor::bytes")]
        certificate: &'a [u8],
    },
    #[n(1)]
    Refused {
        #[n(0)]
        reason: EnrollRefusal,
    },
}

wire_enum! {
    /// Why the gateway refused an enrollment.
    pub enum EnrollRefusal {
        /// Pairing is closed and the key was not pre-authorized.
        PairingClosed = 0,
        /// This public key already belongs to an enrolled device. Not sent
        /// by the reference gateway: an enrolled key that proves itself
        /// gets its own id back with a fresh certificate.
        KeyAlreadyEnrolled = 1,
        /// The signature does not verify for this key and nonce.
        BadProof = 2,
        /// The public key is not a valid P-256 point.
        InvalidKey = 3,
        /// Too many enrollments; retry later.
        RateLimited = 4,
        /// The gateway failed; retry later.
        Internal = 5,
        /// This public key was revoked: the gateway never accepts it again.
        KeyRevoked = 6,
    }
}
