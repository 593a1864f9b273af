//! The CAs and certificates of one Wasmbed installation, and their files.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{Issuer, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::certificate::X509Certificate;

use crate::issue::{DeviceIssuer, IssueError};
use crate::params::{self, Usage};
use crate::peer::ClientRoots;

/// The fixed names of an installation's files, all PEM.
pub mod file_names {
    /// The gateway CA's certificate: the one root devices trust.
    pub const GATEWAY_CA: &str = "gateway-ca.pem";
    /// The gateway's TLS server certificate.
    pub const GATEWAY_CERT: &str = "gateway.pem";
    /// The gateway's private key (PKCS#8). Secret.
    pub const GATEWAY_KEY: &str = "gateway-key.pem";
    /// The device CA's certificate.
    pub const DEVICE_CA: &str = "device-ca.pem";
    /// The device CA's private key (PKCS#8), with which the gateway issues
    /// device certificates. Secret.
    pub const DEVICE_CA_KEY: &str = "device-ca-key.pem";
    /// The claim CA's certificate.
    pub const CLAIM_CA: &str = "claim-ca.pem";
    /// The claim certificate shared by devices that have not enrolled.
    pub const CLAIM_CERT: &str = "claim.pem";
    /// The claim certificate's private key (PKCS#8), provisioned on every
    /// device. Secret, though it only lets a device enroll.
    pub const CLAIM_KEY: &str = "claim-key.pem";

    /// Every file of an installation.
    pub const ALL: [&str; 8] = [
        GATEWAY_CA,
        GATEWAY_CERT,
        GATEWAY_KEY,
        DEVICE_CA,
        DEVICE_CA_KEY,
        CLAIM_CA,
        CLAIM_CERT,
        CLAIM_KEY,
    ];

    /// Whether the file holds a private key (written with mode 0600).
    pub fn is_secret(name: &str) -> bool {
        matches!(name, GATEWAY_KEY | DEVICE_CA_KEY | CLAIM_KEY)
    }
}

use file_names as names;

/// PEM label of a certificate.
const CERTIFICATE: &str = "CERTIFICATE";
/// PEM label of a PKCS#8 private key.
const PRIVATE_KEY: &str = "PRIVATE KEY";

/// Twenty years: the default validity of an installation's certificates.
///
/// The gateway CA's and claim CA's keys are discarded once their one
/// certificate is signed, so the gateway and claim certificates can not be
/// renewed without a new installation (and new trust anchors on devices):
/// they live as long as their CAs.
pub const DEFAULT_INSTALLATION_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 60 * 60);

/// What [`Installation::create`] puts in the certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallationOptions {
    /// DNS names of the gateway's server certificate.
    ///
    /// Devices running embedded-tls match the host name they connect to
    /// against the first three DNS names only, and ignore IP addresses:
    /// put the name devices use first.
    pub gateway_dns_names: Vec<String>,
    /// IP addresses of the gateway's server certificate.
    pub gateway_ips: Vec<IpAddr>,
    /// Start of validity of every certificate; `None`: an hour ago.
    pub not_before: Option<SystemTime>,
    /// Validity of every certificate, from `not_before`.
    pub validity: Duration,
}

