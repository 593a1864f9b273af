//! The device's identity: its P-256 key, the id the gateway gave it and the
//! certificate it was issued.
//!
//! A device without an identity enrolls (see the protocol crate's
//! `message::enrollment`): it generates a key pair, stores the private key
//! as [`StoredKey::Pending`] *before* its public half leaves the device,
//! proves possession by signing the gateway's nonce, and on acceptance
//! stores [`StoredKey::Enrolled`]. A power cut between request and
//! response therefore never loses the key the gateway may already have
//! certified: the next enrollment presents the same key again.

use alloc::vec::Vec;
use core::fmt;

use minicbor::{Decoder, Encoder};
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::CryptoRngCore;
use wasmbed_protocol::{DeviceId, NONCE_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN, proof_payload};
use zeroize::Zeroize;

pub use crate::storage::StoreError;

/// Length of a raw P-256 private key (the scalar, big-endian).
pub const PRIVATE_KEY_LEN: usize = 32;

/// An enrolled device's credentials.
///
/// The private key is wiped from memory when the value is dropped and is
/// never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub device_id: DeviceId,
    /// The P-256 private key, big-endian scalar.
    pub private_key: [u8; PRIVATE_KEY_LEN],
    /// The device certificate issued at enrollment, DER.
    pub certificate: Vec<u8>,
}

/// A key generated for enrollment and not yet certified.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingKey {
    pub private_key: [u8; PRIVATE_KEY_LEN],
}

/// What a [`KeyStore`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredKey {
    /// Generated and (possibly) sent to the gateway, not yet certified.
    Pending(PendingKey),
    /// Enrolled: use this identity for every session.
    Enrolled(Identity),
}

/// Durable storage of the device identity.
///
/// `save` must be atomic: after a power cut at any point, `load` returns
/// either the previous value or the new one, never a mix or garbage.
pub trait KeyStore {
    /// The stored key, or `None` if there is none.
    fn load(&mut self) -> Result<Option<StoredKey>, StoreError>;
    /// Replaces the stored key.
    fn save(&mut self, key: &StoredKey) -> Result<(), StoreError>;
    /// Forgets the stored key (the device enrolls again next time).
    fn clear(&mut self) -> Result<(), StoreError>;
}

/// The private key bytes are not a valid P-256 scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidKey;

impl fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a valid P-256 private key")
    }
}

/// The public key and signature that go into an `EnrollRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentProof {
    /// SEC1 uncompressed: `0x04 || x || y`.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// Raw `r || s` ECDSA P-256/SHA-256 signature of
    /// [`proof_payload`]`(nonce, public_key)`.
    pub proof: [u8; SIGNATURE_LEN],
}

impl PendingKey {
    /// A fresh key pair from `rng`.
    pub fn generate(rng: &mut impl CryptoRngCore) -> PendingKey {
        let secret = p256::SecretKey::random(rng);
        PendingKey {
            private_key: secret.to_bytes().into(),
        }
    }
}

/// The SEC1 uncompressed public key of `private_key`.
pub fn public_key(private_key: &[u8; PRIVATE_KEY_LEN]) -> Result<[u8; PUBLIC_KEY_LEN], InvalidKey> {
    let secret = p256::SecretKey::from_bytes(private_key.into()).map_err(|_| InvalidKey)?;
    let point = secret.public_key().to_encoded_point(false);
    point.as_bytes().try_into().map_err(|_| InvalidKey)
}

/// Length of [`sec1_der`]'s encoding.
pub const SEC1_DER_LEN: usize = 121;

