//! What the decoders allocate, measured with a counting global allocator.
//!
//! The crate's own build (no features) cannot allocate at all. This test
//! binary, like every test of the crate, is built with feature `std`
//! (through the dev-dependency on itself), which turns on minicbor's
//! `alloc` feature, and with it two sources of allocation inside
//! minicbor:
//!
//! - an error with a message (`Error::message`, `with_message`) owns a
//!   `String` of that message;
//! - `Decoder::skip`, which skips the values of unknown map keys, keeps a
//!   heap stack of the indefinite-length arrays and maps it finds inside
//!   definite-length ones.
//!
//! Every decode first checks that the input is one well-formed item with
//! definite lengths only, so no decoder meets an indefinite-length item
//! and `skip` never allocates. What is left are error messages: a failed
//! decode builds at most two minicbor errors (the decoder's, and the
//! version probe's), so it allocates at most [`FAILURE_CALLS`] strings of
//! [`FAILURE_BYTES`] bytes in all, whatever the input and its length. A
//! successful decode allocates nothing.
//!
//! Measured with minicbor 2.3 (`cargo test --test alloc -- --nocapture`
//! prints it): 0 bytes for every successful decode, of 4 KiB or of 1 MB;
//! for a failed one 0, 12 or 24 bytes (`"expected map"` once or twice)
//! for most inputs, the same at 4 KiB and at 1 MB; at most 66 bytes in 2
//! allocations over about 390,000 decodes of changed and truncated
//! samples; 80 bytes for an input made to need the two longest messages.
//!
//! (See [`regressions`].) When the check refuses the input, the version
//! probe reads only a leading key 0 and allocates nothing per level.
//!
//! The allocator counts per thread, only while a thread measures, so the
//! tests can run in parallel.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use wasmbed_protocol::codec::{self, decode_downlink, decode_uplink};
use wasmbed_protocol::frame::MAX_FRAME_LEN;
use wasmbed_protocol::{Envelope, samples};

/// Forwards to the system allocator, counting on threads that ask for it.
struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What this thread allocated since it started measuring.
struct Counters {
    /// Whether this thread's allocations are being counted.
    counting: Cell<bool>,
    /// Allocations (including reallocations).
    calls: Cell<usize>,
    /// Bytes asked for, by allocations and the new sizes of reallocations.
    requested: Cell<usize>,
    /// Bytes held now, of those allocated while counting.
    live: Cell<usize>,
    /// The most `live` has been.
    peak: Cell<usize>,
}

thread_local! {
    // Const-initialized and without destructor: safe to touch from the
    // allocator, and never allocates.
    static COUNTERS: Counters = const {
        Counters {
            counting: Cell::new(false),
            calls: Cell::new(0),
            requested: Cell::new(0),
            live: Cell::new(0),
            peak: Cell::new(0),
        }
    };
}

fn on_alloc(size: usize) {
    let _ = COUNTERS.try_with(|c| {
        if c.counting.get() {
            c.calls.set(c.calls.get() + 1);
            c.requested.set(c.requested.get() + size);
            c.live.set(c.live.get() + size);
            c.peak.set(c.peak.get().max(c.live.get()));
        }
    });
}

