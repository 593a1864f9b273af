//! The agent: the device's side of Wasmbed, as a sans-IO state machine.
//!
//! The driver owns the transport and the clock and runs this loop, written
//! once in [`crate::driver`] (blocking for the firmware, async for the
//! simulator); the platform opens and closes connections around it:
//!
//! ```text
//! loop {
//!     wait until agent.reconnect_at (from `disconnected`)
//!     open TLS with agent.credentials()          // claim or device certificate
//!     agent.connect(now, rng)
//!     while the connection is up {
//!         n = agent.handle_input(received bytes, now)   // feed the rest later
//!         while let Some(event) = agent.poll(now) { log event }
//!         write agent.poll_transmit(); agent.advance_transmit(written)
//!         if agent.is_closed() and nothing is left to write: break
//!         sleep until bytes arrive or agent.poll_timeout(); agent.handle_timeout(now)
//!     }
//!     reconnect_at = agent.disconnected(now, rng)
//! }
//! ```
//!
//! Flush `poll_transmit` after every `poll` loop: the session's outgoing
//! buffer is on the heap and grows with whatever is not yet written.
//!
//! # Result delivery
//!
//! An execution result is stored with the application's end state (see
//! [`ModuleStore::finish`]) before it is sent, and stays in the store's
//! outbox until the gateway has it. The gateway handles a connection's
//! frames in order and stores a result before it reads the next frame, so
//! a `HeartbeatAck` answering a heartbeat sent *after* the result confirms
//! it; the result is then cleared. After every `SessionAccept` the results
//! still stored are sent again (the gateway ignores repeats). Delivery is
//! at least once; an application never runs twice. A run cut short by a
//! reset gets its result at the next boot, trapped `DeviceReset` (see
//! [`Agent::new`]).

mod backoff;

pub use backoff::BackoffConfig;

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRngCore;
use wasmbed_protocol::session::{
    CloseReason, DeviceConfig, DeviceEvent, DeviceSession, SessionError,
};
use wasmbed_protocol::{
    AppState, Capabilities, DeployFailure, DeployStart, DeployState, DeployStatus, DeploymentId,
    DeviceId, DeviceInfo, EnrollRefusal, EnrollRequest, ErrorCode, ErrorMessage, ExecutionResult,
    GoodbyeReason, Heartbeat, Millis, NAME_LEN, Name, Outcome, SessionStart, TrapCode,
};

use self::backoff::Backoff;
use crate::identity::{
    Identity, InvalidKey, KeyStore, PendingKey, StoredKey, sign_enrollment_proof,
};
use crate::runtime::Runtime;
use crate::storage::{BeginError, CommitError, ModuleMeta, ModuleStore, SlotState, StoreError};

/// The protocol session, with its frame buffers on the heap: they grow to
/// the largest frame in flight instead of taking 8 KiB of RAM (and of
/// stack while a session is built) whether used or not.
type Session = DeviceSession<Vec<u8>>;

/// Bytes in a WebAssembly page.
const PAGE: u32 = 65_536;

/// How the agent behaves; everything but `device` has a default.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Board and firmware, sent at enrollment.
    pub device: DeviceInfo,
    /// Sent at the start of every session.
    pub agent_version: Name,
    /// Frame size and response timeout of the protocol session.
    pub session: DeviceConfig,
    /// Memory available to applications, in bytes: reported to the gateway
    /// and the ceiling of a deployment's `memory_pages`.
    pub app_memory: u32,
    /// Most fuel a deployment may ask for.
    pub max_fuel: u64,
    /// Send `Progress` after this many chunks (and after the last one). The
    /// gateway's window of chunks in flight must be larger.
    pub progress_every: u16,
    pub backoff: BackoffConfig,
    /// Free heap in bytes, for heartbeats.
    pub free_memory: fn() -> u32,
}

impl AgentConfig {
    pub fn new(device: DeviceInfo) -> Self {
        AgentConfig {
            device,
            agent_version: name(env!("CARGO_PKG_VERSION")),
            session: DeviceConfig::default(),
            app_memory: 64 * 1024,
            max_fuel: 100_000_000,
            progress_every: 4,
            backoff: BackoffConfig::default(),
            free_memory: || 0,
        }
    }
}

