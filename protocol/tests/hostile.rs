//! Hostile and unexpected input: whatever the bytes, the decoders and the
//! framing answer with a typed error (or, for valid bytes, the message).
//! They never panic, never recurse into the input's nesting, and never
//! trust a declared length before the bytes are there.
//!
//! Every decode first checks that the bytes are exactly one well-formed
//! CBOR item with definite lengths only, and refuses anything else before
//! a decoder sees it: indefinite lengths, breaks and reserved additional
//! information as `Malformed` at the offending byte, lengths and counts
//! beyond the input as `Truncated`, bytes after the item as
//! `TrailingBytes` at its end; as `UnsupportedVersion` instead when the
//! envelope's version is readable and not this one. Those errors are
//! asserted exactly; errors found by the decoders themselves (a wrong type,
//! a missing field) are asserted exactly where the tests always did, as
//! "malformed anywhere" elsewhere.
//!
//! - Every encoded example of RFC 8949 Appendix A, and items that are not
//!   well-formed, fed to both decoders, at the top level and where a newer
//!   peer's field is skipped.
//! - Lengths of 2^64 - 1, nesting a million deep, indefinite-length items
//!   closed or never closed, trailing bytes, other versions, unknown
//!   variants, and every truncation of every sample message.
//! - Frame headers announcing too much, nothing, or not yet complete.
//!
//! Allocation is measured separately, in `tests/alloc.rs`, because it
//! needs a global allocator of its own.
#![allow(clippy::unwrap_used)]

use wasmbed_protocol::codec::{self, DecodeError, decode_downlink, decode_uplink};
use wasmbed_protocol::frame::{self, FrameError, HEADER_LEN, MAX_FRAME_LEN};
use wasmbed_protocol::samples;
use wasmbed_protocol::*;

/// Nesting depth of the deep-nesting inputs: far beyond any stack a
/// recursive decoder could survive (test threads have 2 MiB).
const DEEP: usize = 1_000_000;

/// The bytes of a hex string; whitespace is ignored.
fn unhex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len() % 2 == 0, "odd number of hex digits in {hex:?}");
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("hex digits are ASCII");
            u8::from_str_radix(pair, 16).expect("valid hex digits")
        })
        .collect()
}

/// Lowercase hex of (the start of) `bytes`, for assertion messages.
fn hex(bytes: &[u8]) -> String {
    let shown: String = bytes.iter().take(40).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 40 {
        format!("{shown}... ({} bytes)", bytes.len())
    } else {
        shown
    }
}

/// What a decoder is expected to make of some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A message.
    Ok,
    /// Exactly this error.
    Is(DecodeError),
    /// `DecodeError::Malformed` at any position: for errors the decoders
    /// find in well-formed CBOR (a wrong type, a missing field).
    Malformed,
}

use Expect::{Is, Malformed};

/// `DecodeError::Truncated`, which has no position.
const TRUNCATED: Expect = Is(DecodeError::Truncated);

/// `DecodeError::Malformed` at exactly `at`.
const fn malformed_at(at: usize) -> Expect {
    Is(DecodeError::Malformed { at })
}

impl Expect {
    fn admits<T>(self, result: &Result<T, DecodeError>) -> bool {
        match (self, result) {
            (Expect::Ok, Ok(_)) => true,
            (Is(want), Err(got)) => want == *got,
            (Malformed, Err(DecodeError::Malformed { .. })) => true,
            _ => false,
        }
    }
}

/// Decodes `bytes` in both directions and checks each outcome.
fn check(what: &str, bytes: &[u8], uplink: Expect, downlink: Expect) {
    let up = decode_uplink(bytes);
    assert!(
        uplink.admits(&up),
        "{what}: decode_uplink({}) = {:?}, expected {uplink:?}",
        hex(bytes),
        up.map(|e| e.body.kind()),
    );
    let down = decode_downlink(bytes);
    assert!(
        downlink.admits(&down),
        "{what}: decode_downlink({}) = {:?}, expected {downlink:?}",
        hex(bytes),
        down.map(|e| e.body.kind()),
    );
}

/// Like [`check`], with the same expectation for both directions.
fn check_both(what: &str, bytes: &[u8], expect: Expect) {
    check(what, bytes, expect, expect);
}

