//! The agent itself: creating it, the sans-IO connection loop, and what C
//! needs for TLS (credentials, the gateway check, randomness).

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ffi::{c_char, c_void};
use core::fmt::Write as _;
use core::sync::atomic::{AtomicPtr, Ordering};

use rand_core::RngCore;
use wasmbed_agent::agent::AgentConfig;
use wasmbed_agent::console::{EventLine, IdentityLine};
use wasmbed_agent::entropy::seeded_generator;
use wasmbed_agent::flash::{FlashKeyStore, FlashLayout, FlashModuleStore};
use wasmbed_agent::identity::{SEC1_DER_LEN, sec1_der};
use wasmbed_agent::provisioning::{Provisioning, SEED_LEN};
use wasmbed_agent::storage::ModuleStore;
use wasmbed_agent::x509::{CertError, GatewayAnchor};
use wasmbed_agent::{Agent, AgentEvent, Credentials};
use wasmbed_protocol::frame::MAX_FRAME_LEN;
use wasmbed_protocol::session::DeviceConfig;
use wasmbed_protocol::{DeviceInfo, GoodbyeReason, Millis, NAME_LEN, Name};
use wasmbed_protocol_ffi::{WB_NAME_SIZE, WbStatus, text_in};

use crate::medium::{Medium, Partition, WB_MEDIUM_SECTOR, WbMedium};
use crate::runtime::{CRuntime, WbRuntime};

type InnerAgent = Agent<FlashKeyStore<Partition>, FlashModuleStore<Partition>, CRuntime>;

/// The device agent. Opaque; made by `wb_agent_new`, freed by
/// `wb_agent_free`.
pub struct WbAgent {
    agent: InnerAgent,
    rng: rand_chacha::ChaCha20Rng,
    provisioned: Owned,
    /// The credentials handed out by the last `wb_agent_credentials`.
    certificate: Vec<u8>,
    private_key: [u8; SEC1_DER_LEN],
    /// The platform reports free memory (console lines show it).
    reports_free_memory: bool,
}

impl core::fmt::Debug for WbAgent {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("WbAgent")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

/// The provisioning record's fields, owned, strings NUL-terminated.
#[derive(Debug)]
struct Owned {
    gateway_ca: Vec<u8>,
    server_name: Vec<u8>,
    device_name: Vec<u8>,
    gateway_address: Vec<u8>,
    claim_certificate: Vec<u8>,
    claim_key: [u8; SEC1_DER_LEN],
}

fn c_string(text: &str) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(text.len() + 1);
    bytes.extend_from_slice(text.as_bytes());
    bytes.push(0);
    bytes
}

/// Text of a NUL-terminated field, without the NUL.
fn text(field: &[u8]) -> &str {
    core::str::from_utf8(&field[..field.len().saturating_sub(1)]).unwrap_or_default()
}

/// What the platform gives the agent besides storage and the runtime.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WbAgentPlatform {
    pub ctx: *mut c_void,
    /// A monotonic clock in microseconds since boot. Required.
    pub now_us: Option<unsafe extern "C" fn(ctx: *mut c_void) -> u64>,
    /// Free heap in bytes, for heartbeats and console lines; may be NULL.
    pub free_memory: Option<unsafe extern "C" fn(ctx: *mut c_void) -> u32>,
    /// Fills `buf` with bytes that vary from boot to boot (timer jitter), mixed
    /// into the CSPRNG's seed; may be NULL. On a board with a TRNG, its output.
    pub boot_entropy: Option<unsafe extern "C" fn(ctx: *mut c_void, buf: *mut u8, len: usize)>,
}

/// The platform clock, for the runtime's durations.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    ctx: *mut c_void,
    now_us: unsafe extern "C" fn(*mut c_void) -> u64,
}

impl Clock {
    pub(crate) fn now_us(&self) -> u64 {
        // SAFETY: the platform's clock callback takes its context.
        unsafe { (self.now_us)(self.ctx) }
    }
}

