//! Property tests of the codec and the framing.
//!
//! The strategies cover every variant and every field of every message,
//! with strings and lists up to their bounds, wire enums including codes
//! this build does not know, and floats of any bit pattern (NaN included).

use std::fmt::Debug;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use wasmbed_protocol::codec::{self, DecodeError, decode_downlink, decode_uplink};
use wasmbed_protocol::frame::{self, HEADER_LEN, MAX_FRAME_LEN};
use wasmbed_protocol::*;

// ---------------------------------------------------------------------------
// Strategies for the building blocks.

/// Text of at most `N` bytes: printable ASCII up to and at the bound, or
/// any characters cut to fit (multi-byte ones make the bound bite early).
fn text<const N: usize>() -> impl Strategy<Value = heapless::String<N>> {
    let fill = |s: String| {
        let mut out = heapless::String::new();
        for c in s.chars() {
            if out.push(c).is_err() {
                break;
            }
        }
        out
    };
    prop_oneof![
        proptest::string::string_regex(&format!("[ -~]{{0,{N}}}"))
            .expect("valid regex")
            .prop_map(fill),
        proptest::string::string_regex(&format!("[ -~]{{{N}}}"))
            .expect("valid regex")
            .prop_map(fill),
        vec(any::<char>(), 0..=N).prop_map(move |cs| fill(cs.into_iter().collect())),
    ]
}

/// A list of up to `N` elements, often exactly `N`.
fn list<T: Debug, const N: usize>(
    element: impl Strategy<Value = T>,
) -> impl Strategy<Value = heapless::Vec<T, N>> {
    (vec(element, N), prop_oneof![Just(N), 0..=N]).prop_map(|(items, len)| {
        let mut out = heapless::Vec::new();
        for item in items.into_iter().take(len) {
            out.push(item).expect("at most N items");
        }
        out
    })
}

/// A wire enum: one of its known values or a code it does not know,
/// including the first code past the known ones and the largest.
macro_rules! wire_enum_strategy {
    ($name:ident) => {{
        let unknown = prop_oneof![
            Just($name::ALL.iter().map(|k| k.code()).max().expect("known codes") + 1),
            Just(u16::MAX),
            any::<u16>()
        ]
        .prop_filter("a code this build does not know", |code| {
            $name::ALL.iter().all(|known| known.code() != *code)
        })
        .prop_map($name::Unknown);
        prop_oneof![3 => select($name::ALL), 1 => unknown]
    }};
}

fn value() -> impl Strategy<Value = Value> {
    let f32s = prop_oneof![
        any::<u32>().prop_map(f32::from_bits),
        select(
            &[
                0.0,
                -0.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                f32::MIN_POSITIVE
            ][..]
        ),
        any::<f32>(),
    ];
    let f64s = prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        select(
            &[
                0.0,
                -0.0,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NAN,
                f64::MIN_POSITIVE
            ][..]
        ),
        any::<f64>(),
    ];
    prop_oneof![
        any::<i32>().prop_map(Value::I32),
        any::<i64>().prop_map(Value::I64),
        f32s.prop_map(Value::F32),
        f64s.prop_map(Value::F64),
    ]
}

fn deployment() -> impl Strategy<Value = DeploymentId> {
    any::<u64>().prop_map(DeploymentId)
}

fn application() -> impl Strategy<Value = ApplicationId> {
    any::<u64>().prop_map(ApplicationId)
}

fn millis() -> impl Strategy<Value = Millis> {
    any::<u64>().prop_map(Millis)
}

fn device_id() -> impl Strategy<Value = DeviceId> {
    any::<[u8; 16]>().prop_map(DeviceId)
}

fn bytes<const N: usize>() -> impl Strategy<Value = [u8; N]> {
    proptest::array::uniform::<_, N>(any::<u8>())
}

// ---------------------------------------------------------------------------
// Uplink.

prop_compose! {
    fn device_info()(board in text(), firmware_version in text()) -> DeviceInfo {
        DeviceInfo { board, firmware_version }
    }
}

