//! The properties the fuzz targets check, one function per target, so
//! that they can also be run as ordinary tests (`cargo test` here runs
//! them on the seed corpora) and shared by targets added later.
//!
//! Every check must hold for *any* input; a panic is a finding:
//!
//! - decoding never panics, and an error points inside the input;
//!   trailing bytes follow one complete CBOR item (which need not be a
//!   message), and are never looked at;
//! - a decoded message encodes, through `to_vec`, `encode` and
//!   `encode_frame` alike, to bytes that decode to an equal message and
//!   encode to the same bytes again (compared as bytes, and as values
//!   unless a float is NaN); followed by anything it is trailing bytes,
//!   and cut short it is truncated;
//! - the framing finds frames one after another, never takes a frame
//!   before all of it is there, and refuses a header as soon as it is
//!   complete;
//! - the sessions of both ends, fed any bytes split anywhere, keep the
//!   promises listed in [`session`];
//! - the device's check of a gateway's certificate keeps those listed in
//!   [`x509`].

use std::fmt::Debug;

use wasmbed_protocol::codec::{self, DecodeError, EncodeError};
use wasmbed_protocol::frame::{self, HEADER_LEN, MAX_FRAME_LEN};
use wasmbed_protocol::{Downlink, Envelope, PROTOCOL_VERSION, Uplink};

pub mod session;
pub mod x509;

pub use session::check_session;
pub use x509::check_gateway_certificate;

/// `decode_uplink` target: `data` as the body of a frame from a device.
/// Returns the message, if it is one.
pub fn check_uplink(data: &[u8]) -> Option<Envelope<Uplink<'_>>> {
    let result = codec::decode_uplink(data);
    let decode = |bytes: &[u8]| codec::decode_uplink(bytes).map(drop);
    check_error(data, &result, decode);
    let message = result.ok()?;
    check_complete(data, decode);
    let bytes = check_encodings(&message);
    let again = codec::decode_uplink(&bytes)
        .unwrap_or_else(|e| panic!("{message:?} re-encoded as {bytes:02x?} does not decode: {e}"));
    check_same(&message, &again, &bytes);
    Some(message)
}

/// `decode_downlink` target: `data` as the body of a frame from the
/// gateway. Returns the message, if it is one.
pub fn check_downlink(data: &[u8]) -> Option<Envelope<Downlink<'_>>> {
    let result = codec::decode_downlink(data);
    let decode = |bytes: &[u8]| codec::decode_downlink(bytes).map(drop);
    check_error(data, &result, decode);
    let message = result.ok()?;
    check_complete(data, decode);
    let bytes = check_encodings(&message);
    let again = codec::decode_downlink(&bytes)
        .unwrap_or_else(|e| panic!("{message:?} re-encoded as {bytes:02x?} does not decode: {e}"));
    check_same(&message, &again, &bytes);
    Some(message)
}

/// `frame_stream` target: `data` as the byte stream of a connection.
/// Returns how many frames it held before it ended or went wrong.
pub fn check_stream(data: &[u8]) -> usize {
    let mut rest = data;
    let mut frames = 0;
    loop {
        match frame::find_frame(rest, MAX_FRAME_LEN) {
            Ok(Some(body)) => {
                assert_eq!(body.start, HEADER_LEN, "a body starts after its header");
                assert!(
                    (1..=MAX_FRAME_LEN).contains(&body.len()) && body.end <= rest.len(),
                    "body {body:?} of a stream of {} bytes",
                    rest.len()
                );
                // One byte less and the frame is not there yet.
                assert_eq!(
                    frame::find_frame(&rest[..body.end - 1], MAX_FRAME_LEN),
                    Ok(None),
                    "a frame found before all of it arrived"
                );
                let bytes = &rest[body.clone()];
                check_uplink(bytes);
                check_downlink(bytes);
                rest = &rest[body.end..];
                frames += 1;
            }
            Ok(None) => {
                if let Some(header) = rest.first_chunk::<HEADER_LEN>() {
                    let declared = u32::from_be_bytes(*header) as usize;
                    assert!(
                        (1..=MAX_FRAME_LEN).contains(&declared)
                            && rest.len() < HEADER_LEN + declared,
                        "more needed for a frame of {declared} bytes in {} bytes",
                        rest.len()
                    );
                }
                return frames;
            }
            Err(e) => {
                // Decided by the header alone.
                assert_eq!(
                    frame::find_frame(&rest[..HEADER_LEN.min(rest.len())], MAX_FRAME_LEN),
                    Err(e),
                    "refused only with the body present"
                );
                let _ = e.to_string();
                return frames;
            }
        }
    }
}

