//! Checks the crate's real encodings against `wasmbed.cddl`, the normative
//! schema, and checks that the schema is not looser than the crate.
//!
//! The `cddl` crate validates against the first rule of a document, so each
//! check puts a root rule (`uplink-envelope`, `downlink-envelope` or the rule
//! of one message) in front of the schema.
//!
//! Blind spots of the `cddl` 0.10 validator, which accepts more than the
//! schema says (the schema is right; these cases are not tested):
//! - controls such as `uint .le 65535` or `bstr .size 32` check only the
//!   bound, not the type before the control: a negative number passes
//!   `uint .le N`, and `i32`/`i64` accept any integer;
//! - an occurrence such as `[0*4 value]` is not checked when the items are
//!   arrays;
//! - a map nested in an array (a message in its `[index, message]` body) is
//!   not checked for keys the schema does not have, so those checks
//!   validate the message against its own rule;
//! - a group choice inside an array (`enroll-response`, `value`) checks the
//!   array's length against any choice, not the one that matched.

use std::cell::RefCell;
use std::collections::HashMap;

use cddl::ast::CDDL;
use cddl::validator::Validator as _;
use cddl::validator::cbor::CBORValidator;
use ciborium::Value as Cbor;
use wasmbed_protocol::codec::{self, DecodeError};
use wasmbed_protocol::*;

const SCHEMA: &str = include_str!("../wasmbed.cddl");
const PROTOCOL_DOC: &str = include_str!("../../docs/protocol.md");

const UP: &str = "uplink-envelope";
const DOWN: &str = "downlink-envelope";

thread_local! {
    /// The schema parsed with each root rule; parsing takes a while.
    static SCHEMAS: RefCell<HashMap<String, &'static CDDL<'static>>> =
        RefCell::new(HashMap::new());
}

/// The schema with `root` as its first rule.
fn schema(root: &str) -> &'static CDDL<'static> {
    SCHEMAS.with(|schemas| {
        *schemas
            .borrow_mut()
            .entry(root.to_string())
            .or_insert_with(|| {
                // Leaked: a handful of parsed schemas live as long as the tests.
                let text = format!("wasmbed-test-root = {root}\n\n{SCHEMA}").leak();
                let parsed = cddl::cddl_from_str(text, true)
                    .unwrap_or_else(|e| panic!("wasmbed.cddl does not parse: {e}"));
                Box::leak(Box::new(parsed))
            })
    })
}