/// The TLS client identity to connect with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// Not enrolled: use the shared claim certificate of the firmware.
    Claim,
    /// Enrolled: the device certificate (DER) and its P-256 private key.
    Device {
        certificate: &'a [u8],
        private_key: &'a [u8; 32],
    },
}

/// Something that happened, for the driver's logs and for tests.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    /// The enrollment request was sent.
    EnrollRequested,
    /// Enrolled and the identity stored; reconnect with it.
    Enrolled {
        device_id: DeviceId,
    },
    EnrollRefused {
        reason: EnrollRefusal,
    },
    Established {
        device_id: DeviceId,
        heartbeat_interval_ms: u32,
    },
    HeartbeatSent,
    /// A transfer starts or resumes at `resume_offset`.
    TransferAccepted {
        deployment: DeploymentId,
        resume_offset: u32,
    },
    /// A DeployStart or DeployCommit of a deployment installed already:
    /// answered with `Installed`, nothing received or run.
    AlreadyInstalled {
        deployment: DeploymentId,
    },
    Installed {
        deployment: DeploymentId,
    },
    DeployFailed {
        deployment: DeploymentId,
        reason: DeployFailure,
    },
    Executed {
        deployment: DeploymentId,
        outcome: Outcome,
        fuel_used: u64,
    },
    /// A stored result not confirmed in an earlier session was sent again.
    ResultResent {
        deployment: DeploymentId,
    },
    /// The gateway confirmed a result; it was cleared from the store.
    ResultDelivered {
        deployment: DeploymentId,
    },
    Stopped {
        deployment: DeploymentId,
    },
    Removed {
        deployment: DeploymentId,
    },
    /// The gateway reported an error.
    PeerError(ErrorMessage),
    /// A store failed; the operation was abandoned.
    StorageFailed(StoreError),
    /// The session ended; close the connection once `poll_transmit` is
    /// empty, then call [`Agent::disconnected`].
    Closed(CloseReason),
}

/// A call the agent could not carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentError {
    /// A session is open; call [`Agent::disconnected`] first.
    AlreadyConnected,
    Store(StoreError),
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::AlreadyConnected => f.write_str("a session is already open"),
            AgentError::Store(e) => write!(f, "key store: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AgentError {}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        AgentError::Store(e)
    }
}

/// The device agent over a key store `K`, a module store `S` and a
/// runtime `R`. See the [module docs](self) for the driving loop.
pub struct Agent<K, S, R> {
    config: AgentConfig,
    keys: K,
    store: S,
    runtime: R,
    key: Option<StoredKey>,
    session: Option<Session>,
    /// The current connection reached `Established` or enrolled.
    succeeded: bool,
    backoff: Backoff,
    chunks_since_progress: u16,
    events: VecDeque<AgentEvent>,
    /// Results sent in this session and not yet confirmed, each with the
    /// number of heartbeats sent before it.
    unconfirmed: Vec<(DeploymentId, u32)>,
    /// Heartbeats sent and acknowledged in this session (acknowledgements
    /// come in order).
    heartbeats_sent: u32,
    heartbeats_acked: u32,
}

impl<K, S, R> fmt::Debug for Agent<K, S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("key", &self.key)
            .field("connected", &self.session.is_some())
            .finish_non_exhaustive()
    }
}

impl<K: KeyStore, S: ModuleStore, R: Runtime> Agent<K, S, R> {
    /// Loads the identity. An application that was running when the device
    /// reset (a fault, running out of memory, a watchdog, power loss) is
    /// marked failed, with a result trapped [`TrapCode::DeviceReset`]
    /// stored in the same step and delivered like any other: a deployment
    /// never runs twice.
    pub fn new(
        config: AgentConfig,
        mut keys: K,
        mut store: S,
        runtime: R,
    ) -> Result<Self, AgentError> {
        let key = keys.load()?;
        let interrupted: Vec<DeploymentId> = store
            .slots()
            .iter()
            .flatten()
            .filter(|s| s.state == SlotState::Installed(AppState::Running))
            .map(|s| s.meta.deployment)
            .collect();
        for deployment in interrupted {
            let result = ExecutionResult {
                deployment,
                invocation: 1,
                outcome: Outcome::Trapped(TrapCode::DeviceReset),
                fuel_used: 0,
                duration_us: 0,
                logs: heapless::Vec::new(),
                logs_truncated: false,
            };
            if store
                .finish(deployment, AppState::Failed, &encode(&result))
                .is_err()
            {
                // Not stored (no room for it, or the store failed): at
                // least never run again, if without a result.
                store.set_state(deployment, AppState::Failed)?;
            }
        }
        Ok(Agent {
            backoff: Backoff::new(config.backoff),
            config,
            keys,
            store,
            runtime,
            key,
            session: None,
            succeeded: false,
            chunks_since_progress: 0,
            events: VecDeque::new(),
            unconfirmed: Vec::new(),
            heartbeats_sent: 0,
            heartbeats_acked: 0,
        })
    }

