//! The `session` target: any bytes, split anywhere, fed to a gateway's or
//! a device's session, driven the way a real driver drives it.
//!
//! A fuzz input is
//!
//! ```text
//! [setup] [n] [n steps of (len, tick)] [stream ...]
//! ```
//!
//! - `setup`: bits 0-1 pick the session (see [`Role`]); bit 2: the driver
//!   grants what is asked (enrollment, session) instead of refusing it;
//!   bit 3: it sends what it may (heartbeats when due, deployment reports,
//!   a deployment commit per heartbeat); bit 4: it closes the session
//!   itself once the stream is used up.
//! - Each step feeds the next `len` bytes of the stream (all that is left
//!   for 0) to `handle_input`, draining `poll_event` after every call, then
//!   advances the clock by `tick² × 4` ms and calls `handle_timeout`. The
//!   steps repeat until the stream is used up (with no steps, it is fed in
//!   one piece); then the clock runs once more through every step, and on
//!   by an hour, three times.
//!
//! Bytes missing from the header count as zeros.
//!
//! Checked throughout, for any input:
//!
//! - `handle_input` takes some of the bytes, or an event is waiting;
//! - the session never buffers more than a frame of input;
//! - after `handle_timeout(now)`, the next deadline is after `now`;
//! - once `is_closed()`, the only event left is a single `Closed`, and
//!   every closed session has delivered one;
//! - everything `poll_transmit` offers is whole frames, each of which
//!   decodes as a message of the session's direction (downlinks from a
//!   gateway, uplinks from a device), and nothing more is offered once the
//!   session has closed and its last frames were taken;
//! - a driver's call in a state that allows it succeeds, or fails only for
//!   a full output buffer and then leaves the output as it was.

use std::fmt::Debug;

use wasmbed_protocol::codec;
use wasmbed_protocol::frame::{self, HEADER_LEN, MAX_FRAME_LEN};
use wasmbed_protocol::samples;
use wasmbed_protocol::session::{
    CloseReason, DeviceConfig, DeviceEvent, DeviceSession, GatewayConfig, GatewayEvent,
    GatewaySession, PeerCredential, SessionError,
};
use wasmbed_protocol::*;

use crate::SeedFiles;

/// Which session an input drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A gateway's session with a peer holding the claim certificate.
    GatewayClaim,
    /// A gateway's session with a peer holding a device certificate.
    GatewayDevice,
    /// A device's session that enrolls.
    DeviceEnroll,
    /// A device's session that resumes with its identity.
    DeviceResume,
}

/// The first byte of an input: which session, and how its driver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    pub role: Role,
    /// Grant enrollments and sessions (and answer challenges).
    pub grant: bool,
    /// Send heartbeats, deployment reports and commits.
    pub send: bool,
    /// Close the session once the stream is used up.
    pub close_at_end: bool,
}

impl Setup {
    pub fn from_byte(byte: u8) -> Self {
        let role = match byte & 0b11 {
            0 => Role::GatewayClaim,
            1 => Role::GatewayDevice,
            2 => Role::DeviceEnroll,
            _ => Role::DeviceResume,
        };
        Setup {
            role,
            grant: byte & 0b100 != 0,
            send: byte & 0b1000 != 0,
            close_at_end: byte & 0b1_0000 != 0,
        }
    }

    pub fn to_byte(self) -> u8 {
        let role = match self.role {
            Role::GatewayClaim => 0,
            Role::GatewayDevice => 1,
            Role::DeviceEnroll => 2,
            Role::DeviceResume => 3,
        };
        role | u8::from(self.grant) << 2
            | u8::from(self.send) << 3
            | u8::from(self.close_at_end) << 4
    }
}

/// One step of an input: feed `len` bytes (0: the rest), then let `tick`
/// pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub len: u8,
    pub tick: u8,
}

impl Step {
    /// Milliseconds the clock advances after the step.
    fn millis(self) -> u64 {
        u64::from(self.tick).pow(2) * 4
    }
}