/// How the agent is set up; start from `wb_agent_config_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WbAgentConfig {
    /// Board name sent at enrollment, NUL-terminated.
    pub board: [c_char; WB_NAME_SIZE],
    /// Firmware version sent at enrollment, NUL-terminated.
    pub firmware_version: [c_char; WB_NAME_SIZE],
    /// Bytes of linear memory applications may use.
    pub app_memory: u32,
    /// Most fuel a deployment may ask for.
    pub max_fuel: u64,
    /// Module slots in the medium.
    pub slots: u32,
    /// Largest module, in bytes.
    pub max_module_size: u32,
    /// How long to wait for the gateway to answer a request.
    pub response_timeout_ms: u32,
}

/// The settings the bare-metal firmware uses on the same boards: 2 slots
/// of 16 KiB, one 64 KiB page, 50 million fuel, 5 s response timeout.
#[unsafe(no_mangle)]
pub extern "C" fn wb_agent_config_default() -> WbAgentConfig {
    WbAgentConfig {
        board: wasmbed_protocol_ffi::text_out("unknown"),
        firmware_version: wasmbed_protocol_ffi::text_out(env!("CARGO_PKG_VERSION")),
        app_memory: 64 * 1024,
        max_fuel: 50_000_000,
        slots: 2,
        max_module_size: 16 * 1024,
        response_timeout_ms: 5_000,
    }
}

fn layout(config: &WbAgentConfig) -> Option<FlashLayout> {
    FlashLayout::new(WB_MEDIUM_SECTOR, config.slots, config.max_module_size)
}

/// Bytes of medium an agent with `config` needs (0 for an impossible
/// configuration or a NULL pointer).
///
/// # Safety
/// `config` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_medium_size(config: *const WbAgentConfig) -> u32 {
    // SAFETY: the caller passes NULL or a valid config.
    unsafe { config.as_ref() }
        .and_then(layout)
        .map_or(0, |l| l.size())
}

static FREE_MEMORY: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
static FREE_MEMORY_CTX: AtomicPtr<c_void> = AtomicPtr::new(core::ptr::null_mut());

/// `AgentConfig::free_memory` is a plain function: the platform's callback
/// and context are kept here (one agent per device).
fn free_memory() -> u32 {
    let function = FREE_MEMORY.load(Ordering::Relaxed);
    if function.is_null() {
        return 0;
    }
    // SAFETY: only `wb_agent_new` stores here, a function of this type.
    let function: unsafe extern "C" fn(*mut c_void) -> u32 =
        unsafe { core::mem::transmute(function) };
    // SAFETY: the platform's callback takes its context.
    unsafe { function(FREE_MEMORY_CTX.load(Ordering::Relaxed)) }
}

fn agent_config(config: &WbAgentConfig) -> Result<AgentConfig, WbStatus> {
    let board: Name = text_in::<NAME_LEN, WB_NAME_SIZE>(&config.board)?;
    let firmware_version: Name = text_in::<NAME_LEN, WB_NAME_SIZE>(&config.firmware_version)?;
    if config.slots == 0 || config.max_module_size == 0 || config.response_timeout_ms == 0 {
        return Err(WbStatus::InvalidArgument);
    }
    let mut agent = AgentConfig::new(DeviceInfo {
        board,
        firmware_version,
    });
    agent.session = DeviceConfig {
        max_frame_len: MAX_FRAME_LEN,
        response_timeout_ms: config.response_timeout_ms,
    };
    agent.app_memory = config.app_memory;
    agent.max_fuel = config.max_fuel;
    agent.free_memory = free_memory;
    Ok(agent)
}

fn provisioned(bytes: &[u8]) -> Result<(Owned, [u8; SEED_LEN], [u8; 32]), WbStatus> {
    let record = Provisioning::decode(bytes).map_err(|_| WbStatus::Malformed)?;
    // The gateway CA must be usable before anything connects.
    GatewayAnchor::new(record.gateway_ca).map_err(|_| WbStatus::Malformed)?;
    let claim_key = sec1_der(&record.claim_private_key).map_err(|_| WbStatus::Malformed)?;
    let owned = Owned {
        gateway_ca: record.gateway_ca.to_vec(),
        server_name: c_string(record.server_name),
        device_name: c_string(record.device_name),
        gateway_address: c_string(record.gateway_address.unwrap_or("")),
        claim_certificate: record.claim_certificate.to_vec(),
        claim_key,
    };
    Ok((owned, record.entropy_seed, record.claim_private_key))
}

