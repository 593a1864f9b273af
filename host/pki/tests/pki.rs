//! Installations, device certificates, peer classification and keys.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use wasmbed_pki::{
    ClassifyError, ClientRoots, DEFAULT_DEVICE_VALIDITY, DeviceIssuer, DevicePublicKey,
    FIXTURE_DEVICE_ID, Installation, InstallationError, InstallationOptions, IssueError, KeyError,
    PeerIdentity, classify_peer, file_names, fixture_file_names, generate_test_fixtures,
    p256_public_key, p256_scalar_to_pkcs8, test_fixtures,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

fn parse(der: &[u8]) -> X509Certificate<'_> {
    x509_parser::parse_x509_certificate(der).unwrap().1
}

fn common_name(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

fn assert_ca(cert: &X509Certificate<'_>) {
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign());
    assert!(!ku.digital_signature());
    assert!(cert.extended_key_usage().unwrap().is_none());
    cert.verify_signature(None).unwrap();
}

/// An end-entity certificate with only `server` or only client auth.
fn assert_leaf(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>, server: bool) {
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature());
    assert!(!ku.key_cert_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert_eq!((eku.server_auth, eku.client_auth), (server, !server));
    assert!(!eku.any);
    assert_eq!(cert.issuer(), issuer.subject());
    cert.verify_signature(Some(issuer.public_key())).unwrap();
}

fn assert_p256(cert: &X509Certificate<'_>) {
    // ecdsa-with-SHA256 signatures, P-256 keys.
    assert_eq!(
        cert.signature_algorithm.algorithm.to_id_string(),
        "1.2.840.10045.4.3.2"
    );
    assert_eq!(cert.public_key().subject_public_key.data.len(), 65);
}

#[test]
fn created_installation_has_separate_cas_and_proper_usages() {
    let installation = Installation::create(&InstallationOptions::default()).unwrap();
    let gateway_ca = parse(installation.gateway_ca());
    let gateway = parse(installation.gateway_cert());
    let device_ca = parse(installation.device_ca());
    let claim_ca = parse(installation.claim_ca());
    let claim = parse(installation.claim_cert());

    for ca in [&gateway_ca, &device_ca, &claim_ca] {
        assert_ca(ca);
        assert_p256(ca);
    }
    assert_leaf(&gateway, &gateway_ca, true);
    assert_leaf(&claim, &claim_ca, false);
    assert_p256(&gateway);
    assert_p256(&claim);

    // Three distinct CAs, by key and by name.
    let keys = [&gateway_ca, &device_ca, &claim_ca].map(|c| c.public_key().raw.to_vec());
    assert!(keys[0] != keys[1] && keys[0] != keys[2] && keys[1] != keys[2]);
    let names = [&gateway_ca, &device_ca, &claim_ca].map(common_name);
    assert!(names[0] != names[1] && names[0] != names[2] && names[1] != names[2]);

    let sans = &gateway.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        sans.general_names,
        vec![
            GeneralName::DNSName("localhost"),
            GeneralName::IPAddress(&[127, 0, 0, 1]),
            GeneralName::IPAddress(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ]
    );

    // Valid from about an hour ago for the default validity.
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .cast_signed();
    let not_before = gateway.validity().not_before.timestamp();
    let not_after = gateway.validity().not_after.timestamp();
    assert!((now - 3700..=now - 3500).contains(&not_before));
    assert_eq!(
        not_after - not_before,
        wasmbed_pki::DEFAULT_INSTALLATION_VALIDITY
            .as_secs()
            .cast_signed()
    );

    // Random serials.
    assert_ne!(gateway.raw_serial(), claim.raw_serial());
}

#[test]
fn gateway_names_come_from_the_options() {
    let options = InstallationOptions {
        gateway_dns_names: vec!["gw.example.com".to_owned(), "10.0.2.2".to_owned()],
        gateway_ips: vec!["192.0.2.7".parse::<IpAddr>().unwrap()],
        ..InstallationOptions::default()
    };
    let installation = Installation::create(&options).unwrap();
    let gateway = parse(installation.gateway_cert());
    let sans = &gateway.subject_alternative_name().unwrap().unwrap().value;
    assert_eq!(
        sans.general_names,
        vec![
            GeneralName::DNSName("gw.example.com"),
            GeneralName::DNSName("10.0.2.2"),
            GeneralName::IPAddress(&[192, 0, 2, 7]),
        ]
    );
}

