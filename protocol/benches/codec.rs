//! Encode and decode time of two typical frames, with `ciborium` (serde) as
//! the baseline:
//!
//! - `heartbeat`: `Uplink::Heartbeat` in an `Envelope`, the sample message a
//!   device sends every few seconds;
//! - `chunk_1k`: `Downlink::DeployChunk` carrying 1 KiB of module bytes,
//!   borrowed on both encode and decode.
//!
//! The baseline serializes serde mirror structs carrying the same fields and
//! values (string-keyed maps, the usual serde shape). Buffers are reused:
//! minicbor encodes into a fixed stack buffer, ciborium into a cleared `Vec`
//! and decodes with a reused scratch buffer (its fastest API).
//!
//! Two measurements run:
//!
//! 1. criterion, for the detailed report (`target/criterion`), in the groups
//!    `heartbeat/{minicbor,ciborium}/{encode,decode}` and
//!    `chunk_1k/{minicbor,ciborium}/{encode,decode}`;
//! 2. then a summary table from our own measurement, which interleaves
//!    minicbor and ciborium batches in rounds and takes the median of the
//!    per-round ns/iter, and the median of the per-round ratio, so that a
//!    noisy shared machine slows both sides alike. The targets are checked
//!    against this table.
//!
//! Under `cargo test --benches` (criterion's test mode) every benchmark runs
//! once and the summary is skipped: no figures are printed.
#![allow(
    clippy::print_stdout,
    reason = "the summary table is this benchmark's output"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use wasmbed_protocol::{
    AppStatus, DeployChunk, DeploymentId, Downlink, Envelope, Uplink, codec, samples,
};

/// Envelope id of the benchmarked messages.
const MESSAGE_ID: u32 = 1_000;
/// Wire number of `Uplink::Heartbeat`.
const HEARTBEAT_KIND: u8 = 2;
/// Wire number of `Downlink::DeployChunk`.
const DEPLOY_CHUNK_KIND: u8 = 5;
/// Payload of the chunk message.
const CHUNK_LEN: usize = 1024;
/// Where the chunk sits in its module.
const CHUNK_OFFSET: u32 = 4 * 1024;
/// Output buffer size; a frame body is at most `frame::MAX_FRAME_LEN`.
const BUF_LEN: usize = wasmbed_protocol::frame::MAX_FRAME_LEN;
/// ciborium's scratch buffer, the size its `from_reader` uses.
const SCRATCH_LEN: usize = 4096;

// ---------------------------------------------------------------------------
// serde mirrors of the benchmarked messages (the ciborium baseline)

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct HeartbeatMirror {
    version: u16,
    id: u32,
    kind: u8,
    uptime: u64,
    free_memory: u32,
    apps: Vec<AppMirror>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AppMirror {
    deployment: u64,
    application: u64,
    state: u16,
}

/// `B` is `&[u8]` to encode (borrowed, like `DeployChunk`) and `Vec<u8>` to
/// decode: ciborium decodes from a reader, so it cannot borrow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(
    serialize = "Bytes<B>: Serialize",
    deserialize = "Bytes<B>: Deserialize<'de>"
))]
struct ChunkMirror<B> {
    version: u16,
    id: u32,
    kind: u8,
    deployment: u64,
    offset: u32,
    data: Bytes<B>,
}

/// A CBOR byte string. serde would write a bare `&[u8]` or `Vec<u8>` as an
/// array of integers.
#[derive(Debug, Clone, PartialEq)]
struct Bytes<B>(B);

impl<B: AsRef<[u8]>> Serialize for Bytes<B> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0.as_ref())
    }
}

impl<'de> Deserialize<'de> for Bytes<Vec<u8>> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = Vec<u8>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }

            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }

            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }

        deserializer.deserialize_byte_buf(Visitor).map(Bytes)
    }
}