/// Checks what an error says about `data`: a position inside it, and for
/// trailing bytes, one complete CBOR item right before them. (Not
/// necessarily a message: the well-formedness check finds trailing bytes
/// before a decoder looks at the item.)
fn check_error<T>(
    data: &[u8],
    result: &Result<T, DecodeError>,
    decode: impl Fn(&[u8]) -> Result<(), DecodeError>,
) {
    let Err(e) = result else { return };
    let _ = e.to_string();
    match *e {
        DecodeError::TrailingBytes { at } => {
            assert!(0 < at && at < data.len(), "{e:?} in {} bytes", data.len());
            let item = &data[..at];
            match decode(item) {
                Err(DecodeError::TrailingBytes { .. }) => {
                    panic!("{e:?}, but the bytes before have trailing bytes too")
                }
                // minicbor 2.3, to name a type it did not expect, peeks past
                // a complete `38 xx` at the end of the input.
                Err(DecodeError::Truncated) => assert!(
                    item.len() >= 2 && item[item.len() - 2] == 0x38,
                    "{e:?}, but the bytes before are truncated"
                ),
                _ => {}
            }
            // What follows the item is never looked at.
            let mut other = item.to_vec();
            other.push(!data[at]);
            assert_eq!(
                decode(&other),
                Err(*e),
                "{e:?}, but not with {:#04x} after the item",
                !data[at]
            );
        }
        DecodeError::Malformed { at } | DecodeError::UnknownVariant { at } => {
            assert!(at <= data.len(), "{e:?} in {} bytes", data.len());
        }
        DecodeError::TooDeep { at } => {
            // An array, map or tag head, past the first MAX_DEPTH of them.
            assert!(at >= wasmbed_protocol::MAX_DEPTH && at < data.len(), "{e:?} in {} bytes", data.len());
        }
        DecodeError::DuplicateKey { at } => {
            // A key, after the head of its map: never the first byte.
            assert!(0 < at && at < data.len(), "{e:?} in {} bytes", data.len());
        }
        DecodeError::Truncated | DecodeError::UnsupportedVersion { .. } => {}
    }
}

/// Checks, for `data` that decodes to a message, that the message is
/// exactly `data`: followed by anything it is trailing bytes, and cut
/// short it is truncated.
fn check_complete(data: &[u8], decode: impl Fn(&[u8]) -> Result<(), DecodeError>) {
    let mut longer = data.to_vec();
    longer.push(0xff);
    // A message that decodes has no duplicate keys, so the version probe
    // (which runs when the check fails) reads the version it was decoded
    // with: no other version is expected here. (Kept as a fallback should
    // a probe and the decoder ever disagree.)
    let other_version = match decode(&longer) {
        Err(DecodeError::TrailingBytes { at }) if at == data.len() => None,
        Err(e @ DecodeError::UnsupportedVersion { found }) if found != PROTOCOL_VERSION => Some(e),
        other => panic!(
            "a message followed by a break: {other:?}, not {:?}",
            DecodeError::TrailingBytes { at: data.len() }
        ),
    };
    for len in [0, data.len() / 2, data.len() - 1] {
        let cut = decode(&data[..len]);
        assert!(
            cut == Err(DecodeError::Truncated) || other_version.is_some_and(|e| cut == Err(e)),
            "a message cut to {len} of {} bytes: {cut:?}",
            data.len()
        );
    }
}

