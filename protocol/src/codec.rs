//! One message to and from the bytes of a frame body.

use core::fmt;

use minicbor::{Decode, Decoder, Encode};

use crate::message::{Downlink, Envelope, PROTOCOL_VERSION, Uplink};

/// Why bytes are not a message. Small and `Copy`, so a device can keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end in the middle of a message.
    Truncated,
    /// A complete message is followed by more bytes.
    TrailingBytes { at: usize },
    /// A message or variant number this build does not know.
    UnknownVariant { at: usize },
    /// The envelope is of a protocol version this build does not speak.
    UnsupportedVersion { found: u16 },
    /// Not the CBOR this protocol expects: wrong type, missing field, a
    /// collection beyond its bound, indefinite length, bad UTF-8, ...
    Malformed { at: usize },
    /// A map (at any depth, known or not) holds the same key twice; `at` is
    /// the offset of the earliest key that repeats an earlier one of its map.
    DuplicateKey { at: usize },
    /// Arrays, maps and tags nest deeper than
    /// [`MAX_DEPTH`](crate::MAX_DEPTH); `at` is the offset of
    /// the item that would open one level too many.
    TooDeep { at: usize },
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer is too small for the message.
    BufferTooSmall,
    /// The message is larger than a frame may be.
    FrameTooLarge { len: usize, max: usize },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("message truncated"),
            DecodeError::TrailingBytes { at } => write!(f, "trailing bytes after message at {at}"),
            DecodeError::UnknownVariant { at } => write!(f, "unknown message or variant at {at}"),
            DecodeError::UnsupportedVersion { found } => {
                write!(
                    f,
                    "protocol version {found} not supported (this build speaks {PROTOCOL_VERSION})"
                )
            }
            DecodeError::Malformed { at } => write!(f, "malformed message at byte {at}"),
            DecodeError::DuplicateKey { at } => write!(f, "duplicate map key at byte {at}"),
            DecodeError::TooDeep { at } => write!(
                f,
                "nested deeper than {} levels at byte {at}",
                crate::MAX_DEPTH
            ),
        }
    }
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::BufferTooSmall => f.write_str("output buffer too small for message"),
            EncodeError::FrameTooLarge { len, max } => {
                write!(f, "message of {len} bytes exceeds the frame limit of {max}")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DecodeError {}
#[cfg(feature = "std")]
impl std::error::Error for EncodeError {}

/// Encodes `message` into `out`, returning the number of bytes written.
pub fn encode<M: Encode<()>>(message: &Envelope<M>, out: &mut [u8]) -> Result<usize, EncodeError> {
    let mut writer = SliceWriter { buf: out, pos: 0 };
    minicbor::encode(message, &mut writer).map_err(|_| EncodeError::BufferTooSmall)?;
    Ok(writer.pos)
}

/// Writes into a slice. minicbor's own `Cursor` is not inlined, which
/// makes every CBOR head an out-of-line call; this one is.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

/// The output slice is full.
#[derive(Debug)]
struct EndOfSlice;

impl minicbor::encode::Write for SliceWriter<'_> {
    type Error = EndOfSlice;

    #[inline]
    fn write_all(&mut self, data: &[u8]) -> Result<(), EndOfSlice> {
        let target = self
            .buf
            .get_mut(self.pos..self.pos + data.len())
            .ok_or(EndOfSlice)?;
        target.copy_from_slice(data);
        self.pos += data.len();
        Ok(())
    }
}

/// Encodes `message` into a new vector.
#[cfg(feature = "alloc")]
pub fn to_vec<M: Encode<()>>(message: &Envelope<M>) -> alloc::vec::Vec<u8> {
    // Writing to a Vec cannot fail and no Encode impl of ours returns an error.
    minicbor::to_vec(message).expect("encoding into a Vec is infallible")
}

/// Decodes a frame body sent by a device. Log lines borrow from `bytes`.
pub fn decode_uplink(bytes: &[u8]) -> Result<Envelope<Uplink<'_>>, DecodeError> {
    decode(bytes)
}

/// Decodes a frame body sent by the gateway. Chunk data and certificates
/// borrow from `bytes`.
pub fn decode_downlink(bytes: &[u8]) -> Result<Envelope<Downlink<'_>>, DecodeError> {
    decode(bytes)
}

/// Decodes exactly one envelope filling `bytes`.
///
/// The bytes must be well-formed CBOR with definite lengths only (the
/// protocol never uses indefinite lengths) and no map may hold a key twice
/// ([`DecodeError::DuplicateKey`]); anything else is refused before
/// decoding, identically on every build.
pub fn decode<'b, M: Decode<'b, ()>>(bytes: &'b [u8]) -> Result<Envelope<M>, DecodeError> {
    crate::wellformed::check(bytes).map_err(|e| {
        // A message of another version may not be valid for this one; say
        // so rather than "malformed" when its version field is readable.
        match probe_version(bytes) {
            Some(found) if found != PROTOCOL_VERSION => DecodeError::UnsupportedVersion { found },
            _ => e,
        }
    })?;
    let mut decoder = Decoder::new(bytes);
    let envelope: Envelope<M> = match decoder.decode() {
        Ok(envelope) => envelope,
        Err(e) => {
            // A message of another version may not parse at all; say so
            // rather than "malformed" when the version field is readable.
            if let Some(found) = probe_version(bytes).filter(|v| *v != PROTOCOL_VERSION) {
                return Err(DecodeError::UnsupportedVersion { found });
            }
            return Err(classify(&e));
        }
    };
    if envelope.version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            found: envelope.version,
        });
    }
    if decoder.position() != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            at: decoder.position(),
        });
    }
    Ok(envelope)
}

fn classify(e: &minicbor::decode::Error) -> DecodeError {
    let at = e.position().unwrap_or(0);
    if e.is_end_of_input() {
        DecodeError::Truncated
    } else if e.is_unknown_variant() {
        DecodeError::UnknownVariant { at }
    } else {
        DecodeError::Malformed { at }
    }
}

/// Reads the version of an envelope map whose first key is 0, as every
/// encoder of this protocol writes it. Nothing else is looked at, so this
/// never skips (or allocates for) items of a hostile input.
fn probe_version(bytes: &[u8]) -> Option<u16> {
    let mut d = Decoder::new(bytes);
    d.map().ok()??;
    if d.u32().ok()? != 0 {
        return None;
    }
    d.u16().ok()
}