/// The bytes of an input made of these parts.
pub fn session_input(setup: Setup, steps: &[Step], stream: &[u8]) -> Vec<u8> {
    let n = u8::try_from(steps.len()).expect("at most 255 steps");
    let mut data = vec![setup.to_byte(), n];
    for step in steps {
        data.extend_from_slice(&[step.len, step.tick]);
    }
    data.extend_from_slice(stream);
    data
}

/// Splits an input into its parts.
fn parse(data: &[u8]) -> (Setup, Vec<Step>, &[u8]) {
    let setup = Setup::from_byte(data.first().copied().unwrap_or(0));
    let n = usize::from(data.get(1).copied().unwrap_or(0));
    let rest = data.get(2..).unwrap_or_default();
    let steps_len = (2 * n).min(rest.len());
    let (steps, stream) = rest.split_at(steps_len);
    let steps = steps
        .chunks(2)
        .map(|pair| Step {
            len: pair[0],
            tick: pair.get(1).copied().unwrap_or(0),
        })
        .collect();
    (setup, steps, stream)
}

/// What a run of the target saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRun {
    pub role: Role,
    /// Events polled, `Closed` included.
    pub events: usize,
    /// Frames the session sent.
    pub frames_sent: usize,
    /// Why the session closed, if it did.
    pub closed: Option<CloseReason>,
}

/// `session` target: `data` as a [`Setup`], steps and a stream of bytes
/// from the peer. Returns what the session did.
pub fn check_session(data: &[u8]) -> SessionRun {
    let (setup, steps, stream) = parse(data);
    match setup.role {
        Role::GatewayClaim | Role::GatewayDevice => {
            let credential = if setup.role == Role::GatewayClaim {
                PeerCredential::Claim
            } else {
                PeerCredential::Device
            };
            let session: GatewaySession<Vec<u8>> =
                GatewaySession::new(credential, GatewayConfig::default(), NONCE, GATEWAY_START);
            run(session, setup, &steps, stream, GATEWAY_START)
        }
        Role::DeviceEnroll => {
            let session: DeviceSession =
                DeviceSession::enroll(DeviceConfig::default(), DEVICE_START);
            run(session, setup, &steps, stream, DEVICE_START)
        }
        Role::DeviceResume => {
            let session: DeviceSession =
                DeviceSession::resume(DeviceConfig::default(), &hello(), DEVICE_START);
            run(session, setup, &steps, stream, DEVICE_START)
        }
    }
}

/// The gateway's clock is the wall clock (it tells devices the time).
const GATEWAY_START: Millis = Millis(1_764_253_000_000);
/// A device's clock starts at boot.
const DEVICE_START: Millis = Millis(0);
const NONCE: [u8; NONCE_LEN] = [0x5a; NONCE_LEN];
const DEVICE_ID: DeviceId = DeviceId([0xd1; 16]);
/// An hour: every deadline passes.
const HOUR: u64 = 3_600_000;

fn hello() -> SessionStart {
    match uplink_sample("session_start") {
        Uplink::SessionStart(start) => start,
        other => panic!("not a session start: {other:?}"),
    }
}

fn enroll_request() -> EnrollRequest {
    match uplink_sample("enroll_request") {
        Uplink::EnrollRequest(request) => request,
        other => panic!("not an enroll request: {other:?}"),
    }
}

fn execution_result() -> ExecutionResult<'static> {
    match uplink_sample("execution_result_returned") {
        Uplink::ExecutionResult(result) => result,
        other => panic!("not an execution result: {other:?}"),
    }
}

fn uplink_sample(name: &str) -> Uplink<'static> {
    samples::uplinks()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no sample {name}"))
        .1
}