/// Every encoded example of RFC 8949, Appendix A (Table 6), with its
/// diagnostic notation. (RFC 7049's table also had `f818`, simple(24),
/// which RFC 8949 made not well-formed; it is among [`NOT_WELL_FORMED`].)
const RFC8949_EXAMPLES: &[(&str, &str)] = &[
    ("00", "0"),
    ("01", "1"),
    ("0a", "10"),
    ("17", "23"),
    ("1818", "24"),
    ("1819", "25"),
    ("1864", "100"),
    ("1903e8", "1000"),
    ("1a000f4240", "1000000"),
    ("1b000000e8d4a51000", "1000000000000"),
    ("1bffffffffffffffff", "18446744073709551615"),
    ("c249010000000000000000", "18446744073709551616"),
    ("3bffffffffffffffff", "-18446744073709551616"),
    ("c349010000000000000000", "-18446744073709551617"),
    ("20", "-1"),
    ("29", "-10"),
    ("3863", "-100"),
    ("3903e7", "-1000"),
    ("f90000", "0.0"),
    ("f98000", "-0.0"),
    ("f93c00", "1.0"),
    ("fb3ff199999999999a", "1.1"),
    ("f93e00", "1.5"),
    ("f97bff", "65504.0"),
    ("fa47c35000", "100000.0"),
    ("fa7f7fffff", "3.4028234663852886e+38"),
    ("fb7e37e43c8800759c", "1.0e+300"),
    ("f90001", "5.960464477539063e-8"),
    ("f90400", "0.00006103515625"),
    ("f9c400", "-4.0"),
    ("fbc010666666666666", "-4.1"),
    ("f97c00", "Infinity (half)"),
    ("f97e00", "NaN (half)"),
    ("f9fc00", "-Infinity (half)"),
    ("fa7f800000", "Infinity (single)"),
    ("fa7fc00000", "NaN (single)"),
    ("faff800000", "-Infinity (single)"),
    ("fb7ff0000000000000", "Infinity (double)"),
    ("fb7ff8000000000000", "NaN (double)"),
    ("fbfff0000000000000", "-Infinity (double)"),
    ("f4", "false"),
    ("f5", "true"),
    ("f6", "null"),
    ("f7", "undefined"),
    ("f0", "simple(16)"),
    ("f8ff", "simple(255)"),
    (
        "c074323031332d30332d32315432303a30343a30305a",
        "0(\"2013-03-21T20:04:00Z\")",
    ),
    ("c11a514b67b0", "1(1363896240)"),
    ("c1fb41d452d9ec200000", "1(1363896240.5)"),
    ("d74401020304", "23(h'01020304')"),
    ("d818456449455446", "24(h'6449455446')"),
    (
        "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
        "32(\"http://www.example.com\")",
    ),
    ("40", "h''"),
    ("4401020304", "h'01020304'"),
    ("60", "\"\""),
    ("6161", "\"a\""),
    ("6449455446", "\"IETF\""),
    ("62225c", "\"\\\"\\\\\""),
    ("62c3bc", "\"\\u00fc\""),
    ("63e6b0b4", "\"\\u6c34\""),
    ("64f0908591", "\"\\ud800\\udd51\""),
    ("80", "[]"),
    ("83010203", "[1, 2, 3]"),
    ("8301820203820405", "[1, [2, 3], [4, 5]]"),
    (
        "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
        "[1, 2, 3, ..., 25]",
    ),
    ("a0", "{}"),
    ("a201020304", "{1: 2, 3: 4}"),
    ("a26161016162820203", "{\"a\": 1, \"b\": [2, 3]}"),
    ("826161a161626163", "[\"a\", {\"b\": \"c\"}]"),
    (
        "a56161614161626142616361436164614461656145",
        "{\"a\": \"A\", \"b\": \"B\", \"c\": \"C\", \"d\": \"D\", \"e\": \"E\"}",
    ),
    ("5f42010243030405ff", "(_ h'0102', h'030405')"),
    ("7f657374726561646d696e67ff", "(_ \"strea\", \"ming\")"),
    ("9fff", "[_ ]"),
    ("9f018202039f0405ffff", "[_ 1, [2, 3], [_ 4, 5]]"),
    ("9f01820203820405ff", "[_ 1, [2, 3], [4, 5]]"),
    ("83018202039f0405ff", "[1, [2, 3], [_ 4, 5]]"),
    ("83019f0203ff820405", "[1, [_ 2, 3], [4, 5]]"),
    (
        "9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff",
        "[_ 1, 2, 3, ..., 25]",
    ),
    ("bf61610161629f0203ffff", "{_ \"a\": 1, \"b\": [_ 2, 3]}"),
    ("826161bf61626163ff", "[\"a\", {_ \"b\": \"c\"}]"),
    ("bf6346756ef563416d7421ff", "{_ \"Fun\": true, \"Amt\": -2}"),
];

/// The examples of [`RFC8949_EXAMPLES`] with indefinite lengths: where
/// their first indefinite-length item starts, which is the byte they are
/// refused at before any decoder sees them, and the shortest prefix
/// refused there. (Shorter prefixes that reach that byte are truncated:
/// the items an enclosing array declares do not fit the bytes present.)
const RFC8949_INDEFINITE: &[(&str, usize, usize)] = &[
    ("5f42010243030405ff", 0, 1),
    ("7f657374726561646d696e67ff", 0, 1),
    ("9fff", 0, 1),
    ("9f018202039f0405ffff", 0, 1),
    ("9f01820203820405ff", 0, 1),
    ("83018202039f0405ff", 5, 6),
    ("83019f0203ff820405", 2, 4),
    (
        "9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff",
        0,
        1,
    ),
    ("bf61610161629f0203ffff", 0, 1),
    ("826161bf61626163ff", 3, 4),
    ("bf6346756ef563416d7421ff", 0, 1),
];

/// Where an RFC example is refused for its indefinite lengths, if it is,
/// and the shortest prefix refused there.
fn indefinite_at(encoded: &str) -> Option<(usize, usize)> {
    RFC8949_INDEFINITE
        .iter()
        .find(|(example, ..)| *example == encoded)
        .map(|&(_, at, from)| (at, from))
}

/// Major type 5 (maps).
fn is_map(first: u8) -> bool {
    first >> 5 == 5
}

/// What both decoders make of a well-formed item that is not a map: the
/// first byte already says it is no envelope.
///
/// Except for a quirk of minicbor (2.3): to name the type it did not
/// expect, it looks at the byte *after* the first byte of a negative
/// integer's argument (`38`..`3b`), so a complete `38 63` (-100) is
/// reported as truncated.
fn not_a_map(bytes: &[u8]) -> Expect {
    match bytes {
        [0x38..=0x3b, _] => TRUNCATED,
        _ => malformed_at(0),
    }
}

/// None of the RFC's examples is an envelope. Those with indefinite
/// lengths are refused where the first such item starts; the others, if
/// not maps, at their first byte; the maps lack fields or have text keys.
#[test]
fn rfc8949_examples_are_typed_errors() {
    assert_eq!(RFC8949_EXAMPLES.len(), 81, "the whole of Appendix A");
    for &(encoded, ..) in RFC8949_INDEFINITE {
        assert!(
            RFC8949_EXAMPLES.iter().any(|&(e, _)| e == encoded),
            "{encoded} is not an example"
        );
    }
    for &(encoded, diagnostic) in RFC8949_EXAMPLES {
        let bytes = unhex(encoded);
        let expect = match indefinite_at(encoded) {
            Some((at, _)) => malformed_at(at),
            None if is_map(bytes[0]) => Malformed,
            None => not_a_map(&bytes),
        };
        check_both(diagnostic, &bytes, expect);
    }
}

/// Every proper prefix of every RFC example is truncated, unless it
/// holds the start of an indefinite-length item that the check reaches,
/// which is refused there.
#[test]
fn rfc8949_examples_truncated_are_typed_errors() {
    for &(encoded, diagnostic) in RFC8949_EXAMPLES {
        let bytes = unhex(encoded);
        for len in 0..bytes.len() {
            let expect = match indefinite_at(encoded) {
                Some((at, from)) if len >= from => malformed_at(at),
                _ => TRUNCATED,
            };
            let what = format!("{diagnostic} cut to {len} bytes");
            check_both(&what, &bytes[..len], expect);
        }
    }
    // The integer-keyed maps: every cut of the definite one is truncated;
    // the indefinite one is refused at its first byte.
    for (cut, expect) in [
        ("a2", TRUNCATED),
        ("a201", TRUNCATED),
        ("a20102", TRUNCATED),
        ("a2010203", TRUNCATED),
        ("bf", malformed_at(0)),
        ("bf01", malformed_at(0)),
        ("bf0102", malformed_at(0)),
    ] {
        check_both(&format!("{{1: 2, 3: 4}} cut to {cut}"), &unhex(cut), expect);
    }
}

