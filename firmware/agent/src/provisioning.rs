//! What a device is given at the factory: where its gateway is and how to
//! prove it may enroll.
//!
//! A real production line writes this record into a protected flash area;
//! in emulation the emulator manager writes it to a file the firmware reads
//! (see `docs/emulation.md`). The record is CBOR, so it is read with the
//! same decoder as the protocol and never needs an allocation.

use minicbor::{Decode, Encode};

use crate::identity::PRIVATE_KEY_LEN;

/// Length of the entropy seed in a provisioning record.
pub const SEED_LEN: usize = 32;

/// The factory record, borrowed from the bytes it was decoded from.
#[derive(Clone, PartialEq, Eq, Encode, Decode)]
#[cbor(map)]
pub struct Provisioning<'a> {
    /// The gateway CA certificate (DER): the only root the device trusts.
    #[cbor(n(0), with = "minicbor::bytes")]
    pub gateway_ca: &'a [u8],
    /// The name the gateway certificate must carry.
    #[n(1)]
    pub server_name: &'a str,
    /// The claim certificate (DER), shared by unenrolled devices.
    #[cbor(n(2), with = "minicbor::bytes")]
    pub claim_certificate: &'a [u8],
    /// The claim certificate's P-256 private key, big-endian scalar.
    #[cbor(n(3), with = "minicbor::bytes")]
    pub claim_private_key: [u8; PRIVATE_KEY_LEN],
    /// A per-device random seed. Emulated boards have no TRNG, so the
    /// device's CSPRNG starts from this plus what varies between boots; a
    /// real board seeds from its TRNG instead.
    #[cbor(n(4), with = "minicbor::bytes")]
    pub entropy_seed: [u8; SEED_LEN],
    /// A human-readable name, for the console.
    #[n(5)]
    pub device_name: &'a str,
    /// Where a networked device finds the gateway's device port, as
    /// `host:port` (`10.0.2.2:4423` from behind QEMU's user-mode network).
    /// Absent for devices whose link is wired to the gateway (a UART through
    /// the emulator manager's bridge).
    #[n(6)]
    pub gateway_address: Option<&'a str>,
}

impl core::fmt::Debug for Provisioning<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Provisioning")
            .field("server_name", &self.server_name)
            .field("device_name", &self.device_name)
            .field("gateway_address", &self.gateway_address)
            .field("gateway_ca_len", &self.gateway_ca.len())
            .field("claim_certificate_len", &self.claim_certificate.len())
            .finish_non_exhaustive()
    }
}

/// Why a provisioning record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidProvisioning;

impl core::fmt::Display for InvalidProvisioning {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the provisioning record is not valid CBOR of the expected shape")
    }
}

impl<'a> Provisioning<'a> {
    /// Decodes a record; trailing bytes are refused.
    pub fn decode(bytes: &'a [u8]) -> Result<Provisioning<'a>, InvalidProvisioning> {
        let mut decoder = minicbor::Decoder::new(bytes);
        let record = decoder.decode().map_err(|_| InvalidProvisioning)?;
        if decoder.position() == bytes.len() {
            Ok(record)
        } else {
            Err(InvalidProvisioning)
        }
    }

    /// Encodes the record.
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        // Encoding into a Vec cannot fail.
        minicbor::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Provisioning<'static> {
        Provisioning {
            gateway_ca: &[0x30, 0x82, 1, 2],
            server_name: "gateway.wasmbed.local",
            claim_certificate: &[0x30, 3, 4],
            claim_private_key: [7; PRIVATE_KEY_LEN],
            entropy_seed: [9; SEED_LEN],
            device_name: "qemu-0",
            gateway_address: Some("10.0.2.2:4423"),
        }
    }

    #[test]
    fn a_record_round_trips() {
        let bytes = sample().to_vec();
        assert_eq!(Provisioning::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn a_record_without_a_gateway_address_still_decodes() {
        let wired = Provisioning {
            gateway_address: None,
            ..sample()
        };
        let bytes = wired.to_vec();
        assert_eq!(Provisioning::decode(&bytes), Ok(wired));
    }

    #[test]
    fn truncated_or_padded_records_are_refused() {
        let mut bytes = sample().to_vec();
        bytes.push(0);
        assert_eq!(Provisioning::decode(&bytes), Err(InvalidProvisioning));
        bytes.truncate(bytes.len() - 10);
        assert_eq!(Provisioning::decode(&bytes), Err(InvalidProvisioning));
    }

    #[test]
    fn debug_never_prints_the_claim_key() {
        let text = alloc::format!("{:?}", sample());
        assert!(!text.contains("7, 7"), "{text}");
    }
}