/// What an event was, as far as the checks care.
#[derive(Debug, Clone, Copy)]
enum Seen {
    Closed(CloseReason),
    Other(&'static str),
}

/// The calls a driver makes, the same for both ends.
trait Driven {
    /// Whether the session sends uplinks (a device) or downlinks.
    const SENDS_UPLINKS: bool;
    fn handle_input(&mut self, data: &[u8], now: Millis) -> usize;
    fn handle_timeout(&mut self, now: Millis);
    fn poll_timeout(&self) -> Option<Millis>;
    fn poll_transmit(&self) -> &[u8];
    fn advance_transmit(&mut self, n: usize);
    fn is_closed(&self) -> bool;
    fn buffered_input(&self) -> usize;
    fn close(&mut self, reason: GoodbyeReason);
    /// Polls one event and reacts to it as a driver with `setup` would.
    fn poll_and_react(&mut self, setup: Setup) -> Option<Seen>;
}

/// Checks the outcome of a driver's call made in a state that allows it.
fn check_call<T: Debug>(what: &str, result: Result<T, SessionError>, before: usize, after: usize) {
    match result {
        Ok(_) => assert!(after > before, "{what} succeeded but sent nothing"),
        Err(SessionError::OutboxFull) => {
            assert_eq!(after, before, "{what} failed but changed the output");
        }
        Err(e) => panic!("{what} refused in a state that allows it: {e:?}"),
    }
}

impl Driven for GatewaySession<Vec<u8>> {
    const SENDS_UPLINKS: bool = false;

    fn handle_input(&mut self, data: &[u8], now: Millis) -> usize {
        GatewaySession::handle_input(self, data, now)
    }
    fn handle_timeout(&mut self, now: Millis) {
        GatewaySession::handle_timeout(self, now);
    }
    fn poll_timeout(&self) -> Option<Millis> {
        GatewaySession::poll_timeout(self)
    }
    fn poll_transmit(&self) -> &[u8] {
        GatewaySession::poll_transmit(self)
    }
    fn advance_transmit(&mut self, n: usize) {
        GatewaySession::advance_transmit(self, n);
    }
    fn is_closed(&self) -> bool {
        GatewaySession::is_closed(self)
    }
    fn buffered_input(&self) -> usize {
        GatewaySession::buffered_input(self)
    }
    fn close(&mut self, reason: GoodbyeReason) {
        GatewaySession::close(self, reason);
    }

    fn poll_and_react(&mut self, setup: Setup) -> Option<Seen> {
        let (seen, reaction) = match self.poll_event()? {
            GatewayEvent::EnrollRequested { .. } => {
                (Seen::Other("EnrollRequested"), GatewayReaction::Enrollment)
            }
            GatewayEvent::SessionRequested(_) => {
                (Seen::Other("SessionRequested"), GatewayReaction::Session)
            }
            GatewayEvent::Heartbeat(_) => (
                Seen::Other("Heartbeat"),
                if setup.send {
                    GatewayReaction::Commit
                } else {
                    GatewayReaction::None
                },
            ),
            GatewayEvent::DeployStatus(_) => (Seen::Other("DeployStatus"), GatewayReaction::None),
            GatewayEvent::ExecutionResult(_) => {
                (Seen::Other("ExecutionResult"), GatewayReaction::None)
            }
            GatewayEvent::PeerError(_) => (Seen::Other("PeerError"), GatewayReaction::None),
            GatewayEvent::RateLimited { .. } => {
                (Seen::Other("RateLimited"), GatewayReaction::None)
            }
            GatewayEvent::Closed(reason) => (Seen::Closed(reason), GatewayReaction::None),
        };
        let before = self.poll_transmit().len();
        match reaction {
            GatewayReaction::None => {}
            GatewayReaction::Enrollment => {
                let result = if setup.grant {
                    self.accept_enrollment(DEVICE_ID, samples::CERTIFICATE)
                } else {
                    self.refuse_enrollment(EnrollRefusal::PairingClosed)
                };
                let after = self.poll_transmit().len();
                check_call("answering an enrollment", result, before, after);
            }
            GatewayReaction::Session => {
                let result = if setup.grant {
                    self.accept_session(DEVICE_ID)
                } else {
                    self.refuse_session(ErrorCode::Unauthorized)
                };
                let after = self.poll_transmit().len();
                check_call("answering a session", result, before, after);
            }
            GatewayReaction::Commit => {
                let commit = Downlink::DeployCommit(DeployCommit {
                    deployment: DeploymentId(7),
                });
                let result = self.send(commit);
                let after = self.poll_transmit().len();
                check_call("sending a commit", result, before, after);
            }
        }
        Some(seen)
    }
}

/// What a gateway's driver does about an event, once the event (which
/// may borrow the session) is gone.
enum GatewayReaction {
    None,
    Enrollment,
    Session,
    Commit,
}

/// What a device's driver does about an event, once the event (which
/// borrows the session) is gone.
enum DeviceReaction {
    None,
    Enroll,
    Heartbeat,
    Report(DeploymentId, DeployState),
}

impl Driven for DeviceSession {
    const SENDS_UPLINKS: bool = true;

