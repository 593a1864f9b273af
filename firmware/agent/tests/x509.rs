//! The device's gateway certificate check against the installation's real
//! certificates and the attacks the fixtures carry.

use p256::ecdsa::signature::Signer;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use wasmbed_agent::x509::{CertError, GatewayAnchor};
use wasmbed_pki::test_fixtures;

/// 2030-01-01, inside the fixtures' validity.
const NOW: Option<u64> = Some(1_893_456_000);

fn anchor() -> GatewayAnchor<'static> {
    GatewayAnchor::new(test_fixtures().installation.gateway_ca()).expect("the gateway CA is a CA")
}

fn gateway_cert() -> &'static [u8] {
    test_fixtures().installation.gateway_cert()
}

#[test]
fn the_installation_gateway_certificate_is_accepted_for_its_name() {
    assert!(
        anchor()
            .verify_server(gateway_cert(), "localhost", NOW)
            .is_ok()
    );
    assert!(
        anchor()
            .verify_server(gateway_cert(), "LOCALHOST", NOW)
            .is_ok()
    );
}

#[test]
fn another_name_is_refused() {
    assert_eq!(
        anchor()
            .verify_server(gateway_cert(), "gateway.example", NOW)
            .err(),
        Some(CertError::WrongName)
    );
}

#[test]
fn a_gateway_certificate_signed_by_a_device_key_is_refused() {
    let attack = &test_fixtures().leaf_signed_gateway.chain[0];
    assert_eq!(
        anchor().verify_server(attack, "localhost", NOW).err(),
        Some(CertError::UnknownIssuer)
    );
}

#[test]
fn a_gateway_certificate_signed_by_the_device_ca_is_refused() {
    let attack = &test_fixtures().device_ca_signed_gateway.chain[0];
    assert_eq!(
        anchor().verify_server(attack, "localhost", NOW).err(),
        Some(CertError::UnknownIssuer)
    );
}

#[test]
fn a_forged_issuer_name_fails_the_signature_check() {
    // The attacker names the gateway CA as issuer but signs with its own key.
    let attacker = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let issuer =
        rcgen::Issuer::from_ca_cert_der(test_fixtures().installation.gateway_ca(), &attacker)
            .expect("issuer");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let forged = params.signed_by(&leaf_key, &issuer).expect("signed");
    assert_eq!(
        anchor()
            .verify_server(forged.der(), "localhost", None)
            .err(),
        Some(CertError::BadSignature)
    );
}

#[test]
fn the_validity_period_is_enforced_when_the_time_is_known() {
    assert_eq!(
        anchor()
            .verify_server(gateway_cert(), "localhost", Some(0))
            .err(),
        Some(CertError::NotYetValid)
    );
    assert_eq!(
        anchor()
            .verify_server(gateway_cert(), "localhost", Some(u64::MAX / 2))
            .err(),
        Some(CertError::Expired)
    );
    assert!(
        anchor()
            .verify_server(gateway_cert(), "localhost", None)
            .is_ok()
    );
}

#[test]
fn the_ca_itself_is_not_a_server_certificate() {
    let ca = test_fixtures().installation.gateway_ca();
    assert!(matches!(
        anchor().verify_server(ca, "localhost", NOW).err(),
        Some(CertError::WrongRole | CertError::WrongName)
    ));
    assert_eq!(
        GatewayAnchor::new(gateway_cert()).err(),
        Some(CertError::WrongRole)
    );
}

#[test]
fn no_truncation_or_bit_flip_is_accepted() {
    let cert = gateway_cert();
    for len in 0..cert.len() {
        assert!(
            anchor()
                .verify_server(&cert[..len], "localhost", NOW)
                .is_err(),
            "truncated to {len}"
        );
    }
    let mut flipped = cert.to_vec();
    for i in 0..cert.len() {
        flipped[i] ^= 0x01;
        assert!(
            anchor().verify_server(&flipped, "localhost", NOW).is_err(),
            "bit flip at {i}"
        );
        flipped[i] ^= 0x01;
    }
}

#[test]
fn certificate_verify_signatures_are_checked() {
    let key = anchor()
        .verify_server(gateway_cert(), "localhost", NOW)
        .expect("valid");
    let gateway_key = SigningKey::from_pkcs8_der(
        test_fixtures()
            .installation
            .gateway_key()
            .secret_pkcs8_der(),
    )
    .expect("gateway key");
    let transcript = [0x42u8; 32];
    let mut message = vec![0x20u8; 64];
    message.extend_from_slice(b"TLS 1.3, server CertificateVerify\x00");
    message.extend_from_slice(&transcript);
    let signature: DerSignature = gateway_key.sign(&message);
    assert_eq!(key.verify_tls13(&transcript, signature.as_bytes()), Ok(()));
    assert_eq!(
        key.verify_tls13(&[0x43; 32], signature.as_bytes()),
        Err(CertError::BadSignature)
    );
    assert_eq!(
        key.verify_tls13(&transcript, &[0x30, 0]),
        Err(CertError::Malformed)
    );
}

