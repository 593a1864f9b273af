//! Checked use of the pointers the C side passes.
//!
//! Each helper turns `NULL` into [`WbStatus::NullPointer`] and a pointer
//! that is not aligned for its type into [`WbStatus::InvalidArgument`];
//! what it can not check (that the memory is valid) is its caller's
//! contract, stated by the `# Safety` sections of the exported functions.

use crate::WbStatus;

fn check<T>(ptr: *const T) -> Result<(), WbStatus> {
    if ptr.is_null() {
        Err(WbStatus::NullPointer)
    } else if !ptr.is_aligned() {
        Err(WbStatus::InvalidArgument)
    } else {
        Ok(())
    }
}

/// Borrows `*ptr`.
///
/// # Safety
///
/// `ptr` is `NULL`, or valid for reads of a `T` that nothing writes to
/// during `'a`.
pub(crate) unsafe fn get<'a, T>(ptr: *const T) -> Result<&'a T, WbStatus> {
    check(ptr)?;
    // SAFETY: non-NULL and aligned (checked), valid for 'a (the caller's
    // contract).
    Ok(unsafe { &*ptr })
}

/// Borrows `*ptr` mutably.
///
/// # Safety
///
/// `ptr` is `NULL`, or valid for reads and writes of an initialized `T`
/// that nothing else accesses during `'a`.
pub(crate) unsafe fn get_mut<'a, T>(ptr: *mut T) -> Result<&'a mut T, WbStatus> {
    check(ptr)?;
    // SAFETY: non-NULL and aligned (checked), valid and unaliased for 'a
    // (the caller's contract).
    Ok(unsafe { &mut *ptr })
}

/// Writes `value` to `*ptr` without reading the old value, which may be
/// uninitialized.
///
/// # Safety
///
/// `ptr` is `NULL`, or valid for writes of a `T`.
pub(crate) unsafe fn put<T>(ptr: *mut T, value: T) -> Result<(), WbStatus> {
    check(ptr)?;
    // SAFETY: non-NULL and aligned (checked), valid for writes (the
    // caller's contract).
    unsafe { ptr.write(value) };
    Ok(())
}

/// Like [`put`], for an optional output: does nothing when `ptr` is `NULL`.
///
/// # Safety
///
/// As for [`put`].
pub(crate) unsafe fn put_opt<T>(ptr: *mut T, value: T) {
    if !ptr.is_null() {
        // SAFETY: the caller's contract; a misaligned pointer is ignored.
        let _ = unsafe { put(ptr, value) };
    }
}

/// The `len` bytes at `ptr`. `NULL` is allowed when `len` is 0.
///
/// # Safety
///
/// `ptr` is `NULL`, or valid for reads of `len` bytes that nothing writes
/// to during `'a`.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8], WbStatus> {
    if len == 0 {
        return Ok(&[]);
    }
    check(ptr)?;
    if len > isize::MAX as usize {
        return Err(WbStatus::InvalidArgument);
    }
    // SAFETY: non-NULL, `len` fits an allocation, valid for 'a (the
    // caller's contract).
    Ok(unsafe { core::slice::from_raw_parts(ptr, len) })
}

/// The `len` bytes at `ptr`, for writing. `NULL` is refused even when `len`
/// is 0, so that a missing output buffer is reported.
///
/// # Safety
///
/// `ptr` is `NULL`, or valid for reads and writes of `len` bytes that
/// nothing else accesses during `'a`.
pub(crate) unsafe fn bytes_mut<'a>(ptr: *mut u8, len: usize) -> Result<&'a mut [u8], WbStatus> {
    check(ptr)?;
    if len > isize::MAX as usize {
        return Err(WbStatus::InvalidArgument);
    }
    // SAFETY: non-NULL, `len` fits an allocation, valid and unaliased for
    // 'a (the caller's contract).
    Ok(unsafe { core::slice::from_raw_parts_mut(ptr, len) })
}
