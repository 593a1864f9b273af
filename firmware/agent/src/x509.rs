//! Verifying the gateway's TLS certificate on the device, without
//! allocating and without a general X.509 library.
//!
//! Devices trust exactly one root, the installation's gateway CA, and
//! accept exactly one server certificate shape: a leaf signed directly by
//! that root (ECDSA P-256 with SHA-256), valid now, naming the gateway in
//! its subjectAltName, not a CA, with a P-256 key. No chain is built, so
//! there is no intermediate whose basicConstraints or key usage could be
//! skipped: a certificate signed by any other key, such as a device's, is
//! refused by the signature check alone.
//!
//! The parser reads DER strictly enough for these checks: version 3
//! certificates, definite lengths only, every length inside its parent, no
//! trailing bytes.

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};

/// Why a certificate or signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertError {
    /// Not DER of the expected structure.
    Malformed,
    /// Not ECDSA with SHA-256 over P-256.
    UnsupportedAlgorithm,
    /// The issuer is not the trusted root.
    UnknownIssuer,
    /// The root's signature does not verify.
    BadSignature,
    /// Outside its validity period.
    Expired,
    NotYetValid,
    /// The expected server name is not among its DNS names.
    WrongName,
    /// The trust anchor is not a CA, or the server certificate is one, or
    /// its key usages do not include signing as a TLS server.
    WrongRole,
    /// A critical extension this verifier does not understand.
    UnknownCriticalExtension,
}

impl core::fmt::Display for CertError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CertError::Malformed => "malformed certificate",
            CertError::UnsupportedAlgorithm => "not an ECDSA P-256 / SHA-256 certificate",
            CertError::UnknownIssuer => "not issued by the gateway CA",
            CertError::BadSignature => "the gateway CA's signature does not verify",
            CertError::Expired => "expired",
            CertError::NotYetValid => "not yet valid",
            CertError::WrongName => "does not name the gateway",
            CertError::WrongRole => "wrong certificate role (CA versus server)",
            CertError::UnknownCriticalExtension => "unknown critical extension",
        })
    }
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xA0;
const EXTENSIONS: u8 = 0xA3;
const DNS_NAME: u8 = 0x82;

const ECDSA_WITH_SHA256: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
const EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
const PRIME256V1: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1D, 0x11];
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1D, 0x13];
const KEY_USAGE: &[u8] = &[0x55, 0x1D, 0x0F];
const EXTENDED_KEY_USAGE: &[u8] = &[0x55, 0x1D, 0x25];
const SUBJECT_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1D, 0x0E];
const AUTHORITY_KEY_IDENTIFIER: &[u8] = &[0x55, 0x1D, 0x23];
/// id-kp-serverAuth (1.3.6.1.5.5.7.3.1).
const SERVER_AUTH: &[u8] = &[0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// anyExtendedKeyUsage (2.5.29.37.0).
const ANY_EXTENDED_KEY_USAGE: &[u8] = &[0x55, 0x1D, 0x25, 0x00];

/// A DER reader over one level of nesting.
#[derive(Debug, Clone, Copy)]
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element: its tag, its content and all its bytes.
    fn next(&mut self) -> Result<(u8, &'a [u8], &'a [u8]), CertError> {
        let all = self.rest;
        let (&tag, after_tag) = all.split_first().ok_or(CertError::Malformed)?;
        let (&first, mut after_len) = after_tag.split_first().ok_or(CertError::Malformed)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7F);
            if count == 0 || count > 3 || after_len.len() < count {
                return Err(CertError::Malformed);
            }
            let (len_bytes, rest) = after_len.split_at(count);
            after_len = rest;
            len_bytes
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b))
        };
        if after_len.len() < len {
            return Err(CertError::Malformed);
        }
        let header = all.len() - after_len.len();
        let (element, rest) = all.split_at(header + len);
        self.rest = rest;
        Ok((tag, &element[header..], element))
    }

    /// The next element, which must have `tag`; returns its content.
    fn expect(&mut self, tag: u8) -> Result<&'a [u8], CertError> {
        match self.next()? {
            (t, content, _) if t == tag => Ok(content),
            _ => Err(CertError::Malformed),
        }
    }

    fn expect_end(&self) -> Result<(), CertError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(CertError::Malformed)
        }
    }
}