/// `private_key` as a DER `ECPrivateKey` (RFC 5915) with its curve and
/// public key: the form TLS libraries such as mbedTLS load a key from.
pub fn sec1_der(private_key: &[u8; PRIVATE_KEY_LEN]) -> Result<[u8; SEC1_DER_LEN], InvalidKey> {
    const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let public_key = public_key(private_key)?;
    let mut der = [0u8; SEC1_DER_LEN];
    let parts: [&[u8]; 8] = [
        // SEQUENCE, version 1, the key as an OCTET STRING
        &[0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20],
        private_key,
        // [0] parameters: namedCurve prime256v1
        &[0xa0, 0x0a],
        &P256_OID,
        // [1] publicKey: BIT STRING, no unused bits
        &[0xa1, 0x44, 0x03, 0x42],
        &[0x00],
        &public_key,
        &[],
    ];
    let mut at = 0;
    for part in parts {
        der[at..at + part.len()].copy_from_slice(part);
        at += part.len();
    }
    debug_assert_eq!(at, SEC1_DER_LEN);
    Ok(der)
}

/// Signs the enrollment challenge `nonce` with `private_key`.
///
/// Signing is deterministic (RFC 6979), so it needs no randomness.
pub fn sign_enrollment_proof(
    private_key: &[u8; PRIVATE_KEY_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Result<EnrollmentProof, InvalidKey> {
    let public_key = public_key(private_key)?;
    let signing_key = SigningKey::from_bytes(private_key.into()).map_err(|_| InvalidKey)?;
    let signature: Signature = signing_key.sign(&proof_payload(nonce, &public_key));
    Ok(EnrollmentProof {
        public_key,
        proof: signature.to_bytes().into(),
    })
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.private_key.zeroize();
    }
}

impl Drop for PendingKey {
    fn drop(&mut self) {
        self.private_key.zeroize();
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("device_id", &format_args!("{}", self.device_id))
            .field("private_key", &"<redacted>")
            .field("certificate_len", &self.certificate.len())
            .finish()
    }
}

impl fmt::Debug for PendingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingKey(<redacted>)")
    }
}

// The stored encoding: a CBOR map
// `{0: kind (0 pending, 1 enrolled), 1: key, ? 2: device id, ? 3: certificate}`.
const KIND_PENDING: u8 = 0;
const KIND_ENROLLED: u8 = 1;

impl StoredKey {
    /// The private key, whichever the state.
    pub fn private_key(&self) -> &[u8; PRIVATE_KEY_LEN] {
        match self {
            StoredKey::Pending(key) => &key.private_key,
            StoredKey::Enrolled(identity) => &identity.private_key,
        }
    }

