//! One task per device connection: TLS handshake, then the protocol
//! session, driven by bytes from the socket, commands and timers.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use rand::RngCore;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_rustls::server::TlsStream;
use tracing::{debug, info, warn};
use wasmbed_gateway_api::{EnrollmentOutcome, refusal_code};
use wasmbed_pki::{DeviceIssuer, PeerIdentity, certified_device_id, classify_peer};
use wasmbed_protocol::session::{CloseReason, GatewayEvent, GatewaySession, SessionError};
use wasmbed_protocol::*;

use crate::Shared;
use crate::fleet::{Command, Presence};
use crate::signer::{SignFuture, SignRequest, Signed, Signing};
use crate::store::{
    DeploymentState, Desired, DeviceRecord, ResultRecord, RuntimeRecord, StoreError, unix_ms,
};
use crate::transfer::Transfer;

/// Accepts connections until `stop`, each served by a task of its own that
/// holds a clone of `sessions`: the receiver of that channel learns when
/// the last one ended.
pub(crate) async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    sessions: mpsc::Sender<()>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let admission = match shared.limits.admit(peer.ip()) {
            Ok(admission) => admission,
            Err(refusal) => {
                debug!(%peer, reason = refusal.label(), "connection refused");
                shared.metrics.handshake_failed(refusal.label());
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop.clone();
        let session = sessions.clone();
        tokio::spawn(async move {
            serve(shared, tcp, peer, stop).await;
            drop(admission);
            drop(session);
        });
    }
}

async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, stop: watch::Receiver<bool>) {
    // `peek` waits for a first byte (or the end): unlike `readable`, it
    // cannot wake up early for nothing.
    if timeout(shared.config.hello_timeout, tcp.peek(&mut [0u8; 1]))
        .await
        .is_err()
    {
        debug!(%peer, "nothing received: closed");
        shared.metrics.handshake_failed("no_hello");
        return;
    }
    let handshake = timeout(shared.config.handshake_timeout, shared.acceptor.accept(tcp)).await;
    let tls = match handshake {
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            shared.metrics.handshake_failed("timeout");
            return;
        }
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "TLS handshake failed");
            shared
                .metrics
                .handshake_failed(handshake_failure_reason(&e));
            return;
        }
        Ok(Ok(tls)) => tls,
    };
    let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        shared.metrics.handshake_failed("no_client_certificate");
        return;
    };
    let identity = classify_peer(leaf, &shared.roots);
    let certified_id = certified_device_id(leaf);
    let identity = match identity {
        Ok(identity) => identity,
        Err(e) => {
            if let Some(suppressed) = shared.may_log(peer.ip()) {
                warn!(%peer, error = %e, suppressed, "client certificate not usable");
            }
            shared.metrics.handshake_failed("bad_client_certificate");
            return;
        }
    };
    shared.metrics.handshakes.inc();
    let mut nonce = [0u8; NONCE_LEN];
    rand::thread_rng().fill_bytes(&mut nonce);
    let session = GatewaySession::new(
        identity.credential(),
        shared.config.session,
        nonce,
        shared.clock.now(),
    )
    .with_server_time(Millis(unix_ms()));
    let (commands_tx, commands) = mpsc::channel(4);
    let mut connection = Connection {
        id: shared.next_connection.fetch_add(1, Ordering::Relaxed),
        shared,
        peer,
        identity,
        certified_id,
        session,
        device: None,
        commands_tx,
        transfers: BTreeMap::new(),
        controls_sent: HashSet::new(),
        close_reason: None,
        pending_enrollment: None,
    };
    connection.run(tls, commands, stop).await;
}

fn handshake_failure_reason(error: &std::io::Error) -> &'static str {
    let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return "io";
    };
    match tls {
        rustls::Error::NoCertificatesPresented => "no_client_certificate",
        rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked) => "revoked",
        rustls::Error::InvalidCertificate(_) => "bad_client_certificate",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        _ => "tls",
    }
}

