//! The control plane's PKI: who may call a gateway's HTTP interface, and
//! the API server's own TLS certificate.
//!
//! A gateway's HTTP interface deploys modules to devices, opens pairing and
//! revokes devices, so it takes **mutual TLS**: it presents its gateway
//! certificate (the API server checks it against the gateway CA) and
//! accepts only clients with a certificate of the installation's **control
//! CA**: the API server (`api-client.pem`) and operators
//! (`wasmbed certs issue-client`). The control CA never signs anything a
//! device or a gateway trusts for the device protocol, so a control
//! certificate cannot pass for a device or a gateway there, and a device
//! certificate cannot call a gateway.
//!
//! The control CA also signs the API server's TLS server certificate
//! (`api-server.pem`, for `wasmbed api --tls-cert`), which clients check
//! against `control-ca.pem`.
//!
//! Its private key is kept (`control-ca-key.pem`, mode 0600) to issue more
//! client certificates; a gateway needs only `control-ca.pem`.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rcgen::{Issuer, KeyPair, SanType};
use rustls::server::WebPkiClientVerifier;
use rustls::version::TLS13;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::installation::{
    Installation, InstallationError, InstallationOptions, read_certificate, read_key, to_pem,
    write_file,
};
use crate::params::{self, Usage};
use crate::tls::{TlsConfigError, crypto_provider};

/// The fixed names of the control PKI's files, beside an installation's.
pub mod control_file_names {
    /// The control CA's certificate: what a gateway's HTTP interface
    /// trusts for clients, and clients trust for the API server.
    pub const CONTROL_CA: &str = "control-ca.pem";
    /// The control CA's private key. Secret; needed only to issue.
    pub const CONTROL_CA_KEY: &str = "control-ca-key.pem";
    /// The API server's client certificate, for calling gateways.
    pub const API_CLIENT: &str = "api-client.pem";
    /// Its key. Secret.
    pub const API_CLIENT_KEY: &str = "api-client-key.pem";
    /// The API server's TLS server certificate.
    pub const API_SERVER: &str = "api-server.pem";
    /// Its key. Secret.
    pub const API_SERVER_KEY: &str = "api-server-key.pem";
}

use control_file_names as names;

/// The control CA, with its key.
pub struct ControlCa {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for ControlCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlCa").finish_non_exhaustive()
    }
}

/// A certificate (leaf only) and its private key.
pub struct Credential {
    pub cert: CertificateDer<'static>,
    pub key: PrivatePkcs8KeyDer<'static>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("subject", &certificate_common_name(&self.cert))
            .finish_non_exhaustive()
    }
}

