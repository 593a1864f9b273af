//! Tiny test firmware for QEMU's `mps2-an385`, assembled here: a handful
//! of Thumb instructions in a minimal ELF, so that the manager's tests
//! need neither an Arm toolchain nor the real firmware.
//!
//! Layout: vector table at 0x0 (16 entries), code from 0x40, constant data
//! from 0x800, all in the code SSRAM; semihosting parameter blocks in RAM
//! at 0x2000_0000.

use std::collections::HashMap;

const CODE_BASE: u32 = 0x40;
const DATA_BASE: u32 = 0x800;
const STACK_TOP: u32 = 0x2000_1000;
const PARAMS: u32 = 0x2000_0000;

/// CMSDK APB UART0 and UART1.
pub(crate) const UART0: u32 = 0x4000_4000;
pub(crate) const UART1: u32 = 0x4000_5000;

/// UART register offsets and bits.
const DATA: u16 = 0;
const STATE: u16 = 4;
const CTRL: u16 = 8;

/// Semihosting operations.
const SYS_OPEN: u8 = 0x01;
const SYS_CLOSE: u8 = 0x02;
const SYS_WRITE: u8 = 0x05;
const SYS_EXIT: u8 = 0x18;
/// `ADP_Stopped_ApplicationExit`: QEMU exits with status 0.
pub(crate) const EXIT_SUCCESS: u32 = 0x20026;
/// `ADP_Stopped_RunTimeErrorUnknown`: QEMU exits with status 1.
pub(crate) const EXIT_FAILURE: u32 = 0x20023;

#[derive(Clone, Copy)]
enum Branch {
    Always,
    Cond(u16),
}
const EQ: u16 = 0;
const NE: u16 = 1;
const PL: u16 = 5;

/// A Thumb program being assembled.
pub(crate) struct Program {
    code: Vec<u16>,
    data: Vec<u8>,
    labels: HashMap<String, usize>,
    branches: Vec<(usize, String, Branch)>,
    next_label: usize,
}

fn reg(r: u16) -> u16 {
    assert!(r < 8, "only r0-r7");
    r
}

impl Program {
    /// A program whose first code is a fault handler (`wfi; b .-2`); the
    /// reset handler starts after it.
    pub(crate) fn new() -> Program {
        let mut program = Program {
            code: Vec::new(),
            data: Vec::new(),
            labels: HashMap::new(),
            branches: Vec::new(),
            next_label: 0,
        };
        program.label("fault");
        program.wfi();
        program.b("fault");
        program
    }

    fn here(&self) -> usize {
        self.code.len()
    }

    fn fresh(&mut self, name: &str) -> String {
        self.next_label += 1;
        format!("{name}.{}", self.next_label)
    }

    fn label(&mut self, name: &str) {
        let at = self.here();
        assert!(
            self.labels.insert(name.to_owned(), at).is_none(),
            "label {name} twice"
        );
    }

    fn emit(&mut self, halfword: u16) {
        self.code.push(halfword);
    }

    fn movs(&mut self, rd: u16, imm: u8) {
        self.emit(0x2000 | reg(rd) << 8 | u16::from(imm));
    }

    fn cmp(&mut self, rn: u16, imm: u8) {
        self.emit(0x2800 | reg(rn) << 8 | u16::from(imm));
    }

    fn adds(&mut self, rdn: u16, imm: u8) {
        self.emit(0x3000 | reg(rdn) << 8 | u16::from(imm));
    }

    fn lsls(&mut self, rd: u16, rm: u16, shift: u16) {
        assert!(shift < 32);
        self.emit(shift << 6 | reg(rm) << 3 | reg(rd));
    }

    fn ldr(&mut self, rt: u16, rn: u16, offset: u16) {
        assert!(offset % 4 == 0 && offset < 128);
        self.emit(0x6800 | (offset / 4) << 6 | reg(rn) << 3 | reg(rt));
    }

    fn str(&mut self, rt: u16, rn: u16, offset: u16) {
        assert!(offset % 4 == 0 && offset < 128);
        self.emit(0x6000 | (offset / 4) << 6 | reg(rn) << 3 | reg(rt));
    }

    fn ldrb(&mut self, rt: u16, rn: u16, offset: u16) {
        assert!(offset < 32);
        self.emit(0x7800 | offset << 6 | reg(rn) << 3 | reg(rt));
    }