/// Makes the agent: reads the provisioning record (`provision.bin`, CBOR;
/// copied), opens the stores in `medium` (at least
/// `wb_agent_medium_size(config)` bytes; a blank medium is all `0xFF`),
/// seeds the CSPRNG and saves the next boot's seed, and marks an
/// application that was running at a reset as failed.
///
/// Errors: `NULL_POINTER`; `INVALID_ARGUMENT` for a bad config, a medium
/// too small or a callback missing; `MALFORMED` for an unreadable
/// provisioning record; `BAD_STORAGE` when the stores cannot be opened.
///
/// # Safety
/// Every pointer is NULL or valid; `provisioning` for `len` bytes. The
/// medium's, runtime's and platform's contexts and callbacks stay valid as
/// long as the agent.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_new(
    config: *const WbAgentConfig,
    provisioning: *const u8,
    len: usize,
    medium: *const WbMedium,
    runtime: *const WbRuntime,
    platform: *const WbAgentPlatform,
    out: *mut *mut WbAgent,
) -> WbStatus {
    // SAFETY: the caller passes NULL or valid pointers.
    let (config, medium, runtime, platform) = unsafe {
        (
            config.as_ref(),
            medium.as_ref(),
            runtime.as_ref(),
            platform.as_ref(),
        )
    };
    let (Some(config), Some(medium), Some(runtime), Some(platform)) =
        (config, medium, runtime, platform)
    else {
        return WbStatus::NullPointer;
    };
    if out.is_null() || provisioning.is_null() {
        return WbStatus::NullPointer;
    }
    // SAFETY: the caller guarantees `len` readable bytes.
    let record = unsafe { core::slice::from_raw_parts(provisioning, len) };
    // SAFETY: the contexts and callbacks outlive the agent (caller's promise).
    match unsafe { build(config, record, medium, runtime, platform) } {
        Ok(agent) => {
            // SAFETY: `out` is valid for a write.
            unsafe { out.write(Box::into_raw(Box::new(agent))) };
            WbStatus::Ok
        }
        Err(status) => status,
    }
}

/// # Safety
/// As `wb_agent_new`.
unsafe fn build(
    config: &WbAgentConfig,
    record: &[u8],
    medium: &WbMedium,
    runtime: &WbRuntime,
    platform: &WbAgentPlatform,
) -> Result<WbAgent, WbStatus> {
    let agent_config = agent_config(config)?;
    let layout = layout(config).ok_or(WbStatus::InvalidArgument)?;
    let medium = Medium::new(medium).ok_or(WbStatus::InvalidArgument)?;
    if medium.size() < layout.size() {
        return Err(WbStatus::InvalidArgument);
    }
    let now_us = platform.now_us.ok_or(WbStatus::InvalidArgument)?;
    let clock = Clock {
        ctx: platform.ctx,
        now_us,
    };
    // SAFETY: the runtime's version string outlives the agent.
    let runtime = unsafe { CRuntime::new(runtime, clock) }.ok_or(WbStatus::InvalidArgument)?;
    let (provisioned, seed, _) = provisioned(record)?;

    let seeded = seeded_generator(&seed, &mut medium.partition(layout.seed.clone()), |hash| {
        let mut jitter = [0u8; 32];
        if let Some(fill) = platform.boot_entropy {
            // SAFETY: the callback writes at most `jitter.len()` bytes.
            unsafe { fill(platform.ctx, jitter.as_mut_ptr(), jitter.len()) };
        }
        sha2::Digest::update(hash, jitter);
        sha2::Digest::update(hash, clock.now_us().to_le_bytes());
    });
    let keys = FlashKeyStore::new(medium.partition(layout.keys.clone()))
        .map_err(|_| WbStatus::BadStorage)?;
    let modules = FlashModuleStore::new(
        medium.partition(layout.modules.clone()),
        config.slots as usize,
        config.max_module_size,
    )
    .map_err(|_| WbStatus::BadStorage)?;
    if let Some(function) = platform.free_memory {
        FREE_MEMORY_CTX.store(platform.ctx, Ordering::Relaxed);
        FREE_MEMORY.store(function as *mut (), Ordering::Relaxed);
    }
    let agent =
        Agent::new(agent_config, keys, modules, runtime).map_err(|_| WbStatus::BadStorage)?;
    Ok(WbAgent {
        agent,
        rng: seeded.rng,
        provisioned,
        certificate: Vec::new(),
        private_key: [0; SEC1_DER_LEN],
        reports_free_memory: platform.free_memory.is_some(),
    })
}

