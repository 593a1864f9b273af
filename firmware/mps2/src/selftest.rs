//! `stack-overflow-selftest`: a test image, never shipped, that proves the
//! stack guard. It boots like the firmware (heap, painted stack, guard
//! armed, console), prints its banner, then recurses without end. The
//! guard must stop it with `fatal: stack overflow (...)` and a reset,
//! after which it boots and overflows again, alternately in thread mode
//! (a MemManage fault, or a HardFault if the fault's own entry hits the
//! guard) and with interrupts masked (where MemManage cannot preempt: always
//! escalated to a HardFault). See host/emulator/tests/stack_guard.rs.
//!
//! It shares the firmware's modules, so the fault handlers under test are
//! the firmware's own; only the recursion is new.
#![no_std]
#![no_main]
// The shared modules have more than this image uses.
#![allow(dead_code)]

mod clock;
mod console;
mod fault;
mod guard;
mod heap;
mod stack;
mod uart;

use core::hint::black_box;
use core::mem::MaybeUninit;

use cortex_m_rt::entry;

use crate::uart::{UART0, Uart};

/// Marks [`BOOTS`] as counting, rather than left over from power-on.
const COUNTING: u32 = 0x5e1f_7e57;

/// `COUNTING` and the boots since: in RAM that the runtime does not
/// initialise, so the count survives the guard's resets (QEMU keeps RAM
/// across a system reset).
#[unsafe(link_section = ".uninit.selftest")]
static mut BOOTS: MaybeUninit<[u32; 2]> = MaybeUninit::uninit();

/// This boot's number, from 0.
fn count_boot() -> u32 {
    let words = (&raw mut BOOTS).cast::<u32>();
    // SAFETY: BOOTS is two words of RAM that only this function uses;
    // any bit pattern is a valid u32, initialised or not.
    unsafe {
        let boot = if words.read_volatile() == COUNTING {
            words.add(1).read_volatile()
        } else {
            0
        };
        words.write_volatile(COUNTING);
        words.add(1).write_volatile(boot.wrapping_add(1));
        boot
    }
}

#[entry]
fn main() -> ! {
    heap::init();
    stack::paint();
    let Some(mut core) = cortex_m::Peripherals::take() else {
        unreachable!("the core peripherals are taken once")
    };
    let regions = guard::arm(&core.MPU, &mut core.SCB);
    Uart::init(UART0, false);
    let boot = count_boot();
    let masked = boot % 2 == 1;
    println!(
        "stack-overflow-selftest: boot {boot}; MPU regions {regions:?}, guard {:#010x}..{:#010x}, red zone from {:#010x}; overflowing {}",
        guard::base(),
        guard::end(),
        stack::area_bottom(),
        if masked {
            "with interrupts masked"
        } else {
            "in thread mode"
        }
    );
    let depth = if masked {
        cortex_m::interrupt::free(|_| recurse(0))
    } else {
        recurse(0)
    };
    println!("stack-overflow-selftest: returned from depth {depth}: no guard");
    loop {
        cortex_m::asm::wfi();
    }
}

/// Goes deeper until the stack runs out: a frame with a buffer, kept by
/// `black_box` from being optimized into a loop or away.
#[inline(never)]
fn recurse(depth: u32) -> u32 {
    let mut frame = [0u8; 64];
    frame[0] = depth.to_le_bytes()[0];
    black_box(&mut frame);
    if black_box(depth) == u32::MAX {
        return depth;
    }
    recurse(depth + 1).wrapping_add(u32::from(frame[1]))
}
