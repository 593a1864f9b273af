//! The `gateway_certificate` target: the device's check of the certificate
//! a gateway sends in its TLS handshake (`wasmbed_agent::x509`), through
//! the entry point the firmware calls, [`GatewayAnchor::verify_server`].
//! The certificate is network input, read before anything is
//! authenticated.
//!
//! A fuzz input is `[mode] [bytes ...]`:
//!
//! - `mode` even: `bytes` is the certificate as a gateway sends it (DER),
//!   checked against the installation's real gateway CA
//!   (`host/pki/fixtures/gateway-ca.pem`), as the firmware checks it. Only
//!   the parser sits before the signature check, which no mutation gets
//!   past.
//! - `mode` odd: `bytes` is the certificate's signed part (the
//!   TBSCertificate). The harness signs it with a CA whose key it has (the
//!   fixtures' device CA), wraps it into a certificate and checks that
//!   against the same CA. This reaches what follows the signature check:
//!   the validity period, the CA flag, the subjectAltName.
//!
//! Checked, for any input:
//!
//! - the check never panics;
//! - a certificate accepted for [`NOW`] is accepted without a time too,
//!   and for its name in capitals;
//! - against the real gateway CA, only the signed part of the gateway's own
//!   certificate passes;
//! - what the check accepts in the second mode, a standard X.509 parser
//!   (`x509-parser`) reads the same way: a version 3 certificate, one
//!   basicConstraints (if any) that is not a CA's, the validity around
//!   [`NOW`], an EC key, ECDSA with SHA-256, and one subjectAltName with
//!   the DNS name [`SERVER_NAME`] (unless x509-parser refuses an entry of
//!   it that is no name at all, which the device skips like any entry that
//!   is not a DNS name). The device does not read the serial
//!   number and the subject: they are made well-formed (and the
//!   certificate signed again) before x509-parser, which is stricter
//!   about them, reads it.

use std::sync::OnceLock;

use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::DecodePrivateKey as _;
use wasmbed_agent::x509::{CertError, GatewayAnchor};
use x509_parser::error::X509Error;
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate, X509Version};

/// The name the fixtures' gateway certificate carries, as the firmware is
/// provisioned with it.
pub const SERVER_NAME: &str = "localhost";

/// 2030-01-01, inside the fixtures' validity (2025 to 2100).
pub const NOW: u64 = 1_893_456_000;

/// The checked-in fixture files the target uses (TEST ONLY keys).
mod pem_files {
    pub(super) const GATEWAY_CA: &str = include_str!("../../host/pki/fixtures/gateway-ca.pem");
    pub(super) const GATEWAY: &str = include_str!("../../host/pki/fixtures/gateway.pem");
    pub(super) const DEVICE_CA: &str = include_str!("../../host/pki/fixtures/device-ca.pem");
    pub(super) const DEVICE_CA_KEY: &str =
        include_str!("../../host/pki/fixtures/device-ca-key.pem");
    pub(super) const DEVICE: &str = include_str!("../../host/pki/fixtures/device.pem");
    pub(super) const CLAIM_CA: &str = include_str!("../../host/pki/fixtures/claim-ca.pem");
    pub(super) const CLAIM: &str = include_str!("../../host/pki/fixtures/claim.pem");
    pub(super) const LEAF_SIGNED_GATEWAY: &str =
        include_str!("../../host/pki/fixtures/attack-leaf-signed-gateway.pem");
    pub(super) const DEVICE_CA_SIGNED_GATEWAY: &str =
        include_str!("../../host/pki/fixtures/attack-device-ca-signed-gateway.pem");
}

/// The first certificate of a PEM file, DER.
fn der_of(pem: &str) -> Vec<u8> {
    pem::parse_many(pem)
        .expect("a checked-in fixture is PEM")
        .into_iter()
        .find(|block| block.tag() == "CERTIFICATE")
        .expect("a checked-in fixture holds a certificate")
        .into_contents()
}

/// The certificates, keys and anchors, read once.
struct Fixtures {
    gateway_ca: Vec<u8>,
    device_ca: Vec<u8>,
    device_ca_key: SigningKey,
    /// The signed part of the real gateway certificate.
    gateway_tbs: Vec<u8>,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let gateway = der_of(pem_files::GATEWAY);
        Fixtures {
            gateway_ca: der_of(pem_files::GATEWAY_CA),
            device_ca: der_of(pem_files::DEVICE_CA),
            device_ca_key: SigningKey::from_pkcs8_pem(pem_files::DEVICE_CA_KEY)
                .expect("the device CA's key is a P-256 PKCS#8 key"),
            gateway_tbs: signed_part(&gateway)
                .expect("the gateway certificate parses")
                .to_vec(),
        }
    })
}

