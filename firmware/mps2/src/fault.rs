//! Faults and panics. While running, they reset the device, as a watchdog
//! would on real hardware: the identity and installed modules are in
//! flash, and an application that was running is reported failed after the
//! reset. (Errors in the provisioning at boot stop the emulation instead: a
//! reset would not fix them.)
//!
//! A stack overflow hits the guard (see `guard`) and is reported as such,
//! whether it arrives as a MemManage fault or, when MemManage cannot
//! preempt (an overflow in an interrupt handler, in a critical section, or
//! in the MemManage handler's own entry), escalated to a HardFault. Those
//! reports run on the red zone below the guard, so they print without
//! `core::fmt`.

use cortex_m::peripheral::SCB;
use cortex_m_rt::{ExceptionFrame, exception};

use crate::{console, guard};

/// `CFSR`'s MemManage bits (its low byte).
const MMFSR: u32 = 0xff;
const MMFSR_DACCVIOL: u32 = 1 << 1;
const MMFSR_MSTKERR: u32 = 1 << 4;
const MMFSR_MMARVALID: u32 = 1 << 7;

/// What the MemManage status registers record.
enum MemFault {
    /// Nothing.
    None,
    /// The stack guard was hit: at this address, or (`None`) while the
    /// core stacked an exception frame, which records no address.
    Overflow(Option<u32>),
    /// Another MemManage fault: the status bits and, if valid, the address.
    Other(u32, Option<u32>),
}

fn mem_fault() -> MemFault {
    // SAFETY: reading the core's fault status registers has no side effect.
    let scb = unsafe { &*SCB::PTR };
    let status = scb.cfsr.read() & MMFSR;
    let address = (status & MMFSR_MMARVALID != 0).then(|| scb.mmfar.read());
    match address {
        Some(at) if status & MMFSR_DACCVIOL != 0 && guard::contains(at as usize) => {
            MemFault::Overflow(Some(at))
        }
        // The guard is the only region the MPU forbids: a stacking fault
        // can only be the guard's.
        _ if status & MMFSR_MSTKERR != 0 => MemFault::Overflow(None),
        _ if status == 0 => MemFault::None,
        _ => MemFault::Other(status, address),
    }
}

/// `fatal: stack overflow (MemManage at 0x2001a240); resetting`, and the
/// reset.
#[inline(never)]
fn stack_overflow(at: Option<u32>, escalated: bool) -> ! {
    console::raw_str("fatal: stack overflow (MemManage ");
    match at {
        Some(at) => {
            console::raw_str("at ");
            console::raw_hex(at);
        }
        None => console::raw_str("while stacking an exception"),
    }
    if escalated {
        console::raw_str(", escalated to a hard fault");
    }
    console::raw_str("); resetting\n");
    SCB::sys_reset()
}

#[exception]
fn MemoryManagement() -> ! {
    // First, before this handler needs more stack than its entry took:
    // the guard off, so that it can grow into the guard and the red zone.
    // (If the entry itself hit the guard, this is a HardFault instead.)
    guard::disarm();
    match mem_fault() {
        MemFault::Overflow(at) => stack_overflow(at, false),
        MemFault::Other(status, address) => other_mem_fault(status, address),
        MemFault::None => other_mem_fault(0, None),
    }
}

/// A MemManage fault that is not the guard's (executing from a region the
/// default map marks XN).
#[inline(never)]
fn other_mem_fault(status: u32, address: Option<u32>) -> ! {
    console::raw_str("fatal: memory management fault (MMFSR ");
    console::raw_hex(status);
    if let Some(address) = address {
        console::raw_str(" at ");
        console::raw_hex(address);
    }
    console::raw_str("); resetting\n");
    SCB::sys_reset()
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    // The MPU does not apply to this handler's own accesses (HFNMIENA is
    // clear), but a frame stacked into the guard was not written: its pc is
    // not worth printing then.
    guard::disarm();
    if let MemFault::Overflow(at) = mem_fault() {
        stack_overflow(at, true)
    }
    hard_fault(frame.pc())
}

#[inline(never)]
fn hard_fault(pc: u32) -> ! {
    console::raw_line(format_args!(
        "fatal: hard fault at pc {pc:#010x}; resetting"
    ));
    SCB::sys_reset()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::raw_line(format_args!("fatal: panic: {info}; resetting"));
    SCB::sys_reset()
}
