//! The agent through its C ABI, driven from Rust exactly as C drives it:
//! a NOR medium in memory, wasmi behind the runtime vtable (a real runtime
//! through the same seam WAMR uses), and the protocol's gateway session at
//! the other end of the byte stream.

// Every unsafe block here calls the C ABI under test with pointers this file
// made and keeps alive, or is a callback the agent calls under the contract
// its C type documents: one justification for all of them.
#![allow(clippy::undocumented_unsafe_blocks, clippy::cast_possible_truncation)]

mod common;

use std::ffi::{CStr, c_char, c_void};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmbed_agent::provisioning::Provisioning;
use wasmbed_agent::runtime::{Runtime, WasmiConfig, WasmiRuntime};
use wasmbed_agent_ffi::*;
use wasmbed_pki::test_fixtures;
use wasmbed_protocol::session::{GatewayConfig, GatewayEvent, GatewaySession, PeerCredential};
use wasmbed_protocol::*;
use wasmbed_protocol_ffi::{WbLimits, WbStatus, WbValue};

// ------------------------------------------------------------ platform ----

static NOW_US: AtomicU64 = AtomicU64::new(1_000_000);

fn now_ms() -> u64 {
    NOW_US.load(Ordering::Relaxed) / 1000
}

unsafe extern "C" fn now_us(_: *mut c_void) -> u64 {
    NOW_US.load(Ordering::Relaxed)
}

unsafe extern "C" fn free_memory(_: *mut c_void) -> u32 {
    4242
}

fn platform() -> WbAgentPlatform {
    WbAgentPlatform {
        ctx: ptr::null_mut(),
        now_us: Some(now_us),
        free_memory: Some(free_memory),
        boot_entropy: None,
    }
}

// -------------------------------------------------------------- medium ----

/// NOR flash in memory: erase sets 0xFF, write ANDs.
struct Nor {
    bytes: Vec<u8>,
    broken: bool,
}

unsafe extern "C" fn nor_read(ctx: *mut c_void, offset: u32, buf: *mut u8, len: usize) -> i32 {
    // SAFETY: ctx is the test's `Nor`, buf valid for len (the contract).
    let nor = unsafe { &*(ctx as *const Nor) };
    if nor.broken {
        return -5;
    }
    let at = offset as usize;
    unsafe { ptr::copy_nonoverlapping(nor.bytes[at..at + len].as_ptr(), buf, len) };
    0
}

unsafe extern "C" fn nor_write(ctx: *mut c_void, offset: u32, data: *const u8, len: usize) -> i32 {
    let nor = unsafe { &mut *(ctx as *mut Nor) };
    let data = unsafe { std::slice::from_raw_parts(data, len) };
    for (old, new) in nor.bytes[offset as usize..].iter_mut().zip(data) {
        *old &= *new;
    }
    0
}

unsafe extern "C" fn nor_erase(ctx: *mut c_void, offset: u32, len: u32) -> i32 {
    let nor = unsafe { &mut *(ctx as *mut Nor) };
    assert_eq!(offset % WB_MEDIUM_SECTOR, 0, "erase is sector-aligned");
    assert_eq!(len % WB_MEDIUM_SECTOR, 0, "erase is whole sectors");
    nor.bytes[offset as usize..(offset + len) as usize].fill(0xFF);
    0
}

fn medium(nor: &mut Nor) -> WbMedium {
    WbMedium {
        ctx: (nor as *mut Nor).cast(),
        size: nor.bytes.len() as u32,
        read: Some(nor_read),
        write: Some(nor_write),
        erase: Some(nor_erase),
    }
}

// ------------------------------------------------------------- runtime ----

/// wasmi behind the vtable, reporting through `wb_invocation_*`.
struct Wasmi(WasmiRuntime<fn() -> u64>);

fn limits_of(limits: &WbLimits) -> Limits {
    let entry = unsafe { CStr::from_ptr(limits.entry.as_ptr()) };
    Limits {
        fuel: limits.fuel,
        memory_pages: limits.memory_pages,
        entry: entry.to_str().expect("UTF-8").try_into().expect("short"),
        args: limits.args[..limits.arg_count]
            .iter()
            .map(|v| v.message().expect("a known kind"))
            .collect(),
    }
}

