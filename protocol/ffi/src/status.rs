//! The result of every fallible call.

use core::ffi::{CStr, c_char};

use wasmbed_protocol::frame::FrameError;
use wasmbed_protocol::session::SessionError;
use wasmbed_protocol::{DecodeError, EncodeError};

/// What a call did: `WB_STATUS_OK` (0), a positive "not yet", or a
/// negative error.
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum WbStatus {
    /// Done.
    Ok = 0,
    /// `wb_frame_find`: the buffer does not hold a whole frame yet.
    NeedMore = 1,
    /// A required pointer argument is `NULL`.
    NullPointer = -1,
    /// An argument is out of range: a count beyond its array, text that is
    /// not NUL-terminated UTF-8, an unknown value kind, a bad config.
    InvalidArgument = -2,
    /// The output buffer is too small for the frame.
    BufferTooSmall = -3,
    /// A frame beyond the size limit (announced by a header, or encoded).
    FrameTooLarge = -4,
    /// A frame header announcing an empty body.
    EmptyFrame = -5,
    /// The bytes end in the middle of a message.
    Truncated = -6,
    /// A complete message is followed by more bytes.
    TrailingBytes = -7,
    /// A message or variant number this build does not know.
    UnknownVariant = -8,
    /// The message is of a protocol version this build does not speak.
    UnsupportedVersion = -9,
    /// Not the CBOR this protocol expects.
    Malformed = -10,
    /// A valid message, but not of the kind asked for.
    UnexpectedMessage = -11,
    /// Not possible in the session's state (e.g. a heartbeat before the
    /// session is established).
    InvalidState = -12,
    /// Too much output is waiting; transmit what is pending first.
    OutboxFull = -13,
    /// The session has ended.
    Closed = -14,
    /// The session storage is smaller than `WB_DEVICE_SESSION_SIZE` or not
    /// aligned to `WB_DEVICE_SESSION_ALIGN`.
    BadStorage = -15,
    /// A map in the message holds the same key twice.
    DuplicateKey = -16,
    /// The message nests arrays, maps or tags too deep.
    TooDeep = -17,
    /// A message id that does not follow the peer's previous one (a
    /// replayed or reordered frame).
    BadMessageId = -18,
    /// The peer kept sending a message faster than allowed.
    RateLimited = -19,
}

impl WbStatus {
    /// The status's name, as in the header, for logs.
    pub const fn name(self) -> &'static CStr {
        match self {
            WbStatus::Ok => c"WB_STATUS_OK",
            WbStatus::NeedMore => c"WB_STATUS_NEED_MORE",
            WbStatus::NullPointer => c"WB_STATUS_NULL_POINTER",
            WbStatus::InvalidArgument => c"WB_STATUS_INVALID_ARGUMENT",
            WbStatus::BufferTooSmall => c"WB_STATUS_BUFFER_TOO_SMALL",
            WbStatus::FrameTooLarge => c"WB_STATUS_FRAME_TOO_LARGE",
            WbStatus::EmptyFrame => c"WB_STATUS_EMPTY_FRAME",
            WbStatus::Truncated => c"WB_STATUS_TRUNCATED",
            WbStatus::TrailingBytes => c"WB_STATUS_TRAILING_BYTES",
            WbStatus::UnknownVariant => c"WB_STATUS_UNKNOWN_VARIANT",
            WbStatus::UnsupportedVersion => c"WB_STATUS_UNSUPPORTED_VERSION",
            WbStatus::Malformed => c"WB_STATUS_MALFORMED",
            WbStatus::UnexpectedMessage => c"WB_STATUS_UNEXPECTED_MESSAGE",
            WbStatus::InvalidState => c"WB_STATUS_INVALID_STATE",
            WbStatus::OutboxFull => c"WB_STATUS_OUTBOX_FULL",
            WbStatus::Closed => c"WB_STATUS_CLOSED",
            WbStatus::BadStorage => c"WB_STATUS_BAD_STORAGE",
            WbStatus::DuplicateKey => c"WB_STATUS_DUPLICATE_KEY",
            WbStatus::TooDeep => c"WB_STATUS_TOO_DEEP",
            WbStatus::BadMessageId => c"WB_STATUS_BAD_MESSAGE_ID",
            WbStatus::RateLimited => c"WB_STATUS_RATE_LIMITED",
        }
    }
}