impl Default for InstallationOptions {
    /// `localhost`, `127.0.0.1` and `::1`, valid for
    /// [`DEFAULT_INSTALLATION_VALIDITY`] from an hour ago.
    fn default() -> Self {
        InstallationOptions {
            gateway_dns_names: vec!["localhost".to_owned()],
            gateway_ips: vec![
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            not_before: None,
            validity: DEFAULT_INSTALLATION_VALIDITY,
        }
    }
}

/// Why an installation could not be created, saved or loaded.
#[derive(Debug, thiserror::Error)]
pub enum InstallationError {
    #[error("invalid gateway DNS name {0:?}")]
    InvalidDnsName(String),
    #[error("invalid client name {0:?}: 1 to 64 of A-Z a-z 0-9 . _ -")]
    InvalidClientName(String),
    #[error("the gateway certificate needs at least one DNS name or IP address")]
    NoGatewayNames,
    #[error("generating a key or certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the system's secure random number generator failed")]
    Random,
    #[error("{} already exists: refusing to overwrite an installation without `force`", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("{} is missing", path.display())]
    Missing { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: expected one PEM {expected} block: {reason}", path.display())]
    BadPem {
        path: PathBuf,
        expected: &'static str,
        reason: String,
    },
    #[error("{}: not a valid X.509 certificate: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{}: not a valid ECDSA P-256 PKCS#8 private key: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{}: {reason}", path.display())]
    Inconsistent { path: PathBuf, reason: String },
}

impl From<ring::error::Unspecified> for InstallationError {
    fn from(_: ring::error::Unspecified) -> Self {
        InstallationError::Random
    }
}

/// The CAs, certificates and keys of one installation.
///
/// Made once by [`Installation::create`] (the `wasmbed` CLI), written with
/// [`Installation::save`] and read by the gateway with
/// [`Installation::load`]. The gateway CA's and claim CA's private keys are
/// not part of it: they are discarded once their certificate is signed.
pub struct Installation {
    gateway_ca: CertificateDer<'static>,
    gateway_cert: CertificateDer<'static>,
    gateway_key: PrivatePkcs8KeyDer<'static>,
    device_ca: CertificateDer<'static>,
    /// Absent in a gateway's installation when the API server signs
    /// enrollments ([`Installation::load_without_device_ca_key`]).
    device_ca_key: Option<PrivatePkcs8KeyDer<'static>>,
    claim_ca: CertificateDer<'static>,
    claim_cert: CertificateDer<'static>,
    claim_key: PrivatePkcs8KeyDer<'static>,
}

impl fmt::Debug for Installation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Installation")
            .field("gateway_ca", &subject_of(&self.gateway_ca))
            .field("gateway_cert", &subject_of(&self.gateway_cert))
            .field("device_ca", &subject_of(&self.device_ca))
            .field("claim_ca", &subject_of(&self.claim_ca))
            .field("claim_cert", &subject_of(&self.claim_cert))
            .finish_non_exhaustive()
    }
}

impl Clone for Installation {
    fn clone(&self) -> Self {
        Installation {
            gateway_ca: self.gateway_ca.clone(),
            gateway_cert: self.gateway_cert.clone(),
            gateway_key: self.gateway_key.clone_key(),
            device_ca: self.device_ca.clone(),
            device_ca_key: self.device_ca_key.as_ref().map(|key| key.clone_key()),
            claim_ca: self.claim_ca.clone(),
            claim_cert: self.claim_cert.clone(),
            claim_key: self.claim_key.clone_key(),
        }
    }
}

fn subject_of(cert: &CertificateDer<'_>) -> String {
    match x509_parser::parse_x509_certificate(cert) {
        Ok((_, x509)) => x509.subject().to_string(),
        Err(_) => "<unparsable>".to_owned(),
    }
}

fn pkcs8(key: &KeyPair) -> PrivatePkcs8KeyDer<'static> {
    PrivatePkcs8KeyDer::from(key.serialize_der())
}