/// Validates `bytes` against rule `root` of the schema.
fn validate(root: &str, bytes: &[u8]) -> Result<(), String> {
    let value: Cbor =
        ciborium::from_reader(bytes).map_err(|e| format!("not one CBOR item: {e}"))?;
    CBORValidator::new(schema(root), value, None)
        .validate()
        .map_err(|e| e.to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[track_caller]
fn assert_valid(root: &str, what: &str, bytes: &[u8]) {
    if let Err(e) = validate(root, bytes) {
        panic!("{what} does not match {root}\n  cbor: {}\n{e}", hex(bytes));
    }
}

#[track_caller]
fn assert_invalid(root: &str, what: &str, bytes: &[u8]) {
    assert!(
        validate(root, bytes).is_err(),
        "{what} matches {root} but must not\n  cbor: {}",
        hex(bytes)
    );
}

fn up_bytes(envelope: &Envelope<Uplink<'_>>) -> Vec<u8> {
    codec::to_vec(envelope)
}

fn down_bytes(envelope: &Envelope<Downlink<'_>>) -> Vec<u8> {
    codec::to_vec(envelope)
}

/// Checks an uplink both ways: the schema accepts it and the crate decodes
/// it back to the same message.
#[track_caller]
fn check_uplink(what: &str, message: Uplink<'_>) {
    for envelope in [
        Envelope::new(1, message.clone()),
        Envelope::reply(u32::MAX, 0, message),
    ] {
        let bytes = up_bytes(&envelope);
        assert_valid(UP, what, &bytes);
        assert_eq!(
            codec::decode_uplink(&bytes).as_ref(),
            Ok(&envelope),
            "{what}: round trip"
        );
    }
}

#[track_caller]
fn check_downlink(what: &str, message: Downlink<'_>) {
    for envelope in [
        Envelope::new(1, message.clone()),
        Envelope::reply(u32::MAX, 0, message),
    ] {
        let bytes = down_bytes(&envelope);
        assert_valid(DOWN, what, &bytes);
        assert_eq!(
            codec::decode_downlink(&bytes).as_ref(),
            Ok(&envelope),
            "{what}: round trip"
        );
    }
}

// ---------------------------------------------------------------------------
// The samples

#[test]
fn every_uplink_sample_matches_the_schema() {
    for (name, message) in samples::uplinks() {
        for envelope in [
            Envelope::new(7, message.clone()),
            Envelope::reply(8, 7, message.clone()),
        ] {
            let bytes = up_bytes(&envelope);
            assert_valid(UP, name, &bytes);
            // The schema's own first rule takes either direction.
            assert_valid("frame-body", name, &bytes);
        }
    }
}

#[test]
fn every_downlink_sample_matches_the_schema() {
    for (name, message) in samples::downlinks() {
        for envelope in [
            Envelope::new(7, message.clone()),
            Envelope::reply(8, 7, message.clone()),
        ] {
            let bytes = down_bytes(&envelope);
            assert_valid(DOWN, name, &bytes);
            assert_valid("frame-body", name, &bytes);
        }
    }
}

#[test]
fn direction_matters() {
    // Bodies that only exist in one direction do not match the other.
    let heartbeat = up_bytes(&Envelope::new(1, Uplink::Heartbeat(samples::heartbeat())));
    assert_invalid(DOWN, "an uplink heartbeat", &heartbeat);
    let start = down_bytes(&Envelope::new(
        1,
        Downlink::DeployStart(samples::deploy_start()),
    ));
    assert_invalid(UP, "a downlink deploy start", &start);
}

// ---------------------------------------------------------------------------
// Edge values the crate can encode

/// `len` bytes of UTF-8 text made of two-byte characters where possible,
/// so that byte bounds, not character counts, are tested.
fn text(len: usize) -> String {
    let mut s = "é".repeat(len / 2);
    if len % 2 == 1 {
        s.push('x');
    }
    s
}

fn name(len: usize) -> Name {
    Name::try_from(text(len).as_str()).expect("within NAME_LEN")
}

fn all_apps() -> AppList {
    let states = AppState::ALL
        .iter()
        .copied()
        .chain([AppState::Unknown(u16::MAX)])
        .cycle();
    (0..MAX_APPS)
        .zip(states)
        .map(|(i, state)| AppStatus {
            deployment: DeploymentId(u64::MAX - i as u64),
            application: ApplicationId(i as u64),
            state,
        })
        .collect()
}

fn max_capabilities(runtime: RuntimeKind) -> Capabilities {
    Capabilities {
        runtime,
        runtime_version: name(NAME_LEN),
        max_module_size: u32::MAX,
        app_memory: u32::MAX,
        app_slots: u8::MAX,
    }
}

fn min_capabilities() -> Capabilities {
    Capabilities {
        runtime: RuntimeKind::Wasmi,
        runtime_version: Name::new(),
        max_module_size: 0,
        app_memory: 0,
        app_slots: 0,
    }
}

#[test]
fn edge_uplinks_match_the_schema() {
    for runtime in RuntimeKind::ALL
        .iter()
        .copied()
        .chain([RuntimeKind::Unknown(3), RuntimeKind::Unknown(u16::MAX)])
    {
        check_uplink(
            "enroll request, longest names",
            Uplink::EnrollRequest(EnrollRequest {
                public_key: [0xff; PUBLIC_KEY_LEN],
                proof: [0; SIGNATURE_LEN],
                device: DeviceInfo {
                    board: name(NAME_LEN),
                    firmware_version: name(NAME_LEN - 1),
                },
                capabilities: max_capabilities(runtime),
            }),
        );
    }
    check_uplink(
        "enroll request, empty names",
        Uplink::EnrollRequest(EnrollRequest {
            public_key: samples::PUBLIC_KEY,
            proof: [0; SIGNATURE_LEN],
            device: DeviceInfo {
                board: Name::new(),
                firmware_version: Name::new(),
            },
            capabilities: min_capabilities(),
        }),
    );
    check_uplink(
        "session start, most apps",
        Uplink::SessionStart(SessionStart {
            agent_version: name(NAME_LEN),
            capabilities: max_capabilities(RuntimeKind::Wamr),
            apps: all_apps(),
        }),
    );
    check_uplink(
        "session start, no apps",
        Uplink::SessionStart(SessionStart {
            agent_version: Name::new(),
            capabilities: min_capabilities(),
            apps: AppList::new(),
        }),
    );
    check_uplink(
        "heartbeat, largest numbers",
        Uplink::Heartbeat(Heartbeat {
            uptime: Millis(u64::MAX),
            free_memory: u32::MAX,
            apps: all_apps(),
        }),
    );
    check_uplink(
        "heartbeat, zeros",
        Uplink::Heartbeat(Heartbeat {
            uptime: Millis(0),
            free_memory: 0,
            apps: AppList::new(),
        }),
    );

    let failures = DeployFailure::ALL
        .iter()
        .copied()
        .chain([DeployFailure::Unknown(10), DeployFailure::Unknown(u16::MAX)])
        .map(|reason| DeployState::Failed { reason });
    let states = [
        DeployState::Accepted { resume_offset: 0 },
        DeployState::Accepted {
            resume_offset: u32::MAX,
        },
        DeployState::Progress { bytes_held: 0 },
        DeployState::Progress {
            bytes_held: u32::MAX,
        },
        DeployState::Installed,
        DeployState::Running,
        DeployState::Stopped,
        DeployState::Removed,
    ];
    for state in states.into_iter().chain(failures) {
        check_uplink(
            &format!("deploy status {state:?}"),
            Uplink::DeployStatus(DeployStatus {
                deployment: DeploymentId(u64::MAX),
                state,
            }),
        );
    }

    let results = [
        Value::I32(i32::MIN),
        Value::I64(i64::MIN),
        Value::F32(f32::MAX),
        Value::F64(f64::MIN_POSITIVE),
    ];
    let more_results = [
        Value::I32(i32::MAX),
        Value::I64(i64::MAX),
        Value::F32(f32::INFINITY),
        Value::F64(-0.0),
    ];
    let logs = (0..MAX_LOG_LINES)
        .map(|i| LogLine::truncated(Box::leak(text(LOG_LINE_LEN - i).into_boxed_str())))
        .collect();
    for values in [&results[..], &more_results[..], &[]] {
        check_uplink(
            "execution result, returned",
            Uplink::ExecutionResult(ExecutionResult {
                deployment: DeploymentId(0),
                invocation: u32::MAX,
                outcome: Outcome::Returned(values.iter().copied().collect()),
                fuel_used: u64::MAX,
                duration_us: u64::MAX,
                logs: heapless::Vec::clone(&logs),
                logs_truncated: true,
            }),
        );
    }
    for trap in TrapCode::ALL
        .iter()
        .copied()
        .chain([TrapCode::Unknown(13), TrapCode::Unknown(u16::MAX)])
    {
        check_uplink(
            &format!("execution result, trapped {trap:?}"),
            Uplink::ExecutionResult(ExecutionResult {
                deployment: DeploymentId(1),
                invocation: 1,
                outcome: Outcome::Trapped(trap),
                fuel_used: 0,
                duration_us: 0,
                logs: heapless::Vec::new(),
                logs_truncated: false,
            }),
        );
    }

    for (code, detail) in error_cases() {
        check_uplink(
            &format!("error {code:?}"),
            Uplink::Error(ErrorMessage { code, detail }),
        );
    }
    for reason in goodbye_reasons() {
        check_uplink(
            &format!("goodbye {reason:?}"),
            Uplink::Goodbye(Goodbye { reason }),
        );
    }
}

fn error_cases() -> Vec<(ErrorCode, Option<heapless::String<DETAIL_LEN>>)> {
    let details = [
        None,
        Some(heapless::String::new()),
        heapless::String::try_from(text(DETAIL_LEN).as_str()).ok(),
    ];
    ErrorCode::ALL
        .iter()
        .copied()
        .chain([ErrorCode::Unknown(9), ErrorCode::Unknown(u16::MAX)])
        .zip(details.into_iter().cycle())
        .collect()
}

fn goodbye_reasons() -> impl Iterator<Item = GoodbyeReason> {
    GoodbyeReason::ALL
        .iter()
        .copied()
        .chain([GoodbyeReason::Unknown(6), GoodbyeReason::Unknown(u16::MAX)])
}

#[test]
fn edge_downlinks_match_the_schema() {
    check_downlink(
        "enroll challenge",
        Downlink::EnrollChallenge(EnrollChallenge {
            nonce: [0; NONCE_LEN],
        }),
    );
    let certificate = vec![0x30; 2000];
    for certificate in [&certificate[..], &[]] {
        check_downlink(
            "enroll accepted",
            Downlink::EnrollResponse(EnrollResponse::Accepted {
                device_id: DeviceId([0; 16]),
                certificate,
            }),
        );
    }
    for reason in EnrollRefusal::ALL
        .iter()
        .copied()
        .chain([EnrollRefusal::Unknown(7), EnrollRefusal::Unknown(u16::MAX)])
    {
        check_downlink(
            &format!("enroll refused {reason:?}"),
            Downlink::EnrollResponse(EnrollResponse::Refused { reason }),
        );
    }
    check_downlink(
        "session accept",
        Downlink::SessionAccept(SessionAccept {
            device_id: DeviceId([0xff; 16]),
            server_time: Millis(u64::MAX),
            heartbeat_interval_ms: u32::MAX,
        }),
    );
    check_downlink(
        "heartbeat ack",
        Downlink::HeartbeatAck(HeartbeatAck {
            server_time: Millis(0),
            next_interval_ms: 0,
        }),
    );
    let args = [
        Value::I32(-1),
        Value::I64(i64::MAX),
        Value::F32(f32::MIN_POSITIVE),
        Value::F64(f64::NEG_INFINITY),
    ];
    let all_args: heapless::Vec<Value, MAX_ARGS> =
        args.iter().chain(args.iter()).copied().collect();
    for (entry, args) in [
        (text(ENTRY_LEN), all_args),
        (String::new(), heapless::Vec::new()),
    ] {
        check_downlink(
            "deploy start",
            Downlink::DeployStart(DeployStart {
                deployment: DeploymentId(u64::MAX),
                application: ApplicationId(u64::MAX),
                module_size: u32::MAX,
                sha256: [0xee; 32],
                chunk_size: u16::MAX,
                limits: Limits {
                    fuel: u64::MAX,
                    memory_pages: u16::MAX,
                    entry: heapless::String::try_from(entry.as_str()).expect("within ENTRY_LEN"),
                    args,
                },
            }),
        );
    }
    let data = samples::chunk_data(MAX_CHUNK_LEN);
    for data in [&data[..], &[]] {
        check_downlink(
            "deploy chunk",
            Downlink::DeployChunk(DeployChunk {
                deployment: DeploymentId(0),
                offset: u32::MAX,
                data,
            }),
        );
    }
    let deployment = DeploymentId(u64::MAX);
    check_downlink(
        "deploy commit",
        Downlink::DeployCommit(DeployCommit { deployment }),
    );
    check_downlink("stop", Downlink::Stop(StopApp { deployment }));
    check_downlink("remove", Downlink::Remove(RemoveApp { deployment }));
    for (code, detail) in error_cases() {
        check_downlink(
            &format!("error {code:?}"),
            Downlink::Error(ErrorMessage { code, detail }),
        );
    }
    for reason in goodbye_reasons() {
        check_downlink(
            &format!("goodbye {reason:?}"),
            Downlink::Goodbye(Goodbye { reason }),
        );
    }
}

// ---------------------------------------------------------------------------
// Hand-made CBOR the schema must refuse

/// A step into a CBOR value: a map key or an array index.
#[derive(Debug, Clone, Copy)]
enum Step {
    K(i64),
    I(usize),
}
use Step::{I, K};

/// The value at `path` within `value`.
fn at<'v>(value: &'v mut Cbor, path: &[Step]) -> &'v mut Cbor {
    path.iter().fold(value, |value, step| match (value, step) {
        (Cbor::Map(entries), K(key)) => entries
            .iter_mut()
            .find(|(k, _)| *k == Cbor::Integer((*key).into()))
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no key {key} in the map")),
        (Cbor::Array(items), I(index)) => items
            .get_mut(*index)
            .unwrap_or_else(|| panic!("no item {index} in the array")),
        (value, step) => panic!("cannot take {step:?} of {value:?}"),
    })
}