#[test]
fn bad_gateway_names_are_refused() {
    for name in ["", "a b", "gätewäy"] {
        let options = InstallationOptions {
            gateway_dns_names: vec![name.to_owned()],
            ..InstallationOptions::default()
        };
        assert!(matches!(
            Installation::create(&options),
            Err(InstallationError::InvalidDnsName(n)) if n == name
        ));
    }
    let options = InstallationOptions {
        gateway_dns_names: Vec::new(),
        gateway_ips: Vec::new(),
        ..InstallationOptions::default()
    };
    assert!(matches!(
        Installation::create(&options),
        Err(InstallationError::NoGatewayNames)
    ));
}

fn save_fixtures(dir: &Path) {
    test_fixtures().installation.save(dir, false).unwrap();
}

#[test]
fn a_gateway_installation_may_lack_the_device_ca_key() {
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    save_fixtures(&full);
    fs::remove_file(full.join(file_names::DEVICE_CA_KEY)).unwrap();
    // A signing installation needs it...
    assert!(matches!(
        Installation::load(&full),
        Err(InstallationError::Missing { path }) if path.ends_with(file_names::DEVICE_CA_KEY)
    ));
    // ...a gateway whose enrollments the API server signs does not.
    let gateway = Installation::load_without_device_ca_key(&full).unwrap();
    assert_eq!(
        gateway.device_ca(),
        test_fixtures().installation.device_ca()
    );
    assert_eq!(gateway.device_ca_key(), None);
    assert!(matches!(gateway.device_issuer(), Err(IssueError::NoCaKey)));
    // Saved, it still has no key file.
    let copy = dir.path().join("copy");
    gateway.save(&copy, false).unwrap();
    assert!(!copy.join(file_names::DEVICE_CA_KEY).exists());
    Installation::load_without_device_ca_key(&copy).unwrap();
}

#[test]
fn save_then_load_gives_the_same_installation() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("pki");
    save_fixtures(&target);
    let loaded = Installation::load(&target).unwrap();
    let original = &test_fixtures().installation;
    assert_eq!(loaded.gateway_ca(), original.gateway_ca());
    assert_eq!(loaded.gateway_cert(), original.gateway_cert());
    assert_eq!(loaded.gateway_key(), original.gateway_key());
    assert_eq!(loaded.device_ca(), original.device_ca());
    assert_eq!(loaded.device_ca_key(), original.device_ca_key());
    assert_eq!(loaded.claim_ca(), original.claim_ca());
    assert_eq!(loaded.claim_cert(), original.claim_cert());
    assert_eq!(loaded.claim_key(), original.claim_key());

    let mut entries: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    entries.sort();
    let mut expected = file_names::ALL.map(str::to_owned).to_vec();
    expected.sort();
    assert_eq!(entries, expected, "no temporary files are left");
}

#[cfg(unix)]
#[test]
fn private_keys_are_saved_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    save_fixtures(dir.path());
    for name in file_names::ALL {
        let mode = fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        if file_names::is_secret(name) {
            assert_eq!(mode, 0o600, "{name}");
        } else {
            assert_eq!(mode & 0o077 & !0o044, 0, "{name}: {mode:o}");
        }
    }
    // Still 0600 after a forced overwrite of files with looser modes.
    let key = dir.path().join(file_names::DEVICE_CA_KEY);
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
    test_fixtures().installation.save(dir.path(), true).unwrap();
    let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn save_refuses_to_overwrite_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(file_names::CLAIM_CERT), "old").unwrap();
    let new = Installation::create(&InstallationOptions::default()).unwrap();
    match new.save(dir.path(), false) {
        Err(InstallationError::AlreadyExists { path }) => {
            assert_eq!(path, dir.path().join(file_names::CLAIM_CERT));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fs::read_to_string(dir.path().join(file_names::CLAIM_CERT)).unwrap(),
        "old"
    );
    assert!(!dir.path().join(file_names::GATEWAY_CA).exists());

    new.save(dir.path(), true).unwrap();
    let loaded = Installation::load(dir.path()).unwrap();
    assert_eq!(loaded.claim_cert(), new.claim_cert());
}