    /// The TLS identity for the next connection.
    pub fn credentials(&self) -> Credentials<'_> {
        match &self.key {
            Some(StoredKey::Enrolled(identity)) => Credentials::Device {
                certificate: &identity.certificate,
                private_key: &identity.private_key,
            },
            _ => Credentials::Claim,
        }
    }

    /// The stored identity, once enrolled.
    pub fn identity(&self) -> Option<&Identity> {
        match &self.key {
            Some(StoredKey::Enrolled(identity)) => Some(identity),
            _ => None,
        }
    }

    pub fn keys(&self) -> &K {
        &self.keys
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// Gives the stores and runtime back (e.g. to simulate a reboot).
    pub fn into_parts(self) -> (K, S, R) {
        (self.keys, self.store, self.runtime)
    }

    /// Starts a session on a new connection made with
    /// [`Self::credentials`]: enrollment without an identity, otherwise a
    /// session start listing the installed applications.
    ///
    /// Before enrolling, a key pair is generated with `rng` and stored as
    /// pending, unless one is pending already.
    pub fn connect(&mut self, now: Millis, rng: &mut impl CryptoRngCore) -> Result<(), AgentError> {
        if self.session.as_ref().is_some_and(|s| !s.is_closed()) {
            return Err(AgentError::AlreadyConnected);
        }
        self.succeeded = false;
        self.chunks_since_progress = 0;
        self.unconfirmed.clear();
        self.heartbeats_sent = 0;
        self.heartbeats_acked = 0;
        let session = match &self.key {
            Some(StoredKey::Enrolled(_)) => {
                let hello = SessionStart {
                    agent_version: self.config.agent_version.clone(),
                    capabilities: self.capabilities(),
                    apps: self.store.apps(),
                };
                Session::resume(self.config.session, &hello, now)
            }
            Some(StoredKey::Pending(_)) => Session::enroll(self.config.session, now),
            None => {
                let key = StoredKey::Pending(PendingKey::generate(rng));
                self.keys.save(&key)?;
                self.key = Some(key);
                Session::enroll(self.config.session, now)
            }
        };
        self.session = Some(session);
        Ok(())
    }

    /// Feeds bytes received from the gateway; returns how many were taken.
    /// When fewer than `data.len()`, drain [`Self::poll`] and call again
    /// with the rest.
    pub fn handle_input(&mut self, data: &[u8], now: Millis) -> usize {
        match &mut self.session {
            Some(session) => session.handle_input(data, now),
            None => data.len(),
        }
    }

    /// Processes what the gateway sent and what became due, and returns the
    /// next event, until `None`. Installing and running a module happen in
    /// here, bounded by the deployment's fuel.
    pub fn poll(&mut self, now: Millis) -> Option<AgentEvent> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            let session = self.session.as_mut()?;
            match session.poll_event()? {
                DeviceEvent::DeployChunk(chunk) => {
                    let deployment = chunk.deployment;
                    let written = self.store.write(deployment, chunk.offset, chunk.data);
                    self.on_chunk(deployment, written);
                }
                DeviceEvent::Enrolled {
                    device_id,
                    certificate,
                } => {
                    let certificate = certificate.to_vec();
                    self.on_enrolled(device_id, certificate);
                }
                DeviceEvent::EnrollChallenge { nonce } => self.on_challenge(&nonce),
                DeviceEvent::EnrollRefused { reason } => self.on_refused(reason),
                DeviceEvent::Established(accept) => {
                    self.succeeded = true;
                    self.backoff.reset();
                    self.events.push_back(AgentEvent::Established {
                        device_id: accept.device_id,
                        heartbeat_interval_ms: accept.heartbeat_interval_ms,
                    });
                    self.resend_results();
                    self.run_pending();
                }
                DeviceEvent::HeartbeatDue => self.on_heartbeat_due(now),
                DeviceEvent::HeartbeatAcked(_) => self.on_heartbeat_acked(),
                DeviceEvent::DeployStart(start) => self.on_deploy_start(&start),
                DeviceEvent::DeployCommit(deployment) => self.on_commit(deployment),
                DeviceEvent::Stop(deployment) => self.on_stop(deployment),
                DeviceEvent::Remove(deployment) => self.on_remove(deployment),
                DeviceEvent::PeerError(error) => {
                    self.events.push_back(AgentEvent::PeerError(error))
                }
                DeviceEvent::Closed(reason) => self.events.push_back(AgentEvent::Closed(reason)),
            }
        }
    }

    /// Bytes to write to the connection.
    pub fn poll_transmit(&self) -> &[u8] {
        self.session.as_ref().map_or(&[], |s| s.poll_transmit())
    }

    /// Reports that the first `n` bytes of [`Self::poll_transmit`] were written.
    pub fn advance_transmit(&mut self, n: usize) {
        if let Some(session) = &mut self.session {
            session.advance_transmit(n);
        }
    }

    /// When [`Self::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.session.as_ref().and_then(|s| s.poll_timeout())
    }

    /// Advances the session's clock; events follow from [`Self::poll`].
    pub fn handle_timeout(&mut self, now: Millis) {
        if let Some(session) = &mut self.session {
            session.handle_timeout(now);
        }
    }

    /// The session has ended (or never started): close the connection once
    /// [`Self::poll_transmit`] is empty.
    pub fn is_closed(&self) -> bool {
        self.session.as_ref().is_none_or(|s| s.is_closed())
    }

    /// The session is established.
    pub fn is_established(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.is_established())
    }

    /// Ends the session politely (e.g. before a planned reboot); flush
    /// [`Self::poll_transmit`] before closing the connection.
    pub fn close(&mut self, reason: GoodbyeReason) {
        if let Some(session) = &mut self.session {
            session.close(reason);
        }
    }

    /// The connection is gone, or could not be made. Returns when to try
    /// again: right after a session that worked (within a short jitter),
    /// later and later after failures.
    pub fn disconnected(&mut self, now: Millis, rng: &mut impl CryptoRngCore) -> Millis {
        self.session = None;
        if core::mem::take(&mut self.succeeded) {
            self.backoff.reset();
        }
        now.plus(self.backoff.next_delay(rng))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            runtime: self.runtime.kind(),
            runtime_version: name(self.runtime.version()),
            max_module_size: self.store.max_module_size(),
            app_memory: self.config.app_memory,
            app_slots: u8::try_from(self.store.slots().len()).unwrap_or(u8::MAX),
        }
    }

    /// Runs `send` on the session; returns whether the message was queued.
    /// A message that does not fit closes the session: the driver is not
    /// flushing, and a reconnect resumes.
    fn send(&mut self, send: impl FnOnce(&mut Session) -> Result<(), SessionError>) -> bool {
        let Some(session) = &mut self.session else {
            return false;
        };
        match send(session) {
            Ok(()) => true,
            Err(SessionError::OutboxFull | SessionError::Encode(_)) => {
                session.close(GoodbyeReason::ProtocolError);
                false
            }
            Err(_) => false,
        }
    }

    /// Sends `result`, stored already; once sent it waits for a
    /// confirming heartbeat.
    fn send_result(&mut self, result: &ExecutionResult<'_>) -> bool {
        let sent = self.send(|s| s.send_execution_result(result));
        if sent {
            self.unconfirmed
                .push((result.deployment, self.heartbeats_sent));
        }
        sent
    }

    /// Sends again, in slot order, every stored result (called once the
    /// session is established). Not inlined: the decoded result must not
    /// take stack in `poll` while an application runs.
    #[inline(never)]
    fn resend_results(&mut self) {
        for deployment in self.store.outbox() {
            let Some(cbor) = self.store.result(deployment).map(<[u8]>::to_vec) else {
                continue;
            };
            match minicbor::decode::<ExecutionResult<'_>>(&cbor) {
                Ok(result) if result.deployment == deployment => {
                    if !self.send_result(&result) {
                        // The session is closing: the rest waits for the
                        // next one.
                        return;
                    }
                    self.events
                        .push_back(AgentEvent::ResultResent { deployment });
                }
                // Not a result of this deployment (written by incompatible
                // firmware): it can never be delivered, so it is dropped.
                _ => {
                    if let Err(e) = self.store.clear_result(deployment) {
                        self.events.push_back(AgentEvent::StorageFailed(e));
                    }
                }
            }
        }
    }

    /// The gateway acknowledged the oldest heartbeat in flight: every
    /// result sent before that heartbeat is stored on the gateway.
    fn on_heartbeat_acked(&mut self) {
        self.heartbeats_acked = self.heartbeats_acked.saturating_add(1);
        let acked = self.heartbeats_acked;
        let mut confirmed = Vec::new();
        self.unconfirmed.retain(|&(deployment, heartbeats_before)| {
            let done = acked > heartbeats_before;
            if done {
                confirmed.push(deployment);
            }
            !done
        });
        for deployment in confirmed {
            match self.store.clear_result(deployment) {
                Ok(_) => self
                    .events
                    .push_back(AgentEvent::ResultDelivered { deployment }),
                // Still stored: it is sent again next session, harmlessly.
                Err(e) => self.events.push_back(AgentEvent::StorageFailed(e)),
            }
        }
    }

    fn status(&mut self, deployment: DeploymentId, state: DeployState) {
        self.send(|s| s.send_deploy_status(DeployStatus { deployment, state }));
    }

    fn fail(&mut self, deployment: DeploymentId, reason: DeployFailure) {
        self.status(deployment, DeployState::Failed { reason });
        self.events
            .push_back(AgentEvent::DeployFailed { deployment, reason });
    }

    fn unknown_deployment(&mut self) {
        let error = ErrorMessage {
            code: ErrorCode::UnknownDeployment,
            detail: None,
        };
        self.send(|s| s.send_error(&error));
    }

    fn on_challenge(&mut self, nonce: &[u8; 32]) {
        let proof = match &self.key {
            Some(StoredKey::Pending(key)) => sign_enrollment_proof(&key.private_key, nonce),
            _ => Err(InvalidKey),
        };
        let Ok(proof) = proof else {
            // The pending key is unusable: forget it, the next connection
            // generates another.
            self.key = None;
            if let Err(e) = self.keys.clear() {
                self.events.push_back(AgentEvent::StorageFailed(e));
            }
            self.close(GoodbyeReason::ProtocolError);
            return;
        };
        let request = EnrollRequest {
            public_key: proof.public_key,
            proof: proof.proof,
            device: self.config.device.clone(),
            capabilities: self.capabilities(),
        };
        self.send(|s| s.send_enroll_request(&request));
        self.events.push_back(AgentEvent::EnrollRequested);
    }

    fn on_enrolled(&mut self, device_id: DeviceId, certificate: Vec<u8>) {
        let Some(StoredKey::Pending(pending)) = &self.key else {
            return;
        };
        let identity = Identity {
            device_id,
            private_key: pending.private_key,
            certificate,
        };
        let key = StoredKey::Enrolled(identity);
        match self.keys.save(&key) {
            Ok(()) => {
                self.key = Some(key);
                self.succeeded = true;
                self.events.push_back(AgentEvent::Enrolled { device_id });
            }
            // The key stays pending; enrolling again presents it again.
            Err(e) => self.events.push_back(AgentEvent::StorageFailed(e)),
        }
    }

    fn on_refused(&mut self, reason: EnrollRefusal) {
        // A key the gateway will never accept (a revoked one among them) is
        // replaced next time; for other reasons (closed pairing, rate
        // limits) it is kept and retried.
        if matches!(
            reason,
            EnrollRefusal::KeyAlreadyEnrolled
                | EnrollRefusal::BadProof
                | EnrollRefusal::InvalidKey
                | EnrollRefusal::KeyRevoked
        ) {
            self.key = None;
            if let Err(e) = self.keys.clear() {
                self.events.push_back(AgentEvent::StorageFailed(e));
            }
        }
        self.events.push_back(AgentEvent::EnrollRefused { reason });
    }

    fn on_heartbeat_due(&mut self, now: Millis) {
        let heartbeat = Heartbeat {
            uptime: now,
            free_memory: (self.config.free_memory)(),
            apps: self.store.apps(),
        };
        if self.send(|s| s.send_heartbeat(&heartbeat)) {
            self.heartbeats_sent = self.heartbeats_sent.saturating_add(1);
        }
        self.events.push_back(AgentEvent::HeartbeatSent);
    }

    fn on_deploy_start(&mut self, start: &DeployStart) {
        let deployment = start.deployment;
        if let Some(slot) = self.store.find(deployment) {
            if let SlotState::Installed(_) = slot.state {
                self.status(deployment, DeployState::Installed);
                self.events
                    .push_back(AgentEvent::AlreadyInstalled { deployment });
                return;
            }
        }
        let limits = &start.limits;
        let memory = u64::from(limits.memory_pages) * u64::from(PAGE);
        if limits.fuel > self.config.max_fuel || memory > u64::from(self.config.app_memory) {
            return self.fail(deployment, DeployFailure::LimitsTooHigh);
        }
        let meta = ModuleMeta {
            deployment,
            application: start.application,
            size: start.module_size,
            sha256: start.sha256,
            limits: start.limits.clone(),
        };
        match self.store.begin(&meta) {
            Ok(resume_offset) => {
                self.chunks_since_progress = 0;
                self.status(deployment, DeployState::Accepted { resume_offset });
                self.events.push_back(AgentEvent::TransferAccepted {
                    deployment,
                    resume_offset,
                });
            }
            Err(BeginError::AlreadyInstalled) => {
                self.status(deployment, DeployState::Installed);
                self.events
                    .push_back(AgentEvent::AlreadyInstalled { deployment });
            }
            Err(e) => self.fail(deployment, e.failure()),
        }
    }

    fn on_chunk(
        &mut self,
        deployment: DeploymentId,
        written: Result<u32, crate::storage::WriteError>,
    ) {
        use crate::storage::WriteError;
        match written {
            Ok(held) => {
                self.chunks_since_progress = self.chunks_since_progress.saturating_add(1);
                let size = self.store.find(deployment).map_or(0, |s| s.meta.size);
                if self.chunks_since_progress >= self.config.progress_every || held == size {
                    self.chunks_since_progress = 0;
                    if let Err(e) = self.store.checkpoint(deployment) {
                        self.events.push_back(AgentEvent::StorageFailed(e));
                    }
                    self.status(deployment, DeployState::Progress { bytes_held: held });
                }
            }
            Err(WriteError::UnknownDeployment) => self.unknown_deployment(),
            Err(e) => self.fail(deployment, e.failure()),
        }
    }

    fn on_commit(&mut self, deployment: DeploymentId) {
        let limits = match self.store.find(deployment) {
            None => return self.unknown_deployment(),
            Some(slot) if matches!(slot.state, SlotState::Installed(_)) => {
                self.status(deployment, DeployState::Installed);
                self.events
                    .push_back(AgentEvent::AlreadyInstalled { deployment });
                return;
            }
            Some(slot) => slot.meta.limits.clone(),
        };
        let runtime = &mut self.runtime;
        let committed = self
            .store
            .commit(deployment, &mut |module| runtime.validate(module, &limits));
        match committed {
            Ok(()) => {
                self.status(deployment, DeployState::Installed);
                self.events.push_back(AgentEvent::Installed { deployment });
                self.run(deployment);
            }
            // Keep what arrived: the gateway can resume the transfer.
            Err(e @ (CommitError::Incomplete { .. } | CommitError::Store(_))) => {
                self.fail(deployment, e.failure());
            }
            Err(e) => {
                if let Err(e) = self.store.remove(deployment) {
                    self.events.push_back(AgentEvent::StorageFailed(e));
                }
                self.fail(deployment, e.failure());
            }
        }
    }

    /// Runs every installed application that has never run (installed
    /// right before a reboot, or before the result could be sent).
    fn run_pending(&mut self) {
        let pending: Vec<DeploymentId> = self
            .store
            .slots()
            .iter()
            .flatten()
            .filter(|s| s.state == SlotState::Installed(AppState::Installed))
            .map(|s| s.meta.deployment)
            .collect();
        for deployment in pending {
            self.run(deployment);
        }
    }

    /// Runs an installed deployment's entry point once.
    ///
    /// The state `Running` is stored before the call, so a power cut during
    /// it never leads to a second run.
    fn run(&mut self, deployment: DeploymentId) {
        let Some(limits) = self.store.find(deployment).map(|s| s.meta.limits.clone()) else {
            return;
        };
        if let Err(e) = self.store.set_state(deployment, AppState::Running) {
            self.events.push_back(AgentEvent::StorageFailed(e));
            return;
        }
        self.status(deployment, DeployState::Running);
        let invocation = match self.store.load(deployment) {
            Ok(module) => self.runtime.invoke(module, &limits),
            Err(e) => {
                self.events.push_back(AgentEvent::StorageFailed(e));
                let _ = self.store.set_state(deployment, AppState::Failed);
                return self.fail(deployment, DeployFailure::StorageError);
            }
        };
        let end_state = match invocation.outcome {
            Outcome::Returned(_) => AppState::Stopped,
            Outcome::Trapped(_) => AppState::Failed,
        };
        let mut result = ExecutionResult {
            deployment,
            invocation: 1,
            outcome: invocation.outcome.clone(),
            fuel_used: invocation.fuel_used,
            duration_us: invocation.duration_us,
            logs: invocation.logs.log_lines(),
            logs_truncated: invocation.logs.truncated,
        };
        // The end state and the result are stored in one step, before the
        // result leaves: a reset never loses it nor runs the app again.
        let mut finished = self.store.finish(deployment, end_state, &encode(&result));
        if finished == Err(StoreError::TooLarge) {
            // No room for the logs: keep the rest of the result.
            result.logs.clear();
            result.logs_truncated = true;
            finished = self.store.finish(deployment, end_state, &encode(&result));
        }
        match finished {
            Ok(_) => {
                self.send_result(&result);
            }
            Err(e) => {
                // Not stored: sent once, as the best that can be done.
                self.events.push_back(AgentEvent::StorageFailed(e));
                if let Err(e) = self.store.set_state(deployment, end_state) {
                    self.events.push_back(AgentEvent::StorageFailed(e));
                }
                self.send(|s| s.send_execution_result(&result));
            }
        }
        self.status(deployment, DeployState::Stopped);
        self.events.push_back(AgentEvent::Executed {
            deployment,
            outcome: invocation.outcome,
            fuel_used: invocation.fuel_used,
        });
    }

    fn on_stop(&mut self, deployment: DeploymentId) {
        let installed = self
            .store
            .find(deployment)
            .is_some_and(|s| matches!(s.state, SlotState::Installed(_)));
        if !installed {
            return self.unknown_deployment();
        }
        match self.store.set_state(deployment, AppState::Stopped) {
            Ok(_) => {
                self.status(deployment, DeployState::Stopped);
                self.events.push_back(AgentEvent::Stopped { deployment });
            }
            Err(e) => {
                self.events.push_back(AgentEvent::StorageFailed(e));
                self.fail(deployment, DeployFailure::StorageError);
            }
        }
    }

    /// Removing is idempotent: an unknown deployment is reported removed.
    fn on_remove(&mut self, deployment: DeploymentId) {
        match self.store.remove(deployment) {
            Ok(_) => {
                // Its stored result went with the slot.
                self.unconfirmed.retain(|&(d, _)| d != deployment);
                self.status(deployment, DeployState::Removed);
                self.events.push_back(AgentEvent::Removed { deployment });
            }
            Err(e) => {
                self.events.push_back(AgentEvent::StorageFailed(e));
                self.fail(deployment, DeployFailure::StorageError);
            }
        }
    }
}

/// The CBOR of `result`, on the heap. Writing to a `Vec` cannot fail.
fn encode(result: &ExecutionResult<'_>) -> Vec<u8> {
    minicbor::to_vec(result).unwrap_or_default()
}

/// `s` as a [`Name`], cut to fit at a character boundary.
fn name(s: &str) -> Name {
    let mut end = s.len().min(NAME_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = Name::new();
    // Cannot fail: `end <= NAME_LEN`.
    let _ = out.push_str(&s[..end]);
    out
}
