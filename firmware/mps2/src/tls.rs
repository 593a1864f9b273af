//! The device's side of TLS 1.3: embedded-tls with the device's P-256 key
//! and a verifier that trusts only the gateway CA.
//!
//! embedded-tls's own no_std verifier checks each signature of a chain up
//! to the trusted root but not basicConstraints or key usage, so any leaf
//! under the root could sign a "server" certificate; it also needs about
//! 12 KiB of stack to decode a certificate. The firmware uses
//! [`wasmbed_agent::x509`] instead: one root (the gateway CA, which signs
//! nothing but the gateway's certificate; device certificates come from
//! another CA) and a chain of exactly one certificate signed directly by
//! it, so there is no intermediate whose constraints could be skipped.

use embedded_tls::{
    Aes128GcmSha256, Certificate, CertificateEntryRef, CertificateRef, CertificateVerifyRef,
    CryptoProvider, SignatureScheme, TlsCipherSuite, TlsError, TlsVerifier,
};
use p256::ecdsa::{DerSignature, SigningKey};
use rand_core::CryptoRngCore;
use sha2::Digest;
use wasmbed_agent::x509::{CertError, GatewayAnchor, ServerKey};

use crate::{println, semihosting};

type TranscriptHash = <Aes128GcmSha256 as TlsCipherSuite>::Hash;

/// Checks the gateway's certificate and CertificateVerify.
///
/// embedded-tls 0.19 calls the verifier only for the messages the server
/// sends: a server that sends no Certificate and no CertificateVerify gets
/// through `open` unchecked. So the connection is trusted only when
/// [`GatewayVerifier::authenticated`] says the signature was verified.
pub struct GatewayVerifier<'a> {
    anchor: &'a GatewayAnchor<'a>,
    server_name: &'a str,
    /// The verified certificate's key and the transcript it must sign.
    verified: Option<(ServerKey, TranscriptHash)>,
    /// The server proved it holds the key of a certificate from the anchor.
    authenticated: bool,
}

impl<'a> GatewayVerifier<'a> {
    pub fn new(anchor: &'a GatewayAnchor<'a>, server_name: &'a str) -> Self {
        GatewayVerifier {
            anchor,
            server_name,
            verified: None,
            authenticated: false,
        }
    }

    /// Whether the server sent a trusted certificate and signed the
    /// handshake with its key.
    pub fn authenticated(&self) -> bool {
        self.authenticated
    }
}

fn refused(e: CertError) -> TlsError {
    println!("tls: gateway certificate refused: {e}");
    TlsError::InvalidCertificate
}

impl TlsVerifier<Aes128GcmSha256> for GatewayVerifier<'_> {
    fn set_hostname_verification(&mut self, _hostname: &str) -> Result<(), TlsError> {
        // The name is fixed at provisioning and checked in verify_certificate.
        Ok(())
    }

    fn verify_certificate(
        &mut self,
        transcript: &TranscriptHash,
        cert: CertificateRef<'_>,
    ) -> Result<(), TlsError> {
        let [CertificateEntryRef::X509(der)] = cert.entries.as_slice() else {
            println!(
                "tls: gateway sent {} certificates, expected 1",
                cert.entries.len()
            );
            return Err(TlsError::InvalidCertificate);
        };
        // The host's clock (semihosting): a real board would use its RTC.
        let now = Some(semihosting::host_time() as u64);
        let key = self
            .anchor
            .verify_server(der, self.server_name, now)
            .map_err(refused)?;
        self.verified = Some((key, transcript.clone()));
        Ok(())
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef<'_>) -> Result<(), TlsError> {
        let (key, transcript) = self.verified.take().ok_or(TlsError::InvalidCertificate)?;
        if verify.signature_scheme != SignatureScheme::EcdsaSecp256r1Sha256 {
            return Err(TlsError::InvalidSignatureScheme);
        }
        key.verify_tls13(&transcript.finalize(), verify.signature)
            .map_err(|_| TlsError::InvalidSignature)?;
        self.authenticated = true;
        Ok(())
    }
}
/// Everything one handshake needs: randomness, the verifier, and the
/// client certificate with its key.
pub struct DeviceCrypto<'a, 'v, R> {
    pub rng: &'a mut R,
    pub verifier: &'v mut GatewayVerifier<'a>,
    pub certificate: &'a [u8],
    pub private_key: &'a [u8; 32],
}

impl<R: CryptoRngCore> CryptoProvider for DeviceCrypto<'_, '_, R> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = DerSignature;

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Aes128GcmSha256>, TlsError> {
        Ok(&mut *self.verifier)
    }

    fn signer(
        &mut self,
    ) -> Result<(impl signature::SignerMut<DerSignature>, SignatureScheme), TlsError> {
        let key = SigningKey::from_bytes(self.private_key.into())
            .map_err(|_| TlsError::InvalidPrivateKey)?;
        Ok((key, SignatureScheme::EcdsaSecp256r1Sha256))
    }

    fn client_cert(&mut self) -> Option<Certificate<impl AsRef<[u8]>>> {
        Some(Certificate::X509(self.certificate))
    }
}
