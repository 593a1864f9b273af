//! A Wasmbed application: counts the primes below `limit` with a sieve,
//! logs what it found and reports the largest one.
//!
//! Built with `cargo xtask apps`; deployed with entry `run` and one `i32`
//! argument.
#![no_std]

mod wasmbed {
    #[link(wasm_import_module = "wasmbed")]
    unsafe extern "C" {
        pub fn log(ptr: *const u8, len: usize);
        pub fn clock_ms() -> i64;
        pub fn report_i32(value: i32);
    }
}

/// Largest `limit` the sieve takes (its bitmap lives in linear memory).
const MAX_LIMIT: usize = 32 * 1024;

static mut SIEVE: [u8; MAX_LIMIT / 8] = [0; MAX_LIMIT / 8];

fn log(message: &str) {
    // SAFETY: the host reads `len` bytes at `ptr`, inside this module's memory.
    unsafe { wasmbed::log(message.as_ptr(), message.len()) }
}

/// A fixed-capacity text buffer, for log lines without an allocator.
struct Line {
    bytes: [u8; 64],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Line {
            bytes: [0; 64],
            len: 0,
        }
    }

    fn push(&mut self, s: &str) -> &mut Self {
        for &b in s.as_bytes() {
            if self.len < self.bytes.len() {
                self.bytes[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    fn number(&mut self, mut n: u32) -> &mut Self {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in &digits[i..] {
            if self.len < self.bytes.len() {
                self.bytes[self.len] = d;
                self.len += 1;
            }
        }
        self
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

/// Counts the primes below `limit` (at most 32768); reports the largest.
#[unsafe(no_mangle)]
pub extern "C" fn run(limit: i32) -> i32 {
    // SAFETY: clock_ms has no preconditions.
    let started = unsafe { wasmbed::clock_ms() };
    let limit = (limit.max(0) as usize).min(MAX_LIMIT);
    // SAFETY: the module is single-threaded and `run` is its only user of SIEVE.
    let composite = unsafe { &mut *core::ptr::addr_of_mut!(SIEVE) };
    composite.fill(0);
    let mut count = 0;
    let mut largest = 0;
    for n in 2..limit {
        if composite[n / 8] & (1 << (n % 8)) != 0 {
            continue;
        }
        count += 1;
        largest = n;
        let mut multiple = n * n;
        while multiple < limit {
            composite[multiple / 8] |= 1 << (multiple % 8);
            multiple += n;
        }
    }
    // SAFETY: as above.
    let elapsed = unsafe { wasmbed::clock_ms() } - started;
    log(Line::new()
        .push("primes below ")
        .number(limit as u32)
        .push(": ")
        .number(count)
        .push(" in ")
        .number(elapsed.max(0) as u32)
        .push(" ms")
        .as_str());
    // SAFETY: report_i32 has no preconditions.
    unsafe { wasmbed::report_i32(largest as i32) };
    count as i32
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}