fn heartbeat_mirror(envelope: &Envelope<Uplink<'_>>) -> Option<HeartbeatMirror> {
    let Uplink::Heartbeat(heartbeat) = &envelope.body else {
        return None;
    };
    let app = |a: &AppStatus| AppMirror {
        deployment: a.deployment.0,
        application: a.application.0,
        state: a.state.code(),
    };
    Some(HeartbeatMirror {
        version: envelope.version,
        id: envelope.id,
        kind: HEARTBEAT_KIND,
        uptime: heartbeat.uptime.0,
        free_memory: heartbeat.free_memory,
        apps: heartbeat.apps.iter().map(app).collect(),
    })
}

fn chunk_mirror<'a>(envelope: &Envelope<Downlink<'a>>) -> Option<ChunkMirror<&'a [u8]>> {
    let Downlink::DeployChunk(chunk) = envelope.body else {
        return None;
    };
    Some(ChunkMirror {
        version: envelope.version,
        id: envelope.id,
        kind: DEPLOY_CHUNK_KIND,
        deployment: chunk.deployment.0,
        offset: chunk.offset,
        data: Bytes(chunk.data),
    })
}

fn owned(m: &ChunkMirror<&[u8]>) -> ChunkMirror<Vec<u8>> {
    ChunkMirror {
        version: m.version,
        id: m.id,
        kind: m.kind,
        deployment: m.deployment,
        offset: m.offset,
        data: Bytes(m.data.0.to_vec()),
    }
}

// ---------------------------------------------------------------------------
// The eight operations, shared by criterion and the summary

fn minicbor_encode<M: minicbor::Encode<()>>(envelope: &Envelope<M>, buf: &mut [u8]) {
    let len = codec::encode(black_box(envelope), black_box(buf)).expect("buffer is large enough");
    black_box(len);
}

fn ciborium_encode<T: Serialize>(value: &T, buf: &mut Vec<u8>) {
    buf.clear();
    ciborium::into_writer(black_box(value), &mut *buf).expect("writing to a Vec cannot fail");
    black_box(buf.as_slice());
}

fn minicbor_decode_uplink(bytes: &[u8]) {
    black_box(codec::decode_uplink(black_box(bytes)).expect("valid uplink"));
}

fn minicbor_decode_downlink(bytes: &[u8]) {
    black_box(codec::decode_downlink(black_box(bytes)).expect("valid downlink"));
}

fn ciborium_decode<T: serde::de::DeserializeOwned>(bytes: &[u8], scratch: &mut [u8]) {
    let value: T =
        ciborium::de::from_reader_with_buffer(black_box(bytes), scratch).expect("valid CBOR");
    black_box(value);
}

/// The benchmarked messages, in both encodings, checked to agree.
struct Fixture {
    heartbeat: Envelope<Uplink<'static>>,
    heartbeat_mirror: HeartbeatMirror,
    heartbeat_minicbor: Vec<u8>,
    heartbeat_ciborium: Vec<u8>,
    chunk_data: Vec<u8>,
    chunk_minicbor: Vec<u8>,
    chunk_ciborium: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let heartbeat = Envelope::new(MESSAGE_ID, Uplink::Heartbeat(samples::heartbeat()));
        let heartbeat_mirror = heartbeat_mirror(&heartbeat).expect("a heartbeat");
        let chunk_data = samples::chunk_data(CHUNK_LEN);
        let chunk = chunk_envelope(&chunk_data);
        let chunk_minicbor = codec::to_vec(&chunk);
        let chunk_ciborium = ciborium_vec(&chunk_mirror(&chunk).expect("a chunk"));
        let fixture = Fixture {
            heartbeat_minicbor: codec::to_vec(&heartbeat),
            heartbeat_ciborium: ciborium_vec(&heartbeat_mirror),
            heartbeat,
            heartbeat_mirror,
            chunk_data,
            chunk_minicbor,
            chunk_ciborium,
        };
        fixture.check();
        fixture
    }

    fn chunk(&self) -> Envelope<Downlink<'_>> {
        chunk_envelope(&self.chunk_data)
    }

    /// Both codecs round-trip, and decode to the same values.
    fn check(&self) {
        let heartbeat = codec::decode_uplink(&self.heartbeat_minicbor).expect("valid uplink");
        assert_eq!(heartbeat, self.heartbeat);
        let mirror: HeartbeatMirror =
            ciborium::from_reader(self.heartbeat_ciborium.as_slice()).expect("valid CBOR");
        assert_eq!(Some(&mirror), heartbeat_mirror(&heartbeat).as_ref());
        assert_eq!(mirror, self.heartbeat_mirror);

        let chunk = codec::decode_downlink(&self.chunk_minicbor).expect("valid downlink");
        assert_eq!(chunk, self.chunk());
        let mirror: ChunkMirror<Vec<u8>> =
            ciborium::from_reader(self.chunk_ciborium.as_slice()).expect("valid CBOR");
        let expected = chunk_mirror(&chunk).expect("a chunk");
        assert_eq!(mirror, owned(&expected));
        assert_eq!(mirror.data.0.len(), CHUNK_LEN);
    }
}

