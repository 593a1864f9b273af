//! The stack's high-water mark: the free RAM below the stack is painted at
//! boot and later scanned for the deepest byte ever written.
//!
//! The bottom of the stack area is reserved for the stack guard and its
//! red zone (see `guard`): the scan starts above the guard, whose bytes
//! fault when read once the MPU is on.

use crate::guard;

const PAINT: u32 = 0xA5A5_A5A5;

unsafe extern "C" {
    /// End of the statics (cortex-m-rt): the stack may grow down to here.
    static mut __sheap: u32;
    /// Top of the stack (cortex-m-rt).
    static _stack_start: u32;
}

/// The bottom of the stack area (the red zone and guard included).
/// Addresses are worked out as integers and turned into pointers with
/// exposed provenance: the stack area is not one Rust object.
pub fn area_bottom() -> usize {
    (&raw mut __sheap) as usize
}

fn word(address: usize) -> *mut u32 {
    core::ptr::with_exposed_provenance_mut(address)
}

fn top() -> usize {
    &raw const _stack_start as usize
}

/// Paints from the bottom of the stack area up to a little below the
/// current stack pointer. Runs before the guard is armed.
pub fn paint() {
    let sp = cortex_m::register::msp::read() as usize;
    let mut at = area_bottom();
    while at + 64 < sp {
        // SAFETY: the words between the end of the statics and the current
        // stack pointer (less a margin) are unused stack.
        unsafe { word(at).write_volatile(PAINT) };
        at += 4;
    }
}

/// Most bytes of stack used since boot.
pub fn peak() -> usize {
    let mut at = guard::end();
    while at < top() {
        // SAFETY: reading words of the stack area above the guard.
        if unsafe { word(at).read_volatile() } != PAINT {
            break;
        }
        at += 4;
    }
    top() - at
}

/// Bytes of usable stack: from above the guard to the top of RAM.
pub fn size() -> usize {
    top() - guard::end()
}
