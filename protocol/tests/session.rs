//! Both ends of a session driven against each other in memory.

use wasmbed_protocol::session::*;
use wasmbed_protocol::*;

type Device = DeviceSession;
type Gateway = GatewaySession<Vec<u8>>;

const NONCE: [u8; NONCE_LEN] = [0x5a; NONCE_LEN];
const DEVICE_ID: DeviceId = DeviceId([0xd1; 16]);

fn gateway_config() -> GatewayConfig {
    GatewayConfig {
        heartbeat_interval_ms: 1_000,
        missed_heartbeats: 3,
        ..GatewayConfig::default()
    }
}

/// Moves everything the device sends to the gateway, one byte at a time to
/// prove that frames survive any split, and collects the gateway's events.
fn device_to_gateway(
    device: &mut Device,
    gateway: &mut Gateway,
    now: Millis,
) -> Vec<GatewayEvent<'static>> {
    let bytes = device.poll_transmit().to_vec();
    device.advance_transmit(bytes.len());
    let mut events = Vec::new();
    for byte in bytes.chunks(1) {
        assert_eq!(gateway.handle_input(byte, now), 1);
        while let Some(event) = gateway.poll_event() {
            events.push(owned(event));
        }
    }
    events
}

/// Moves everything the gateway sends to the device in one piece.
fn gateway_to_device(gateway: &mut Gateway, device: &mut Device, now: Millis) -> Vec<String> {
    let mut bytes = gateway.poll_transmit().to_vec();
    gateway.advance_transmit(bytes.len());
    let mut events = Vec::new();
    while !bytes.is_empty() {
        let taken = device.handle_input(&bytes, now);
        bytes.drain(..taken);
        while let Some(event) = device.poll_event() {
            events.push(format!("{event:?}"));
        }
    }
    events
}

fn hello() -> SessionStart {
    SessionStart {
        agent_version: Name::try_from("0.1.0").expect("fits"),
        capabilities: samples::capabilities(),
        apps: AppList::new(),
    }
}

fn established(now: Millis) -> (Device, Gateway) {
    let mut device = Device::resume(DeviceConfig::default(), &hello(), now);
    let mut gateway = Gateway::new(PeerCredential::Device, gateway_config(), NONCE, now);
    let events = device_to_gateway(&mut device, &mut gateway, now);
    assert_eq!(events, vec![GatewayEvent::SessionRequested(hello())]);
    gateway.accept_session(DEVICE_ID).expect("deciding");
    let events = gateway_to_device(&mut gateway, &mut device, now);
    assert_eq!(events.len(), 1);
    assert!(events[0].starts_with("Established"), "{events:?}");
    assert!(device.is_established() && gateway.is_established());
    (device, gateway)
}

#[test]
fn enrollment_delivers_identity_and_ends_the_session() {
    let now = Millis(0);
    let mut gateway = Gateway::new(PeerCredential::Claim, gateway_config(), NONCE, now);
    let mut device = Device::enroll(DeviceConfig::default(), now);

    let events = gateway_to_device(&mut gateway, &mut device, now);
    assert_eq!(
        events,
        vec![format!("EnrollChallenge {{ nonce: {NONCE:?} }}")]
    );

    let request = match samples::uplinks().remove(0).1 {
        Uplink::EnrollRequest(request) => request,
        other => panic!("sample order changed: {other:?}"),
    };
    device.send_enroll_request(&request).expect("challenged");
    let events = device_to_gateway(&mut device, &mut gateway, now);
    assert_eq!(
        events,
        vec![GatewayEvent::EnrollRequested {
            request,
            nonce: NONCE
        }]
    );

    gateway
        .accept_enrollment(DEVICE_ID, b"certificate")
        .expect("deciding");
    assert!(gateway.is_closed());
    assert_eq!(
        gateway.poll_event(),
        Some(GatewayEvent::Closed(CloseReason::LocalGoodbye(
            GoodbyeReason::Enrolled
        )))
    );
    let events = gateway_to_device(&mut gateway, &mut device, now);
    assert_eq!(
        events,
        vec![
            format!(
                "Enrolled {{ device_id: {DEVICE_ID:?}, certificate: {:?} }}",
                b"certificate"
            ),
            "Closed(PeerGoodbye(Enrolled))".to_string(),
        ]
    );
    assert!(device.is_closed());
}