fn on_free(size: usize) {
    let _ = COUNTERS.try_with(|c| {
        if c.counting.get() {
            // Saturating: memory allocated before counting may be freed.
            c.live.set(c.live.get().saturating_sub(size));
        }
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments,
// so `System`'s guarantees carry over; the counting touches only a
// const-initialized thread-local without destructor, which never
// allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_free(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_free(layout.size());
        on_alloc(new_size);
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// What a closure allocated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Usage {
    calls: usize,
    requested: usize,
    peak: usize,
}

/// Runs `f`, counting what this thread allocates meanwhile.
fn measure(f: impl FnOnce()) -> Usage {
    COUNTERS.with(|c| {
        c.calls.set(0);
        c.requested.set(0);
        c.live.set(0);
        c.peak.set(0);
        c.counting.set(true);
    });
    f();
    COUNTERS.with(|c| {
        c.counting.set(false);
        Usage {
            calls: c.calls.get(),
            requested: c.requested.get(),
            peak: c.peak.get(),
        }
    })
}

/// The outcome of decoding some bytes in one direction, and what that
/// allocated.
#[derive(Debug, Clone, Copy)]
struct Decoded {
    ok: bool,
    usage: Usage,
}

/// Decodes `bytes` as an uplink, and as a downlink.
fn decode_each(bytes: &[u8]) -> [Decoded; 2] {
    let mut ok = false;
    let usage = measure(|| {
        // `black_box`, so that nothing is optimized away.
        ok = std::hint::black_box(decode_uplink(std::hint::black_box(bytes))).is_ok();
    });
    let up = Decoded { ok, usage };
    let usage = measure(|| {
        ok = std::hint::black_box(decode_downlink(std::hint::black_box(bytes))).is_ok();
    });
    [up, Decoded { ok, usage }]
}

/// Most allocations of a failed decode: the messages of two minicbor
/// errors, the decoder's and the version probe's.
const FAILURE_CALLS: usize = 2;

/// Most bytes a failed decode allocates in all: the longest message a
/// decoder can meet in well-formed input, minicbor's `"byte slice length
/// does not match expected array length"` (54 bytes, for a fixed-size
/// byte string of another size), and the longest the version probe can
/// meet, `"when converting u32 to u16"` (26 bytes, for a version beyond
/// u16). [`longest_failure`] needs them all.
const FAILURE_BYTES: usize = 80;

/// An input that allocates [`FAILURE_BYTES`] in [`FAILURE_CALLS`]
/// allocations, in both directions: the body comes first, with a public
/// key (uplink) or nonce (downlink) of 64 bytes, and the version, written
/// last, is 65536.
fn longest_failure() -> Vec<u8> {
    let mut bytes = unhex("a3 02 82 00 a1 00 58 40");
    bytes.extend_from_slice(&[0; 64]);
    bytes.extend_from_slice(&unhex("00 1a 00 01 00 00 01 01"));
    bytes
}

/// Checks what one decode allocated: nothing if it succeeded, at most
/// [`FAILURE_CALLS`] strings of [`FAILURE_BYTES`] in all if not.
fn check_decoded(what: &str, direction: &str, decoded: Decoded) {
    let Decoded { ok, usage } = decoded;
    if ok {
        assert_eq!(
            usage,
            Usage::default(),
            "{what}, {direction}: a successful decode allocated"
        );
    } else {
        assert!(
            usage.calls <= FAILURE_CALLS && usage.requested <= FAILURE_BYTES,
            "{what}, {direction}: a failed decode allocated {usage:?}"
        );
    }
}

/// The bytes of a hex string; whitespace is ignored.
fn unhex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("hex digits are ASCII");
            u8::from_str_radix(pair, 16).expect("valid hex digits")
        })
        .collect()
}

/// A goodbye (uplink) or deploy commit (downlink) envelope followed by
/// key 9, which this version does not know: its value is skipped.
const UNKNOWN_KEY: &str = "a4 00 01 01 01 02 82 06 a1 00 02 09";

/// A goodbye (uplink) or deploy commit (downlink) envelope.
const MESSAGE: &str = "a3 00 01 01 01 02 82 06 a1 00 02";

/// `prefix`, then `repeated` up to `len` bytes in all, then `suffix`.
fn filled(prefix: &str, repeated: &[u8], len: usize, suffix: &[u8]) -> Vec<u8> {
    let mut bytes = unhex(prefix);
    let start = bytes.len();
    let end = len - suffix.len();
    while bytes.len() < end {
        bytes.push(repeated[(bytes.len() - start) % repeated.len()]);
    }
    bytes.truncate(end);
    bytes.extend_from_slice(suffix);
    bytes
}