/// Encodes `message` in every way the crate offers, checks that they
/// agree, and returns the bytes.
fn check_encodings<M: minicbor::Encode<()> + Debug>(message: &Envelope<M>) -> Vec<u8> {
    let bytes = codec::to_vec(message);
    assert!(!bytes.is_empty(), "{message:?} encoded to nothing");

    // The allocation-free encoder: the same bytes in a buffer of exactly
    // their size, and a clean error in one byte less.
    let mut buf = vec![0; bytes.len()];
    assert_eq!(codec::encode(message, &mut buf), Ok(bytes.len()));
    assert_eq!(buf, bytes, "encode and to_vec disagree on {message:?}");
    assert_eq!(
        codec::encode(message, &mut buf[..bytes.len() - 1]),
        Err(EncodeError::BufferTooSmall)
    );

    // As a frame, if it fits one.
    let mut out = vec![0; HEADER_LEN + bytes.len()];
    match frame::encode_frame(message, &mut out, MAX_FRAME_LEN) {
        Ok(len) => {
            assert_eq!(len, out.len());
            assert_eq!(
                frame::find_frame(&out, MAX_FRAME_LEN),
                Ok(Some(HEADER_LEN..len))
            );
            assert_eq!(
                &out[HEADER_LEN..],
                bytes,
                "encode_frame and to_vec disagree"
            );
        }
        Err(e) => assert_eq!(
            e,
            EncodeError::FrameTooLarge {
                len: bytes.len(),
                max: MAX_FRAME_LEN
            },
            "encode_frame of {} bytes",
            bytes.len()
        ),
    }
    bytes
}

/// Checks that `again`, decoded from `bytes` (the encoding of `first`),
/// is the same message as `first`.
fn check_same<M>(first: &Envelope<M>, again: &Envelope<M>, bytes: &[u8])
where
    M: minicbor::Encode<()> + PartialEq + Debug,
{
    assert_eq!(
        codec::to_vec(again),
        bytes,
        "{first:?} encodes differently after a round trip ({again:?})"
    );
    // NaN is not equal to itself; its Debug form is.
    assert!(
        first == again || format!("{first:?}") == format!("{again:?}"),
        "{first:?} came back as {again:?}"
    );
}

/// Seed files of one target: (file name, contents).
pub type SeedFiles = Vec<(String, Vec<u8>)>;

