//! Certificate parameters shared by every certificate this crate makes.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

/// The organization name in every subject.
pub(crate) const ORGANIZATION: &str = "Wasmbed";

/// How far before "now" a new certificate becomes valid, so that a peer
/// whose clock is a little behind still accepts it.
pub(crate) const BACKDATE: Duration = Duration::from_secs(60 * 60);

/// Bytes of a random serial number (RFC 5280 allows up to 20).
const SERIAL_LEN: usize = 16;

/// A new ECDSA P-256 key pair.
pub(crate) fn generate_key() -> Result<KeyPair, rcgen::Error> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
}

/// A positive, non-zero, random serial number.
pub(crate) fn random_serial() -> Result<SerialNumber, ring::error::Unspecified> {
    let mut bytes = [0u8; SERIAL_LEN];
    loop {
        SystemRandom::new().fill(&mut bytes)?;
        // The DER INTEGER must be positive: clear the top bit.
        bytes[0] &= 0x7f;
        if bytes.iter().any(|&b| b != 0) {
            return Ok(SerialNumber::from_slice(&bytes));
        }
    }
}

/// `t` as rcgen's time type, to the second.
pub(crate) fn to_offset(t: SystemTime) -> OffsetDateTime {
    let t = OffsetDateTime::from(t);
    t.replace_nanosecond(0).unwrap_or(t)
}

/// The validity of a new certificate: from `not_before` (default: now
/// minus [`BACKDATE`]) for `validity`.
pub(crate) fn validity(
    not_before: Option<SystemTime>,
    validity: Duration,
) -> (OffsetDateTime, OffsetDateTime) {
    let start = not_before.unwrap_or_else(|| SystemTime::now() - BACKDATE);
    (to_offset(start), to_offset(start + validity))
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A CA that signs end-entity certificates only (path length 0).
pub(crate) fn ca_params(
    common_name: &str,
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
) -> Result<CertificateParams, ring::error::Unspecified> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

/// What an end-entity certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Usage {
    /// A TLS server (the gateway).
    Server,
    /// A TLS client (a device, or the shared claim certificate).
    Client,
}

/// An end-entity certificate: not a CA, digitalSignature only, one
/// extended key usage.
pub(crate) fn leaf_params(
    common_name: &str,
    usage: Usage,
    (not_before, not_after): (OffsetDateTime, OffsetDateTime),
) -> Result<CertificateParams, ring::error::Unspecified> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject(common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match usage {
        Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}