/// A session event that no longer borrows the session's input buffer, so
/// it can be handled while the session is used to answer it.
// Not boxed: it is moved once, and boxing would allocate per heartbeat.
#[allow(clippy::large_enum_variant)]
enum OwnedEvent {
    Result(ResultReport),
    Other(GatewayEvent<'static>),
}

/// An execution result, kept in its wire encoding: that is how it is stored.
struct ResultReport {
    deployment: DeploymentId,
    invocation: u32,
    cbor: Vec<u8>,
}

impl From<GatewayEvent<'_>> for OwnedEvent {
    fn from(event: GatewayEvent<'_>) -> OwnedEvent {
        OwnedEvent::Other(match event {
            GatewayEvent::ExecutionResult(result) => {
                return OwnedEvent::Result(ResultReport {
                    deployment: result.deployment,
                    invocation: result.invocation,
                    cbor: minicbor::to_vec(&result).unwrap_or_default(),
                });
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
        })
    }
}

/// Why the loop woke up.
enum Wake {
    Read(std::io::Result<usize>),
    Command(Option<Command>),
    Timer,
    Stop,
    /// The fleet's signer answered.
    Signed(Result<Signed, EnrollRefusal>),
}

/// An enrollment the fleet's signer is deciding.
struct PendingEnrollment {
    request: SignRequest,
    answer: SignFuture,
}

/// The signer's answer to the pending enrollment, if there is one; never
/// ready otherwise.
async fn signer_answer(
    pending: &mut Option<Box<PendingEnrollment>>,
) -> Result<Signed, EnrollRefusal> {
    match pending {
        Some(pending) => pending.answer.as_mut().await,
        None => std::future::pending().await,
    }
}

struct Connection {
    id: u64,
    shared: Arc<Shared>,
    peer: SocketAddr,
    identity: PeerIdentity,
    /// The device id the peer's certificate names (see
    /// [`Connection::learn_device`]).
    certified_id: Option<DeviceId>,
    session: GatewaySession<Vec<u8>>,
    /// Set once the session is accepted.
    device: Option<DeviceId>,
    commands_tx: mpsc::Sender<Command>,
    transfers: BTreeMap<DeploymentId, Transfer>,
    /// Stop/remove messages already sent in this session.
    controls_sent: HashSet<(DeploymentId, DesiredKey)>,
    close_reason: Option<CloseReason>,
    /// Boxed: most sessions never enroll, and a session's size counts.
    pending_enrollment: Option<Box<PendingEnrollment>>,
}

/// Whether an enrollment creates a device or re-issues an enrolled one's
/// certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Enrollment {
    New,
    Again(DeviceId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DesiredKey {
    Stopped,
    Removed,
}

impl Connection {
    async fn run(
        &mut self,
        mut tls: TlsStream<TcpStream>,
        mut commands: mpsc::Receiver<Command>,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.flush(&mut tls).await {
                debug!(peer = %self.peer, error = %e, "write failed");
                break;
            }
            if self.session.is_closed() {
                break;
            }
            let clock = self.shared.clock;
            let deadline = self.session.poll_timeout().map(|at| clock.instant(at));
            let wake = tokio::select! {
                // Waits for plaintext in rustls's own buffer: an idle session
                // keeps no read buffer of ours.
                read = std::future::poll_fn(|cx| {
                    std::pin::Pin::new(&mut tls).poll_fill_buf(cx).map_ok(<[u8]>::len)
                }) => Wake::Read(read),
                command = commands.recv() => Wake::Command(command),
                _ = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => Wake::Timer,
                _ = stop.wait_for(|stop| *stop) => Wake::Stop,
                // The signer's call runs here, in this task: the session
                // goes on meanwhile (its timers, a goodbye, a stop).
                signed = signer_answer(&mut self.pending_enrollment) => Wake::Signed(signed),
            };
            match wake {
                Wake::Read(Ok(0)) => {
                    debug!(peer = %self.peer, "connection closed by peer");
                    break;
                }
                Wake::Read(Ok(_)) => match tls.fill_buf().await {
                    Ok(data) => {
                        let len = data.len();
                        self.on_bytes(data);
                        std::pin::Pin::new(&mut tls).consume(len);
                    }
                    Err(e) => {
                        debug!(peer = %self.peer, error = %e, "read failed");
                        break;
                    }
                },
                Wake::Read(Err(e)) => {
                    debug!(peer = %self.peer, error = %e, "read failed");
                    break;
                }
                Wake::Command(Some(Command::Sync)) => self.sync(),
                Wake::Command(Some(Command::Close) | None) => {
                    self.session.close(GoodbyeReason::Normal)
                }
                Wake::Timer => {
                    self.session.handle_timeout(self.shared.clock.now());
                    self.drain_events();
                }
                Wake::Stop => self.session.close(GoodbyeReason::Restart),
                Wake::Signed(signed) => self.on_signed(signed),
            }
        }
        let _ = timeout(Duration::from_secs(1), tls.shutdown()).await;
        self.finish();
    }

    async fn flush(&mut self, tls: &mut TlsStream<TcpStream>) -> std::io::Result<()> {
        let pending = self.session.poll_transmit();
        if pending.is_empty() {
            return Ok(());
        }
        let len = pending.len();
        match timeout(self.shared.config.write_timeout, async {
            tls.write_all(pending).await?;
            tls.flush().await
        })
        .await
        {
            Ok(result) => result?,
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        }
        self.session.advance_transmit(len);
        self.shared.metrics.bytes_sent.inc_by(len as u64);
        Ok(())
    }

    fn on_bytes(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let taken = self.session.handle_input(data, self.shared.clock.now());
            data = &data[taken..];
            let handled = self.drain_events();
            if taken == 0 && handled == 0 {
                // Cannot happen with a well-behaved session; avoid spinning.
                if let Some(suppressed) = self.may_log() {
                    warn!(peer = %self.peer, suppressed, "session accepted no input");
                }
                self.session.close(GoodbyeReason::ProtocolError);
                break;
            }
        }
    }

