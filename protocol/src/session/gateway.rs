//! The gateway's end of a session.

use super::link::{Inbox, Outbox, PeerIds};
use super::{ByteBuffer, CloseReason, FrameBuffer, SessionError, Violation};
use crate::codec;
use crate::frame::MAX_FRAME_LEN;
use crate::message::*;

/// Timing and size settings of a gateway session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Largest frame body accepted or sent.
    pub max_frame_len: usize,
    /// Most bytes waiting to be sent before sends fail with `OutboxFull`.
    pub max_outbox: usize,
    /// How long a new session may take to send its first message.
    pub first_message_timeout_ms: u32,
    /// The heartbeat interval told to devices.
    pub heartbeat_interval_ms: u32,
    /// Intervals without any message before a device counts as lost.
    pub missed_heartbeats: u32,
    /// Heartbeats accepted back to back; beyond them, one per half
    /// interval. A heartbeat sooner than that is answered
    /// `Error{rate-limited}` and not acknowledged.
    pub heartbeat_burst: u32,
    /// Execution results accepted back to back; beyond them, one per
    /// `result_spacing_ms`. A result sooner than that is answered
    /// `Error{rate-limited}` and not reported: the device keeps it and
    /// sends it again in its next session.
    pub result_burst: u32,
    /// See `result_burst`.
    pub result_spacing_ms: u32,
    /// Rate-limited messages a session may send (less one for each message
    /// accepted at the allowed rate since) before it is closed as a
    /// protocol violation (`rate-limited`).
    pub max_rate_limited: u32,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_frame_len: MAX_FRAME_LEN,
            max_outbox: 64 * 1024,
            first_message_timeout_ms: 10_000,
            heartbeat_interval_ms: 10_000,
            missed_heartbeats: 3,
            heartbeat_burst: 4,
            result_burst: 16,
            result_spacing_ms: 100,
            max_rate_limited: 16,
        }
    }
}

/// How the peer authenticated its TLS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerCredential {
    /// The shared claim certificate: the peer may only enroll.
    Claim,
    /// A device certificate issued at enrollment.
    Device,
}

/// What the gateway must react to.
#[derive(Debug, Clone, PartialEq)]
pub enum GatewayEvent<'a> {
    /// Verify `request.proof` over [`proof_payload`]`(nonce, public_key)`
    /// and answer with [`GatewaySession::accept_enrollment`] or
    /// [`GatewaySession::refuse_enrollment`].
    EnrollRequested {
        request: EnrollRequest,
        nonce: [u8; NONCE_LEN],
    },
    /// Answer with [`GatewaySession::accept_session`] or
    /// [`GatewaySession::refuse_session`].
    SessionRequested(SessionStart),
    /// A heartbeat; the session has acknowledged it already.
    Heartbeat(Heartbeat),
    DeployStatus(DeployStatus),
    /// Log lines borrow the session's input buffer.
    ExecutionResult(ExecutionResult<'a>),
    /// The device reported an error; the session goes on unless it closes.
    PeerError(ErrorMessage),
    /// A message of `kind` came too soon and was refused with
    /// `Error{rate-limited}`; the session goes on (until it has refused
    /// [`GatewayConfig::max_rate_limited`] messages).
    RateLimited {
        kind: &'static str,
    },
    /// The session is over. [`CloseReason::Timeout`] after establishment
    /// means the device missed its heartbeats.
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitEnrollRequest {
        deadline: Millis,
    },
    /// The gateway is checking an enrollment request.
    DecidingEnrollment {
        request_id: u32,
    },
    AwaitSessionStart {
        deadline: Millis,
    },
    /// The gateway is looking up the device.
    DecidingSession {
        request_id: u32,
    },
    Established {
        deadline: Millis,
    },
    Closed,
}

/// The gateway's end of one device connection.
#[derive(Debug)]
pub struct GatewaySession<B = FrameBuffer> {
    inbox: Inbox<B>,
    core: Core<B>,
}

#[derive(Debug)]
struct Core<B> {
    outbox: Outbox<B>,
    state: State,
    config: GatewayConfig,
    credential: PeerCredential,
    nonce: [u8; NONCE_LEN],
    now: Millis,
    /// Added to `now` to give the wall-clock time told to the device.
    server_time_offset: u64,
    close_event: Option<CloseReason>,
    peer_ids: PeerIds,
    heartbeat_pace: Pace,
    result_pace: Pace,
    rate_limited: u32,
}

