//! The agent against the protocol crate's gateway session, in memory.
//!
//! The harness plays the gateway: it verifies enrollment proofs, issues a
//! (fake) certificate, accepts sessions, and sends deployments with a
//! window of chunks in flight that advances on the agent's `Progress`.

// Test sizes and offsets are small; truncating casts cannot happen.
#![allow(clippy::cast_possible_truncation)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::Digest;
use wasmbed_agent::agent::BackoffConfig;
use wasmbed_agent::flash::{FlashKeyStore, FlashModuleStore, MemFlash};
use wasmbed_agent::runtime::{Clock, WasmiConfig, WasmiRuntime};
use wasmbed_agent::storage::ModuleStore;
use wasmbed_agent::{Agent, AgentConfig, AgentEvent, Credentials};
use wasmbed_protocol::session::{
    CloseReason, GatewayConfig, GatewayEvent, GatewaySession, PeerCredential,
};
use wasmbed_protocol::*;

/// Deterministic randomness for reproducible tests (not for real keys).
struct TestRng(u64);

impl rand_core::RngCore for TestRng {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
    fn next_u64(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes()[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for TestRng {}

/// The device clock, shared by the harness and the runtime (microseconds).
/// The second counts the runtime's reads down to a fault: when set to `n`,
/// the `n`-th next read panics, as a device faults and resets. (Not inside
/// a host function: wasmi's calls into them cannot unwind.)
#[derive(Clone, Default)]
struct TestClock(Arc<AtomicU64>, Arc<AtomicU32>);

impl Clock for TestClock {
    fn now_us(&self) -> u64 {
        let left = self.1.load(Ordering::Relaxed);
        if left > 0 {
            self.1.store(left - 1, Ordering::Relaxed);
            assert!(left != 1, "the device faults");
        }
        self.0.load(Ordering::Relaxed)
    }
}

type Keys = FlashKeyStore<MemFlash>;
type Modules = FlashModuleStore<MemFlash>;
type TestAgent = Agent<Keys, Modules, WasmiRuntime<TestClock>>;

const HEARTBEAT_MS: u32 = 1_000;
const CHUNK: u16 = 64;
const WINDOW: u32 = 6;
const DEVICE_ID: DeviceId = DeviceId([0xd5; 16]);

fn config() -> AgentConfig {
    let mut config = AgentConfig::new(DeviceInfo {
        board: "mps2-an385".try_into().expect("short"),
        firmware_version: "0.1.0".try_into().expect("short"),
    });
    config.backoff = BackoffConfig {
        initial_ms: 500,
        max_ms: 8_000,
    };
    config.free_memory = || 12_345;
    config
}

struct Harness {
    agent: TestAgent,
    clock: TestClock,
    gateway: Option<GatewaySession<Vec<u8>>>,
    rng: TestRng,
    /// Public keys the gateway enrolled.
    enrolled: Vec<[u8; PUBLIC_KEY_LEN]>,
    /// Everything the gateway session reported, in order.
    seen: Vec<GatewayEvent<'static>>,
    /// Everything the agent reported, in order.
    events: Vec<AgentEvent>,
    /// Drop the gateway's enrollment answer instead of delivering it.
    lose_enroll_response: bool,
}

impl Harness {
    fn new() -> Self {
        let clock = TestClock::default();
        let keys = FlashKeyStore::new(MemFlash::new(2)).expect("fits");
        let modules = FlashModuleStore::new(MemFlash::new(2 + 2 * 2), 2, 4096).expect("fits");
        Harness::with_parts(clock, keys, modules)
    }

    fn with_parts(clock: TestClock, keys: Keys, modules: Modules) -> Self {
        let runtime = WasmiRuntime::new(WasmiConfig::default(), clock.clone());
        Harness {
            agent: Agent::new(config(), keys, modules, runtime).expect("stores load"),
            clock,
            gateway: None,
            rng: TestRng(0x5eed),
            enrolled: Vec::new(),
            seen: Vec::new(),
            events: Vec::new(),
            lose_enroll_response: false,
        }
    }

    /// The device loses power: stores are reopened from their flash.
    fn reboot(self) -> Self {
        let (keys, modules, _) = self.agent.into_parts();
        let keys = FlashKeyStore::new(keys.into_flash()).expect("reopens");
        let modules = FlashModuleStore::new(modules.into_flash(), 2, 4096).expect("reopens");
        let mut rebooted = Harness::with_parts(self.clock, keys, modules);
        // The gateway remembers whom it enrolled.
        rebooted.enrolled = self.enrolled;
        rebooted
    }

    fn now(&self) -> Millis {
        Millis(self.clock.0.load(Ordering::Relaxed) / 1000)
    }

    fn advance(&mut self, ms: u64) {
        self.clock.0.fetch_add(ms * 1000, Ordering::Relaxed);
        let now = self.now();
        self.agent.handle_timeout(now);
        if let Some(gateway) = &mut self.gateway {
            gateway.handle_timeout(now);
        }
        self.pump();
    }

    fn connect(&mut self) {
        let credential = match self.agent.credentials() {
            Credentials::Claim => PeerCredential::Claim,
            Credentials::Device { .. } => PeerCredential::Device,
        };
        let config = GatewayConfig {
            heartbeat_interval_ms: HEARTBEAT_MS,
            ..GatewayConfig::default()
        };
        let mut nonce = [0u8; NONCE_LEN];
        rand_core::RngCore::fill_bytes(&mut self.rng, &mut nonce);
        let now = self.now();
        self.gateway = Some(GatewaySession::new(credential, config, nonce, now));
        self.agent
            .connect(now, &mut self.rng)
            .expect("not connected");
        self.pump();
    }

    /// The connection drops: bytes in flight are lost. Returns the delay
    /// until the agent wants to reconnect.
    fn drop_connection(&mut self) -> u64 {
        self.gateway = None;
        let now = self.now();
        self.agent.disconnected(now, &mut self.rng).0 - now.0
    }

    /// Closes a connection whose session ended, like a driver would.
    fn close_if_done(&mut self) -> bool {
        let done = self.agent.is_closed() && self.agent.poll_transmit().is_empty();
        if done {
            self.drop_connection();
        }
        done
    }

    /// Moves bytes both ways until nothing moves.
    fn pump(&mut self) {
        let now = self.now();
        loop {
            let mut moved = false;
            while let Some(event) = self.agent.poll(now) {
                self.events.push(event);
            }
            let Some(gateway) = &mut self.gateway else {
                return;
            };
            let up = self.agent.poll_transmit().to_vec();
            if !up.is_empty() {
                let taken = gateway.handle_input(&up, now);
                self.agent.advance_transmit(taken);
                moved |= taken > 0;
            }
            loop {
                let Some(event) = self
                    .gateway
                    .as_mut()
                    .and_then(|g| g.poll_event().map(owned))
                else {
                    break;
                };
                self.answer(&event);
                self.seen.push(event);
            }
            let Some(gateway) = &mut self.gateway else {
                return;
            };
            let down = gateway.poll_transmit().to_vec();
            if !down.is_empty() {
                let taken = if self.lose_enroll_response && gateway.is_closed() {
                    down.len()
                } else {
                    self.agent.handle_input(&down, now)
                };
                gateway.advance_transmit(taken);
                moved |= taken > 0;
            }
            if !moved {
                while let Some(event) = self.agent.poll(now) {
                    self.events.push(event);
                }
                if self.agent.poll_transmit().is_empty() {
                    return;
                }
            }
        }
    }

    /// The gateway's decisions.
    fn answer(&mut self, event: &GatewayEvent<'_>) {
        let gateway = self.gateway.as_mut().expect("connected");
        match event {
            GatewayEvent::EnrollRequested { request, nonce } => {
                let key =
                    VerifyingKey::from_sec1_bytes(&request.public_key).expect("a P-256 point");
                let signature = Signature::from_slice(&request.proof).expect("r||s");
                let payload = proof_payload(nonce, &request.public_key);
                if key.verify(&payload, &signature).is_err() {
                    gateway
                        .refuse_enrollment(EnrollRefusal::BadProof)
                        .expect("deciding");
                    return;
                }
                self.enrolled.push(request.public_key);
                let certificate = [b"cert:".as_slice(), &request.public_key[..8]].concat();
                gateway
                    .accept_enrollment(DEVICE_ID, &certificate)
                    .expect("deciding");
            }
            GatewayEvent::SessionRequested(_) => {
                gateway.accept_session(DEVICE_ID).expect("deciding");
            }
            _ => {}
        }
    }

    fn send(&mut self, message: Downlink<'_>) {
        self.gateway
            .as_mut()
            .expect("connected")
            .send(message)
            .expect("established");
    }

    /// Statuses of `deployment` the gateway received, in order.
    fn statuses(&self, deployment: u64) -> Vec<DeployState> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                GatewayEvent::DeployStatus(s) if s.deployment == DeploymentId(deployment) => {
                    Some(s.state)
                }
                _ => None,
            })
            .collect()
    }

