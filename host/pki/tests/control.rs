//! The control PKI: who may call a gateway's HTTP interface.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{connect, tls_error};
use rustls::{ClientConfig, RootCertStore};
use wasmbed_pki::{
    ControlCa, Credential, InstallationOptions, RevocationList, anonymous_client_config,
    certificate_common_name, control_client_config, control_file_names as names, crypto_provider,
    ensure_control_pki, gateway_http_server_config, plain_server_config, test_fixtures,
};

fn gateway_http() -> Arc<rustls::ServerConfig> {
    let fixtures = test_fixtures();
    gateway_http_server_config(&fixtures.installation, &fixtures.control_ca).unwrap()
}

#[tokio::test]
async fn the_api_servers_client_certificate_is_accepted_by_a_gateway() {
    let fixtures = test_fixtures();
    let client =
        control_client_config(fixtures.installation.gateway_ca(), &fixtures.api_client).unwrap();
    let outcome = connect(gateway_http(), client, 10).await;
    let server = outcome.server.unwrap();
    outcome.client.unwrap();
    assert_eq!(
        certificate_common_name(&server.peer_certificates[0]).as_deref(),
        Some("Wasmbed control: api-server")
    );
}

#[tokio::test]
async fn a_device_certificate_cannot_call_a_gateway() {
    let fixtures = test_fixtures();
    let device = Credential {
        cert: fixtures.device.cert.clone(),
        key: wasmbed_pki::p256_scalar_to_pkcs8(&fixtures.device.scalar)
            .map(|key| match key {
                rustls::pki_types::PrivateKeyDer::Pkcs8(key) => key,
                _ => unreachable!("a PKCS#8 key"),
            })
            .unwrap(),
    };
    let client = control_client_config(fixtures.installation.gateway_ca(), &device).unwrap();
    let outcome = connect(gateway_http(), client, 10).await;
    let error = outcome.server.unwrap_err();
    assert!(
        matches!(
            tls_error(&error),
            Some(rustls::Error::InvalidCertificate(_))
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_client_without_a_certificate_completes_the_handshake_unauthenticated() {
    // Health probes connect without one; the HTTP layer refuses them
    // everything but /healthz.
    let fixtures = test_fixtures();
    let client = anonymous_client_config(fixtures.installation.gateway_ca()).unwrap();
    let outcome = connect(gateway_http(), client, 10).await;
    assert!(outcome.server.unwrap().peer_certificates.is_empty());
}

#[tokio::test]
async fn a_control_client_refuses_a_server_not_signed_by_its_ca() {
    let fixtures = test_fixtures();
    // The API server's certificate is signed by the control CA, not the
    // gateway CA: a client of gateways must refuse it.
    let server = plain_server_config(&fixtures.api_server).unwrap();
    let client =
        control_client_config(fixtures.installation.gateway_ca(), &fixtures.api_client).unwrap();
    let outcome = connect(server, client, 10).await;
    assert!(outcome.client.is_err());
    // And a client that trusts the control CA accepts it.
    let server = plain_server_config(&fixtures.api_server).unwrap();
    let client = anonymous_client_config(&fixtures.control_ca).unwrap();
    connect(server, client, 10).await.client.unwrap();
}

#[test]
fn ensure_control_pki_adds_what_is_missing_and_keeps_what_is_there() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let options = InstallationOptions::default();
    let written = ensure_control_pki(dir.path(), &options).unwrap();
    assert_eq!(written.len(), 6, "{written:?}");
    for key in [
        names::CONTROL_CA_KEY,
        names::API_CLIENT_KEY,
        names::API_SERVER_KEY,
    ] {
        let mode = std::fs::metadata(dir.path().join(key))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    let before = std::fs::read(dir.path().join(names::API_CLIENT)).unwrap();
    assert!(ensure_control_pki(dir.path(), &options).unwrap().is_empty());
    assert_eq!(
        std::fs::read(dir.path().join(names::API_CLIENT)).unwrap(),
        before
    );

    // What it made belongs together.
    let ca = ControlCa::load(dir.path()).unwrap();
    let client = Credential::load(
        &dir.path().join(names::API_CLIENT),
        &dir.path().join(names::API_CLIENT_KEY),
    )
    .unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert().clone()).unwrap();
    ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client.cert.clone()], client.private_key())
        .unwrap();
}

#[test]
fn a_control_ca_with_someone_elses_key_does_not_load() {
    let dir = tempfile::tempdir().unwrap();
    ensure_control_pki(dir.path(), &InstallationOptions::default()).unwrap();
    std::fs::copy(
        dir.path().join(names::API_CLIENT_KEY),
        dir.path().join(names::CONTROL_CA_KEY),
    )
    .unwrap();
    assert!(ControlCa::load(dir.path()).is_err());
}

#[test]
fn client_names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    ensure_control_pki(dir.path(), &InstallationOptions::default()).unwrap();
    let ca = ControlCa::load(dir.path()).unwrap();
    let options = InstallationOptions::default();
    for bad in ["", "a b", "x/y", &"n".repeat(65)] {
        assert!(ca.issue_client(bad, &options).is_err(), "{bad:?}");
    }
    let alice = ca.issue_client("alice", &options).unwrap();
    assert_eq!(
        certificate_common_name(&alice.cert).as_deref(),
        Some("Wasmbed control: alice")
    );
}

/// A revocation list that revokes nothing, to check the trait is usable.
#[derive(Debug)]
struct Nothing;

impl RevocationList for Nothing {
    fn is_revoked(&self, _: &wasmbed_pki::DevicePublicKey) -> bool {
        false
    }
}

#[tokio::test]
async fn a_revoked_device_key_is_refused_at_the_handshake() {
    #[derive(Debug)]
    struct Fixture;
    impl RevocationList for Fixture {
        fn is_revoked(&self, key: &wasmbed_pki::DevicePublicKey) -> bool {
            key.as_sec1() == &test_fixtures().device.public_key
        }
    }
    let fixtures = test_fixtures();
    let client = || {
        wasmbed_pki::client_config_device(
            fixtures.installation.gateway_ca(),
            fixtures.device.cert.clone(),
            fixtures.device.private_key(),
        )
        .unwrap()
    };
    let open =
        wasmbed_pki::server_config_revocable(&fixtures.installation, None, Arc::new(Nothing))
            .unwrap();
    connect(open, client(), 10).await.server.unwrap();
    let revoking =
        wasmbed_pki::server_config_revocable(&fixtures.installation, None, Arc::new(Fixture))
            .unwrap();
    let error = connect(revoking, client(), 10).await.server.unwrap_err();
    assert_eq!(
        tls_error(&error),
        Some(&rustls::Error::InvalidCertificate(
            rustls::CertificateError::Revoked
        ))
    );
}