/// `a3 {0: 1, 1: 1, 2: ...}`: an envelope up to its body.
const ENVELOPE_HEAD: &str = "a3 00 01 01 01 02";

/// A complete envelope with room for one more entry: valid in both
/// directions (uplink Goodbye, downlink DeployCommit), followed by key 9,
/// which this version does not know, so that its value is skipped.
const ENVELOPE_UNKNOWN_KEY: &str = "a4 00 01 01 01 02 82 06 a1 00 02 09";

/// Items that are not well-formed CBOR (RFC 8949, section 3 and
/// Appendix F), or that use indefinite lengths, which this protocol never
/// does, each with the offset of the byte they are refused at. Refused at
/// the top level, and where a newer peer's field would be skipped (after
/// [`ENVELOPE_UNKNOWN_KEY`]).
const NOT_WELL_FORMED: &[(&str, usize, &str)] = &[
    ("1c", 0, "reserved additional information 28"),
    ("1d", 0, "reserved additional information 29"),
    ("1e", 0, "reserved additional information 30"),
    ("3c", 0, "a negative integer with information 28"),
    ("5c", 0, "a byte string with information 28"),
    ("7c", 0, "a text string with information 28"),
    ("9c", 0, "an array with information 28"),
    ("bc", 0, "a map with information 28"),
    ("dc", 0, "a tag with information 28"),
    ("fc", 0, "a simple value with information 28"),
    ("fd", 0, "a simple value with information 29"),
    ("fe", 0, "a simple value with information 30"),
    ("1f", 0, "an integer of indefinite length"),
    ("3f", 0, "a negative integer of indefinite length"),
    ("df", 0, "a tag of indefinite length"),
    ("5f 00 ff", 0, "an integer inside an indefinite byte string"),
    ("7f 41 00 ff", 0, "bytes inside an indefinite text string"),
    (
        "5f 5f 41 00 ff ff",
        0,
        "an indefinite byte string inside another",
    ),
    ("7f 62 c3 28 ff", 0, "a chunk that is not UTF-8"),
    (
        "f8 18",
        0,
        "simple(24) in two bytes (in RFC 7049's Appendix A)",
    ),
    ("f8 00", 0, "simple(0) in two bytes"),
    ("f8 1f", 0, "simple(31) in two bytes"),
    ("ff", 0, "a break outside of an indefinite item"),
    ("c0 ff", 1, "a tagged break"),
    ("81 ff", 1, "a break as an array's item"),
    ("82 ff 00", 1, "a break as an array's first item"),
    ("82 00 ff", 2, "a break as an array's last item"),
    ("a1 ff 00", 1, "a break as a map key"),
    ("a1 00 ff", 2, "a break as a map value"),
    ("82 81 1c 00", 2, "a reserved value in a nested array"),
    ("c1 c2 f8 10", 2, "a two-byte simple value under two tags"),
];

/// Well-formed, but not valid: refused by the decoder, not by the check.
const TEXT_NOT_UTF8: &str = "62 c3 28";

#[test]
fn not_well_formed_items_are_typed_errors() {
    for &(item, at, what) in NOT_WELL_FORMED {
        check_both(what, &unhex(item), malformed_at(at));
    }
    check_both(
        "text that is not UTF-8",
        &unhex(TEXT_NOT_UTF8),
        malformed_at(0),
    );
}

/// Not-well-formed CBOR is not a message, wherever it is: also not where
/// the value of a key this version does not know is skipped.
#[test]
fn not_well_formed_items_are_refused_under_unknown_keys() {
    let offset = unhex(ENVELOPE_UNKNOWN_KEY).len();
    for &(item, at, what) in NOT_WELL_FORMED {
        let bytes = unhex(&format!("{ENVELOPE_UNKNOWN_KEY} {item}"));
        check_both(
            &format!("{what}, under an unknown key"),
            &bytes,
            malformed_at(offset + at),
        );
    }
    // Found by minicbor's `skip`, at the text's first byte.
    check_both(
        "text that is not UTF-8, under an unknown key",
        &unhex(&format!("{ENVELOPE_UNKNOWN_KEY} {TEXT_NOT_UTF8}")),
        malformed_at(offset),
    );
}

/// "Every map, array, byte string and text string has a definite
/// length": indefinite lengths are refused where the first one starts,
/// closed or not, wherever they are.
#[test]
fn indefinite_items_are_refused() {
    let cases: &[(&str, &str, usize)] = &[
        (
            "bf 00 01 01 01 02 82 06 a1 00 02 ff",
            "an indefinite envelope",
            0,
        ),
        (
            "a3 00 01 01 01 02 82 06 bf 00 02 ff",
            "an indefinite body map",
            8,
        ),
        (
            "a3 00 01 01 01 02 9f 06 a1 00 02 ff",
            "an indefinite body array",
            6,
        ),
        (
            // Uplink ExecutionResult / downlink DeployStart would have
            // their lists here.
            "a3 00 01 01 01 02 82 04 a3 00 07 01 01 02 9f ff",
            "an indefinite list in a body",
            14,
        ),
        (
            "a3 00 01 01 01 02 82 0a a2 00 18 1f 01 7f 61 61 ff",
            "an indefinite text in a body",
            13,
        ),
        (
            "a3 00 01 01 01 02 82 05 a3 00 07 01 00 02 5f 41 00 ff",
            "an indefinite byte string as chunk data",
            14,
        ),
    ];
    for &(encoded, what, at) in cases {
        check_both(what, &unhex(encoded), malformed_at(at));
    }
    let offset = unhex(ENVELOPE_UNKNOWN_KEY).len();
    for (item, at) in [
        ("9f ff", 0),
        ("5f ff", 0),
        ("7f ff", 0),
        ("bf ff", 0),
        ("82 9f ff 00", 1),
        ("a1 00 bf ff", 2),
        ("c1 9f 00 ff", 1),
    ] {
        check_both(
            &format!("{item} under an unknown key"),
            &unhex(&format!("{ENVELOPE_UNKNOWN_KEY} {item}")),
            malformed_at(offset + at),
        );
    }
}