    fn results(&self) -> Vec<&ExecutionResult<'static>> {
        self.seen
            .iter()
            .filter_map(|e| match e {
                GatewayEvent::ExecutionResult(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The most bytes the device has acknowledged for `deployment`.
    fn acknowledged(&self, deployment: u64) -> u32 {
        self.statuses(deployment)
            .iter()
            .filter_map(|s| match s {
                DeployState::Accepted { resume_offset } => Some(*resume_offset),
                DeployState::Progress { bytes_held } => Some(*bytes_held),
                _ => None,
            })
            .next_back()
            .unwrap_or(0)
    }

    fn enroll_and_establish(&mut self) {
        self.connect();
        assert!(self.close_if_done(), "enrollment ends the session");
        self.connect();
        assert!(self.agent.is_established());
    }

    fn start(&mut self, deployment: u64, module: &[u8], limits: Limits) {
        let start = DeployStart {
            deployment: DeploymentId(deployment),
            application: ApplicationId(77),
            module_size: module.len() as u32,
            sha256: sha2::Sha256::digest(module).into(),
            chunk_size: CHUNK,
            limits,
        };
        self.send(Downlink::DeployStart(start));
        self.pump();
    }

    /// Sends chunks from the acknowledged offset, keeping at most `WINDOW`
    /// in flight, until `until` bytes were sent.
    fn send_chunks(&mut self, deployment: u64, module: &[u8], until: usize) {
        let mut next = self.acknowledged(deployment) as usize;
        while next < until {
            let in_flight = next as u32 - self.acknowledged(deployment);
            if in_flight >= WINDOW * u32::from(CHUNK) {
                self.pump();
                assert!(
                    (next as u32 - self.acknowledged(deployment)) < WINDOW * u32::from(CHUNK),
                    "the window never advanced"
                );
                continue;
            }
            let end = (next + usize::from(CHUNK)).min(until);
            self.send(Downlink::DeployChunk(DeployChunk {
                deployment: DeploymentId(deployment),
                offset: next as u32,
                data: &module[next..end],
            }));
            next = end;
        }
        self.pump();
    }

    fn commit(&mut self, deployment: u64) {
        self.send(Downlink::DeployCommit(DeployCommit {
            deployment: DeploymentId(deployment),
        }));
        self.pump();
    }

    fn deploy(&mut self, deployment: u64, module: &[u8], limits: Limits) {
        self.start(deployment, module, limits);
        self.send_chunks(deployment, module, module.len());
        self.commit(deployment);
    }
}

fn limits(fuel: u64, args: &[Value]) -> Limits {
    Limits {
        fuel,
        memory_pages: 1,
        entry: "main".try_into().expect("short"),
        args: heapless::Vec::from_slice(args).expect("few"),
    }
}

/// Logs a greeting and returns twice its argument.
fn greeter() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "wasmbed" "log" (func $log (param i32 i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "hello from wasm")
          ;; Padding so the module takes several chunks.
          (data (i32.const 100) "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
          (func (export "main") (param i32) (result i32)
            (call $log (i32.const 0) (i32.const 15))
            (i32.mul (local.get 0) (i32.const 2))))"#,
    )
    .expect("valid WAT")
}

fn count(events: &[AgentEvent], pred: impl Fn(&AgentEvent) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

#[test]
fn enrolls_then_reconnects_with_the_stored_identity() {
    let mut h = Harness::new();
    assert_eq!(h.agent.credentials(), Credentials::Claim);
    h.connect();
    assert!(h.events.contains(&AgentEvent::EnrollRequested));
    assert!(h.events.contains(&AgentEvent::Enrolled {
        device_id: DEVICE_ID
    }));
    assert!(matches!(
        h.events.last(),
        Some(AgentEvent::Closed(CloseReason::PeerGoodbye(
            GoodbyeReason::Enrolled
        )))
    ));
    assert_eq!(h.enrolled.len(), 1);
    let delay = h.drop_connection();
    assert!(
        delay <= 500,
        "enrolled: reconnect soon, not after {delay} ms"
    );

    // The identity survives a reboot and is used for the next session.
    let mut h = h.reboot();
    let Credentials::Device {
        certificate,
        private_key,
    } = h.agent.credentials()
    else {
        panic!("not enrolled after reboot")
    };
    assert_eq!(&certificate[5..], &h.enrolled_key_prefix());
    assert_eq!(
        wasmbed_agent::identity::public_key(private_key).expect("valid"),
        h.enrolled_public_key()
    );
    h.connect();
    assert!(h.agent.is_established());
    assert!(h.events.contains(&AgentEvent::Established {
        device_id: DEVICE_ID,
        heartbeat_interval_ms: HEARTBEAT_MS
    }));
    let Some(GatewayEvent::SessionRequested(hello)) = h.seen.last() else {
        panic!("no session start: {:?}", h.seen)
    };
    assert_eq!(hello.capabilities.runtime, RuntimeKind::Wasmi);
    assert_eq!(hello.capabilities.app_slots, 2);

    // Heartbeats follow the gateway's interval and carry the device's state.
    h.advance(u64::from(HEARTBEAT_MS));
    let Some(GatewayEvent::Heartbeat(heartbeat)) = h.seen.last() else {
        panic!("no heartbeat: {:?}", h.seen.last())
    };
    assert_eq!(heartbeat.free_memory, 12_345);
    assert_eq!(heartbeat.uptime, h.now());
}

impl Harness {
    fn enrolled_public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.enrolled[0]
    }

    fn enrolled_key_prefix(&self) -> Vec<u8> {
        self.enrolled[0][..8].to_vec()
    }
}

#[test]
fn a_lost_enrollment_answer_is_retried_with_the_same_key() {
    let mut h = Harness::new();
    h.lose_enroll_response = true;
    h.connect();
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e, AgentEvent::Enrolled { .. }))
    );
    // The key was stored before the request left the device: after a
    // reboot the same key is presented again.
    let mut h2 = h.reboot();
    assert_eq!(h2.agent.credentials(), Credentials::Claim);
    h2.lose_enroll_response = false;
    h2.connect();
    assert_eq!(h2.enrolled.len(), 2);
    assert_eq!(
        h2.enrolled[0], h2.enrolled[1],
        "the same key was presented again"
    );
    assert!(h2.agent.identity().is_some());
    let h3 = h2.reboot();
    assert!(h3.agent.identity().is_some());
}