/// Removes key `key` from the map at `path`.
fn remove(value: &mut Cbor, path: &[Step], key: i64) {
    let Cbor::Map(entries) = at(value, path) else {
        panic!("not a map at {path:?}");
    };
    let before = entries.len();
    entries.retain(|(k, _)| *k != Cbor::Integer(key.into()));
    assert_eq!(entries.len() + 1, before, "key {key} to remove");
}

/// Inserts key `key` into the map at `path`.
fn insert(value: &mut Cbor, path: &[Step], key: Cbor, item: Cbor) {
    let Cbor::Map(entries) = at(value, path) else {
        panic!("not a map at {path:?}");
    };
    entries.push((key, item));
}

fn parse(bytes: &[u8]) -> Cbor {
    ciborium::from_reader(bytes).expect("the crate's encoding is CBOR")
}

fn encode(value: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("writing to a Vec");
    out
}

fn int(n: i128) -> Cbor {
    Cbor::Integer(n.try_into().expect("a CBOR integer"))
}

fn tstr(len: usize) -> Cbor {
    Cbor::Text(text(len))
}

fn bstr(len: usize) -> Cbor {
    Cbor::Bytes(vec![0x5a; len])
}

fn array(item: Cbor, len: usize) -> Cbor {
    Cbor::Array(vec![item; len])
}

