//! Time from SysTick: a 1 kHz interrupt counts milliseconds, the counter
//! register gives microseconds between ticks.
//!
//! Under QEMU's `-icount shift=0` the virtual clock advances one
//! nanosecond per guest instruction, so an interval measured here in
//! microseconds is thousands of instructions, exactly and repeatably.

use core::cell::Cell;

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use critical_section::Mutex;

/// The core clock of the MPS2 FPGA images (AN385: 25 MHz).
pub const CORE_HZ: u32 = 25_000_000;
const TICKS_PER_MS: u32 = CORE_HZ / 1000;
const TICKS_PER_US: u32 = CORE_HZ / 1_000_000;

static MILLIS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));
/// Ticks spent asleep in `wfi`, so that busy time can be told apart.
static SLEPT_TICKS: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));

/// Starts the millisecond tick.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(TICKS_PER_MS - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Called from the SysTick exception.
pub fn tick() {
    critical_section::with(|cs| {
        let millis = MILLIS.borrow(cs);
        millis.set(millis.get() + 1);
    });
}

/// Milliseconds since boot.
pub fn now_ms() -> u64 {
    critical_section::with(|cs| MILLIS.borrow(cs).get())
}

/// Core clock ticks (40 ns at 25 MHz) since boot.
pub fn now_ticks() -> u64 {
    loop {
        let before = now_ms();
        let current = SYST::get_current();
        if now_ms() == before && !cortex_m::peripheral::SCB::is_pendst_pending() {
            let into_ms = TICKS_PER_MS - 1 - current.min(TICKS_PER_MS - 1);
            return before * u64::from(TICKS_PER_MS) + u64::from(into_ms);
        }
    }
}

/// Microseconds since boot.
pub fn now_us() -> u64 {
    now_ticks() / u64::from(TICKS_PER_US)
}

/// Microseconds since boot that the core was not asleep. Under QEMU's
/// `-icount shift=0` a busy microsecond is exactly 1,000 instructions.
pub fn busy_us() -> u64 {
    let slept = critical_section::with(|cs| SLEPT_TICKS.borrow(cs).get());
    now_ticks().saturating_sub(slept) / u64::from(TICKS_PER_US)
}

/// Sleeps until an interrupt unless `ready` already holds. Interrupts are
/// masked while `ready` is checked, so one arriving in between still wakes
/// the core (a pending interrupt ends `wfi` even while masked).
pub fn sleep_until_interrupt(ready: impl Fn() -> bool) {
    let fell_asleep = now_ticks();
    cortex_m::interrupt::disable();
    let slept = !ready();
    if slept {
        cortex_m::asm::wfi();
    }
    // SAFETY: interrupts were enabled before this function (main runs with
    // them on) and nothing here relies on them staying off.
    unsafe { cortex_m::interrupt::enable() };
    if slept {
        let woke = now_ticks();
        critical_section::with(|cs| {
            let total = SLEPT_TICKS.borrow(cs);
            total.set(total.get() + woke.saturating_sub(fell_asleep));
        });
    }
}

/// Sleeps until `deadline_ms` or until `ready`.
pub fn sleep_until(deadline_ms: u64, ready: impl Fn() -> bool) {
    while now_ms() < deadline_ms && !ready() {
        sleep_until_interrupt(&ready);
    }
}

/// The clock behind the WebAssembly host API's `clock_ms` and the measured
/// run times.
#[derive(Debug, Clone, Copy, Default)]
pub struct SysTickClock;

impl wasmbed_agent::runtime::Clock for SysTickClock {
    fn now_us(&self) -> u64 {
        now_us()
    }
}