    fn drain_events(&mut self) -> usize {
        let mut handled = 0;
        loop {
            let Some(event) = self.session.poll_event().map(OwnedEvent::from) else {
                break;
            };
            handled += 1;
            if let Err(e) = self.on_event(event) {
                warn!(peer = %self.peer, error = %e, "store failed; closing session");
                self.session.close(GoodbyeReason::Restart);
            }
        }
        self.pump_transfers();
        handled
    }

    fn on_event(&mut self, event: OwnedEvent) -> Result<(), StoreError> {
        let event = match event {
            OwnedEvent::Result(result) => return self.on_result(&result),
            OwnedEvent::Other(event) => event,
        };
        match event {
            GatewayEvent::EnrollRequested { request, nonce } => self.enroll(&request, &nonce)?,
            GatewayEvent::SessionRequested(start) => self.start_session(&start)?,
            GatewayEvent::Heartbeat(_) if self.revoked() => {}
            GatewayEvent::Heartbeat(heartbeat) => {
                self.shared.metrics.heartbeats.inc();
                if let Some(id) = self.device {
                    let changed = self.shared.fleet.heartbeat(
                        id,
                        unix_ms(),
                        heartbeat.uptime.0,
                        heartbeat.free_memory,
                        &heartbeat.apps,
                    );
                    // A state the device reports (an app that trapped, say)
                    // reaches the store at once, not at the next session.
                    for app in changed {
                        self.record_app_state(app.deployment, app.state)?;
                    }
                }
            }
            GatewayEvent::DeployStatus(status) => self.on_deploy_status(status)?,
            GatewayEvent::ExecutionResult(_) => {} // taken out by `OwnedEvent`
            GatewayEvent::PeerError(error) => {
                if let Some(suppressed) = self.may_log() {
                    warn!(peer = %self.peer, device = ?self.device.map(|d| d.to_string()), code = ?error.code, detail = ?error.detail, suppressed, "device reported an error");
                }
            }
            GatewayEvent::RateLimited { kind } => {
                crate::metrics::Metrics::count(&self.shared.metrics.rate_limited, kind);
                if let Some(suppressed) = self.may_log() {
                    warn!(peer = %self.peer, device = ?self.device.map(|d| d.to_string()), kind, suppressed, "device sends too often; refused rate-limited");
                }
            }
            GatewayEvent::Closed(reason) => {
                self.close_reason = Some(reason);
            }
        }
        Ok(())
    }

