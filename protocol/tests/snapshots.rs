//! Wire snapshots: the hex encoding of every sample message.
//!
//! Any change to how a message is encoded shows up as a snapshot diff that
//! has to be reviewed (and accepted with `cargo insta review`, or by
//! re-running with `INSTA_UPDATE=always`). Every snapshot is also decoded
//! back, so a test fails when the encoding and decoding disagree.
//!
//! The other tests pin the compatibility rules of the wire format: unknown
//! codes survive a decode/encode round trip, and unknown map keys (optional
//! fields added by a newer peer) are ignored.

use std::collections::BTreeSet;

use minicbor::Encoder;
use wasmbed_protocol::codec::{self, decode_downlink, decode_uplink};
use wasmbed_protocol::samples::{self, downlinks, uplinks};
use wasmbed_protocol::*;

/// Hex digits per snapshot line (32 bytes), so that a changed byte shows
/// as a one-line diff instead of a rewritten wall of hex.
const LINE_LEN: usize = 64;

/// Lowercase hex of `bytes`, wrapped into lines of [`LINE_LEN`] digits.
fn hex_lines(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    digits
        .as_bytes()
        .chunks(LINE_LEN)
        .map(|line| std::str::from_utf8(line).expect("hex digits are ASCII"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The bytes of a [`hex_lines`] string.
fn parse_hex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(digits.len() % 2 == 0, "odd number of hex digits");
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("hex digits are ASCII");
            u8::from_str_radix(pair, 16).expect("valid hex digit pair")
        })
        .collect()
}

/// Snapshots `envelope`'s encoding as `name` and checks that the
/// snapshotted bytes decode back to `envelope`.
fn check_uplink(name: &str, envelope: &Envelope<Uplink<'_>>) {
    let hex = hex_lines(&codec::to_vec(envelope));
    insta::assert_snapshot!(name.to_owned(), hex);
    let bytes = parse_hex(&hex);
    let decoded = decode_uplink(&bytes)
        .unwrap_or_else(|e| panic!("snapshot {name} does not decode: {e} ({e:?})"));
    assert_eq!(
        &decoded, envelope,
        "snapshot {name} decodes to another message"
    );
}

/// Like [`check_uplink`], for messages of the gateway.
fn check_downlink(name: &str, envelope: &Envelope<Downlink<'_>>) {
    let hex = hex_lines(&codec::to_vec(envelope));
    insta::assert_snapshot!(name.to_owned(), hex);
    let bytes = parse_hex(&hex);
    let decoded = decode_downlink(&bytes)
        .unwrap_or_else(|e| panic!("snapshot {name} does not decode: {e} ({e:?})"));
    assert_eq!(
        &decoded, envelope,
        "snapshot {name} decodes to another message"
    );
}

/// Position of a variant in its enum. The match has no wildcard, so adding
/// a message variant breaks this test until the samples cover it.
fn uplink_variant(m: &Uplink<'_>) -> usize {
    match m {
        Uplink::EnrollRequest(_) => 0,
        Uplink::SessionStart(_) => 1,
        Uplink::Heartbeat(_) => 2,
        Uplink::DeployStatus(_) => 3,
        Uplink::ExecutionResult(_) => 4,
        Uplink::Error(_) => 5,
        Uplink::Goodbye(_) => 6,
    }
}
const UPLINK_VARIANTS: usize = 7;

/// See [`uplink_variant`].
fn downlink_variant(m: &Downlink<'_>) -> usize {
    match m {
        Downlink::EnrollChallenge(_) => 0,
        Downlink::EnrollResponse(_) => 1,
        Downlink::SessionAccept(_) => 2,
        Downlink::HeartbeatAck(_) => 3,
        Downlink::DeployStart(_) => 4,
        Downlink::DeployChunk(_) => 5,
        Downlink::DeployCommit(_) => 6,
        Downlink::Stop(_) => 7,
        Downlink::Remove(_) => 8,
        Downlink::Error(_) => 9,
        Downlink::Goodbye(_) => 10,
    }
}
const DOWNLINK_VARIANTS: usize = 11;

#[test]
fn samples_cover_every_variant_once_by_name() {
    let up = uplinks();
    let names: BTreeSet<_> = up.iter().map(|(name, _)| *name).collect();
    assert_eq!(names.len(), up.len(), "duplicate uplink sample name");
    let variants: BTreeSet<_> = up.iter().map(|(_, m)| uplink_variant(m)).collect();
    assert_eq!(variants, (0..UPLINK_VARIANTS).collect());

    let down = downlinks();
    let names: BTreeSet<_> = down.iter().map(|(name, _)| *name).collect();
    assert_eq!(names.len(), down.len(), "duplicate downlink sample name");
    let variants: BTreeSet<_> = down.iter().map(|(_, m)| downlink_variant(m)).collect();
    assert_eq!(variants, (0..DOWNLINK_VARIANTS).collect());
}