/// Every status.
const ALL: [WbStatus; 21] = [
    WbStatus::Ok,
    WbStatus::NeedMore,
    WbStatus::NullPointer,
    WbStatus::InvalidArgument,
    WbStatus::BufferTooSmall,
    WbStatus::FrameTooLarge,
    WbStatus::EmptyFrame,
    WbStatus::Truncated,
    WbStatus::TrailingBytes,
    WbStatus::UnknownVariant,
    WbStatus::UnsupportedVersion,
    WbStatus::Malformed,
    WbStatus::UnexpectedMessage,
    WbStatus::InvalidState,
    WbStatus::OutboxFull,
    WbStatus::Closed,
    WbStatus::BadStorage,
    WbStatus::DuplicateKey,
    WbStatus::TooDeep,
    WbStatus::BadMessageId,
    WbStatus::RateLimited,
];

impl From<DecodeError> for WbStatus {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Truncated => WbStatus::Truncated,
            DecodeError::TrailingBytes { .. } => WbStatus::TrailingBytes,
            DecodeError::UnknownVariant { .. } => WbStatus::UnknownVariant,
            DecodeError::UnsupportedVersion { .. } => WbStatus::UnsupportedVersion,
            DecodeError::Malformed { .. } => WbStatus::Malformed,
            DecodeError::DuplicateKey { .. } => WbStatus::DuplicateKey,
            DecodeError::TooDeep { .. } => WbStatus::TooDeep,
        }
    }
}

impl From<EncodeError> for WbStatus {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::BufferTooSmall => WbStatus::BufferTooSmall,
            EncodeError::FrameTooLarge { .. } => WbStatus::FrameTooLarge,
        }
    }
}

impl From<FrameError> for WbStatus {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { .. } => WbStatus::FrameTooLarge,
            FrameError::Empty => WbStatus::EmptyFrame,
        }
    }
}

impl From<SessionError> for WbStatus {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::InvalidState => WbStatus::InvalidState,
            SessionError::OutboxFull => WbStatus::OutboxFull,
            SessionError::Encode(e) => e.into(),
            SessionError::Closed => WbStatus::Closed,
        }
    }
}

/// Turns a `Result` into the status the C side sees.
pub(crate) fn status(result: Result<(), WbStatus>) -> WbStatus {
    match result {
        Ok(()) => WbStatus::Ok,
        Err(status) => status,
    }
}

/// The name of a status (e.g. `"WB_STATUS_MALFORMED"`), or
/// `"WB_STATUS_UNKNOWN"` for a value that is none. The string is static.
#[unsafe(no_mangle)]
pub extern "C" fn wb_status_name(status: i32) -> *const c_char {
    ALL.iter()
        .find(|s| **s as i32 == status)
        .map_or(c"WB_STATUS_UNKNOWN", |s| s.name())
        .as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_values() {
        for s in ALL {
            // SAFETY: wb_status_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(wb_status_name(s as i32)) };
            assert_eq!(name, s.name());
        }
        // SAFETY: as above.
        let unknown = unsafe { CStr::from_ptr(wb_status_name(99)) };
        assert_eq!(unknown, c"WB_STATUS_UNKNOWN");
    }

    #[test]
    fn duplicate_keys_have_their_own_status() {
        let mut out = core::mem::MaybeUninit::<crate::codec::WbDownlink>::uninit();
        // A downlink envelope with its id (key 1) twice.
        let body = [
            0xa4, 0x00, 0x01, 0x01, 0x01, 0x01, 0x02, 0x02, 0x82, 0x06, 0xa1, 0x00, 0x02,
        ];
        // SAFETY: `body` and `out` are valid for their lengths.
        let status = unsafe {
            crate::codec::wb_decode_downlink(body.as_ptr(), body.len(), out.as_mut_ptr())
        };
        assert_eq!(status, WbStatus::DuplicateKey);
        assert_eq!(
            WbStatus::from(DecodeError::DuplicateKey { at: 5 }),
            WbStatus::DuplicateKey
        );
    }

    #[test]
    fn only_need_more_is_positive() {
        for s in ALL {
            let positive = (s as i32) > 0;
            assert_eq!(positive, s == WbStatus::NeedMore, "{s:?}");
        }
    }
}
