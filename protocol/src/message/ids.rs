//! Identifiers and small value types shared by several messages.

use minicbor::{Decode, Encode};

/// The id the gateway assigns to a device at enrollment.
///
/// It is a handle for operators and logs, not a credential: the gateway
/// identifies a connected device by the public key of its certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
#[cbor(transparent)]
pub struct DeviceId(#[cbor(n(0), with = "minicbor::bytes")] pub [u8; 16]);

/// One deployment of one application to one device, chosen by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
#[cbor(transparent)]
pub struct DeploymentId(#[n(0)] pub u64);

/// The application a deployment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Encode, Decode)]
#[cbor(transparent)]
pub struct ApplicationId(#[n(0)] pub u64);

/// Milliseconds on a clock chosen by the side that reads it.
///
/// Devices use time since boot; the gateway uses Unix time. Only
/// differences between two readings of the same clock are meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Encode, Decode)]
#[cbor(transparent)]
pub struct Millis(#[n(0)] pub u64);

impl Millis {
    /// `self + ms`, saturating at the end of time.
    pub const fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

impl core::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A WebAssembly value: an argument of an entry point or a returned value.
#[derive(Debug, Clone, Copy, PartialEq, Encode, Decode)]
#[cbor(flat)]
pub enum Value {
    #[n(0)]
    I32(#[n(0)] i32),
    #[n(1)]
    I64(#[n(0)] i64),
    #[n(2)]
    F32(#[n(0)] f32),
    #[n(3)]
    F64(#[n(0)] f64),
}
