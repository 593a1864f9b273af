//! The console on UART0: one line per event, prefixed with the time since
//! boot, read by people and by the test harness (`docs/firmware.md` lists
//! the lines tests rely on).

use core::fmt::{self, Write};

use crate::clock;
use crate::uart::{UART0, Uart};

struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        Uart::at(UART0).write_all(s.as_bytes());
        Ok(())
    }
}

/// Writes one console line.
pub fn line(args: fmt::Arguments<'_>) {
    let ms = clock::now_ms();
    // The console cannot fail.
    let _ = writeln!(Console, "[{:>6}.{:03}] {}", ms / 1000, ms % 1000, args);
}

/// Writes a line without the time prefix, from contexts where the clock
/// may not be trusted (panics, faults).
pub fn raw_line(args: fmt::Arguments<'_>) {
    let _ = writeln!(Console, "{args}");
}

/// Writes text as is, without `core::fmt`: for the fault handlers, which
/// may run on the last few hundred bytes of RAM (formatting a line takes
/// about 350 bytes of stack; this takes a few dozen).
pub fn raw_str(text: &str) {
    Uart::at(UART0).write_all(text.as_bytes());
}

/// Writes `value` as `0x` and eight hex digits, without `core::fmt`.
pub fn raw_hex(value: u32) {
    let mut text = *b"0x00000000";
    let mut rest = value;
    for digit in text[2..].iter_mut().rev() {
        *digit = b"0123456789abcdef"[(rest & 0xf) as usize];
        rest >>= 4;
    }
    Uart::at(UART0).write_all(&text);
}

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::console::line(format_args!($($arg)*)) };
}
