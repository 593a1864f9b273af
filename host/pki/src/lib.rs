//! Wasmbed's public-key infrastructure, for the host side (gateway, CLI,
//! fleet simulator).
//!
//! # Trust model
//!
//! An installation has three certificate authorities, all ECDSA P-256, each
//! with one job (see [`Installation`]):
//!
//! | CA | signs | trusted by |
//! |---|---|---|
//! | gateway CA | the gateway's TLS server certificate, nothing else | devices, to authenticate the gateway |
//! | claim CA | the one claim certificate shared by devices that have not enrolled yet | the gateway, for connections that may only enroll |
//! | device CA | one certificate per enrolled device, issued by the gateway ([`DeviceIssuer`]) | the gateway, for device sessions |
//!
//! The gateway CA is kept apart from both client roots on purpose: the
//! device's TLS stack (embedded-tls) does not check basicConstraints or key
//! usage, so if devices trusted a CA that also signs device certificates,
//! any enrolled device could use its own leaf key to sign a "gateway"
//! certificate that its peers would accept. The private keys of the gateway
//! CA and of the claim CA are discarded as soon as their one certificate is
//! signed, so neither can sign anything else.
//!
//! A device's identity is the public key of its certificate
//! ([`DevicePublicKey`], obtained from [`classify_peer`]), never a field of a
//! message or of the certificate's subject.
//!
//! # TLS
//!
//! [`server_config`] builds the gateway's rustls configuration (TLS 1.3
//! only, client certificate required, chains to the claim CA or the device
//! CA accepted, records small enough for a device's 2 KiB receive buffer).
//! [`client_config_claim`] and [`client_config_device`] build the
//! configurations of host-side devices (the fleet simulator), which trust
//! the gateway CA only.
//!
//! All cryptography (rcgen, rustls, x509-parser) uses the *ring* provider.
//!
//! # Secret files
//!
//! [`private_file`] creates files only their owner may read (0600): the
//! installation's private keys here, and the other host crates' files that
//! hold keys or tokens.

mod control;
mod installation;
mod issue;
mod keys;
mod params;
mod peer;
pub mod private_file;
mod tls;

#[cfg(feature = "test-fixtures")]
mod fixtures;

pub use control::{
    ControlCa, Credential, anonymous_client_config, certificate_common_name, control_client_config,
    control_file_names, ensure_control_pki, gateway_http_server_config, load_certificate,
    load_device_issuer, plain_server_config,
};
pub use installation::{
    DEFAULT_INSTALLATION_VALIDITY, Installation, InstallationError, InstallationOptions, file_names,
};
pub use issue::{DEFAULT_DEVICE_VALIDITY, DeviceIssuer, IssueError};
pub use keys::{KeyError, p256_public_key, p256_scalar_to_pkcs8, pkcs8_to_p256_scalar};
pub use peer::{
    ClassifyError, ClientRoots, DevicePublicKey, PeerIdentity, certified_device_id, classify_peer,
};
pub use tls::{
    ALPN_PROTOCOL, DEFAULT_MAX_FRAGMENT_SIZE, RevocationList, TLS13_RECORD_OVERHEAD,
    TlsConfigError, client_config_claim, client_config_device, crypto_provider, server_config,
    server_config_revocable, server_config_with,
};

#[cfg(feature = "test-fixtures")]
pub use fixtures::{
    FIXTURE_DEVICE_ID, FixtureDevice, FixtureServerCert, TestFixtures, fixture_file_names,
    generate_control_fixtures, generate_test_fixtures, test_fixtures,
};

pub use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