#[test]
fn refused_enrollment_reaches_the_device() {
    let now = Millis(0);
    let mut gateway = Gateway::new(PeerCredential::Claim, gateway_config(), NONCE, now);
    let mut device = Device::enroll(DeviceConfig::default(), now);
    gateway_to_device(&mut gateway, &mut device, now);
    let Uplink::EnrollRequest(request) = samples::uplinks().remove(0).1 else {
        panic!("sample order changed")
    };
    device.send_enroll_request(&request).expect("challenged");
    device_to_gateway(&mut device, &mut gateway, now);
    gateway
        .refuse_enrollment(EnrollRefusal::PairingClosed)
        .expect("deciding");
    let events = gateway_to_device(&mut gateway, &mut device, now);
    assert_eq!(
        events,
        vec![
            "EnrollRefused { reason: PairingClosed }".to_string(),
            "Closed(PeerGoodbye(Normal))".to_string()
        ]
    );
}

#[test]
fn claim_certificate_can_only_enroll() {
    let now = Millis(0);
    let mut gateway = Gateway::new(PeerCredential::Claim, gateway_config(), NONCE, now);
    // A device pretending to be enrolled while holding the claim certificate.
    let mut device = Device::resume(DeviceConfig::default(), &hello(), now);
    gateway.advance_transmit(gateway.poll_transmit().len()); // drop the challenge
    let events = device_to_gateway(&mut device, &mut gateway, now);
    assert_eq!(
        events,
        vec![GatewayEvent::Closed(CloseReason::ProtocolViolation(
            Violation::Unexpected {
                code: ErrorCode::Unauthorized,
                kind: "session_start"
            }
        ))]
    );
    let events = gateway_to_device(&mut gateway, &mut device, now);
    assert_eq!(
        events,
        vec![
            "PeerError(ErrorMessage { code: Unauthorized, detail: None })".to_string(),
            "Closed(PeerGoodbye(ProtocolError))".to_string()
        ]
    );
}

#[test]
fn heartbeats_are_scheduled_sent_and_acknowledged() {
    let (mut device, mut gateway) = established(Millis(0));
    assert_eq!(device.poll_timeout(), Some(Millis(1_000)));
    device.handle_timeout(Millis(999));
    assert_eq!(device.poll_event(), None);
    device.handle_timeout(Millis(1_000));
    assert_eq!(device.poll_event(), Some(DeviceEvent::HeartbeatDue));
    assert_eq!(device.poll_event(), None, "HeartbeatDue is reported once");

    device
        .send_heartbeat(&samples::heartbeat())
        .expect("established");
    let events = device_to_gateway(&mut device, &mut gateway, Millis(1_010));
    assert_eq!(events, vec![GatewayEvent::Heartbeat(samples::heartbeat())]);
    // The gateway's liveness deadline moved: three intervals after the heartbeat.
    assert_eq!(gateway.poll_timeout(), Some(Millis(4_010)));

    let events = gateway_to_device(&mut gateway, &mut device, Millis(1_020));
    assert_eq!(
        events,
        vec!["HeartbeatAcked(HeartbeatAck { server_time: Millis(1010), next_interval_ms: 1000 })"]
    );
    assert_eq!(device.poll_timeout(), Some(Millis(2_000)));
}