    fn handle_input(&mut self, data: &[u8], now: Millis) -> usize {
        DeviceSession::handle_input(self, data, now)
    }
    fn handle_timeout(&mut self, now: Millis) {
        DeviceSession::handle_timeout(self, now);
    }
    fn poll_timeout(&self) -> Option<Millis> {
        DeviceSession::poll_timeout(self)
    }
    fn poll_transmit(&self) -> &[u8] {
        DeviceSession::poll_transmit(self)
    }
    fn advance_transmit(&mut self, n: usize) {
        DeviceSession::advance_transmit(self, n);
    }
    fn is_closed(&self) -> bool {
        DeviceSession::is_closed(self)
    }
    fn buffered_input(&self) -> usize {
        DeviceSession::buffered_input(self)
    }
    fn close(&mut self, reason: GoodbyeReason) {
        DeviceSession::close(self, reason);
    }

    fn poll_and_react(&mut self, setup: Setup) -> Option<Seen> {
        let report = |deployment, state| {
            if setup.send {
                DeviceReaction::Report(deployment, state)
            } else {
                DeviceReaction::None
            }
        };
        let (seen, reaction) = match self.poll_event()? {
            DeviceEvent::EnrollChallenge { .. } => (
                Seen::Other("EnrollChallenge"),
                if setup.grant {
                    DeviceReaction::Enroll
                } else {
                    DeviceReaction::None
                },
            ),
            DeviceEvent::Enrolled { .. } => (Seen::Other("Enrolled"), DeviceReaction::None),
            DeviceEvent::EnrollRefused { .. } => {
                (Seen::Other("EnrollRefused"), DeviceReaction::None)
            }
            DeviceEvent::Established(_) => (Seen::Other("Established"), DeviceReaction::None),
            DeviceEvent::HeartbeatDue => (
                Seen::Other("HeartbeatDue"),
                if setup.send {
                    DeviceReaction::Heartbeat
                } else {
                    DeviceReaction::None
                },
            ),
            DeviceEvent::HeartbeatAcked(_) => (Seen::Other("HeartbeatAcked"), DeviceReaction::None),
            DeviceEvent::DeployStart(start) => (
                Seen::Other("DeployStart"),
                report(start.deployment, DeployState::Accepted { resume_offset: 0 }),
            ),
            DeviceEvent::DeployChunk(chunk) => {
                let bytes_held = chunk
                    .offset
                    .saturating_add(u32::try_from(chunk.data.len()).unwrap_or(u32::MAX));
                (
                    Seen::Other("DeployChunk"),
                    report(chunk.deployment, DeployState::Progress { bytes_held }),
                )
            }
            DeviceEvent::DeployCommit(deployment) => (
                Seen::Other("DeployCommit"),
                report(deployment, DeployState::Installed),
            ),
            DeviceEvent::Stop(deployment) => (
                Seen::Other("Stop"),
                report(deployment, DeployState::Stopped),
            ),
            DeviceEvent::Remove(deployment) => (
                Seen::Other("Remove"),
                report(deployment, DeployState::Removed),
            ),
            DeviceEvent::PeerError(_) => (Seen::Other("PeerError"), DeviceReaction::None),
            DeviceEvent::Closed(reason) => (Seen::Closed(reason), DeviceReaction::None),
        };
        let before = self.poll_transmit().len();
        match reaction {
            DeviceReaction::None => {}
            DeviceReaction::Enroll => {
                let result = self.send_enroll_request(&enroll_request());
                check_call(
                    "answering a challenge",
                    result,
                    before,
                    self.poll_transmit().len(),
                );
            }
            DeviceReaction::Heartbeat => {
                let heartbeat = samples::heartbeat();
                let result = self.send_heartbeat(&heartbeat);
                check_call(
                    "sending a heartbeat",
                    result,
                    before,
                    self.poll_transmit().len(),
                );
            }
            DeviceReaction::Report(deployment, state) => {
                let result = self.send_deploy_status(DeployStatus { deployment, state });
                check_call(
                    "reporting a deployment",
                    result,
                    before,
                    self.poll_transmit().len(),
                );
                // And the result of a run, while at it.
                if state == DeployState::Installed {
                    let before = self.poll_transmit().len();
                    let result = self.send_execution_result(&execution_result());
                    check_call(
                        "reporting a result",
                        result,
                        before,
                        self.poll_transmit().len(),
                    );
                }
            }
        }
        Some(seen)
    }
}

/// The checks' view of a run so far.
#[derive(Debug, Default)]
struct Watch {
    events: usize,
    frames_sent: usize,
    closed: Option<CloseReason>,
    /// Closed, and its last frames taken: nothing more may be sent.
    done: bool,
}

/// Drives `session` through the steps and the stream.
fn run<S: Driven>(
    mut session: S,
    setup: Setup,
    steps: &[Step],
    stream: &[u8],
    start: Millis,
) -> SessionRun {
    let mut watch = Watch::default();
    let mut now = start;
    drain(&mut session, setup, &mut watch);
    flush(&mut session, &mut watch);

    let whole = [Step { len: 0, tick: 0 }];
    let steps = if steps.is_empty() { &whole[..] } else { steps };
    let mut rest = stream;
    for step in steps.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let len = match usize::from(step.len) {
            0 => rest.len(),
            n => n.min(rest.len()),
        };
        feed(&mut session, &rest[..len], now, setup, &mut watch);
        rest = &rest[len..];
        now = now.plus(step.millis());
        tick(&mut session, now, setup, &mut watch);
    }
    for step in steps {
        now = now.plus(step.millis());
        tick(&mut session, now, setup, &mut watch);
    }
    if setup.close_at_end {
        let was_closed = session.is_closed();
        let before = session.poll_transmit().len();
        session.close(GoodbyeReason::Normal);
        assert!(session.is_closed(), "close did not close");
        if was_closed {
            assert_eq!(
                session.poll_transmit().len(),
                before,
                "close sent after the end"
            );
        }
        drain(&mut session, setup, &mut watch);
        flush(&mut session, &mut watch);
    }
    for _ in 0..3 {
        now = now.plus(HOUR);
        tick(&mut session, now, setup, &mut watch);
    }
    SessionRun {
        role: setup.role,
        events: watch.events,
        frames_sent: watch.frames_sent,
        closed: watch.closed,
    }
}

