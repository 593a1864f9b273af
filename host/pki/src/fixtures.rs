//! TEST ONLY: a checked-in installation and certificates made from it, so
//! that tests need not generate keys. Their private keys are public: never
//! use them outside tests.
//!
//! The files live in `host/pki/fixtures/` and are regenerated with
//! `cargo run -p wasmbed-pki --features test-fixtures --example make-fixtures`.

use std::fs;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use p256::pkcs8::DecodePrivateKey;
use rcgen::{Issuer, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wasmbed_protocol::PUBLIC_KEY_LEN;

use crate::control::{Credential, control_file_names as control, ensure_control_pki};
use crate::installation::{
    Installation, InstallationError, InstallationOptions, check_certificate, pem_blocks,
    read_certificate, read_key, to_pem,
};
use crate::keys::p256_public_key;
use crate::params::{self, Usage};

/// The id of the fixture device.
pub const FIXTURE_DEVICE_ID: [u8; 16] = [
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
];

/// Names of the fixture files beyond the installation's own.
pub mod fixture_file_names {
    /// The fixture device's certificate, issued by the device CA.
    pub const DEVICE_CERT: &str = "device.pem";
    /// The fixture device's private key (PKCS#8).
    pub const DEVICE_KEY: &str = "device-key.pem";
    /// An attack: a gateway certificate signed by the fixture device's
    /// leaf key, followed by the device's certificate (the chain a
    /// malicious enrolled device would present as a server).
    pub const LEAF_SIGNED_GATEWAY: &str = "attack-leaf-signed-gateway.pem";
    /// The key of [`LEAF_SIGNED_GATEWAY`]'s gateway certificate.
    pub const LEAF_SIGNED_GATEWAY_KEY: &str = "attack-leaf-signed-gateway-key.pem";
    /// An attack: a gateway certificate signed by the device CA.
    pub const DEVICE_CA_SIGNED_GATEWAY: &str = "attack-device-ca-signed-gateway.pem";
    /// The key of [`DEVICE_CA_SIGNED_GATEWAY`]'s certificate.
    pub const DEVICE_CA_SIGNED_GATEWAY_KEY: &str = "attack-device-ca-signed-gateway-key.pem";
}

use fixture_file_names as extra;

/// An enrolled device of the fixture installation.
#[derive(Debug)]
pub struct FixtureDevice {
    /// [`FIXTURE_DEVICE_ID`].
    pub id: [u8; 16],
    /// Its raw P-256 private scalar, as the agent stores it.
    pub scalar: [u8; 32],
    /// Its uncompressed SEC1 public key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// Its certificate, issued by the fixture device CA.
    pub cert: CertificateDer<'static>,
}

impl FixtureDevice {
    /// The private key, as rustls takes it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        // The scalar was read from a valid key.
        crate::p256_scalar_to_pkcs8(&self.scalar).expect("fixture device key")
    }
}