/// Hand-picked small inputs with a deterministic outcome.
#[test]
fn small_inputs() {
    let cases: &[(&str, &str, Expect)] = &[
        ("", "nothing", TRUNCATED),
        ("00", "the integer 0", Is(DecodeError::Malformed { at: 0 })),
        ("ff", "a lone break", Is(DecodeError::Malformed { at: 0 })),
        ("a1", "a map missing its only entry", TRUNCATED),
        ("a100", "a map missing a value", TRUNCATED),
        ("a10001", "only the version", Malformed),
        ("a0", "an empty map", Malformed),
        ("a1 20 00", "a negative key", Malformed),
        ("a1 6176 00", "a text key", Malformed),
        ("a1 1bffffffffffffffff 00", "a key beyond i64", Malformed),
        ("bf ff", "an empty indefinite map", malformed_at(0)),
        (
            "a3 00 01 01 01 02",
            "an envelope without its body",
            TRUNCATED,
        ),
        ("a3 00 01 01 01 02 80", "an empty body array", Malformed),
        (
            "a3 00 01 01 01 02 9f 06 a1 00 02 ff",
            "a body array of indefinite length",
            malformed_at(6),
        ),
        (
            "a3 00 01 01 01 02 82 06 a1 00 1c",
            "a reserved byte as a field's value",
            malformed_at(10),
        ),
        (
            "a1 00 01 00",
            "only the version, then a byte",
            Is(DecodeError::TrailingBytes { at: 3 }),
        ),
        ("a2 00 01 00", "a map missing its last value", TRUNCATED),
        (
            "a3 00 01 01 01 02 82 06 a1 00 1a 00 00",
            "a field's argument cut short",
            TRUNCATED,
        ),
        (
            "a3 00 01 01 01 02 81 06",
            "a body without its fields",
            Malformed,
        ),
        (
            "a3 00 01 01 1a00000001 02 82 06 a1 00 02",
            "an id in long form",
            Expect::Ok,
        ),
        (
            "a3 00 01 01 1b0000000100000000 02 82 06 a1 00 02",
            "an id beyond u32",
            Malformed,
        ),
    ];
    for &(encoded, what, expect) in cases {
        check_both(what, &unhex(encoded), expect);
    }
}

/// Declared lengths of 2^64 - 1 are refused as truncated, before any
/// decoder sees them, without allocating or reading past the input:
/// whatever the item, and whether or not a decoder would have expected
/// one of its type there.
#[test]
fn lengths_of_two_to_the_64() {
    let max = "ffffffffffffffff";
    let cases: Vec<(String, &str, Expect)> = vec![
        (format!("5b{max}"), "a byte string", TRUNCATED),
        (format!("7b{max}"), "a text string", TRUNCATED),
        (format!("9b{max}"), "an array", TRUNCATED),
        (format!("bb{max}"), "a map", TRUNCATED),
        (format!("bb{max} 00 01 01 01"), "an envelope map", TRUNCATED),
        (
            format!("{ENVELOPE_HEAD} 9b{max}"),
            "the body array",
            TRUNCATED,
        ),
        (
            format!("{ENVELOPE_HEAD} 9b{max} 06 a1 00 02"),
            "the body array, with a body",
            TRUNCATED,
        ),
        (
            // Uplink: a heartbeat whose app list is beyond its bound.
            // Downlink: a SessionAccept whose device id is not bytes.
            format!("{ENVELOPE_HEAD} 82 02 a3 00 00 01 00 02 9b{max}"),
            "a bounded list",
            TRUNCATED,
        ),
        (
            // Downlink: a DeployChunk's data. Uplink: an ErrorMessage's
            // detail, which must be text.
            format!("{ENVELOPE_HEAD} 82 05 a3 00 07 01 00 02 5b{max}"),
            "chunk data",
            TRUNCATED,
        ),
        (
            // Uplink: ErrorMessage.detail. Downlink: DeployChunk.offset.
            format!("{ENVELOPE_HEAD} 82 05 a2 00 07 01 7b{max}"),
            "error detail",
            TRUNCATED,
        ),
        (
            // Uplink: EnrollRequest.public_key (65 bytes).
            // Downlink: EnrollChallenge.nonce (32 bytes).
            format!("{ENVELOPE_HEAD} 82 00 a1 00 5b{max}"),
            "a fixed-size byte string",
            TRUNCATED,
        ),
        (
            format!("{ENVELOPE_UNKNOWN_KEY} 5b{max}"),
            "an unknown key's byte string",
            TRUNCATED,
        ),
        (
            format!("{ENVELOPE_UNKNOWN_KEY} 7b{max}"),
            "an unknown key's text",
            TRUNCATED,
        ),
        (
            format!("{ENVELOPE_UNKNOWN_KEY} 9b{max}"),
            "an unknown key's array",
            TRUNCATED,
        ),
        (
            format!("{ENVELOPE_UNKNOWN_KEY} bb{max}"),
            "an unknown key's map",
            TRUNCATED,
        ),
        // Half of 2^64 entries would overflow as a count of items.
        (
            format!("{ENVELOPE_UNKNOWN_KEY} bb8000000000000000"),
            "a map of 2^63 entries",
            TRUNCATED,
        ),
        (
            format!("{ENVELOPE_UNKNOWN_KEY} 1b{max}"),
            "the largest integer, for contrast",
            Expect::Ok,
        ),
        // The indefinite-length item is refused first.
        (
            format!("{ENVELOPE_UNKNOWN_KEY} 82 9f 9b{max}"),
            "an array in an indefinite array in an array",
            malformed_at(13),
        ),
        (
            format!("{ENVELOPE_UNKNOWN_KEY} 5f 5b{max}"),
            "an indefinite byte string's chunk",
            malformed_at(12),
        ),
    ];
    for (encoded, what, expect) in &cases {
        check_both(what, &unhex(encoded), *expect);
    }
}