/// The sample called `name`, as a CBOR value.
fn uplink_sample(name: &str) -> Cbor {
    let (_, message) = samples::uplinks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no uplink sample {name}"));
    parse(&up_bytes(&Envelope::new(1, message)))
}

fn downlink_sample(name: &str) -> Cbor {
    let (_, message) = samples::downlinks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no downlink sample {name}"));
    parse(&down_bytes(&Envelope::new(1, message)))
}

/// The path of the message index within an envelope.
const INDEX: &[Step] = &[K(2), I(0)];
/// The path of the message within an envelope.
const MESSAGE: &[Step] = &[K(2), I(1)];

/// The path of `path` within the message of an envelope.
fn payload(path: &[Step]) -> Vec<Step> {
    MESSAGE.iter().chain(path).copied().collect()
}

/// Decodes an envelope encoding as the crate does in direction `root`.
fn crate_decode(root: &str, bytes: &[u8]) -> Result<(), DecodeError> {
    match root {
        UP => codec::decode_uplink(bytes).map(|_| ()),
        _ => codec::decode_downlink(bytes).map(|_| ()),
    }
}

/// What the crate's decoder makes of bytes the schema refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crate {
    /// The decoder refuses them too.
    Refuses,
    /// The decoder accepts them: it is more lenient than the schema, which
    /// describes what a sender sends.
    Accepts,
    /// Not checked: what the decoder does is not part of the protocol.
    Unchecked,
}

/// A changed sample envelope that the schema must refuse.
struct Negative {
    what: &'static str,
    /// `UP` or `DOWN`: how the crate decodes the envelope.
    direction: &'static str,
    envelope: Cbor,
    /// The rule that must refuse the change, and the path of the value it
    /// checks: the envelope for the envelope rules, else the message.
    rule: &'static str,
    subject: &'static [Step],
    decoder: Crate,
}

/// A change to the envelope itself.
fn envelope_case(
    what: &'static str,
    direction: &'static str,
    mut envelope: Cbor,
    decoder: Crate,
    change: impl FnOnce(&mut Cbor),
) -> Negative {
    change(&mut envelope);
    Negative {
        what,
        direction,
        envelope,
        rule: direction,
        subject: &[],
        decoder,
    }
}

/// A change to the message, checked against the message's rule.
fn message_case(
    what: &'static str,
    rule: (&'static str, &'static str),
    envelope: Cbor,
    decoder: Crate,
    change: impl FnOnce(&mut Cbor),
) -> Negative {
    part_case(what, rule, envelope, MESSAGE, decoder, change)
}

/// A change to the value at `subject`, checked against its rule.
fn part_case(
    what: &'static str,
    (direction, rule): (&'static str, &'static str),
    mut envelope: Cbor,
    subject: &'static [Step],
    decoder: Crate,
    change: impl FnOnce(&mut Cbor),
) -> Negative {
    change(at(&mut envelope, subject));
    Negative {
        what,
        direction,
        envelope,
        rule,
        subject,
        decoder,
    }
}