#[test]
fn uplink_snapshots() {
    for (name, message) in uplinks() {
        check_uplink(&format!("uplink_{name}"), &Envelope::new(1, message));
    }
}

#[test]
fn downlink_snapshots() {
    for (name, message) in downlinks() {
        check_downlink(&format!("downlink_{name}"), &Envelope::new(1, message));
    }
}

/// `reply_to` is absent from every other snapshot.
#[test]
fn reply_snapshot() {
    let (_, ack) = downlinks()
        .into_iter()
        .find(|(name, _)| *name == "heartbeat_ack")
        .expect("a heartbeat_ack sample");
    check_downlink("downlink_heartbeat_ack_reply", &Envelope::reply(2, 1, ack));
}

// ---------------------------------------------------------------------------
// Hand-built messages, as a peer with a newer build of the protocol sends
// them. Each builder is first checked against the encoding of the same
// message by this build, so the tests below change only what they mean to.

/// The envelope of `Envelope::new(1, body)`, plus `extra` unknown entries
/// written by `extra_fields` after the known ones.
fn envelope_bytes(
    extra: u64,
    body: impl FnOnce(&mut Encoder<&mut Vec<u8>>),
    extra_fields: impl FnOnce(&mut Encoder<&mut Vec<u8>>),
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    e.map(3 + extra).expect("write to Vec");
    e.u32(0)
        .expect("write to Vec")
        .u16(1)
        .expect("write to Vec");
    e.u32(1)
        .expect("write to Vec")
        .u32(1)
        .expect("write to Vec");
    e.u32(2).expect("write to Vec");
    body(&mut e);
    extra_fields(&mut e);
    out
}

/// `Uplink::DeployStatus` of deployment 7, `Failed` with the given code.
fn deploy_failed_bytes(code: u16) -> Vec<u8> {
    envelope_bytes(
        0,
        |e| {
            // Uplink::DeployStatus(DeployStatus { .. })
            e.array(2)
                .expect("write to Vec")
                .u32(3)
                .expect("write to Vec");
            e.map(2).expect("write to Vec");
            e.u32(0)
                .expect("write to Vec")
                .u64(7)
                .expect("write to Vec");
            // DeployState::Failed { reason }
            e.u32(1).expect("write to Vec");
            e.array(2)
                .expect("write to Vec")
                .u32(6)
                .expect("write to Vec");
            e.u16(code).expect("write to Vec");
        },
        |_| {},
    )
}

/// `Uplink::Error` with the given code and detail.
fn error_bytes(code: u16, detail: &str) -> Vec<u8> {
    envelope_bytes(
        0,
        |e| {
            e.array(2)
                .expect("write to Vec")
                .u32(5)
                .expect("write to Vec");
            e.map(2).expect("write to Vec");
            e.u32(0)
                .expect("write to Vec")
                .u16(code)
                .expect("write to Vec");
            e.u32(1)
                .expect("write to Vec")
                .str(detail)
                .expect("write to Vec");
        },
        |_| {},
    )
}

fn deploy_failed(reason: DeployFailure) -> Envelope<Uplink<'static>> {
    Envelope::new(
        1,
        Uplink::DeployStatus(DeployStatus {
            deployment: DeploymentId(7),
            state: DeployState::Failed { reason },
        }),
    )
}

fn error(code: ErrorCode, detail: &str) -> Envelope<Uplink<'static>> {
    Envelope::new(
        1,
        Uplink::Error(ErrorMessage {
            code,
            detail: Some(heapless::String::try_from(detail).expect("detail fits")),
        }),
    )
}

#[test]
fn hand_built_messages_match_this_build() {
    let failed = deploy_failed(DeployFailure::HashMismatch);
    assert_eq!(deploy_failed_bytes(0), codec::to_vec(&failed));
    let sample = uplinks()
        .into_iter()
        .find(|(name, _)| *name == "deploy_status_failed")
        .expect("a deploy_status_failed sample")
        .1;
    assert_eq!(failed.body, sample);

    assert_eq!(
        error_bytes(5, "deployment 9"),
        codec::to_vec(&error(ErrorCode::UnknownDeployment, "deployment 9"))
    );
}

/// The code after the largest of `known`.
fn past_known(known: impl Iterator<Item = u16>) -> u16 {
    known.max().expect("an enum has known codes") + 1
}