/// Lengths and counts that are small, but more than the bytes left: a
/// count of items that cannot fit (each needs at least a byte) is
/// refused before any of them is read.
#[test]
fn lengths_beyond_the_input() {
    let cases: &[(&str, &str)] = &[
        ("5a 00010000 00", "65536 bytes, one present"),
        ("62 61", "a text of two bytes, one present"),
        ("9a 00010000 00 00", "65536 items, two present"),
        ("83 00 00", "three items, two present"),
        ("a2 01 00 01", "two entries, one and a half present"),
        ("ba 00008000 01 00 01", "32768 entries, three bytes"),
        (
            "a3 00 01 01 01 02 82 06 a1 00 19 27",
            "a two-byte argument, one byte present",
        ),
        ("a4 00 01 01 01 02 82 06 a1 00 02 09 c1", "a tag of nothing"),
        (
            "a4 00 01 01 01 02 82 06 a1 00 02 09 99 ffff 00",
            "an unknown key's array of 65535 items",
        ),
    ];
    for &(encoded, what) in cases {
        check_both(what, &unhex(encoded), TRUNCATED);
    }
}

/// `prefix`, then `count` times `repeated`, then `suffix`.
fn nested(prefix: &str, repeated: u8, count: usize, suffix: &[u8]) -> Vec<u8> {
    let mut bytes = unhex(prefix);
    bytes.resize(bytes.len() + count, repeated);
    bytes.extend_from_slice(suffix);
    bytes
}

/// Nesting a million deep neither overflows the stack nor is mistaken for
/// a message: the well-formedness check walks it without recursion and
/// refuses it where it passes `MAX_DEPTH` levels, before the end is seen.
/// Indefinite lengths met before that point are refused first.
#[test]
fn nesting_a_million_deep() {
    let offset = unhex(ENVELOPE_UNKNOWN_KEY).len();
    let head = unhex(ENVELOPE_HEAD).len();
    // Under the envelope's map, one level is taken already.
    let too_deep = |at| Is(DecodeError::TooDeep { at });
    let cases: Vec<(Vec<u8>, &str, Expect)> = vec![
        (
            nested("", 0x81, DEEP, &[0x00]),
            "[[[...0...]]]",
            too_deep(MAX_DEPTH),
        ),
        (
            nested("", 0xc1, DEEP, &[0x00]),
            "a million tags",
            too_deep(MAX_DEPTH),
        ),
        (
            nested(ENVELOPE_HEAD, 0x81, DEEP, &[0x06]),
            "as the body",
            too_deep(head + MAX_DEPTH - 1),
        ),
        (nested("", 0x81, DEEP, &[]), "[[[...", too_deep(MAX_DEPTH)),
        (
            nested("", 0xa1, DEEP, &[]),
            "{{{... (two items per byte)",
            too_deep(MAX_DEPTH),
        ),
        (
            nested("", 0x9f, DEEP, &[]),
            "[_ [_ [_ ... never closed",
            malformed_at(0),
        ),
        (
            nested(ENVELOPE_UNKNOWN_KEY, 0x81, DEEP, &[0x00]),
            "[[[...0...]]] under an unknown key",
            too_deep(offset + MAX_DEPTH - 1),
        ),
        (
            nested(ENVELOPE_UNKNOWN_KEY, 0x81, DEEP, &[]),
            "[[[... under an unknown key, cut",
            too_deep(offset + MAX_DEPTH - 1),
        ),
        (
            nested(ENVELOPE_UNKNOWN_KEY, 0xc1, DEEP, &[0x00]),
            "a million tags under an unknown key",
            too_deep(offset + MAX_DEPTH - 1),
        ),
        (
            {
                let mut bytes = unhex(ENVELOPE_UNKNOWN_KEY);
                for _ in 0..DEEP / 2 {
                    bytes.extend_from_slice(&[0xa1, 0x00]);
                }
                bytes.push(0x00);
                bytes
            },
            "{0: {0: ...}} under an unknown key",
            too_deep(offset + 2 * (MAX_DEPTH - 1)),
        ),
        // Indefinite items are refused where the first one starts.
        (
            nested(ENVELOPE_UNKNOWN_KEY, 0x9f, DEEP, &[]),
            "[_ [_ ... never closed under an unknown key",
            malformed_at(offset),
        ),
        (
            nested(ENVELOPE_UNKNOWN_KEY, 0xbf, DEEP, &[]),
            "{_ {_ ... never closed under an unknown key",
            malformed_at(offset),
        ),
        (
            nested(&format!("{ENVELOPE_UNKNOWN_KEY} 81"), 0x9f, DEEP, &[]),
            "[[_ [_ ... never closed under an unknown key",
            malformed_at(offset + 1),
        ),
        (
            {
                let mut bytes = unhex(ENVELOPE_UNKNOWN_KEY);
                for _ in 0..DEEP / 2 {
                    bytes.extend_from_slice(&[0x82, 0x9f]);
                }
                bytes
            },
            "[[_ [[_ ... alternating, never closed, under an unknown key",
            malformed_at(offset + 1),
        ),
        // Within the limit, an indefinite item deep down is still found.
        (
            {
                let mut bytes = nested(ENVELOPE_UNKNOWN_KEY, 0x81, MAX_DEPTH - 2, &[0x9f]);
                bytes.push(0xff);
                bytes
            },
            "[[[...[_ ]...]]] under an unknown key",
            malformed_at(offset + MAX_DEPTH - 2),
        ),
        // Exactly at the limit: the newer peer's field is skipped.
        (
            nested(ENVELOPE_UNKNOWN_KEY, 0x81, MAX_DEPTH - 2, &[0x00]),
            "[[[...0...]]] under an unknown key, at the limit",
            Expect::Ok,
        ),
    ];
    for (bytes, what, expect) in &cases {
        check_both(what, bytes, *expect);
    }
}

/// Indefinite-length items that never end are refused where they start,
/// not read to the end of the input.
#[test]
fn indefinite_items_never_closed() {
    let cases: &[(&str, &str, usize)] = &[
        ("bf", "an indefinite envelope map", 0),
        (
            "bf 00 01 01 01",
            "an indefinite envelope map, two entries",
            0,
        ),
        (
            "bf 00 01 01 01 02 82 06 a1 00 02",
            "an indefinite envelope map without its break",
            0,
        ),
        (
            "a3 00 01 01 01 02 9f 06 a1 00 02",
            "an indefinite body array without its break",
            6,
        ),
        ("9f", "[_ under an unknown key", 12),
        ("9f 01 02", "[_ 1, 2", 12),
        ("bf 01", "{_ 1: ...", 12),
        ("5f", "(_ with no chunk", 12),
        ("5f 41 00", "(_ h'00'", 12),
        ("7f 61 61", "(_ \"a\"", 12),
        ("82 9f 9f ff", "[[_ [_ ]", 13),
    ];
    for &(encoded, what, at) in cases {
        let bytes = if at < 12 {
            unhex(encoded)
        } else {
            unhex(&format!("{ENVELOPE_UNKNOWN_KEY} {encoded}"))
        };
        check_both(what, &bytes, malformed_at(at));
    }
}