    fn bkpt(&mut self, imm: u8) {
        self.emit(0xBE00 | u16::from(imm));
    }

    fn wfi(&mut self) {
        self.emit(0xBF30);
    }

    /// MOVW (and MOVT when needed): any 32-bit constant.
    fn mov32(&mut self, rd: u16, value: u32) {
        let halves = |opcode: u16, imm: u32| {
            let imm = u16::try_from(imm & 0xFFFF).unwrap_or_default();
            let imm4 = imm >> 12;
            let i = (imm >> 11) & 1;
            let imm3 = (imm >> 8) & 7;
            let imm8 = imm & 0xFF;
            [opcode | i << 10 | imm4, imm3 << 12 | reg(rd) << 8 | imm8]
        };
        let [a, b] = halves(0xF240, value);
        self.emit(a);
        self.emit(b);
        if value >> 16 != 0 {
            let [a, b] = halves(0xF2C0, value >> 16);
            self.emit(a);
            self.emit(b);
        }
    }

    fn b(&mut self, label: &str) {
        self.branches
            .push((self.here(), label.to_owned(), Branch::Always));
        self.emit(0);
    }

    fn b_cond(&mut self, cond: u16, label: &str) {
        self.branches
            .push((self.here(), label.to_owned(), Branch::Cond(cond)));
        self.emit(0);
    }

    /// Constant bytes; returns their address.
    fn constant(&mut self, bytes: &[u8]) -> u32 {
        while self.data.len() % 4 != 0 {
            self.data.push(0);
        }
        let address = DATA_BASE + u32::try_from(self.data.len()).unwrap_or_default();
        self.data.extend_from_slice(bytes);
        address
    }

    /// Sets a UART's CTRL register (1: TX, 3: TX and RX).
    pub(crate) fn uart_enable(&mut self, uart: u32, ctrl: u8) {
        self.mov32(0, uart);
        self.movs(1, ctrl);
        self.str(1, 0, CTRL);
        if ctrl & 2 != 0 {
            // Read DATA once: QEMU 7.2 only looks for input on the UART's
            // chardev again after a read of DATA (or another main-loop
            // event), so without this the first received byte can wait
            // forever.
            self.ldr(3, 0, DATA);
        }
    }

    /// Writes `text` to a UART (enabled before), polling TXFULL.
    pub(crate) fn print(&mut self, uart: u32, text: &str) {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        let address = self.constant(&bytes);
        let (next, wait, done) = (self.fresh("next"), self.fresh("wait"), self.fresh("done"));
        self.mov32(0, uart);
        self.mov32(2, address);
        self.label(&next);
        self.ldrb(3, 2, 0);
        self.adds(2, 1);
        self.cmp(3, 0);
        self.b_cond(EQ, &done);
        self.label(&wait);
        self.ldr(1, 0, STATE);
        self.lsls(1, 1, 31); // TXFULL (bit 0) into N and Z
        self.b_cond(NE, &wait);
        self.str(3, 0, DATA);
        self.b(&next);
        self.label(&done);
    }

    /// Echoes every byte received on a UART (enabled with RX before),
    /// forever.
    pub(crate) fn echo_forever(&mut self, uart: u32) {
        let (receive, transmit) = (self.fresh("rx"), self.fresh("tx"));
        self.mov32(0, uart);
        self.label(&receive);
        self.ldr(1, 0, STATE);
        self.lsls(1, 1, 30); // RXFULL (bit 1) into N
        self.b_cond(PL, &receive);
        self.ldr(3, 0, DATA);
        self.label(&transmit);
        self.ldr(1, 0, STATE);
        self.lsls(1, 1, 31);
        self.b_cond(NE, &transmit);
        self.str(3, 0, DATA);
        self.b(&receive);
    }