/// The parts of a certificate the checks need.
struct Parsed<'a> {
    /// The signed bytes (the whole TBSCertificate element).
    tbs: &'a [u8],
    signature: &'a [u8],
    issuer: &'a [u8],
    subject: &'a [u8],
    not_before: u64,
    not_after: u64,
    /// Uncompressed SEC1 point.
    public_key: &'a [u8],
    is_ca: bool,
    /// Its keyUsage and extendedKeyUsage, when present, allow signing as a
    /// TLS server (digitalSignature; serverAuth).
    serves_tls: bool,
    extensions: &'a [u8],
}

fn parse(cert: &[u8]) -> Result<Parsed<'_>, CertError> {
    let mut outer = Der::new(cert);
    let mut certificate = Der::new(outer.expect(SEQUENCE)?);
    outer.expect_end()?;
    let (tag, tbs_content, tbs) = certificate.next()?;
    if tag != SEQUENCE {
        return Err(CertError::Malformed);
    }
    expect_ecdsa_sha256(certificate.expect(SEQUENCE)?)?;
    let signature = match certificate.expect(BIT_STRING)? {
        [0, signature @ ..] => signature,
        _ => return Err(CertError::Malformed),
    };
    certificate.expect_end()?;

    let mut fields = Der::new(tbs_content);
    // Version 3: the only one with extensions, and the checks need them.
    if fields.expect(VERSION)? != [INTEGER, 1, 2] {
        return Err(CertError::Malformed);
    }
    fields.expect(INTEGER)?;
    expect_ecdsa_sha256(fields.expect(SEQUENCE)?)?;
    let (_, _, issuer) = fields.next()?;
    let mut validity = Der::new(fields.expect(SEQUENCE)?);
    let not_before = time(&mut validity)?;
    let not_after = time(&mut validity)?;
    validity.expect_end()?;
    let (_, _, subject) = fields.next()?;
    let public_key = p256_key(fields.expect(SEQUENCE)?)?;
    let mut extensions: &[u8] = &[];
    while !fields.is_empty() {
        let (tag, content, _) = fields.next()?;
        if tag == EXTENSIONS {
            let mut wrapper = Der::new(content);
            extensions = wrapper.expect(SEQUENCE)?;
            wrapper.expect_end()?;
        }
    }
    let mut parsed = Parsed {
        tbs,
        signature,
        issuer,
        subject,
        not_before,
        not_after,
        public_key,
        is_ca: false,
        serves_tls: true,
        extensions,
    };
    // Every extension read here is read whole and must be well-formed,
    // critical or not: another verifier would refuse what is not.
    for_each_extension(extensions, |oid, critical, value| {
        match oid {
            BASIC_CONSTRAINTS => {
                let mut constraints = Der::new(single(value, SEQUENCE)?);
                if constraints.peek_tag() == Some(BOOLEAN) {
                    parsed.is_ca = boolean(constraints.expect(BOOLEAN)?)?;
                }
                if constraints.peek_tag() == Some(INTEGER) {
                    constraints.next()?; // pathLenConstraint
                }
                constraints.expect_end()?;
            }
            KEY_USAGE => parsed.serves_tls &= allows_digital_signature(value)?,
            EXTENDED_KEY_USAGE => parsed.serves_tls &= allows_server_auth(value)?,
            SUBJECT_KEY_IDENTIFIER => {
                single(value, OCTET_STRING)?;
            }
            AUTHORITY_KEY_IDENTIFIER => {
                single(value, SEQUENCE)?;
            }
            SUBJECT_ALT_NAME => {}
            _ if critical => return Err(CertError::UnknownCriticalExtension),
            _ => {}
        }
        Ok(())
    })?;
    refuse_repeated_extensions(extensions)?;
    Ok(parsed)
}

/// A DER BOOLEAN's content: one byte, 0x00 or 0xFF.
fn boolean(content: &[u8]) -> Result<bool, CertError> {
    match content {
        [0x00] => Ok(false),
        [0xFF] => Ok(true),
        _ => Err(CertError::Malformed),
    }
}

/// Whether a keyUsage (a BIT STRING) has digitalSignature, the first bit.
fn allows_digital_signature(value: &[u8]) -> Result<bool, CertError> {
    match single(value, BIT_STRING)? {
        [0] => Ok(false),
        [unused, first, ..] if *unused <= 7 => Ok(first & 0x80 != 0),
        _ => Err(CertError::Malformed),
    }
}

/// Whether an extendedKeyUsage (a non-empty SEQUENCE of OIDs) has
/// serverAuth or anyExtendedKeyUsage.
fn allows_server_auth(value: &[u8]) -> Result<bool, CertError> {
    let mut purposes = Der::new(single(value, SEQUENCE)?);
    if purposes.is_empty() {
        return Err(CertError::Malformed);
    }
    let mut allowed = false;
    while !purposes.is_empty() {
        let purpose = purposes.expect(OID)?;
        allowed |= purpose == SERVER_AUTH || purpose == ANY_EXTENDED_KEY_USAGE;
    }
    Ok(allowed)
}