impl Installation {
    /// Generates a new installation: every key is a new ECDSA P-256 key.
    pub fn create(options: &InstallationOptions) -> Result<Installation, InstallationError> {
        let validity = params::validity(options.not_before, options.validity);

        let mut sans = Vec::new();
        for name in &options.gateway_dns_names {
            let ia5 = name
                .clone()
                .try_into()
                .map_err(|_| InstallationError::InvalidDnsName(name.clone()))?;
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(InstallationError::InvalidDnsName(name.clone()));
            }
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(options.gateway_ips.iter().copied().map(SanType::IpAddress));
        if sans.is_empty() {
            return Err(InstallationError::NoGatewayNames);
        }

        // Gateway CA: signs the gateway certificate, then its key is dropped.
        let gateway_ca_key = params::generate_key()?;
        let gateway_ca_params = params::ca_params("Wasmbed gateway CA", validity)?;
        let gateway_ca = gateway_ca_params.self_signed(&gateway_ca_key)?;
        let gateway_ca_issuer = Issuer::new(gateway_ca_params, gateway_ca_key);

        let gateway_key = params::generate_key()?;
        let mut gateway_params = params::leaf_params("Wasmbed gateway", Usage::Server, validity)?;
        gateway_params.subject_alt_names = sans;
        let gateway_cert = gateway_params.signed_by(&gateway_key, &gateway_ca_issuer)?;
        drop(gateway_ca_issuer);

        // Device CA: kept, the gateway issues device certificates with it.
        let device_ca_key = params::generate_key()?;
        let device_ca =
            params::ca_params("Wasmbed device CA", validity)?.self_signed(&device_ca_key)?;

        // Claim CA: signs the one shared claim certificate, then is dropped.
        let claim_ca_key = params::generate_key()?;
        let claim_ca_params = params::ca_params("Wasmbed claim CA", validity)?;
        let claim_ca = claim_ca_params.self_signed(&claim_ca_key)?;
        let claim_ca_issuer = Issuer::new(claim_ca_params, claim_ca_key);

        let claim_key = params::generate_key()?;
        let claim_cert = params::leaf_params("Wasmbed claim", Usage::Client, validity)?
            .signed_by(&claim_key, &claim_ca_issuer)?;
        drop(claim_ca_issuer);

        Ok(Installation {
            gateway_ca: gateway_ca.der().clone(),
            gateway_cert: gateway_cert.der().clone(),
            gateway_key: pkcs8(&gateway_key),
            device_ca: device_ca.der().clone(),
            device_ca_key: Some(pkcs8(&device_ca_key)),
            claim_ca: claim_ca.der().clone(),
            claim_cert: claim_cert.der().clone(),
            claim_key: pkcs8(&claim_key),
        })
    }

