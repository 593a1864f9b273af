//! Every message of the protocol, in both directions.
//!
//! A frame's body is one CBOR [`Envelope`]. Structs are CBOR maps keyed by
//! small integers (`#[n(k)]`): an index is never reused, and every field
//! added after version 1 is optional, so older and newer peers understand
//! each other. `protocol/wasmbed.cddl` is the normative schema.

mod control;
mod deployment;
mod enrollment;
mod execution;
mod ids;
mod session;

pub use control::*;
pub use deployment::*;
pub use enrollment::*;
pub use execution::*;
pub use ids::*;
pub use session::*;

use minicbor::{Decode, Encode};

/// The protocol's major version. Compatible changes (new optional fields,
/// new codes) keep it; a peer refuses an envelope of another version.
pub const PROTOCOL_VERSION: u16 = 1;

/// The frame body: a versioned, numbered message.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(map)]
pub struct Envelope<M> {
    #[n(0)]
    pub version: u16,
    /// Chosen by the sender, increasing per session; echoed in `reply_to`.
    #[n(1)]
    pub id: u32,
    #[n(2)]
    pub body: M,
    /// The `id` of the message this one answers, if any.
    #[n(3)]
    pub reply_to: Option<u32>,
}

impl<M> Envelope<M> {
    /// An envelope of the current version that answers nothing.
    pub const fn new(id: u32, body: M) -> Self {
        Envelope {
            version: PROTOCOL_VERSION,
            id,
            body,
            reply_to: None,
        }
    }

    /// An envelope of the current version answering message `reply_to`.
    pub const fn reply(id: u32, reply_to: u32, body: M) -> Self {
        Envelope {
            version: PROTOCOL_VERSION,
            id,
            body,
            reply_to: Some(reply_to),
        }
    }
}

/// Messages from a device to the gateway.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(flat)]
pub enum Uplink<'a> {
    #[n(0)]
    EnrollRequest(#[n(0)] EnrollRequest),
    #[n(1)]
    SessionStart(#[n(0)] SessionStart),
    #[n(2)]
    Heartbeat(#[n(0)] Heartbeat),
    #[n(3)]
    DeployStatus(#[n(0)] DeployStatus),
    #[n(4)]
    ExecutionResult(#[b(0)] ExecutionResult<'a>),
    #[n(5)]
    Error(#[n(0)] ErrorMessage),
    #[n(6)]
    Goodbye(#[n(0)] Goodbye),
}

/// Messages from the gateway to a device.
#[derive(Debug, Clone, PartialEq, Encode, Decode)]
#[cbor(flat)]
pub enum Downlink<'a> {
    #[n(0)]
    EnrollChallenge(#[n(0)] EnrollChallenge),
    #[n(1)]
    EnrollResponse(#[b(0)] EnrollResponse<'a>),
    #[n(2)]
    SessionAccept(#[n(0)] SessionAccept),
    #[n(3)]
    HeartbeatAck(#[n(0)] HeartbeatAck),
    #[n(4)]
    DeployStart(#[n(0)] DeployStart),
    #[n(5)]
    DeployChunk(#[b(0)] DeployChunk<'a>),
    #[n(6)]
    DeployCommit(#[n(0)] DeployCommit),
    #[n(7)]
    Stop(#[n(0)] StopApp),
    #[n(8)]
    Remove(#[n(0)] RemoveApp),
    #[n(9)]
    Error(#[n(0)] ErrorMessage),
    #[n(10)]
    Goodbye(#[n(0)] Goodbye),
}

impl Uplink<'_> {
    /// A short name for logs and metrics.
    pub const fn kind(&self) -> &'static str {
        match self {
            Uplink::EnrollRequest(_) => "enroll_request",
            Uplink::SessionStart(_) => "session_start",
            Uplink::Heartbeat(_) => "heartbeat",
            Uplink::DeployStatus(_) => "deploy_status",
            Uplink::ExecutionResult(_) => "execution_result",
            Uplink::Error(_) => "error",
            Uplink::Goodbye(_) => "goodbye",
        }
    }
}

impl Downlink<'_> {
    /// A short name for logs and metrics.
    pub const fn kind(&self) -> &'static str {
        match self {
            Downlink::EnrollChallenge(_) => "enroll_challenge",
            Downlink::EnrollResponse(_) => "enroll_response",
            Downlink::SessionAccept(_) => "session_accept",
            Downlink::HeartbeatAck(_) => "heartbeat_ack",
            Downlink::DeployStart(_) => "deploy_start",
            Downlink::DeployChunk(_) => "deploy_chunk",
            Downlink::DeployCommit(_) => "deploy_commit",
            Downlink::Stop(_) => "stop",
            Downlink::Remove(_) => "remove",
            Downlink::Error(_) => "error",
            Downlink::Goodbye(_) => "goodbye",
        }
    }
}