unsafe extern "C" fn wasmi_validate(
    ctx: *mut c_void,
    module: *const u8,
    len: usize,
    limits: *const WbLimits,
    failure: *mut u16,
) -> bool {
    let runtime = unsafe { &mut *(ctx as *mut Wasmi) };
    let module = unsafe { std::slice::from_raw_parts(module, len) };
    match runtime.0.validate(module, &limits_of(unsafe { &*limits })) {
        Ok(()) => true,
        Err(reason) => {
            unsafe { failure.write(reason.code()) };
            false
        }
    }
}

unsafe extern "C" fn wasmi_invoke(
    ctx: *mut c_void,
    module: *mut u8,
    len: usize,
    limits: *const WbLimits,
    invocation: *mut WbInvocation,
) {
    let runtime = unsafe { &mut *(ctx as *mut Wasmi) };
    let module = unsafe { std::slice::from_raw_parts(module, len) }.to_vec();
    let result = runtime.0.invoke(module, &limits_of(unsafe { &*limits }));
    for line in &result.logs.lines {
        unsafe { wb_invocation_log(invocation, line.as_ptr().cast(), line.len()) };
    }
    match result.outcome {
        Outcome::Returned(values) => {
            for value in values {
                unsafe { wb_invocation_return(invocation, &WbValue::from_message(value)) };
            }
        }
        Outcome::Trapped(code) => unsafe { wb_invocation_trap(invocation, code.code()) },
    }
    unsafe { wb_invocation_fuel_used(invocation, result.fuel_used) };
}

fn clock_us() -> u64 {
    NOW_US.load(Ordering::Relaxed)
}

fn runtime(wasmi: &mut Wasmi) -> WbRuntime {
    WbRuntime {
        ctx: (wasmi as *mut Wasmi).cast(),
        kind: RuntimeKind::Wasmi.code() as u8,
        version: c"2-via-c".as_ptr(),
        validate: Some(wasmi_validate),
        invoke: Some(wasmi_invoke),
    }
}

// -------------------------------------------------------- provisioning ----

fn provisioning() -> Vec<u8> {
    let installation = &test_fixtures().installation;
    let claim_key = wasmbed_pki::pkcs8_to_p256_scalar(installation.claim_key().secret_pkcs8_der())
        .expect("a P-256 key");
    Provisioning {
        gateway_ca: installation.gateway_ca(),
        server_name: "localhost",
        claim_certificate: installation.claim_cert(),
        claim_private_key: claim_key,
        entropy_seed: [7; 32],
        device_name: "ffi-0",
        gateway_address: Some("10.0.2.2:4423"),
    }
    .to_vec()
}

// -------------------------------------------------------------- device ----

struct Device {
    agent: *mut WbAgent,
    // Kept alive for the agent's callbacks.
    _wasmi: Box<Wasmi>,
    lines: Vec<String>,
}

impl Device {
    fn boot(nor: &mut Nor) -> Device {
        let mut wasmi = Box::new(Wasmi(WasmiRuntime::new(
            WasmiConfig::default(),
            clock_us as fn() -> u64,
        )));
        let record = provisioning();
        let mut config = wb_agent_config_default();
        config.board = wasmbed_protocol_ffi::text_out("test-board");
        let mut agent = ptr::null_mut();
        let status = unsafe {
            wb_agent_new(
                &config,
                record.as_ptr(),
                record.len(),
                &medium(nor),
                &runtime(&mut wasmi),
                &platform(),
                &mut agent,
            )
        };
        assert_eq!(status, WbStatus::Ok);
        Device {
            agent,
            _wasmi: wasmi,
            lines: Vec::new(),
        }
    }