impl<B: ByteBuffer + Default> GatewaySession<B> {
    /// A session for a freshly authenticated TLS connection.
    ///
    /// `now` is the session's clock, best a monotonic one: deadlines are
    /// computed from it, so a step of the wall clock neither fires nor
    /// stalls them. Without [`Self::with_server_time`] it is also the
    /// server time told to the device. `nonce` must be fresh and random;
    /// it is only used for a [`PeerCredential::Claim`] peer.
    pub fn new(
        credential: PeerCredential,
        config: GatewayConfig,
        nonce: [u8; NONCE_LEN],
        now: Millis,
    ) -> Self {
        let deadline = now.plus(config.first_message_timeout_ms.into());
        let state = match credential {
            PeerCredential::Claim => State::AwaitEnrollRequest { deadline },
            PeerCredential::Device => State::AwaitSessionStart { deadline },
        };
        let mut session = GatewaySession {
            inbox: Inbox::new(B::default(), config.max_frame_len),
            core: Core {
                outbox: Outbox::new(B::default(), config.max_frame_len, config.max_outbox),
                state,
                config,
                credential,
                nonce,
                now,
                server_time_offset: 0,
                close_event: None,
                peer_ids: PeerIds::default(),
                heartbeat_pace: Pace { due: now },
                result_pace: Pace { due: now },
                rate_limited: 0,
            },
        };
        if credential == PeerCredential::Claim {
            let challenge = Downlink::EnrollChallenge(EnrollChallenge { nonce });
            if session.core.outbox.send(challenge, None).is_err() {
                session
                    .core
                    .close(CloseReason::LocalGoodbye(GoodbyeReason::ProtocolError));
            }
        }
        session
    }
}

impl<B: ByteBuffer> GatewaySession<B> {
    /// Tells the session the wall-clock time (Unix milliseconds) at the
    /// `now` it was created with: the server time sent to the device is
    /// that, advanced by the session's clock.
    #[must_use]
    pub fn with_server_time(mut self, wall_now: Millis) -> Self {
        self.core.server_time_offset = wall_now.0.wrapping_sub(self.core.now.0);
        self
    }

    /// Feeds bytes received from the device. Returns how many were taken:
    /// when fewer than `data.len()`, drain [`Self::poll_event`] and call
    /// again with the rest.
    pub fn handle_input(&mut self, data: &[u8], now: Millis) -> usize {
        self.core.now = now;
        if self.core.state == State::Closed {
            return data.len();
        }
        self.inbox.accept(data)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<GatewayEvent<'_>> {
        if let Some(reason) = self.core.close_event.take() {
            return Some(GatewayEvent::Closed(reason));
        }
        if self.core.state == State::Closed {
            return None;
        }
        let range = match self.inbox.next_frame() {
            Ok(Some(range)) => range,
            Ok(None) => return None,
            Err(e) => return Some(self.core.violation(Violation::Frame(e))),
        };
        match codec::decode_uplink(self.inbox.body(range)) {
            Ok(envelope) => match self.core.peer_ids.check(envelope.id) {
                Ok(()) => Some(self.core.dispatch(envelope)),
                Err(violation) => Some(self.core.violation(violation)),
            },
            Err(e) => Some(self.core.violation(Violation::Decode(e))),
        }
    }

    /// Bytes to write to the transport.
    pub fn poll_transmit(&self) -> &[u8] {
        self.core.outbox.pending()
    }

