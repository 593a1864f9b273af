//! With `c-heap`, the Rust heap on bare metal is the C library's: one arena for C and
//! Rust, sized by the application (Zephyr's
//! `CONFIG_COMMON_LIBC_MALLOC_ARENA_SIZE`).

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

unsafe extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn aligned_alloc(alignment: usize, size: usize) -> *mut c_void;
    fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn free(ptr: *mut c_void);
}

/// `malloc` aligns for every fundamental type (8 bytes on Cortex-M).
const MALLOC_ALIGN: usize = 8;

struct CHeap;

// SAFETY: the C functions return memory of at least the requested size and
// alignment or NULL, which `GlobalAlloc` callers treat as failure.
unsafe impl GlobalAlloc for CHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: any size may be asked of malloc.
            unsafe { malloc(layout.size()).cast() }
        } else {
            // C11 wants the size to be a multiple of the alignment.
            let size = layout.size().next_multiple_of(layout.align());
            // SAFETY: the alignment is a power of two and divides the size.
            unsafe { aligned_alloc(layout.align(), size).cast() }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from malloc or aligned_alloc above.
        unsafe { free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: `ptr` came from malloc; realloc keeps malloc's alignment.
            unsafe { realloc(ptr.cast(), new_size).cast() }
        } else {
            // SAFETY: the default moves the bytes through alloc and dealloc.
            unsafe {
                let new = self.alloc(Layout::from_size_align_unchecked(new_size, layout.align()));
                if !new.is_null() {
                    core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                new
            }
        }
    }
}

#[global_allocator]
static HEAP: CHeap = CHeap;