    fn boot_line(&self) -> String {
        let mut line = [0 as c_char; 200];
        unsafe { wb_agent_boot_line(self.agent, line.as_mut_ptr(), line.len()) };
        unsafe { CStr::from_ptr(line.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    }

    fn credentials(&self) -> WbCredentials {
        let mut out = std::mem::MaybeUninit::uninit();
        assert_eq!(
            unsafe { wb_agent_credentials(self.agent, out.as_mut_ptr()) },
            WbStatus::Ok
        );
        unsafe { out.assume_init() }
    }

    fn drain(&mut self) {
        let mut line = [0 as c_char; 256];
        while unsafe { wb_agent_poll(self.agent, now_ms(), line.as_mut_ptr(), line.len()) } {
            let text = unsafe { CStr::from_ptr(line.as_ptr()) };
            self.lines.push(text.to_string_lossy().into_owned());
        }
    }

    fn outgoing(&self) -> Vec<u8> {
        let (mut data, mut len) = (ptr::null(), 0usize);
        unsafe { wb_agent_transmit(self.agent, &mut data, &mut len) };
        if len == 0 {
            return Vec::new();
        }
        unsafe { std::slice::from_raw_parts(data, len) }.to_vec()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        unsafe { wb_agent_free(self.agent) };
    }
}

const DEVICE_ID: DeviceId = DeviceId([0x3c; 16]);

/// What the gateway saw on one connection.
#[derive(Debug, Default)]
struct Seen {
    enrolled: bool,
    established: bool,
    installed: bool,
    /// Outcome and log lines of every execution result.
    results: Vec<(Outcome, Vec<String>)>,
    failures: Vec<DeployFailure>,
}

/// One connection: the device against a gateway session, bytes pumped both
/// ways until nothing moves. `deploy` is sent once the session is up.
fn connect(device: &mut Device, mut deploy: Option<(&[u8], Limits)>) -> Seen {
    let credential = if device.credentials().enrolled {
        PeerCredential::Device
    } else {
        PeerCredential::Claim
    };
    let mut gateway: GatewaySession<Vec<u8>> = GatewaySession::new(
        credential,
        GatewayConfig::default(),
        [9; NONCE_LEN],
        Millis(now_ms()),
    );
    assert_eq!(
        unsafe { wb_agent_connect(device.agent, now_ms()) },
        WbStatus::Ok
    );
    assert_eq!(
        unsafe { wb_agent_connect(device.agent, now_ms()) },
        WbStatus::InvalidState,
        "a second connect while a session is open is refused"
    );
    let mut seen = Seen::default();
    for _ in 0..500 {
        device.drain();
        let up = device.outgoing();
        let taken = gateway.handle_input(&up, Millis(now_ms()));
        unsafe { wb_agent_advance(device.agent, taken) };
        loop {
            let (mut enroll, mut accept) = (false, false);
            match gateway.poll_event() {
                None => break,
                Some(event) => match event {
                    GatewayEvent::EnrollRequested { .. } => enroll = true,
                    GatewayEvent::SessionRequested(_) => accept = true,
                    GatewayEvent::DeployStatus(status) => match status.state {
                        DeployState::Installed => seen.installed = true,
                        DeployState::Failed { reason } => seen.failures.push(reason),
                        _ => {}
                    },
                    GatewayEvent::ExecutionResult(result) => seen.results.push((
                        result.outcome.clone(),
                        result.logs.iter().map(|l| l.as_str().to_owned()).collect(),
                    )),
                    _ => {}
                },
            }
            if enroll {
                seen.enrolled = true;
                gateway
                    .accept_enrollment(DEVICE_ID, test_fixtures().device.cert.as_ref())
                    .expect("deciding");
            }
            if accept {
                seen.established = true;
                gateway.accept_session(DEVICE_ID).expect("deciding");
            }
        }
        if gateway.is_established() {
            if let Some((module, limits)) = deploy.take() {
                common::send_deployment(&mut gateway, DeploymentId(5), module, 64, limits);
            }
        }
        let down = gateway.poll_transmit().to_vec();
        let mut fed = 0;
        while fed < down.len() {
            let mut n = 0;
            let status = unsafe {
                wb_agent_input(
                    device.agent,
                    down[fed..].as_ptr(),
                    down.len() - fed,
                    now_ms(),
                    &mut n,
                )
            };
            assert_eq!(status, WbStatus::Ok);
            device.drain();
            if n == 0 {
                break;
            }
            fed += n;
        }
        gateway.advance_transmit(fed);
        device.drain();
        if up.is_empty() && down.is_empty() && device.outgoing().is_empty() {
            break;
        }
    }
    seen
}

/// Counts primes below its argument, logs, and reports the last one found.
fn primes() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "wasmbed" "log" (func $log (param i32 i32)))
          (import "wasmbed" "report_i32" (func $report (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 0) "counting primes")
          (func (export "main") (param $n i32) (result i32)
            (local $i i32) (local $d i32) (local $count i32) (local $last i32) (local $prime i32)
            (call $log (i32.const 0) (i32.const 15))
            (local.set $i (i32.const 2))
            (block $done (loop $next
              (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
              (local.set $prime (i32.const 1))
              (local.set $d (i32.const 2))
              (block $checked (loop $try
                (br_if $checked (i32.gt_u (i32.mul (local.get $d) (local.get $d)) (local.get $i)))
                (if (i32.eqz (i32.rem_u (local.get $i) (local.get $d)))
                  (then (local.set $prime (i32.const 0)) (br $checked)))
                (local.set $d (i32.add (local.get $d) (i32.const 1)))
                (br $try)))
              (if (local.get $prime) (then
                (local.set $count (i32.add (local.get $count) (i32.const 1)))
                (local.set $last (local.get $i))))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $next)))
            (call $report (local.get $last))
            (local.get $count)))"#,
    )
    .expect("valid WAT")
}