#[test]
fn deploys_a_module_in_chunks_and_reports_its_result() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    let module = greeter();
    assert!(module.len() > 4 * usize::from(CHUNK));
    h.deploy(1, &module, limits(10_000, &[Value::I32(21)]));

    let statuses = h.statuses(1);
    assert_eq!(statuses[0], DeployState::Accepted { resume_offset: 0 });
    assert!(statuses.contains(&DeployState::Progress {
        bytes_held: module.len() as u32
    }));
    let tail = &statuses[statuses.len() - 3..];
    assert_eq!(
        tail,
        &[
            DeployState::Installed,
            DeployState::Running,
            DeployState::Stopped
        ]
    );
    let results = h.results();
    assert_eq!(results.len(), 1);
    let result = results[0];
    assert_eq!(result.invocation, 1);
    assert_eq!(
        result.outcome,
        Outcome::Returned(heapless::Vec::from_slice(&[Value::I32(42)]).expect("one"))
    );
    assert_eq!(result.logs[0].as_str(), "hello from wasm");
    assert!(!result.logs_truncated);
    assert!(result.fuel_used > 0);
    assert_eq!(h.agent.store().apps()[0].state, AppState::Stopped);
}

#[test]
fn a_cut_transfer_resumes_from_the_acknowledged_offset_and_installs_once() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    let module = greeter();
    let limits = limits(10_000, &[Value::I32(1)]);
    h.start(1, &module, limits.clone());
    // Half the module, then the connection drops with chunks in flight.
    h.send_chunks(1, &module, module.len() / 2);
    let acknowledged = h.acknowledged(1);
    assert!(acknowledged > 0);
    h.send(Downlink::DeployChunk(DeployChunk {
        deployment: DeploymentId(1),
        offset: (module.len() / 2) as u32,
        data: &module[module.len() / 2..module.len() / 2 + 10],
    }));
    let delay = h.drop_connection();
    assert!(delay <= 500, "{delay}");
    h.advance(delay);

    h.connect();
    h.start(1, &module, limits);
    let Some(DeployState::Accepted { resume_offset }) = h.statuses(1).last().copied() else {
        panic!("not accepted: {:?}", h.statuses(1))
    };
    assert!(
        resume_offset >= acknowledged,
        "{resume_offset} < {acknowledged}"
    );
    assert!(resume_offset < module.len() as u32);
    h.send_chunks(1, &module, module.len());
    h.commit(1);

    let installed = h
        .statuses(1)
        .iter()
        .filter(|s| **s == DeployState::Installed)
        .count();
    assert_eq!(installed, 1);
    assert_eq!(h.results().len(), 1);
    assert_eq!(
        count(&h.events, |e| matches!(e, AgentEvent::Installed { .. })),
        1
    );
}