/// The content of `bytes`, which must be one element with `tag` and
/// nothing after it.
fn single(bytes: &[u8], tag: u8) -> Result<&[u8], CertError> {
    let mut der = Der::new(bytes);
    let content = der.expect(tag)?;
    der.expect_end()?;
    Ok(content)
}

/// RFC 5280 allows each extension once: with two basicConstraints or two
/// subjectAltNames, two verifiers could each read a different one.
fn refuse_repeated_extensions(extensions: &[u8]) -> Result<(), CertError> {
    let mut seen = 0;
    for_each_extension(extensions, |oid, _, _| {
        let mut before = 0;
        for_each_extension(extensions, |earlier, _, _| {
            if before < seen && earlier == oid {
                return Err(CertError::Malformed);
            }
            before += 1;
            Ok(())
        })?;
        seen += 1;
        Ok(())
    })
}

fn expect_ecdsa_sha256(algorithm: &[u8]) -> Result<(), CertError> {
    let mut algorithm = Der::new(algorithm);
    if algorithm.expect(OID)? != ECDSA_WITH_SHA256 {
        return Err(CertError::UnsupportedAlgorithm);
    }
    // The parameters must be absent for ECDSA.
    algorithm.expect_end()
}

fn p256_key(spki: &[u8]) -> Result<&[u8], CertError> {
    let mut spki = Der::new(spki);
    let mut algorithm = Der::new(spki.expect(SEQUENCE)?);
    if algorithm.expect(OID)? != EC_PUBLIC_KEY || algorithm.expect(OID)? != PRIME256V1 {
        return Err(CertError::UnsupportedAlgorithm);
    }
    algorithm.expect_end()?;
    let key = match spki.expect(BIT_STRING)? {
        [0, key @ ..] if key.len() == 65 && key[0] == 4 => key,
        _ => return Err(CertError::UnsupportedAlgorithm),
    };
    spki.expect_end()?;
    Ok(key)
}

fn for_each_extension<'a>(
    extensions: &'a [u8],
    mut visit: impl FnMut(&'a [u8], bool, &'a [u8]) -> Result<(), CertError>,
) -> Result<(), CertError> {
    let mut list = Der::new(extensions);
    while !list.is_empty() {
        let mut extension = Der::new(list.expect(SEQUENCE)?);
        let oid = extension.expect(OID)?;
        let critical = if extension.peek_tag() == Some(BOOLEAN) {
            boolean(extension.expect(BOOLEAN)?)?
        } else {
            false
        };
        let value = extension.expect(OCTET_STRING)?;
        extension.expect_end()?;
        visit(oid, critical, value)?;
    }
    Ok(())
}