/// Feeds `chunk` whole, draining events and output after every call.
fn feed<S: Driven>(session: &mut S, chunk: &[u8], now: Millis, setup: Setup, watch: &mut Watch) {
    let mut rest = chunk;
    while !rest.is_empty() {
        let taken = session.handle_input(rest, now);
        assert!(taken <= rest.len(), "took {taken} of {} bytes", rest.len());
        let buffered = session.buffered_input();
        assert!(
            buffered <= HEADER_LEN + MAX_FRAME_LEN,
            "{buffered} bytes of input buffered"
        );
        rest = &rest[taken..];
        let events = drain(session, setup, watch);
        assert!(
            taken > 0 || events > 0,
            "stuck: handle_input took nothing of {} bytes, and no event came",
            rest.len()
        );
        flush(session, watch);
    }
}

/// Lets the clock reach `now`.
fn tick<S: Driven>(session: &mut S, now: Millis, setup: Setup, watch: &mut Watch) {
    session.handle_timeout(now);
    if let Some(next) = session.poll_timeout() {
        assert!(
            next > now,
            "handle_timeout({now:?}) left the deadline {next:?}"
        );
    }
    drain(session, setup, watch);
    flush(session, watch);
}

/// Polls and reacts to every event; returns how many there were.
fn drain<S: Driven>(session: &mut S, setup: Setup, watch: &mut Watch) -> usize {
    let mut events = 0;
    loop {
        let was_closed = session.is_closed();
        let Some(seen) = session.poll_and_react(setup) else {
            break;
        };
        events += 1;
        assert!(
            watch.closed.is_none(),
            "{seen:?} after Closed({:?})",
            watch.closed
        );
        match seen {
            Seen::Closed(reason) => {
                assert!(session.is_closed(), "Closed({reason:?}), but not closed");
                watch.closed = Some(reason);
            }
            Seen::Other(event) => assert!(!was_closed, "{event} from a closed session"),
        }
    }
    assert_eq!(
        session.is_closed(),
        watch.closed.is_some(),
        "closed without a Closed event, or the reverse"
    );
    watch.events += events;
    events
}