#[test]
fn a_reboot_mid_transfer_resumes_from_the_durable_offset() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    let module = greeter();
    let limits = limits(10_000, &[Value::I32(1)]);
    h.start(1, &module, limits.clone());
    h.send_chunks(1, &module, module.len() / 2);
    let acknowledged = h.acknowledged(1);

    let mut h = h.reboot();
    h.connect();
    assert!(h.agent.is_established());
    h.start(1, &module, limits);
    let Some(DeployState::Accepted { resume_offset }) = h.statuses(1).last().copied() else {
        panic!("not accepted: {:?}", h.statuses(1))
    };
    // Progress was checkpointed before it was sent: all of it survives.
    assert_eq!(resume_offset, acknowledged);
    h.send_chunks(1, &module, module.len());
    h.commit(1);
    assert_eq!(h.results().len(), 1);
}

#[test]
fn a_repeated_deployment_is_neither_reinstalled_nor_rerun() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    let module = greeter();
    h.deploy(1, &module, limits(10_000, &[Value::I32(1)]));
    assert_eq!(h.results().len(), 1);
    let before = h.statuses(1).len();

    // The gateway did not see the result and starts over, in a new session:
    // the device answers `Installed` to the start and to the commit. The
    // unconfirmed result is sent again, not produced again.
    h.drop_connection();
    h.connect();
    h.start(1, &module, limits(10_000, &[Value::I32(1)]));
    h.commit(1);
    let after = &h.statuses(1)[before..];
    assert_eq!(after, &[DeployState::Installed, DeployState::Installed]);
    let results = h.results();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0], results[1], "the same result, resent");
    assert!(h.events.contains(&AgentEvent::AlreadyInstalled {
        deployment: DeploymentId(1)
    }));
    assert_eq!(executions(&h.events), 1);

    // Not after a reboot either.
    let mut h = h.reboot();
    h.connect();
    h.start(1, &module, limits(10_000, &[Value::I32(1)]));
    h.commit(1);
    assert_eq!(h.results().len(), 1, "resent, not rerun");
    assert_eq!(executions(&h.events), 0);
    assert_eq!(
        h.statuses(1),
        vec![DeployState::Installed, DeployState::Installed]
    );
}