/// A CA of the test's own, whose key it has.
fn own_ca() -> (rcgen::Certificate, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = params.self_signed(&key).expect("self-signed");
    (ca, key)
}

/// The first DER element of `bytes` (definite lengths only) and the
/// length of its header.
fn first_element(bytes: &[u8]) -> (&[u8], usize) {
    let (len, header) = match bytes[1] {
        short @ 0..0x80 => (usize::from(short), 2),
        long => {
            let count = usize::from(long & 0x7f);
            let len = bytes[2..2 + count]
                .iter()
                .fold(0, |n, &b| (n << 8) | usize::from(b));
            (len, 2 + count)
        }
    };
    (&bytes[..header + len], header)
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = u16::try_from(content.len()).expect("a certificate is small");
    match len {
        0..0x80 => out.push(len.to_be_bytes()[1]),
        0x80..0x100 => out.extend([0x81, len.to_be_bytes()[1]]),
        _ => out.extend([0x82].into_iter().chain(len.to_be_bytes())),
    }
    out.extend_from_slice(content);
    out
}

/// `cert` with `edit` applied to its signed part, signed again by `ca_key`.
fn edited_and_signed_again(
    cert: &[u8],
    ca_key: &rcgen::KeyPair,
    edit: impl FnOnce(&mut Vec<u8>),
) -> Vec<u8> {
    let (certificate, header) = first_element(cert);
    let (tbs, _) = first_element(&certificate[header..]);
    let mut tbs = tbs.to_vec();
    edit(&mut tbs);
    let key = SigningKey::from_pkcs8_der(&ca_key.serialize_der()).expect("a P-256 key");
    let signature: DerSignature = key.sign(&tbs);
    let ecdsa_with_sha256 = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, 0x02];
    let mut body = tbs;
    body.extend(der(0x30, &ecdsa_with_sha256));
    body.extend(der(0x03, &[&[0][..], signature.as_bytes()].concat()));
    der(0x30, &body)
}

/// Found by the `gateway_certificate` fuzz target: the version field was
/// skipped unread, so a certificate signed by the trusted CA with a
/// malformed version, or claiming version 1 while carrying extensions,
/// was accepted. Only version 3 has extensions, and the device needs two.
#[test]
fn only_version_3_certificates_are_accepted() {
    const V3: [u8; 5] = [0xA0, 0x03, 0x02, 0x01, 0x02];
    let (ca, ca_key) = own_ca();
    let anchor = GatewayAnchor::new(ca.der()).expect("a CA");
    let issuer = rcgen::Issuer::from_ca_cert_der(ca.der(), &ca_key).expect("issuer");
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let leaf = params.signed_by(&leaf_key, &issuer).expect("signed");
    let with_version = |version: [u8; 5]| {
        edited_and_signed_again(leaf.der(), &ca_key, |tbs| {
            let at = tbs
                .windows(V3.len())
                .position(|w| w == V3)
                .expect("rcgen writes version 3");
            tbs[at..at + V3.len()].copy_from_slice(&version);
        })
    };

    // Signed again unchanged, it passes: the edits below are what fails.
    assert!(
        anchor
            .verify_server(&with_version(V3), "localhost", None)
            .is_ok()
    );
    for version in [
        [0xA0, 0x03, 0x02, 0x01, 0x00], // v1
        [0xA0, 0x03, 0x02, 0x01, 0x01], // v2
        [0xA0, 0x03, 0x02, 0x01, 0x03], // no such version
        [0xA0, 0x03, 0x02, 0x00, 0x02], // an empty INTEGER, then a stray byte
        [0xA0, 0x03, 0x04, 0x01, 0x02], // not an INTEGER
    ] {
        assert_eq!(
            anchor
                .verify_server(&with_version(version), "localhost", None)
                .err(),
            Some(CertError::Malformed),
            "version field {version:02x?}"
        );
    }
}

/// A leaf from [`own_ca`] with the DNS `names` rcgen writes into its
/// subjectAltName (none: no subjectAltName), and `extensions` added after
/// those rcgen writes, as (OID, DER content) pairs.
fn leaf_with_extensions(
    ca: &rcgen::Certificate,
    ca_key: &rcgen::KeyPair,
    names: &[&str],
    extensions: &[(&[u64], &[u8])],
) -> Vec<u8> {
    let issuer = rcgen::Issuer::from_ca_cert_der(ca.der(), ca_key).expect("issuer");
    let names = names
        .iter()
        .map(|name| (*name).to_owned())
        .collect::<Vec<_>>();
    let mut params = rcgen::CertificateParams::new(names).expect("params");
    params.custom_extensions = extensions
        .iter()
        .map(|(oid, content)| rcgen::CustomExtension::from_oid_content(oid, content.to_vec()))
        .collect();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    params
        .signed_by(&key, &issuer)
        .expect("signed")
        .der()
        .to_vec()
}

const BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
const CA_TRUE: &[u8] = &[0x30, 0x03, 0x01, 0x01, 0xFF];
const CA_FALSE: &[u8] = &[0x30, 0x00];
/// Not DER (FALSE is the default, left out), but what a careless CA writes.
const CA_FALSE_EXPLICIT: &[u8] = &[0x30, 0x03, 0x01, 0x01, 0x00];

/// Found by the `gateway_certificate` fuzz target: with two
/// basicConstraints the last one was read, so a certificate that also
/// says "CA" passed as the gateway's. Any repeated extension is refused.
#[test]
fn a_repeated_extension_is_refused() {
    let (ca, ca_key) = own_ca();
    let anchor = GatewayAnchor::new(ca.der()).expect("a CA");
    let once = leaf_with_extensions(
        &ca,
        &ca_key,
        &["localhost"],
        &[(BASIC_CONSTRAINTS, CA_FALSE)],
    );
    assert!(anchor.verify_server(&once, "localhost", None).is_ok());
    for extensions in [
        [
            (BASIC_CONSTRAINTS, CA_TRUE),
            (BASIC_CONSTRAINTS, CA_FALSE_EXPLICIT),
        ],
        [(BASIC_CONSTRAINTS, CA_FALSE), (BASIC_CONSTRAINTS, CA_FALSE)],
        // A second subjectAltName, after rcgen's.
        [
            (BASIC_CONSTRAINTS, CA_FALSE),
            (
                SUBJECT_ALT_NAME,
                &[0x30, 0x06, 0x82, 0x04, b'e', b'v', b'i', b'l'],
            ),
        ],
    ] {
        let cert = leaf_with_extensions(&ca, &ca_key, &["localhost"], &extensions);
        assert_eq!(
            anchor.verify_server(&cert, "localhost", None).err(),
            Some(CertError::Malformed),
            "{extensions:02x?}"
        );
    }
}

/// Found by the `gateway_certificate` fuzz target: a basicConstraints
/// whose content was not `SEQUENCE { [cA BOOLEAN] [pathLen INTEGER] }`
/// was read as "not a CA". A subjectAltName with bytes after its
/// SEQUENCE was read too. Both are refused as malformed.
#[test]
fn malformed_constraints_and_names_are_refused() {
    let (ca, ca_key) = own_ca();
    let anchor = GatewayAnchor::new(ca.der()).expect("a CA");
    let with_path_len: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x00];
    let cert = leaf_with_extensions(
        &ca,
        &ca_key,
        &["localhost"],
        &[(BASIC_CONSTRAINTS, with_path_len)],
    );
    assert!(anchor.verify_server(&cert, "localhost", None).is_ok());
    for constraints in [
        &[0x30, 0x03, 0x80, 0x01, 0x00][..], // an unknown element
        &[0x30, 0x00, 0x00][..],             // a byte after the SEQUENCE
        &[0x30, 0x06, 0x01, 0x01, 0x00, 0x04, 0x01, 0x00][..], // cA, then not an INTEGER
    ] {
        let cert = leaf_with_extensions(
            &ca,
            &ca_key,
            &["localhost"],
            &[(BASIC_CONSTRAINTS, constraints)],
        );
        assert_eq!(
            anchor.verify_server(&cert, "localhost", None).err(),
            Some(CertError::Malformed),
            "basicConstraints {constraints:02x?}"
        );
    }
    let localhost = [
        0x30, 0x0b, 0x82, 0x09, b'l', b'o', b'c', b'a', b'l', b'h', b'o', b's', b't',
    ];
    let names = |trailing: &[u8]| [&localhost[..], trailing].concat();
    let cert = leaf_with_extensions(&ca, &ca_key, &[], &[(SUBJECT_ALT_NAME, &names(&[]))]);
    assert!(anchor.verify_server(&cert, "localhost", None).is_ok());
    let cert = leaf_with_extensions(&ca, &ca_key, &[], &[(SUBJECT_ALT_NAME, &names(&[0]))]);
    assert_eq!(
        anchor.verify_server(&cert, "localhost", None).err(),
        Some(CertError::Malformed),
        "a byte after the subjectAltName's SEQUENCE"
    );
}

const KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const EXTENDED_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
/// keyUsage digitalSignature.
const DIGITAL_SIGNATURE: &[u8] = &[0x03, 0x02, 0x07, 0x80];
/// keyUsage keyCertSign only.
const CERT_SIGN: &[u8] = &[0x03, 0x02, 0x02, 0x04];
/// extendedKeyUsage serverAuth.
const SERVER_AUTH: &[u8] = &[
    0x30, 0x0A, 0x06, 0x08, 0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01,
];
/// extendedKeyUsage clientAuth only.
const CLIENT_AUTH: &[u8] = &[
    0x30, 0x0A, 0x06, 0x08, 0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02,
];

/// Found by the `gateway_certificate` fuzz target: a critical keyUsage
/// was accepted unread, so one whose content was not even DER passed, as
/// did a criticality BOOLEAN of two bytes. keyUsage and extendedKeyUsage
/// are now read: malformed is refused, and so is a certificate whose
/// usages do not include serving TLS (a CA's keyCertSign, a client's
/// clientAuth).
#[test]
fn key_usages_are_read_and_must_allow_serving_tls() {
    let (ca, ca_key) = own_ca();
    let anchor = GatewayAnchor::new(ca.der()).expect("a CA");
    let verdict = |extensions: &[(&[u64], &[u8])]| {
        let cert = leaf_with_extensions(&ca, &ca_key, &["localhost"], extensions);
        anchor.verify_server(&cert, "localhost", None).err()
    };
    assert_eq!(verdict(&[(KEY_USAGE, DIGITAL_SIGNATURE)]), None);
    assert_eq!(verdict(&[(EXTENDED_KEY_USAGE, SERVER_AUTH)]), None);
    assert_eq!(
        verdict(&[
            (KEY_USAGE, DIGITAL_SIGNATURE),
            (EXTENDED_KEY_USAGE, SERVER_AUTH)
        ]),
        None
    );
    assert_eq!(
        verdict(&[(KEY_USAGE, CERT_SIGN)]),
        Some(CertError::WrongRole)
    );
    assert_eq!(
        verdict(&[(EXTENDED_KEY_USAGE, CLIENT_AUTH)]),
        Some(CertError::WrongRole)
    );
    for malformed in [
        &[0x02, 0x07, 0x80][..],       // the fuzzer's: not a BIT STRING, truncated
        &[0x03, 0x02, 0x08, 0x80][..], // eight unused bits
        &[0x03, 0x02, 0x07, 0x80, 0x00][..], // a byte after it
    ] {
        assert_eq!(
            verdict(&[(KEY_USAGE, malformed)]),
            Some(CertError::Malformed),
            "keyUsage {malformed:02x?}"
        );
    }
    for malformed in [&[0x30, 0x00][..], &[0x30, 0x02, 0x04, 0x00][..]] {
        assert_eq!(
            verdict(&[(EXTENDED_KEY_USAGE, malformed)]),
            Some(CertError::Malformed),
            "extendedKeyUsage {malformed:02x?}"
        );
    }
}

/// DER BOOLEANs are one byte, 0x00 or 0xFF: a criticality or cA flag of
/// 0x01 is refused rather than read one way here and another elsewhere.
#[test]
fn booleans_other_than_der_are_refused() {
    let (ca, ca_key) = own_ca();
    let anchor = GatewayAnchor::new(ca.der()).expect("a CA");
    let ca_one: &[u8] = &[0x30, 0x03, 0x01, 0x01, 0x01];
    let cert = leaf_with_extensions(&ca, &ca_key, &["localhost"], &[(BASIC_CONSTRAINTS, ca_one)]);
    assert_eq!(
        anchor.verify_server(&cert, "localhost", None).err(),
        Some(CertError::Malformed)
    );
    // A critical extension, its BOOLEAN edited from 0xFF to 0x01.
    let issuer = rcgen::Issuer::from_ca_cert_der(ca.der(), &ca_key).expect("issuer");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    let mut usage = rcgen::CustomExtension::from_oid_content(KEY_USAGE, DIGITAL_SIGNATURE.to_vec());
    usage.set_criticality(true);
    params.custom_extensions = vec![usage];
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let leaf = params.signed_by(&key, &issuer).expect("signed");
    assert!(anchor.verify_server(leaf.der(), "localhost", None).is_ok());
    let critical = [0x06, 0x03, 0x55, 0x1D, 0x0F, 0x01, 0x01, 0xFF];
    let edited = edited_and_signed_again(leaf.der(), &ca_key, |tbs| {
        let at = tbs
            .windows(critical.len())
            .position(|w| w == critical)
            .expect("a critical keyUsage");
        tbs[at + critical.len() - 1] = 0x01;
    });
    assert_eq!(
        anchor.verify_server(&edited, "localhost", None).err(),
        Some(CertError::Malformed)
    );
}