/// Small hostile inputs, with a name each.
fn hostile() -> Vec<(String, Vec<u8>)> {
    let max = "ffffffffffffffff";
    [
        ("empty", String::new()),
        ("the integer 0", "00".into()),
        ("a lone break", "ff".into()),
        ("-100 (minicbor peeks too far)", "3863".into()),
        ("a reserved byte", "1c".into()),
        ("simple(24) in two bytes", "f818".into()),
        ("bytes of 2^64-1", format!("5b{max}")),
        ("array of 2^64-1", format!("9b{max}")),
        ("map of 2^64-1", format!("bb{max}")),
        (
            "body array of 2^64-1",
            format!("a3 00 01 01 01 02 9b{max} 06 a1 00 02"),
        ),
        (
            "heartbeat apps of 2^64-1",
            format!("a3 00 01 01 01 02 82 02 a3 00 00 01 00 02 9b{max}"),
        ),
        (
            "chunk data of 2^64-1",
            format!("a3 00 01 01 01 02 82 05 a3 00 07 01 00 02 5b{max}"),
        ),
        (
            "unknown key: bytes of 2^64-1",
            format!("{UNKNOWN_KEY} 5b{max}"),
        ),
        (
            "unknown key: array of 2^64-1",
            format!("{UNKNOWN_KEY} 9b{max}"),
        ),
        (
            "unknown key: map of 2^64-1",
            format!("{UNKNOWN_KEY} bb{max}"),
        ),
        (
            "unknown key: [[_ [2^64-1 ...",
            format!("{UNKNOWN_KEY} 82 9f 9b{max}"),
        ),
        (
            "unknown key: [[_ ], 0]",
            format!("{UNKNOWN_KEY} 82 9f ff 00"),
        ),
        (
            "unknown key: two-byte simple(0)",
            format!("{UNKNOWN_KEY} f8 00"),
        ),
        ("version 2", "a3 00 02 01 01 02 82 06 a1 00 02".into()),
        (
            "version 2, indefinite item",
            "a4 00 02 01 01 02 82 06 a1 00 02 09 9f ff".into(),
        ),
        ("variant 99", "a3 00 01 01 01 02 82 18 63 a0".into()),
        (
            "deploy state 7",
            "a3 00 01 01 01 02 82 03 a2 00 07 01 81 07".into(),
        ),
        ("trailing byte", format!("{MESSAGE} 00")),
        (
            "an indefinite map, never closed",
            "bf 00 01 01 01 02 82 06".into(),
        ),
    ]
    .into_iter()
    .map(|(name, hex)| (name.to_owned(), unhex(&hex)))
    .collect()
}

/// Hostile inputs of any length: `len` bytes of `repeated` after a
/// prefix, then a suffix. None of them is a message.
const LONG_HOSTILE: [(&str, &str, &[u8], &[u8]); 18] = [
    ("[[[...", "", &[0x81], &[]),
    ("[_ [_ [_ ...", "", &[0x9f], &[]),
    ("{{{...", "", &[0xa1], &[]),
    ("tags of nothing", "", &[0xc1], &[]),
    ("breaks", "", &[0xff], &[]),
    ("[[[...0...]]], not a map", "", &[0x81], &[0x00]),
    ("as the body: [[[...", "a3 00 01 01 01 02", &[0x81], &[]),
    ("unknown key: [[[...", UNKNOWN_KEY, &[0x81], &[]),
    ("unknown key: [_ [_ [_ ...", UNKNOWN_KEY, &[0x9f], &[]),
    ("unknown key: {_ {_ {_ ...", UNKNOWN_KEY, &[0xbf], &[]),
    (
        "unknown key: [[_ [_ [_ ...",
        "a4 00 01 01 01 02 82 06 a1 00 02 09 82",
        &[0x9f],
        &[],
    ),
    (
        "unknown key: [[_ [[_ [[_ ...",
        UNKNOWN_KEY,
        &[0x82, 0x9f],
        &[],
    ),
    (
        "unknown key: [[[...0...]]] 0 0 ...",
        UNKNOWN_KEY,
        &[0x81],
        &[0x00, 0x00],
    ),
    ("a message, then zeros", MESSAGE, &[0x00], &[]),
    ("a message, then breaks", MESSAGE, &[0xff], &[]),
    ("unknown key: [[[...0...]]]", UNKNOWN_KEY, &[0x81], &[0x00]),
    ("unknown key: tags of 0", UNKNOWN_KEY, &[0xc1], &[0x00]),
    (
        "unknown key: [{0: {0: ...}}]",
        "a4 00 01 01 01 02 82 06 a1 00 02 09 81",
        &[0xa1, 0x00],
        &[0x00],
    ),
];