fn executions(events: &[AgentEvent]) -> usize {
    count(events, |e| matches!(e, AgentEvent::Executed { .. }))
}

#[test]
fn a_runaway_module_runs_out_of_fuel_and_heartbeats_go_on() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    let runaway =
        wat::parse_str(r#"(module (func (export "main") (loop $l br $l)))"#).expect("valid WAT");
    h.deploy(2, &runaway, limits(50_000, &[]));
    let results = h.results();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].outcome, Outcome::Trapped(TrapCode::OutOfFuel));
    assert_eq!(results[0].fuel_used, 50_000);
    assert_eq!(h.statuses(2).last(), Some(&DeployState::Stopped));

    let heartbeats = |h: &Harness| {
        h.seen
            .iter()
            .filter(|e| matches!(e, GatewayEvent::Heartbeat(_)))
            .count()
    };
    for beat in 1..=3 {
        h.advance(u64::from(HEARTBEAT_MS));
        assert_eq!(heartbeats(&h), beat);
    }
    assert!(h.agent.is_established());
    let Some(GatewayEvent::Heartbeat(last)) = h
        .seen
        .iter()
        .rev()
        .find(|e| matches!(e, GatewayEvent::Heartbeat(_)))
    else {
        unreachable!()
    };
    assert_eq!(last.apps[0].state, AppState::Failed);
}

#[test]
fn a_corrupted_module_fails_with_hash_mismatch() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    let module = greeter();
    let mut corrupted = module.clone();
    corrupted[100] ^= 0xFF;
    // Announce the real module, send a corrupted one.
    h.start(3, &module, limits(10_000, &[Value::I32(1)]));
    h.send_chunks(3, &corrupted, corrupted.len());
    h.commit(3);
    assert_eq!(
        h.statuses(3).last(),
        Some(&DeployState::Failed {
            reason: DeployFailure::HashMismatch
        })
    );
    assert!(h.results().is_empty());
    assert!(
        h.agent.store().find(DeploymentId(3)).is_none(),
        "slot freed"
    );
}

#[test]
fn a_module_importing_outside_the_host_api_is_refused() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    let module =
        wat::parse_str(r#"(module (import "env" "foo" (func)) (func (export "main") call 0))"#)
            .expect("valid WAT");
    h.deploy(4, &module, limits(10_000, &[]));
    assert_eq!(
        h.statuses(4).last(),
        Some(&DeployState::Failed {
            reason: DeployFailure::ImportNotAllowed
        })
    );
    assert!(h.results().is_empty());
    assert!(h.agent.store().apps().is_empty());
}

#[test]
fn limits_beyond_the_device_are_refused_before_any_transfer() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    let module = greeter();
    let mut too_much = limits(10_000, &[Value::I32(1)]);
    too_much.memory_pages = 4;
    h.start(5, &module, too_much);
    assert_eq!(
        h.statuses(5),
        vec![DeployState::Failed {
            reason: DeployFailure::LimitsTooHigh
        }]
    );
    let huge = vec![0u8; 5000];
    h.start(6, &huge, limits(10, &[]));
    assert_eq!(
        h.statuses(6),
        vec![DeployState::Failed {
            reason: DeployFailure::TooLarge
        }]
    );
}

#[test]
fn stop_and_remove_update_the_app_list() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    h.deploy(1, &greeter(), limits(10_000, &[Value::I32(1)]));
    h.send(Downlink::Stop(StopApp {
        deployment: DeploymentId(1),
    }));
    h.send(Downlink::Remove(RemoveApp {
        deployment: DeploymentId(1),
    }));
    // Removing twice is harmless; stopping the unknown is an error.
    h.send(Downlink::Remove(RemoveApp {
        deployment: DeploymentId(1),
    }));
    h.send(Downlink::Stop(StopApp {
        deployment: DeploymentId(9),
    }));
    h.pump();
    let tail: Vec<_> = h.statuses(1).into_iter().rev().take(3).collect();
    assert_eq!(
        tail,
        vec![
            DeployState::Removed,
            DeployState::Removed,
            DeployState::Stopped
        ]
    );
    assert!(h.seen.iter().any(|e| matches!(
        e,
        GatewayEvent::PeerError(ErrorMessage {
            code: ErrorCode::UnknownDeployment,
            ..
        })
    )));
    assert!(h.agent.store().apps().is_empty());
    h.advance(u64::from(HEARTBEAT_MS));
    let Some(GatewayEvent::Heartbeat(beat)) = h.seen.last() else {
        panic!("no heartbeat")
    };
    assert!(beat.apps.is_empty());
}

