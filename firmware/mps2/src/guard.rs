//! The stack guard: one MPU region that nothing may touch, near the bottom
//! of the stack area, so that a stack overflow faults (MemManage) instead
//! of silently overwriting the heap and the statics below it.
//!
//! ```text
//! _stack_start  top of RAM; the stack grows down from here
//!               ... usable stack (stack::size) ...
//! end()         -------------------------------------------------
//!               the guard: SIZE bytes, no access (MPU region 0, XN)
//! base()        -------------------------------------------------
//!               the red zone: RED_ZONE bytes, used only by the fault
//!               handlers once an overflow has hit the guard
//! __sheap       end of the statics (the heap)
//! ```
//!
//! Why a red zone: a fault handler runs on the stack that overflowed. The
//! core stacks the exception frame below the faulting stack pointer, and
//! that write may itself land in the guard; the handler then needs stack
//! of its own. The MemManage handler's first act is to switch the MPU off
//! (`disarm`), so it carries on growing down through the guard into the
//! red zone. If stacking or its first push hit the guard before that, the
//! fault escalates to HardFault, whose handler runs without the MPU
//! (`MPU_CTRL.HFNMIENA` clear) and uses the red zone the same way (the part
//! of its exception frame that fell in the guard is not written).
//! Either handler prints one line and resets, so nothing below the red
//! zone is ever written. The alternative, a dedicated handler stack, would
//! need a hand-written assembly trampoline for both handlers.
//!
//! Limit: a guard only catches accesses that land in it. A function whose
//! frame is larger than the guard (the firmware has some of several KiB)
//! can move the stack pointer past it; what it writes in the red zone is
//! harmless and its first write into the guard is caught, but a frame
//! that writes only further below is not. `flip-link` would close that.

use cortex_m::peripheral::scb::Exception;
use cortex_m::peripheral::{MPU, SCB};

use crate::stack;

/// Bytes of the guard region: a power of two, at least 32 (PMSAv7).
pub const SIZE: usize = 32;
/// Bytes left below the guard for the fault handlers.
pub const RED_ZONE: usize = 512;

/// `MPU_CTRL`: ENABLE and PRIVDEFENA (the default memory map everywhere
/// else, for privileged code; the firmware runs privileged). HFNMIENA
/// stays clear: HardFault runs without the MPU.
const CTRL_ENABLE: u32 = 1 << 0;
const CTRL_PRIVDEFENA: u32 = 1 << 2;
/// `MPU_RBAR`: the region number in the low bits is used.
const RBAR_VALID: u32 = 1 << 4;
/// `MPU_RASR`: enabled; SIZE field log2(SIZE) - 1; normal memory, write-back
/// (TEX 0b001, C, B), shareable; AP 0b000 (no access, privileged or not);
/// XN.
const RASR_ENABLE: u32 = 1;
const RASR_SIZE_SHIFT: u32 = 1;
const RASR_NORMAL_WB_SHAREABLE: u32 = (0b001 << 19) | (1 << 18) | (1 << 17) | (1 << 16);
const RASR_AP_NO_ACCESS: u32 = 0b000 << 24;
const RASR_XN: u32 = 1 << 28;
const REGION: u32 = 0;

const _: () = assert!(SIZE.is_power_of_two() && SIZE >= 32);

/// The lowest address of the guard: above the red zone, aligned to its
/// size as PMSAv7 requires.
pub fn base() -> usize {
    (stack::area_bottom() + RED_ZONE).next_multiple_of(SIZE)
}

/// Just above the guard: the lowest byte the stack may use.
pub fn end() -> usize {
    base() + SIZE
}

/// Whether `address` is in the guard.
pub fn contains(address: usize) -> bool {
    (base()..end()).contains(&address)
}

/// Sets up the guard and enables MemManage faults; the number of MPU
/// regions the core has, or `None` (no guard) when it has no MPU.
pub fn arm(mpu: &MPU, scb: &mut SCB) -> Option<u32> {
    let regions = (mpu._type.read() >> 8) & 0xff;
    if regions == 0 {
        return None;
    }
    let base = u32::try_from(base()).ok()?;
    let size_field = SIZE.trailing_zeros() - 1;
    scb.enable(Exception::MemoryManagement);
    // SAFETY: region 0 is the only region the firmware uses; `base` is
    // aligned to the region's size; the region covers reserved stack that
    // no code uses (stack::peak starts above it); PRIVDEFENA keeps the
    // default map for every other address, so nothing else changes.
    unsafe {
        mpu.rbar.write(base | RBAR_VALID | REGION);
        mpu.rasr.write(
            RASR_ENABLE
                | (size_field << RASR_SIZE_SHIFT)
                | RASR_NORMAL_WB_SHAREABLE
                | RASR_AP_NO_ACCESS
                | RASR_XN,
        );
        mpu.ctrl.write(CTRL_ENABLE | CTRL_PRIVDEFENA);
    }
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
    Some(regions)
}

/// Switches the MPU off, from a fault handler about to reset the device,
/// so that it may use the guard and the red zone as stack. Uses no stack.
#[inline(always)]
pub fn disarm() {
    // SAFETY: MPU_CTRL is a core register; clearing it restores the
    // default memory map, which the rest of the firmware was built for.
    unsafe { (*MPU::PTR).ctrl.write(0) };
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
}