    /// Reports that the first `n` bytes of [`Self::poll_transmit`] were written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.core.outbox.advance(n);
    }

    /// When [`Self::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Millis> {
        match self.core.state {
            State::AwaitEnrollRequest { deadline }
            | State::AwaitSessionStart { deadline }
            | State::Established { deadline } => Some(deadline),
            State::DecidingEnrollment { .. } | State::DecidingSession { .. } | State::Closed => {
                None
            }
        }
    }

    /// Advances the session's clock; a missed deadline closes the session.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.core.now = now;
        if self.poll_timeout().is_some_and(|deadline| now >= deadline) {
            // Tell a device that is still listening why it is dropped, so
            // it can tell this from a network failure.
            let _ = self.core.outbox.send(
                Downlink::Goodbye(Goodbye {
                    reason: GoodbyeReason::Idle,
                }),
                None,
            );
            self.core.close(CloseReason::Timeout);
        }
    }

    /// Enrolls the device: sends its id and certificate, then goodbye.
    pub fn accept_enrollment(
        &mut self,
        device_id: DeviceId,
        certificate: &[u8],
    ) -> Result<(), SessionError> {
        let response = EnrollResponse::Accepted {
            device_id,
            certificate,
        };
        self.answer_enrollment(response, GoodbyeReason::Enrolled)
    }

    /// Refuses the enrollment, then says goodbye.
    pub fn refuse_enrollment(&mut self, reason: EnrollRefusal) -> Result<(), SessionError> {
        self.answer_enrollment(EnrollResponse::Refused { reason }, GoodbyeReason::Normal)
    }

    fn answer_enrollment(
        &mut self,
        response: EnrollResponse<'_>,
        goodbye: GoodbyeReason,
    ) -> Result<(), SessionError> {
        let State::DecidingEnrollment { request_id } = self.core.state else {
            return Err(self.core.state_error());
        };
        let outbox = &mut self.core.outbox;
        outbox.send(Downlink::EnrollResponse(response), Some(request_id))?;
        let _ = outbox.send(Downlink::Goodbye(Goodbye { reason: goodbye }), None);
        self.core.close(CloseReason::LocalGoodbye(goodbye));
        Ok(())
    }

    /// Opens the session of the device the certificate belongs to.
    pub fn accept_session(&mut self, device_id: DeviceId) -> Result<(), SessionError> {
        let State::DecidingSession { request_id } = self.core.state else {
            return Err(self.core.state_error());
        };
        let accept = SessionAccept {
            device_id,
            server_time: self.core.server_time(),
            heartbeat_interval_ms: self.core.config.heartbeat_interval_ms,
        };
        self.core
            .outbox
            .send(Downlink::SessionAccept(accept), Some(request_id))?;
        self.core.state = State::Established {
            deadline: self.core.liveness_deadline(),
        };
        Ok(())
    }

    /// Refuses the session (e.g. a revoked device) and closes it.
    pub fn refuse_session(&mut self, code: ErrorCode) -> Result<(), SessionError> {
        let State::DecidingSession { request_id } = self.core.state else {
            return Err(self.core.state_error());
        };
        let error = ErrorMessage { code, detail: None };
        self.core
            .outbox
            .send(Downlink::Error(error), Some(request_id))?;
        self.close(GoodbyeReason::Normal);
        Ok(())
    }

    /// Sends a deployment, stop, remove or error message to an established
    /// session. Session-management messages are the session's own business
    /// and are refused with [`SessionError::InvalidState`].
    pub fn send(&mut self, message: Downlink<'_>) -> Result<u32, SessionError> {
        let State::Established { .. } = self.core.state else {
            return Err(self.core.state_error());
        };
        match message {
            Downlink::DeployStart(_)
            | Downlink::DeployChunk(_)
            | Downlink::DeployCommit(_)
            | Downlink::Stop(_)
            | Downlink::Remove(_)
            | Downlink::Error(_) => self.core.outbox.send(message, None),
            _ => Err(SessionError::InvalidState),
        }
    }

    /// Says goodbye and ends the session; flush [`Self::poll_transmit`]
    /// before closing the connection.
    pub fn close(&mut self, reason: GoodbyeReason) {
        if self.core.state != State::Closed {
            let _ = self
                .core
                .outbox
                .send(Downlink::Goodbye(Goodbye { reason }), None);
            self.core.close(CloseReason::LocalGoodbye(reason));
        }
    }

    /// The session is over; close the connection once nothing is pending.
    pub fn is_closed(&self) -> bool {
        self.core.state == State::Closed
    }

    /// The session is established: deployments can be sent.
    pub fn is_established(&self) -> bool {
        matches!(self.core.state, State::Established { .. })
    }

    /// How the peer authenticated.
    pub fn credential(&self) -> PeerCredential {
        self.core.credential
    }

    /// Received bytes not yet turned into events.
    pub fn buffered_input(&self) -> usize {
        self.inbox.buffered()
    }
}

impl<B: ByteBuffer> Core<B> {
    fn server_time(&self) -> Millis {
        Millis(self.now.0.wrapping_add(self.server_time_offset))
    }

    /// Whether a heartbeat now keeps to the allowed rate: bursts of
    /// `heartbeat_burst`, then one per half interval.
    fn heartbeat_allowed(&mut self) -> bool {
        let spacing = u64::from(self.config.heartbeat_interval_ms / 2);
        let allowed = self
            .heartbeat_pace
            .allow(self.now, spacing, self.config.heartbeat_burst);
        self.paced(allowed)
    }

    /// Whether an execution result now keeps to the allowed rate.
    fn result_allowed(&mut self) -> bool {
        let spacing = u64::from(self.config.result_spacing_ms);
        let allowed = self
            .result_pace
            .allow(self.now, spacing, self.config.result_burst);
        self.paced(allowed)
    }

    /// Forgives one earlier refusal for each message at the allowed rate,
    /// so that only a peer that keeps pushing is dropped.
    fn paced(&mut self, allowed: bool) -> bool {
        if allowed {
            self.rate_limited = self.rate_limited.saturating_sub(1);
        }
        allowed
    }

