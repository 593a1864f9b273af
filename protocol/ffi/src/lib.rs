//! The C ABI of [`wasmbed_protocol`], for the Zephyr application.
//!
//! Built as a static library (`libwasmbed_protocol_ffi.a`) with the header
//! `include/wasmbed_protocol.h`, which `cargo xtask ffi-header` generates
//! from this crate with cbindgen. It covers what a device needs:
//!
//! - encoding the device's messages as whole frames (`wb_encode_*`) and
//!   decoding the gateway's (`wb_decode_downlink`),
//! - finding frames in a byte stream (`wb_frame_find`),
//! - the sans-IO device session (`wb_device_session_*`), in storage the
//!   C side provides.
//!
//! # Conventions
//!
//! - Nothing allocates. Every type is a plain C struct of fixed size; text
//!   travels as NUL-terminated `char` arrays of a fixed size.
//! - Functions that can fail return a [`WbStatus`]: `WB_STATUS_OK` (0), a
//!   positive value for "not yet" (`WB_STATUS_NEED_MORE`), a negative value
//!   for errors. Every pointer argument is checked: `NULL` gives
//!   `WB_STATUS_NULL_POINTER`, except a `NULL` buffer of length 0.
//! - Wire codes (states, reasons, error codes) are plain `uint16_t`/`uint8_t`
//!   fields whose values are listed by the `wb_*` enums of the header, so a
//!   code from a newer peer is passed on rather than rejected.
//! - Pointers in decoded messages and session events (chunk data,
//!   certificates) point into the input buffer or the session, and are valid
//!   until that buffer changes or the next call on the session.
//! - Nothing is thread-safe: a session belongs to one thread at a time.
//!
//! # Panics
//!
//! The functions do not panic on any input. Should one panic all the same,
//! a hosted build aborts the process; a bare-metal build (`target_os =
//! "none"`) spins forever, so the firmware should run with a watchdog, or,
//! with the `c-panic` feature (the agent's library), calls the
//! application's `wb_platform_panic(message, len)`, which reports and resets.
#![no_std]

// Hosted targets (the host tests, a native simulator) take the panic
// handler and the rest of the runtime from std; bare metal has its own below.
#[cfg(not(target_os = "none"))]
extern crate std;

mod codec;
mod consts;
#[cfg(all(feature = "c-heap", target_os = "none", not(test)))]
mod heap;
mod raw;
mod session;
mod status;
mod types;

pub use codec::*;
pub use consts::*;
pub use session::*;
pub use status::*;
pub use types::*;

/// Bare metal has no runtime to report a panic to: spin until the watchdog
/// resets the device; with `c-panic`, hand the message to the platform.
#[cfg(all(target_os = "none", not(test), not(feature = "c-panic")))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(all(target_os = "none", not(test), feature = "c-panic"))]
mod c_panic {
    use core::ffi::c_char;
    use core::fmt::Write as _;

    unsafe extern "C" {
        /// Supplied by the application: reports the panic's message (not
        /// NUL-terminated) and resets the device. Must not return.
        fn wb_platform_panic(message: *const c_char, len: usize) -> !;
    }

    /// The message, cut to fit.
    struct Message {
        bytes: [u8; 160],
        len: usize,
    }

    impl core::fmt::Write for Message {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let room = self.bytes.len() - self.len;
            let n = s.len().min(room);
            self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        let mut message = Message {
            bytes: [0; 160],
            len: 0,
        };
        let _ = write!(message, "{info}");
        // SAFETY: the pointer and length describe `message`'s bytes; the
        // application's handler does not return.
        unsafe { wb_platform_panic(message.bytes.as_ptr().cast(), message.len) }
    }
}