#[test]
fn schema_refuses_what_the_crate_does_not_send() {
    use Crate::{Accepts, Refuses, Unchecked};
    let hb = || uplink_sample("heartbeat");
    let heartbeat = (UP, "heartbeat");
    let cases = [
        envelope_case("envelope without version", UP, hb(), Refuses, |v| {
            remove(v, &[], 0)
        }),
        envelope_case("envelope of version 2", UP, hb(), Refuses, |v| {
            *at(v, &[K(0)]) = int(2)
        }),
        envelope_case("envelope without id", UP, hb(), Refuses, |v| {
            remove(v, &[], 1)
        }),
        envelope_case("envelope with an id over u32", UP, hb(), Refuses, |v| {
            *at(v, &[K(1)]) = int(1 << 32);
        }),
        envelope_case("envelope without body", UP, hb(), Refuses, |v| {
            remove(v, &[], 2)
        }),
        envelope_case("envelope with reply_to as text", UP, hb(), Refuses, |v| {
            insert(v, &[], int(3), Cbor::Text("1".into()));
        }),
        envelope_case("envelope with a text key", UP, hb(), Refuses, |v| {
            insert(v, &[], Cbor::Text("version".into()), int(1));
        }),
        envelope_case("envelope as an array", UP, hb(), Refuses, |v| {
            let body = at(v, &[K(2)]).clone();
            *v = Cbor::Array(vec![int(1), int(1), body]);
        }),
        envelope_case("body as a map", UP, hb(), Refuses, |v| {
            let message = at(v, MESSAGE).clone();
            *at(v, &[K(2)]) = Cbor::Map(vec![(int(2), message)]);
        }),
        envelope_case("body without message", UP, hb(), Refuses, |v| {
            *at(v, &[K(2)]) = Cbor::Array(vec![int(2)]);
        }),
        envelope_case("unknown uplink message 7", UP, hb(), Refuses, |v| {
            *at(v, INDEX) = int(7)
        }),
        envelope_case(
            "unknown downlink message 11",
            DOWN,
            downlink_sample("goodbye"),
            Refuses,
            |v| {
                *at(v, INDEX) = int(11);
            },
        ),
        envelope_case(
            "heartbeat under the index of enroll request",
            UP,
            hb(),
            Refuses,
            |v| {
                *at(v, INDEX) = int(0);
            },
        ),
        message_case(
            "heartbeat, free memory as text",
            heartbeat,
            hb(),
            Refuses,
            |m| {
                *at(m, &[K(1)]) = Cbor::Text("40960".into());
            },
        ),
        message_case(
            "heartbeat, uptime as bytes",
            heartbeat,
            hb(),
            Refuses,
            |m| {
                *at(m, &[K(0)]) = bstr(8);
            },
        ),
        message_case(
            "heartbeat, negative uptime",
            heartbeat,
            hb(),
            Refuses,
            |m| {
                *at(m, &[K(0)]) = int(-1);
            },
        ),
        message_case(
            "heartbeat, uptime as a float",
            heartbeat,
            hb(),
            Refuses,
            |m| {
                *at(m, &[K(0)]) = Cbor::Float(1.0);
            },
        ),
        message_case(
            "heartbeat, free memory over u32",
            heartbeat,
            hb(),
            Refuses,
            |m| {
                *at(m, &[K(1)]) = int(1 << 32);
            },
        ),
        message_case("heartbeat, apps missing", heartbeat, hb(), Refuses, |m| {
            remove(m, &[], 2)
        }),
        message_case("heartbeat, apps as a map", heartbeat, hb(), Refuses, |m| {
            *at(m, &[K(2)]) = Cbor::Map(vec![]);
        }),
        message_case(
            "heartbeat, app without state",
            heartbeat,
            hb(),
            Refuses,
            |m| {
                remove(m, &[K(2), I(0)], 2);
            },
        ),
        message_case(
            "heartbeat, app state as text",
            heartbeat,
            hb(),
            Refuses,
            |m| {
                *at(m, &[K(2), I(0), K(2)]) = Cbor::Text("running".into());
            },
        ),
        // Receivers skip unknown keys, but version 1 senders send none.
        message_case(
            "heartbeat, a key this version does not have",
            heartbeat,
            hb(),
            Accepts,
            |m| {
                insert(m, &[], int(3), int(0));
            },
        ),
        part_case(
            "app status, a key this version does not have",
            (UP, "app-status"),
            hb(),
            &[K(2), I(1), K(2), I(0)],
            Accepts,
            |app| {
                insert(app, &[], int(3), int(0));
            },
        ),
        message_case("heartbeat, a text key", heartbeat, hb(), Refuses, |m| {
            insert(m, &[], Cbor::Text("x".into()), int(0));
        }),
        message_case("heartbeat as an array", heartbeat, hb(), Refuses, |m| {
            *m = Cbor::Array(vec![int(123_456), int(40_960), Cbor::Array(vec![])]);
        }),
        message_case(
            "session start, capabilities without runtime",
            (UP, "session-start"),
            uplink_sample("session_start"),
            Refuses,
            |m| {
                remove(m, &[K(1)], 0);
            },
        ),
        message_case(
            "deploy status, unknown state 7",
            (UP, "deploy-status"),
            uplink_sample("deploy_status_progress"),
            Refuses,
            |m| {
                *at(m, &[K(1)]) = Cbor::Array(vec![int(7)]);
            },
        ),
        message_case(
            "deploy status, progress without bytes",
            (UP, "deploy-status"),
            uplink_sample("deploy_status_progress"),
            Refuses,
            |m| {
                *at(m, &[K(1)]) = Cbor::Array(vec![int(1)]);
            },
        ),
        message_case(
            "deploy status, state as a code",
            (UP, "deploy-status"),
            uplink_sample("deploy_status_progress"),
            Refuses,
            |m| {
                *at(m, &[K(1)]) = int(2);
            },
        ),
        // The decoder skips extra fields of a flat variant with fields, so
        // that a newer peer may append fields to it.
        message_case(
            "deploy status, progress with a second field",
            (UP, "deploy-status"),
            uplink_sample("deploy_status_progress"),
            Accepts,
            |m| {
                *at(m, &[K(1)]) = Cbor::Array(vec![int(1), int(2048), int(0)]);
            },
        ),
        // The derived decoder does not skip extra fields of a variant
        // without fields: it leaves them in the stream (here: trailing bytes).
        message_case(
            "deploy status, installed with a field",
            (UP, "deploy-status"),
            uplink_sample("deploy_status_progress"),
            Unchecked,
            |m| {
                *at(m, &[K(1)]) = Cbor::Array(vec![int(2), int(0)]);
            },
        ),
        message_case(
            "execution result, logs_truncated as 0",
            (UP, "execution-result"),
            uplink_sample("execution_result_trapped"),
            Refuses,
            |m| {
                *at(m, &[K(6)]) = int(0);
            },
        ),
        message_case(
            "execution result, i32 value as a float",
            (UP, "execution-result"),
            uplink_sample("execution_result_trapped"),
            Refuses,
            |m| {
                *at(m, &[K(2)]) = returned(vec![Cbor::Array(vec![int(0), Cbor::Float(1.5)])]);
            },
        ),
        message_case(
            "execution result, f64 value as an integer",
            (UP, "execution-result"),
            uplink_sample("execution_result_trapped"),
            Refuses,
            |m| {
                *at(m, &[K(2)]) = returned(vec![Cbor::Array(vec![int(3), int(1)])]);
            },
        ),
        message_case(
            "execution result, unknown value type 4",
            (UP, "execution-result"),
            uplink_sample("execution_result_trapped"),
            Refuses,
            |m| {
                *at(m, &[K(2)]) = returned(vec![Cbor::Array(vec![int(4), int(1)])]);
            },
        ),
        message_case(
            "execution result, unknown outcome 2",
            (UP, "execution-result"),
            uplink_sample("execution_result_trapped"),
            Refuses,
            |m| {
                *at(m, &[K(2), I(0)]) = int(2);
            },
        ),
        message_case(
            "error, detail null",
            (UP, "error-message"),
            uplink_sample("error"),
            Accepts,
            |m| {
                *at(m, &[K(1)]) = Cbor::Null;
            },
        ),
        message_case(
            "error, without code",
            (UP, "error-message"),
            uplink_sample("error"),
            Refuses,
            |m| {
                remove(m, &[], 0);
            },
        ),
        message_case(
            "goodbye, reason as text",
            (UP, "goodbye"),
            uplink_sample("goodbye"),
            Refuses,
            |m| {
                *at(m, &[K(0)]) = Cbor::Text("normal".into());
            },
        ),
        message_case(
            "enroll accepted, certificate as text",
            (DOWN, "enroll-response"),
            downlink_sample("enroll_accepted"),
            Refuses,
            |m| {
                *at(m, &[I(2)]) = Cbor::Text("cert".into());
            },
        ),
        message_case(
            "enroll response, unknown outcome 2",
            (DOWN, "enroll-response"),
            downlink_sample("enroll_refused"),
            Refuses,
            |m| {
                *at(m, &[I(0)]) = int(2);
            },
        ),
        message_case(
            "enroll response as a map",
            (DOWN, "enroll-response"),
            downlink_sample("enroll_refused"),
            Refuses,
            |m| {
                *m = Cbor::Map(vec![(int(1), int(0))]);
            },
        ),
        message_case(
            "session accept, negative server time",
            (DOWN, "session-accept"),
            downlink_sample("session_accept"),
            Refuses,
            |m| {
                *at(m, &[K(1)]) = int(-5);
            },
        ),
        message_case(
            "deploy chunk, data as an array",
            (DOWN, "deploy-chunk"),
            downlink_sample("deploy_chunk"),
            Refuses,
            |m| {
                *at(m, &[K(2)]) = Cbor::Array(vec![int(0)]);
            },
        ),
        message_case(
            "deploy start, chunk size over u16",
            (DOWN, "deploy-start"),
            downlink_sample("deploy_start"),
            Refuses,
            |m| {
                *at(m, &[K(4)]) = int(65_536);
            },
        ),
        message_case(
            "deploy start, limits without entry",
            (DOWN, "deploy-start"),
            downlink_sample("deploy_start"),
            Refuses,
            |m| {
                remove(m, &[K(5)], 2);
            },
        ),
    ];
    for case in cases {
        let decoded = crate_decode(case.direction, &encode(&case.envelope));
        if case.decoder != Crate::Unchecked {
            assert_eq!(
                decoded.is_ok(),
                case.decoder == Crate::Accepts,
                "{}: the crate's decoder should be {:?}, got {decoded:?}",
                case.what,
                case.decoder
            );
        }
        let mut envelope = case.envelope;
        let subject = encode(at(&mut envelope, case.subject));
        assert_invalid(case.rule, case.what, &subject);
    }
}