/// Checks and takes everything the session offers to send.
fn flush<S: Driven>(session: &mut S, watch: &mut Watch) {
    let pending = session.poll_transmit();
    assert!(
        !watch.done || pending.is_empty(),
        "{} bytes to send after the session closed",
        pending.len()
    );
    watch.frames_sent += check_frames(pending, S::SENDS_UPLINKS);
    let len = pending.len();
    session.advance_transmit(len);
    assert!(
        session.poll_transmit().is_empty(),
        "sent bytes still offered"
    );
    if session.is_closed() {
        watch.done = true;
    }
}

/// Checks that `bytes` is whole frames of messages in one direction, and
/// returns how many.
fn check_frames(bytes: &[u8], uplinks: bool) -> usize {
    let mut rest = bytes;
    let mut frames = 0;
    while !rest.is_empty() {
        let body = match frame::find_frame(rest, MAX_FRAME_LEN) {
            Ok(Some(body)) => body,
            other => panic!(
                "output is not whole frames: {other:?} at {} of {:02x?}",
                bytes.len() - rest.len(),
                bytes
            ),
        };
        let message = &rest[body.clone()];
        let decoded = if uplinks {
            codec::decode_uplink(message).map(drop)
        } else {
            codec::decode_downlink(message).map(drop)
        };
        if let Err(e) = decoded {
            let direction = if uplinks { "uplink" } else { "downlink" };
            panic!("a frame sent is not an {direction} ({e}): {message:02x?}");
        }
        rest = &rest[body.end..];
        frames += 1;
    }
    frames
}

/// A gateway and a device that talk to each other, recording what each
/// sent.
struct Conversation {
    gateway: GatewaySession<Vec<u8>>,
    device: DeviceSession,
    uplinks: Vec<u8>,
    downlinks: Vec<u8>,
}

impl Conversation {
    fn new(credential: PeerCredential) -> Self {
        let gateway =
            GatewaySession::new(credential, GatewayConfig::default(), NONCE, GATEWAY_START);
        let device = match credential {
            PeerCredential::Claim => DeviceSession::enroll(DeviceConfig::default(), DEVICE_START),
            PeerCredential::Device => {
                DeviceSession::resume(DeviceConfig::default(), &hello(), DEVICE_START)
            }
        };
        Conversation {
            gateway,
            device,
            uplinks: Vec::new(),
            downlinks: Vec::new(),
        }
    }

    /// Delivers what the device sent; returns the gateway's events.
    fn up(&mut self) -> Vec<String> {
        let bytes = self.device.poll_transmit().to_vec();
        self.device.advance_transmit(bytes.len());
        self.uplinks.extend_from_slice(&bytes);
        let mut rest = &bytes[..];
        let mut events = Vec::new();
        while !rest.is_empty() {
            let taken = self.gateway.handle_input(rest, GATEWAY_START);
            rest = &rest[taken..];
            while let Some(event) = self.gateway.poll_event() {
                events.push(format!("{event:?}"));
            }
        }
        events
    }