#[test]
fn gateway_closes_a_silent_device_as_timed_out() {
    let (_device, mut gateway) = established(Millis(0));
    gateway.handle_timeout(Millis(2_999));
    assert_eq!(gateway.poll_event(), None);
    gateway.handle_timeout(Millis(3_000));
    assert_eq!(
        gateway.poll_event(),
        Some(GatewayEvent::Closed(CloseReason::Timeout))
    );
    assert!(gateway.is_closed());
    let sent = codec_frames(gateway.poll_transmit());
    assert!(matches!(
        sent.last().map(|s| &s.body),
        Some(Downlink::Goodbye(Goodbye {
            reason: GoodbyeReason::Idle
        }))
    ));
}

#[test]
fn device_closes_when_heartbeats_go_unacknowledged() {
    let (mut device, _gateway) = established(Millis(0));
    device.handle_timeout(Millis(1_000));
    assert_eq!(device.poll_event(), Some(DeviceEvent::HeartbeatDue));
    device
        .send_heartbeat(&samples::heartbeat())
        .expect("established");
    let ack_deadline = Millis(1_000 + u64::from(DeviceConfig::default().response_timeout_ms));
    assert_eq!(device.poll_timeout(), Some(Millis(2_000)));
    device.handle_timeout(Millis(2_000));
    assert_eq!(device.poll_event(), Some(DeviceEvent::HeartbeatDue));
    device.handle_timeout(ack_deadline);
    assert_eq!(
        device.poll_event(),
        Some(DeviceEvent::Closed(CloseReason::Timeout))
    );
}

#[test]
fn device_gives_up_when_the_gateway_never_answers() {
    let mut device = Device::resume(DeviceConfig::default(), &hello(), Millis(0));
    assert_eq!(device.poll_timeout(), Some(Millis(10_000)));
    device.handle_timeout(Millis(10_000));
    assert_eq!(
        device.poll_event(),
        Some(DeviceEvent::Closed(CloseReason::Timeout))
    );
    assert_eq!(device.poll_timeout(), None);
}

#[test]
fn a_stalled_first_message_times_out() {
    let mut gateway = Gateway::new(PeerCredential::Device, gateway_config(), NONCE, Millis(0));
    gateway.handle_timeout(Millis(10_000));
    assert_eq!(
        gateway.poll_event(),
        Some(GatewayEvent::Closed(CloseReason::Timeout))
    );
}