/// A UTCTime or GeneralizedTime (`...Z`) as seconds since the Unix epoch.
fn time(der: &mut Der<'_>) -> Result<u64, CertError> {
    let (tag, text, _) = der.next()?;
    let (year, rest) = match (tag, text.len()) {
        (UTC_TIME, 13) => {
            let yy = digits(&text[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        (GENERALIZED_TIME, 15) => (digits(&text[..4])?, &text[4..]),
        _ => return Err(CertError::Malformed),
    };
    if rest[10] != b'Z' {
        return Err(CertError::Malformed);
    }
    let month = digits(&rest[0..2])?;
    let day = digits(&rest[2..4])?;
    let (hour, minute, second) = (
        digits(&rest[4..6])?,
        digits(&rest[6..8])?,
        digits(&rest[8..10])?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err(CertError::Malformed);
    }
    let days = days_from_civil(year, month, day).ok_or(CertError::Malformed)?;
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second)
}

fn digits(text: &[u8]) -> Result<u64, CertError> {
    text.iter().try_fold(0u64, |n, &c| {
        if c.is_ascii_digit() {
            Ok(n * 10 + u64::from(c - b'0'))
        } else {
            Err(CertError::Malformed)
        }
    })
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm); `None` before 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let y = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

fn dns_names_contain(extensions: &[u8], name: &str) -> Result<bool, CertError> {
    let mut found = false;
    for_each_extension(extensions, |oid, _, value| {
        if oid == SUBJECT_ALT_NAME {
            let mut names = Der::new(single(value, SEQUENCE)?);
            while !names.is_empty() {
                let (tag, content, _) = names.next()?;
                found |= tag == DNS_NAME && content.eq_ignore_ascii_case(name.as_bytes());
            }
        }
        Ok(())
    })?;
    Ok(found)
}

/// The trusted root: the gateway CA.
#[derive(Debug, Clone)]
pub struct GatewayAnchor<'a> {
    subject: &'a [u8],
    key: VerifyingKey,
}

/// The verified gateway's public key, for its CertificateVerify.
#[derive(Debug, Clone)]
pub struct ServerKey(VerifyingKey);

impl<'a> GatewayAnchor<'a> {
    /// Reads the gateway CA certificate (DER), which must be a P-256 CA.
    pub fn new(ca: &'a [u8]) -> Result<GatewayAnchor<'a>, CertError> {
        let parsed = parse(ca)?;
        if !parsed.is_ca {
            return Err(CertError::WrongRole);
        }
        let key = VerifyingKey::from_sec1_bytes(parsed.public_key)
            .map_err(|_| CertError::UnsupportedAlgorithm)?;
        Ok(GatewayAnchor {
            subject: parsed.subject,
            key,
        })
    }

    /// Checks a server certificate (DER) for `server_name` at `now`
    /// (seconds since the Unix epoch; `None` skips the validity period,
    /// for a device that does not know the time).
    pub fn verify_server(
        &self,
        cert: &[u8],
        server_name: &str,
        now: Option<u64>,
    ) -> Result<ServerKey, CertError> {
        let parsed = parse(cert)?;
        if parsed.issuer != self.subject {
            return Err(CertError::UnknownIssuer);
        }
        let signature = Signature::from_der(parsed.signature).map_err(|_| CertError::Malformed)?;
        self.key
            .verify(parsed.tbs, &signature)
            .map_err(|_| CertError::BadSignature)?;
        if let Some(now) = now {
            if now < parsed.not_before {
                return Err(CertError::NotYetValid);
            }
            if now > parsed.not_after {
                return Err(CertError::Expired);
            }
        }
        if parsed.is_ca || !parsed.serves_tls {
            return Err(CertError::WrongRole);
        }
        if !dns_names_contain(parsed.extensions, server_name)? {
            return Err(CertError::WrongName);
        }
        let key = VerifyingKey::from_sec1_bytes(parsed.public_key)
            .map_err(|_| CertError::UnsupportedAlgorithm)?;
        Ok(ServerKey(key))
    }
}

impl ServerKey {
    /// Checks a TLS 1.3 server CertificateVerify (ecdsa_secp256r1_sha256,
    /// DER signature) over the handshake hash up to the Certificate.
    pub fn verify_tls13(&self, transcript_hash: &[u8], signature: &[u8]) -> Result<(), CertError> {
        const CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify\x00";
        let mut message = heapless::Vec::<u8, 160>::new();
        let fits = message.resize(64, 0x20).is_ok()
            && message.extend_from_slice(CONTEXT).is_ok()
            && message.extend_from_slice(transcript_hash).is_ok();
        if !fits {
            return Err(CertError::Malformed);
        }
        let signature = Signature::from_der(signature).map_err(|_| CertError::Malformed)?;
        self.0
            .verify(&message, &signature)
            .map_err(|_| CertError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_days_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2026, 11, 27), Some(20_784));
        assert_eq!(days_from_civil(1969, 12, 31), None);
    }

    #[test]
    fn both_time_forms_are_read() {
        let utc = [
            UTC_TIME, 13, b'2', b'6', b'1', b'1', b'2', b'7', b'1', b'2', b'0', b'0', b'0', b'0',
            b'Z',
        ];
        assert_eq!(time(&mut Der::new(&utc)), Ok(20_784 * 86_400 + 12 * 3600));
        let generalized = *b"\x18\x0f20500101000000Z";
        assert_eq!(time(&mut Der::new(&generalized)), Ok(2_524_608_000));
        let no_zone = *b"\x17\x0d2611271200000";
        assert_eq!(time(&mut Der::new(&no_zone)), Err(CertError::Malformed));
    }

    #[test]
    fn lengths_past_their_parent_are_refused() {
        assert!(Der::new(&[SEQUENCE, 5, 1, 2]).next().is_err());
        assert!(Der::new(&[SEQUENCE, 0x80]).next().is_err());
        assert!(Der::new(&[SEQUENCE, 0x84, 0, 0, 0, 1, 0]).next().is_err());
        assert!(Der::new(&[SEQUENCE, 0x81, 2, 1, 2]).next().is_ok());
    }
}