/// A TLS server certificate chain and its key.
#[derive(Debug)]
pub struct FixtureServerCert {
    /// The server's certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl FixtureServerCert {
    /// The private key, as rustls takes it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// TEST ONLY: the checked-in fixture installation and what was made
/// from it.
#[derive(Debug)]
pub struct TestFixtures {
    pub installation: Installation,
    /// An enrolled device.
    pub device: FixtureDevice,
    /// Attack: a gateway certificate signed by [`device`](Self::device)'s
    /// leaf key, for `localhost`, `127.0.0.1` and `::1`. A verifier that
    /// trusted the device CA and ignored basicConstraints would accept it.
    pub leaf_signed_gateway: FixtureServerCert,
    /// Attack: a gateway certificate signed by the device CA.
    pub device_ca_signed_gateway: FixtureServerCert,
    /// The control CA's certificate.
    pub control_ca: CertificateDer<'static>,
    /// The API server's client certificate, from the control CA.
    pub api_client: Credential,
    /// The API server's TLS server certificate, from the control CA.
    pub api_server: Credential,
}

macro_rules! fixture_files {
    ($($name:expr),* $(,)?) => {
        [$(($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/", $name)).as_slice())),*]
    };
}

/// The fixture files, compiled in so that no test depends on the working
/// directory.
const FILES: [(&str, &[u8]); 20] = fixture_files![
    "gateway-ca.pem",
    "gateway.pem",
    "gateway-key.pem",
    "device-ca.pem",
    "device-ca-key.pem",
    "claim-ca.pem",
    "claim.pem",
    "claim-key.pem",
    "device.pem",
    "device-key.pem",
    "attack-leaf-signed-gateway.pem",
    "attack-leaf-signed-gateway-key.pem",
    "attack-device-ca-signed-gateway.pem",
    "attack-device-ca-signed-gateway-key.pem",
    "control-ca.pem",
    "control-ca-key.pem",
    "api-client.pem",
    "api-client-key.pem",
    "api-server.pem",
    "api-server-key.pem",
];

/// TEST ONLY: the checked-in fixture installation, parsed once.
///
/// # Panics
///
/// If the checked-in files are broken.
pub fn test_fixtures() -> &'static TestFixtures {
    static FIXTURES: OnceLock<TestFixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| load_fixtures().expect("the checked-in test fixtures are broken"))
}

fn load_fixtures() -> Result<TestFixtures, InstallationError> {
    let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"));
    let read = |path: &Path| -> Result<Vec<u8>, InstallationError> {
        FILES
            .iter()
            .find(|(name, _)| path.file_name().is_some_and(|n| n == *name))
            .map(|(_, bytes)| bytes.to_vec())
            .ok_or_else(|| InstallationError::Missing {
                path: path.to_path_buf(),
            })
    };
    let installation = Installation::from_pem_files(dir, read)?;
    let path = |name: &str| dir.join(name);
    let cert = |name: &str| read_certificate(&path(name), &read(&path(name))?);
    let key = |name: &str| read_key(&path(name), &read(&path(name))?);
    let chain = |name: &str| -> Result<Vec<CertificateDer<'static>>, InstallationError> {
        pem_blocks(&path(name), &read(&path(name))?, "CERTIFICATE")?
            .into_iter()
            .map(|der| {
                check_certificate(&path(name), &der)?;
                Ok(CertificateDer::from(der))
            })
            .collect()
    };

    let device_key = key(extra::DEVICE_KEY)?;
    let scalar = scalar_of(&device_key).ok_or_else(|| InstallationError::BadKey {
        path: path(extra::DEVICE_KEY),
        reason: "not a P-256 key".to_owned(),
    })?;
    let public_key = p256_public_key(&scalar).map_err(|e| InstallationError::BadKey {
        path: path(extra::DEVICE_KEY),
        reason: e.to_string(),
    })?;
    Ok(TestFixtures {
        installation,
        device: FixtureDevice {
            id: FIXTURE_DEVICE_ID,
            scalar,
            public_key,
            cert: cert(extra::DEVICE_CERT)?,
        },
        leaf_signed_gateway: FixtureServerCert {
            chain: chain(extra::LEAF_SIGNED_GATEWAY)?,
            key: key(extra::LEAF_SIGNED_GATEWAY_KEY)?,
        },
        device_ca_signed_gateway: FixtureServerCert {
            chain: chain(extra::DEVICE_CA_SIGNED_GATEWAY)?,
            key: key(extra::DEVICE_CA_SIGNED_GATEWAY_KEY)?,
        },
        control_ca: cert(control::CONTROL_CA)?,
        api_client: Credential {
            cert: cert(control::API_CLIENT)?,
            key: key(control::API_CLIENT_KEY)?,
        },
        api_server: Credential {
            cert: cert(control::API_SERVER)?,
            key: key(control::API_SERVER_KEY)?,
        },
    })
}

fn scalar_of(key: &PrivatePkcs8KeyDer<'_>) -> Option<[u8; 32]> {
    let secret = p256::SecretKey::from_pkcs8_der(key.secret_pkcs8_der()).ok()?;
    Some(secret.to_bytes().into())
}

/// 2025-01-01T00:00:00Z: the fixtures' start of validity.
const FIXTURE_NOT_BEFORE: Duration = Duration::from_secs(1_735_689_600);
/// 75 years: the fixtures' validity.
const FIXTURE_VALIDITY: Duration = Duration::from_secs(75 * 365 * 24 * 60 * 60);

/// TEST ONLY: generates a new set of fixture files into `dir`,
/// overwriting any there.
pub fn generate_test_fixtures(dir: &Path) -> Result<(), InstallationError> {
    let not_before = SystemTime::UNIX_EPOCH + FIXTURE_NOT_BEFORE;
    let validity = params::validity(Some(not_before), FIXTURE_VALIDITY);
    let installation = Installation::create(&InstallationOptions {
        not_before: Some(not_before),
        validity: FIXTURE_VALIDITY,
        ..InstallationOptions::default()
    })?;
    installation.save(dir, true)?;

    // An enrolled device.
    let device_key = params::generate_key()?;
    let device_cert = installation
        .device_issuer()
        .and_then(|issuer| {
            issuer.with_validity(FIXTURE_VALIDITY).issue_at(
                FIXTURE_DEVICE_ID,
                device_key.public_key_raw(),
                not_before,
            )
        })
        .map_err(|e| InstallationError::Inconsistent {
            path: dir.join(crate::file_names::DEVICE_CA),
            reason: e.to_string(),
        })?;

    let gateway_params = || -> Result<rcgen::CertificateParams, InstallationError> {
        let mut params = params::leaf_params("Wasmbed gateway", Usage::Server, validity)?;
        for san in InstallationOptions::default().gateway_dns_names {
            params
                .subject_alt_names
                .push(SanType::DnsName(san.try_into()?));
        }
        for ip in InstallationOptions::default().gateway_ips {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
        Ok(params)
    };

    // Attack: a gateway certificate signed by the device's leaf key.
    let leaf_signed_key = params::generate_key()?;
    let leaf_issuer = Issuer::from_ca_cert_der(&device_cert, &device_key)?;
    let leaf_signed = gateway_params()?.signed_by(&leaf_signed_key, &leaf_issuer)?;

    // Attack: a gateway certificate signed by the device CA.
    let device_ca_key = KeyPair::try_from(
        installation
            .device_ca_key()
            .ok_or(rcgen::Error::CouldNotParseKeyPair)?
            .secret_pkcs8_der(),
    )?;
    let device_ca_issuer = Issuer::from_ca_cert_der(installation.device_ca(), &device_ca_key)?;
    let ca_signed_key = params::generate_key()?;
    let ca_signed = gateway_params()?.signed_by(&ca_signed_key, &device_ca_issuer)?;

    let cert_pem = |der: &[u8]| to_pem("CERTIFICATE", der);
    let key_pem = |key: &KeyPair| to_pem("PRIVATE KEY", &key.serialize_der());
    let files = [
        (extra::DEVICE_CERT, cert_pem(&device_cert)),
        (extra::DEVICE_KEY, key_pem(&device_key)),
        (
            extra::LEAF_SIGNED_GATEWAY,
            cert_pem(leaf_signed.der()) + &cert_pem(&device_cert),
        ),
        (extra::LEAF_SIGNED_GATEWAY_KEY, key_pem(&leaf_signed_key)),
        (extra::DEVICE_CA_SIGNED_GATEWAY, cert_pem(ca_signed.der())),
        (extra::DEVICE_CA_SIGNED_GATEWAY_KEY, key_pem(&ca_signed_key)),
    ];
    for (name, contents) in files {
        let path = dir.join(name);
        fs::write(&path, contents).map_err(|source| InstallationError::Io { path, source })?;
    }
    generate_control_fixtures(dir)
}

/// TEST ONLY: (re)generates only the control PKI's fixture files in `dir`,
/// leaving the installation's alone.
pub fn generate_control_fixtures(dir: &Path) -> Result<(), InstallationError> {
    for name in [
        control::CONTROL_CA,
        control::CONTROL_CA_KEY,
        control::API_CLIENT,
        control::API_CLIENT_KEY,
        control::API_SERVER,
        control::API_SERVER_KEY,
    ] {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(InstallationError::Io { path, source: e });
            }
            _ => {}
        }
    }
    ensure_control_pki(
        dir,
        &InstallationOptions {
            not_before: Some(SystemTime::UNIX_EPOCH + FIXTURE_NOT_BEFORE),
            validity: FIXTURE_VALIDITY,
            ..InstallationOptions::default()
        },
    )?;
    Ok(())
}