#[test]
fn deployment_messages_flow_both_ways() {
    let (mut device, mut gateway) = established(Millis(0));
    let module = samples::chunk_data(3000);
    gateway
        .send(Downlink::DeployStart(samples::deploy_start()))
        .expect("established");
    for (i, chunk) in module.chunks(1024).enumerate() {
        gateway
            .send(Downlink::DeployChunk(DeployChunk {
                deployment: DeploymentId(7),
                offset: u32::try_from(i * 1024).expect("small"),
                data: chunk,
            }))
            .expect("established");
    }
    gateway
        .send(Downlink::DeployCommit(DeployCommit {
            deployment: DeploymentId(7),
        }))
        .expect("established");

    // Reassemble on the device side from the borrowed chunk events.
    let mut bytes = gateway.poll_transmit().to_vec();
    gateway.advance_transmit(bytes.len());
    let (mut received, mut starts, mut commits) = (Vec::new(), 0, 0);
    while !bytes.is_empty() {
        let taken = device.handle_input(&bytes, Millis(5));
        bytes.drain(..taken);
        while let Some(event) = device.poll_event() {
            match event {
                DeviceEvent::DeployStart(start) => {
                    assert_eq!(start, samples::deploy_start());
                    starts += 1;
                }
                DeviceEvent::DeployChunk(chunk) => {
                    assert_eq!(chunk.offset as usize, received.len());
                    received.extend_from_slice(chunk.data);
                }
                DeviceEvent::DeployCommit(id) => {
                    assert_eq!(id, DeploymentId(7));
                    commits += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!((starts, commits), (1, 1));
    assert_eq!(received, module);

    let status = DeployStatus {
        deployment: DeploymentId(7),
        state: DeployState::Installed,
    };
    device.send_deploy_status(status).expect("established");
    let Uplink::ExecutionResult(result) = samples::uplinks().remove(5).1 else {
        panic!("sample order changed")
    };
    device.send_execution_result(&result).expect("established");
    let events = device_to_gateway(&mut device, &mut gateway, Millis(6));
    assert_eq!(
        events,
        vec![
            GatewayEvent::DeployStatus(status),
            GatewayEvent::ExecutionResult(result)
        ]
    );
}

#[test]
fn garbage_is_answered_with_a_typed_error_and_a_close() {
    let (_device, mut gateway) = established(Millis(0));
    let mut frame = 3u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0xff, 0x00, 0x00]);
    assert_eq!(gateway.handle_input(&frame, Millis(1)), frame.len());
    let Some(GatewayEvent::Closed(CloseReason::ProtocolViolation(Violation::Decode(_)))) =
        gateway.poll_event()
    else {
        panic!("expected a decode violation")
    };
    let sent = codec_frames(gateway.poll_transmit());
    assert_eq!(sent.len(), 2);
    assert!(matches!(
        &sent[0].body,
        Downlink::Error(ErrorMessage {
            code: ErrorCode::Malformed,
            ..
        })
    ));
    assert!(matches!(&sent[1].body, Downlink::Goodbye(_)));
    // Later input is ignored, not buffered.
    assert_eq!(gateway.handle_input(&[0; 100], Millis(2)), 100);
    assert_eq!(gateway.buffered_input(), 0);
    assert_eq!(gateway.poll_event(), None);
}

/// One uplink frame with the envelope id `id`, as a device would send it.
fn uplink_frame(id: u32, body: Uplink<'_>) -> Vec<u8> {
    let mut out = vec![0; frame::HEADER_LEN + frame::MAX_FRAME_LEN];
    let len = frame::encode_frame(&Envelope::new(id, body), &mut out, frame::MAX_FRAME_LEN)
        .expect("encodes");
    out.truncate(len);
    out
}

/// Feeds whole frames to the gateway and returns its events.
fn feed(gateway: &mut Gateway, bytes: &[u8], now: Millis) -> Vec<GatewayEvent<'static>> {
    let mut events = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let taken = gateway.handle_input(rest, now);
        rest = &rest[taken..];
        while let Some(event) = gateway.poll_event() {
            events.push(owned(event));
        }
    }
    events
}

#[test]
fn a_repeated_or_smaller_message_id_is_a_violation() {
    let (_device, mut gateway) = established(Millis(0));
    // The device's SessionStart was message 1; 2 follows it, 2 again does not.
    let heartbeat = || Uplink::Heartbeat(samples::heartbeat());
    let events = feed(&mut gateway, &uplink_frame(2, heartbeat()), Millis(500));
    assert_eq!(events, vec![GatewayEvent::Heartbeat(samples::heartbeat())]);
    gateway.advance_transmit(gateway.poll_transmit().len());
    let events = feed(&mut gateway, &uplink_frame(2, heartbeat()), Millis(1_000));
    assert_eq!(
        events,
        vec![GatewayEvent::Closed(CloseReason::ProtocolViolation(
            Violation::MessageId { id: 2, previous: 2 }
        ))]
    );
    let sent = codec_frames(gateway.poll_transmit());
    assert!(matches!(
        &sent[0].body,
        Downlink::Error(ErrorMessage {
            code: ErrorCode::Malformed,
            ..
        })
    ));
    assert!(gateway.is_closed());
}

