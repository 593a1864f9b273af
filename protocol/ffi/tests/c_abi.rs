//! The C ABI from C: builds `tests/c/roundtrip.c` with the host's `gcc`
//! against the static library and the generated header, runs it with
//! gateway frames encoded here, and decodes here the frames it encoded.
//!
//! Skipped, with a message, when `gcc` is not installed.

mod support {
    pub(crate) mod c_toolchain;
}

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::c_toolchain::{NATIVE_LIBS, gcc, static_lib};

use wasmbed_protocol::frame::{self, MAX_FRAME_LEN};
use wasmbed_protocol::*;
use wasmbed_protocol_ffi::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd hex: {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digits"))
        .collect()
}

fn text<const N: usize>(s: &str) -> heapless::String<N> {
    heapless::String::try_from(s).expect("text within its bound")
}

fn downlink_frame(envelope: &Envelope<Downlink<'_>>) -> Vec<u8> {
    let mut out = vec![0; frame::HEADER_LEN + MAX_FRAME_LEN];
    let n = frame::encode_frame(envelope, &mut out, MAX_FRAME_LEN).expect("encodable");
    out.truncate(n);
    out
}

const CHUNK: &[u8] = b"\0asm\x01\0\0\0";
const CERTIFICATE: &[u8] = &[0x30, 0x82, 0x01, 0x0a, 0xde, 0xad, 0xbe, 0xef];

/// The gateway's frames the C program reads, by argument name.
fn gateway_frames() -> Vec<(&'static str, Vec<u8>)> {
    let deploy_start = DeployStart {
        deployment: DeploymentId(7),
        application: ApplicationId(3),
        module_size: 16_384,
        sha256: [0x44; 32],
        chunk_size: 1024,
        limits: Limits {
            fuel: 1_000_000,
            memory_pages: 1,
            entry: text("run"),
            args: heapless::Vec::from_slice(&[Value::I32(5), Value::I64(-1)]).expect("2 args"),
        },
    };
    vec![
        (
            "session_accept",
            downlink_frame(&Envelope::reply(
                1,
                1,
                Downlink::SessionAccept(SessionAccept {
                    device_id: DeviceId([0xab; 16]),
                    server_time: Millis(1_764_253_000_000),
                    heartbeat_interval_ms: 10_000,
                }),
            )),
        ),
        (
            "heartbeat_ack",
            downlink_frame(&Envelope::reply(
                2,
                2,
                Downlink::HeartbeatAck(HeartbeatAck {
                    server_time: Millis(1_764_253_010_000),
                    next_interval_ms: 5_000,
                }),
            )),
        ),
        (
            "deploy_start",
            downlink_frame(&Envelope::reply(9, 4, Downlink::DeployStart(deploy_start))),
        ),
        (
            "deploy_chunk",
            downlink_frame(&Envelope::new(
                10,
                Downlink::DeployChunk(DeployChunk {
                    deployment: DeploymentId(7),
                    offset: 0,
                    data: CHUNK,
                }),
            )),
        ),
        (
            "enroll_challenge",
            downlink_frame(&Envelope::new(
                1,
                Downlink::EnrollChallenge(EnrollChallenge { nonce: [0x33; 32] }),
            )),
        ),
        (
            "enroll_accepted",
            downlink_frame(&Envelope::reply(
                2,
                1,
                Downlink::EnrollResponse(EnrollResponse::Accepted {
                    device_id: DeviceId([0xab; 16]),
                    certificate: CERTIFICATE,
                }),
            )),
        ),
        (
            "goodbye_enrolled",
            downlink_frame(&Envelope::new(
                3,
                Downlink::Goodbye(Goodbye {
                    reason: GoodbyeReason::Enrolled,
                }),
            )),
        ),
    ]
}

// The values the C program fills in, as the protocol's messages.

fn capabilities() -> Capabilities {
    Capabilities {
        runtime: RuntimeKind::Wamr,
        runtime_version: text("2.1.0"),
        max_module_size: 65_536,
        app_memory: 98_304,
        app_slots: 4,
    }
}

fn app(deployment: u64, application: u64, state: AppState) -> AppStatus {
    AppStatus {
        deployment: DeploymentId(deployment),
        application: ApplicationId(application),
        state,
    }
}

fn heartbeat() -> Uplink<'static> {
    Uplink::Heartbeat(Heartbeat {
        uptime: Millis(123_456_789_012),
        free_memory: 40_960,
        apps: AppList::from_slice(&[app(7, 3, AppState::Running), app(8, 4, AppState::Failed)])
            .expect("2 apps"),
    })
}

fn session_start() -> Uplink<'static> {
    Uplink::SessionStart(SessionStart {
        agent_version: text("0.1.0"),
        capabilities: capabilities(),
        apps: AppList::from_slice(&[app(7, 3, AppState::Running)]).expect("1 app"),
    })
}