prop_compose! {
    fn capabilities()(
        runtime in wire_enum_strategy!(RuntimeKind),
        runtime_version in text(),
        max_module_size in any::<u32>(),
        app_memory in any::<u32>(),
        app_slots in any::<u8>(),
    ) -> Capabilities {
        Capabilities { runtime, runtime_version, max_module_size, app_memory, app_slots }
    }
}

prop_compose! {
    fn app_status()(
        deployment in deployment(),
        application in application(),
        state in wire_enum_strategy!(AppState),
    ) -> AppStatus {
        AppStatus { deployment, application, state }
    }
}

fn app_list() -> impl Strategy<Value = AppList> {
    list::<_, MAX_APPS>(app_status())
}

prop_compose! {
    fn enroll_request()(
        public_key in bytes::<PUBLIC_KEY_LEN>(),
        proof in bytes::<SIGNATURE_LEN>(),
        device in device_info(),
        capabilities in capabilities(),
    ) -> EnrollRequest {
        EnrollRequest { public_key, proof, device, capabilities }
    }
}

prop_compose! {
    fn session_start()(
        agent_version in text(),
        capabilities in capabilities(),
        apps in app_list(),
    ) -> SessionStart {
        SessionStart { agent_version, capabilities, apps }
    }
}

prop_compose! {
    fn heartbeat()(uptime in millis(), free_memory in any::<u32>(), apps in app_list())
        -> Heartbeat {
        Heartbeat { uptime, free_memory, apps }
    }
}

fn deploy_state() -> impl Strategy<Value = DeployState> {
    prop_oneof![
        any::<u32>().prop_map(|resume_offset| DeployState::Accepted { resume_offset }),
        any::<u32>().prop_map(|bytes_held| DeployState::Progress { bytes_held }),
        Just(DeployState::Installed),
        Just(DeployState::Running),
        Just(DeployState::Stopped),
        Just(DeployState::Removed),
        wire_enum_strategy!(DeployFailure).prop_map(|reason| DeployState::Failed { reason }),
    ]
}

prop_compose! {
    fn deploy_status()(deployment in deployment(), state in deploy_state()) -> DeployStatus {
        DeployStatus { deployment, state }
    }
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        list::<_, MAX_RESULTS>(value()).prop_map(Outcome::Returned),
        wire_enum_strategy!(TrapCode).prop_map(Outcome::Trapped),
    ]
}

/// Log lines borrow; generated ones live for the whole test run.
fn leak_line<const N: usize>(line: heapless::String<N>) -> LogLine<'static> {
    let text: &'static str = Box::leak(line.as_str().to_owned().into_boxed_str());
    LogLine::new(text).expect("generated within LOG_LINE_LEN")
}

prop_compose! {
    fn execution_result()(
        deployment in deployment(),
        invocation in any::<u32>(),
        outcome in outcome(),
        fuel_used in any::<u64>(),
        duration_us in any::<u64>(),
        logs in list::<_, MAX_LOG_LINES>(text::<LOG_LINE_LEN>().prop_map(leak_line)),
        logs_truncated in any::<bool>(),
    ) -> ExecutionResult<'static> {
        ExecutionResult {
            deployment,
            invocation,
            outcome,
            fuel_used,
            duration_us,
            logs,
            logs_truncated,
        }
    }
}

prop_compose! {
    fn error_message()(
        code in wire_enum_strategy!(ErrorCode),
        detail in proptest::option::of(text::<DETAIL_LEN>()),
    ) -> ErrorMessage {
        ErrorMessage { code, detail }
    }
}

fn goodbye() -> impl Strategy<Value = Goodbye> {
    wire_enum_strategy!(GoodbyeReason).prop_map(|reason| Goodbye { reason })
}

fn uplink() -> impl Strategy<Value = Uplink<'static>> {
    prop_oneof![
        enroll_request().prop_map(Uplink::EnrollRequest),
        session_start().prop_map(Uplink::SessionStart),
        heartbeat().prop_map(Uplink::Heartbeat),
        deploy_status().prop_map(Uplink::DeployStatus),
        execution_result().prop_map(Uplink::ExecutionResult),
        error_message().prop_map(Uplink::Error),
        goodbye().prop_map(Uplink::Goodbye),
    ]
}