/// Messages of any length: `len` bytes, a newer peer's field skipped.
/// Long valid inputs were nestings under an unknown key; nesting is now
/// limited (`MAX_DEPTH`), so they are among the hostile ones, and no long
/// input of one repeated pattern is valid.
const LONG_VALID: [(&str, &str, &[u8], &[u8]); 0] = [];

/// The sample messages, encoded, as (name, bytes).
fn encoded_samples() -> Vec<(String, Vec<u8>)> {
    samples::uplinks()
        .into_iter()
        .map(|(name, body)| {
            let bytes = codec::to_vec(&Envelope::new(1, body));
            (format!("uplink {name}"), bytes)
        })
        .chain(samples::downlinks().into_iter().map(|(name, body)| {
            let bytes = codec::to_vec(&Envelope::reply(2, 1, body));
            (format!("downlink {name}"), bytes)
        }))
        .collect()
}

/// Prints one row of the table of measurements.
fn print_row(name: &str, len: usize, [up, down]: [Decoded; 2]) {
    let outcome = |d: Decoded| if d.ok { "ok" } else { "err" };
    eprintln!(
        "{len:>8}  {:>3} {:>5} {:>9} {:>9}  {:>3} {:>5} {:>9} {:>9}  {name}",
        outcome(up),
        up.usage.calls,
        up.usage.requested,
        up.usage.peak,
        outcome(down),
        down.usage.calls,
        down.usage.requested,
        down.usage.peak,
    );
}

fn print_header() {
    eprintln!(
        "{:>8}  {:>3} {:>5} {:>9} {:>9}  {:>3} {:>5} {:>9} {:>9}  input",
        "len", "up", "calls", "requested", "peak", "dn", "calls", "requested", "peak"
    );
}

/// A successful decode allocates nothing, and a failed one a small
/// constant, for the samples and for small hostile inputs.
#[test]
fn samples_and_small_hostile_inputs() {
    print_header();
    for (name, bytes) in encoded_samples() {
        let decoded = decode_each(&bytes);
        print_row(&name, bytes.len(), decoded);
        assert!(decoded[0].ok || decoded[1].ok, "{name}: decodes");
        for (direction, d) in ["uplink", "downlink"].into_iter().zip(decoded) {
            check_decoded(&name, direction, d);
        }
    }
    for (name, bytes) in hostile() {
        let decoded = decode_each(&bytes);
        print_row(&name, bytes.len(), decoded);
        for (direction, d) in ["uplink", "downlink"].into_iter().zip(decoded) {
            assert!(!d.ok, "{name}, {direction}: decoded");
            check_decoded(&name, direction, d);
        }
    }
    // The longest message is reached and stays within the bound (the
    // version probe no longer adds its own: it reads only a leading key 0).
    let bytes = longest_failure();
    let decoded = decode_each(&bytes);
    print_row("the two longest messages", bytes.len(), decoded);
    for (direction, d) in ["uplink", "downlink"].into_iter().zip(decoded) {
        assert!(!d.ok, "{direction}: decoded");
        assert_eq!(
            (d.usage.calls, d.usage.requested),
            (1, 54),
            "the longest message, {direction}"
        );
    }
}

