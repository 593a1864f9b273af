//! Conversions of the raw P-256 keys devices store.

use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use wasmbed_protocol::PUBLIC_KEY_LEN;

/// Why a raw key could not be converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Zero, or not below the curve order.
    #[error("not a valid P-256 private scalar")]
    InvalidScalar,
    #[error("encoding the key as PKCS#8 failed")]
    Encode,
    /// Not a PKCS#8 document holding a P-256 private key.
    #[error("not a PKCS#8 P-256 private key")]
    InvalidPkcs8,
}

fn secret_key(scalar: &[u8; 32]) -> Result<p256::SecretKey, KeyError> {
    p256::SecretKey::from_bytes(scalar.into()).map_err(|_| KeyError::InvalidScalar)
}

/// A raw big-endian P-256 private scalar (what the device agent stores) as
/// a PKCS#8 private key for rustls.
pub fn p256_scalar_to_pkcs8(scalar: &[u8; 32]) -> Result<PrivateKeyDer<'static>, KeyError> {
    let der = secret_key(scalar)?
        .to_pkcs8_der()
        .map_err(|_| KeyError::Encode)?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        der.as_bytes().to_vec(),
    )))
}

/// The uncompressed SEC1 public key (65 bytes, what a device sends at
/// enrollment) of a raw P-256 private scalar.
pub fn p256_public_key(scalar: &[u8; 32]) -> Result<[u8; PUBLIC_KEY_LEN], KeyError> {
    let point = secret_key(scalar)?.public_key().to_encoded_point(false);
    point.as_bytes().try_into().map_err(|_| KeyError::Encode)
}

/// A PKCS#8 P-256 private key (DER, as in an installation's `claim-key.pem`)
/// as the raw big-endian scalar a device stores: the inverse of
/// [`p256_scalar_to_pkcs8`].
pub fn pkcs8_to_p256_scalar(der: &[u8]) -> Result<[u8; 32], KeyError> {
    let key = p256::SecretKey::from_pkcs8_der(der).map_err(|_| KeyError::InvalidPkcs8)?;
    Ok(key.to_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs8_round_trips_through_the_raw_scalar() {
        let mut scalar = [0x5a; 32];
        scalar[31] = 0x01;
        let der = p256_scalar_to_pkcs8(&scalar).expect("valid scalar");
        assert_eq!(pkcs8_to_p256_scalar(der.secret_der()), Ok(scalar));
    }

    #[test]
    fn non_pkcs8_input_is_refused() {
        assert_eq!(pkcs8_to_p256_scalar(&[]), Err(KeyError::InvalidPkcs8));
        assert_eq!(
            pkcs8_to_p256_scalar(&[0x30, 0x03, 0x02, 0x01, 0x00]),
            Err(KeyError::InvalidPkcs8)
        );
    }
}