#[test]
fn reconnect_delays_back_off_with_jitter_and_reset_after_success() {
    let mut h = Harness::new();
    // Connections that fail before a session: ceilings 500, 1000, ... 8000.
    let mut ceilings = Vec::new();
    for attempt in 0..8u32 {
        let ceiling = (500u64 << attempt).min(8_000);
        let delay = h.drop_connection();
        assert!(delay <= ceiling, "attempt {attempt}: {delay} > {ceiling}");
        ceilings.push(ceiling);
    }
    // Jitter: many delays at the cap spread over its range.
    let delays: Vec<u64> = (0..50).map(|_| h.drop_connection()).collect();
    assert!(delays.iter().all(|d| *d <= 8_000));
    assert!(delays.iter().min() < Some(&2_000) && delays.iter().max() > Some(&6_000));

    // After a session that worked, the next reconnect comes soon again.
    h.enroll_and_establish();
    let delay = h.drop_connection();
    assert!(delay <= 500, "{delay}");
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
                    let text: &'static str = Box::leak(line.as_str().to_owned().into_boxed_str());
                    LogLine::truncated(text)
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

/// Fine-grained delivery, to lose or reorder what is in flight.
impl Harness {
    /// Delivers what the gateway sent to the agent, and nothing back.
    fn deliver_down(&mut self) {
        let now = self.now();
        let gateway = self.gateway.as_mut().expect("connected");
        let mut down = gateway.poll_transmit().to_vec();
        gateway.advance_transmit(down.len());
        while !down.is_empty() {
            let taken = self.agent.handle_input(&down, now);
            down.drain(..taken);
            while let Some(event) = self.agent.poll(now) {
                self.events.push(event);
            }
        }
    }

    /// Delivers what the agent sent to the gateway, and nothing back.
    fn deliver_up(&mut self) {
        let now = self.now();
        let up = self.agent.poll_transmit().to_vec();
        let gateway = self.gateway.as_mut().expect("connected");
        let taken = gateway.handle_input(&up, now);
        assert_eq!(taken, up.len(), "the gateway takes everything");
        self.agent.advance_transmit(taken);
        while let Some(event) = self
            .gateway
            .as_mut()
            .and_then(|g| g.poll_event().map(owned))
        {
            self.answer(&event);
            self.seen.push(event);
        }
    }

    /// Time passes on the device only: a due heartbeat is queued, not sent.
    fn tick_device(&mut self, ms: u64) {
        self.clock.0.fetch_add(ms * 1000, Ordering::Relaxed);
        let now = self.now();
        self.agent.handle_timeout(now);
        while let Some(event) = self.agent.poll(now) {
            self.events.push(event);
        }
    }

    /// Deploys and commits, but the connection is cut once the device has
    /// run the module: its result never reaches the gateway.
    fn deploy_and_lose_the_result(&mut self, deployment: u64, module: &[u8], limits: Limits) {
        self.start(deployment, module, limits);
        self.send_chunks(deployment, module, module.len());
        let results = self.results().len();
        let runs = executions(&self.events);
        self.send(Downlink::DeployCommit(DeployCommit {
            deployment: DeploymentId(deployment),
        }));
        self.deliver_down();
        assert_eq!(executions(&self.events), runs + 1, "the module ran");
        self.drop_connection();
        assert_eq!(self.results().len(), results, "the result was lost");
    }

    fn count_events(&self, pred: impl Fn(&AgentEvent) -> bool) -> usize {
        count(&self.events, pred)
    }

    fn stored_result(&self, deployment: u64) -> Option<ExecutionResult<'_>> {
        let cbor = self.agent.store().result(DeploymentId(deployment))?;
        Some(minicbor::decode(cbor).expect("a stored result decodes"))
    }

    /// One heartbeat round trip.
    fn heartbeat(&mut self) {
        self.advance(u64::from(HEARTBEAT_MS));
        assert!(
            matches!(self.seen.last(), Some(GatewayEvent::Heartbeat(_))),
            "no heartbeat"
        );
    }
}