/// What decoding allocates does not depend on the input's length: each
/// long input allocates exactly as much at 1 MB as at the size of a
/// frame, and no more than any failure (or, for messages, nothing).
#[test]
fn nothing_in_proportion_to_the_input() {
    print_header();
    let long = LONG_HOSTILE
        .iter()
        .map(|case| (case, false))
        .chain(LONG_VALID.iter().map(|case| (case, true)));
    for (&(name, prefix, repeated, suffix), valid) in long {
        let small = filled(prefix, repeated, MAX_FRAME_LEN, suffix);
        let large = filled(prefix, repeated, 1_000_000, suffix);
        let at_small = decode_each(&small);
        let at_large = decode_each(&large);
        print_row(name, small.len(), at_small);
        print_row(name, large.len(), at_large);
        for (direction, (s, l)) in ["uplink", "downlink"]
            .into_iter()
            .zip(at_small.into_iter().zip(at_large))
        {
            assert_eq!(s.ok, valid, "{name} ({} bytes), {direction}", small.len());
            assert_eq!(l.ok, valid, "{name} ({} bytes), {direction}", large.len());
            check_decoded(name, direction, s);
            check_decoded(name, direction, l);
            assert_eq!(
                s.usage, l.usage,
                "{name}, {direction}: allocates differently at 4 KiB and at 1 MB"
            );
        }
    }
}

/// Every sample cut short, extended, and with each byte changed to each
/// value: whatever the outcome, a success allocates nothing and a failure
/// at most the two error messages.
#[test]
fn every_changed_and_truncated_sample() {
    let mut most = Usage::default();
    let mut decodes = 0usize;
    let mut record = |what: &dyn Fn() -> String, bytes: &[u8]| {
        for (direction, d) in ["uplink", "downlink"].into_iter().zip(decode_each(bytes)) {
            decodes += 1;
            if !d.ok && d.usage.requested > most.requested {
                most = d.usage;
            }
            if (d.ok && d.usage != Usage::default())
                || d.usage.calls > FAILURE_CALLS
                || d.usage.requested > FAILURE_BYTES
            {
                check_decoded(&what(), direction, d);
            }
        }
    };
    for (name, bytes) in encoded_samples() {
        for len in 0..bytes.len() {
            record(&|| format!("{name} cut to {len} bytes"), &bytes[..len]);
        }
        for extra in [&[0x00][..], &[0xff], &[0x9f], &[0x1c], &bytes] {
            let mut long = bytes.clone();
            long.extend_from_slice(extra);
            record(&|| format!("{name} + {extra:02x?}"), &long);
        }
        let mut changed = bytes.clone();
        for at in 0..bytes.len() {
            for value in 0..=u8::MAX {
                changed[at] = value;
                record(&|| format!("{name} with [{at}] = {value:#04x}"), &changed);
            }
            changed[at] = bytes[at];
        }
    }
    eprintln!("{decodes} decodes; most for a failure: {most:?}");
    assert!(
        most.requested > 0,
        "no failure allocated: the count is broken"
    );
}

/// Regressions found in review.
mod regressions {
    use super::*;

    /// `probe_version` once looked for the version with minicbor's `skip`,
    /// which (with `alloc`) keeps a heap stack of indefinite-length items:
    /// 128 KiB requested for a 4 KiB frame. It now reads only a leading
    /// key 0.
    #[test]
    fn the_version_probe_allocates_nothing_per_level() {
        for len in [MAX_FRAME_LEN, 1_000_000] {
            let bytes = filled("a2 01 82", &[0x9f], len, &[]);
            let decoded = decode_each(&bytes);
            print_row("{1: [[_ [_ ...", len, decoded);
            for (direction, d) in ["uplink", "downlink"].into_iter().zip(decoded) {
                check_decoded("{1: [[_ [_ ...", direction, d);
            }
        }
    }
}