/// The sample messages, encoded, as (name, bytes, is an uplink).
fn encoded_samples() -> Vec<(String, Vec<u8>, bool)> {
    let mut all = Vec::new();
    for (name, body) in samples::uplinks() {
        all.push((
            format!("uplink {name}"),
            codec::to_vec(&Envelope::new(7, body)),
            true,
        ));
    }
    for (name, body) in samples::downlinks() {
        all.push((
            format!("downlink {name}"),
            codec::to_vec(&Envelope::reply(8, 7, body)),
            false,
        ));
    }
    all
}

/// Decodes `bytes` in the direction given, keeping only the outcome.
fn decode_as(bytes: &[u8], uplink: bool) -> Result<(), DecodeError> {
    if uplink {
        decode_uplink(bytes).map(drop)
    } else {
        decode_downlink(bytes).map(drop)
    }
}

#[test]
fn samples_decode() {
    for (name, bytes, uplink) in encoded_samples() {
        assert_eq!(decode_as(&bytes, uplink), Ok(()), "{name}: {}", hex(&bytes));
    }
}

/// A complete message followed by anything is refused, and says where
/// the message ended: what follows is not looked at, so it may be
/// anything, not-well-formed CBOR included.
#[test]
fn trailing_bytes() {
    for (name, bytes, uplink) in encoded_samples() {
        let at = bytes.len();
        for extra in [&[0x00][..], &[0xff], &[0x00; 100], &[0x5b], &bytes] {
            let mut long = bytes.clone();
            long.extend_from_slice(extra);
            assert_eq!(
                decode_as(&long, uplink),
                Err(DecodeError::TrailingBytes { at }),
                "{name} + {}",
                hex(extra),
            );
        }
    }
    check_both(
        "a trailing break",
        &unhex("a3 00 01 01 01 02 82 06 a1 00 02 ff"),
        Is(DecodeError::TrailingBytes { at: 11 }),
    );
    for (extra, what) in [
        ("a0", "a trailing map"),
        ("9f", "a trailing indefinite array"),
        ("1c", "a trailing reserved byte"),
        ("f8 18", "a trailing two-byte simple value"),
        ("5b ffffffffffffffff", "a trailing byte string of 2^64 - 1"),
    ] {
        check_both(
            what,
            &unhex(&format!("a3 00 01 01 01 02 82 06 a1 00 02 {extra}")),
            Is(DecodeError::TrailingBytes { at: 11 }),
        );
    }
    // The first item ends early: the check says so before a decoder could
    // find fields missing.
    check_both(
        "an empty map, then an envelope",
        &unhex("a0 a3 00 01 01 01 02 82 06 a1 00 02"),
        Is(DecodeError::TrailingBytes { at: 1 }),
    );
    check_both(
        "the integer 0, then 0",
        &unhex("00 00"),
        Is(DecodeError::TrailingBytes { at: 1 }),
    );
}

/// An envelope of another version is refused as such, whether or not its
/// body is one this version understands.
#[test]
fn other_versions() {
    for (name, body) in samples::uplinks() {
        for version in [0, 2, u16::MAX] {
            let envelope = Envelope {
                version,
                id: 1,
                body: body.clone(),
                reply_to: None,
            };
            let bytes = codec::to_vec(&envelope);
            assert_eq!(
                decode_uplink(&bytes).map(drop),
                Err(DecodeError::UnsupportedVersion { found: version }),
                "{name} of version {version}",
            );
        }
    }
    for (name, body) in samples::downlinks() {
        let envelope = Envelope {
            version: 2,
            id: 1,
            body,
            reply_to: Some(0),
        };
        let bytes = codec::to_vec(&envelope);
        assert_eq!(
            decode_downlink(&bytes).map(drop),
            Err(DecodeError::UnsupportedVersion { found: 2 }),
            "{name} of version 2",
        );
    }
    let v2 = Is(DecodeError::UnsupportedVersion { found: 2 });
    let cases: &[(&str, &str, Expect)] = &[
        (
            "a3 00 02 01 01 02 82 06 a1 00 02",
            "a version 2 goodbye",
            v2,
        ),
        (
            "a3 00 02 01 01 02 82 18 63 a0",
            "version 2 with a body of variant 99",
            v2,
        ),
        (
            "a3 00 02 01 01 02 a0",
            "version 2 with a map as its body",
            v2,
        ),
        // The version is recognised only as the first key, where every
        // encoder of this protocol writes it; elsewhere the map is just
        // not an envelope of this version.
        (
            "a2 01 01 00 02",
            "version 2, written last, no body",
            Malformed,
        ),
        ("a3 00 02 01 01 02", "version 2, cut after the body key", v2),
        (
            "a3 00 02 01 01 02 82 06 a1 00 02 00",
            "version 2 with trailing bytes",
            v2,
        ),
        (
            "a3 00 1a00010000 01 01 02 82 06 a1 00 02",
            "version 65536",
            Malformed,
        ),
        ("a3 00 20 01 01 02 82 06 a1 00 02", "version -1", Malformed),
        // Refused by the well-formedness check, with the version readable
        // before the offending item.
        (
            "a4 00 02 01 01 02 82 06 a1 00 02 09 9f ff",
            "version 2 with an indefinite item",
            v2,
        ),
        (
            "a4 00 02 01 01 02 82 06 a1 00 02 09 f8 18",
            "version 2 with a two-byte simple value",
            v2,
        ),
        (
            "a4 00 02 01 01 02 82 06 a1 00 02 09 1c",
            "version 2 with a reserved byte",
            v2,
        ),
        (
            "a4 00 02 01 01 02 82 06 a1 00 02 09 5bffffffffffffffff",
            "version 2 with a byte string of 2^64 - 1",
            v2,
        ),
        (
            "a3 00 02 01 01 02 82 06 a1 00 02 ff",
            "version 2 with a trailing break",
            v2,
        ),
        (
            "a3 00 00 01 01 02 9f 06 a1 00 02 ff",
            "version 0 with an indefinite body",
            Is(DecodeError::UnsupportedVersion { found: 0 }),
        ),
        // The version of an indefinite-length map is not looked for.
        (
            "bf 00 02 01 01 02 82 06 a1 00 02 ff",
            "an indefinite envelope of version 2",
            malformed_at(0),
        ),
        // Version 1 as it is: the check's own errors.
        (
            "a4 00 01 01 01 02 82 06 a1 00 02 09 9f ff",
            "version 1 with an indefinite item",
            malformed_at(12),
        ),
        (
            "a3 00 01 01 01 02 82 06 a1 00 02 ff",
            "version 1 with a trailing break",
            Is(DecodeError::TrailingBytes { at: 11 }),
        ),
    ];
    for &(encoded, what, expect) in cases {
        check_both(what, &unhex(encoded), expect);
    }
}

