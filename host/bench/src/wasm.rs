//! A valid WebAssembly module of an exact size, mostly code, for the
//! deployment benchmark: the agent validates the whole module at install
//! and runs its entry point, as it would a real application.
//!
//! Layout: one exported memory page with an 8 KiB data segment, an entry
//! point `run(i32) -> i32` calling a chain of arithmetic functions, as
//! many such functions as fit, and a custom section padding to the size.

/// The entry point's name.
pub(crate) const ENTRY: &str = "run";

/// Bytes of the data segment (fits the one memory page).
const DATA_LEN: usize = 8 * 1024;
/// Functions the entry point calls.
const CALLED: u32 = 16;
/// Sections other than code and padding, and their headers, stay under this.
const OVERHEAD: usize = 256;

pub(crate) fn uleb(mut value: u64, out: &mut Vec<u8>) {
    loop {
        let byte = u8::try_from(value & 0x7f).unwrap_or(0);
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn uleb_len(value: u64) -> usize {
    let mut out = Vec::new();
    uleb(value, &mut out);
    out.len()
}

pub(crate) fn section(id: u8, contents: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    uleb(contents.len() as u64, out);
    out.extend_from_slice(contents);
}

/// A filler function `(param i32) (result i32)`: 12 times
/// `x = x + c`, then `x`.
fn filler_body(seed: u32) -> Vec<u8> {
    let mut body = vec![0x00]; // no locals besides the parameter
    for i in 0..12u32 {
        // i32.const with a one-byte signed LEB128 immediate (0..=63).
        let constant = u8::try_from((seed * 7 + i * 13) % 64).unwrap_or(1);
        body.extend_from_slice(&[0x20, 0x00, 0x41, constant, 0x6a, 0x21, 0x00]);
    }
    body.extend_from_slice(&[0x20, 0x00, 0x0b]);
    body
}

/// The module without padding, with `fillers` filler functions.
fn unpadded(fillers: u32) -> Vec<u8> {
    let functions = fillers + 1;
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    // Type section: (i32) -> i32.
    section(1, &[0x01, 0x60, 0x01, 0x7f, 0x01, 0x7f], &mut out);
    // Function section: every function has type 0.
    let mut funcs = Vec::new();
    uleb(u64::from(functions), &mut funcs);
    funcs.extend(std::iter::repeat_n(0x00, functions as usize));
    section(3, &funcs, &mut out);
    // Memory section: one memory of at least one page.
    section(5, &[0x01, 0x00, 0x01], &mut out);
    // Export section: the entry point and the memory.
    let mut exports = vec![0x02];
    exports.push(u8::try_from(ENTRY.len()).unwrap_or(0));
    exports.extend_from_slice(ENTRY.as_bytes());
    exports.extend_from_slice(&[0x00, 0x00]);
    exports.push(6);
    exports.extend_from_slice(b"memory");
    exports.extend_from_slice(&[0x02, 0x00]);
    section(7, &exports, &mut out);
    // Code section: the entry point, then the fillers.
    let mut code = Vec::new();
    uleb(u64::from(functions), &mut code);
    let mut entry = vec![0x00, 0x20, 0x00];
    for callee in 1..=CALLED.min(fillers) {
        entry.push(0x10);
        uleb(u64::from(callee), &mut entry);
    }
    entry.push(0x0b);
    uleb(entry.len() as u64, &mut code);
    code.extend_from_slice(&entry);
    for seed in 0..fillers {
        let body = filler_body(seed);
        uleb(body.len() as u64, &mut code);
        code.extend_from_slice(&body);
    }
    section(10, &code, &mut out);
    // Data section: one active segment at address 0.
    let mut data = vec![0x01, 0x00, 0x41, 0x00, 0x0b];
    uleb(DATA_LEN as u64, &mut data);
    data.extend((0..DATA_LEN).map(|i| b"wasmbed!"[i % 8]));
    section(11, &data, &mut out);
    out
}

/// A custom section of exactly `len` bytes, if `len` allows one.
fn padding(len: usize) -> Option<Vec<u8>> {
    const NAME: &[u8] = b"bench-padding";
    for header in 1..=5 {
        let contents = len.checked_sub(1 + header)?;
        if uleb_len(contents as u64) != header || contents < 1 + NAME.len() {
            continue;
        }
        let mut out = vec![0x00];
        uleb(contents as u64, &mut out);
        out.push(u8::try_from(NAME.len()).unwrap_or(0));
        out.extend_from_slice(NAME);
        out.resize(1 + header + contents, 0);
        return Some(out);
    }
    None
}

/// A module of exactly `size` bytes (at least 16 KiB).
pub(crate) fn module(size: usize) -> Vec<u8> {
    let per_filler = filler_body(0).len() + 2;
    let room = size.saturating_sub(DATA_LEN + OVERHEAD);
    let mut fillers = u32::try_from(room / per_filler).unwrap_or(u32::MAX);
    loop {
        let mut out = unpadded(fillers);
        if out.len() <= size {
            if let Some(pad) = padding(size - out.len()) {
                out.extend_from_slice(&pad);
                return out;
            }
        }
        if fillers == 0 {
            return out;
        }
        fillers -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmbed_agent::runtime::{Runtime, WasmiConfig, WasmiRuntime};
    use wasmbed_protocol::{Limits, Outcome, Value};

    fn limits() -> Limits {
        let mut args = heapless::Vec::new();
        let _ = args.push(Value::I32(1));
        Limits {
            fuel: 1_000_000,
            memory_pages: 1,
            entry: heapless::String::try_from(ENTRY).unwrap_or_default(),
            args,
        }
    }

    #[test]
    fn is_exactly_the_size_valid_and_runs() {
        for size in [16 * 1024, 64 * 1024, 64 * 1024 - 1, 100_000] {
            let module = module(size);
            assert_eq!(module.len(), size);
            let mut runtime =
                WasmiRuntime::new(WasmiConfig::default(), wasmbed_sim::SimClock::new());
            assert_eq!(runtime.validate(&module, &limits()), Ok(()), "size {size}");
            let invocation = runtime.invoke(module.clone(), &limits());
            assert!(
                matches!(invocation.outcome, Outcome::Returned(_)),
                "{:?}",
                invocation.outcome
            );
        }
    }
}
