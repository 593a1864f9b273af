//! Spotting, in the TLS records a device sends, that it started a new TLS
//! session on the same link: the sign that it was reset without its
//! emulator's socket closing (a watchdog, a fault, QEMU's `system_reset`).
//!
//! A TLS 1.3 client sends plaintext handshake records (content type 22)
//! only before its session is established: the ClientHello, and a second
//! one after a HelloRetryRequest. Once it has sent an application data
//! record (type 23; its encrypted Finished travels in one), a handshake
//! record can only be the ClientHello of a new session. The old gateway
//! connection cannot carry it: the bridge must open a new one.
//!
//! Only record headers are read (type, version, length); bodies pass
//! through. A stream that does not start with a handshake record, or
//! whose record headers stop looking like TLS (a device reset in the
//! middle of a record), is passed through unwatched from then on: that
//! device's first handshake after a reset then fails at the gateway, which
//! closes, and the device connects again as it would without the watch.

/// TLS record content types.
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
/// Bytes of a TLS record header.
const HEADER_LEN: usize = 5;

/// Follows the record boundaries of one device's byte stream.
#[derive(Debug, Default)]
pub(crate) struct SessionWatch {
    /// Set once the stream is known not to be (or no longer to follow) TLS
    /// records: everything passes through.
    passthrough: bool,
    /// The header of the record being read, while incomplete: held back
    /// until it shows which session it belongs to.
    header: [u8; HEADER_LEN],
    header_len: usize,
    /// Body bytes left in the current record.
    body_left: usize,
    /// Whether the current session has sent application data.
    established: bool,
    /// Whether a whole record header has been read in this session.
    seen_record: bool,
}

/// Whether a record header is one a TLS 1.3 client sends: a known content
/// type (change_cipher_spec, alert, handshake, application_data), legacy
/// version 3.x, and a length within what TLS allows.
fn looks_like_tls(header: &[u8; HEADER_LEN]) -> bool {
    let length = u16::from_be_bytes([header[3], header[4]]);
    (20..=23).contains(&header[0]) && header[1] == 3 && header[2] <= 4 && length <= 16_384 + 256
}

/// A chunk of the device's bytes, split between sessions.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Split {
    /// For the current session's gateway connection.
    pub(crate) current: Vec<u8>,
    /// The start of a new session, for a new gateway connection.
    pub(crate) new_session: Option<Vec<u8>>,
}

impl SessionWatch {
    /// Splits the next chunk of the device's bytes. An incomplete record
    /// header at its end is held back and returned with the next chunk.
    pub(crate) fn feed(&mut self, chunk: &[u8]) -> Split {
        let (current, rest) = self.follow(chunk, true);
        let new_session = rest.map(|start| {
            // The new session's bytes, scanned afresh. (A second new session
            // in the same chunk would need a whole handshake in between:
            // it is left to the gateway to refuse.)
            let (mut bytes, more) = self.follow(&start, false);
            if let Some(more) = more {
                bytes.extend(more);
            }
            bytes
        });
        Split {
            current,
            new_session,
        }
    }

