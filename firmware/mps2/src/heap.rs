//! The heap: a general heap for the agent, its stores and the WebAssembly
//! runtime, and one block reserved for an application's linear memory.
//!
//! A WebAssembly page is 64 KiB, half of this device's RAM. In one shared
//! heap it needs 64 KiB *contiguous*, and after a transfer and a
//! compilation the free space is easily cut into smaller holes: the
//! allocation then fails although enough bytes are free. So the page gets
//! a reserved block that nothing else can fragment.
//!
//! While no application runs, the block holds the other large buffer: a
//! module's bytes, read from flash to be validated or compiled (the agent
//! frees them before the module's memory is allocated). Any allocation of
//! [`PAGE_BLOCK_MIN`] bytes or more takes the block when it is free; the
//! general heap then keeps its room for wasmi's own structures.
//!
//! Both report high-water marks so the console can say what the device
//! really used.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ptr::null_mut;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use embedded_alloc::LlffHeap;

/// Bytes of the general heap.
pub const HEAP_SIZE: usize = 36 * 1024;
/// Bytes of the block for a linear memory: one WebAssembly page.
pub const PAGE_BLOCK_SIZE: usize = 64 * 1024;
/// Allocations this large or larger take the page block when it is free.
pub const PAGE_BLOCK_MIN: usize = 8 * 1024;
/// Allocations this large or larger never go to the general heap.
const GENERAL_MAX: usize = HEAP_SIZE / 2;

#[repr(C, align(16))]
struct PageBlock(UnsafeCell<[MaybeUninit<u8>; PAGE_BLOCK_SIZE]>);

// SAFETY: the block is handed out to one owner at a time (see `in_use`).
unsafe impl Sync for PageBlock {}

pub struct DeviceHeap {
    heap: LlffHeap,
    page_block: PageBlock,
    page_block_in_use: AtomicBool,
    used: AtomicUsize,
    peak: AtomicUsize,
}

#[global_allocator]
pub static HEAP: DeviceHeap = DeviceHeap {
    heap: LlffHeap::empty(),
    page_block: PageBlock(UnsafeCell::new([MaybeUninit::uninit(); PAGE_BLOCK_SIZE])),
    page_block_in_use: AtomicBool::new(false),
    used: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
};

/// Hands the general heap its memory; call once, first thing in `main`.
pub fn init() {
    static mut MEMORY: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
    // SAFETY: called once before any allocation; MEMORY is used by nothing
    // else.
    unsafe { HEAP.heap.init(&raw mut MEMORY as usize, HEAP_SIZE) }
}

/// Bytes allocated now, both parts.
pub fn used() -> usize {
    HEAP.used.load(Ordering::Relaxed)
}

/// Most bytes ever allocated at once, both parts.
pub fn peak() -> usize {
    HEAP.peak.load(Ordering::Relaxed)
}

/// Bytes of both parts together.
pub const TOTAL: usize = HEAP_SIZE + PAGE_BLOCK_SIZE;

/// Bytes free now (as reported in heartbeats).
pub fn free() -> u32 {
    u32::try_from(TOTAL.saturating_sub(used())).unwrap_or(0)
}

impl DeviceHeap {
    fn page_block_start(&self) -> *mut u8 {
        self.page_block.0.get().cast()
    }

    fn owns_page_block(&self, ptr: *mut u8) -> bool {
        let start = self.page_block_start() as usize;
        (start..start + PAGE_BLOCK_SIZE).contains(&(ptr as usize))
    }

    fn count(&self, size: usize) {
        let used = self.used.fetch_add(size, Ordering::Relaxed) + size;
        self.peak.fetch_max(used, Ordering::Relaxed);
    }
}

// SAFETY: small allocations are forwarded to LlffHeap, a correct
// allocator; the page block is given to one allocation at a time, aligned
// to 16, and taken back only from its owner.
unsafe impl GlobalAlloc for DeviceHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let fits_block = layout.size() >= PAGE_BLOCK_MIN
            && layout.size() <= PAGE_BLOCK_SIZE
            && layout.align() <= 16;
        let ptr = if fits_block && !self.page_block_in_use.swap(true, Ordering::Acquire) {
            self.page_block_start()
        } else if layout.size() >= GENERAL_MAX {
            null_mut()
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { self.heap.alloc(layout) }
        };
        if !ptr.is_null() {
            self.count(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.owns_page_block(ptr) {
            self.page_block_in_use.store(false, Ordering::Release);
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { self.heap.dealloc(ptr, layout) };
        }
        self.used.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}