    /// The gateway CA: the only root devices trust.
    pub fn gateway_ca(&self) -> &CertificateDer<'static> {
        &self.gateway_ca
    }

    /// The gateway's TLS server certificate.
    pub fn gateway_cert(&self) -> &CertificateDer<'static> {
        &self.gateway_cert
    }

    /// The gateway's private key.
    pub fn gateway_key(&self) -> &PrivatePkcs8KeyDer<'static> {
        &self.gateway_key
    }

    /// The gateway's private key, as rustls takes it.
    pub fn gateway_private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.gateway_key.clone_key())
    }

    /// The device CA, which signs enrolled devices' certificates.
    pub fn device_ca(&self) -> &CertificateDer<'static> {
        &self.device_ca
    }

    /// The device CA's private key; `None` in an installation loaded
    /// without it.
    pub fn device_ca_key(&self) -> Option<&PrivatePkcs8KeyDer<'static>> {
        self.device_ca_key.as_ref()
    }

    /// The claim CA, which signed the shared claim certificate.
    pub fn claim_ca(&self) -> &CertificateDer<'static> {
        &self.claim_ca
    }

    /// The claim certificate shared by devices that have not enrolled.
    pub fn claim_cert(&self) -> &CertificateDer<'static> {
        &self.claim_cert
    }

    /// The claim certificate's private key.
    pub fn claim_key(&self) -> &PrivatePkcs8KeyDer<'static> {
        &self.claim_key
    }

    /// The claim certificate's private key, as rustls takes it.
    pub fn claim_private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.claim_key.clone_key())
    }

    /// An issuer of device certificates, from the device CA;
    /// [`IssueError::NoCaKey`] in an installation without its key.
    pub fn device_issuer(&self) -> Result<DeviceIssuer, IssueError> {
        let key = self.device_ca_key.as_ref().ok_or(IssueError::NoCaKey)?;
        DeviceIssuer::new(&self.device_ca, key)
    }

    /// The two roots the gateway accepts client certificates from.
    pub fn client_roots(&self) -> ClientRoots {
        ClientRoots::new(self.claim_ca.clone(), self.device_ca.clone())
    }

    /// Writes the installation's files into `dir` (created, mode 0700, if
    /// missing). Private keys are written with mode 0600.
    ///
    /// Refuses, naming the file, if any file of an installation already
    /// exists in `dir`, unless `force`. Each file is written to a temporary
    /// name and renamed, so a file is never left half written.
    pub fn save(&self, dir: &Path, force: bool) -> Result<(), InstallationError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| InstallationError::Io { path, source }
        };
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io_err(dir))?;

        if !force {
            for name in names::ALL {
                let path = dir.join(name);
                match fs::symlink_metadata(&path) {
                    Ok(_) => return Err(InstallationError::AlreadyExists { path }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => return Err(InstallationError::Io { path, source }),
                }
            }
        }

        for name in names::ALL {
            let Some(contents) = self.pem_of(name) else {
                continue;
            };
            write_file(dir, name, contents.as_bytes(), names::is_secret(name))?;
        }
        Ok(())
    }

    /// The PEM text of one of the installation's files; `None` for the
    /// device CA's key when the installation has none.
    fn pem_of(&self, name: &str) -> Option<String> {
        let (label, der): (&str, &[u8]) = match name {
            names::GATEWAY_CA => (CERTIFICATE, &self.gateway_ca),
            names::GATEWAY_CERT => (CERTIFICATE, &self.gateway_cert),
            names::GATEWAY_KEY => (PRIVATE_KEY, self.gateway_key.secret_pkcs8_der()),
            names::DEVICE_CA => (CERTIFICATE, &self.device_ca),
            names::DEVICE_CA_KEY => (PRIVATE_KEY, self.device_ca_key.as_ref()?.secret_pkcs8_der()),
            names::CLAIM_CA => (CERTIFICATE, &self.claim_ca),
            names::CLAIM_CERT => (CERTIFICATE, &self.claim_cert),
            _ => (PRIVATE_KEY, self.claim_key.secret_pkcs8_der()),
        };
        Some(to_pem(label, der))
    }

    /// Reads and checks the installation in `dir`.
    ///
    /// Besides parsing every file, checks that each key belongs to its
    /// certificate, that the gateway and claim certificates are signed by
    /// their CAs, and that the gateway CA is neither client root.
    pub fn load(dir: &Path) -> Result<Installation, InstallationError> {
        Installation::from_pem_files(dir, read_file)
    }

    /// Reads and checks the installation in `dir` but the device CA's
    /// private key, which need not be there: for a gateway whose
    /// enrollments the API server signs. Its
    /// [`device_issuer`](Self::device_issuer) fails.
    pub fn load_without_device_ca_key(dir: &Path) -> Result<Installation, InstallationError> {
        Installation::from_files(dir, read_file, false)
    }

    /// Parses and checks an installation whose file `name` is read by
    /// `read(dir.join(name))`.
    pub(crate) fn from_pem_files(
        dir: &Path,
        read: impl Fn(&Path) -> Result<Vec<u8>, InstallationError>,
    ) -> Result<Installation, InstallationError> {
        Installation::from_files(dir, read, true)
    }

    /// [`from_pem_files`](Self::from_pem_files), reading the device CA's
    /// key only if `device_ca_key`.
    fn from_files(
        dir: &Path,
        read: impl Fn(&Path) -> Result<Vec<u8>, InstallationError>,
        device_ca_key: bool,
    ) -> Result<Installation, InstallationError> {
        let cert = |name: &str| {
            let path = dir.join(name);
            let bytes = read(&path)?;
            read_certificate(&path, &bytes)
        };
        let key = |name: &str| {
            let path = dir.join(name);
            let bytes = read(&path)?;
            read_key(&path, &bytes)
        };
        let installation = Installation {
            gateway_ca: cert(names::GATEWAY_CA)?,
            gateway_cert: cert(names::GATEWAY_CERT)?,
            gateway_key: key(names::GATEWAY_KEY)?,
            device_ca: cert(names::DEVICE_CA)?,
            device_ca_key: if device_ca_key {
                Some(key(names::DEVICE_CA_KEY)?)
            } else {
                None
            },
            claim_ca: cert(names::CLAIM_CA)?,
            claim_cert: cert(names::CLAIM_CERT)?,
            claim_key: key(names::CLAIM_KEY)?,
        };
        installation.check(dir)?;
        Ok(installation)
    }

    /// Checks that the parts fit together.
    fn check(&self, dir: &Path) -> Result<(), InstallationError> {
        let inconsistent = |name: &str, reason: &str| InstallationError::Inconsistent {
            path: dir.join(name),
            reason: reason.to_owned(),
        };
        // Parsed before; parsing again cannot fail.
        fn parse<'a>(
            dir: &Path,
            name: &str,
            der: &'a [u8],
        ) -> Result<X509Certificate<'a>, InstallationError> {
            x509_parser::parse_x509_certificate(der)
                .map(|(_, x509)| x509)
                .map_err(|e| InstallationError::BadCertificate {
                    path: dir.join(name),
                    reason: e.to_string(),
                })
        }
        let parse = |name, der| parse(dir, name, der);
        let gateway_ca = parse(names::GATEWAY_CA, &self.gateway_ca)?;
        let gateway = parse(names::GATEWAY_CERT, &self.gateway_cert)?;
        let device_ca = parse(names::DEVICE_CA, &self.device_ca)?;
        let claim_ca = parse(names::CLAIM_CA, &self.claim_ca)?;
        let claim = parse(names::CLAIM_CERT, &self.claim_cert)?;

        for (name, ca) in [
            (names::GATEWAY_CA, &gateway_ca),
            (names::DEVICE_CA, &device_ca),
            (names::CLAIM_CA, &claim_ca),
        ] {
            if !is_ca(ca) {
                return Err(inconsistent(name, "not a CA certificate"));
            }
        }
        if !signed_by(&gateway, &gateway_ca) {
            return Err(inconsistent(
                names::GATEWAY_CERT,
                "not signed by the gateway CA (gateway-ca.pem)",
            ));
        }
        if !signed_by(&claim, &claim_ca) {
            return Err(inconsistent(
                names::CLAIM_CERT,
                "not signed by the claim CA (claim-ca.pem)",
            ));
        }
        let gateway_ca_key = gateway_ca.public_key().raw;
        if gateway_ca_key == device_ca.public_key().raw
            || gateway_ca_key == claim_ca.public_key().raw
        {
            return Err(inconsistent(
                names::GATEWAY_CA,
                "the gateway CA must not also be a client root (device CA or claim CA)",
            ));
        }
        // A certificate of one client root must never pass for the other.
        if device_ca.public_key().raw == claim_ca.public_key().raw
            || device_ca.subject() == claim_ca.subject()
        {
            return Err(inconsistent(
                names::CLAIM_CA,
                "the claim CA must differ from the device CA, in key and in name",
            ));
        }
        for (key_name, key, cert_name, cert) in [
            (
                names::GATEWAY_KEY,
                Some(&self.gateway_key),
                names::GATEWAY_CERT,
                &gateway,
            ),
            (
                names::DEVICE_CA_KEY,
                self.device_ca_key.as_ref(),
                names::DEVICE_CA,
                &device_ca,
            ),
            (
                names::CLAIM_KEY,
                Some(&self.claim_key),
                names::CLAIM_CERT,
                &claim,
            ),
        ] {
            if key.is_some_and(|key| !key_matches(key, cert)) {
                return Err(inconsistent(
                    key_name,
                    &format!("the key does not belong to the certificate in {cert_name}"),
                ));
            }
        }
        Ok(())
    }
}

