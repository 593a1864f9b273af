//! rustls configurations of the gateway and of host-side devices.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::version::TLS13;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::UnixTime;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::installation::Installation;
use crate::peer::{ClientRoots, DevicePublicKey, sec1_public_key};

/// The ALPN protocol of Wasmbed's device connections.
pub const ALPN_PROTOCOL: &[u8] = b"wasmbed/1";

/// The default `max_fragment_size` of the gateway: records of at most 1019
/// plaintext bytes, 1041 bytes on the wire.
///
/// # Why
///
/// Devices run embedded-tls with a small receive buffer (2 KiB) that must
/// hold one whole TLS record, so the gateway limits its records with
/// rustls's `max_fragment_size`. That value counts the 5-byte record header
/// and the plaintext; in TLS 1.3 every record on the wire carries
/// [`TLS13_RECORD_OVERHEAD`] more bytes (the inner content type and the
/// 16-byte AEAD tag). With 1024, a record on the wire is at most 1041
/// bytes, well inside 2 KiB.
///
/// A second constraint decides how small the limit may be: embedded-tls
/// 0.19 parses each decrypted record as whole handshake messages and can
/// not reassemble a message split across records, while rustls 0.23 sends
/// the server's encrypted flight (EncryptedExtensions, CertificateRequest,
/// Certificate, CertificateVerify, Finished) as one payload cut into
/// records. The whole flight must therefore fit into one record: about
/// 720 bytes with the default gateway certificate. [`server_config`]
/// computes an upper bound of the flight from the gateway's certificate
/// and refuses a limit the flight does not fit in. To keep the flight
/// small the gateway sends no CA names in its CertificateRequest (the
/// clients here present their one certificate anyway) and no session
/// tickets (devices do not resume sessions).
pub const DEFAULT_MAX_FRAGMENT_SIZE: usize = 1024;

// A record must fit a device's 2 KiB receive buffer, with room to spare.
const _: () = assert!(DEFAULT_MAX_FRAGMENT_SIZE + TLS13_RECORD_OVERHEAD <= 2048);

/// Bytes a TLS 1.3 record on the wire has beyond rustls's
/// `max_fragment_size`: the inner content type (1) and the AEAD tag (16).
pub const TLS13_RECORD_OVERHEAD: usize = 17;

/// Bytes of a record header, counted in rustls's `max_fragment_size`.
const RECORD_HEADER: usize = 5;

/// rustls's bounds of `max_fragment_size`.
const MAX_FRAGMENT_SIZE_RANGE: std::ops::RangeInclusive<usize> = 32..=16384 + RECORD_HEADER;

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("max_fragment_size {0} is outside 32..=16389")]
    BadMaxFragmentSize(usize),
    /// The server's encrypted handshake flight would be split across
    /// records, which embedded-tls devices can not reassemble.
    #[error(
        "the gateway's handshake flight (up to {flight} bytes) does not fit in one record of \
         max_fragment_size {max_fragment_size}: use a smaller gateway certificate (fewer names) \
         or a larger max_fragment_size"
    )]
    FlightTooLarge {
        flight: usize,
        max_fragment_size: usize,
    },
    #[error("bad root certificate: {0}")]
    BadRoot(rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
}

/// The crypto provider of every configuration here (*ring*).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The gateway's configuration: TLS 1.3 only; a client certificate is
/// required and must chain to the claim CA or to the device CA (tell them
/// apart with [`classify_peer`](crate::classify_peer)); ALPN
/// [`ALPN_PROTOCOL`] if the client offers ALPN; records limited to
/// `max_fragment_size` (`None`: [`DEFAULT_MAX_FRAGMENT_SIZE`]).
pub fn server_config(
    installation: &Installation,
    max_fragment_size: Option<usize>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    server_config_with(
        vec![installation.gateway_cert().clone()],
        PrivateKeyDer::Pkcs8(installation.gateway_key().clone_key()),
        &installation.client_roots(),
        max_fragment_size,
    )
}

/// The set of revoked device keys a gateway refuses at the handshake.
pub trait RevocationList: Send + Sync + std::fmt::Debug {
    /// Whether the device key `key` was revoked.
    fn is_revoked(&self, key: &DevicePublicKey) -> bool;
}

/// [`server_config`] that also refuses, during the handshake, a client
/// certificate whose public key `revoked` lists: the client gets the TLS
/// alert `certificate_revoked` and no session starts.
pub fn server_config_revocable(
    installation: &Installation,
    max_fragment_size: Option<usize>,
    revoked: Arc<dyn RevocationList>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    build_server_config(
        vec![installation.gateway_cert().clone()],
        PrivateKeyDer::Pkcs8(installation.gateway_key().clone_key()),
        &installation.client_roots(),
        max_fragment_size,
        Some(revoked),
    )
}

/// [`server_config`] from its parts: the gateway's certificate chain (its
/// own certificate first; the gateway CA need not be sent) and key, and
/// the client roots.
pub fn server_config_with(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: &ClientRoots,
    max_fragment_size: Option<usize>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    build_server_config(cert_chain, key, roots, max_fragment_size, None)
}