    /// The encoding used by this crate's key stores (CBOR).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = Encoder::new(Vec::new());
        // Writing to a Vec cannot fail.
        let _ = match self {
            StoredKey::Pending(key) => e
                .map(2)
                .and_then(|e| e.u8(0)?.u8(KIND_PENDING)?.u8(1)?.bytes(&key.private_key))
                .map(|_| ()),
            StoredKey::Enrolled(id) => e
                .map(4)
                .and_then(|e| {
                    e.u8(0)?.u8(KIND_ENROLLED)?.u8(1)?.bytes(&id.private_key)?;
                    e.u8(2)?
                        .bytes(&id.device_id.0)?
                        .u8(3)?
                        .bytes(&id.certificate)
                })
                .map(|_| ()),
        };
        e.into_writer()
    }

    /// Decodes [`Self::to_bytes`]'s output.
    pub fn from_bytes(bytes: &[u8]) -> Result<StoredKey, StoreError> {
        Self::decode(bytes).ok_or(StoreError::Corrupt)
    }

    fn decode(bytes: &[u8]) -> Option<StoredKey> {
        let mut d = Decoder::new(bytes);
        let entries = d.map().ok()??;
        let (mut kind, mut key, mut device_id, mut certificate) = (None, None, None, None);
        for _ in 0..entries {
            match d.u8().ok()? {
                0 => kind = Some(d.u8().ok()?),
                1 => key = Some(<[u8; PRIVATE_KEY_LEN]>::try_from(d.bytes().ok()?).ok()?),
                2 => device_id = Some(DeviceId(d.bytes().ok()?.try_into().ok()?)),
                3 => certificate = Some(d.bytes().ok()?.to_vec()),
                _ => d.skip().ok()?,
            }
        }
        if d.position() != bytes.len() {
            return None;
        }
        let private_key = key?;
        match kind? {
            KIND_PENDING => Some(StoredKey::Pending(PendingKey { private_key })),
            KIND_ENROLLED => Some(StoredKey::Enrolled(Identity {
                device_id: device_id?,
                private_key,
                certificate: certificate?,
            })),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sec1_der_is_what_a_der_parser_reads_back() {
        let key = [0x42; super::PRIVATE_KEY_LEN];
        let der = super::sec1_der(&key).expect("a valid scalar");
        let parsed = p256::SecretKey::from_sec1_der(&der).expect("valid SEC1 DER");
        assert_eq!(<[u8; 32]>::from(parsed.to_bytes()), key);
        assert!(super::sec1_der(&[0; super::PRIVATE_KEY_LEN]).is_err());
    }

    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;

    use super::*;

    struct CountingRng(u64);

    impl rand_core::RngCore for CountingRng {
        fn next_u32(&mut self) -> u32 {
            let [a, b, c, d, ..] = self.next_u64().to_le_bytes();
            u32::from_le_bytes([a, b, c, d])
        }
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1);
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.next_u64().to_be_bytes()[0];
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rand_core::CryptoRng for CountingRng {}

    #[test]
    fn proof_verifies_against_the_public_key() {
        let key = PendingKey::generate(&mut CountingRng(1));
        let nonce = [9; NONCE_LEN];
        let proof = sign_enrollment_proof(&key.private_key, &nonce).expect("valid key");
        assert_eq!(proof.public_key[0], 0x04);
        let verifying = VerifyingKey::from_sec1_bytes(&proof.public_key).expect("point");
        let signature = Signature::from_slice(&proof.proof).expect("r||s");
        verifying
            .verify(&proof_payload(&nonce, &proof.public_key), &signature)
            .expect("proof verifies");
        // Another nonce gives a signature that does not verify for this one.
        let other = sign_enrollment_proof(&key.private_key, &[8; NONCE_LEN]).expect("valid");
        let other = Signature::from_slice(&other.proof).expect("r||s");
        assert!(
            verifying
                .verify(&proof_payload(&nonce, &proof.public_key), &other)
                .is_err()
        );
    }

    #[test]
    fn zero_is_not_a_key() {
        assert_eq!(public_key(&[0; 32]), Err(InvalidKey));
    }

    #[test]
    fn stored_keys_round_trip_and_garbage_is_corrupt() {
        let pending = StoredKey::Pending(PendingKey {
            private_key: [3; 32],
        });
        let enrolled = StoredKey::Enrolled(Identity {
            device_id: DeviceId([4; 16]),
            private_key: [5; 32],
            certificate: alloc::vec![6; 300],
        });
        for key in [pending, enrolled] {
            assert_eq!(StoredKey::from_bytes(&key.to_bytes()), Ok(key.clone()));
            let bytes = key.to_bytes();
            assert_eq!(
                StoredKey::from_bytes(&bytes[..bytes.len() - 1]),
                Err(StoreError::Corrupt)
            );
        }
        assert_eq!(StoredKey::from_bytes(&[0xa0]), Err(StoreError::Corrupt));
    }

    #[test]
    fn debug_output_never_shows_the_private_key() {
        let identity = Identity {
            device_id: DeviceId([4; 16]),
            private_key: [0xab; 32],
            certificate: alloc::vec![6; 3],
        };
        let pending = PendingKey {
            private_key: [0xab; 32],
        };
        for text in [
            alloc::format!("{identity:?}"),
            alloc::format!("{:?}", StoredKey::Pending(pending)),
        ] {
            assert!(!text.contains("171") && !text.contains("ab"), "{text}");
        }
    }
}