/// Frees the agent. NULL is ignored.
///
/// # Safety
/// `agent` came from `wb_agent_new` and is not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_free(agent: *mut WbAgent) {
    if !agent.is_null() {
        // SAFETY: made by `Box::into_raw` in `wb_agent_new`.
        drop(unsafe { Box::from_raw(agent) });
    }
}

/// What the provisioning record says; pointers valid while the agent lives.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WbProvisioned {
    /// The gateway CA certificate, DER: the only root to trust.
    pub gateway_ca: *const u8,
    pub gateway_ca_len: usize,
    /// The name the gateway's certificate must carry (SNI), NUL-terminated.
    pub server_name: *const c_char,
    /// The device's name, for the console, NUL-terminated.
    pub device_name: *const c_char,
    /// `host:port` of the gateway's device port, NUL-terminated; empty when
    /// the record has none.
    pub gateway_address: *const c_char,
}

/// # Safety
/// `agent` and `out` are NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_provisioned(
    agent: *const WbAgent,
    out: *mut WbProvisioned,
) -> WbStatus {
    // SAFETY: the caller passes NULL or valid pointers.
    let (Some(agent), Some(out)) = (unsafe { agent.as_ref() }, unsafe { out.as_mut() }) else {
        return WbStatus::NullPointer;
    };
    let p = &agent.provisioned;
    *out = WbProvisioned {
        gateway_ca: p.gateway_ca.as_ptr(),
        gateway_ca_len: p.gateway_ca.len(),
        server_name: p.server_name.as_ptr().cast(),
        device_name: p.device_name.as_ptr().cast(),
        gateway_address: p.gateway_address.as_ptr().cast(),
    };
    WbStatus::Ok
}

/// The TLS client identity for the next connection.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct WbCredentials {
    /// false: the shared claim credential (the device enrolls); true: the
    /// device's own certificate.
    pub enrolled: bool,
    /// DER certificate.
    pub certificate: *const u8,
    pub certificate_len: usize,
    /// The P-256 private key as DER `ECPrivateKey` (SEC1), as mbedTLS's
    /// `mbedtls_pk_parse_key` reads it.
    pub private_key: *const u8,
    pub private_key_len: usize,
}

/// Fills `out` with the credentials to connect with; they stay valid until
/// the next call or `wb_agent_free`. Call before every connection: they
/// change when the device enrolls.
///
/// # Safety
/// `agent` and `out` are NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_credentials(
    agent: *mut WbAgent,
    out: *mut WbCredentials,
) -> WbStatus {
    // SAFETY: the caller passes NULL or valid pointers.
    let (Some(agent), Some(out)) = (unsafe { agent.as_mut() }, unsafe { out.as_mut() }) else {
        return WbStatus::NullPointer;
    };
    let enrolled = match agent.agent.credentials() {
        Credentials::Claim => {
            agent.certificate = agent.provisioned.claim_certificate.clone();
            agent.private_key = agent.provisioned.claim_key;
            false
        }
        Credentials::Device {
            certificate,
            private_key,
        } => {
            let Ok(der) = sec1_der(private_key) else {
                return WbStatus::BadStorage;
            };
            agent.certificate = certificate.to_vec();
            agent.private_key = der;
            true
        }
    };
    *out = WbCredentials {
        enrolled,
        certificate: agent.certificate.as_ptr(),
        certificate_len: agent.certificate.len(),
        private_key: agent.private_key.as_ptr(),
        private_key_len: agent.private_key.len(),
    };
    WbStatus::Ok
}