/// `Outcome::Returned` with these values.
fn returned(values: Vec<Cbor>) -> Cbor {
    Cbor::Array(vec![int(0), Cbor::Array(values)])
}

/// One bound of the protocol: the schema accepts values at the bound and
/// refuses values past it, as the crate's decoder does.
struct Bound {
    what: &'static str,
    direction: &'static str,
    rule: &'static str,
    envelope: Cbor,
    /// Where the bounded value is within the message.
    path: &'static [Step],
    /// The value for a length or number.
    make: fn(usize) -> Cbor,
    within: &'static [usize],
    beyond: &'static [usize],
    /// The `cddl` crate cannot check this bound (see the top of the file).
    validator_blind: bool,
}

fn bound(
    what: &'static str,
    (direction, rule): (&'static str, &'static str),
    envelope: Cbor,
    path: &'static [Step],
    make: fn(usize) -> Cbor,
    within: &'static [usize],
    beyond: &'static [usize],
) -> Bound {
    Bound {
        what,
        direction,
        rule,
        envelope,
        path,
        make,
        within,
        beyond,
        validator_blind: false,
    }
}

fn app_status_value(_: usize) -> Cbor {
    Cbor::Map(vec![(int(0), int(1)), (int(1), int(2)), (int(2), int(3))])
}

fn number(n: usize) -> Cbor {
    int(n as i128)
}

