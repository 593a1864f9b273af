//! The byte-level half of a session: frames in, frames out.

use core::ops::Range;

use minicbor::Encode;

use super::{ByteBuffer, SessionError, Violation};
use crate::codec::EncodeError;
use crate::frame::{self, FrameError, HEADER_LEN};
use crate::message::Envelope;

/// Incoming bytes, split into frames.
#[derive(Debug)]
pub(crate) struct Inbox<B> {
    buf: B,
    /// Length of the frame handed out last; dropped before the next one.
    consumed: usize,
    max_frame_len: usize,
}

impl<B: ByteBuffer> Inbox<B> {
    pub(crate) fn new(buf: B, max_frame_len: usize) -> Self {
        Inbox {
            buf,
            consumed: 0,
            max_frame_len,
        }
    }

    /// Takes as much of `data` as fits before the next complete frame and
    /// returns how much that was.
    pub(crate) fn accept(&mut self, data: &[u8]) -> usize {
        self.release();
        let room = self.room();
        let n = data.len().min(room).min(self.buf.spare());
        let taken = self.buf.try_extend(&data[..n]);
        if taken { n } else { 0 }
    }

    /// How many more bytes are useful now. Unbounded buffers still hold at
    /// most one frame beyond what has been read, so a peer can not make a
    /// session buffer more than a frame while events are not being polled.
    fn room(&self) -> usize {
        let cap = HEADER_LEN + self.max_frame_len;
        let held = self.buf.bytes().len();
        // Bytes past the first complete frame wait until it is consumed.
        match frame::find_frame(self.buf.bytes(), self.max_frame_len) {
            Ok(Some(_)) | Err(_) => 0,
            Ok(None) => cap.saturating_sub(held),
        }
    }

    /// The next complete frame's body range, if any.
    pub(crate) fn next_frame(&mut self) -> Result<Option<Range<usize>>, FrameError> {
        self.release();
        let found = frame::find_frame(self.buf.bytes(), self.max_frame_len)?;
        if let Some(body) = &found {
            self.consumed = body.end;
        }
        Ok(found)
    }

    pub(crate) fn body(&self, range: Range<usize>) -> &[u8] {
        &self.buf.bytes()[range]
    }

    fn release(&mut self) {
        if self.consumed > 0 {
            self.buf.drain_front(self.consumed);
            self.consumed = 0;
        }
    }

    /// Bytes received and not yet handed out as frames.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.bytes().len() - self.consumed
    }
}

/// Outgoing frames, waiting to be written to the transport.
#[derive(Debug)]
pub(crate) struct Outbox<B> {
    buf: B,
    next_id: u32,
    max_frame_len: usize,
    max_buffered: usize,
}

impl<B: ByteBuffer> Outbox<B> {
    pub(crate) fn new(buf: B, max_frame_len: usize, max_buffered: usize) -> Self {
        Outbox {
            buf,
            next_id: 1,
            max_frame_len,
            max_buffered,
        }
    }

    /// Queues `body` as one frame and returns its message id.
    pub(crate) fn send<M: Encode<()>>(
        &mut self,
        body: M,
        reply_to: Option<u32>,
    ) -> Result<u32, SessionError> {
        let id = self.next_id;
        let envelope = Envelope {
            reply_to,
            ..Envelope::new(id, body)
        };
        let start = self.buf.bytes().len();
        if !self.buf.try_extend(&[0; HEADER_LEN]) {
            return Err(SessionError::OutboxFull);
        }
        let mut writer = Writer { buf: &mut self.buf };
        let encoded = minicbor::encode(&envelope, &mut writer);
        let body_len = self.buf.bytes().len() - start - HEADER_LEN;
        let result = match encoded {
            Err(_) => Err(SessionError::OutboxFull),
            Ok(()) if body_len > self.max_frame_len => {
                Err(SessionError::Encode(EncodeError::FrameTooLarge {
                    len: body_len,
                    max: self.max_frame_len,
                }))
            }
            Ok(()) if start + HEADER_LEN + body_len > self.max_buffered => {
                Err(SessionError::OutboxFull)
            }
            Ok(()) => Ok(()),
        };
        if let Err(e) = result {
            self.buf.truncate(start);
            return Err(e);
        }
        // body_len <= max_frame_len, which fits in a u32 on every target.
        let len = u32::try_from(body_len).map_err(|_| SessionError::OutboxFull)?;
        self.buf.bytes_mut()[start..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        self.next_id = self.next_id.wrapping_add(1);
        Ok(id)
    }

    pub(crate) fn pending(&self) -> &[u8] {
        self.buf.bytes()
    }

    pub(crate) fn advance(&mut self, n: usize) {
        self.buf.drain_front(n);
    }
}

struct Writer<'a, B> {
    buf: &'a mut B,
}

/// The outbox's buffer has no room for the frame.
#[derive(Debug)]
pub(crate) struct Full;

impl<B: ByteBuffer> minicbor::encode::Write for Writer<'_, B> {
    type Error = Full;

    fn write_all(&mut self, data: &[u8]) -> Result<(), Full> {
        if self.buf.try_extend(data) {
            Ok(())
        } else {
            Err(Full)
        }
    }
}

/// The id of the peer's last message: within a session each side numbers
/// its messages increasingly, so a repeated or smaller id is a violation
/// (a replayed or reordered frame).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PeerIds {
    previous: Option<u32>,
}

impl PeerIds {
    /// Accepts `id` if it follows every id seen before.
    pub(crate) fn check(&mut self, id: u32) -> Result<(), Violation> {
        if let Some(previous) = self.previous {
            if id <= previous {
                return Err(Violation::MessageId { id, previous });
            }
        }
        self.previous = Some(id);
        Ok(())
    }
}