// ---------------------------------------------------------------------------
// Downlink. Two variants borrow bytes, so the strategy yields an owner of
// those bytes ([`DownlinkCase`]) from which the message is borrowed.

#[derive(Debug, Clone)]
enum DownlinkCase {
    /// A message that borrows nothing (boxed: it is much larger than the
    /// other variants).
    Owned(Box<Downlink<'static>>),
    EnrollAccepted {
        device_id: DeviceId,
        certificate: Vec<u8>,
    },
    Chunk {
        deployment: DeploymentId,
        offset: u32,
        data: Vec<u8>,
    },
}

impl DownlinkCase {
    fn message(&self) -> Downlink<'_> {
        match self {
            DownlinkCase::Owned(message) => (**message).clone(),
            DownlinkCase::EnrollAccepted {
                device_id,
                certificate,
            } => Downlink::EnrollResponse(EnrollResponse::Accepted {
                device_id: *device_id,
                certificate,
            }),
            DownlinkCase::Chunk {
                deployment,
                offset,
                data,
            } => Downlink::DeployChunk(DeployChunk {
                deployment: *deployment,
                offset: *offset,
                data,
            }),
        }
    }
}

/// Byte strings for chunks and certificates: often short, up to a whole
/// chunk, sometimes exactly a whole chunk.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..=32),
        vec(any::<u8>(), 0..=MAX_CHUNK_LEN),
        vec(any::<u8>(), MAX_CHUNK_LEN),
    ]
}

prop_compose! {
    fn limits()(
        fuel in any::<u64>(),
        memory_pages in any::<u16>(),
        entry in text::<ENTRY_LEN>(),
        args in list::<_, MAX_ARGS>(value()),
    ) -> Limits {
        Limits { fuel, memory_pages, entry, args }
    }
}

prop_compose! {
    fn deploy_start()(
        deployment in deployment(),
        application in application(),
        module_size in any::<u32>(),
        sha256 in bytes::<32>(),
        chunk_size in any::<u16>(),
        limits in limits(),
    ) -> DeployStart {
        DeployStart { deployment, application, module_size, sha256, chunk_size, limits }
    }
}

fn owned_downlink() -> impl Strategy<Value = Downlink<'static>> {
    prop_oneof![
        bytes::<NONCE_LEN>().prop_map(|nonce| Downlink::EnrollChallenge(EnrollChallenge { nonce })),
        wire_enum_strategy!(EnrollRefusal)
            .prop_map(|reason| Downlink::EnrollResponse(EnrollResponse::Refused { reason })),
        (device_id(), millis(), any::<u32>()).prop_map(
            |(device_id, server_time, heartbeat_interval_ms)| {
                Downlink::SessionAccept(SessionAccept {
                    device_id,
                    server_time,
                    heartbeat_interval_ms,
                })
            }
        ),
        (millis(), any::<u32>()).prop_map(|(server_time, next_interval_ms)| {
            Downlink::HeartbeatAck(HeartbeatAck {
                server_time,
                next_interval_ms,
            })
        }),
        deploy_start().prop_map(Downlink::DeployStart),
        deployment().prop_map(|deployment| Downlink::DeployCommit(DeployCommit { deployment })),
        deployment().prop_map(|deployment| Downlink::Stop(StopApp { deployment })),
        deployment().prop_map(|deployment| Downlink::Remove(RemoveApp { deployment })),
        error_message().prop_map(Downlink::Error),
        goodbye().prop_map(Downlink::Goodbye),
    ]
}

fn downlink() -> impl Strategy<Value = DownlinkCase> {
    prop_oneof![
        10 => owned_downlink().prop_map(|m| DownlinkCase::Owned(Box::new(m))),
        1 => (device_id(), payload()).prop_map(|(device_id, certificate)| {
            DownlinkCase::EnrollAccepted { device_id, certificate }
        }),
        1 => (deployment(), any::<u32>(), payload()).prop_map(|(deployment, offset, data)| {
            DownlinkCase::Chunk { deployment, offset, data }
        }),
    ]
}

