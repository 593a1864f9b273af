//! Wasmbed device firmware for the Arm MPS2 AN385 board (Cortex-M3), as
//! emulated by QEMU's `mps2-an385` machine.
//!
//! - UART0: the console (see `docs/firmware.md` for its lines).
//! - UART1: the link, a raw byte stream to the gateway carrying TLS 1.3
//!   (the emulator manager bridges it to the gateway's TCP port).
//! - SysTick: the clock; the UART1 receive interrupt wakes the core.
//! - Storage: `provision.bin` (read-only) and `flash.bin` on the host
//!   through semihosting, behind the agent's NOR-flash stores.
#![no_std]
#![no_main]

extern crate alloc;

mod clock;
mod console;
mod device;
mod entropy;
mod fault;
mod guard;
mod heap;
mod semihosting;
mod stack;
mod tls;
mod uart;

use alloc::boxed::Box;

use cortex_m::peripheral::NVIC;
use cortex_m_rt::{entry, exception};
use wasmbed_agent::console::IdentityLine;
use wasmbed_agent::flash::{FlashKeyStore, FlashLayout, FlashModuleStore};
use wasmbed_agent::provisioning::Provisioning;
use wasmbed_agent::runtime::{WasmiConfig, WasmiRuntime};
use wasmbed_agent::storage::ModuleStore;
use wasmbed_agent::x509::GatewayAnchor;
use wasmbed_agent::{Agent, AgentConfig};
use wasmbed_protocol::frame::MAX_FRAME_LEN;
use wasmbed_protocol::session::DeviceConfig;
use wasmbed_protocol::{DeviceInfo, Name};

use crate::device::Device;
use crate::semihosting::{FileFlash, HostFile, SECTOR_U32};
use crate::uart::{Link, UART0, UART1, UART1_RX_IRQ, Uart};

const BOARD: &str = "mps2-an385";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Module slots in `flash.bin` (laid out by `FlashLayout`, as on Zephyr).
const SLOTS: u32 = 2;
/// Largest module, in bytes.
const MAX_MODULE: u32 = 16 * 1024;

/// Memory a WebAssembly application may use: one 64 KiB page.
const APP_MEMORY: u32 = 64 * 1024;
/// Most fuel a deployment may ask for.
const MAX_FUEL: u64 = 50_000_000;
/// How long the link may stay silent in the middle of a TLS record.
const LINK_READ_TIMEOUT_MS: u64 = 5_000;

#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: 2 is a valid interrupt number of the AN385 (UART1 receive).
unsafe impl cortex_m::interrupt::InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

#[entry]
fn main() -> ! {
    heap::init();
    stack::paint();
    setup().run()
}

/// Everything before the main loop, in a frame of its own: building the
/// agent takes stack that the loop should not keep.
#[inline(never)]
fn setup() -> Device {
    let Some(mut core) = cortex_m::Peripherals::take() else {
        halt("core peripherals taken twice")
    };
    // First, with the stack painted: an overflow from here on faults.
    let guard = match guard::arm(&core.MPU, &mut core.SCB) {
        Some(_) => "on",
        None => "off (no MPU)",
    };
    clock::start(core.SYST);
    Uart::init(UART0, false);
    let link = Uart::init(UART1, true);
    // SAFETY: the handler (DefaultHandler) only clears the UART's
    // interrupt flag; no critical section depends on it being masked.
    unsafe { NVIC::unmask(Irq(UART1_RX_IRQ)) };

    println!("wasmbed-mps2 {VERSION} on {BOARD}: booting");
    let provisioning = match semihosting::read_file("provision.bin") {
        Ok(bytes) => Box::leak(bytes.into_boxed_slice()),
        Err(_) => halt("no provision.bin: start the device with `wasmbed emulator run`"),
    };
    let Ok(provisioning) = Provisioning::decode(provisioning) else {
        halt("provision.bin is not a valid provisioning record")
    };
    let anchor = match GatewayAnchor::new(provisioning.gateway_ca) {
        Ok(anchor) => anchor,
        Err(e) => halt_with("the provisioned gateway CA is unusable", e),
    };
    let Ok(flash) = HostFile::open_or_create("flash.bin") else {
        halt("cannot open or create flash.bin")
    };
    let Some(layout) = FlashLayout::new(SECTOR_U32, SLOTS, MAX_MODULE) else {
        halt("the flash layout does not fit 4 GiB")
    };
    if flash.extend_erased(layout.size() as usize).is_err() {
        halt("cannot write flash.bin");
    }
    let partition =
        |range: core::ops::Range<u32>| FileFlash::new(flash, range.start as usize, range.len());
    let rng = entropy::generator(
        &provisioning.entropy_seed,
        &mut partition(layout.seed.clone()),
    );
    let keys = match FlashKeyStore::new(partition(layout.keys.clone())) {
        Ok(keys) => keys,
        Err(e) => halt_with("the key store in flash.bin cannot be opened", e),
    };
    let modules = match FlashModuleStore::new(
        partition(layout.modules.clone()),
        SLOTS as usize,
        MAX_MODULE,
    ) {
        Ok(modules) => modules,
        Err(e) => halt_with("the module store in flash.bin cannot be opened", e),
    };
    let runtime = WasmiRuntime::new(
        WasmiConfig {
            max_stack_height: 1024,
            ..WasmiConfig::default()
        },
        clock::SysTickClock,
    );
    let agent = match Agent::new(agent_config(), keys, modules, runtime) {
        Ok(agent) => Box::new(agent),
        Err(e) => halt_with("the agent cannot start", e),
    };
    println!(
        "boot: device {}, {}, {} app(s) installed, heap {} of {} B used, stack {} of {} B used, stack guard {guard}",
        provisioning.device_name,
        IdentityLine(agent.identity()),
        agent.store().apps().len(),
        heap::used(),
        heap::TOTAL,
        stack::peak(),
        stack::size()
    );
    Device {
        agent,
        provisioning,
        anchor,
        rng,
        link: Link::new(link, LINK_READ_TIMEOUT_MS),
    }
}

fn agent_config() -> AgentConfig {
    let mut config = AgentConfig::new(DeviceInfo {
        board: name(BOARD),
        firmware_version: name(VERSION),
    });
    config.session = DeviceConfig {
        max_frame_len: MAX_FRAME_LEN,
        response_timeout_ms: 5_000,
    };
    config.app_memory = APP_MEMORY;
    config.max_fuel = MAX_FUEL;
    config.free_memory = heap::free;
    config
}

fn name(s: &str) -> Name {
    let mut name = Name::new();
    // The board and version strings are short constants.
    let _ = name.push_str(s);
    name
}

fn halt(why: &str) -> ! {
    println!("fatal: {why}");
    semihosting::exit(false)
}

fn halt_with(why: &str, e: impl core::fmt::Display) -> ! {
    println!("fatal: {why}: {e}");
    semihosting::exit(false)
}

#[exception]
fn SysTick() {
    clock::tick();
}

#[exception]
unsafe fn DefaultHandler(irq: i16) {
    if irq == UART1_RX_IRQ as i16 {
        Uart::at(UART1).clear_rx_interrupt();
    }
}