/// Message and variant numbers this version does not know.
#[test]
fn unknown_variants() {
    let at7 = Is(DecodeError::UnknownVariant { at: 7 });
    let cases: &[(&str, &str, Expect, Expect)] = &[
        (
            "a3 00 01 01 01 02 82 07 a0",
            "message 7",
            at7,
            Malformed, // a downlink Stop without its deployment
        ),
        ("a3 00 01 01 01 02 82 0b a0", "message 11", at7, at7),
        ("a3 00 01 01 01 02 82 18 63 a0", "message 99", at7, at7),
        ("a3 00 01 01 01 02 82 20 a0", "message -1", at7, at7),
        (
            "a3 00 01 01 01 02 82 3bffffffffffffffff a0",
            "message -2^64",
            Malformed,
            Malformed,
        ),
        (
            "a3 00 01 01 01 02 81 1bffffffffffffffff",
            "message 2^64 - 1",
            Malformed,
            Malformed,
        ),
        (
            // Uplink: DeployStatus in state 7. Downlink: HeartbeatAck.
            // Reported at the variant's number, byte 13.
            "a3 00 01 01 01 02 82 03 a2 00 07 01 81 07",
            "deploy state 7",
            Is(DecodeError::UnknownVariant { at: 13 }),
            Malformed,
        ),
        (
            // Uplink: ExecutionResult with outcome 2.
            // Downlink: DeployStart.
            "a3 00 01 01 01 02 82 04 a3 00 07 01 01 02 81 02",
            "outcome 2",
            Is(DecodeError::UnknownVariant { at: 15 }),
            Malformed,
        ),
        (
            // Downlink: EnrollResponse 2. Uplink: SessionStart.
            "a3 00 01 01 01 02 82 01 81 02",
            "enroll response 2",
            Malformed,
            Is(DecodeError::UnknownVariant { at: 9 }),
        ),
    ];
    for &(encoded, what, uplink, downlink) in cases {
        check(what, &unhex(encoded), uplink, downlink);
    }
}

/// Unknown codes are kept, not refused; numbers beyond a code's range
/// are refused.
#[test]
fn unknown_codes_are_kept() {
    // Goodbye with reason 9999 / DeployCommit of deployment 9999.
    let bytes = unhex("a3 00 01 01 01 02 82 06 a1 00 19270f");
    let up = decode_uplink(&bytes).expect("an unknown reason is kept");
    assert_eq!(
        up.body,
        Uplink::Goodbye(Goodbye {
            reason: GoodbyeReason::Unknown(9999)
        })
    );
    // Downlink, the same bytes are a DeployCommit of deployment 65536.
    check(
        "reason 65536",
        &unhex("a3 00 01 01 01 02 82 06 a1 00 1a00010000"),
        Malformed,
        Expect::Ok,
    );
}

/// Every sample message cut short, at every length, is truncated, in
/// both directions: the check finds it before either decoder runs.
#[test]
fn samples_truncated_at_every_length() {
    for (name, bytes, uplink) in encoded_samples() {
        for len in 0..bytes.len() {
            for direction in [uplink, !uplink] {
                assert_eq!(
                    decode_as(&bytes[..len], direction),
                    Err(DecodeError::Truncated),
                    "{name} cut to {len} of {} bytes, as an {}",
                    bytes.len(),
                    if direction { "uplink" } else { "downlink" },
                );
            }
        }
    }
}

/// Every byte of every sample changed to every value: a message or a
/// typed error, never a panic; and a message re-encodes to bytes that
/// decode and re-encode to the same bytes.
#[test]
fn samples_with_one_byte_changed() {
    for (name, bytes, _) in encoded_samples() {
        let mut changed = bytes.clone();
        for at in 0..bytes.len() {
            for value in 0..=u8::MAX {
                changed[at] = value;
                if let Ok(message) = decode_uplink(&changed) {
                    let again = codec::to_vec(&message);
                    let back = decode_uplink(&again).expect("a re-encoded uplink decodes");
                    assert_eq!(codec::to_vec(&back), again, "{name}: [{at}] = {value:#04x}");
                }
                if let Ok(message) = decode_downlink(&changed) {
                    let again = codec::to_vec(&message);
                    let back = decode_downlink(&again).expect("a re-encoded downlink decodes");
                    assert_eq!(codec::to_vec(&back), again, "{name}: [{at}] = {value:#04x}");
                }
            }
            changed[at] = bytes[at];
        }
    }
}

#[test]
fn frame_header_of_four_gigabytes() {
    let limit = u32::try_from(MAX_FRAME_LEN).expect("the limit fits u32");
    let header = u32::MAX.to_be_bytes();
    let too_large = Err(FrameError::TooLarge {
        declared: u32::MAX,
        max: limit,
    });
    // Refused with the header alone, before any body is present.
    assert_eq!(frame::find_frame(&header, MAX_FRAME_LEN), too_large);
    let mut stream = header.to_vec();
    stream.extend_from_slice(&[0; 100]);
    assert_eq!(frame::find_frame(&stream, MAX_FRAME_LEN), too_large);

    // One byte over the limit, with or without the body.
    let mut stream = (limit + 1).to_be_bytes().to_vec();
    let too_large = Err(FrameError::TooLarge {
        declared: limit + 1,
        max: limit,
    });
    assert_eq!(frame::find_frame(&stream, MAX_FRAME_LEN), too_large);
    stream.resize(HEADER_LEN + MAX_FRAME_LEN + 1, 0);
    assert_eq!(frame::find_frame(&stream, MAX_FRAME_LEN), too_large);

    // Other limits.
    assert_eq!(frame::find_frame(&header, usize::MAX), Ok(None));
    assert_eq!(
        frame::find_frame(&header, 16),
        Err(FrameError::TooLarge {
            declared: u32::MAX,
            max: 16
        })
    );
    assert_eq!(
        frame::find_frame(&[0, 0, 0, 1], 0),
        Err(FrameError::TooLarge {
            declared: 1,
            max: 0
        })
    );
}