prop_compose! {
    /// An envelope's header: its id and the id it answers, if any.
    fn header()(id in any::<u32>(), reply_to in proptest::option::of(any::<u32>()))
        -> (u32, Option<u32>) {
        (id, reply_to)
    }
}

fn envelope<M>((id, reply_to): (u32, Option<u32>), body: M) -> Envelope<M> {
    match reply_to {
        Some(to) => Envelope::reply(id, to, body),
        None => Envelope::new(id, body),
    }
}

// ---------------------------------------------------------------------------
// Equality with floats: NaN != NaN, so values are compared by their bits
// and the rest of the message with every float replaced by zero.

/// The values of a message, if it has any.
fn uplink_values<'m>(message: &'m mut Uplink<'_>) -> &'m mut [Value] {
    match message {
        Uplink::ExecutionResult(ExecutionResult {
            outcome: Outcome::Returned(values),
            ..
        }) => &mut values[..],
        _ => &mut [],
    }
}

/// See [`uplink_values`].
fn downlink_values<'m>(message: &'m mut Downlink<'_>) -> &'m mut [Value] {
    match message {
        Downlink::DeployStart(start) => &mut start.limits.args[..],
        _ => &mut [],
    }
}

/// A value's variant and bits.
fn bits(value: &Value) -> (u8, u64) {
    match *value {
        Value::I32(v) => (0, u64::from(v as u32)),
        Value::I64(v) => (1, v as u64),
        Value::F32(v) => (2, u64::from(v.to_bits())),
        Value::F64(v) => (3, v.to_bits()),
    }
}

/// `decoded == original`, floats compared bit for bit.
fn assert_same<M: Clone + PartialEq + Debug>(
    decoded: &Envelope<M>,
    original: &Envelope<M>,
    values: impl Fn(&mut M) -> &mut [Value],
) -> Result<(), TestCaseError> {
    let (mut decoded, mut original) = (decoded.clone(), original.clone());
    let (decoded_values, original_values) = (values(&mut decoded.body), values(&mut original.body));
    prop_assert_eq!(
        decoded_values.iter().map(bits).collect::<Vec<_>>(),
        original_values.iter().map(bits).collect::<Vec<_>>()
    );
    for value in decoded_values.iter_mut().chain(original_values.iter_mut()) {
        match value {
            Value::F32(v) => *v = 0.0,
            Value::F64(v) => *v = 0.0,
            Value::I32(_) | Value::I64(_) => {}
        }
    }
    prop_assert_eq!(decoded, original);
    Ok(())
}

/// A frame buffer large enough for any message within [`MAX_FRAME_LEN`].
fn frame_buffer() -> Vec<u8> {
    vec![0; HEADER_LEN + MAX_FRAME_LEN]
}

/// Frames and unframes `bytes`'s message; the body it finds must be `bytes`.
fn check_framing<M: minicbor::Encode<()>>(
    message: &Envelope<M>,
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    let mut buf = frame_buffer();
    let len = frame::encode_frame(message, &mut buf, MAX_FRAME_LEN)
        .map_err(|e| TestCaseError::fail(format!("a bounded message fits a frame: {e}")))?;
    let frame = &buf[..len];
    prop_assert_eq!(len, HEADER_LEN + bytes.len());

    let body = frame::find_frame(frame, MAX_FRAME_LEN);
    prop_assert_eq!(body.clone(), Ok(Some(HEADER_LEN..len)));
    prop_assert_eq!(&frame[HEADER_LEN..], bytes);

    // The next frame's bytes do not change where this one is.
    let mut stream = frame.to_vec();
    stream.extend_from_slice(frame);
    prop_assert_eq!(frame::find_frame(&stream, MAX_FRAME_LEN), body);

    // Every proper prefix needs more bytes.
    for cut in 0..len {
        prop_assert_eq!(
            frame::find_frame(&frame[..cut], MAX_FRAME_LEN),
            Ok(None),
            "prefix of {} bytes",
            cut
        );
    }
    Ok(())
}