    fn enroll(
        &mut self,
        request: &EnrollRequest,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<(), StoreError> {
        let outcome = match self.shared.signing.clone() {
            Signing::Local(issuer) => self
                .decide_enrollment(request, nonce)
                .and_then(|enrollment| self.issue(&issuer, request, enrollment)),
            Signing::Fleet(signer) => match self.check_for_fleet(request, nonce) {
                Ok(()) => {
                    let request = SignRequest {
                        public_key: request.public_key,
                        board: request.device.board.to_string(),
                        firmware_version: request.device.firmware_version.to_string(),
                    };
                    let answer = signer.sign(request.clone());
                    self.pending_enrollment = Some(Box::new(PendingEnrollment { request, answer }));
                    return Ok(());
                }
                Err(reason) => Err(reason),
            },
        };
        self.answer_enrollment(request.device.board.as_str(), outcome);
        Ok(())
    }

    /// Tells the device how its enrollment went.
    fn answer_enrollment(&mut self, board: &str, outcome: Result<Signed, EnrollRefusal>) {
        match outcome {
            Ok(signed) => {
                let label = signed.outcome.as_str();
                info!(peer = %self.peer, device = %signed.device_id, %board, outcome = label, "device enrolled");
                crate::metrics::Metrics::count(&self.shared.metrics.enrollments, label);
                let _ = self
                    .session
                    .accept_enrollment(signed.device_id, &signed.certificate);
            }
            Err(reason) => {
                if reason == EnrollRefusal::RateLimited {
                    crate::metrics::Metrics::count(&self.shared.metrics.rate_limited, "enrollment");
                }
                if let Some(suppressed) = self.may_log() {
                    info!(peer = %self.peer, ?reason, suppressed, "enrollment refused");
                }
                crate::metrics::Metrics::count(
                    &self.shared.metrics.enrollments,
                    refusal_code(reason),
                );
                let _ = self.session.refuse_enrollment(reason);
            }
        }
    }

    /// The checks made here before an enrollment goes to the fleet's
    /// signer: the rate limits, the proof, this gateway's revocations.
    fn check_for_fleet(
        &self,
        request: &EnrollRequest,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<(), EnrollRefusal> {
        self.check_proof(request, nonce)?;
        if self.shared.revocations.contains(&request.public_key) {
            return Err(EnrollRefusal::KeyRevoked);
        }
        // Every call costs the signer: all of them count against the
        // budget of all sources.
        if !self.shared.enroll_total.take().is_allowed() {
            return Err(EnrollRefusal::RateLimited);
        }
        Ok(())
    }

    /// The fleet's signer answered the pending enrollment: the device is
    /// recorded here (as one enrolled here would be), then answered.
    fn on_signed(&mut self, signed: Result<Signed, EnrollRefusal>) {
        let Some(pending) = self.pending_enrollment.take() else {
            return;
        };
        let outcome = signed.and_then(|signed| self.record_signed(&pending.request, signed));
        self.answer_enrollment(&pending.request.board, outcome);
    }

    /// Records a device the fleet's signer enrolled, after checking that
    /// its certificate is one this gateway will accept, for its key and id.
    fn record_signed(
        &self,
        request: &SignRequest,
        signed: Signed,
    ) -> Result<Signed, EnrollRefusal> {
        let refuse = |why: &str| {
            warn!(peer = %self.peer, device = %signed.device_id, "enrollment signed elsewhere not used: {why}");
            EnrollRefusal::Internal
        };
        let der = rustls::pki_types::CertificateDer::from(signed.certificate.as_slice());
        let certified_key = match classify_peer(&der, &self.shared.roots) {
            Ok(PeerIdentity::Device(key)) => key,
            _ => {
                return Err(refuse(
                    "its certificate is not one of this gateway's device CA",
                ));
            }
        };
        if certified_key.as_sec1() != &request.public_key
            || certified_device_id(&der) != Some(signed.device_id)
        {
            return Err(refuse("its certificate is for another key or id"));
        }
        let store = &self.shared.store;
        let internal = |e: StoreError| refuse(&format!("the store failed: {e}"));
        match store.device_by_key(&request.public_key).map_err(internal)? {
            Some(known) if known.id == signed.device_id => return Ok(signed),
            Some(_) => return Err(refuse("this gateway knows the key by another id")),
            None => {}
        }
        let record = DeviceRecord {
            id: signed.device_id,
            public_key: request.public_key.to_vec(),
            board: request.board.clone(),
            firmware_version: request.firmware_version.clone(),
            enrolled_at_ms: unix_ms(),
            last_seen_ms: None,
            runtime: None,
        };
        store.insert_device(&record).map_err(internal)?;
        Ok(signed)
    }

    /// The per-source rate limit and the proof of possession, checked
    /// however the enrollment is signed.
    fn check_proof(
        &self,
        request: &EnrollRequest,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<(), EnrollRefusal> {
        // Refused before the signature is checked: a flood from one source
        // costs little.
        let source = wasmbed_httpd::source_of(self.peer.ip());
        if !self.shared.enroll_per_source.take(&source).is_allowed() {
            return Err(EnrollRefusal::RateLimited);
        }
        let key = VerifyingKey::from_sec1_bytes(&request.public_key)
            .map_err(|_| EnrollRefusal::InvalidKey)?;
        let signature =
            Signature::from_slice(&request.proof).map_err(|_| EnrollRefusal::BadProof)?;
        key.verify(&proof_payload(nonce, &request.public_key), &signature)
            .map_err(|_| EnrollRefusal::BadProof)
    }

    fn decide_enrollment(
        &self,
        request: &EnrollRequest,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<Enrollment, EnrollRefusal> {
        self.check_proof(request, nonce)?;
        // The budget of all sources is spent only on requests that can
        // succeed, so that holders of the claim certificate (every device
        // has it) cannot exhaust it while pairing is closed.
        let within_total = || {
            if self.shared.enroll_total.take().is_allowed() {
                Ok(())
            } else {
                Err(EnrollRefusal::RateLimited)
            }
        };
        let store = &self.shared.store;
        let internal = |e: StoreError| {
            warn!(error = %e, "store failed during enrollment");
            EnrollRefusal::Internal
        };
        if self.shared.revocations.contains(&request.public_key) {
            return Err(EnrollRefusal::KeyRevoked);
        }
        // The proof shows the peer holds the key of an enrolled device: it
        // lost our answer (power cut, dropped connection) and asks again.
        // It gets the same id and a fresh certificate, never a second record.
        // Both certificates bind the same key and id, and a session needs
        // the key: the older one grants nothing the newer does not.
        if let Some(device) = store.device_by_key(&request.public_key).map_err(internal)? {
            within_total()?;
            return Ok(Enrollment::Again(device.id));
        }
        if !self.shared.pairing.is_open()
            && !store
                .is_preauthorized(&request.public_key)
                .map_err(internal)?
        {
            return Err(EnrollRefusal::PairingClosed);
        }
        within_total()?;
        Ok(Enrollment::New)
    }

    /// Issues the certificate and records the device before answering, so
    /// an acknowledged enrollment is never lost.
    fn issue(
        &self,
        issuer: &DeviceIssuer,
        request: &EnrollRequest,
        enrollment: Enrollment,
    ) -> Result<Signed, EnrollRefusal> {
        let id = match enrollment {
            Enrollment::Again(DeviceId(id)) => id,
            Enrollment::New => {
                let mut id = [0u8; 16];
                rand::thread_rng().fill_bytes(&mut id);
                id
            }
        };
        let certificate = issuer.issue(id, &request.public_key).map_err(|e| {
            warn!(error = %e, "certificate issuance failed");
            EnrollRefusal::Internal
        })?;
        let signed = |outcome| Signed {
            device_id: DeviceId(id),
            certificate: certificate.to_vec(),
            outcome,
        };
        if let Enrollment::Again(_) = enrollment {
            return Ok(signed(EnrollmentOutcome::Reissued));
        }
        let record = DeviceRecord {
            id: DeviceId(id),
            public_key: request.public_key.to_vec(),
            board: request.device.board.to_string(),
            firmware_version: request.device.firmware_version.to_string(),
            enrolled_at_ms: unix_ms(),
            last_seen_ms: None,
            runtime: None,
        };
        self.shared.store.insert_device(&record).map_err(|e| {
            warn!(error = %e, "recording the device failed");
            EnrollRefusal::Internal
        })?;
        Ok(signed(EnrollmentOutcome::Accepted))
    }

    fn start_session(&mut self, start: &SessionStart) -> Result<(), StoreError> {
        let PeerIdentity::Device(key) = &self.identity else {
            // The session refuses this for claim peers before we see it.
            return Ok(());
        };
        let known = self.shared.store.device_by_key(key.as_sec1())?;
        let Some(device) = known.map_or_else(|| self.learn_device(key, start), |d| Ok(Some(d)))?
        else {
            let _ = self.session.refuse_session(ErrorCode::Unauthorized);
            return Ok(());
        };
        if self.session.accept_session(device.id).is_err() {
            return Ok(());
        }
        let runtime = RuntimeRecord::reported(
            start.capabilities.runtime,
            &start.capabilities.runtime_version,
        );
        info!(peer = %self.peer, device = %device.id, agent = %start.agent_version, %runtime, apps = start.apps.len(), "device session started");
        self.device = Some(device.id);
        self.shared
            .fleet
            .connect(device.id, self.id, self.peer, self.commands_tx.clone());
        self.shared.metrics.connected_devices.inc();
        // Revoked while this session was being looked up: it ends here.
        if self.revoked() {
            return Ok(());
        }
        self.shared.store.touch_device(device.id, unix_ms())?;
        self.shared.store.set_runtime(device.id, &runtime)?;
        for app in &start.apps {
            self.record_app_state(app.deployment, app.state)?;
        }
        self.sync();
        Ok(())
    }

    /// Records a device this gateway did not enroll: another gateway of the
    /// fleet did, and the device CA's signature on its certificate (checked
    /// by the handshake) vouches for the id it names. `None` (logged) when
    /// that id is revoked here, or taken here by another key.
    fn learn_device(
        &self,
        key: &wasmbed_pki::DevicePublicKey,
        start: &SessionStart,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let refuse = |why: &str| {
            if let Some(suppressed) = self.may_log() {
                warn!(peer = %self.peer, key = %key, device = ?self.certified_id.map(|d| d.to_string()), suppressed, "session refused: {why}");
            }
            Ok(None)
        };
        let Some(id) = self.certified_id else {
            return refuse("its certificate names no device id");
        };
        let store = &self.shared.store;
        if store.was_revoked(id)? {
            return refuse("the device was revoked");
        }
        if store.device(id)?.is_some() {
            return refuse("another key holds that device id here");
        }
        let record = DeviceRecord {
            id,
            public_key: key.as_sec1().to_vec(),
            board: String::new(),
            firmware_version: start.agent_version.to_string(),
            enrolled_at_ms: unix_ms(),
            last_seen_ms: None,
            runtime: None,
        };
        store.insert_device(&record)?;
        info!(peer = %self.peer, device = %id, "device enrolled elsewhere in the fleet: learned from its certificate");
        crate::metrics::Metrics::count(&self.shared.metrics.enrollments, "learned");
        Ok(Some(record))
    }

    /// Records an installed app the device reported at session start.
    fn record_app_state(&self, id: DeploymentId, state: AppState) -> Result<(), StoreError> {
        let Some(record) = self.owned_deployment(id)? else {
            return Ok(());
        };
        let state = match state {
            AppState::Installed => DeploymentState::Installed,
            AppState::Running => DeploymentState::Running,
            AppState::Stopped => DeploymentState::Stopped,
            AppState::Failed => DeploymentState::Failed,
            AppState::Unknown(_) => return Ok(()),
        };
        if record.state != state {
            self.shared.store.set_state(id, state, None, None)?;
        }
        Ok(())
    }

    fn owned_deployment(
        &self,
        id: DeploymentId,
    ) -> Result<Option<crate::store::DeploymentRecord>, StoreError> {
        let record = self.shared.store.deployment(id)?;
        Ok(record.filter(|r| Some(r.device) == self.device))
    }

    /// Brings the device in line with its deployments in the store.
    fn sync(&mut self) {
        let Some(device) = self.device else { return };
        let records = match self.shared.store.unfinished_deployments(device) {
            Ok(records) => records,
            Err(e) => {
                warn!(error = %e, "reading deployments failed");
                return;
            }
        };
        debug!(device = %device, unfinished = records.len(), "syncing deployments");
        for record in records {
            let result = match record.desired {
                Desired::Running => self.start_transfer(&record),
                Desired::Stopped => {
                    self.transfers.remove(&record.id);
                    self.send_control(record.id, DesiredKey::Stopped)
                }
                Desired::Removed => {
                    self.transfers.remove(&record.id);
                    self.send_control(record.id, DesiredKey::Removed)
                }
            };
            if let Err(e) = result {
                warn!(device = %device, deployment = record.id.0, error = %e, "cannot send to device now");
                break;
            }
        }
        self.pump_transfers();
    }

    fn start_transfer(
        &mut self,
        record: &crate::store::DeploymentRecord,
    ) -> Result<(), SessionError> {
        if self.transfers.contains_key(&record.id) {
            return Ok(());
        }
        let module = match self.shared.module(&record.module_sha256) {
            Ok(Some(module)) => module,
            Ok(None) | Err(_) => {
                warn!(deployment = record.id.0, "module missing from the store");
                return Ok(());
            }
        };
        let start = DeployStart {
            deployment: record.id,
            application: record.application,
            module_size: record.module_size,
            sha256: record.module_sha256,
            chunk_size: self.shared.config.chunk_size,
            limits: record.limits.clone(),
        };
        let transfer = Transfer::new(start, module, self.shared.config.transfer_window);
        self.session.send(transfer.announcement())?;
        self.transfers.insert(record.id, transfer);
        Ok(())
    }

    fn send_control(&mut self, id: DeploymentId, desired: DesiredKey) -> Result<(), SessionError> {
        if self.controls_sent.contains(&(id, desired)) {
            return Ok(());
        }
        let message = match desired {
            DesiredKey::Stopped => Downlink::Stop(StopApp { deployment: id }),
            DesiredKey::Removed => Downlink::Remove(RemoveApp { deployment: id }),
        };
        self.session.send(message)?;
        self.controls_sent.insert((id, desired));
        Ok(())
    }

    fn pump_transfers(&mut self) {
        if !self.session.is_established() {
            return;
        }
        let session = &mut self.session;
        for transfer in self.transfers.values_mut() {
            transfer.pump(|message| session.send(message).is_ok());
        }
    }

    fn on_deploy_status(&mut self, status: DeployStatus) -> Result<(), StoreError> {
        let Some(record) = self.owned_deployment(status.deployment)? else {
            self.unknown_deployment(status.deployment, "status");
            return Ok(());
        };
        // Bytes the device acknowledged, for a deployment that fails after
        // (or during) its transfer.
        let mut acked = None;
        if let Some(transfer) = self.transfers.get_mut(&status.deployment) {
            acked = u32::try_from(transfer.bytes_acked()).ok();
            if transfer.on_status(status.state) {
                self.transfers.remove(&status.deployment);
            }
        }
        let (state, reason, bytes) = match status.state {
            DeployState::Accepted { resume_offset } => {
                (DeploymentState::Transferring, None, Some(resume_offset))
            }
            // Progress is frequent and the device reports its offset again
            // on resume: it is not written to the store.
            DeployState::Progress { .. } => return Ok(()),
            DeployState::Installed => (DeploymentState::Installed, None, Some(record.module_size)),
            DeployState::Running => (DeploymentState::Running, None, None),
            DeployState::Stopped => (DeploymentState::Stopped, None, None),
            DeployState::Removed => (DeploymentState::Removed, None, None),
            DeployState::Failed { reason } => {
                (DeploymentState::Failed, Some(format!("{reason:?}")), acked)
            }
        };
        if record.state != state || reason.is_some() {
            info!(device = %record.device, deployment = record.id.0, state = state.as_str(), reason = ?reason, "deployment state");
            self.shared.metrics.deployment_state(state.as_str());
            self.shared
                .store
                .set_state(record.id, state, reason.as_deref(), bytes)?;
            // A stop or remove asked for while the module was on its way
            // applies now that the device has it.
            if record.desired != Desired::Running {
                self.sync();
            }
        }
        Ok(())
    }

    fn on_result(&mut self, result: &ResultReport) -> Result<(), StoreError> {
        let Some(record) = self.owned_deployment(result.deployment)? else {
            self.unknown_deployment(result.deployment, "result");
            return Ok(());
        };
        let stored = self.shared.store.insert_result(
            &ResultRecord {
                deployment: record.id,
                device: record.device,
                invocation: result.invocation,
                result_cbor: result.cbor.clone(),
                received_at_ms: unix_ms(),
            },
            self.shared.config.max_results_per_deployment,
        )?;
        if stored.dropped > 0 {
            self.shared
                .metrics
                .results_dropped
                .inc_by(stored.dropped as u64);
            if let Some(suppressed) = self.may_log() {
                warn!(device = %record.device, deployment = record.id.0, dropped = stored.dropped, keep = self.shared.config.max_results_per_deployment, suppressed, "deployment holds its most results; dropped the oldest");
            }
        }
        debug!(device = %record.device, deployment = record.id.0, invocation = result.invocation, new = stored.inserted, "execution result");
        Ok(())
    }

    /// A status or result for a deployment this device does not hold: the
    /// device is told `unknown-deployment`, and the session goes on.
    fn unknown_deployment(&mut self, deployment: DeploymentId, what: &str) {
        if let Some(suppressed) = self.may_log() {
            warn!(peer = %self.peer, device = ?self.device.map(|d| d.to_string()), deployment = deployment.0, what, suppressed, "message for an unknown deployment");
        }
        let error = ErrorMessage {
            code: ErrorCode::UnknownDeployment,
            detail: None,
        };
        let _ = self.session.send(Downlink::Error(error));
    }

    /// Whether this device was revoked since its handshake; if so, its
    /// session is closed. A revocation also closes the session through the
    /// fleet, but that message can be lost in a full queue: every heartbeat
    /// checks again.
    fn revoked(&mut self) -> bool {
        let PeerIdentity::Device(key) = &self.identity else {
            return false;
        };
        if !self.shared.revocations.contains(key.as_sec1()) {
            return false;
        }
        info!(peer = %self.peer, device = ?self.device.map(|d| d.to_string()), "session of a revoked device closed");
        self.session.close(GoodbyeReason::Normal);
        true
    }

    /// See [`Shared::may_log`].
    fn may_log(&self) -> Option<u64> {
        self.shared.may_log(self.peer.ip())
    }

    fn finish(&mut self) {
        let reason = self.close_reason.take();
        let label = match reason {
            Some(CloseReason::PeerGoodbye(_)) => "peer_goodbye",
            Some(CloseReason::LocalGoodbye(_)) => "local_goodbye",
            Some(CloseReason::ProtocolViolation(_)) => "protocol_violation",
            Some(CloseReason::Timeout) => "timeout",
            None => "connection_lost",
        };
        crate::metrics::Metrics::count(&self.shared.metrics.sessions_closed, label);
        let Some(device) = self.device else {
            debug!(peer = %self.peer, reason = label, "session ended");
            return;
        };
        let presence = if reason == Some(CloseReason::Timeout) {
            Presence::Unreachable
        } else {
            Presence::Disconnected
        };
        info!(peer = %self.peer, device = %device, reason = %reason.map(|r| r.to_string()).unwrap_or_else(|| "connection lost".into()), "device session ended");
        self.shared.fleet.disconnect(device, self.id, presence);
        self.shared.metrics.connected_devices.dec();
        if let Err(e) = self.shared.store.touch_device(device, unix_ms()) {
            warn!(error = %e, "recording last_seen failed");
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}