    /// Delivers what the gateway sent; returns the device's events.
    fn down(&mut self) -> Vec<String> {
        let bytes = self.gateway.poll_transmit().to_vec();
        self.gateway.advance_transmit(bytes.len());
        self.downlinks.extend_from_slice(&bytes);
        let mut rest = &bytes[..];
        let mut events = Vec::new();
        while !rest.is_empty() {
            let taken = self.device.handle_input(rest, DEVICE_START);
            rest = &rest[taken..];
            while let Some(event) = self.device.poll_event() {
                events.push(format!("{event:?}"));
            }
        }
        events
    }
}

/// An enrollment from challenge to goodbye: (uplinks, downlinks).
fn enrollment() -> (Vec<u8>, Vec<u8>) {
    let mut c = Conversation::new(PeerCredential::Claim);
    let events = c.down();
    assert!(events[0].starts_with("EnrollChallenge"), "{events:?}");
    c.device
        .send_enroll_request(&enroll_request())
        .expect("challenged");
    let events = c.up();
    assert!(
        events.len() == 1 && events[0].starts_with("EnrollRequested"),
        "{events:?}"
    );
    c.gateway
        .accept_enrollment(DEVICE_ID, samples::CERTIFICATE)
        .expect("deciding");
    let events = c.down();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(c.device.is_closed() && c.gateway.is_closed());
    (c.uplinks, c.downlinks)
}

/// A resumed session that deploys, runs, stops and removes an app; ended
/// by the device's goodbye or the gateway's: (uplinks, downlinks).
fn deployment(device_ends: bool) -> (Vec<u8>, Vec<u8>) {
    let mut c = Conversation::new(PeerCredential::Device);
    let events = c.up();
    assert!(
        events.len() == 1 && events[0].starts_with("SessionRequested"),
        "{events:?}"
    );
    c.gateway.accept_session(DEVICE_ID).expect("deciding");
    c.down();
    assert!(c.device.is_established());

    c.device
        .send_heartbeat(&samples::heartbeat())
        .expect("established");
    c.up();
    c.down();

    let start = samples::deploy_start();
    let deployment = start.deployment;
    let module = samples::chunk_data(3000);
    c.gateway
        .send(Downlink::DeployStart(start))
        .expect("established");
    let mut offset = 0u32;
    for data in module.chunks(MAX_CHUNK_LEN) {
        c.gateway
            .send(Downlink::DeployChunk(DeployChunk {
                deployment,
                offset,
                data,
            }))
            .expect("room");
        offset += u32::try_from(data.len()).expect("small");
    }
    c.gateway
        .send(Downlink::DeployCommit(DeployCommit { deployment }))
        .expect("room");
    let events = c.down();
    assert_eq!(
        events.len(),
        2 + module.len().div_ceil(MAX_CHUNK_LEN),
        "{events:?}"
    );

    for state in [
        DeployState::Accepted { resume_offset: 0 },
        DeployState::Progress { bytes_held: offset },
        DeployState::Installed,
        DeployState::Running,
    ] {
        c.device
            .send_deploy_status(DeployStatus { deployment, state })
            .expect("established");
    }
    c.device
        .send_execution_result(&execution_result())
        .expect("established");
    let events = c.up();
    assert_eq!(events.len(), 5, "{events:?}");

    c.gateway
        .send(Downlink::Stop(StopApp { deployment }))
        .expect("established");
    c.gateway
        .send(Downlink::Remove(RemoveApp { deployment }))
        .expect("established");
    c.down();
    for state in [DeployState::Stopped, DeployState::Removed] {
        c.device
            .send_deploy_status(DeployStatus { deployment, state })
            .expect("established");
    }
    c.up();

    if device_ends {
        c.device.close(GoodbyeReason::Restart);
        c.up();
    } else {
        c.gateway.close(GoodbyeReason::Normal);
        c.down();
    }
    assert!(c.device.is_closed() && c.gateway.is_closed());
    (c.uplinks, c.downlinks)
}