#[test]
fn a_result_lost_with_a_reset_is_resent_until_a_later_heartbeat_confirms_it() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    h.deploy_and_lose_the_result(1, &greeter(), limits(10_000, &[Value::I32(21)]));
    let stored = {
        let stored = h.stored_result(1).expect("stored before it was sent");
        assert_eq!(stored.deployment, DeploymentId(1));
        assert_eq!(stored.logs[0].as_str(), "hello from wasm");
        minicbor::to_vec(&stored).expect("encodes")
    };

    // The device resets before anything else: the result is still there,
    // sent again after the next SessionAccept, exactly once.
    let mut h = h.reboot();
    assert!(h.stored_result(1).is_some());
    h.connect();
    assert!(h.agent.is_established());
    let results = h.results();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].outcome,
        Outcome::Returned(heapless::Vec::from_slice(&[Value::I32(42)]).expect("one"))
    );
    assert_eq!(
        minicbor::to_vec(results[0]).expect("encodes"),
        stored,
        "the same result"
    );
    // The result comes before anything about the run is asked again; the
    // session start told the gateway the app stopped.
    let Some(GatewayEvent::SessionRequested(hello)) = h.seen.first() else {
        panic!("no session start: {:?}", h.seen)
    };
    assert_eq!(hello.apps[0].state, AppState::Stopped);
    assert_eq!(
        h.count_events(|e| matches!(e, AgentEvent::ResultResent { .. })),
        1
    );
    assert_eq!(executions(&h.events), 0, "never run twice");

    // Unconfirmed, it is resent on the next session too.
    h.drop_connection();
    h.connect();
    assert_eq!(h.results().len(), 2);

    // A heartbeat sent after it, acknowledged: the gateway has it.
    h.heartbeat();
    assert_eq!(
        h.count_events(|e| *e
            == AgentEvent::ResultDelivered {
                deployment: DeploymentId(1)
            }),
        1
    );
    assert!(h.stored_result(1).is_none());
    assert_eq!(h.agent.store().apps()[0].state, AppState::Stopped);

    // Not resent any more: not on a new session, nor after a reset.
    h.drop_connection();
    h.connect();
    assert_eq!(h.results().len(), 2);
    let mut h = h.reboot();
    h.connect();
    assert!(h.agent.is_established());
    assert!(h.results().is_empty());
    assert_eq!(executions(&h.events), 0);
}

#[test]
fn a_delivered_result_is_confirmed_by_the_next_heartbeat_only() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    let module = greeter();
    h.start(1, &module, limits(10_000, &[Value::I32(1)]));
    h.send_chunks(1, &module, module.len());

    // A heartbeat leaves the device, then the commit arrives and the
    // result follows the heartbeat.
    h.tick_device(u64::from(HEARTBEAT_MS));
    assert_eq!(h.count_events(|e| *e == AgentEvent::HeartbeatSent), 1);
    h.send(Downlink::DeployCommit(DeployCommit {
        deployment: DeploymentId(1),
    }));
    h.deliver_down();
    assert_eq!(executions(&h.events), 1);
    // The gateway reads the heartbeat, then the result, and acknowledges
    // the heartbeat: that says nothing about the result.
    h.deliver_up();
    assert_eq!(h.results().len(), 1);
    h.deliver_down();
    assert!(
        h.events
            .iter()
            .all(|e| !matches!(e, AgentEvent::ResultDelivered { .. }))
    );
    assert!(h.stored_result(1).is_some(), "not confirmed yet");

    // The connection drops: the result goes again.
    h.drop_connection();
    h.connect();
    assert_eq!(h.results().len(), 2);
    assert!(h.stored_result(1).is_some());

    // The next heartbeat confirms it.
    h.heartbeat();
    assert!(h.stored_result(1).is_none());
    h.drop_connection();
    h.connect();
    assert_eq!(h.results().len(), 2);
    assert_eq!(executions(&h.events), 1);
}

#[test]
fn removing_a_deployment_drops_its_stored_result() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    h.deploy_and_lose_the_result(1, &greeter(), limits(10_000, &[Value::I32(1)]));
    h.connect();
    assert_eq!(h.results().len(), 1, "resent");
    h.send(Downlink::Remove(RemoveApp {
        deployment: DeploymentId(1),
    }));
    h.pump();
    assert_eq!(h.statuses(1).last(), Some(&DeployState::Removed));
    assert!(h.agent.store().result(DeploymentId(1)).is_none());
    assert!(h.agent.store().outbox().is_empty());
    // The heartbeat that would have confirmed it finds nothing to clear.
    h.heartbeat();
    assert_eq!(
        h.count_events(|e| matches!(e, AgentEvent::ResultDelivered { .. })),
        0
    );

    // Gone for good: not resent on reconnect nor after a reset.
    h.drop_connection();
    h.connect();
    assert_eq!(h.results().len(), 1);
    let mut h = h.reboot();
    h.connect();
    assert!(h.results().is_empty());
    assert_eq!(executions(&h.events), 0);
}

#[test]
fn results_of_several_slots_are_kept_and_confirmed_independently() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    h.deploy_and_lose_the_result(1, &greeter(), limits(10_000, &[Value::I32(1)]));
    h.connect();
    // The first one is confirmed; the second is lost again.
    h.heartbeat();
    assert!(h.stored_result(1).is_none());
    h.deploy_and_lose_the_result(2, &greeter(), limits(10_000, &[Value::I32(2)]));
    let mut h = h.reboot();
    h.connect();
    let results = h.results();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].deployment, DeploymentId(2));
    assert_eq!(executions(&h.events), 0);
}