/// A file's bytes; a missing one is [`InstallationError::Missing`].
fn read_file(path: &Path) -> Result<Vec<u8>, InstallationError> {
    match fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(InstallationError::Missing {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(InstallationError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
}

/// Whether `cert` names `issuer` as its issuer and carries its signature.
pub(crate) fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    cert.issuer() == issuer.subject() && cert.verify_signature(Some(issuer.public_key())).is_ok()
}

fn key_matches(key: &PrivatePkcs8KeyDer<'_>, cert: &X509Certificate<'_>) -> bool {
    match KeyPair::try_from(key.secret_pkcs8_der()) {
        Ok(pair) => pair.public_key_raw() == cert.public_key().subject_public_key.data.as_ref(),
        Err(_) => false,
    }
}

pub(crate) fn to_pem(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The DER contents of every block of `bytes`, which must all be labeled
/// `expected`.
pub(crate) fn pem_blocks(
    path: &Path,
    bytes: &[u8],
    expected: &'static str,
) -> Result<Vec<Vec<u8>>, InstallationError> {
    let bad = |reason: String| InstallationError::BadPem {
        path: path.to_path_buf(),
        expected,
        reason,
    };
    let blocks = pem::parse_many(bytes).map_err(|e| bad(e.to_string()))?;
    if blocks.is_empty() {
        return Err(bad("no PEM block found".to_owned()));
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.tag() == expected {
                Ok(block.into_contents())
            } else {
                Err(bad(format!("found a {} block", block.tag())))
            }
        })
        .collect()
}

fn single_block(
    path: &Path,
    bytes: &[u8],
    expected: &'static str,
) -> Result<Vec<u8>, InstallationError> {
    let mut blocks = pem_blocks(path, bytes, expected)?;
    match blocks.pop() {
        Some(block) if blocks.is_empty() => Ok(block),
        _ => Err(InstallationError::BadPem {
            path: path.to_path_buf(),
            expected,
            reason: "more than one PEM block".to_owned(),
        }),
    }
}

pub(crate) fn read_certificate(
    path: &Path,
    bytes: &[u8],
) -> Result<CertificateDer<'static>, InstallationError> {
    let der = single_block(path, bytes, CERTIFICATE)?;
    check_certificate(path, &der)?;
    Ok(CertificateDer::from(der))
}

pub(crate) fn check_certificate(path: &Path, der: &[u8]) -> Result<(), InstallationError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], _)) => Ok(()),
        Ok(_) => Err(InstallationError::BadCertificate {
            path: path.to_path_buf(),
            reason: "trailing bytes after the certificate".to_owned(),
        }),
        Err(e) => Err(InstallationError::BadCertificate {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

pub(crate) fn read_key(
    path: &Path,
    bytes: &[u8],
) -> Result<PrivatePkcs8KeyDer<'static>, InstallationError> {
    let der = single_block(path, bytes, PRIVATE_KEY)?;
    let bad = |reason: &str| InstallationError::BadKey {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let pair = KeyPair::try_from(der.as_slice()).map_err(|e| bad(&e.to_string()))?;
    if pair.algorithm() != &PKCS_ECDSA_P256_SHA256 {
        return Err(bad("not an ECDSA P-256 key"));
    }
    Ok(PrivatePkcs8KeyDer::from(der))
}

/// Writes `dir/name` through a temporary file, with mode 0600 if `secret`.
pub(crate) fn write_file(
    dir: &Path,
    name: &str,
    contents: &[u8],
    secret: bool,
) -> Result<(), InstallationError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallationError::Io { path, source }
    };
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
        _ => {}
    }
    let mut file = if secret {
        crate::private_file::create_new(&tmp)
    } else {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o644);
        options.open(&tmp)
    }
    .map_err(io_err(&tmp))?;
    file.write_all(contents).map_err(io_err(&tmp))?;
    file.sync_all().map_err(io_err(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(())
}
