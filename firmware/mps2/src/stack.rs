//! The stack's high-water mark: the free RAM below the stack is painted at
//! boot and later scanned for the deepest byte ever written.

const PAINT: u32 = 0xA5A5_A5A5;

unsafe extern "C" {
    /// End of the statics (cortex-m-rt): the stack may grow down to here.
    static mut __sheap: u32;
    /// Top of the stack (cortex-m-rt).
    static _stack_start: u32;
}

fn bottom() -> *mut u32 {
    &raw mut __sheap
}

fn top() -> usize {
    &raw const _stack_start as usize
}

/// Paints from the bottom of the stack area up to a little below the
/// current stack pointer.
pub fn paint() {
    let sp = cortex_m::register::msp::read() as usize;
    let mut at = bottom();
    while (at as usize) + 64 < sp {
        // SAFETY: the words between the end of the statics and the current
        // stack pointer (less a margin) are unused stack.
        unsafe {
            at.write_volatile(PAINT);
            at = at.add(1);
        }
    }
}

/// Most bytes of stack used since boot.
pub fn peak() -> usize {
    let mut at = bottom();
    while (at as usize) < top() {
        // SAFETY: reading words of the stack area.
        if unsafe { at.read_volatile() } != PAINT {
            break;
        }
        // SAFETY: still inside the stack area.
        at = unsafe { at.add(1) };
    }
    top() - at as usize
}

/// Bytes between the end of the statics and the top of RAM.
pub fn size() -> usize {
    top() - bottom() as usize
}