fn enroll_request() -> Uplink<'static> {
    let mut public_key = [0x11; PUBLIC_KEY_LEN];
    public_key[0] = 0x04;
    Uplink::EnrollRequest(EnrollRequest {
        public_key,
        proof: [0x22; SIGNATURE_LEN],
        device: DeviceInfo {
            board: text("mps2-an385"),
            firmware_version: text("0.1.0"),
        },
        capabilities: capabilities(),
    })
}

fn goodbye(reason: GoodbyeReason) -> Uplink<'static> {
    Uplink::Goodbye(Goodbye { reason })
}

/// The frames the C program prints, as the envelopes they must hold.
fn expected_device_frames() -> BTreeMap<&'static str, Vec<Envelope<Uplink<'static>>>> {
    let returned = Uplink::ExecutionResult(ExecutionResult {
        deployment: DeploymentId(7),
        invocation: 1,
        outcome: Outcome::Returned(
            heapless::Vec::from_slice(&[Value::I32(42), Value::F64(1.5)]).expect("2 values"),
        ),
        fuel_used: 1_234,
        duration_us: 87,
        logs: heapless::Vec::from_slice(&[LogLine::truncated("hello from wasm")]).expect("1 log"),
        logs_truncated: false,
    });
    let trapped = Uplink::ExecutionResult(ExecutionResult {
        deployment: DeploymentId(7),
        invocation: 2,
        outcome: Outcome::Trapped(TrapCode::OutOfFuel),
        fuel_used: 1_000_000,
        duration_us: 52_000,
        logs: heapless::Vec::new(),
        logs_truncated: true,
    });
    let e = Envelope::new;
    BTreeMap::from([
        ("heartbeat", vec![e(42, heartbeat())]),
        ("enroll_request", vec![e(1, enroll_request())]),
        ("session_start", vec![e(2, session_start())]),
        (
            "deploy_status",
            vec![e(
                3,
                Uplink::DeployStatus(DeployStatus {
                    deployment: DeploymentId(7),
                    state: DeployState::Failed {
                        reason: DeployFailure::HashMismatch,
                    },
                }),
            )],
        ),
        ("execution_result", vec![e(4, trapped)]),
        (
            "error",
            vec![e(
                5,
                Uplink::Error(ErrorMessage {
                    code: ErrorCode::UnknownDeployment,
                    detail: Some(text("deployment 9")),
                }),
            )],
        ),
        ("goodbye", vec![e(6, goodbye(GoodbyeReason::Restart))]),
        ("session_hello", vec![e(1, session_start())]),
        ("session_heartbeat", vec![e(2, heartbeat())]),
        (
            "session_reports",
            vec![
                e(
                    3,
                    Uplink::DeployStatus(DeployStatus {
                        deployment: DeploymentId(7),
                        state: DeployState::Progress { bytes_held: 8 },
                    }),
                ),
                e(4, returned),
            ],
        ),
        (
            "session_violation",
            vec![
                e(
                    5,
                    Uplink::Error(ErrorMessage {
                        code: ErrorCode::Malformed,
                        detail: None,
                    }),
                ),
                e(6, goodbye(GoodbyeReason::ProtocolError)),
            ],
        ),
        ("session_enroll_request", vec![e(1, enroll_request())]),
        (
            "session_close",
            vec![e(1, goodbye(GoodbyeReason::Shutdown))],
        ),
    ])
}

/// The messages of the frames in `stream`, which must hold whole frames only.
fn decode_frames<'a>(name: &str, mut stream: &'a [u8]) -> Vec<Envelope<Uplink<'a>>> {
    let mut out = Vec::new();
    while !stream.is_empty() {
        let body = frame::find_frame(stream, MAX_FRAME_LEN)
            .unwrap_or_else(|e| panic!("frame {name}: {e}"))
            .unwrap_or_else(|| panic!("frame {name}: incomplete"));
        let envelope = codec::decode_uplink(&stream[body.clone()])
            .unwrap_or_else(|e| panic!("frame {name}: {e}"));
        out.push(envelope);
        stream = &stream[body.end..];
    }
    out
}

/// Size and alignment of each C type as Rust lays it out.
fn rust_layouts() -> BTreeMap<&'static str, (usize, usize)> {
    macro_rules! layouts {
        ($($c:literal => $t:ty),+ $(,)?) => {
            BTreeMap::from([$(($c, (size_of::<$t>(), align_of::<$t>()))),+])
        };
    }
    layouts! {
        "wb_status" => WbStatus,
        "wb_value_bits" => WbValueBits,
        "wb_value" => WbValue,
        "wb_app_status" => WbAppStatus,
        "wb_heartbeat" => WbHeartbeat,
        "wb_device_info" => WbDeviceInfo,
        "wb_capabilities" => WbCapabilities,
        "wb_enroll_request" => WbEnrollRequest,
        "wb_session_start" => WbSessionStart,
        "wb_deploy_status" => WbDeployStatus,
        "wb_execution_result" => WbExecutionResult,
        "wb_error_message" => WbErrorMessage,
        "wb_enroll_challenge" => WbEnrollChallenge,
        "wb_enrolled" => WbEnrolled,
        "wb_session_accept" => WbSessionAccept,
        "wb_heartbeat_ack" => WbHeartbeatAck,
        "wb_limits" => WbLimits,
        "wb_deploy_start" => WbDeployStart,
        "wb_deploy_chunk" => WbDeployChunk,
        "wb_close_reason" => WbCloseReason,
        "wb_downlink_data" => WbDownlinkData,
        "wb_downlink" => WbDownlink,
        "wb_device_config" => WbDeviceConfig,
        "wb_device_event_data" => WbDeviceEventData,
        "wb_device_event" => WbDeviceEvent,
    }
}