fn build_server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: &ClientRoots,
    max_fragment_size: Option<usize>,
    revoked: Option<Arc<dyn RevocationList>>,
) -> Result<Arc<ServerConfig>, TlsConfigError> {
    let max_fragment_size = max_fragment_size.unwrap_or(DEFAULT_MAX_FRAGMENT_SIZE);
    if !MAX_FRAGMENT_SIZE_RANGE.contains(&max_fragment_size) {
        return Err(TlsConfigError::BadMaxFragmentSize(max_fragment_size));
    }
    let provider = crypto_provider();

    let mut store = RootCertStore::empty();
    for root in [roots.claim_ca(), roots.device_ca()] {
        store.add(root.clone()).map_err(TlsConfigError::BadRoot)?;
    }
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .clear_root_hint_subjects()
            .build()?;
    if let Some(revoked) = revoked {
        verifier = Arc::new(RevocationCheck {
            inner: verifier,
            revoked,
        });
    }

    let flight = server_flight_bound(&cert_chain, verifier.as_ref());
    if flight > max_fragment_size - RECORD_HEADER {
        return Err(TlsConfigError::FlightTooLarge {
            flight,
            max_fragment_size,
        });
    }

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(cert_chain, key)?;
    config.max_fragment_size = Some(max_fragment_size);
    config.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
    config.send_tls13_tickets = 0;
    // Certificate compression would change the flight; embedded-tls does
    // not offer it, and no other peer needs it. Set explicitly in case
    // another crate turns on rustls's compression features.
    config.cert_compressors = Vec::new();
    config.cert_decompressors = Vec::new();
    Ok(Arc::new(config))
}

/// A client certificate verifier that refuses revoked device keys once the
/// inner verifier has accepted the chain.
#[derive(Debug)]
struct RevocationCheck {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<dyn RevocationList>,
}

impl ClientCertVerifier for RevocationCheck {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let key = x509_parser::parse_x509_certificate(end_entity)
            .ok()
            .and_then(|(_, cert)| sec1_public_key(&cert));
        if key.is_some_and(|key| self.revoked.is_revoked(&key)) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// An upper bound of the plaintext bytes of the server's encrypted TLS 1.3
/// flight: EncryptedExtensions, CertificateRequest, Certificate,
/// CertificateVerify and Finished, each with its 4-byte handshake header.
pub(crate) fn server_flight_bound(
    cert_chain: &[CertificateDer<'_>],
    verifier: &dyn ClientCertVerifier,
) -> usize {
    const HANDSHAKE_HEADER: usize = 4;
    const EXTENSION_HEADER: usize = 4;
    // Extensions length; server_name ack; ALPN (list length, name length,
    // name); RFC 9149 ticket request hint.
    let encrypted_extensions = HANDSHAKE_HEADER
        + 2
        + EXTENSION_HEADER
        + (EXTENSION_HEADER + 2 + 1 + ALPN_PROTOCOL.len())
        + (EXTENSION_HEADER + 1);
    let hints = verifier.root_hint_subjects();
    let authorities = if hints.is_empty() {
        0
    } else {
        EXTENSION_HEADER + 2 + hints.iter().map(|dn| 2 + dn.as_ref().len()).sum::<usize>()
    };
    let certificate_request = HANDSHAKE_HEADER
        + 1
        + 2
        + (EXTENSION_HEADER + 2 + 2 * verifier.supported_verify_schemes().len())
        + authorities;
    // Context length, list length, then per certificate its 3-byte length
    // and 2-byte (empty) extensions.
    let certificate = HANDSHAKE_HEADER
        + 1
        + 3
        + cert_chain
            .iter()
            .map(|cert| 3 + cert.as_ref().len() + 2)
            .sum::<usize>();
    // Scheme, length, and a DER ECDSA signature of up to 104 bytes (P-384;
    // 72 for the gateway's P-256 key).
    let certificate_verify = HANDSHAKE_HEADER + 2 + 2 + 104;
    // Up to SHA-384.
    let finished = HANDSHAKE_HEADER + 48;
    encrypted_extensions + certificate_request + certificate + certificate_verify + finished
}

/// The configuration of a host-side device connecting with the shared
/// claim certificate (to enroll). Trusts the gateway CA only.
pub fn client_config_claim(
    installation: &Installation,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    client_config_device(
        installation.gateway_ca(),
        installation.claim_cert().clone(),
        installation.claim_private_key(),
    )
}

/// The configuration of a host-side device (the fleet simulator)
/// presenting `cert` with `key`: TLS 1.3 only, ALPN [`ALPN_PROTOCOL`], and
/// the gateway is authenticated against `gateway_ca` only: never against a
/// client root, so no device or device CA can impersonate the gateway.
///
/// For a device's raw P-256 scalar, see
/// [`p256_scalar_to_pkcs8`](crate::p256_scalar_to_pkcs8).
pub fn client_config_device(
    gateway_ca: &CertificateDer<'_>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ClientConfig>, TlsConfigError> {
    let mut store = RootCertStore::empty();
    store
        .add(gateway_ca.clone().into_owned())
        .map_err(TlsConfigError::BadRoot)?;
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&TLS13])?
        .with_root_certificates(store)
        .with_client_auth_cert(vec![cert], key)?;
    config.alpn_protocols = vec![ALPN_PROTOCOL.to_vec()];
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}