/// The seed corpora, built from the crate's sample messages: per target,
/// its seed files.
pub fn seeds() -> Vec<(&'static str, SeedFiles)> {
    use wasmbed_protocol::samples;

    let uplinks: SeedFiles = samples::uplinks()
        .into_iter()
        .map(|(name, body)| (name.to_owned(), codec::to_vec(&Envelope::new(1, body))))
        .collect();
    let downlinks: SeedFiles = samples::downlinks()
        .into_iter()
        .map(|(name, body)| {
            let envelope = Envelope::reply(2, 1, body);
            (name.to_owned(), codec::to_vec(&envelope))
        })
        .collect();

    let framed = |bodies: &[&(String, Vec<u8>)]| -> Vec<u8> {
        let mut stream = Vec::new();
        for (_, body) in bodies {
            let len = u32::try_from(body.len()).expect("samples fit a frame");
            stream.extend_from_slice(&len.to_be_bytes());
            stream.extend_from_slice(body);
        }
        stream
    };
    let all_uplinks = framed(&uplinks.iter().collect::<Vec<_>>());
    let all_downlinks = framed(&downlinks.iter().collect::<Vec<_>>());
    let mut partial = framed(&[&uplinks[0], &downlinks[0]]);
    partial.extend_from_slice(&[0, 0, 0x10]);
    let mut too_large = framed(&[&downlinks[1]]);
    too_large.extend_from_slice(&u32::MAX.to_be_bytes());

    let with_ext = |files: SeedFiles| {
        files
            .into_iter()
            .map(|(name, bytes)| (format!("{name}.cbor"), bytes))
            .collect()
    };
    vec![
        ("session", session::session_seeds()),
        ("gateway_certificate", x509::seeds()),
        ("decode_uplink", with_ext(uplinks)),
        ("decode_downlink", with_ext(downlinks)),
        (
            "frame_stream",
            vec![
                ("uplinks.bin".to_owned(), all_uplinks),
                ("downlinks.bin".to_owned(), all_downlinks),
                ("then_partial_header.bin".to_owned(), partial),
                ("then_too_large.bin".to_owned(), too_large),
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Set to rewrite `seeds/` from the samples instead of comparing.
    const WRITE_ENV: &str = "WASMBED_WRITE_SEEDS";

    fn seeds_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds")
    }

    /// `seeds/` holds exactly what [`seeds`] makes of the samples.
    /// `WASMBED_WRITE_SEEDS=1 cargo test` rewrites it.
    #[test]
    fn seed_files_are_up_to_date() {
        let write = std::env::var_os(WRITE_ENV).is_some();
        for (target, files) in seeds() {
            let dir = seeds_dir().join(target);
            if write {
                if dir.exists() {
                    std::fs::remove_dir_all(&dir).expect("remove old seeds");
                }
                std::fs::create_dir_all(&dir).expect("create the seed directory");
            }
            let mut expected: Vec<String> = Vec::new();
            for (name, bytes) in &files {
                let path = dir.join(name);
                if write {
                    std::fs::write(&path, bytes).expect("write a seed");
                }
                let on_disk = std::fs::read(&path).unwrap_or_default();
                assert!(
                    on_disk == *bytes,
                    "{} is out of date; rerun with {WRITE_ENV}=1",
                    path.display()
                );
                expected.push(name.clone());
            }
            let mut present: Vec<String> = std::fs::read_dir(&dir)
                .expect("the seed directory exists")
                .map(|entry| {
                    let entry = entry.expect("a directory entry");
                    entry.file_name().to_string_lossy().into_owned()
                })
                .collect();
            present.sort();
            expected.sort();
            assert_eq!(present, expected, "stray files in {}", dir.display());
        }
    }

    #[test]
    fn seeds_pass_their_checks() {
        for (target, files) in seeds() {
            for (name, bytes) in &files {
                match target {
                    "decode_uplink" => assert!(check_uplink(bytes).is_some(), "{name}"),
                    "decode_downlink" => assert!(check_downlink(bytes).is_some(), "{name}"),
                    "frame_stream" => assert!(check_stream(bytes) > 0, "{name}"),
                    "session" => assert!(check_session(bytes).events > 0, "{name}"),
                    // What each comes to is checked in `x509`'s tests.
                    "gateway_certificate" => {
                        assert!(check_gateway_certificate(bytes).is_some(), "{name}")
                    }
                    other => panic!("no check for target {other}"),
                }
            }
        }
    }

    #[test]
    fn nothing_and_garbage_pass_the_checks() {
        for data in [
            &[][..],
            &[0x00],
            &[0xff; 8],
            &[0, 0, 0, 0],
            &[0, 0, 0, 1, 0xa0],
            &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
        ] {
            assert!(check_uplink(data).is_none());
            assert!(check_downlink(data).is_none());
            check_stream(data);
            check_session(data);
            check_gateway_certificate(data);
        }
    }

    /// Floats come back as the same bits, NaN included.
    #[test]
    fn nan_results_round_trip() {
        use wasmbed_protocol::{DeploymentId, ExecutionResult, Outcome, Value};

        let result = Uplink::ExecutionResult(ExecutionResult {
            deployment: DeploymentId(1),
            invocation: 1,
            outcome: Outcome::Returned(
                heapless::Vec::from_slice(&[
                    Value::F32(f32::from_bits(0x7fc0_0001)),
                    Value::F64(f64::NAN),
                    Value::F64(-0.0),
                ])
                .expect("three values fit"),
            ),
            fuel_used: 0,
            duration_us: 0,
            logs: heapless::Vec::new(),
            logs_truncated: false,
        });
        let bytes = codec::to_vec(&Envelope::new(1, result));
        assert!(check_uplink(&bytes).is_some());
    }
}