    /// The bytes of the current session, and, if a new one starts in
    /// `chunk` (looked for only when `detect`), its bytes, unscanned, with
    /// the watch reset for it.
    fn follow(&mut self, chunk: &[u8], detect: bool) -> (Vec<u8>, Option<Vec<u8>>) {
        let mut current = Vec::with_capacity(chunk.len() + HEADER_LEN);
        let mut pos = 0;
        while pos < chunk.len() {
            if self.passthrough {
                current.extend_from_slice(&chunk[pos..]);
                break;
            }
            if self.body_left > 0 {
                let take = self.body_left.min(chunk.len() - pos);
                current.extend_from_slice(&chunk[pos..pos + take]);
                self.body_left -= take;
                pos += take;
                continue;
            }
            let starts_stream = self.header_len == 0 && !self.established && !self.seen_record;
            if starts_stream && chunk[pos] != HANDSHAKE {
                self.passthrough = true;
                continue;
            }
            let take = (HEADER_LEN - self.header_len).min(chunk.len() - pos);
            self.header[self.header_len..self.header_len + take]
                .copy_from_slice(&chunk[pos..pos + take]);
            self.header_len += take;
            pos += take;
            if self.header_len < HEADER_LEN {
                break;
            }
            self.header_len = 0;
            let header = self.header;
            if !looks_like_tls(&header) {
                current.extend_from_slice(&header);
                self.passthrough = true;
                continue;
            }
            self.seen_record = true;
            if detect && header[0] == HANDSHAKE && self.established {
                *self = SessionWatch::default();
                let mut start = header.to_vec();
                start.extend_from_slice(&chunk[pos..]);
                return (current, Some(start));
            }
            if header[0] == APPLICATION_DATA {
                self.established = true;
            }
            current.extend_from_slice(&header);
            self.body_left = usize::from(u16::from_be_bytes([header[3], header[4]]));
        }
        (current, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
        let mut bytes = vec![content_type, 3, 3];
        bytes.extend(u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes());
        bytes.extend(body);
        bytes
    }

    fn client_hello() -> Vec<u8> {
        record(HANDSHAKE, &[1, 0, 0, 3, 9, 9, 9])
    }

    /// The stream of a session: hello, app data (with 0x16 inside, which
    /// must not count), more app data.
    fn session() -> Vec<u8> {
        let mut bytes = client_hello();
        bytes.extend(record(20, &[1]));
        bytes.extend(record(APPLICATION_DATA, &[22, 3, 3, 0, 1, 22]));
        bytes.extend(record(APPLICATION_DATA, &[7; 300]));
        bytes
    }

    /// Feeds `stream` in chunks of `size`: the bytes of each session, in
    /// order. Nothing is lost or duplicated, whatever the chunks.
    fn sessions(stream: &[u8], size: usize) -> Vec<Vec<u8>> {
        let mut watch = SessionWatch::default();
        let mut sessions = vec![Vec::new()];
        for chunk in stream.chunks(size) {
            let split = watch.feed(chunk);
            sessions
                .last_mut()
                .expect("a session")
                .extend(split.current);
            if let Some(start) = split.new_session {
                sessions.push(start);
            }
        }
        sessions
    }

    #[test]
    fn a_client_hello_after_application_data_is_a_new_session() {
        let one = session();
        let stream = [one.clone(), one.clone(), one.clone()].concat();
        // A device waits for the gateway's answer between two sessions'
        // first records, so no read holds both: chunks up to a session.
        for size in 1..one.len() {
            assert_eq!(
                sessions(&stream, size),
                [one.clone(), one.clone(), one.clone()],
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn a_retried_hello_before_application_data_is_the_same_session() {
        // ClientHello, (HelloRetryRequest from the server), ClientHello.
        let stream = [
            client_hello(),
            client_hello(),
            record(APPLICATION_DATA, &[1, 2, 3]),
        ]
        .concat();
        for size in 1..=stream.len() {
            assert_eq!(
                sessions(&stream, size),
                std::slice::from_ref(&stream),
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn an_incomplete_header_is_held_until_it_is_complete() {
        let mut watch = SessionWatch::default();
        assert_eq!(watch.feed(&client_hello()).current, client_hello());
        let split = watch.feed(&[APPLICATION_DATA, 3]);
        assert_eq!(split, Split::default());
        let split = watch.feed(&[3, 0, 1, 42, HANDSHAKE]);
        assert_eq!(split.current, [APPLICATION_DATA, 3, 3, 0, 1, 42]);
        assert_eq!(split.new_session, None);
        let split = watch.feed(&[3, 1, 0, 0]);
        assert_eq!(split.current, Vec::<u8>::new());
        assert_eq!(split.new_session, Some(vec![HANDSHAKE, 3, 1, 0, 0]));
    }

    #[test]
    fn bytes_that_are_not_tls_pass_through_untouched() {
        // Not starting with a handshake record: never split, never held.
        let other = [b"ping".to_vec(), session(), session()].concat();
        for size in 1..=other.len() {
            assert_eq!(
                sessions(&other, size),
                std::slice::from_ref(&other),
                "chunks of {size}"
            );
        }
        // A session whose records go out of step (a record cut short by a
        // reset): from there on, passed through.
        let mut cut = session();
        cut.truncate(cut.len() - 100);
        let stream = [cut, vec![0x99; 10], session()].concat();
        for size in 1..=stream.len() {
            assert_eq!(
                sessions(&stream, size),
                std::slice::from_ref(&stream),
                "chunks of {size}"
            );
        }
    }
}