fn chunk_envelope(data: &[u8]) -> Envelope<Downlink<'_>> {
    Envelope::new(
        MESSAGE_ID,
        Downlink::DeployChunk(DeployChunk {
            deployment: DeploymentId(7),
            offset: CHUNK_OFFSET,
            data,
        }),
    )
}

fn ciborium_vec<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("writing to a Vec cannot fail");
    out
}

// ---------------------------------------------------------------------------
// criterion

fn bench_heartbeat(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group("heartbeat");
    let mut buf = [0u8; BUF_LEN];
    let mut vec = Vec::with_capacity(BUF_LEN);
    let mut scratch = vec![0u8; SCRATCH_LEN];
    group.bench_function("minicbor/encode", |b| {
        b.iter(|| minicbor_encode(&f.heartbeat, &mut buf));
    });
    group.bench_function("ciborium/encode", |b| {
        b.iter(|| ciborium_encode(&f.heartbeat_mirror, &mut vec));
    });
    group.bench_function("minicbor/decode", |b| {
        b.iter(|| minicbor_decode_uplink(&f.heartbeat_minicbor));
    });
    group.bench_function("ciborium/decode", |b| {
        b.iter(|| ciborium_decode::<HeartbeatMirror>(&f.heartbeat_ciborium, &mut scratch));
    });
    group.finish();
}

fn bench_chunk(c: &mut Criterion, f: &Fixture) {
    let chunk = f.chunk();
    let mirror = chunk_mirror(&chunk).expect("a chunk");
    let mut group = c.benchmark_group("chunk_1k");
    group.throughput(Throughput::Bytes(CHUNK_LEN as u64));
    let mut buf = [0u8; BUF_LEN];
    let mut vec = Vec::with_capacity(BUF_LEN);
    let mut scratch = vec![0u8; SCRATCH_LEN];
    group.bench_function("minicbor/encode", |b| {
        b.iter(|| minicbor_encode(&chunk, &mut buf));
    });
    group.bench_function("ciborium/encode", |b| {
        b.iter(|| ciborium_encode(&mirror, &mut vec));
    });
    group.bench_function("minicbor/decode", |b| {
        b.iter(|| minicbor_decode_downlink(&f.chunk_minicbor));
    });
    group.bench_function("ciborium/decode", |b| {
        b.iter(|| ciborium_decode::<ChunkMirror<Vec<u8>>>(&f.chunk_ciborium, &mut scratch));
    });
    group.finish();
}

// ---------------------------------------------------------------------------
// Summary: interleaved A/B measurement

/// Rounds of the summary; each runs one batch of minicbor and one of
/// ciborium, in alternating order.
const ROUNDS: usize = 201;
/// Target duration of one batch.
const BATCH_TIME: Duration = Duration::from_millis(1);

/// Nanoseconds per call of `f` over `iters` calls.
fn batch_ns<F: FnMut()>(f: &mut F, iters: u64) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_secs_f64() * 1e9 / iters as f64
}