#[test]
fn schema_bounds_match_the_crate() {
    const U32_MAX: usize = u32::MAX as usize;
    let up = uplink_sample;
    let down = downlink_sample;
    let enroll_request = (UP, "enroll-request");
    let session_start = (UP, "session-start");
    let execution_result = (UP, "execution-result");
    let deploy_start = (DOWN, "deploy-start");
    let bounds = [
        bound(
            "board name",
            enroll_request,
            up("enroll_request"),
            &[K(2), K(0)],
            tstr,
            &[0, NAME_LEN],
            &[NAME_LEN + 1],
        ),
        bound(
            "firmware version",
            enroll_request,
            up("enroll_request"),
            &[K(2), K(1)],
            tstr,
            &[NAME_LEN],
            &[NAME_LEN + 1],
        ),
        bound(
            "runtime version",
            enroll_request,
            up("enroll_request"),
            &[K(3), K(1)],
            tstr,
            &[NAME_LEN],
            &[NAME_LEN + 1],
        ),
        bound(
            "public key",
            enroll_request,
            up("enroll_request"),
            &[K(0)],
            bstr,
            &[PUBLIC_KEY_LEN],
            &[PUBLIC_KEY_LEN - 1, PUBLIC_KEY_LEN + 1, 33],
        ),
        bound(
            "proof",
            enroll_request,
            up("enroll_request"),
            &[K(1)],
            bstr,
            &[SIGNATURE_LEN],
            &[SIGNATURE_LEN - 1, SIGNATURE_LEN + 1],
        ),
        bound(
            "app slots",
            enroll_request,
            up("enroll_request"),
            &[K(3), K(4)],
            number,
            &[0, 255],
            &[256],
        ),
        bound(
            "runtime kind",
            enroll_request,
            up("enroll_request"),
            &[K(3), K(0)],
            number,
            &[3, 65_535],
            &[65_536],
        ),
        bound(
            "max module size",
            enroll_request,
            up("enroll_request"),
            &[K(3), K(2)],
            number,
            &[U32_MAX],
            &[U32_MAX + 1],
        ),
        bound(
            "agent version",
            session_start,
            up("session_start"),
            &[K(0)],
            tstr,
            &[NAME_LEN],
            &[NAME_LEN + 1],
        ),
        bound(
            "apps of a session start",
            session_start,
            up("session_start"),
            &[K(2)],
            |n| array(app_status_value(0), n),
            &[0, MAX_APPS],
            &[MAX_APPS + 1],
        ),
        bound(
            "apps of a heartbeat",
            (UP, "heartbeat"),
            up("heartbeat"),
            &[K(2)],
            |n| array(app_status_value(0), n),
            &[0, MAX_APPS],
            &[MAX_APPS + 1],
        ),
        bound(
            "app state",
            (UP, "heartbeat"),
            up("heartbeat"),
            &[K(2), I(0), K(2)],
            number,
            &[4, 65_535],
            &[65_536],
        ),
        bound(
            "free memory",
            (UP, "heartbeat"),
            up("heartbeat"),
            &[K(1)],
            number,
            &[U32_MAX],
            &[U32_MAX + 1],
        ),
        bound(
            "bytes held",
            (UP, "deploy-status"),
            up("deploy_status_progress"),
            &[K(1), I(1)],
            number,
            &[U32_MAX],
            &[U32_MAX + 1],
        ),
        bound(
            "deploy failure",
            (UP, "deploy-status"),
            up("deploy_status_failed"),
            &[K(1), I(1)],
            number,
            &[10, 65_535],
            &[65_536],
        ),
        bound(
            "log lines",
            execution_result,
            up("execution_result_trapped"),
            &[K(5)],
            |n| array(tstr(4), n),
            &[0, MAX_LOG_LINES],
            &[MAX_LOG_LINES + 1],
        ),
        bound(
            "log line",
            execution_result,
            up("execution_result_trapped"),
            &[K(5)],
            |n| array(tstr(n), 1),
            &[0, LOG_LINE_LEN],
            &[LOG_LINE_LEN + 1],
        ),
        Bound {
            validator_blind: true,
            ..bound(
                "results",
                execution_result,
                up("execution_result_trapped"),
                &[K(2)],
                |n| returned(vec![Cbor::Array(vec![int(1), int(-1)]); n]),
                &[0, MAX_RESULTS],
                &[MAX_RESULTS + 1],
            )
        },
        bound(
            "trap code",
            execution_result,
            up("execution_result_trapped"),
            &[K(2), I(1)],
            number,
            &[12, 65_535],
            &[65_536],
        ),
        bound(
            "invocation",
            execution_result,
            up("execution_result_trapped"),
            &[K(1)],
            number,
            &[U32_MAX],
            &[U32_MAX + 1],
        ),
        bound(
            "error detail",
            (UP, "error-message"),
            up("error"),
            &[K(1)],
            tstr,
            &[0, DETAIL_LEN],
            &[DETAIL_LEN + 1],
        ),
        bound(
            "error code",
            (UP, "error-message"),
            up("error"),
            &[K(0)],
            number,
            &[9, 65_535],
            &[65_536],
        ),
        bound(
            "goodbye reason",
            (UP, "goodbye"),
            up("goodbye"),
            &[K(0)],
            number,
            &[6, 65_535],
            &[65_536],
        ),
        bound(
            "nonce",
            (DOWN, "enroll-challenge"),
            down("enroll_challenge"),
            &[K(0)],
            bstr,
            &[NONCE_LEN],
            &[NONCE_LEN - 1, NONCE_LEN + 1],
        ),
        bound(
            "device id at enrollment",
            (DOWN, "enroll-response"),
            down("enroll_accepted"),
            &[I(1)],
            bstr,
            &[16],
            &[15, 17],
        ),
        bound(
            "refusal code",
            (DOWN, "enroll-response"),
            down("enroll_refused"),
            &[I(1)],
            number,
            &[6, 65_535],
            &[65_536],
        ),
        bound(
            "device id of a session",
            (DOWN, "session-accept"),
            down("session_accept"),
            &[K(0)],
            bstr,
            &[16],
            &[0, 17],
        ),
        bound(
            "heartbeat interval",
            (DOWN, "session-accept"),
            down("session_accept"),
            &[K(2)],
            number,
            &[U32_MAX],
            &[U32_MAX + 1],
        ),
        bound(
            "next interval",
            (DOWN, "heartbeat-ack"),
            down("heartbeat_ack"),
            &[K(1)],
            number,
            &[U32_MAX],
            &[U32_MAX + 1],
        ),
        bound(
            "module size",
            deploy_start,
            down("deploy_start"),
            &[K(2)],
            number,
            &[U32_MAX],
            &[U32_MAX + 1],
        ),
        bound(
            "module hash",
            deploy_start,
            down("deploy_start"),
            &[K(3)],
            bstr,
            &[32],
            &[31, 33],
        ),
        bound(
            "chunk size",
            deploy_start,
            down("deploy_start"),
            &[K(4)],
            number,
            &[65_535],
            &[65_536],
        ),
        bound(
            "memory pages",
            deploy_start,
            down("deploy_start"),
            &[K(5), K(1)],
            number,
            &[65_535],
            &[65_536],
        ),
        bound(
            "entry point",
            deploy_start,
            down("deploy_start"),
            &[K(5), K(2)],
            tstr,
            &[0, ENTRY_LEN],
            &[ENTRY_LEN + 1],
        ),
        Bound {
            validator_blind: true,
            ..bound(
                "arguments",
                deploy_start,
                down("deploy_start"),
                &[K(5), K(3)],
                |n| array(Cbor::Array(vec![int(0), int(7)]), n),
                &[0, MAX_ARGS],
                &[MAX_ARGS + 1],
            )
        },
        bound(
            "chunk offset",
            (DOWN, "deploy-chunk"),
            down("deploy_chunk"),
            &[K(1)],
            number,
            &[U32_MAX],
            &[U32_MAX + 1],
        ),
        bound(
            "chunk data",
            (DOWN, "deploy-chunk"),
            down("deploy_chunk"),
            &[K(2)],
            bstr,
            &[0, MAX_CHUNK_LEN],
            &[MAX_CHUNK_LEN + 1],
        ),
    ];
    for b in bounds {
        let cases = b.within.iter().map(|n| (*n, true));
        for (n, within) in cases.chain(b.beyond.iter().map(|n| (*n, false))) {
            let what = format!("{} of {n}", b.what);
            let mut envelope = b.envelope.clone();
            *at(&mut envelope, &payload(b.path)) = (b.make)(n);
            let bytes = encode(&envelope);
            let message = encode(at(&mut envelope, MESSAGE));
            let decoded = crate_decode(b.direction, &bytes);
            if within {
                assert_valid(b.direction, &what, &bytes);
                assert_valid(b.rule, &what, &message);
                assert_eq!(decoded, Ok(()), "{what}: the crate decodes it");
            } else {
                if !b.validator_blind {
                    assert_invalid(b.rule, &what, &message);
                }
                assert!(
                    matches!(decoded, Err(DecodeError::Malformed { .. })),
                    "{what}: the crate refuses it, got {decoded:?}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The schema's text

/// The schema without comments.
fn schema_code() -> String {
    SCHEMA
        .lines()
        .map(|line| line.split(';').next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Names of the rules the schema defines.
fn defined_rules() -> Vec<String> {
    schema_code()
        .lines()
        .filter_map(|line| {
            let (name, _) = line.split_once(" =")?;
            let name = name.trim_end();
            (!name.is_empty() && !line.starts_with(' ')).then(|| name.to_string())
        })
        .collect()
}

#[test]
fn every_rule_is_defined_and_used() {
    const PRELUDE: &[&str] = &[
        "any", "uint", "nint", "int", "bstr", "tstr", "bool", "float32", "float64", "nil", "null",
        "true", "false",
    ];
    let code = schema_code();
    let defined = defined_rules();
    let mut used = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let starts_word = c.is_ascii_alphabetic()
            && (i == 0 || !(chars[i - 1].is_ascii_alphanumeric() || chars[i - 1] == '-'));
        if !starts_word {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '-') {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let rest: String = chars[i..].iter().take_while(|c| **c == ' ').collect();
        let is_control = start > 0 && chars[start - 1] == '.';
        let is_label = chars.get(i + rest.len()) == Some(&':');
        let is_definition = defined.contains(&word)
            && (start == 0 || chars[start - 1] == '\n')
            && chars.get(i + rest.len()) == Some(&'=');
        if !is_control && !is_label && !is_definition {
            used.push(word);
        }
    }
    for word in &used {
        assert!(
            defined.contains(word) || PRELUDE.contains(&word.as_str()),
            "the schema uses `{word}` but does not define it"
        );
    }
    for rule in &defined {
        assert!(
            rule == "frame-body" || used.contains(rule),
            "the schema defines `{rule}` but never uses it"
        );
    }
    assert_eq!(defined.first().map(String::as_str), Some("frame-body"));
}

/// `FrameTooLarge` as `frame-too-large`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Checks that rule `rule` comments every code, and only those.
#[track_caller]
fn assert_codes_documented<T: std::fmt::Debug + Copy>(rule: &str, all: &[T], code: fn(T) -> u16) {
    let start = SCHEMA
        .find(&format!("\n{rule} = u16\n"))
        .unwrap_or_else(|| panic!("the schema has no `{rule} = u16`"));
    let block: Vec<&str> = SCHEMA[start + 1..]
        .lines()
        .skip(1)
        .take_while(|line| line.trim_start().starts_with(';'))
        .collect();
    let documented: Vec<(u16, String)> = block
        .iter()
        .filter_map(|line| {
            let mut words = line.trim_start().trim_start_matches(';').split_whitespace();
            let code = words.next()?.parse().ok()?;
            let name = words.next()?.trim_end_matches(':').to_string();
            Some((code, name))
        })
        .collect();
    let expected: Vec<(u16, String)> = all
        .iter()
        .map(|value| (code(*value), kebab(&format!("{value:?}"))))
        .collect();
    assert_eq!(documented, expected, "the codes of `{rule}` in the schema");
}

#[test]
fn every_code_is_documented() {
    assert_codes_documented("error-code", ErrorCode::ALL, ErrorCode::code);
    assert_codes_documented("goodbye-reason", GoodbyeReason::ALL, GoodbyeReason::code);
    assert_codes_documented("enroll-refusal", EnrollRefusal::ALL, EnrollRefusal::code);
    assert_codes_documented("runtime-kind", RuntimeKind::ALL, RuntimeKind::code);
    assert_codes_documented("app-state", AppState::ALL, AppState::code);
    assert_codes_documented("deploy-failure", DeployFailure::ALL, DeployFailure::code);
    assert_codes_documented("trap-code", TrapCode::ALL, TrapCode::code);
}

// ---------------------------------------------------------------------------
// docs/protocol.md

/// The worked example of docs/protocol.md: a heartbeat frame.
#[test]
fn documented_heartbeat_frame_is_real() {
    let envelope = Envelope::new(5, Uplink::Heartbeat(samples::heartbeat()));
    let mut buf = [0u8; 64];
    let len = frame::encode_frame(&envelope, &mut buf, frame::MAX_FRAME_LEN)
        .expect("a heartbeat fits a frame");
    let frame_hex = hex(&buf[..len]);
    assert!(
        PROTOCOL_DOC.contains(&frame_hex),
        "docs/protocol.md must show the heartbeat frame {frame_hex}"
    );
    assert_valid(UP, "the documented heartbeat", &buf[frame::HEADER_LEN..len]);
}