fn load_err(dir: &Path) -> InstallationError {
    Installation::load(dir).unwrap_err()
}

#[test]
fn load_names_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    save_fixtures(dir.path());
    fs::remove_file(dir.path().join(file_names::DEVICE_CA_KEY)).unwrap();
    let error = load_err(dir.path());
    assert!(
        matches!(&error, InstallationError::Missing { path } if path.ends_with(file_names::DEVICE_CA_KEY)),
        "{error:?}"
    );
    assert!(error.to_string().contains("device-ca-key.pem is missing"));
}

#[test]
fn load_names_a_file_that_is_not_pem() {
    let dir = tempfile::tempdir().unwrap();
    save_fixtures(dir.path());
    fs::write(dir.path().join(file_names::GATEWAY_CERT), "garbage").unwrap();
    let error = load_err(dir.path());
    assert!(
        matches!(&error, InstallationError::BadPem { path, .. } if path.ends_with(file_names::GATEWAY_CERT)),
        "{error:?}"
    );
    assert!(error.to_string().contains("gateway.pem"), "{error}");
}

#[test]
fn load_names_a_file_with_the_wrong_kind_of_pem() {
    let dir = tempfile::tempdir().unwrap();
    save_fixtures(dir.path());
    // A key where a certificate belongs.
    fs::copy(
        dir.path().join(file_names::CLAIM_KEY),
        dir.path().join(file_names::CLAIM_CA),
    )
    .unwrap();
    let error = load_err(dir.path());
    assert!(
        matches!(&error, InstallationError::BadPem { path, expected: "CERTIFICATE", .. } if path.ends_with(file_names::CLAIM_CA)),
        "{error:?}"
    );
}

#[test]
fn load_names_a_certificate_that_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    save_fixtures(dir.path());
    fs::write(
        dir.path().join(file_names::DEVICE_CA),
        "-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let error = load_err(dir.path());
    assert!(
        matches!(&error, InstallationError::BadCertificate { path, .. } if path.ends_with(file_names::DEVICE_CA)),
        "{error:?}"
    );
}

#[test]
fn load_names_a_key_that_does_not_match_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    save_fixtures(dir.path());
    fs::copy(
        dir.path().join(file_names::CLAIM_KEY),
        dir.path().join(file_names::GATEWAY_KEY),
    )
    .unwrap();
    let error = load_err(dir.path());
    assert!(
        matches!(&error, InstallationError::Inconsistent { path, .. } if path.ends_with(file_names::GATEWAY_KEY)),
        "{error:?}"
    );
}

#[test]
fn load_refuses_a_gateway_certificate_of_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    save_fixtures(dir.path());
    fs::write(
        dir.path().join(file_names::GATEWAY_CERT),
        fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures")
                .join(fixture_file_names::DEVICE_CA_SIGNED_GATEWAY),
        )
        .unwrap(),
    )
    .unwrap();
    let error = load_err(dir.path());
    assert!(
        matches!(&error, InstallationError::Inconsistent { path, .. } if path.ends_with(file_names::GATEWAY_CERT)),
        "{error:?}"
    );
}

#[test]
fn load_refuses_a_gateway_ca_that_is_also_a_client_root() {
    let fixtures_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let dir = tempfile::tempdir().unwrap();
    save_fixtures(dir.path());
    // A consistent gateway whose CA is the device CA.
    for (from, to) in [
        (file_names::DEVICE_CA, file_names::GATEWAY_CA),
        (
            fixture_file_names::DEVICE_CA_SIGNED_GATEWAY,
            file_names::GATEWAY_CERT,
        ),
        (
            fixture_file_names::DEVICE_CA_SIGNED_GATEWAY_KEY,
            file_names::GATEWAY_KEY,
        ),
    ] {
        fs::copy(fixtures_dir.join(from), dir.path().join(to)).unwrap();
    }
    let error = load_err(dir.path());
    assert!(
        matches!(&error, InstallationError::Inconsistent { path, reason } if path.ends_with(file_names::GATEWAY_CA) && reason.contains("client root")),
        "{error:?}"
    );
}