/// What one input came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Checked as sent, against the real gateway CA.
    AsSent(Result<(), CertError>),
    /// Signed by the harness's CA, then checked against it.
    Signed(Result<(), CertError>),
}

/// `gateway_certificate` target; see the module's documentation.
pub fn check_gateway_certificate(data: &[u8]) -> Option<Verdict> {
    let (&mode, bytes) = data.split_first()?;
    let fixtures = fixtures();
    Some(if mode % 2 == 0 {
        let anchor = GatewayAnchor::new(&fixtures.gateway_ca).expect("the gateway CA is a CA");
        let verdict = check(&anchor, bytes);
        if verdict.is_ok() {
            // Not even this: none but the fixtures' gateway certificate
            // passes, and x509-parser reads that one (`tests`).
            assert_eq!(
                signed_part(bytes),
                Some(&fixtures.gateway_tbs[..]),
                "accepted against the real gateway CA, but not what it signed"
            );
        }
        Verdict::AsSent(verdict)
    } else {
        let anchor = GatewayAnchor::new(&fixtures.device_ca).expect("the device CA is a CA");
        let cert = sign(&fixtures.device_ca_key, bytes);
        let verdict = check(&anchor, &cert);
        if verdict.is_ok() {
            read_as_x509_parser_does(&fixtures.device_ca_key, &cert);
        }
        Verdict::Signed(verdict)
    })
}

/// [`GatewayAnchor::verify_server`] on `cert`, with the checks that hold
/// for any input.
fn check(anchor: &GatewayAnchor<'_>, cert: &[u8]) -> Result<(), CertError> {
    let verdict = anchor.verify_server(cert, SERVER_NAME, Some(NOW)).map(drop);
    let _ = anchor.verify_server(cert, "gateway.example", None);
    if let Err(e) = verdict {
        let _ = e.to_string();
        return verdict;
    }
    assert!(
        anchor.verify_server(cert, SERVER_NAME, None).is_ok(),
        "accepted at a known time, refused without one"
    );
    assert!(
        anchor
            .verify_server(cert, &SERVER_NAME.to_ascii_uppercase(), Some(NOW))
            .is_ok(),
        "names are compared case-sensitively"
    );
    verdict
}

/// Checks that `x509-parser` reads an accepted certificate, signed by
/// `key`, as the device did, once its serial number and subject, which the
/// device does not read, are made well-formed.
fn read_as_x509_parser_does(key: &SigningKey, accepted: &[u8]) {
    let normalized = sign(key, &with_ignored_fields_well_formed(accepted));
    let (rest, cert) = X509Certificate::from_der(&normalized)
        .unwrap_or_else(|e| panic!("accepted, but x509-parser refuses it: {e}"));
    assert!(rest.is_empty(), "accepted with bytes after it");
    assert_eq!(
        cert.version(),
        X509Version::V3,
        "accepted a version other than 3"
    );
    assert_eq!(
        cert.tbs_certificate.signature.algorithm.to_id_string(),
        "1.2.840.10045.4.3.2",
        "accepted a signature algorithm other than ecdsa-with-SHA256"
    );
    match cert.basic_constraints() {
        Ok(Some(constraints)) => assert!(!constraints.value.ca, "accepted a CA as the gateway"),
        Ok(None) => {}
        Err(e) => panic!("accepted, but x509-parser finds its basicConstraints bad: {e}"),
    }
    let now = i64::try_from(NOW).expect("NOW fits");
    let validity = cert.validity();
    assert!(
        validity.not_before.timestamp() <= now && now <= validity.not_after.timestamp(),
        "accepted outside its validity: {validity:?}"
    );
    assert_eq!(
        cert.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1",
        "accepted a key that is not an EC key"
    );
    match cert.subject_alternative_name() {
        Ok(Some(san)) => {
            let names: Vec<String> = san
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                    _ => None,
                })
                .collect();
            assert!(
                names.iter().any(|name| name == SERVER_NAME),
                "accepted for {SERVER_NAME}, but x509-parser finds the DNS names {names:?}"
            );
        }
        // x509-parser refuses a list with an entry that is no GeneralName
        // at all; the device reads only the DNS names of the list, and
        // skips the rest whatever it is.
        Err(X509Error::InvalidExtensions) => {}
        Ok(None) => panic!("accepted without a subjectAltName"),
        Err(e) => panic!("accepted, but x509-parser finds its subjectAltName bad: {e}"),
    }
}