fn main_limits(fuel: u64, arg: i32) -> Limits {
    Limits {
        fuel,
        memory_pages: 1,
        entry: "main".try_into().expect("short"),
        args: heapless::Vec::from_slice(&[Value::I32(arg)]).expect("one"),
    }
}

fn blank_flash() -> Nor {
    let config = wb_agent_config_default();
    Nor {
        bytes: vec![0xFF; unsafe { wb_agent_medium_size(&config) } as usize],
        broken: false,
    }
}

// --------------------------------------------------------------- tests ----

#[test]
fn enrolls_runs_a_module_through_the_vtable_and_keeps_both_across_a_reboot() {
    let mut nor = blank_flash();
    let mut device = Device::boot(&mut nor);
    assert_eq!(
        device.boot_line(),
        "boot: device ffi-0, identity none (will enroll), 0 app(s) installed, heap 4242 B free"
    );
    assert!(!device.credentials().enrolled);

    let enrollment = connect(&mut device, None);
    assert!(enrollment.enrolled);
    assert!(
        unsafe { wb_agent_is_closed(device.agent) },
        "enrollment ends the session"
    );
    assert!(
        device
            .lines
            .iter()
            .any(|l| l.starts_with("agent: enrolled as device 3c3c3c3c-")),
        "{:?}",
        device.lines
    );
    let reconnect_at = unsafe { wb_agent_disconnected(device.agent, now_ms()) };
    assert!(reconnect_at >= now_ms());

    let credentials = device.credentials();
    assert!(credentials.enrolled);
    let certificate =
        unsafe { std::slice::from_raw_parts(credentials.certificate, credentials.certificate_len) };
    assert_eq!(certificate, test_fixtures().device.cert.as_ref());
    let key =
        unsafe { std::slice::from_raw_parts(credentials.private_key, credentials.private_key_len) };
    p256::SecretKey::from_sec1_der(key).expect("the device key as SEC1 DER");

    let session = connect(
        &mut device,
        Some((&primes(), main_limits(10_000_000, 10_000))),
    );
    assert!(
        session.established && session.installed,
        "{session:?} {:?}",
        device.lines
    );
    assert_eq!(session.results.len(), 1, "{session:?}");
    let (outcome, logs) = &session.results[0];
    assert_eq!(
        *outcome,
        Outcome::Returned(
            heapless::Vec::from_slice(&[Value::I32(1229), Value::I32(9973)]).expect("two")
        )
    );
    assert_eq!(logs, &["counting primes"]);
    assert!(
        device.lines.iter().any(|l| l
            .starts_with("agent: executed deployment 5: Returned([I32(1229), I32(9973)]), fuel ")),
        "{:?}",
        device.lines
    );
    unsafe { wb_agent_close(device.agent, GoodbyeReason::Shutdown.code()) };
    drop(device);

    let device = Device::boot(&mut nor);
    let line = device.boot_line();
    assert!(
        line.starts_with("boot: device ffi-0, identity device 3c3c3c3c-"),
        "{line}"
    );
    assert!(line.contains(", 1 app(s) installed"), "{line}");
    assert!(device.credentials().enrolled);
}

#[test]
fn fuel_and_refusals_come_back_from_the_runtime_as_the_gateway_knows_them() {
    let mut nor = blank_flash();
    let mut device = Device::boot(&mut nor);
    connect(&mut device, None);
    unsafe { wb_agent_disconnected(device.agent, now_ms()) };
    let starved = connect(&mut device, Some((&primes(), main_limits(1_000, 10_000))));
    assert_eq!(starved.results.len(), 1);
    assert_eq!(starved.results[0].0, Outcome::Trapped(TrapCode::OutOfFuel));
    unsafe { wb_agent_close(device.agent, GoodbyeReason::Shutdown.code()) };
    drop(device);

    let mut nor = blank_flash();
    let mut device = Device::boot(&mut nor);
    connect(&mut device, None);
    unsafe { wb_agent_disconnected(device.agent, now_ms()) };
    let mut limits = main_limits(1_000, 1);
    limits.entry = "absent".try_into().expect("short");
    let refused = connect(&mut device, Some((&primes(), limits)));
    assert_eq!(refused.failures, [DeployFailure::BadEntryPoint]);
    assert!(refused.results.is_empty());
}

