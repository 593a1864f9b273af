//! Issuing enrolled devices their certificates.

use std::fmt;
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, PublicKeyData, SignatureAlgorithm};
use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use wasmbed_protocol::{DeviceId, PUBLIC_KEY_LEN};

use crate::params::{self, Usage};

/// Ten years: the default validity of a device certificate (never past the
/// device CA's own expiry).
pub const DEFAULT_DEVICE_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

/// Why a device certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The device sent a key that is not an uncompressed SEC1 P-256 point
    /// on the curve. The device is at fault.
    #[error("the public key is not an uncompressed P-256 point on the curve")]
    InvalidPublicKey,
    /// The device CA certificate or key could not be used.
    #[error("unusable device CA: {0}")]
    BadCa(String),
    /// The device CA has expired, or expires before `not_before`.
    #[error("the device CA is not valid at the requested time")]
    CaExpired,
    #[error("the system's secure random number generator failed")]
    Random,
    /// The installation was loaded without the device CA's private key
    /// (a gateway whose enrollments the API server signs).
    #[error(
        "this installation has no device CA key ({})",
        crate::file_names::DEVICE_CA_KEY
    )]
    NoCaKey,
    #[error("signing the certificate failed: {0}")]
    Sign(#[from] rcgen::Error),
}

/// An uncompressed SEC1 P-256 point, validated, as rcgen signs for it.
struct Sec1PublicKey<'a>(&'a [u8]);

impl PublicKeyData for Sec1PublicKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

/// Checks that `key` is an uncompressed SEC1 P-256 point on the curve.
pub(crate) fn validate_sec1(key: &[u8]) -> Result<&[u8; PUBLIC_KEY_LEN], IssueError> {
    let point: &[u8; PUBLIC_KEY_LEN] = key.try_into().map_err(|_| IssueError::InvalidPublicKey)?;
    if point[0] != 0x04 {
        return Err(IssueError::InvalidPublicKey);
    }
    // Rejects points off the curve and the identity.
    p256::PublicKey::from_sec1_bytes(point).map_err(|_| IssueError::InvalidPublicKey)?;
    Ok(point)
}

/// Signs device certificates with the device CA. Held by the gateway.
pub struct DeviceIssuer {
    issuer: Issuer<'static, KeyPair>,
    ca_not_after: OffsetDateTime,
    validity: Duration,
}

impl fmt::Debug for DeviceIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceIssuer")
            .field("ca_not_after", &self.ca_not_after)
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

impl DeviceIssuer {
    /// An issuer from the device CA's certificate and private key.
    pub fn new(
        ca_cert: &CertificateDer<'_>,
        ca_key: &PrivatePkcs8KeyDer<'_>,
    ) -> Result<DeviceIssuer, IssueError> {
        let key = KeyPair::try_from(ca_key.secret_pkcs8_der())
            .map_err(|e| IssueError::BadCa(format!("private key: {e}")))?;
        let (_, x509) = x509_parser::parse_x509_certificate(ca_cert)
            .map_err(|e| IssueError::BadCa(format!("certificate: {e}")))?;
        if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
            return Err(IssueError::BadCa(
                "the private key does not belong to the certificate".to_owned(),
            ));
        }
        let ca_not_after = x509.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(ca_cert, key)
            .map_err(|e| IssueError::BadCa(format!("certificate: {e}")))?;
        Ok(DeviceIssuer {
            issuer,
            ca_not_after,
            validity: DEFAULT_DEVICE_VALIDITY,
        })
    }

    /// The same issuer, issuing certificates valid for `validity` (still
    /// never past the device CA's expiry).
    #[must_use]
    pub fn with_validity(mut self, validity: Duration) -> DeviceIssuer {
        self.validity = validity;
        self
    }

    /// Issues the certificate of the device `device_id` whose public key
    /// is `public_key_sec1` (uncompressed SEC1, 65 bytes, as the device
    /// sends it at enrollment).
    ///
    /// The subject's common name is the device id in
    /// [`DeviceId`]'s `Display` form, for operators; the gateway identifies
    /// the device by the certificate's public key only. The certificate is
    /// a clientAuth end-entity certificate with a random serial number,
    /// valid from an hour ago.
    pub fn issue(
        &self,
        device_id: [u8; 16],
        public_key_sec1: &[u8],
    ) -> Result<CertificateDer<'static>, IssueError> {
        self.issue_at(
            device_id,
            public_key_sec1,
            SystemTime::now() - params::BACKDATE,
        )
    }

    /// [`issue`](Self::issue), valid from `not_before`.
    pub fn issue_at(
        &self,
        device_id: [u8; 16],
        public_key_sec1: &[u8],
        not_before: SystemTime,
    ) -> Result<CertificateDer<'static>, IssueError> {
        let point = validate_sec1(public_key_sec1)?;
        let (not_before, not_after) = params::validity(Some(not_before), self.validity);
        let not_after = not_after.min(self.ca_not_after);
        if not_after <= not_before {
            return Err(IssueError::CaExpired);
        }
        let common_name = DeviceId(device_id).to_string();
        let params = params::leaf_params(&common_name, Usage::Client, (not_before, not_after))
            .map_err(|_| IssueError::Random)?;
        let cert = params.signed_by(&Sec1PublicKey(point), &self.issuer)?;
        Ok(cert.der().clone())
    }
}