/// The signed part (the TBSCertificate element) of a certificate, read as
/// the device reads it.
fn signed_part(cert: &[u8]) -> Option<&[u8]> {
    let (_, certificate, _) = next_element(cert)?;
    let (_, _, tbs) = next_element(certificate)?;
    Some(tbs)
}

/// The signed part of an accepted certificate with a serial number of 1
/// and an empty subject in place of its own.
fn with_ignored_fields_well_formed(cert: &[u8]) -> Vec<u8> {
    let tbs = signed_part(cert).expect("accepted, so it has a signed part");
    let (_, tbs, _) = next_element(tbs).expect("accepted, so it is an element");
    let mut fields = elements(tbs).expect("accepted, so its fields are elements");
    let serial = usize::from(fields.first().is_some_and(|field| field[0] == 0xA0));
    // serial, signature algorithm, issuer, validity, subject.
    let subject = serial + 4;
    assert!(subject < fields.len(), "accepted without a subject");
    fields[serial] = &[0x02, 0x01, 0x01];
    fields[subject] = &[0x30, 0x00];
    der(0x30, &fields.concat())
}

/// The first DER element of `bytes`, read as the device reads it (one tag
/// byte, a definite length of at most three bytes): its tag, its content
/// and all of it.
fn next_element(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 3 || rest.len() < count {
            return None;
        }
        let (len, rest) = rest.split_at(count);
        (len.iter().fold(0, |n, &b| (n << 8) | usize::from(b)), rest)
    };
    let content = rest.get(..len)?;
    let header = bytes.len() - rest.len();
    Some((tag, content, &bytes[..header + len]))
}

/// The elements of DER content, each whole.
fn elements(mut content: &[u8]) -> Option<Vec<&[u8]>> {
    let mut all = Vec::new();
    while !content.is_empty() {
        let (_, _, element) = next_element(content)?;
        content = &content[element.len()..];
        all.push(element);
    }
    Some(all)
}

/// `tbs` signed with `key` (ECDSA P-256 with SHA-256) as a certificate:
/// `SEQUENCE { tbs, SEQUENCE { ecdsa-with-SHA256 }, BIT STRING signature }`.
pub fn sign(key: &SigningKey, tbs: &[u8]) -> Vec<u8> {
    const ECDSA_WITH_SHA256: [u8; 10] =
        [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
    let signature: DerSignature = key.sign(tbs);
    let mut bits = vec![0];
    bits.extend_from_slice(signature.as_bytes());
    let mut body = tbs.to_vec();
    body.extend(der(0x30, &ECDSA_WITH_SHA256));
    body.extend(der(0x03, &bits));
    der(0x30, &body)
}

/// One DER element: `tag`, the definite length in its shortest form, and
/// `content`.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match u8::try_from(content.len()) {
        Ok(len) if len < 0x80 => out.push(len),
        _ => {
            let len = content.len().to_be_bytes();
            let first = len.iter().position(|&b| b != 0).unwrap_or(len.len() - 1);
            let count = u8::try_from(len.len() - first).expect("a usize has few bytes");
            out.push(0x80 | count);
            out.extend_from_slice(&len[first..]);
        }
    }
    out.extend_from_slice(content);
    out
}