/// Checks the certificate chain the gateway sent (DER, leaf first) exactly
/// as the bare-metal firmware does: one certificate, signed directly by the
/// provisioned gateway CA, not itself a CA, carrying the provisioned server
/// name. There is no intermediate whose constraints could be skipped, so a
/// chain of any other length is refused. The device has no trusted time:
/// the validity period is not checked, as on bare metal.
///
/// `WB_STATUS_OK`, or `WB_STATUS_MALFORMED` with the console line saying
/// why in `line` (as the bare-metal firmware prints it, e.g. `tls: gateway
/// certificate refused: not issued by the gateway CA`): refuse the
/// connection.
///
/// # Safety
/// `agent` is NULL or valid; `certificates` and `lengths` are valid for
/// `count` entries, each certificate for its length; `line` is NULL or
/// valid for `line_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_check_gateway_chain(
    agent: *const WbAgent,
    certificates: *const *const u8,
    lengths: *const usize,
    count: usize,
    line: *mut c_char,
    line_size: usize,
) -> WbStatus {
    // SAFETY: the caller passes NULL or a valid agent.
    let Some(agent) = (unsafe { agent.as_ref() }) else {
        return WbStatus::NullPointer;
    };
    if count > 0 && (certificates.is_null() || lengths.is_null()) {
        return WbStatus::NullPointer;
    }
    let mut why = LineBuffer::default();
    let verdict = if count == 1 {
        // SAFETY: one entry in each array (caller), valid for its length.
        let (der, len) = unsafe { (*certificates, *lengths) };
        if der.is_null() {
            return WbStatus::NullPointer;
        }
        // SAFETY: the caller guarantees `len` readable bytes.
        let der = unsafe { core::slice::from_raw_parts(der, len) };
        check_gateway_certificate(agent, der)
            .map_err(|e| write!(why, "tls: gateway certificate refused: {e}"))
    } else {
        Err(write!(
            why,
            "tls: gateway sent {count} certificates, expected 1"
        ))
    };
    match verdict {
        Ok(()) => WbStatus::Ok,
        Err(_) => {
            // SAFETY: the caller guarantees `line_size` writable bytes.
            unsafe { why.copy_to(line, line_size) };
            WbStatus::Malformed
        }
    }
}

fn check_gateway_certificate(agent: &WbAgent, der: &[u8]) -> Result<(), CertError> {
    let anchor = GatewayAnchor::new(&agent.provisioned.gateway_ca)?;
    anchor
        .verify_server(der, text(&agent.provisioned.server_name), None)
        .map(|_| ())
}

/// Fills `buf` from the agent's CSPRNG (for the TLS library's entropy).
///
/// # Safety
/// `agent` is NULL or valid; `buf` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_random(
    agent: *mut WbAgent,
    buf: *mut u8,
    len: usize,
) -> WbStatus {
    // SAFETY: the caller passes NULL or a valid agent.
    let Some(agent) = (unsafe { agent.as_mut() }) else {
        return WbStatus::NullPointer;
    };
    if len == 0 {
        return WbStatus::Ok;
    }
    if buf.is_null() {
        return WbStatus::NullPointer;
    }
    // SAFETY: the caller guarantees `len` writable bytes.
    agent
        .rng
        .fill_bytes(unsafe { core::slice::from_raw_parts_mut(buf, len) });
    WbStatus::Ok
}

