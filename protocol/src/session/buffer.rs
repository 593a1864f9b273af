//! Byte buffers a session reads frames from and writes frames into.

/// Storage for a session's incoming or outgoing bytes.
///
/// Implemented for `heapless::Vec<u8, N>` (fixed memory, for devices) and,
/// with the `alloc` feature, for `Vec<u8>` (grows and shrinks, so an idle
/// gateway session holds almost nothing).
pub trait ByteBuffer {
    fn bytes(&self) -> &[u8];
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Appends `data` whole, or returns `false` and leaves the buffer as it was.
    fn try_extend(&mut self, data: &[u8]) -> bool;
    /// How many more bytes `try_extend` accepts.
    fn spare(&self) -> usize;
    fn truncate(&mut self, len: usize);
    /// Removes the first `n` bytes.
    fn drain_front(&mut self, n: usize);
}

impl<const N: usize> ByteBuffer for heapless::Vec<u8, N> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
    fn try_extend(&mut self, data: &[u8]) -> bool {
        self.extend_from_slice(data).is_ok()
    }
    fn spare(&self) -> usize {
        N - self.len()
    }
    fn truncate(&mut self, len: usize) {
        heapless::Vec::truncate(self, len);
    }
    fn drain_front(&mut self, n: usize) {
        let n = n.min(self.len());
        self.copy_within(n.., 0);
        let len = self.len() - n;
        heapless::Vec::truncate(self, len);
    }
}

#[cfg(feature = "alloc")]
impl ByteBuffer for alloc::vec::Vec<u8> {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        self
    }
    fn try_extend(&mut self, data: &[u8]) -> bool {
        self.extend_from_slice(data);
        true
    }
    fn spare(&self) -> usize {
        usize::MAX - self.len()
    }
    fn truncate(&mut self, len: usize) {
        alloc::vec::Vec::truncate(self, len);
    }
    fn drain_front(&mut self, n: usize) {
        self.drain(..n.min(self.len()));
        if self.is_empty() && self.capacity() > 0 {
            // An idle session should not keep the memory of its largest burst.
            *self = alloc::vec::Vec::new();
        }
    }
}