#[test]
fn load_refuses_a_claim_ca_that_is_the_device_ca() {
    let fixtures_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let dir = tempfile::tempdir().unwrap();
    save_fixtures(dir.path());
    // A consistent claim certificate whose CA is the device CA.
    for (from, to) in [
        (file_names::DEVICE_CA, file_names::CLAIM_CA),
        (fixture_file_names::DEVICE_CERT, file_names::CLAIM_CERT),
        (fixture_file_names::DEVICE_KEY, file_names::CLAIM_KEY),
    ] {
        fs::copy(fixtures_dir.join(from), dir.path().join(to)).unwrap();
    }
    let error = load_err(dir.path());
    assert!(
        matches!(&error, InstallationError::Inconsistent { path, .. } if path.ends_with(file_names::CLAIM_CA)),
        "{error:?}"
    );
}

#[test]
fn checked_in_fixtures_load_from_their_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let loaded = Installation::load(&dir).unwrap();
    assert_eq!(loaded.device_ca(), test_fixtures().installation.device_ca());
    assert!(
        fs::read_to_string(dir.join("README.md"))
            .unwrap()
            .contains("TEST ONLY")
    );
}

#[test]
fn fixture_generation_writes_a_loadable_set() {
    let dir = tempfile::tempdir().unwrap();
    generate_test_fixtures(dir.path()).unwrap();
    Installation::load(dir.path()).unwrap();
    for name in [
        fixture_file_names::DEVICE_CERT,
        fixture_file_names::DEVICE_KEY,
        fixture_file_names::LEAF_SIGNED_GATEWAY,
        fixture_file_names::LEAF_SIGNED_GATEWAY_KEY,
        fixture_file_names::DEVICE_CA_SIGNED_GATEWAY,
        fixture_file_names::DEVICE_CA_SIGNED_GATEWAY_KEY,
    ] {
        assert!(dir.path().join(name).is_file(), "{name}");
    }
}

/// The attack fixtures are what they claim: valid signatures all the way
/// to the device CA, so only a verifier that checks basicConstraints or
/// trusts the gateway CA alone refuses them.
#[test]
fn attack_fixtures_chain_to_the_device_ca() {
    let fixtures = test_fixtures();
    let device_ca = parse(fixtures.installation.device_ca());
    let device = parse(&fixtures.device.cert);

    let chain = &fixtures.leaf_signed_gateway.chain;
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], fixtures.device.cert);
    let evil = parse(&chain[0]);
    assert_eq!(evil.issuer(), device.subject());
    evil.verify_signature(Some(device.public_key())).unwrap();
    device
        .verify_signature(Some(device_ca.public_key()))
        .unwrap();
    let eku = evil.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth);

    let evil = parse(&fixtures.device_ca_signed_gateway.chain[0]);
    evil.verify_signature(Some(device_ca.public_key())).unwrap();

    let gateway_ca = parse(fixtures.installation.gateway_ca());
    for cert in [&evil, &device] {
        assert!(
            cert.verify_signature(Some(gateway_ca.public_key()))
                .is_err()
        );
    }
}

// ---- device certificates ----

#[test]
fn issued_device_certificate_has_the_expected_fields() {
    let fixtures = test_fixtures();
    let issuer = fixtures.installation.device_issuer().unwrap();
    let public_key = fixtures.device.public_key;
    let id = [
        0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xa, 0xb,
    ];
    let der = issuer.issue(id, &public_key).unwrap();
    let cert = parse(&der);
    let device_ca = parse(fixtures.installation.device_ca());

    assert_eq!(common_name(&cert), "deadbeef-0001-0203-0405-060708090a0b");
    assert_eq!(
        common_name(&cert),
        wasmbed_protocol::DeviceId(id).to_string()
    );
    assert_leaf(&cert, &device_ca, false);
    assert_p256(&cert);
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        public_key.as_slice()
    );
    assert!(cert.subject_alternative_name().unwrap().is_none());
    let validity = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    assert_eq!(validity, DEFAULT_DEVICE_VALIDITY.as_secs().cast_signed());

    // Random, positive serials.
    let other = issuer.issue(id, &public_key).unwrap();
    let other = parse(&other);
    assert_ne!(cert.raw_serial(), other.raw_serial());
    assert!(cert.raw_serial().len() >= 8);
    assert_eq!(cert.raw_serial()[0] & 0x80, 0);
}

