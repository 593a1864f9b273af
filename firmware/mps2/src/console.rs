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

#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::console::line(format_args!($($arg)*)) };
}