/// The seeds: every certificate of the fixtures as sent (mode 0), and the
/// signed parts of those the device CA issued, to be signed again (mode 1).
/// File names say what each is expected to come to.
pub fn seeds() -> super::SeedFiles {
    let as_sent = [
        ("gateway", pem_files::GATEWAY),
        ("gateway_ca", pem_files::GATEWAY_CA),
        ("device_ca", pem_files::DEVICE_CA),
        ("device", pem_files::DEVICE),
        ("claim_ca", pem_files::CLAIM_CA),
        ("claim", pem_files::CLAIM),
        ("attack_leaf_signed_gateway", pem_files::LEAF_SIGNED_GATEWAY),
        (
            "attack_device_ca_signed_gateway",
            pem_files::DEVICE_CA_SIGNED_GATEWAY,
        ),
    ];
    let resigned = [
        (
            "device_ca_signed_gateway",
            pem_files::DEVICE_CA_SIGNED_GATEWAY,
        ),
        ("device", pem_files::DEVICE),
    ];
    let mut files = Vec::new();
    for (name, pem) in as_sent {
        let mut bytes = vec![0];
        bytes.extend(der_of(pem));
        files.push((format!("as_sent_{name}.der"), bytes));
    }
    for (name, pem) in resigned {
        let cert = der_of(pem);
        let mut bytes = vec![1];
        bytes.extend_from_slice(signed_part(&cert).expect("a fixture certificate parses"));
        files.push((format!("signed_{name}.der"), bytes));
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_take_their_shortest_form() {
        assert_eq!(der(0x04, &[7; 3]), [0x04, 3, 7, 7, 7]);
        assert_eq!(der(0x04, &[0; 0x7f])[..2], [0x04, 0x7f]);
        assert_eq!(der(0x04, &[0; 0x80])[..3], [0x04, 0x81, 0x80]);
        assert_eq!(der(0x04, &[0; 0x1234])[..4], [0x04, 0x82, 0x12, 0x34]);
    }

    #[test]
    fn a_certificate_signed_again_is_the_same_shape() {
        // Re-signing the real gateway certificate's signed part with the
        // device CA gives a certificate x509-parser reads, with the same
        // signed part.
        let tbs = fixtures().gateway_tbs.clone();
        let cert = sign(&fixtures().device_ca_key, &tbs);
        assert_eq!(signed_part(&cert), Some(&tbs[..]));
    }

    #[test]
    fn elements_are_read_as_the_device_reads_them() {
        assert_eq!(
            next_element(&[0x04, 0x81, 0x02, 7, 7, 9]),
            Some((0x04, &[7, 7][..], &[0x04, 0x81, 0x02, 7, 7][..]))
        );
        assert_eq!(next_element(&[0x04, 0x03, 7, 7]), None);
        assert_eq!(next_element(&[0x04, 0x80]), None);
        assert_eq!(
            elements(&[0x02, 0x01, 0x05, 0x30, 0x00]),
            Some(vec![&[0x02, 0x01, 0x05][..], &[0x30, 0x00][..]])
        );
    }

    #[test]
    fn the_ignored_fields_are_replaced_and_nothing_else() {
        let cert = der_of(pem_files::DEVICE_CA_SIGNED_GATEWAY);
        let original = X509Certificate::from_der(&cert).expect("parses").1;
        let key = &fixtures().device_ca_key;
        let normalized = sign(key, &with_ignored_fields_well_formed(&cert));
        let changed = X509Certificate::from_der(&normalized).expect("parses").1;
        assert_eq!(changed.raw_serial(), [1]);
        assert!(changed.subject().as_raw().is_empty() || changed.subject().iter().next().is_none());
        assert_eq!(changed.issuer(), original.issuer());
        assert_eq!(changed.validity(), original.validity());
        assert_eq!(changed.public_key(), original.public_key());
        assert_eq!(changed.extensions(), original.extensions());
        read_as_x509_parser_does(key, &sign(key, signed_part(&cert).expect("parses")));
    }

    #[test]
    fn the_seeds_come_to_what_their_names_say() {
        for (name, bytes) in seeds() {
            let verdict = check_gateway_certificate(&bytes).expect("a seed has a mode byte");
            let expected = match name.as_str() {
                "as_sent_gateway.der" => Verdict::AsSent(Ok(())),
                "as_sent_gateway_ca.der" => Verdict::AsSent(Err(CertError::WrongRole)),
                "signed_device_ca_signed_gateway.der" => Verdict::Signed(Ok(())),
                // A device's certificate is for TLS clients (clientAuth):
                // refused for its role before its names are read.
                "signed_device.der" => Verdict::Signed(Err(CertError::WrongRole)),
                _ => Verdict::AsSent(Err(CertError::UnknownIssuer)),
            };
            assert_eq!(verdict, expected, "{name}");
        }
    }

    #[test]
    fn a_flipped_bit_in_a_signed_part_is_checked_not_trusted() {
        // Mode 1 takes any bytes as the signed part: a TBS with a byte
        // changed is signed again and must still come to a verdict.
        let mut tbs = vec![1];
        tbs.extend_from_slice(&fixtures().gateway_tbs);
        for i in (1..tbs.len()).step_by(7) {
            tbs[i] ^= 0x10;
            check_gateway_certificate(&tbs);
            tbs[i] ^= 0x10;
        }
    }
}