#[test]
fn the_device_refuses_a_replayed_gateway_message() {
    let (mut device, mut gateway) = established(Millis(0));
    gateway
        .send(Downlink::Stop(StopApp {
            deployment: DeploymentId(7),
        }))
        .expect("established");
    let frame = gateway.poll_transmit().to_vec();
    gateway.advance_transmit(frame.len());
    assert_eq!(device.handle_input(&frame, Millis(1)), frame.len());
    assert_eq!(
        device.poll_event(),
        Some(DeviceEvent::Stop(DeploymentId(7)))
    );
    // The same frame again: a replay within the session.
    assert_eq!(device.handle_input(&frame, Millis(2)), frame.len());
    assert!(matches!(
        device.poll_event(),
        Some(DeviceEvent::Closed(CloseReason::ProtocolViolation(
            Violation::MessageId { .. }
        )))
    ));
}

#[test]
fn heartbeats_faster_than_allowed_are_refused_then_the_session_closes() {
    let (_device, mut gateway) = established(Millis(0));
    let config = gateway_config();
    let heartbeat = || Uplink::Heartbeat(samples::heartbeat());
    let mut id = 2;
    let mut now = Millis(10);
    // A burst of `heartbeat_burst` heartbeats is fine...
    for _ in 0..config.heartbeat_burst {
        let events = feed(&mut gateway, &uplink_frame(id, heartbeat()), now);
        assert_eq!(events, vec![GatewayEvent::Heartbeat(samples::heartbeat())]);
        id += 1;
    }
    gateway.advance_transmit(gateway.poll_transmit().len());
    // ...the next one at once is refused with rate-limited and not acknowledged.
    let events = feed(&mut gateway, &uplink_frame(id, heartbeat()), now);
    assert_eq!(
        events,
        vec![GatewayEvent::RateLimited { kind: "heartbeat" }]
    );
    let sent = codec_frames(gateway.poll_transmit());
    assert_eq!(sent.len(), 1, "an error, no acknowledgement: {sent:?}");
    assert!(matches!(
        &sent[0].body,
        Downlink::Error(ErrorMessage {
            code: ErrorCode::RateLimited,
            ..
        })
    ));
    gateway.advance_transmit(gateway.poll_transmit().len());
    id += 1;
    // Half an interval later, one more is allowed again (and forgives the
    // refusal).
    now = now.plus(u64::from(config.heartbeat_interval_ms / 2));
    let events = feed(&mut gateway, &uplink_frame(id, heartbeat()), now);
    assert_eq!(events, vec![GatewayEvent::Heartbeat(samples::heartbeat())]);
    id += 1;
    // A device that keeps flooding is told `max_rate_limited` times, then dropped.
    let mut refused = 0;
    let closed = loop {
        let events = feed(&mut gateway, &uplink_frame(id, heartbeat()), now);
        id += 1;
        match events.as_slice() {
            [GatewayEvent::RateLimited { .. }] => refused += 1,
            [GatewayEvent::Closed(reason)] => break *reason,
            other => panic!("unexpected events {other:?}"),
        }
        assert!(refused <= config.max_rate_limited, "never closed");
    };
    assert_eq!(refused, config.max_rate_limited);
    assert_eq!(
        closed,
        CloseReason::ProtocolViolation(Violation::RateLimited { kind: "heartbeat" })
    );
    assert!(gateway.is_closed());
}

#[test]
fn a_flood_of_results_is_refused_and_the_device_keeps_them() {
    let (_device, mut gateway) = established(Millis(0));
    let config = gateway_config();
    let result = || {
        samples::uplinks()
            .into_iter()
            .find_map(|(_, message)| {
                matches!(message, Uplink::ExecutionResult(_)).then_some(message)
            })
            .expect("a sample result")
    };
    let mut id = 2;
    let mut reported = 0;
    let mut refused = 0;
    for _ in 0..config.result_burst + 4 {
        match feed(&mut gateway, &uplink_frame(id, result()), Millis(10)).as_slice() {
            [GatewayEvent::ExecutionResult(_)] => reported += 1,
            [
                GatewayEvent::RateLimited {
                    kind: "execution_result",
                },
            ] => refused += 1,
            other => panic!("unexpected events {other:?}"),
        }
        id += 1;
    }
    assert_eq!((reported, refused), (config.result_burst, 4));
    // At the allowed rate they are taken again.
    let later = Millis(10 + u64::from(config.result_spacing_ms));
    let events = feed(&mut gateway, &uplink_frame(id, result()), later);
    assert!(
        matches!(events.as_slice(), [GatewayEvent::ExecutionResult(_)]),
        "{events:?}"
    );
}

