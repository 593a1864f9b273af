//! The device's end of a session.

use super::link::{Inbox, Outbox, PeerIds};
use super::{ByteBuffer, CloseReason, FrameBuffer, SessionError, Violation};
use crate::codec;
use crate::frame::MAX_FRAME_LEN;
use crate::message::*;

/// Timing and size settings of a device session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Largest frame body accepted or sent.
    pub max_frame_len: usize,
    /// How long to wait for the gateway to answer a request (challenge,
    /// enrollment, session start, heartbeat acknowledgement).
    pub response_timeout_ms: u32,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        DeviceConfig {
            max_frame_len: MAX_FRAME_LEN,
            response_timeout_ms: 10_000,
        }
    }
}

/// What the device agent must react to.
#[derive(Debug, Clone, PartialEq)]
pub enum DeviceEvent<'a> {
    /// Sign [`proof_payload`] with the device key and answer with
    /// [`DeviceSession::send_enroll_request`].
    EnrollChallenge {
        nonce: [u8; NONCE_LEN],
    },
    /// Store the id and certificate; the gateway closes the session next.
    Enrolled {
        device_id: DeviceId,
        certificate: &'a [u8],
    },
    EnrollRefused {
        reason: EnrollRefusal,
    },
    /// The session is open; heartbeats follow at the given interval.
    Established(SessionAccept),
    /// Time to call [`DeviceSession::send_heartbeat`].
    HeartbeatDue,
    HeartbeatAcked(HeartbeatAck),
    DeployStart(DeployStart),
    DeployChunk(DeployChunk<'a>),
    DeployCommit(DeploymentId),
    Stop(DeploymentId),
    Remove(DeploymentId),
    /// The gateway reported an error; the session goes on unless it closes.
    PeerError(ErrorMessage),
    /// The session is over; reconnect (with backoff) if appropriate.
    Closed(CloseReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitChallenge {
        deadline: Millis,
    },
    /// The agent is signing the challenge.
    Challenged {
        deadline: Millis,
    },
    AwaitEnrollResponse {
        deadline: Millis,
    },
    /// Enrollment answered; the gateway closes the session next.
    AwaitGoodbye {
        deadline: Millis,
    },
    AwaitAccept {
        deadline: Millis,
    },
    Established {
        interval_ms: u32,
        next_heartbeat: Millis,
        ack_deadline: Option<Millis>,
    },
    Closed,
}

/// The device's end of one connection to the gateway.
///
/// Created with [`DeviceSession::enroll`] when the device has no identity
/// yet (connected with the claim certificate), or [`DeviceSession::resume`]
/// when it has one. See the [module docs](super) for the driving loop.
#[derive(Debug)]
pub struct DeviceSession<B = FrameBuffer> {
    inbox: Inbox<B>,
    core: Core<B>,
}

#[derive(Debug)]
struct Core<B> {
    outbox: Outbox<B>,
    state: State,
    config: DeviceConfig,
    now: Millis,
    heartbeat_due: bool,
    heartbeat_event: bool,
    close_event: Option<CloseReason>,
    peer_ids: PeerIds,
}

impl<B: ByteBuffer + Default> DeviceSession<B> {
    /// A session that enrolls: it waits for the gateway's challenge.
    pub fn enroll(config: DeviceConfig, now: Millis) -> Self {
        let deadline = now.plus(config.response_timeout_ms.into());
        Self::with_state(config, now, State::AwaitChallenge { deadline })
    }

    /// A session of an enrolled device: it starts with `hello`.
    pub fn resume(config: DeviceConfig, hello: &SessionStart, now: Millis) -> Self {
        let deadline = now.plus(config.response_timeout_ms.into());
        let mut session = Self::with_state(config, now, State::AwaitAccept { deadline });
        if let Err(e) = session
            .core
            .outbox
            .send(Uplink::SessionStart(hello.clone()), None)
        {
            // A SessionStart is far below any frame limit a device would use.
            session
                .core
                .close(CloseReason::LocalGoodbye(GoodbyeReason::ProtocolError));
            debug_assert!(false, "SessionStart does not fit: {e:?}");
        }
        session
    }

    fn with_state(config: DeviceConfig, now: Millis, state: State) -> Self {
        DeviceSession {
            inbox: Inbox::new(B::default(), config.max_frame_len),
            core: Core {
                outbox: Outbox::new(B::default(), config.max_frame_len, usize::MAX),
                state,
                config,
                now,
                heartbeat_due: false,
                heartbeat_event: false,
                close_event: None,
                peer_ids: PeerIds::default(),
            },
        }
    }
}

impl<B: ByteBuffer> DeviceSession<B> {
    /// Feeds bytes received from the gateway. Returns how many were taken:
    /// when fewer than `data.len()`, drain [`Self::poll_event`] and call
    /// again with the rest.
    pub fn handle_input(&mut self, data: &[u8], now: Millis) -> usize {
        self.core.now = now;
        if self.core.state == State::Closed {
            return data.len();
        }
        self.inbox.accept(data)
    }

    /// The next event, if any. Events borrow the session's input buffer.
    pub fn poll_event(&mut self) -> Option<DeviceEvent<'_>> {
        if let Some(reason) = self.core.close_event.take() {
            return Some(DeviceEvent::Closed(reason));
        }
        if self.core.state == State::Closed {
            return None;
        }
        if core::mem::take(&mut self.core.heartbeat_event) {
            return Some(DeviceEvent::HeartbeatDue);
        }
        let range = match self.inbox.next_frame() {
            Ok(Some(range)) => range,
            Ok(None) => return None,
            Err(e) => return Some(self.core.violation(Violation::Frame(e))),
        };
        match codec::decode_downlink(self.inbox.body(range)) {
            Ok(envelope) => match self.core.peer_ids.check(envelope.id) {
                Ok(()) => Some(self.core.dispatch(envelope.body)),
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
            State::AwaitChallenge { deadline }
            | State::Challenged { deadline }
            | State::AwaitEnrollResponse { deadline }
            | State::AwaitGoodbye { deadline }
            | State::AwaitAccept { deadline } => Some(deadline),
            State::Established {
                next_heartbeat,
                ack_deadline,
                ..
            } => {
                let heartbeat = (!self.core.heartbeat_due).then_some(next_heartbeat);
                match (heartbeat, ack_deadline) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            State::Closed => None,
        }
    }

    /// Advances the session's clock; may produce events.
    pub fn handle_timeout(&mut self, now: Millis) {
        let core = &mut self.core;
        core.now = now;
        match core.state {
            State::AwaitChallenge { deadline }
            | State::Challenged { deadline }
            | State::AwaitEnrollResponse { deadline }
            | State::AwaitGoodbye { deadline }
            | State::AwaitAccept { deadline } => {
                if now >= deadline {
                    core.close(CloseReason::Timeout);
                }
            }
            State::Established {
                next_heartbeat,
                ack_deadline,
                ..
            } => {
                if ack_deadline.is_some_and(|d| now >= d) {
                    core.close(CloseReason::Timeout);
                } else if now >= next_heartbeat && !core.heartbeat_due {
                    core.heartbeat_due = true;
                    core.heartbeat_event = true;
                }
            }
            State::Closed => {}
        }
    }

    /// Answers the challenge (after [`DeviceEvent::EnrollChallenge`]).
    pub fn send_enroll_request(&mut self, request: &EnrollRequest) -> Result<(), SessionError> {
        let State::Challenged { .. } = self.core.state else {
            return Err(self.core.state_error());
        };
        self.core
            .outbox
            .send(Uplink::EnrollRequest(request.clone()), None)?;
        let deadline = self.core.deadline();
        self.core.state = State::AwaitEnrollResponse { deadline };
        Ok(())
    }

    /// Sends a heartbeat and schedules the next one. The acknowledgement
    /// deadline counts from the time last passed to [`Self::handle_input`]
    /// or [`Self::handle_timeout`]: a driver that sends on its own schedule
    /// calls `handle_timeout(now)` first.
    pub fn send_heartbeat(&mut self, heartbeat: &Heartbeat) -> Result<(), SessionError> {
        let State::Established { interval_ms, .. } = self.core.state else {
            return Err(self.core.state_error());
        };
        self.core
            .outbox
            .send(Uplink::Heartbeat(heartbeat.clone()), None)?;
        let now = self.core.now;
        self.core.heartbeat_due = false;
        self.core.state = State::Established {
            interval_ms,
            next_heartbeat: now.plus(interval_ms.into()),
            ack_deadline: Some(self.core.deadline()),
        };
        Ok(())
    }

    /// Reports where a deployment stands.
    pub fn send_deploy_status(&mut self, status: DeployStatus) -> Result<(), SessionError> {
        self.send_established(Uplink::DeployStatus(status))
    }

    /// Reports the result of an invocation.
    pub fn send_execution_result(
        &mut self,
        result: &ExecutionResult<'_>,
    ) -> Result<(), SessionError> {
        self.send_established(Uplink::ExecutionResult(result.clone()))
    }

    /// Tells the gateway something went wrong on the device.
    pub fn send_error(&mut self, error: &ErrorMessage) -> Result<(), SessionError> {
        if self.core.state == State::Closed {
            return Err(SessionError::Closed);
        }
        self.core.outbox.send(Uplink::Error(error.clone()), None)?;
        Ok(())
    }

    /// Says goodbye and ends the session; flush [`Self::poll_transmit`]
    /// before closing the connection.
    pub fn close(&mut self, reason: GoodbyeReason) {
        if self.core.state != State::Closed {
            // If the outbox is full the peer learns of the close from the
            // connection closing instead.
            let _ = self
                .core
                .outbox
                .send(Uplink::Goodbye(Goodbye { reason }), None);
            self.core.close(CloseReason::LocalGoodbye(reason));
        }
    }

    /// The session is over; close the connection once nothing is pending.
    pub fn is_closed(&self) -> bool {
        self.core.state == State::Closed
    }

    /// The session is established: heartbeats and deployments can flow.
    pub fn is_established(&self) -> bool {
        matches!(self.core.state, State::Established { .. })
    }

    /// Received bytes not yet turned into events.
    pub fn buffered_input(&self) -> usize {
        self.inbox.buffered()
    }

    fn send_established(&mut self, body: Uplink<'_>) -> Result<(), SessionError> {
        let State::Established { .. } = self.core.state else {
            return Err(self.core.state_error());
        };
        self.core.outbox.send(body, None)?;
        Ok(())
    }
}

impl<B: ByteBuffer> Core<B> {
    fn deadline(&self) -> Millis {
        self.now.plus(self.config.response_timeout_ms.into())
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

    /// Tells the gateway what it did wrong, says goodbye, and ends.
    fn violation(&mut self, violation: Violation) -> DeviceEvent<'static> {
        let error = ErrorMessage {
            code: violation.code(),
            detail: None,
        };
        let _ = self.outbox.send(Uplink::Error(error), None);
        let _ = self.outbox.send(
            Uplink::Goodbye(Goodbye {
                reason: GoodbyeReason::ProtocolError,
            }),
            None,
        );
        self.state = State::Closed;
        DeviceEvent::Closed(CloseReason::ProtocolViolation(violation))
    }

    fn dispatch<'a>(&mut self, message: Downlink<'a>) -> DeviceEvent<'a> {
        let kind = message.kind();
        match (self.state, message) {
            (_, Downlink::Goodbye(goodbye)) => {
                self.state = State::Closed;
                DeviceEvent::Closed(CloseReason::PeerGoodbye(goodbye.reason))
            }
            (_, Downlink::Error(error)) => DeviceEvent::PeerError(error),
            (State::AwaitChallenge { deadline }, Downlink::EnrollChallenge(challenge)) => {
                self.state = State::Challenged { deadline };
                DeviceEvent::EnrollChallenge {
                    nonce: challenge.nonce,
                }
            }
            (State::AwaitEnrollResponse { .. }, Downlink::EnrollResponse(response)) => {
                self.state = State::AwaitGoodbye {
                    deadline: self.deadline(),
                };
                match response {
                    EnrollResponse::Accepted {
                        device_id,
                        certificate,
                    } => DeviceEvent::Enrolled {
                        device_id,
                        certificate,
                    },
                    EnrollResponse::Refused { reason } => DeviceEvent::EnrollRefused { reason },
                }
            }
            (State::AwaitAccept { .. }, Downlink::SessionAccept(accept)) => {
                self.state = State::Established {
                    interval_ms: accept.heartbeat_interval_ms,
                    next_heartbeat: self.now.plus(accept.heartbeat_interval_ms.into()),
                    ack_deadline: None,
                };
                DeviceEvent::Established(accept)
            }
            (State::Established { next_heartbeat, .. }, message) => match message {
                Downlink::HeartbeatAck(ack) => {
                    self.state = State::Established {
                        interval_ms: ack.next_interval_ms,
                        next_heartbeat,
                        ack_deadline: None,
                    };
                    DeviceEvent::HeartbeatAcked(ack)
                }
                Downlink::DeployStart(start) => DeviceEvent::DeployStart(start),
                Downlink::DeployChunk(chunk) => DeviceEvent::DeployChunk(chunk),
                Downlink::DeployCommit(commit) => DeviceEvent::DeployCommit(commit.deployment),
                Downlink::Stop(stop) => DeviceEvent::Stop(stop.deployment),
                Downlink::Remove(remove) => DeviceEvent::Remove(remove.deployment),
                _ => self.unexpected(kind),
            },
            _ => self.unexpected(kind),
        }
    }

    fn unexpected(&mut self, kind: &'static str) -> DeviceEvent<'static> {
        self.violation(Violation::Unexpected {
            code: ErrorCode::UnexpectedMessage,
            kind,
        })
    }
}
