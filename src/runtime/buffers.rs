//! Fixed-size buffer pools allocated once at shard start-up.
//!
//! Owns the memory that the kernel reads into (file blocks, socket receives) and writes to files
//! from (received blocks in the write pool). A pool never grows: when it is empty the caller
//! gets `None` and must wait (backpressure), so memory stays bounded
//! no matter how many peers ask for data. It must not hand the same bytes to two owners.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::ptr::NonNull;
use std::rc::Rc;

/// Bytes of a BitTorrent block message header: 4-byte length, 1-byte id, 4-byte piece index,
/// 4-byte offset (BEP 3 `piece` message).
pub const BLOCK_HEADER_BYTES: usize = 13;

/// Largest block we read from disk and send in one message. Every mainstream client requests
/// 16 KiB blocks and BEP 3 lets a seeder refuse larger requests.
pub const BLOCK_BYTES_MAX: usize = 16 * 1024;

/// Size of one receive buffer. It must hold at least one whole block message (13-byte header +
/// 16 KiB block) so that a downloading connection can always make progress with one buffer; we
/// take twice that so a burst of small messages plus a block usually arrives in one receive.
pub const RECV_BUF_BYTES: usize = 32 * 1024;

/// Alignment of pool memory: a page, so block buffers are usable with O_DIRECT reads later.
const POOL_ALIGN_BYTES: usize = 4096;

const _: () = assert!(RECV_BUF_BYTES >= BLOCK_BYTES_MAX + BLOCK_HEADER_BYTES);
const _: () = assert!(BLOCK_BYTES_MAX.is_multiple_of(POOL_ALIGN_BYTES));

/// One contiguous, page-aligned allocation that holds `count` buffers of `buf_bytes` each.
///
/// The memory is only freed when the last `Rc<Region>` goes away; the io_uring backend keeps a
/// reference while the kernel may still write into it (see `io/uring.rs`).
pub(crate) struct Region {
    ptr: NonNull<u8>,
    layout: Layout,
    buf_bytes: usize,
    count: usize,
}

impl Region {
    /// Allocates `count` zeroed buffers of `buf_bytes` bytes.
    pub(crate) fn new(buf_bytes: usize, count: usize) -> Region {
        assert!(buf_bytes > 0 && count > 0, "empty buffer region");
        let total = buf_bytes
            .checked_mul(count)
            .expect("buffer region size overflows");
        let layout = Layout::from_size_align(total, POOL_ALIGN_BYTES).expect("bad layout");
        // SAFETY: the layout has a non-zero size (asserted above).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| alloc::handle_alloc_error(layout));
        Region {
            ptr,
            layout,
            buf_bytes,
            count,
        }
    }

    /// Start address of buffer `index`.
    pub(crate) fn buf_ptr(&self, index: usize) -> *mut u8 {
        assert!(
            index < self.count,
            "buffer index {index} out of {}",
            self.count
        );
        // SAFETY: index < count, so the offset stays inside the allocation.
        unsafe { self.ptr.as_ptr().add(index * self.buf_bytes) }
    }

    /// Start of the whole region (for registering it with io_uring).
    pub(crate) fn base_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Size of the whole region in bytes.
    pub(crate) fn total_bytes(&self) -> usize {
        self.layout.size()
    }

    /// Size of each buffer in bytes.
    pub(crate) fn buf_bytes(&self) -> usize {
        self.buf_bytes
    }