/// A module that loops until its fuel runs out.
fn spin() -> Vec<u8> {
    wat::parse_str(r#"(module (func (export "main") (loop $l br $l)))"#).expect("valid WAT")
}

impl Harness {
    /// Deploys `module` and commits it; the device faults and resets while
    /// it runs (once the module is compiled, when the runtime reads the
    /// clock to time the call), so nothing about the run is sent. Returns
    /// the rebooted device, not connected.
    fn deploy_and_reset_during_the_run(
        mut self,
        deployment: u64,
        module: &[u8],
        limits: Limits,
    ) -> Harness {
        self.start(deployment, module, limits);
        self.send_chunks(deployment, module, module.len());
        self.clock.1.store(1, Ordering::Relaxed);
        self.send(Downlink::DeployCommit(DeployCommit {
            deployment: DeploymentId(deployment),
        }));
        let faulted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.deliver_down();
        }));
        assert!(faulted.is_err(), "the run faulted");
        assert_eq!(self.clock.1.load(Ordering::Relaxed), 0);
        assert_eq!(
            self.statuses(deployment).last(),
            Some(&DeployState::Progress {
                bytes_held: module.len() as u32
            }),
            "nothing about the run reached the gateway"
        );
        assert!(self.results().is_empty());
        assert_eq!(
            self.agent.store().apps()[0].state,
            AppState::Running,
            "stored before the run"
        );
        self.reboot()
    }
}

#[test]
fn a_reset_during_a_run_is_reported_once_as_a_device_reset_result_and_never_reruns() {
    let mut h = Harness::new();
    h.enroll_and_establish();
    let module = spin();
    let spin_limits = limits(1_000_000, &[]);
    let mut h = h.deploy_and_reset_during_the_run(1, &module, spin_limits.clone());

    // At boot the interrupted run is recorded as failed, with its result.
    assert_eq!(h.agent.store().apps()[0].state, AppState::Failed);
    assert_eq!(
        h.stored_result(1).map(|r| r.outcome),
        Some(Outcome::Trapped(TrapCode::DeviceReset)),
        "a result is stored at boot"
    );

    h.connect();
    assert!(h.agent.is_established());
    let Some(GatewayEvent::SessionRequested(hello)) = h.seen.first() else {
        panic!("no session start: {:?}", h.seen)
    };
    assert_eq!(hello.apps[0].state, AppState::Failed);
    let results = h.results();
    assert_eq!(results.len(), 1);
    assert_eq!(
        *results[0],
        ExecutionResult {
            deployment: DeploymentId(1),
            invocation: 1,
            outcome: Outcome::Trapped(TrapCode::DeviceReset),
            fuel_used: 0,
            duration_us: 0,
            logs: heapless::Vec::new(),
            logs_truncated: false,
        }
    );
    assert_eq!(executions(&h.events), 0, "not run again");

    // The gateway announces the deployment again: installed, not rerun.
    h.start(1, &module, spin_limits.clone());
    h.commit(1);
    assert_eq!(
        h.statuses(1),
        vec![DeployState::Installed, DeployState::Installed]
    );
    assert_eq!(executions(&h.events), 0, "not run again");

    // Confirmed by the next heartbeat, then never sent again.
    h.heartbeat();
    assert_eq!(
        h.count_events(|e| *e
            == AgentEvent::ResultDelivered {
                deployment: DeploymentId(1)
            }),
        1
    );
    assert!(h.stored_result(1).is_none());
    h.drop_connection();
    h.connect();
    assert_eq!(h.results().len(), 1);

    // Another reset finds it failed, not running: no second result.
    let mut h = h.reboot();
    assert!(h.stored_result(1).is_none());
    h.connect();
    assert!(h.agent.is_established());
    assert!(h.results().is_empty());
    assert_eq!(executions(&h.events), 0);
    assert_eq!(h.agent.store().apps()[0].state, AppState::Failed);

    // The device goes on running other deployments normally.
    h.deploy(2, &greeter(), limits(10_000, &[Value::I32(21)]));
    let results = h.results();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].outcome,
        Outcome::Returned(heapless::Vec::from_slice(&[Value::I32(42)]).expect("one"))
    );
}

#[test]
fn a_result_unconfirmed_at_a_reset_is_not_replaced_by_a_device_reset() {
    // A run that finished and was stored is not "interrupted": after a
    // reset its own result is resent, never a DeviceReset one.
    let mut h = Harness::new();
    h.enroll_and_establish();
    h.deploy_and_lose_the_result(1, &greeter(), limits(10_000, &[Value::I32(21)]));
    let mut h = h.reboot();
    h.connect();
    let results = h.results();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].outcome,
        Outcome::Returned(heapless::Vec::from_slice(&[Value::I32(42)]).expect("one"))
    );
}
