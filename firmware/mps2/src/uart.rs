//! The CMSDK APB UART of the MPS2 boards, polled, with a receive interrupt
//! that only wakes the core from `wfi`.
//!
//! Registers (Arm CMSDK technical reference): DATA, STATE (bit 0 TX full,
//! bit 1 RX full), CTRL (bit 0 TX enable, bit 1 RX enable, bit 3 RX
//! interrupt enable), INTSTATUS (write 1 to clear), BAUDDIV.

use core::ptr::{read_volatile, write_volatile};

use crate::clock;

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const INTSTATUS: usize = 0x0C;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_ENABLE: u32 = 1 << 0;
const CTRL_RX_ENABLE: u32 = 1 << 1;
const CTRL_RX_INTERRUPT: u32 = 1 << 3;
const INT_RX: u32 = 1 << 1;

/// UART0: the console.
pub const UART0: usize = 0x4000_4000;
/// UART1: the link to the gateway.
pub const UART1: usize = 0x4000_5000;
/// UART1's receive interrupt on AN385.
pub const UART1_RX_IRQ: u16 = 2;

/// One UART. A handle is only an address, so the console can be written
/// from a panic handler and the link peeked while TLS owns it.
#[derive(Debug, Clone, Copy)]
pub struct Uart {
    base: usize,
}

impl Uart {
    /// Enables transmit and receive; `rx_interrupt` wakes `wfi` when a byte
    /// arrives.
    pub fn init(base: usize, rx_interrupt: bool) -> Uart {
        let uart = Uart { base };
        let interrupt = if rx_interrupt { CTRL_RX_INTERRUPT } else { 0 };
        // The divider only matters to real hardware: 25 MHz / 217 = 115200 baud.
        uart.write_reg(BAUDDIV, 217);
        uart.write_reg(CTRL, CTRL_TX_ENABLE | CTRL_RX_ENABLE | interrupt);
        // QEMU looks at its socket for input again only after a read of
        // DATA; without this one, the first bytes can wait there unseen.
        let _ = uart.read_reg(DATA);
        uart
    }

    /// A handle on a UART that [`Uart::init`] set up.
    pub const fn at(base: usize) -> Uart {
        Uart { base }
    }

    fn read_reg(self, offset: usize) -> u32 {
        // SAFETY: `base` is one of this board's UARTs and `offset` one of
        // its registers; MMIO reads have no side effect besides DATA's.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write_reg(self, offset: usize, value: u32) {
        // SAFETY: as in `read_reg`.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    pub fn write_byte(self, byte: u8) {
        while self.read_reg(STATE) & STATE_TX_FULL != 0 {}
        self.write_reg(DATA, u32::from(byte));
    }

    pub fn write_all(self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_byte(byte);
        }
    }

    /// Whether a received byte is waiting.
    pub fn has_byte(self) -> bool {
        self.read_reg(STATE) & STATE_RX_FULL != 0
    }

    pub fn try_read_byte(self) -> Option<u8> {
        if self.has_byte() {
            // Only the low 8 bits of DATA hold data.
            Some((self.read_reg(DATA) & 0xFF) as u8)
        } else {
            None
        }
    }

    /// Clears a pending receive interrupt (from the interrupt handler).
    pub fn clear_rx_interrupt(self) {
        self.write_reg(INTSTATUS, INT_RX);
    }
}

/// The link UART as an `embedded-io` byte stream for embedded-tls.
///
/// Reads block until at least one byte arrives, but give up with
/// `TimedOut` when nothing arrives for `read_timeout_ms`: a gateway that
/// went away mid-record must not hang the device. Writing never blocks for
/// long: the emulated UART sends at once.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    uart: Uart,
    read_timeout_ms: u64,
}

/// Why the link failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    TimedOut,
}

impl core::fmt::Display for LinkError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("the link stayed silent too long")
    }
}

impl core::error::Error for LinkError {}

impl embedded_io::Error for LinkError {
    fn kind(&self) -> embedded_io::ErrorKind {
        embedded_io::ErrorKind::TimedOut
    }
}

impl Link {
    pub fn new(uart: Uart, read_timeout_ms: u64) -> Link {
        Link {
            uart,
            read_timeout_ms,
        }
    }

    /// Throws away whatever the previous connection left in the receiver.
    pub fn discard_input(&self) {
        while self.uart.try_read_byte().is_some() {}
    }

    pub fn has_input(&self) -> bool {
        self.uart.has_byte()
    }
}

impl embedded_io::ErrorType for Link {
    type Error = LinkError;
}

impl embedded_io::Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, LinkError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = clock::now_ms().saturating_add(self.read_timeout_ms);
        let first = loop {
            if let Some(byte) = self.uart.try_read_byte() {
                break byte;
            }
            if clock::now_ms() >= deadline {
                return Err(LinkError::TimedOut);
            }
            clock::sleep_until_interrupt(|| self.uart.has_byte());
        };
        buf[0] = first;
        let mut n = 1;
        // Take what is there without waiting: QEMU hands over one byte per
        // read of DATA, so keep polling briefly while bytes keep coming.
        while n < buf.len() {
            match self.uart.try_read_byte() {
                Some(byte) => {
                    buf[n] = byte;
                    n += 1;
                }
                None => break,
            }
        }
        Ok(n)
    }
}

impl embedded_io::Write for Link {
    fn write(&mut self, buf: &[u8]) -> Result<usize, LinkError> {
        self.uart.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), LinkError> {
        Ok(())
    }
}