#[test]
fn invalid_device_public_keys_are_refused() {
    let issuer = test_fixtures().installation.device_issuer().unwrap();
    let good = test_fixtures().device.public_key;
    let mut off_curve = good;
    off_curve[64] ^= 1;
    let mut compressed = vec![0x02 | (good[64] & 1)];
    compressed.extend_from_slice(&good[1..33]);
    let mut wrong_tag = good;
    wrong_tag[0] = 0x06;
    let cases: [&[u8]; 7] = [
        &[],
        &good[..64],
        &[good.as_slice(), &[0]].concat(),
        &off_curve,
        &compressed,
        &wrong_tag,
        &[0u8; 65],
    ];
    for key in cases {
        assert!(
            matches!(
                issuer.issue([1; 16], key),
                Err(IssueError::InvalidPublicKey)
            ),
            "{key:02x?}"
        );
        assert!(DevicePublicKey::from_sec1(key).is_err());
    }
    assert_eq!(DevicePublicKey::from_sec1(&good).unwrap().as_sec1(), &good);
}

#[test]
fn device_validity_is_configurable_and_never_outlives_the_ca() {
    let fixtures = test_fixtures();
    let key = fixtures.device.public_key;
    let device_ca = parse(fixtures.installation.device_ca());

    let day = Duration::from_secs(24 * 60 * 60);
    let issuer = fixtures
        .installation
        .device_issuer()
        .unwrap()
        .with_validity(day);
    let cert = issuer.issue([2; 16], &key).unwrap();
    let cert = parse(&cert);
    assert_eq!(
        cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp(),
        86_400
    );

    let issuer = fixtures
        .installation
        .device_issuer()
        .unwrap()
        .with_validity(day * 365 * 500);
    let cert = issuer.issue([2; 16], &key).unwrap();
    assert_eq!(
        parse(&cert).validity().not_after,
        device_ca.validity().not_after
    );

    let after_ca = SystemTime::UNIX_EPOCH
        + Duration::from_secs(device_ca.validity().not_after.timestamp().cast_unsigned())
        + day;
    assert!(matches!(
        issuer.issue_at([2; 16], &key, after_ca),
        Err(IssueError::CaExpired)
    ));
}

#[test]
fn issuer_refuses_a_key_that_is_not_the_cas() {
    let installation = &test_fixtures().installation;
    assert!(matches!(
        DeviceIssuer::new(installation.device_ca(), installation.claim_key()),
        Err(IssueError::BadCa(_))
    ));
}

#[test]
fn device_issuer_can_be_shared_between_tasks() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<DeviceIssuer>();
    assert_send_sync::<Installation>();
}

// ---- classification ----

#[test]
fn peers_are_classified_by_the_root_that_signed_them() {
    let fixtures = test_fixtures();
    let roots = fixtures.installation.client_roots();
    assert_eq!(
        classify_peer(fixtures.installation.claim_cert(), &roots).unwrap(),
        PeerIdentity::Claim
    );
    let device = classify_peer(&fixtures.device.cert, &roots).unwrap();
    assert_eq!(
        device,
        PeerIdentity::Device(DevicePublicKey::from_sec1(&fixtures.device.public_key).unwrap())
    );
    assert_eq!(
        device.credential(),
        wasmbed_protocol::session::PeerCredential::Device
    );
    assert_eq!(
        PeerIdentity::Claim.credential(),
        wasmbed_protocol::session::PeerCredential::Claim
    );
    for other in [
        fixtures.installation.gateway_cert(),
        &fixtures.leaf_signed_gateway.chain[0],
    ] {
        assert_eq!(
            classify_peer(other, &roots),
            Err(ClassifyError::UnknownIssuer)
        );
    }
    assert!(matches!(
        classify_peer(&b"junk".to_vec().into(), &roots),
        Err(ClassifyError::BadCertificate(_))
    ));
}