/// Starts a session on a new connection opened with `wb_agent_credentials`:
/// enrollment without an identity (a key pair is made and stored first),
/// otherwise a session start. `INVALID_STATE` while a session is open,
/// `BAD_STORAGE` when the new key cannot be stored.
///
/// # Safety
/// `agent` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_connect(agent: *mut WbAgent, now_ms: u64) -> WbStatus {
    // SAFETY: the caller passes NULL or a valid agent.
    let Some(agent) = (unsafe { agent.as_mut() }) else {
        return WbStatus::NullPointer;
    };
    match agent.agent.connect(Millis(now_ms), &mut agent.rng) {
        Ok(()) => WbStatus::Ok,
        Err(wasmbed_agent::AgentError::AlreadyConnected) => WbStatus::InvalidState,
        Err(wasmbed_agent::AgentError::Store(_)) => WbStatus::BadStorage,
    }
}

/// Feeds bytes received from the gateway; `*taken` says how many were
/// used. When fewer than `len`, drain `wb_agent_poll` and call again with
/// the rest.
///
/// # Safety
/// `agent` and `taken` are NULL or valid; `data` is valid for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_input(
    agent: *mut WbAgent,
    data: *const u8,
    len: usize,
    now_ms: u64,
    taken: *mut usize,
) -> WbStatus {
    // SAFETY: the caller passes NULL or valid pointers.
    let (Some(agent), Some(taken)) = (unsafe { agent.as_mut() }, unsafe { taken.as_mut() }) else {
        return WbStatus::NullPointer;
    };
    let data = if len == 0 {
        &[][..]
    } else if data.is_null() {
        return WbStatus::NullPointer;
    } else {
        // SAFETY: the caller guarantees `len` readable bytes.
        unsafe { core::slice::from_raw_parts(data, len) }
    };
    *taken = agent.agent.handle_input(data, Millis(now_ms));
    WbStatus::Ok
}

/// Processes what arrived and what became due (installing and running
/// modules happen here) and writes the next event's console line into
/// `line` (NUL-terminated, cut to fit). Returns false when there is no
/// further event. Call until false after every input and timeout.
///
/// # Safety
/// `agent` is NULL or valid; `line` is valid for `line_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_poll(
    agent: *mut WbAgent,
    now_ms: u64,
    line: *mut c_char,
    line_size: usize,
) -> bool {
    // SAFETY: the caller passes NULL or a valid agent.
    let Some(agent) = (unsafe { agent.as_mut() }) else {
        return false;
    };
    let Some(event) = agent.agent.poll(Millis(now_ms)) else {
        return false;
    };
    let mut text = LineBuffer::default();
    let _ = write!(text, "{}", EventLine(&event));
    if matches!(event, AgentEvent::HeartbeatSent) && agent.reports_free_memory {
        let _ = write!(text, " (heap free {} B)", free_memory());
    }
    // SAFETY: the caller guarantees `line_size` writable bytes.
    unsafe { text.copy_to(line, line_size) };
    true
}

/// Bytes to send to the gateway (`*len` may be 0). Send them, then call
/// `wb_agent_advance` with how many were sent; the pointer is valid until
/// the next call on the agent.
///
/// # Safety
/// Every pointer is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_transmit(
    agent: *const WbAgent,
    data: *mut *const u8,
    len: *mut usize,
) {
    // SAFETY: the caller passes NULL or valid pointers.
    let (Some(agent), false, false) = (unsafe { agent.as_ref() }, data.is_null(), len.is_null())
    else {
        return;
    };
    let out = agent.agent.poll_transmit();
    // SAFETY: both pointers were checked non-NULL and are valid (caller).
    unsafe {
        data.write(out.as_ptr());
        len.write(out.len());
    }
}

/// Drops `sent` bytes from the front of what `wb_agent_transmit` returned.
///
/// # Safety
/// `agent` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_advance(agent: *mut WbAgent, sent: usize) {
    // SAFETY: the caller passes NULL or a valid agent.
    if let Some(agent) = unsafe { agent.as_mut() } {
        agent.agent.advance_transmit(sent);
    }
}