#[test]
fn heartbeats_at_the_interval_are_never_refused() {
    let (_device, mut gateway) = established(Millis(0));
    let interval = u64::from(gateway_config().heartbeat_interval_ms);
    for i in 0..100u32 {
        // Jitter of up to a tenth of the interval either way.
        let jitter = u64::from(i % 3) * interval / 10;
        let now = Millis(u64::from(i + 1) * interval - jitter);
        let events = feed(
            &mut gateway,
            &uplink_frame(i + 2, Uplink::Heartbeat(samples::heartbeat())),
            now,
        );
        assert_eq!(
            events,
            vec![GatewayEvent::Heartbeat(samples::heartbeat())],
            "#{i}"
        );
        gateway.advance_transmit(gateway.poll_transmit().len());
    }
}

#[test]
fn server_time_is_wall_time_advanced_by_the_session_clock() {
    let wall = Millis(1_764_253_000_000);
    let mut device = Device::resume(DeviceConfig::default(), &hello(), Millis(0));
    // The session clock is monotonic and starts anywhere, here at 5 s.
    let mut gateway = Gateway::new(
        PeerCredential::Device,
        gateway_config(),
        NONCE,
        Millis(5_000),
    )
    .with_server_time(wall);
    device_to_gateway(&mut device, &mut gateway, Millis(5_250));
    gateway.accept_session(DEVICE_ID).expect("deciding");
    let sent = codec_frames(gateway.poll_transmit());
    let Downlink::SessionAccept(accept) = &sent[0].body else {
        panic!("expected SessionAccept, got {sent:?}")
    };
    assert_eq!(accept.server_time, Millis(wall.0 + 250));
    // Deadlines stay on the session clock.
    assert_eq!(
        gateway.poll_timeout(),
        Some(Millis(
            5_250 + 3 * u64::from(gateway_config().heartbeat_interval_ms)
        ))
    );
}

#[test]
fn an_oversize_frame_is_refused_from_its_header_alone() {
    let (mut device, _gateway) = established(Millis(0));
    let header = (1u32 << 30).to_be_bytes();
    device.handle_input(&header, Millis(1));
    assert_eq!(
        device.poll_event(),
        Some(DeviceEvent::Closed(CloseReason::ProtocolViolation(
            Violation::Frame(frame::FrameError::TooLarge {
                declared: 1 << 30,
                max: u32::try_from(frame::MAX_FRAME_LEN).expect("small")
            })
        )))
    );
}

#[test]
fn a_fixed_buffer_applies_backpressure_instead_of_dropping_bytes() {
    let (mut device, mut gateway) = established(Millis(0));
    let data = samples::chunk_data(MAX_CHUNK_LEN);
    for i in 0..10u32 {
        let chunk = DeployChunk {
            deployment: DeploymentId(1),
            offset: i * u32::try_from(MAX_CHUNK_LEN).expect("small"),
            data: &data,
        };
        gateway.send(Downlink::DeployChunk(chunk)).expect("room");
    }
    let frames = gateway.poll_transmit().to_vec();
    assert!(frames.len() > 4 * FrameBuffer::new().capacity());
    // Offer everything at once: the device takes what fits, the rest waits.
    let mut offered = frames.as_slice();
    let (mut chunks, mut partial_takes) = (0, 0);
    while !offered.is_empty() {
        let taken = device.handle_input(offered, Millis(1));
        partial_takes += usize::from(taken < offered.len());
        offered = &offered[taken..];
        while let Some(event) = device.poll_event() {
            let DeviceEvent::DeployChunk(chunk) = event else {
                panic!("unexpected {event:?}")
            };
            assert_eq!(chunk.data, &data[..]);
            chunks += 1;
        }
    }
    assert_eq!(chunks, 10);
    assert!(partial_takes >= 4, "input was never throttled");
}