/// Warms `f` up and returns how many calls take about [`BATCH_TIME`].
fn calibrate<F: FnMut()>(f: &mut F) -> u64 {
    let mut iters: u64 = 1;
    loop {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        let elapsed = start.elapsed();
        if elapsed >= BATCH_TIME / 4 {
            let iters = u128::from(iters) * BATCH_TIME.as_nanos() / elapsed.as_nanos();
            return u64::try_from(iters).unwrap_or(u64::MAX).max(1);
        }
        iters *= 2;
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

/// One operation measured with both codecs.
struct Pair {
    /// Median ns/iter of minicbor over the rounds.
    minicbor_ns: f64,
    /// Fastest round of minicbor: what the code costs on a quiet machine.
    minicbor_min_ns: f64,
    ciborium_ns: f64,
    ciborium_min_ns: f64,
    /// Median over the rounds of ciborium/minicbor within the round: both
    /// ran back to back, so the load of the machine mostly cancels out.
    ratio: f64,
}

/// Measures `minicbor` and `ciborium` in interleaved rounds.
fn measure_pair<A: FnMut(), B: FnMut()>(mut minicbor: A, mut ciborium: B) -> Pair {
    let (iters_a, iters_b) = (calibrate(&mut minicbor), calibrate(&mut ciborium));
    let mut a = Vec::with_capacity(ROUNDS);
    let mut b = Vec::with_capacity(ROUNDS);
    let mut ratios = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let (ns_a, ns_b) = if round % 2 == 0 {
            let ns_a = batch_ns(&mut minicbor, iters_a);
            (ns_a, batch_ns(&mut ciborium, iters_b))
        } else {
            let ns_b = batch_ns(&mut ciborium, iters_b);
            (batch_ns(&mut minicbor, iters_a), ns_b)
        };
        a.push(ns_a);
        b.push(ns_b);
        ratios.push(ns_b / ns_a);
    }
    Pair {
        minicbor_min_ns: min(&a),
        ciborium_min_ns: min(&b),
        minicbor_ns: median(&mut a),
        ciborium_ns: median(&mut b),
        ratio: median(&mut ratios),
    }
}

/// A row of the summary and its targets.
struct Row {
    name: &'static str,
    pair: Pair,
    /// Largest acceptable minicbor time (median), if there is a target.
    max_ns: Option<f64>,
    /// Smallest acceptable ciborium/minicbor ratio, if there is a target.
    min_ratio: Option<f64>,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn summary(f: &Fixture) {
    let chunk = f.chunk();
    let chunk_mirror = chunk_mirror(&chunk).expect("a chunk");
    let mut buf = [0u8; BUF_LEN];
    let mut vec = Vec::with_capacity(BUF_LEN);
    let mut scratch = vec![0u8; SCRATCH_LEN];

    let started = Instant::now();
    let rows = [
        Row {
            name: "heartbeat encode",
            pair: measure_pair(
                || minicbor_encode(&f.heartbeat, &mut buf),
                || ciborium_encode(&f.heartbeat_mirror, &mut vec),
            ),
            max_ns: Some(100.0),
            min_ratio: Some(5.0),
        },
        Row {
            name: "heartbeat decode",
            pair: measure_pair(
                || minicbor_decode_uplink(&f.heartbeat_minicbor),
                || ciborium_decode::<HeartbeatMirror>(&f.heartbeat_ciborium, &mut scratch),
            ),
            max_ns: Some(250.0),
            min_ratio: Some(5.0),
        },
        Row {
            name: "chunk_1k encode",
            pair: measure_pair(
                || minicbor_encode(&chunk, &mut buf),
                || ciborium_encode(&chunk_mirror, &mut vec),
            ),
            max_ns: None,
            min_ratio: None,
        },
        Row {
            name: "chunk_1k decode",
            pair: measure_pair(
                || minicbor_decode_downlink(&f.chunk_minicbor),
                || ciborium_decode::<ChunkMirror<Vec<u8>>>(&f.chunk_ciborium, &mut scratch),
            ),
            max_ns: None,
            min_ratio: None,
        },
    ];

    println!();
    println!(
        "codec summary: {ROUNDS} rounds of interleaved ~{} ms batches ({:.1} s), \
         independent of criterion's figures above",
        BATCH_TIME.as_millis(),
        started.elapsed().as_secs_f64(),
    );
    println!(
        "  ns/iter: median over the rounds (fastest round); \
         ratio: median of the per-round ciborium/minicbor"
    );
    println!(
        "{:<17} {:>18} {:>18} {:>7}  targets (on medians)",
        "operation", "minicbor ns", "ciborium ns", "ratio"
    );
    let mut all_pass = true;
    for Row {
        name,
        pair,
        max_ns,
        min_ratio,
    } in &rows
    {
        let mut targets = Vec::new();
        if let Some(max) = max_ns {
            let ok = pair.minicbor_ns <= *max;
            all_pass &= ok;
            targets.push(format!("time <= {max:.0} ns {}", verdict(ok)));
        }
        if let Some(min) = min_ratio {
            let ok = pair.ratio >= *min;
            all_pass &= ok;
            targets.push(format!("ratio >= {min:.0}x {}", verdict(ok)));
        }
        if targets.is_empty() {
            targets.push("no target".to_owned());
        }
        println!(
            "{name:<17} {:>18} {:>18} {:>6.2}x  {}",
            format!("{:.1} ({:.1})", pair.minicbor_ns, pair.minicbor_min_ns),
            format!("{:.1} ({:.1})", pair.ciborium_ns, pair.ciborium_min_ns),
            pair.ratio,
            targets.join(", ")
        );
    }
    println!(
        "encoded size: heartbeat {} B (minicbor) vs {} B (ciborium), \
         chunk_1k {} B vs {} B",
        f.heartbeat_minicbor.len(),
        f.heartbeat_ciborium.len(),
        f.chunk_minicbor.len(),
        f.chunk_ciborium.len(),
    );
    println!(
        "heartbeat targets: {}",
        if all_pass { "all PASS" } else { "MISSED" }
    );
}

/// Whether criterion runs benchmarks, rather than once each as a test
/// (`cargo test --benches`), a listing or a profile.
fn benchmark_mode() -> bool {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench")
        && !has("--test")
        && !has("--list")
        && !args.iter().any(|a| a.starts_with("--profile-time"))
}

/// The costliest frame for the pre-decode check: maps of two pairs nested
/// as deep as allowed over a map as wide as a frame allows, so that every
/// level walks the wide map again.
fn hostile_frame() -> Vec<u8> {
    let levels = wasmbed_protocol::MAX_DEPTH - 1;
    let wide = (wasmbed_protocol::frame::MAX_FRAME_LEN - 4 * levels - 3) / 4;
    let mut frame = [0xa2, 0x00].repeat(levels);
    let wide = u16::try_from(wide).expect("a frame's worth of pairs");
    frame.push(0xb9);
    frame.extend(wide.to_be_bytes());
    for key in 0..wide {
        frame.push(0x19);
        frame.extend(key.to_be_bytes());
        frame.push(0x00);
    }
    frame.extend([0x01, 0x00].repeat(levels));
    assert!(frame.len() <= wasmbed_protocol::frame::MAX_FRAME_LEN);
    frame
}

/// The hostile frame's decode (refused after the whole check) against a
/// 1 KiB chunk's, interleaved in the same rounds.
fn hostile_summary(f: &Fixture) {
    let frame = hostile_frame();
    assert!(codec::decode::<Downlink<'_>>(&frame).is_err());
    let pair = measure_pair(
        || {
            let _ = black_box(codec::decode::<Downlink<'_>>(black_box(&frame)));
        },
        || minicbor_decode_downlink(&f.chunk_minicbor),
    );
    println!(
        "hostile frame ({} B, {} levels of maps over {} keys): {:.0} ns (fastest {:.0}), \
         chunk_1k decode {:.0} ns: {:.1}x a 1 KiB chunk",
        frame.len(),
        wasmbed_protocol::MAX_DEPTH,
        (frame.len() - 4 * (wasmbed_protocol::MAX_DEPTH - 1)) / 4,
        pair.minicbor_ns,
        pair.minicbor_min_ns,
        pair.ciborium_ns,
        1.0 / pair.ratio,
    );
}

fn main() {
    // Checks the fixtures, in test mode too.
    let fixture = Fixture::new();
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench_heartbeat(&mut criterion, &fixture);
    bench_chunk(&mut criterion, &fixture);
    criterion.final_summary();
    if benchmark_mode() {
        summary(&fixture);
        hostile_summary(&fixture);
    }
}