/// When the agent next needs `wb_agent_handle_timeout`, in milliseconds on
/// the clock given to it; false when nothing is scheduled.
///
/// # Safety
/// `agent` and `deadline_ms` are NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_timeout(agent: *const WbAgent, deadline_ms: *mut u64) -> bool {
    // SAFETY: the caller passes NULL or valid pointers.
    let (Some(agent), Some(deadline)) =
        (unsafe { agent.as_ref() }, unsafe { deadline_ms.as_mut() })
    else {
        return false;
    };
    match agent.agent.poll_timeout() {
        Some(at) => {
            *deadline = at.0;
            true
        }
        None => false,
    }
}

/// Lets the agent act on deadlines that passed (heartbeats, response
/// timeouts).
///
/// # Safety
/// `agent` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_handle_timeout(agent: *mut WbAgent, now_ms: u64) {
    // SAFETY: the caller passes NULL or a valid agent.
    if let Some(agent) = unsafe { agent.as_mut() } {
        agent.agent.handle_timeout(Millis(now_ms));
    }
}

/// The session is over: close the connection once `wb_agent_transmit` has
/// nothing left, then call `wb_agent_disconnected`.
///
/// # Safety
/// `agent` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_is_closed(agent: *const WbAgent) -> bool {
    // SAFETY: the caller passes NULL or a valid agent.
    unsafe { agent.as_ref() }.is_none_or(|a| a.agent.is_closed())
}

/// Ends the session with a goodbye (a `wb_goodbye_reason`), e.g. when the
/// transport stalls.
///
/// # Safety
/// `agent` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_close(agent: *mut WbAgent, goodbye_reason: u16) {
    // SAFETY: the caller passes NULL or a valid agent.
    if let Some(agent) = unsafe { agent.as_mut() } {
        agent.agent.close(GoodbyeReason::from_code(goodbye_reason));
    }
}

/// The connection is gone: returns when to reconnect (milliseconds, on the
/// agent's clock), after a backoff with jitter that grows while
/// connections keep failing.
///
/// # Safety
/// `agent` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_disconnected(agent: *mut WbAgent, now_ms: u64) -> u64 {
    // SAFETY: the caller passes NULL or a valid agent.
    match unsafe { agent.as_mut() } {
        Some(agent) => agent.agent.disconnected(Millis(now_ms), &mut agent.rng).0,
        None => now_ms,
    }
}

/// The boot line, in the bare-metal firmware's grammar:
/// `boot: device NAME, identity device ID|none (will enroll), N app(s) installed, heap F B free`.
///
/// # Safety
/// `agent` is NULL or valid; `line` is valid for `line_size` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wb_agent_boot_line(
    agent: *const WbAgent,
    line: *mut c_char,
    line_size: usize,
) {
    // SAFETY: the caller passes NULL or a valid agent.
    let Some(agent) = (unsafe { agent.as_ref() }) else {
        return;
    };
    let mut text = LineBuffer::default();
    let _ = write!(
        text,
        "boot: device {}, {}, {} app(s) installed",
        self::text(&agent.provisioned.device_name),
        IdentityLine(agent.agent.identity()),
        agent.agent.store().apps().len()
    );
    if agent.reports_free_memory {
        let _ = write!(text, ", heap {} B free", free_memory());
    }
    // SAFETY: the caller guarantees `line_size` writable bytes.
    unsafe { text.copy_to(line, line_size) };
}

/// A console line being formatted; longer lines are cut.
#[derive(Default)]
struct LineBuffer(heapless::String<256>);

impl core::fmt::Write for LineBuffer {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            if self.0.push(c).is_err() {
                break;
            }
        }
        Ok(())
    }
}

impl LineBuffer {
    /// # Safety
    /// `out` is NULL or valid for `size` bytes.
    unsafe fn copy_to(&self, out: *mut c_char, size: usize) {
        if out.is_null() || size == 0 {
            return;
        }
        let mut n = self.0.len().min(size - 1);
        while !self.0.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: `n + 1 <= size` bytes are written.
        unsafe {
            core::ptr::copy_nonoverlapping(self.0.as_ptr().cast::<c_char>(), out, n);
            out.add(n).write(0);
        }
    }
}