/// A message that ends early is `Truncated`; one followed by more bytes
/// reports where it ended.
fn check_cuts(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<(), DecodeError>,
) -> Result<(), TestCaseError> {
    for cut in 0..bytes.len() {
        let result = decode(&bytes[..cut]);
        prop_assert!(
            matches!(result, Err(DecodeError::Truncated)),
            "prefix of {} bytes: {:?}",
            cut,
            result
        );
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    let result = decode(&longer);
    prop_assert!(
        matches!(result, Err(DecodeError::TrailingBytes { at }) if at == bytes.len()),
        "with a trailing byte: {:?}",
        result
    );
    Ok(())
}

/// Byte edits for mutating a valid message.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Remove(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    vec(
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Set(at, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::Insert(at, b)),
            any::<usize>().prop_map(Edit::Remove),
        ],
        1..=4,
    )
}

fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
    for edit in edits {
        match *edit {
            Edit::Set(at, b) if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            Edit::Insert(at, b) => bytes.insert(at % (bytes.len() + 1), b),
            Edit::Remove(at) if !bytes.is_empty() => {
                bytes.remove(at % bytes.len());
            }
            Edit::Set(..) | Edit::Remove(_) => {}
        }
    }
}

/// Whatever decodes re-encodes to something that decodes to the same.
fn check_stable<M: minicbor::Encode<()> + Debug>(
    decoded: &Envelope<M>,
    decode_again: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<(), TestCaseError> {
    let bytes = codec::to_vec(decoded);
    prop_assert_eq!(decode_again(&bytes), bytes);
    Ok(())
}

fn reencode_uplink(bytes: &[u8]) -> Vec<u8> {
    codec::to_vec(&decode_uplink(bytes).expect("an encoded message decodes"))
}

fn reencode_downlink(bytes: &[u8]) -> Vec<u8> {
    codec::to_vec(&decode_downlink(bytes).expect("an encoded message decodes"))
}

// ---------------------------------------------------------------------------
// Properties.

proptest! {
    #[test]
    fn uplinks_round_trip(header in header(), body in uplink()) {
        let message = envelope(header, body);
        let bytes = codec::to_vec(&message);
        let decoded = decode_uplink(&bytes)
            .map_err(|e| TestCaseError::fail(format!("does not decode: {e:?}")))?;
        assert_same(&decoded, &message, uplink_values)?;
        prop_assert_eq!(codec::to_vec(&decoded), bytes.clone());

        // `encode` into a slice writes what `to_vec` returns.
        let mut buf = frame_buffer();
        let len = codec::encode(&message, &mut buf).expect("fits the buffer");
        prop_assert_eq!(&buf[..len], &bytes[..]);
        // and refuses a buffer one byte short.
        prop_assert_eq!(
            codec::encode(&message, &mut buf[..len - 1]),
            Err(EncodeError::BufferTooSmall)
        );
    }

    #[test]
    fn downlinks_round_trip(header in header(), case in downlink()) {
        let message = envelope(header, case.message());
        let bytes = codec::to_vec(&message);
        let decoded = decode_downlink(&bytes)
            .map_err(|e| TestCaseError::fail(format!("does not decode: {e:?}")))?;
        assert_same(&decoded, &message, downlink_values)?;
        prop_assert_eq!(codec::to_vec(&decoded), bytes.clone());

        let mut buf = frame_buffer();
        let len = codec::encode(&message, &mut buf).expect("fits the buffer");
        prop_assert_eq!(&buf[..len], &bytes[..]);
        prop_assert_eq!(
            codec::encode(&message, &mut buf[..len - 1]),
            Err(EncodeError::BufferTooSmall)
        );
    }

    #[test]
    fn uplinks_survive_framing(header in header(), body in uplink()) {
        let message = envelope(header, body);
        let bytes = codec::to_vec(&message);
        check_framing(&message, &bytes)?;
        check_cuts(&bytes, |b| decode_uplink(b).map(drop))?;
    }

    #[test]
    fn downlinks_survive_framing(header in header(), case in downlink()) {
        let message = envelope(header, case.message());
        let bytes = codec::to_vec(&message);
        check_framing(&message, &bytes)?;
        check_cuts(&bytes, |b| decode_downlink(b).map(drop))?;
    }

    #[test]
    fn mutated_uplinks_never_panic(header in header(), body in uplink(), edits in edits()) {
        let mut bytes = codec::to_vec(&envelope(header, body));
        apply(&mut bytes, &edits);
        if let Ok(decoded) = decode_uplink(&bytes) {
            check_stable(&decoded, reencode_uplink)?;
        }
    }

    #[test]
    fn mutated_downlinks_never_panic(header in header(), case in downlink(), edits in edits()) {
        let mut bytes = codec::to_vec(&envelope(header, case.message()));
        apply(&mut bytes, &edits);
        if let Ok(decoded) = decode_downlink(&bytes) {
            check_stable(&decoded, reencode_downlink)?;
        }
    }

    #[test]
    fn other_versions_are_refused(
        version in any::<u16>().prop_filter("another version", |v| *v != PROTOCOL_VERSION),
        header in header(),
        body in uplink(),
    ) {
        let message = Envelope { version, ..envelope(header, body) };
        let bytes = codec::to_vec(&message);
        prop_assert_eq!(
            decode_uplink(&bytes),
            Err(DecodeError::UnsupportedVersion { found: version })
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        if let Ok(decoded) = decode_uplink(&bytes) {
            check_stable(&decoded, reencode_uplink)?;
        }
        if let Ok(decoded) = decode_downlink(&bytes) {
            check_stable(&decoded, reencode_downlink)?;
        }
        // Whatever the bytes, finding a frame in them does not panic either.
        let _ = frame::find_frame(&bytes, MAX_FRAME_LEN);
    }
}

#[test]
fn a_chunk_beyond_max_chunk_len_does_not_decode() {
    let data = vec![0xa5; MAX_CHUNK_LEN + 1];
    let chunk = Downlink::DeployChunk(DeployChunk {
        deployment: DeploymentId(1),
        offset: 0,
        data: &data,
    });
    let bytes = codec::to_vec(&Envelope::new(1, chunk));
    assert!(matches!(
        codec::decode_downlink(&bytes),
        Err(DecodeError::Malformed { .. })
    ));
    let fits = Downlink::DeployChunk(DeployChunk {
        deployment: DeploymentId(1),
        offset: 0,
        data: &data[..MAX_CHUNK_LEN],
    });
    let bytes = codec::to_vec(&Envelope::new(1, fits.clone()));
    assert_eq!(codec::decode_downlink(&bytes).map(|e| e.body), Ok(fits));
}

#[test]
fn extra_items_in_a_field_less_deploy_state_are_skipped_not_reread() {
    // [3, {0: 7, 1: [2, 1, 5]}]: "Installed" followed by two items a newer
    // peer might append. They must not be read as the envelope's next key.
    let bytes = [
        0xa3, 0x00, 0x01, 0x01, 0x05, 0x02, 0x82, 0x03, 0xa2, 0x00, 0x07, 0x01, 0x83, 0x02, 0x01,
        0x05,
    ];
    let envelope = codec::decode_uplink(&bytes).expect("valid with extra items");
    assert_eq!(envelope.id, 5);
    assert_eq!(
        envelope.body,
        Uplink::DeployStatus(DeployStatus {
            deployment: DeploymentId(7),
            state: DeployState::Installed,
        })
    );
    // The smuggling variant from the review: the extra items stand where
    // the envelope expects its next key; it must not decode.
    let smuggled = [
        0xa3, 0x02, 0x82, 0x03, 0xa2, 0x00, 0x07, 0x01, 0x83, 0x02, 0x01, 0x05, 0x00, 0x01,
    ];
    assert!(codec::decode_uplink(&smuggled).is_err());
}