    /// Number of buffers.
    pub(crate) fn count(&self) -> usize {
        self.count
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

struct PoolInner {
    region: Region,
    free: RefCell<Vec<u32>>,
}

/// A bounded pool of equally sized buffers (block buffers for file reads).
///
/// Cloning the pool clones a handle to the same buffers. The pool is single-threaded (`Rc`):
/// each shard has its own, which is what keeps locks off the data path.
#[derive(Clone)]
pub struct BufferPool {
    inner: Rc<PoolInner>,
}

impl BufferPool {
    /// Allocates `count` buffers of `buf_bytes` bytes each, all free.
    pub fn new(buf_bytes: usize, count: usize) -> BufferPool {
        assert!(count <= u32::MAX as usize, "too many buffers");
        let region = Region::new(buf_bytes, count);
        let free = (0..count as u32).rev().collect();
        BufferPool {
            inner: Rc::new(PoolInner {
                region,
                free: RefCell::new(free),
            }),
        }
    }

    /// Takes a free buffer, or `None` when all are in use (the caller waits for one to come back).
    pub fn alloc(&self) -> Option<PoolBuf> {
        let index = self.inner.free.borrow_mut().pop()?;
        let ptr = NonNull::new(self.inner.region.buf_ptr(index as usize)).expect("null buffer");
        Some(PoolBuf {
            pool: Rc::clone(&self.inner),
            ptr,
            index,
        })
    }

    /// Buffers currently free.
    pub fn free_count(&self) -> usize {
        self.inner.free.borrow().len()
    }

    /// Buffers in the pool, free or not.
    pub fn capacity(&self) -> usize {
        self.inner.region.count()
    }

    /// Size of each buffer in bytes.
    pub fn buf_bytes(&self) -> usize {
        self.inner.region.buf_bytes()
    }

    /// True when `buf` came from this pool (and so lies inside its registered region).
    pub fn owns(&self, buf: &PoolBuf) -> bool {
        Rc::ptr_eq(&self.inner, &buf.pool)
    }

    /// Base address and length of the pool's memory, for io_uring buffer registration.
    pub(crate) fn raw_region(&self) -> (*mut u8, usize) {
        (
            self.inner.region.base_ptr(),
            self.inner.region.total_bytes(),
        )
    }
}

/// Exclusive ownership of one pool buffer; returns to its pool when dropped.
///
/// Whoever holds the `PoolBuf` is the only one who may touch its bytes. While a read or send is
/// in flight the backend's op table holds it, so the shard cannot touch it until the completion
/// hands it back.
pub struct PoolBuf {
    pool: Rc<PoolInner>,
    ptr: NonNull<u8>,
    index: u32,
}

impl PoolBuf {
    /// The whole buffer.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points at `buf_bytes` bytes inside a region kept alive by `pool`, and
        // this handle is the only owner of that range (the free list never holds it twice).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.pool.region.buf_bytes()) }
    }

    /// The whole buffer, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes this the only live reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.pool.region.buf_bytes()) }
    }

    /// Raw start pointer, for building iovecs and SQEs. Valid while `self` lives.
    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Raw start pointer for reading (send iovecs).
    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.pool.region.buf_bytes()
    }
}

impl Drop for PoolBuf {
    fn drop(&mut self) {
        let mut free = self.pool.free.borrow_mut();
        debug_assert!(
            !free.contains(&self.index),
            "buffer {} freed twice",
            self.index
        );
        free.push(self.index);
    }
}

impl std::fmt::Debug for PoolBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PoolBuf({})", self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_is_bounded_and_buffers_come_back_on_drop() {
        // An exhausted pool says no instead of growing, and a dropped buffer is reusable.
        let pool = BufferPool::new(BLOCK_BYTES_MAX, 2);
        let a = pool.alloc().expect("first");
        let mut b = pool.alloc().expect("second");
        assert!(pool.alloc().is_none());
        b.as_mut_slice()[0] = 7;
        assert_eq!(b.as_slice()[0], 7);
        assert_eq!(a.capacity(), BLOCK_BYTES_MAX);
        drop(a);
        assert_eq!(pool.free_count(), 1);
        assert!(pool.alloc().is_some());
        assert_eq!(pool.capacity(), 2);
    }

    #[test]
    fn receive_buffer_holds_a_whole_block_message() {
        // The largest message a downloading peer must parse at once fits one receive buffer.
        const { assert!(RECV_BUF_BYTES >= BLOCK_HEADER_BYTES + BLOCK_BYTES_MAX) };
    }
}