    /// Refuses one message of `kind` with `Error{rate-limited}`, or ends
    /// the session when it has been told too often.
    fn rate_limited(&mut self, kind: &'static str, reply_to: u32) -> GatewayEvent<'static> {
        self.rate_limited = self.rate_limited.saturating_add(1);
        if self.rate_limited > self.config.max_rate_limited {
            return self.violation(Violation::RateLimited { kind });
        }
        let error = ErrorMessage {
            code: ErrorCode::RateLimited,
            detail: None,
        };
        let _ = self.outbox.send(Downlink::Error(error), Some(reply_to));
        GatewayEvent::RateLimited { kind }
    }

    fn liveness_deadline(&self) -> Millis {
        let interval = u64::from(self.config.heartbeat_interval_ms);
        self.now
            .plus(interval.saturating_mul(self.config.missed_heartbeats.max(1).into()))
    }

    fn state_error(&self) -> SessionError {
        if self.state == State::Closed {
            SessionError::Closed
        } else {
            SessionError::InvalidState
        }
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.close_event = Some(reason);
    }

    /// Tells the device what it did wrong, says goodbye, and ends.
    fn violation(&mut self, violation: Violation) -> GatewayEvent<'static> {
        let error = ErrorMessage {
            code: violation.code(),
            detail: None,
        };
        let _ = self.outbox.send(Downlink::Error(error), None);
        let _ = self.outbox.send(
            Downlink::Goodbye(Goodbye {
                reason: GoodbyeReason::ProtocolError,
            }),
            None,
        );
        self.state = State::Closed;
        GatewayEvent::Closed(CloseReason::ProtocolViolation(violation))
    }

    fn dispatch<'a>(&mut self, envelope: Envelope<Uplink<'a>>) -> GatewayEvent<'a> {
        let kind = envelope.body.kind();
        match (self.state, envelope.body) {
            (_, Uplink::Goodbye(goodbye)) => {
                self.state = State::Closed;
                GatewayEvent::Closed(CloseReason::PeerGoodbye(goodbye.reason))
            }
            (_, Uplink::Error(error)) => GatewayEvent::PeerError(error),
            (State::AwaitEnrollRequest { .. }, Uplink::EnrollRequest(request)) => {
                self.state = State::DecidingEnrollment {
                    request_id: envelope.id,
                };
                GatewayEvent::EnrollRequested {
                    request,
                    nonce: self.nonce,
                }
            }
            // A claim certificate may do nothing but enroll.
            _ if self.credential == PeerCredential::Claim => {
                self.violation(Violation::Unexpected {
                    code: ErrorCode::Unauthorized,
                    kind,
                })
            }
            (State::AwaitSessionStart { .. }, Uplink::SessionStart(start)) => {
                self.state = State::DecidingSession {
                    request_id: envelope.id,
                };
                GatewayEvent::SessionRequested(start)
            }
            (State::Established { .. }, message) => {
                self.state = State::Established {
                    deadline: self.liveness_deadline(),
                };
                match message {
                    Uplink::Heartbeat(_) if !self.heartbeat_allowed() => {
                        self.rate_limited(kind, envelope.id)
                    }
                    Uplink::Heartbeat(heartbeat) => {
                        let ack = HeartbeatAck {
                            server_time: self.server_time(),
                            next_interval_ms: self.config.heartbeat_interval_ms,
                        };
                        // A full outbox means the device is not reading; its
                        // missing acknowledgements will end the session.
                        let _ = self
                            .outbox
                            .send(Downlink::HeartbeatAck(ack), Some(envelope.id));
                        GatewayEvent::Heartbeat(heartbeat)
                    }
                    Uplink::DeployStatus(status) => GatewayEvent::DeployStatus(status),
                    Uplink::ExecutionResult(_) if !self.result_allowed() => {
                        self.rate_limited(kind, envelope.id)
                    }
                    Uplink::ExecutionResult(result) => GatewayEvent::ExecutionResult(result),
                    _ => self.unexpected(kind),
                }
            }
            _ => self.unexpected(kind),
        }
    }

    fn unexpected(&mut self, kind: &'static str) -> GatewayEvent<'static> {
        self.violation(Violation::Unexpected {
            code: ErrorCode::UnexpectedMessage,
            kind,
        })
    }
}

/// Paces one kind of message with a generic cell rate algorithm: `burst`
/// at once, then one per `spacing` milliseconds.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// When the next message is due at the allowed rate.
    due: Millis,
}

impl Pace {
    fn allow(&mut self, now: Millis, spacing: u64, burst: u32) -> bool {
        let spacing = spacing.max(1);
        let tolerance = spacing.saturating_mul(u64::from(burst.max(1) - 1));
        if now.0.saturating_add(tolerance) < self.due.0 {
            return false;
        }
        self.due = Millis(self.due.0.max(now.0).saturating_add(spacing));
        true
    }
}
