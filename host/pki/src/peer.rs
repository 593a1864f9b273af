//! Who is on the other end of a verified TLS connection.

use std::fmt;

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::DecodePublicKey;
use rustls_pki_types::CertificateDer;
use wasmbed_protocol::session::PeerCredential;
use wasmbed_protocol::{DeviceId, PUBLIC_KEY_LEN};
use x509_parser::certificate::X509Certificate;

use crate::installation::signed_by;
use crate::issue::{IssueError, validate_sec1};

/// A device's identity: the public key of its certificate, as an
/// uncompressed SEC1 P-256 point (`0x04 || x || y`), always on the curve.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevicePublicKey([u8; PUBLIC_KEY_LEN]);

impl DevicePublicKey {
    /// Validates an uncompressed SEC1 P-256 point.
    pub fn from_sec1(bytes: &[u8]) -> Result<DevicePublicKey, IssueError> {
        validate_sec1(bytes).map(|point| DevicePublicKey(*point))
    }

    /// The 65 bytes of the point.
    pub fn as_sec1(&self) -> &[u8; PUBLIC_KEY_LEN] {
        &self.0
    }
}

impl From<DevicePublicKey> for [u8; PUBLIC_KEY_LEN] {
    fn from(key: DevicePublicKey) -> Self {
        key.0
    }
}

impl fmt::Display for DevicePublicKey {
    /// Lowercase hex of the 65 bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for DevicePublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DevicePublicKey({self})")
    }
}

/// How a TLS client authenticated, decided by which root signed its
/// certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// The shared claim certificate: the peer may only enroll.
    Claim,
    /// An enrolled device, identified by its certificate's public key.
    Device(DevicePublicKey),
}

impl PeerIdentity {
    /// The protocol session's view of the credential.
    pub fn credential(&self) -> PeerCredential {
        match self {
            PeerIdentity::Claim => PeerCredential::Claim,
            PeerIdentity::Device(_) => PeerCredential::Device,
        }
    }

    /// The device's public key, if this is an enrolled device.
    pub fn device_key(&self) -> Option<&DevicePublicKey> {
        match self {
            PeerIdentity::Claim => None,
            PeerIdentity::Device(key) => Some(key),
        }
    }
}

/// Why a client certificate could not be classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassifyError {
    #[error("the client certificate can not be parsed: {0}")]
    BadCertificate(String),
    #[error("a root certificate can not be parsed: {0}")]
    BadRoot(String),
    /// Neither the claim CA nor the device CA signed the certificate.
    #[error("the client certificate was issued by neither the claim CA nor the device CA")]
    UnknownIssuer,
    /// Signed by the device CA, but its key is not a P-256 point.
    #[error("the device certificate's key is not an ECDSA P-256 key")]
    UnsupportedKey,
}

/// The two roots the gateway accepts client certificates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRoots {
    claim_ca: CertificateDer<'static>,
    device_ca: CertificateDer<'static>,
}

impl ClientRoots {
    /// The claim CA and the device CA.
    pub fn new(claim_ca: CertificateDer<'static>, device_ca: CertificateDer<'static>) -> Self {
        ClientRoots {
            claim_ca,
            device_ca,
        }
    }

    /// The claim CA.
    pub fn claim_ca(&self) -> &CertificateDer<'static> {
        &self.claim_ca
    }

    /// The device CA.
    pub fn device_ca(&self) -> &CertificateDer<'static> {
        &self.device_ca
    }
}

/// The P-256 public key of a certificate, if it has one.
pub(crate) fn sec1_public_key(cert: &X509Certificate<'_>) -> Option<DevicePublicKey> {
    let key = p256::PublicKey::from_public_key_der(cert.public_key().raw).ok()?;
    let point = key.to_encoded_point(false);
    let sec1: [u8; PUBLIC_KEY_LEN] = point.as_bytes().try_into().ok()?;
    Some(DevicePublicKey(sec1))
}

/// The device id a device certificate was issued for: its subject's common
/// name, in [`DeviceId`]'s `Display` form (see
/// [`DeviceIssuer::issue`](crate::DeviceIssuer::issue)). `None` when the
/// certificate does not parse or names no device id.
///
/// Trust it only on a certificate [`classify_peer`] found issued by the
/// device CA: only then did the fleet's issuer write that name.
pub fn certified_device_id(end_entity: &CertificateDer<'_>) -> Option<DeviceId> {
    let (_, cert) = x509_parser::parse_x509_certificate(end_entity).ok()?;
    let mut names = cert.subject().iter_common_name();
    let name = names.next()?.as_str().ok()?;
    if names.next().is_some() {
        return None;
    }
    parse_device_id(name)
}

/// Parses [`DeviceId`]'s `Display` form: 32 lowercase hex digits in
/// groups of 8-4-4-4-12.
fn parse_device_id(text: &str) -> Option<DeviceId> {
    let bytes = text.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return None;
    }
    let digits: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'-').collect();
    if digits.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (byte, pair) in id.iter_mut().zip(digits.chunks_exact(2)) {
        let hex = |d: u8| match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            _ => None,
        };
        *byte = (hex(pair[0])? << 4) | hex(pair[1])?;
    }
    Some(DeviceId(id))
}

/// Decides who a TLS client is from its end-entity certificate (the first
/// of rustls's `peer_certificates()`).
///
/// Call it only on a certificate the TLS handshake has verified (rustls
/// checked the chain, validity, key usage and that the client holds the
/// key). It still checks, independently of subject fields, which root
/// signed the certificate: the issuer name must be the root's subject *and*
/// the signature must verify with the root's key. A certificate of the
/// device CA yields the device's identity: its public key.
pub fn classify_peer(
    end_entity: &CertificateDer<'_>,
    roots: &ClientRoots,
) -> Result<PeerIdentity, ClassifyError> {
    fn parse_root(der: &[u8]) -> Result<X509Certificate<'_>, ClassifyError> {
        x509_parser::parse_x509_certificate(der)
            .map(|(_, x509)| x509)
            .map_err(|e| ClassifyError::BadRoot(e.to_string()))
    }
    let claim_ca = parse_root(&roots.claim_ca)?;
    let device_ca = parse_root(&roots.device_ca)?;
    let (rest, cert) = x509_parser::parse_x509_certificate(end_entity)
        .map_err(|e| ClassifyError::BadCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ClassifyError::BadCertificate(
            "trailing bytes after the certificate".to_owned(),
        ));
    }

    if signed_by(&cert, &device_ca) {
        let key = sec1_public_key(&cert).ok_or(ClassifyError::UnsupportedKey)?;
        Ok(PeerIdentity::Device(key))
    } else if signed_by(&cert, &claim_ca) {
        Ok(PeerIdentity::Claim)
    } else {
        Err(ClassifyError::UnknownIssuer)
    }
}