#[test]
fn calls_out_of_order_are_refused_without_side_effects() {
    let mut device = Device::enroll(DeviceConfig::default(), Millis(0));
    assert_eq!(
        device.send_heartbeat(&samples::heartbeat()),
        Err(SessionError::InvalidState)
    );
    assert!(device.poll_transmit().is_empty());
    let mut gateway = Gateway::new(PeerCredential::Device, gateway_config(), NONCE, Millis(0));
    assert_eq!(
        gateway.accept_session(DEVICE_ID),
        Err(SessionError::InvalidState)
    );
    assert_eq!(
        gateway.send(Downlink::Stop(StopApp {
            deployment: DeploymentId(1)
        })),
        Err(SessionError::InvalidState)
    );
    device.close(GoodbyeReason::Shutdown);
    assert_eq!(
        device.send_error(&ErrorMessage {
            code: ErrorCode::Internal,
            detail: None
        }),
        Err(SessionError::Closed)
    );
}

#[test]
fn an_idle_gateway_session_holds_no_buffer_memory() {
    let (mut device, mut gateway) = established(Millis(0));
    device.handle_timeout(Millis(1_000));
    device.poll_event();
    device
        .send_heartbeat(&samples::heartbeat())
        .expect("established");
    device_to_gateway(&mut device, &mut gateway, Millis(1_000));
    gateway.advance_transmit(gateway.poll_transmit().len());
    assert_eq!(gateway.buffered_input(), 0);
    assert!(gateway.poll_transmit().is_empty());
    // Its pacing and id checks are a few words; the buffers are empty.
    assert!(
        std::mem::size_of::<Gateway>() <= 320,
        "{}",
        std::mem::size_of::<Gateway>()
    );
}

#[derive(Debug)]
struct Sent {
    body: Downlink<'static>,
}

/// Splits a transmit buffer into decoded downlink frames.
fn codec_frames(bytes: &[u8]) -> Vec<Sent> {
    let mut bytes: &'static [u8] = Box::leak(bytes.to_vec().into_boxed_slice());
    let mut out = Vec::new();
    while let Some(body) = frame::find_frame(bytes, frame::MAX_FRAME_LEN).expect("valid frames") {
        let envelope = codec::decode_downlink(&bytes[body.clone()]).expect("valid message");
        out.push(Sent {
            body: envelope.body,
        });
        bytes = &bytes[body.end..];
    }
    out
}

/// A gateway event that outlives the session's input buffer: the log lines
/// of a result are copied and leaked, which is fine in a test.
fn owned(event: GatewayEvent<'_>) -> GatewayEvent<'static> {
    match event {
        GatewayEvent::ExecutionResult(result) => {
            let logs = result
                .logs
                .iter()
                .map(|line| {
                    LogLine::truncated(Box::leak(line.as_str().to_owned().into_boxed_str()))
                })
                .collect();
            GatewayEvent::ExecutionResult(ExecutionResult { logs, ..result })
        }
        GatewayEvent::EnrollRequested { request, nonce } => {
            GatewayEvent::EnrollRequested { request, nonce }
        }
        GatewayEvent::SessionRequested(start) => GatewayEvent::SessionRequested(start),
        GatewayEvent::Heartbeat(heartbeat) => GatewayEvent::Heartbeat(heartbeat),
        GatewayEvent::DeployStatus(status) => GatewayEvent::DeployStatus(status),
        GatewayEvent::PeerError(error) => GatewayEvent::PeerError(error),
        GatewayEvent::RateLimited { kind } => GatewayEvent::RateLimited { kind },
        GatewayEvent::Closed(reason) => GatewayEvent::Closed(reason),
    }
}
