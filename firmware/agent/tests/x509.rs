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