    /// Creates `name` in QEMU's working directory through semihosting and
    /// writes `contents` to it.
    pub(crate) fn write_file(&mut self, name: &str, contents: &str) {
        let name_address = self.constant(name.as_bytes());
        let contents_address = self.constant(contents.as_bytes());
        let name_len = u8::try_from(name.len()).expect("short name");
        let contents_len = u8::try_from(contents.len()).expect("short contents");
        // SYS_OPEN {name, mode 4 ("w"), length} -> handle in r0.
        self.mov32(1, PARAMS);
        self.mov32(2, name_address);
        self.str(2, 1, 0);
        self.movs(2, 4);
        self.str(2, 1, 4);
        self.movs(2, name_len);
        self.str(2, 1, 8);
        self.movs(0, SYS_OPEN);
        self.bkpt(0xAB);
        // SYS_WRITE {handle, buffer, length}.
        self.mov32(1, PARAMS);
        self.str(0, 1, 0);
        self.mov32(2, contents_address);
        self.str(2, 1, 4);
        self.movs(2, contents_len);
        self.str(2, 1, 8);
        self.movs(0, SYS_WRITE);
        self.bkpt(0xAB);
        // SYS_CLOSE {handle}: the block still starts with it.
        self.mov32(1, PARAMS);
        self.movs(0, SYS_CLOSE);
        self.bkpt(0xAB);
    }

    /// Ends the emulation through semihosting `SYS_EXIT`.
    pub(crate) fn exit(&mut self, reason: u32) {
        self.movs(0, SYS_EXIT);
        self.mov32(1, reason);
        self.bkpt(0xAB);
        self.b("fault");
    }

    /// Sleeps forever.
    pub(crate) fn idle(&mut self) {
        self.b("fault");
    }

    /// The program as an ELF image QEMU's `-kernel` loads.
    pub(crate) fn elf(mut self) -> Vec<u8> {
        let branches = std::mem::take(&mut self.branches);
        for (at, label, kind) in branches {
            let target = *self.labels.get(&label).expect("defined label");
            // Branch offsets count halfwords from the instruction + 4 bytes.
            let halfwords = i64::try_from(target).unwrap_or_default()
                - i64::try_from(at).unwrap_or_default()
                - 2;
            let encoded = i16::try_from(halfwords).expect("branch in range") as u16;
            self.code[at] = match kind {
                Branch::Always => {
                    assert!((-1024..1024).contains(&halfwords), "branch too far");
                    0xE000 | (encoded & 0x7FF)
                }
                Branch::Cond(cond) => {
                    assert!((-128..128).contains(&halfwords), "branch too far");
                    0xD000 | cond << 8 | (encoded & 0xFF)
                }
            };
        }
        let code_len = u32::try_from(self.code.len() * 2).unwrap_or(u32::MAX);
        assert!(CODE_BASE + code_len <= DATA_BASE, "code too long");
        let reset = CODE_BASE + 4; // after the fault handler
        let fault = CODE_BASE;
        let mut image = Vec::new();
        image.extend_from_slice(&STACK_TOP.to_le_bytes());
        image.extend_from_slice(&(reset | 1).to_le_bytes());
        for _ in 2..16 {
            image.extend_from_slice(&(fault | 1).to_le_bytes());
        }
        for halfword in &self.code {
            image.extend_from_slice(&halfword.to_le_bytes());
        }
        image.resize(DATA_BASE as usize, 0);
        image.extend_from_slice(&self.data);
        elf32(&image, reset | 1)
    }
}

/// A minimal little-endian ELF32 ARM executable: one loadable segment at
/// address 0.
fn elf32(image: &[u8], entry: u32) -> Vec<u8> {
    const HEADER: u32 = 52;
    const PROGRAM_HEADER: u32 = 32;
    let size = u32::try_from(image.len()).expect("small image");
    let mut elf = Vec::new();
    elf.extend_from_slice(&[0x7F, b'E', b'L', b'F', 1, 1, 1, 0]);
    elf.extend_from_slice(&[0; 8]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&40u16.to_le_bytes()); // EM_ARM
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&entry.to_le_bytes());
    elf.extend_from_slice(&HEADER.to_le_bytes()); // e_phoff
    elf.extend_from_slice(&0u32.to_le_bytes()); // e_shoff
    elf.extend_from_slice(&0x0500_0200u32.to_le_bytes()); // EABI 5, soft float
    elf.extend_from_slice(&52u16.to_le_bytes()); // e_ehsize
    elf.extend_from_slice(&32u16.to_le_bytes()); // e_phentsize
    elf.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    elf.extend_from_slice(&40u16.to_le_bytes()); // e_shentsize
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    elf.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    let offset = HEADER + PROGRAM_HEADER;
    for word in [1, offset, 0, 0, size, size, 7, 4] {
        // PT_LOAD, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, RWX, align
        elf.extend_from_slice(&u32::to_le_bytes(word));
    }
    elf.extend_from_slice(image);
    elf
}