/// Ways to split a stream, with a name each.
fn splits() -> [(&'static str, Vec<Step>); 4] {
    [
        ("whole", Vec::new()),
        ("bytewise", vec![Step { len: 1, tick: 1 }]),
        (
            "mixed",
            vec![
                Step { len: 7, tick: 3 },
                Step { len: 64, tick: 0 },
                Step { len: 200, tick: 20 },
            ],
        ),
        // 57.6 s per 16 bytes: deadlines pass mid-stream.
        ("slow", vec![Step { len: 16, tick: 120 }]),
    ]
}

/// The seeds of the `session` target: each end fed what its peer sent in
/// a real conversation, split in several ways.
pub fn session_seeds() -> SeedFiles {
    let (enroll_up, enroll_down) = enrollment();
    let (resume_up, _) = deployment(true);
    let (_, resume_down) = deployment(false);
    let granting = |role| Setup {
        role,
        grant: true,
        send: true,
        close_at_end: false,
    };
    let streams = [
        ("gateway_claim", granting(Role::GatewayClaim), enroll_up),
        ("gateway_device", granting(Role::GatewayDevice), resume_up),
        ("device_enroll", granting(Role::DeviceEnroll), enroll_down),
        ("device_resume", granting(Role::DeviceResume), resume_down),
    ];
    let mut files = Vec::new();
    for (name, setup, stream) in &streams {
        for (split, steps) in splits() {
            files.push((
                format!("{name}_{split}.bin"),
                session_input(*setup, &steps, stream),
            ));
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmbed_protocol::session::Violation;

    #[test]
    fn setup_bytes_round_trip() {
        for byte in 0..0b10_0000 {
            assert_eq!(Setup::from_byte(byte).to_byte(), byte);
        }
    }

    #[test]
    fn inputs_parse_back() {
        let setup = Setup::from_byte(0b1_1101);
        let steps = [Step { len: 3, tick: 9 }, Step { len: 0, tick: 1 }];
        let data = session_input(setup, &steps, b"stream");
        assert_eq!(parse(&data), (setup, steps.to_vec(), &b"stream"[..]));
        // Short headers.
        assert_eq!(parse(&[]).1, Vec::new());
        assert_eq!(parse(&[0x01, 5, 1]).1, vec![Step { len: 1, tick: 0 }]);
    }

    /// The real conversations end as they should, however they are split
    /// (unless deadlines pass first).
    #[test]
    fn seeds_end_as_their_conversations_do() {
        for (name, data) in session_seeds() {
            let run = check_session(&data);
            let slow = name.ends_with("_slow.bin");
            assert!(run.events > 0, "{name}: {run:?}");
            assert!(slow || run.frames_sent > 0, "{name}: {run:?}");
            let expected = if slow {
                CloseReason::Timeout
            } else {
                match run.role {
                    Role::GatewayClaim => CloseReason::LocalGoodbye(GoodbyeReason::Enrolled),
                    Role::GatewayDevice => CloseReason::PeerGoodbye(GoodbyeReason::Restart),
                    Role::DeviceEnroll => CloseReason::PeerGoodbye(GoodbyeReason::Enrolled),
                    Role::DeviceResume => CloseReason::PeerGoodbye(GoodbyeReason::Normal),
                }
            };
            assert_eq!(run.closed, Some(expected), "{name}: {run:?}");
        }
    }

    /// A stream that is not a conversation is a protocol violation, for
    /// every role, and the checks still hold.
    #[test]
    fn garbage_is_a_violation() {
        for role in 0..4 {
            for stream in [&[0xff; 8][..], &[0, 0, 0, 0], &[0, 0, 0, 1, 0xa0]] {
                let data = session_input(Setup::from_byte(role), &[], stream);
                let run = check_session(&data);
                assert!(
                    matches!(run.closed, Some(CloseReason::ProtocolViolation(_))),
                    "{role}: {run:?}"
                );
            }
        }
        let data = session_input(Setup::from_byte(1), &[], &[0, 0, 0, 1, 0x1c]);
        assert_eq!(
            check_session(&data).closed,
            Some(CloseReason::ProtocolViolation(Violation::Decode(
                DecodeError::Malformed { at: 0 }
            )))
        );
    }
}