#[test]
fn wire_enums_keep_unknown_codes() {
    // Codes just past the known ones, and the largest the wire allows.
    let failure_codes = [
        past_known(DeployFailure::ALL.iter().map(|k| k.code())),
        200,
        u16::MAX,
    ];
    for code in failure_codes {
        assert!(DeployFailure::ALL.iter().all(|known| known.code() != code));
        let bytes = deploy_failed_bytes(code);
        let decoded = decode_uplink(&bytes).expect("an unknown failure code decodes");
        assert_eq!(decoded, deploy_failed(DeployFailure::Unknown(code)));
        assert_eq!(codec::to_vec(&decoded), bytes, "code {code} re-encodes");
    }

    let error_codes = [
        past_known(ErrorCode::ALL.iter().map(|k| k.code())),
        4242,
        u16::MAX,
    ];
    for code in error_codes {
        assert!(ErrorCode::ALL.iter().all(|known| known.code() != code));
        let bytes = error_bytes(code, "from the future");
        let decoded = decode_uplink(&bytes).expect("an unknown error code decodes");
        assert_eq!(decoded, error(ErrorCode::Unknown(code), "from the future"));
        assert_eq!(codec::to_vec(&decoded), bytes, "code {code} re-encodes");
    }

    // Known codes decode to their named variant, never to `Unknown`.
    for &known in DeployFailure::ALL {
        let bytes = deploy_failed_bytes(known.code());
        let decoded = decode_uplink(&bytes).expect("decodes");
        assert_eq!(decoded, deploy_failed(known));
    }
    for &known in ErrorCode::ALL {
        let bytes = error_bytes(known.code(), "x");
        let decoded = decode_uplink(&bytes).expect("decodes");
        assert_eq!(decoded, error(known, "x"));
    }
}

/// Writes a value of a field this build does not know: a nested map with
/// an array, text, bytes and a float, so skipping it has to skip all kinds.
fn unknown_field(e: &mut Encoder<&mut Vec<u8>>, key: u32) {
    e.u32(key).expect("write to Vec");
    e.map(3).expect("write to Vec");
    e.u32(0).expect("write to Vec");
    e.array(3).expect("write to Vec");
    e.u8(1).expect("write to Vec");
    e.str("two").expect("write to Vec");
    e.bytes(&[3, 3, 3]).expect("write to Vec");
    e.u32(1)
        .expect("write to Vec")
        .f64(0.25)
        .expect("write to Vec");
    e.u32(2)
        .expect("write to Vec")
        .null()
        .expect("write to Vec");
}

#[test]
fn unknown_map_keys_are_ignored() {
    // Downlink::HeartbeatAck with a new optional field in the message and
    // another in the envelope.
    let build = |extra: bool| {
        envelope_bytes(
            u64::from(extra),
            |e| {
                e.array(2)
                    .expect("write to Vec")
                    .u32(3)
                    .expect("write to Vec");
                e.map(2 + u64::from(extra)).expect("write to Vec");
                e.u32(0).expect("write to Vec");
                e.u64(1_764_253_000_000).expect("write to Vec");
                if extra {
                    // Unknown keys may come before known ones, too.
                    unknown_field(e, 17);
                }
                e.u32(1)
                    .expect("write to Vec")
                    .u32(10_000)
                    .expect("write to Vec");
            },
            |e| {
                if extra {
                    unknown_field(e, 9);
                }
            },
        )
    };
    let sample = Envelope::new(
        1,
        downlinks()
            .into_iter()
            .find(|(name, _)| *name == "heartbeat_ack")
            .expect("a heartbeat_ack sample")
            .1,
    );
    assert_eq!(build(false), codec::to_vec(&sample));

    let newer = build(true);
    let decoded = decode_downlink(&newer).expect("a message with unknown fields decodes");
    assert_eq!(decoded, sample);
    // What this build does not know, it does not send on.
    assert_eq!(codec::to_vec(&decoded), build(false));
}

#[test]
fn unknown_map_keys_in_nested_structs_are_ignored() {
    // Uplink::Heartbeat whose AppStatus carries a new field.
    let sample = samples::heartbeat();
    let build = |extra: bool| {
        envelope_bytes(
            0,
            |e| {
                e.array(2)
                    .expect("write to Vec")
                    .u32(2)
                    .expect("write to Vec");
                e.map(3).expect("write to Vec");
                e.u32(0)
                    .expect("write to Vec")
                    .u64(123_456)
                    .expect("write to Vec");
                e.u32(1)
                    .expect("write to Vec")
                    .u32(40_960)
                    .expect("write to Vec");
                e.u32(2)
                    .expect("write to Vec")
                    .array(1)
                    .expect("write to Vec");
                e.map(3 + u64::from(extra)).expect("write to Vec");
                e.u32(0)
                    .expect("write to Vec")
                    .u64(7)
                    .expect("write to Vec");
                e.u32(1)
                    .expect("write to Vec")
                    .u64(3)
                    .expect("write to Vec");
                e.u32(2)
                    .expect("write to Vec")
                    .u16(1)
                    .expect("write to Vec");
                if extra {
                    unknown_field(e, 3);
                }
            },
            |_| {},
        )
    };
    let expected = Envelope::new(1, Uplink::Heartbeat(sample));
    assert_eq!(build(false), codec::to_vec(&expected));

    let bytes = build(true);
    let decoded = decode_uplink(&bytes).expect("a message with unknown fields decodes");
    assert_eq!(decoded, expected);
}
