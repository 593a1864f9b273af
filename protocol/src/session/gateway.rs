//! The gateway's end of a session.

use super::link::{Inbox, Outbox};
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
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            max_frame_len: MAX_FRAME_LEN,
            max_outbox: 64 * 1024,
            first_message_timeout_ms: 10_000,
            heartbeat_interval_ms: 10_000,
            missed_heartbeats: 3,
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
    close_event: Option<CloseReason>,
}

impl<B: ByteBuffer + Default> GatewaySession<B> {
    /// A session for a freshly authenticated TLS connection.
    ///
    /// `now` is the gateway's wall clock (Unix milliseconds): it is sent to
    /// devices as the server time. `nonce` must be fresh and random; it is
    /// only used for a [`PeerCredential::Claim`] peer.
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
                close_event: None,
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
            Ok(envelope) => Some(self.core.dispatch(envelope)),
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
            server_time: self.core.now,
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
                    Uplink::Heartbeat(heartbeat) => {
                        let ack = HeartbeatAck {
                            server_time: self.now,
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