fn rust_offsets() -> BTreeMap<&'static str, usize> {
    BTreeMap::from([
        ("wb_heartbeat.apps", offset_of!(WbHeartbeat, apps)),
        (
            "wb_execution_result.values",
            offset_of!(WbExecutionResult, values),
        ),
        (
            "wb_execution_result.logs",
            offset_of!(WbExecutionResult, logs),
        ),
        (
            "wb_execution_result.logs_truncated",
            offset_of!(WbExecutionResult, logs_truncated),
        ),
        ("wb_deploy_start.limits", offset_of!(WbDeployStart, limits)),
        ("wb_limits.args", offset_of!(WbLimits, args)),
        ("wb_downlink.data", offset_of!(WbDownlink, data)),
        ("wb_device_event.data", offset_of!(WbDeviceEvent, data)),
        (
            "wb_close_reason.violation",
            offset_of!(WbCloseReason, violation),
        ),
    ])
}

/// A directory of this test's own, for the compiled program.
fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("c_abi")
        .join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).expect("creating the work directory");
    dir
}

#[test]
fn c_program_round_trips_through_the_static_library() {
    let Some(gcc) = gcc() else {
        eprintln!("c_abi: SKIPPED: `gcc` is not on PATH, so the C test program cannot be built");
        return;
    };
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = static_lib("wasmbed_protocol_ffi");
    let dir = work_dir();
    let program = dir.join("roundtrip");

    let compile = Command::new(&gcc)
        .args([
            "-std=c11",
            "-Wall",
            "-Wextra",
            "-Wpedantic",
            "-Werror",
            "-g",
        ])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("tests/c/roundtrip.c"))
        .arg(&lib)
        .args(NATIVE_LIBS)
        .arg("-o")
        .arg(&program)
        .output()
        .expect("running gcc");
    assert!(
        compile.status.success(),
        "gcc failed ({}) linking {}:\n{}",
        compile.status,
        lib.display(),
        String::from_utf8_lossy(&compile.stderr)
    );

    let run = Command::new(&program)
        .args(
            gateway_frames()
                .iter()
                .map(|(name, frame)| format!("{name}={}", hex(frame))),
        )
        .output()
        .expect("running the C program");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "the C program failed ({}):\n{}\n{stdout}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);

    let mut layouts = BTreeMap::new();
    let mut offsets = BTreeMap::new();
    let mut frames = BTreeMap::new();
    let mut passed = false;
    for line in stdout.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["layout", name, size, align] => {
                let size = size.parse::<usize>().expect("a size");
                let align = align.parse::<usize>().expect("an alignment");
                layouts.insert(*name, (size, align));
            }
            ["offset", name, offset] => {
                offsets.insert(*name, offset.parse::<usize>().expect("an offset"));
            }
            ["frame", name, bytes] => {
                // Decoded messages borrow their bytes; the test keeps them.
                let bytes: &'static [u8] = Box::leak(unhex(bytes).into_boxed_slice());
                let previous = frames.insert(*name, decode_frames(name, bytes));
                assert!(previous.is_none(), "frame {name} printed twice");
            }
            ["c_abi:", "all", _, "checks", "passed"] => passed = true,
            _ => panic!("unexpected output line: {line}"),
        }
    }
    assert!(passed, "the C program did not finish:\n{stdout}");
    assert_eq!(
        layouts,
        rust_layouts(),
        "C and Rust lay the types out differently"
    );
    assert_eq!(
        offsets,
        rust_offsets(),
        "C and Rust place fields differently"
    );
    let expected = expected_device_frames();
    assert_eq!(
        frames.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (name, envelopes) in &expected {
        assert_eq!(&frames[name], envelopes, "frame {name}");
    }
}

/// `cpp_compat` in cbindgen.toml: the header is valid C++ too.
#[test]
fn header_compiles_as_cpp() {
    let Some(gxx) = gcc()
        .map(|gcc| gcc.with_file_name("g++"))
        .filter(|p| p.is_file())
    else {
        eprintln!("c_abi: SKIPPED: `g++` is not installed next to gcc");
        return;
    };
    let header = Path::new(env!("CARGO_MANIFEST_DIR")).join("include/wasmbed_protocol.h");
    let out = Command::new(gxx)
        .args([
            "-std=c++17",
            "-fsyntax-only",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-x",
            "c++",
        ])
        .arg(&header)
        .output()
        .expect("running g++");
    assert!(
        out.status.success(),
        "g++ rejects the header:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