#[test]
fn the_gateway_certificate_is_checked_as_strictly_as_on_bare_metal() {
    let mut nor = blank_flash();
    let device = Device::boot(&mut nor);
    let fixtures = test_fixtures();
    let check = |chain: &[&[u8]]| {
        let pointers: Vec<*const u8> = chain.iter().map(|c| c.as_ptr()).collect();
        let lengths: Vec<usize> = chain.iter().map(|c| c.len()).collect();
        let mut line = [0 as c_char; 128];
        let status = unsafe {
            wb_agent_check_gateway_chain(
                device.agent,
                pointers.as_ptr(),
                lengths.as_ptr(),
                chain.len(),
                line.as_mut_ptr(),
                line.len(),
            )
        };
        let line = unsafe { CStr::from_ptr(line.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        (status, line)
    };
    assert_eq!(
        check(&[fixtures.installation.gateway_cert()]),
        (WbStatus::Ok, String::new())
    );
    let leaf_signed = &fixtures.leaf_signed_gateway.chain;
    assert_eq!(
        check(&[&leaf_signed[0]]),
        (
            WbStatus::Malformed,
            "tls: gateway certificate refused: not issued by the gateway CA".to_owned()
        )
    );
    assert_eq!(
        check(&[&leaf_signed[0], &leaf_signed[1]]),
        (
            WbStatus::Malformed,
            "tls: gateway sent 2 certificates, expected 1".to_owned()
        ),
        "no intermediates"
    );
    assert_eq!(
        check(&[&fixtures.device_ca_signed_gateway.chain[0]]).0,
        WbStatus::Malformed
    );
    assert_eq!(
        check(&[fixtures.installation.gateway_ca()]).1,
        "tls: gateway certificate refused: wrong certificate role (CA versus server)",
        "a CA is not a server"
    );
    assert_eq!(check(&[b"\x30\x03\x02\x01\x01"]).0, WbStatus::Malformed);
    assert_eq!(check(&[]).1, "tls: gateway sent 0 certificates, expected 1");
    assert_eq!(
        unsafe {
            wb_agent_check_gateway_chain(
                device.agent,
                ptr::null(),
                ptr::null(),
                1,
                ptr::null_mut(),
                0,
            )
        },
        WbStatus::NullPointer
    );
    let mut provisioned = std::mem::MaybeUninit::uninit();
    assert_eq!(
        unsafe { wb_agent_provisioned(device.agent, provisioned.as_mut_ptr()) },
        WbStatus::Ok
    );
    let provisioned = unsafe { provisioned.assume_init() };
    assert_eq!(
        unsafe { CStr::from_ptr(provisioned.server_name) },
        c"localhost"
    );
    assert_eq!(
        unsafe { CStr::from_ptr(provisioned.gateway_address) },
        c"10.0.2.2:4423"
    );
    let ca =
        unsafe { std::slice::from_raw_parts(provisioned.gateway_ca, provisioned.gateway_ca_len) };
    assert_eq!(ca, fixtures.installation.gateway_ca().as_ref());
}

#[test]
fn bad_arguments_get_typed_errors_and_no_agent() {
    let mut nor = blank_flash();
    let mut wasmi = Box::new(Wasmi(WasmiRuntime::new(
        WasmiConfig::default(),
        clock_us as fn() -> u64,
    )));
    let config = wb_agent_config_default();
    let record = provisioning();
    let new = |config: &WbAgentConfig, record: &[u8], medium: &WbMedium, runtime: &WbRuntime| {
        let mut agent = ptr::null_mut();
        let status = unsafe {
            wb_agent_new(
                config,
                record.as_ptr(),
                record.len(),
                medium,
                runtime,
                &platform(),
                &mut agent,
            )
        };
        assert!(agent.is_null() || status == WbStatus::Ok);
        unsafe { wb_agent_free(agent) };
        status
    };
    let good_medium = medium(&mut nor);
    let good_runtime = runtime(&mut wasmi);
    assert_eq!(
        new(
            &config,
            &record[..record.len() - 3],
            &good_medium,
            &good_runtime
        ),
        WbStatus::Malformed
    );
    assert_eq!(
        new(&config, b"\xa0", &good_medium, &good_runtime),
        WbStatus::Malformed
    );
    let small = WbMedium {
        size: good_medium.size - WB_MEDIUM_SECTOR,
        ..good_medium
    };
    assert_eq!(
        new(&config, &record, &small, &good_runtime),
        WbStatus::InvalidArgument
    );
    let no_erase = WbMedium {
        erase: None,
        ..good_medium
    };
    assert_eq!(
        new(&config, &record, &no_erase, &good_runtime),
        WbStatus::InvalidArgument
    );
    let no_invoke = WbRuntime {
        invoke: None,
        ..good_runtime
    };
    assert_eq!(
        new(&config, &record, &good_medium, &no_invoke),
        WbStatus::InvalidArgument
    );
    let mut no_slots = config;
    no_slots.slots = 0;
    assert_eq!(
        new(&no_slots, &record, &good_medium, &good_runtime),
        WbStatus::InvalidArgument
    );
    let mut unterminated = config;
    unterminated.board = [b'x' as c_char; wasmbed_protocol_ffi::WB_NAME_SIZE];
    assert_eq!(
        new(&unterminated, &record, &good_medium, &good_runtime),
        WbStatus::InvalidArgument
    );
    nor.broken = true;
    assert_eq!(
        new(&config, &record, &good_medium, &good_runtime),
        WbStatus::BadStorage
    );
    nor.broken = false;
    assert_eq!(
        new(&config, &record, &good_medium, &good_runtime),
        WbStatus::Ok
    );

    let mut agent = ptr::null_mut();
    let status = unsafe {
        wb_agent_new(
            ptr::null(),
            record.as_ptr(),
            record.len(),
            &good_medium,
            &good_runtime,
            &platform(),
            &mut agent,
        )
    };
    assert_eq!(status, WbStatus::NullPointer);
    assert_eq!(unsafe { wb_agent_medium_size(ptr::null()) }, 0);
    assert_eq!(
        unsafe { wb_agent_connect(ptr::null_mut(), 0) },
        WbStatus::NullPointer
    );
    assert!(unsafe { wb_agent_is_closed(ptr::null()) });
}

#[test]
fn only_the_host_api_may_be_imported() {
    let allowed = |module: &CStr, name: &CStr, params: &[u8], results: &[u8]| unsafe {
        wb_host_import_allowed(
            module.as_ptr(),
            name.as_ptr(),
            params.as_ptr(),
            params.len(),
            results.as_ptr(),
            results.len(),
        )
    };
    // wb_value_kind: 0 i32, 1 i64, 2 f32, 3 f64.
    assert!(allowed(c"wasmbed", c"log", &[0, 0], &[]));
    assert!(allowed(c"wasmbed", c"clock_ms", &[], &[1]));
    assert!(allowed(c"wasmbed", c"report_f64", &[3], &[]));
    assert!(!allowed(c"wasmbed", c"log", &[0], &[]), "wrong signature");
    assert!(
        !allowed(c"wasmbed", c"clock_ms", &[], &[0]),
        "wrong result type"
    );
    assert!(!allowed(c"env", c"log", &[0, 0], &[]), "another module");
    assert!(!allowed(c"wasmbed", c"fd_write", &[0, 0, 0, 0], &[0]));
    assert!(
        !allowed(c"wasmbed", c"log", &[0, 9], &[]),
        "an unknown kind"
    );
    assert!(!unsafe {
        wb_host_import_allowed(ptr::null(), c"log".as_ptr(), ptr::null(), 0, ptr::null(), 0)
    });
}

#[test]
fn random_bytes_differ_between_calls_and_boots() {
    let mut nor = blank_flash();
    let draw = |device: &Device| {
        let mut bytes = [0u8; 32];
        assert_eq!(
            unsafe { wb_agent_random(device.agent, bytes.as_mut_ptr(), bytes.len()) },
            WbStatus::Ok
        );
        bytes
    };
    let first_boot = Device::boot(&mut nor);
    let (a, b) = (draw(&first_boot), draw(&first_boot));
    drop(first_boot);
    let second_boot = Device::boot(&mut nor);
    let c = draw(&second_boot);
    assert!(a != b && a != c && b != c);
    assert_eq!(
        unsafe { wb_agent_random(second_boot.agent, ptr::null_mut(), 4) },
        WbStatus::NullPointer
    );
}
