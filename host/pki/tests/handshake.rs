//! Real TLS handshakes with the configurations of `wasmbed-pki`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{APPLICATION_DATA, connect, tls_error};
use rustls::{CertificateError, ClientConfig, RootCertStore, ServerConfig};
use wasmbed_pki::{
    ALPN_PROTOCOL, DEFAULT_MAX_FRAGMENT_SIZE, Installation, InstallationOptions, PeerIdentity,
    TLS13_RECORD_OVERHEAD, TlsConfigError, classify_peer, client_config_claim,
    client_config_device, crypto_provider, p256_public_key, p256_scalar_to_pkcs8, server_config,
    test_fixtures,
};

fn gateway() -> Arc<ServerConfig> {
    server_config(&test_fixtures().installation, None).unwrap()
}

fn random_scalar() -> [u8; 32] {
    use ring::rand::SecureRandom;
    let mut scalar = [0u8; 32];
    loop {
        ring::rand::SystemRandom::new().fill(&mut scalar).unwrap();
        if p256_public_key(&scalar).is_ok() {
            return scalar;
        }
    }
}

#[tokio::test]
async fn claim_certificate_is_accepted_and_classified_as_claim() {
    let fixtures = test_fixtures();
    let client = client_config_claim(&fixtures.installation).unwrap();
    let outcome = connect(gateway(), client, 100).await;

    let server = outcome.server.unwrap();
    let client = outcome.client.unwrap();
    assert_eq!(client.received.len(), 100);
    assert_eq!(server.alpn.as_deref(), Some(ALPN_PROTOCOL));
    assert_eq!(client.alpn.as_deref(), Some(ALPN_PROTOCOL));
    let identity = classify_peer(
        &server.peer_certificates[0],
        &fixtures.installation.client_roots(),
    )
    .unwrap();
    assert_eq!(identity, PeerIdentity::Claim);
}

#[tokio::test]
async fn issued_device_certificate_is_accepted_and_classified_by_its_key() {
    let fixtures = test_fixtures();
    let scalar = random_scalar();
    let public_key = p256_public_key(&scalar).unwrap();
    let cert = fixtures
        .installation
        .device_issuer()
        .unwrap()
        .issue([7; 16], &public_key)
        .unwrap();
    let client = client_config_device(
        fixtures.installation.gateway_ca(),
        cert,
        p256_scalar_to_pkcs8(&scalar).unwrap(),
    )
    .unwrap();
    let outcome = connect(gateway(), client, 10).await;

    let server = outcome.server.unwrap();
    outcome.client.unwrap();
    let identity = classify_peer(
        &server.peer_certificates[0],
        &fixtures.installation.client_roots(),
    )
    .unwrap();
    assert_eq!(identity.device_key().unwrap().as_sec1(), &public_key);
}

#[tokio::test]
async fn fixture_device_is_accepted() {
    let fixtures = test_fixtures();
    let device = &fixtures.device;
    let client = client_config_device(
        fixtures.installation.gateway_ca(),
        device.cert.clone(),
        device.private_key(),
    )
    .unwrap();
    let outcome = connect(gateway(), client, 10).await;
    let server = outcome.server.unwrap();
    let identity = classify_peer(
        &server.peer_certificates[0],
        &fixtures.installation.client_roots(),
    )
    .unwrap();
    assert_eq!(identity.device_key().unwrap().as_sec1(), &device.public_key);
}

#[tokio::test]
async fn client_certificate_of_a_foreign_installation_is_refused() {
    let foreign = Installation::create(&InstallationOptions::default()).unwrap();
    // The foreign client trusts our gateway, so only the server can refuse.
    let client = client_config_device(
        test_fixtures().installation.gateway_ca(),
        foreign.claim_cert().clone(),
        foreign.claim_private_key(),
    )
    .unwrap();
    let outcome = connect(gateway(), client, 10).await;
    let error = outcome.server.unwrap_err();
    // The foreign claim CA has the same name as ours, so rustls finds a
    // root by name and the signature does not verify.
    assert_eq!(
        tls_error(&error),
        Some(&rustls::Error::InvalidCertificate(
            CertificateError::BadSignature
        )),
        "{error}"
    );
}

#[tokio::test]
async fn client_certificate_of_an_unrelated_ca_is_refused() {
    let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Somebody else's CA");
    let ca = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &ca).unwrap();

    let client = client_config_device(
        test_fixtures().installation.gateway_ca(),
        cert.der().clone(),
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let outcome = connect(gateway(), client, 10).await;
    let error = outcome.server.unwrap_err();
    assert_eq!(
        tls_error(&error),
        Some(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        )),
        "{error}"
    );
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let mut roots = RootCertStore::empty();
    roots
        .add(test_fixtures().installation.gateway_ca().clone())
        .unwrap();
    let client = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let outcome = connect(gateway(), Arc::new(client), 10).await;
    let error = outcome.server.unwrap_err();
    assert_eq!(
        tls_error(&error),
        Some(&rustls::Error::NoCertificatesPresented),
        "{error}"
    );
}

