//! The heap (for the agent, its stores and the WebAssembly runtime), with
//! a high-water mark so the console can report what the device really used.

use core::alloc::{GlobalAlloc, Layout};
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicUsize, Ordering};

use embedded_alloc::LlffHeap;

/// Bytes of heap. With the stack and statics it fills the 128 KiB of RAM
/// budgeted in `memory.x`; the linker fails if it does not fit.
pub const HEAP_SIZE: usize = 100 * 1024;

pub struct CountingHeap {
    heap: LlffHeap,
    used: AtomicUsize,
    peak: AtomicUsize,
}

#[global_allocator]
pub static HEAP: CountingHeap = CountingHeap {
    heap: LlffHeap::empty(),
    used: AtomicUsize::new(0),
    peak: AtomicUsize::new(0),
};

/// Hands the heap its memory; call once, first thing in `main`.
pub fn init() {
    static mut MEMORY: [MaybeUninit<u8>; HEAP_SIZE] = [MaybeUninit::uninit(); HEAP_SIZE];
    // SAFETY: called once before any allocation; MEMORY is used by nothing
    // else.
    unsafe { HEAP.heap.init(&raw mut MEMORY as usize, HEAP_SIZE) }
}

/// Bytes allocated now.
pub fn used() -> usize {
    HEAP.used.load(Ordering::Relaxed)
}

/// Most bytes ever allocated at once.
pub fn peak() -> usize {
    HEAP.peak.load(Ordering::Relaxed)
}

/// Bytes free now (as reported in heartbeats).
pub fn free() -> u32 {
    u32::try_from(HEAP_SIZE - used()).unwrap_or(0)
}

// SAFETY: every call is forwarded to LlffHeap, a correct allocator; the
// counters only observe.
unsafe impl GlobalAlloc for CountingHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { self.heap.alloc(layout) };
        if !ptr.is_null() {
            let used = self.used.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            self.peak.fetch_max(used, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.heap.dealloc(ptr, layout) };
        self.used.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}
