//! Framing of the TLS byte stream: a 4-byte big-endian length, then that
//! many bytes of CBOR ([`crate::codec`]).
//!
//! Both ends refuse a frame longer than their limit as soon as its header
//! arrives, before buffering any of the body.

use core::fmt;

use minicbor::Encode;

use crate::codec::{self, EncodeError};
use crate::message::Envelope;

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Largest frame body either end accepts by default. A deployment chunk of
/// [`crate::message::MAX_CHUNK_LEN`] bytes or a device certificate fits.
pub const MAX_FRAME_LEN: usize = 4096;

/// A frame the receiver will not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The header announces more than the receiver's limit.
    TooLarge { declared: u32, max: u32 },
    /// The header announces an empty frame, which carries no message.
    Empty,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { declared, max } => {
                write!(f, "frame of {declared} bytes exceeds the limit of {max}")
            }
            FrameError::Empty => f.write_str("empty frame"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for FrameError {}

/// Where the first complete frame of `stream` is.
///
/// `Ok(None)` means more bytes are needed. `Ok(Some(body))` gives the
/// range of the body within `stream`; the frame ends at `body.end`.
pub fn find_frame(
    stream: &[u8],
    max_len: usize,
) -> Result<Option<core::ops::Range<usize>>, FrameError> {
    let Some(header) = stream.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let declared = u32::from_be_bytes(*header);
    if declared == 0 {
        return Err(FrameError::Empty);
    }
    if declared as usize > max_len {
        return Err(FrameError::TooLarge {
            declared,
            max: u32::try_from(max_len).unwrap_or(u32::MAX),
        });
    }
    let end = HEADER_LEN + declared as usize;
    Ok((stream.len() >= end).then_some(HEADER_LEN..end))
}

/// Encodes `message` as a whole frame into `out` and returns its length.
pub fn encode_frame<M: Encode<()>>(
    message: &Envelope<M>,
    out: &mut [u8],
    max_len: usize,
) -> Result<usize, EncodeError> {
    let (header, body) = out
        .split_first_chunk_mut::<HEADER_LEN>()
        .ok_or(EncodeError::BufferTooSmall)?;
    let len = codec::encode(message, body)?;
    if len > max_len {
        return Err(EncodeError::FrameTooLarge { len, max: max_len });
    }
    // `len <= max_len <= u32::MAX` in every configuration we build.
    *header = u32::try_from(len)
        .map_err(|_| EncodeError::FrameTooLarge { len, max: max_len })?
        .to_be_bytes();
    Ok(HEADER_LEN + len)
}