#[test]
fn frame_of_zero_length() {
    assert_eq!(
        frame::find_frame(&[0; 4], MAX_FRAME_LEN),
        Err(FrameError::Empty)
    );
    assert_eq!(
        frame::find_frame(&[0; 100], MAX_FRAME_LEN),
        Err(FrameError::Empty)
    );
    assert_eq!(frame::find_frame(&[0; 4], 0), Err(FrameError::Empty));
}

#[test]
fn partial_frame_headers_need_more() {
    let limit = u32::try_from(MAX_FRAME_LEN).expect("the limit fits u32");
    for header in [0, 1, limit, limit + 1, u32::MAX] {
        let bytes = header.to_be_bytes();
        for len in 0..HEADER_LEN {
            assert_eq!(
                frame::find_frame(&bytes[..len], MAX_FRAME_LEN),
                Ok(None),
                "{len} bytes of header {header:#x}"
            );
        }
    }
}

/// A complete header with a partial body waits for more; the whole frame
/// is found, and nothing of the next frame is taken.
#[test]
fn partial_frame_bodies_need_more() {
    let mut out = vec![0; HEADER_LEN + MAX_FRAME_LEN];
    for (name, body) in samples::uplinks() {
        let len = frame::encode_frame(&Envelope::new(1, body), &mut out, MAX_FRAME_LEN)
            .expect("samples fit a frame");
        let mut stream = out[..len].to_vec();
        for cut in HEADER_LEN..len {
            assert_eq!(
                frame::find_frame(&stream[..cut], MAX_FRAME_LEN),
                Ok(None),
                "{name}"
            );
        }
        // Followed by a header of four gigabytes.
        stream.extend_from_slice(&[0xff; 10]);
        let body = frame::find_frame(&stream, MAX_FRAME_LEN)
            .expect("a valid header")
            .expect("a complete frame");
        assert_eq!(body, HEADER_LEN..len, "{name}");
        assert!(decode_uplink(&stream[body]).is_ok(), "{name}");
        assert!(matches!(
            frame::find_frame(&stream[len..], MAX_FRAME_LEN),
            Err(FrameError::TooLarge { .. })
        ));
    }
}

/// A frame of the largest size with a body that is not a message.
#[test]
fn frame_of_the_largest_size_with_garbage() {
    let mut stream = u32::try_from(MAX_FRAME_LEN)
        .expect("the limit fits u32")
        .to_be_bytes()
        .to_vec();
    stream.resize(HEADER_LEN + MAX_FRAME_LEN, 0xff);
    let body = frame::find_frame(&stream, MAX_FRAME_LEN)
        .expect("within the limit")
        .expect("complete");
    check_both(
        "4096 break bytes",
        &stream[body],
        Is(DecodeError::Malformed { at: 0 }),
    );
}

/// `data: bstr .size (0..2048)`: a longer chunk is refused even though
/// it fits a frame.
#[test]
fn chunks_beyond_their_bound_are_refused() {
    let data = vec![0u8; MAX_CHUNK_LEN + 1];
    let bytes = codec::to_vec(&Envelope::new(
        1,
        Downlink::DeployChunk(DeployChunk {
            deployment: DeploymentId(1),
            offset: 0,
            data: &data,
        }),
    ));
    assert!(bytes.len() <= MAX_FRAME_LEN);
    assert!(
        matches!(decode_downlink(&bytes), Err(DecodeError::Malformed { .. })),
        "a chunk of {} bytes decoded",
        data.len()
    );
}

/// Regressions found by fuzzing.
mod fuzz_regressions {
    use super::*;

    /// The well-formedness check once added an array's count to the items
    /// still pending without checking for overflow: with another item
    /// pending, a count of 2^64 - 1 panicked with debug assertions, and
    /// wrapped around without them.
    #[test]
    fn counts_of_two_to_the_64_with_items_pending() {
        let max = "ffffffffffffffff";
        for encoded in [
            format!("82 9b{max}"),
            format!("82 9b{max} 00"),
            "84 00 bb7fffffffffffffff 00".to_owned(),
            format!("{ENVELOPE_UNKNOWN_KEY} 82 9b{max}"),
            format!("{ENVELOPE_UNKNOWN_KEY} 82 9b{max} 00"),
            format!("{ENVELOPE_HEAD} 83 02 9b{max} 00"),
        ] {
            check_both(&encoded, &unhex(&encoded), TRUNCATED);
        }
    }
}

/// A map with a key twice is refused with `DuplicateKey`, at the top level
/// of the envelope, inside a message and under an unknown key, in both
/// directions; the same bytes without the repeat decode.
#[test]
fn duplicate_keys_are_refused() {
    let dup = |at| Is(DecodeError::DuplicateKey { at });
    check_both(
        "a valid goodbye",
        &unhex("a3 00 01 01 01 02 82 06 a1 00 02"),
        Expect::Ok,
    );
    check_both(
        "the id twice",
        &unhex("a4 00 01 01 01 01 02 02 82 06 a1 00 02"),
        dup(5),
    );
    check_both(
        "a small key in a longer form",
        &unhex("a4 00 01 01 01 1801 02 02 82 06 a1 00 02"),
        dup(5),
    );
    check_both(
        "a key twice in the message",
        &unhex("a3 00 01 01 01 02 82 06 a2 00 02 00 03"),
        dup(11),
    );
    check_both(
        "text keys twice under an unknown key",
        &unhex("a4 00 01 01 01 02 82 06 a1 00 02 1863 a2 6161 00 6161 00"),
        dup(17),
    );
    check_both(
        "the body key first and last",
        &unhex("a4 02 82 06 a1 00 02 00 01 01 01 02 82 06 a1 00 02"),
        dup(11),
    );
}