impl Clone for Credential {
    fn clone(&self) -> Self {
        Credential {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

fn validity_of(options: &InstallationOptions) -> (time::OffsetDateTime, time::OffsetDateTime) {
    params::validity(options.not_before, options.validity)
}

fn pkcs8(key: &KeyPair) -> PrivatePkcs8KeyDer<'static> {
    PrivatePkcs8KeyDer::from(key.serialize_der())
}

fn read(path: &Path) -> Result<Vec<u8>, InstallationError> {
    fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => InstallationError::Missing {
            path: path.to_path_buf(),
        },
        _ => InstallationError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Reads one PEM certificate.
pub fn load_certificate(path: &Path) -> Result<CertificateDer<'static>, InstallationError> {
    read_certificate(path, &read(path)?)
}

/// The device CA of the installation in `dir` (`device-ca.pem` and
/// `device-ca-key.pem`, nothing else), to sign enrollments: what an API
/// server signing for keyless gateways needs.
pub fn load_device_issuer(dir: &Path) -> Result<crate::DeviceIssuer, InstallationError> {
    use crate::installation::file_names::{DEVICE_CA, DEVICE_CA_KEY};
    let cert = load_certificate(&dir.join(DEVICE_CA))?;
    let key_path = dir.join(DEVICE_CA_KEY);
    let key = crate::installation::read_key(&key_path, &read(&key_path)?)?;
    crate::DeviceIssuer::new(&cert, &key).map_err(|e| InstallationError::BadKey {
        path: key_path,
        reason: e.to_string(),
    })
}

/// A client name as it goes into a certificate: 1 to 64 of
/// `[A-Za-z0-9._-]`.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ControlCa {
    /// A new control CA, valid as `options` say.
    pub fn create(options: &InstallationOptions) -> Result<ControlCa, InstallationError> {
        let key = params::generate_key()?;
        let cert =
            params::ca_params("Wasmbed control CA", validity_of(options))?.self_signed(&key)?;
        Ok(ControlCa {
            cert: cert.der().clone(),
            key: pkcs8(&key),
        })
    }

    /// Reads `control-ca.pem` and its key from `dir`, and checks that they
    /// belong together.
    pub fn load(dir: &Path) -> Result<ControlCa, InstallationError> {
        let cert_path = dir.join(names::CONTROL_CA);
        let key_path = dir.join(names::CONTROL_CA_KEY);
        let ca = ControlCa {
            cert: read_certificate(&cert_path, &read(&cert_path)?)?,
            key: read_key(&key_path, &read(&key_path)?)?,
        };
        // An issuer built from both fails if they do not match.
        ca.issuer(&key_path)?;
        Ok(ca)
    }

    /// The CA certificate.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// An rcgen issuer from the certificate and key, which must match.
    fn issuer(&self, key_path: &Path) -> Result<Issuer<'static, KeyPair>, InstallationError> {
        let key = KeyPair::try_from(self.key.secret_pkcs8_der())?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&self.cert).map_err(|e| {
            InstallationError::BadCertificate {
                path: key_path.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        if key.public_key_raw() != parsed.public_key().subject_public_key.data.as_ref() {
            return Err(InstallationError::Inconsistent {
                path: key_path.to_path_buf(),
                reason: format!("the key does not belong to {}", names::CONTROL_CA),
            });
        }
        Ok(Issuer::from_ca_cert_der(&self.cert, key)?)
    }

    /// A client certificate for `name` (its common name is
    /// `Wasmbed control: NAME`), valid as `options` say.
    pub fn issue_client(
        &self,
        name: &str,
        options: &InstallationOptions,
    ) -> Result<Credential, InstallationError> {
        if !valid_name(name) {
            return Err(InstallationError::InvalidClientName(name.to_owned()));
        }
        let issuer = self.issuer(Path::new(names::CONTROL_CA_KEY))?;
        let key = params::generate_key()?;
        let cert = params::leaf_params(
            &format!("Wasmbed control: {name}"),
            Usage::Client,
            validity_of(options),
        )?
        .signed_by(&key, &issuer)?;
        Ok(Credential {
            cert: cert.der().clone(),
            key: pkcs8(&key),
        })
    }

    /// The API server's TLS server certificate, for the names of
    /// `options` (the installation's host names, `localhost`, `127.0.0.1`
    /// and `::1` by default).
    pub fn issue_api_server(
        &self,
        options: &InstallationOptions,
    ) -> Result<Credential, InstallationError> {
        let issuer = self.issuer(Path::new(names::CONTROL_CA_KEY))?;
        let key = params::generate_key()?;
        let mut leaf =
            params::leaf_params("Wasmbed API server", Usage::Server, validity_of(options))?;
        for name in &options.gateway_dns_names {
            let ia5 = name
                .clone()
                .try_into()
                .map_err(|_| InstallationError::InvalidDnsName(name.clone()))?;
            leaf.subject_alt_names.push(SanType::DnsName(ia5));
        }
        leaf.subject_alt_names
            .extend(options.gateway_ips.iter().copied().map(SanType::IpAddress));
        let cert = leaf.signed_by(&key, &issuer)?;
        Ok(Credential {
            cert: cert.der().clone(),
            key: pkcs8(&key),
        })
    }
}

impl Credential {
    /// Reads a certificate and its key.
    pub fn load(cert: &Path, key: &Path) -> Result<Credential, InstallationError> {
        Ok(Credential {
            cert: read_certificate(cert, &read(cert)?)?,
            key: read_key(key, &read(key)?)?,
        })
    }

    /// Writes `dir/cert_name` (0644) and `dir/key_name` (0600), each
    /// through a temporary file.
    pub fn save(
        &self,
        dir: &Path,
        cert_name: &str,
        key_name: &str,
    ) -> Result<(), InstallationError> {
        write_file(
            dir,
            cert_name,
            to_pem("CERTIFICATE", &self.cert).as_bytes(),
            false,
        )?;
        write_file(
            dir,
            key_name,
            to_pem("PRIVATE KEY", self.key.secret_pkcs8_der()).as_bytes(),
            true,
        )
    }

    /// The private key, as rustls takes it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }
}

/// Adds to the installation in `dir` whatever part of the control PKI it
/// lacks (an installation made before it existed): the control CA, the API
/// server's client certificate and its server certificate (for the names of
/// `options`). Returns the names of the files written. Existing files are
/// never replaced.
pub fn ensure_control_pki(
    dir: &Path,
    options: &InstallationOptions,
) -> Result<Vec<&'static str>, InstallationError> {
    let mut written = Vec::new();
    let ca = if dir.join(names::CONTROL_CA).exists() || dir.join(names::CONTROL_CA_KEY).exists() {
        ControlCa::load(dir)?
    } else {
        let ca = ControlCa::create(options)?;
        write_file(
            dir,
            names::CONTROL_CA_KEY,
            to_pem("PRIVATE KEY", ca.key.secret_pkcs8_der()).as_bytes(),
            true,
        )?;
        write_file(
            dir,
            names::CONTROL_CA,
            to_pem("CERTIFICATE", &ca.cert).as_bytes(),
            false,
        )?;
        written.extend([names::CONTROL_CA, names::CONTROL_CA_KEY]);
        ca
    };
    if !dir.join(names::API_CLIENT).exists() {
        ca.issue_client("api-server", options)?.save(
            dir,
            names::API_CLIENT,
            names::API_CLIENT_KEY,
        )?;
        written.extend([names::API_CLIENT, names::API_CLIENT_KEY]);
    }
    if !dir.join(names::API_SERVER).exists() {
        ca.issue_api_server(options)?
            .save(dir, names::API_SERVER, names::API_SERVER_KEY)?;
        written.extend([names::API_SERVER, names::API_SERVER_KEY]);
    }
    Ok(written)
}

/// The common name of a certificate's subject, for logs.
pub fn certificate_common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

/// A root store holding `ca` alone.
fn trusting(ca: &CertificateDer<'_>) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.clone().into_owned())
        .map_err(TlsConfigError::BadRoot)?;
    Ok(roots)
}

/// The TLS configuration of a gateway's HTTP interface: its gateway
/// certificate, TLS 1.3 only, and client certificates of the control CA
/// verified when presented. A client without one still completes the
/// handshake (so that health probes work); the HTTP layer refuses it every
/// route but `/healthz`.
pub fn gateway_http_server_config(
    installation: &Installation,
    control_ca: &CertificateDer<'static>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let provider = crypto_provider();
    let roots = trusting(control_ca)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![installation.gateway_cert().clone()],
            installation.gateway_private_key(),
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption: every connection shows its certificate again, so
    // that a later refusal of a certificate cannot be bypassed by a ticket.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// A TLS server configuration from a certificate and key (the API
/// server's `--tls-cert`/`--tls-key`): TLS 1.2 and 1.3 with rustls's safe
/// defaults, no client certificates.
pub fn plain_server_config(credential: &Credential) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![credential.cert.clone()], credential.private_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS configuration of a control client (the API server's controller,
/// an operator's tool): trusts `server_ca` only and presents `client`.
pub fn control_client_config(
    server_ca: &CertificateDer<'_>,
    client: &Credential,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let roots = trusting(server_ca)?;
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![client.cert.clone()], client.private_key())?;
    Ok(Arc::new(config))
}

/// A client configuration that trusts `server_ca` only and presents no
/// certificate (the CLI calling an API server with a private CA).
pub fn anonymous_client_config(
    server_ca: &CertificateDer<'_>,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let roots = trusting(server_ca)?;
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