/// A certificate from a CA that copies the device CA's name is not a
/// device certificate: the signature decides, not the names.
#[test]
fn a_ca_with_a_copied_name_does_not_make_devices() {
    let fixtures = test_fixtures();
    let impostor = Installation::create(&InstallationOptions::default()).unwrap();
    assert_eq!(
        parse(impostor.device_ca()).subject(),
        parse(fixtures.installation.device_ca()).subject()
    );
    let cert = impostor
        .device_issuer()
        .unwrap()
        .issue(FIXTURE_DEVICE_ID, &fixtures.device.public_key)
        .unwrap();
    let roots = fixtures.installation.client_roots();
    assert_eq!(
        classify_peer(&cert, &roots),
        Err(ClassifyError::UnknownIssuer)
    );
    // The impostor's claim certificate is not a claim either.
    assert_eq!(
        classify_peer(impostor.claim_cert(), &roots),
        Err(ClassifyError::UnknownIssuer)
    );
    // With the impostor's roots it is.
    let impostor_roots =
        ClientRoots::new(impostor.claim_ca().clone(), impostor.device_ca().clone());
    assert!(matches!(
        classify_peer(&cert, &impostor_roots),
        Ok(PeerIdentity::Device(_))
    ));
}

#[test]
fn device_public_key_displays_as_hex() {
    let key = DevicePublicKey::from_sec1(&test_fixtures().device.public_key).unwrap();
    let text = key.to_string();
    assert_eq!(text.len(), 130);
    assert!(text.starts_with("04"));
    assert_eq!(format!("{key:?}"), format!("DevicePublicKey({text})"));
}

// ---- keys ----

#[test]
fn a_raw_scalar_becomes_a_pkcs8_key_rustls_accepts() {
    let device = &test_fixtures().device;
    let key = p256_scalar_to_pkcs8(&device.scalar).unwrap();
    let signing_key = rustls::crypto::ring::sign::any_ecdsa_type(&key).unwrap();
    assert_eq!(signing_key.algorithm(), rustls::SignatureAlgorithm::ECDSA);
    let pair = rcgen::KeyPair::try_from(&key).unwrap();
    assert_eq!(pair.public_key_raw(), device.public_key.as_slice());
    assert_eq!(p256_public_key(&device.scalar).unwrap(), device.public_key);
}

#[test]
fn invalid_scalars_are_refused() {
    for scalar in [[0u8; 32], [0xff; 32]] {
        assert_eq!(
            p256_scalar_to_pkcs8(&scalar).unwrap_err(),
            KeyError::InvalidScalar
        );
        assert_eq!(
            p256_public_key(&scalar).unwrap_err(),
            KeyError::InvalidScalar
        );
    }
}

/// Any gateway of a fleet learns a device it never enrolled from the id
/// its certificate names.
#[test]
fn the_device_id_a_certificate_was_issued_for_is_read_back() {
    let fixtures = test_fixtures();
    let issuer = fixtures.installation.device_issuer().unwrap();
    let id = [0xa5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff];
    let cert = issuer.issue(id, &fixtures.device.public_key).unwrap();
    assert_eq!(
        wasmbed_pki::certified_device_id(&cert),
        Some(wasmbed_protocol::DeviceId(id))
    );
    // The claim certificate names no device; junk is no certificate.
    assert_eq!(
        wasmbed_pki::certified_device_id(fixtures.installation.claim_cert()),
        None
    );
    assert_eq!(
        wasmbed_pki::certified_device_id(&b"junk".to_vec().into()),
        None
    );
}

/// An API server signing for keyless gateways needs the device CA and its
/// key, nothing else of the installation.
#[test]
fn the_device_issuer_loads_from_the_device_ca_files_alone() {
    let fixtures = test_fixtures();
    let full = tempfile::tempdir().unwrap();
    fixtures.installation.save(full.path(), false).unwrap();
    let only = tempfile::tempdir().unwrap();
    for name in [file_names::DEVICE_CA, file_names::DEVICE_CA_KEY] {
        std::fs::copy(full.path().join(name), only.path().join(name)).unwrap();
    }
    let issuer = wasmbed_pki::load_device_issuer(only.path()).unwrap();
    let cert = issuer.issue([7; 16], &fixtures.device.public_key).unwrap();
    let roots = fixtures.installation.client_roots();
    assert!(matches!(
        classify_peer(&cert, &roots),
        Ok(PeerIdentity::Device(_))
    ));
    std::fs::remove_file(only.path().join(file_names::DEVICE_CA_KEY)).unwrap();
    assert!(wasmbed_pki::load_device_issuer(only.path()).is_err());
}