#[tokio::test]
async fn tls12_client_is_refused() {
    let fixtures = test_fixtures();
    let mut roots = RootCertStore::empty();
    roots
        .add(fixtures.installation.gateway_ca().clone())
        .unwrap();
    let client = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![fixtures.installation.claim_cert().clone()],
            fixtures.installation.claim_private_key(),
        )
        .unwrap();
    let outcome = connect(gateway(), Arc::new(client), 10).await;
    let error = outcome.server.unwrap_err();
    assert!(
        matches!(tls_error(&error), Some(rustls::Error::PeerIncompatible(_))),
        "{error}"
    );
    assert!(outcome.client.is_err());
}

#[tokio::test]
async fn client_refuses_a_gateway_certificate_signed_by_a_device_leaf() {
    let fixtures = test_fixtures();
    let attack = &fixtures.leaf_signed_gateway;
    let evil_gateway = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(attack.chain.clone(), attack.private_key())
        .unwrap();
    let evil_gateway = Arc::new(evil_gateway);

    let device = &fixtures.device;
    let clients = [
        client_config_claim(&fixtures.installation).unwrap(),
        client_config_device(
            fixtures.installation.gateway_ca(),
            device.cert.clone(),
            device.private_key(),
        )
        .unwrap(),
    ];
    for client in clients {
        let outcome = connect(evil_gateway.clone(), client, 10).await;
        let error = outcome.client.unwrap_err();
        // rustls-webpki stops at the device certificate used as a CA; were
        // that check missing, the chain would still not reach the gateway CA.
        assert!(
            matches!(
                tls_error(&error),
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::UnknownIssuer | CertificateError::Other(_)
                ))
            ),
            "{error}"
        );
        assert!(outcome.server.is_err());
    }
}

#[tokio::test]
async fn client_refuses_a_gateway_certificate_signed_by_the_device_ca() {
    let fixtures = test_fixtures();
    let attack = &fixtures.device_ca_signed_gateway;
    let evil_gateway = ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(attack.chain.clone(), attack.private_key())
        .unwrap();
    let client = client_config_claim(&fixtures.installation).unwrap();
    let outcome = connect(Arc::new(evil_gateway), client, 10).await;
    let error = outcome.client.unwrap_err();
    assert_eq!(
        tls_error(&error),
        Some(&rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        )),
        "{error}"
    );
}

#[tokio::test]
async fn server_records_on_the_wire_respect_max_fragment_size() {
    let fixtures = test_fixtures();
    for (max_fragment_size, config) in [
        (DEFAULT_MAX_FRAGMENT_SIZE, gateway()),
        (
            900,
            server_config(&fixtures.installation, Some(900)).unwrap(),
        ),
    ] {
        let client = client_config_claim(&fixtures.installation).unwrap();
        let outcome = connect(config, client, 10_000).await;
        outcome.server.unwrap();
        assert_eq!(outcome.client.unwrap().received.len(), 10_000);

        let limit = max_fragment_size + TLS13_RECORD_OVERHEAD;
        let largest = outcome
            .server_records
            .iter()
            .map(|r| r.wire_len)
            .max()
            .unwrap();
        // 10 000 bytes of data fill records exactly up to the limit.
        assert_eq!(largest, limit, "{:?}", outcome.server_records);
    }
    // What a device with a 2 KiB receive buffer needs.
    const { assert!(DEFAULT_MAX_FRAGMENT_SIZE + TLS13_RECORD_OVERHEAD <= 2048) };
}

/// embedded-tls can not reassemble a handshake message split across
/// records: the server's encrypted flight must arrive in one record.
#[tokio::test]
async fn server_handshake_flight_arrives_in_one_record() {
    let fixtures = test_fixtures();
    let client = client_config_claim(&fixtures.installation).unwrap();
    let outcome = connect(gateway(), client, 0).await;
    outcome.server.unwrap();
    let client = outcome.client.unwrap();

    let encrypted: Vec<_> = client
        .handshake_records
        .iter()
        .filter(|r| r.content_type == APPLICATION_DATA)
        .collect();
    assert_eq!(encrypted.len(), 1, "{:?}", client.handshake_records);
    let flight = encrypted[0].wire_len - 5 - TLS13_RECORD_OVERHEAD;
    eprintln!("server flight: {flight} bytes");

    // server_config's bound is an upper bound: a limit just below this
    // flight (less the variation of an ECDSA signature's length) is
    // refused...
    let too_small = flight + 5 - 3;
    assert!(matches!(
        server_config(&fixtures.installation, Some(too_small)),
        Err(TlsConfigError::FlightTooLarge { .. })
    ));
    // ...and not a loose one.
    server_config(&fixtures.installation, Some(flight + 5 + 50)).unwrap();
}

#[test]
fn max_fragment_size_out_of_rustls_range_is_refused() {
    let installation = &test_fixtures().installation;
    for bad in [0, 31, 16_390] {
        assert!(matches!(
            server_config(installation, Some(bad)),
            Err(TlsConfigError::BadMaxFragmentSize(b)) if b == bad
        ));
    }
}

#[test]
fn gateway_certificate_too_large_for_a_record_is_refused() {
    let options = InstallationOptions {
        gateway_dns_names: (0..40)
            .map(|i| format!("gateway-{i}.devices.example.com"))
            .collect(),
        ..InstallationOptions::default()
    };
    let installation = Installation::create(&options).unwrap();
    assert!(matches!(
        server_config(&installation, None),
        Err(TlsConfigError::FlightTooLarge { .. })
    ));
    server_config(&installation, Some(4096)).unwrap();
}
