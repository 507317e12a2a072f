//! Read-only windows onto files for [`ReadMode::Mmap`](super::ReadMode): each hash worker
//! keeps at most [`WINDOWS_PER_WORKER_MAX`] mappings of at most a window's size, so address
//! space and the mapping count (`vm.max_map_count`) stay bounded whatever the torrent holds.
//! Pages past a file's end are never mapped; a file that shrinks after mapping raises SIGBUS,
//! which only the guard in `sigbus` makes survivable (as a clean exit).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;

use super::pipeline::ReadProblem;

/// Largest window a worker maps: big enough that mapping, unmapping and the TLB shootdown
/// that comes with `munmap` cost nothing per byte, small enough that a few per worker stay
/// far below the address space of any 64-bit process.
pub(crate) const MMAP_WINDOW_BYTES_MAX: usize = 1 << 30;

/// Files shorter than this are read with `pread` even in mmap mode: one `mmap` + `munmap`
/// pair (page tables built and torn down, a TLB shootdown on the other cores) costs more
/// than copying a small file. `RINGSEED_BENCH_FILES=N cargo bench --bench hashing` (1 GiB,
/// 2 cores; mmap create/verify ratio with this threshold at 0 / 256 KiB / 512 KiB / 1 MiB,
/// pread alone for comparison): 4,096 files of 12-512 KiB: 0.70 / 0.76 / 0.78 / 0.80,
/// pread 0.80; 1,024 files of 12 KiB-2 MiB: 0.86 / 0.88 / 0.86 / 0.88, pread 0.84.
pub(crate) const MMAP_FILE_BYTES_MIN: u64 = 1 << 20;

/// Mappings a worker keeps alive at once: the file it is reading and the one before it, so a
/// piece that straddles a file boundary does not unmap the window the next piece needs. More
/// would only hold address space: workers walk the data front to back.
pub(crate) const WINDOWS_PER_WORKER_MAX: usize = 2;

/// One read-only mapping of `len` bytes of file `file`, starting at byte `start` (a multiple
/// of the page size). Unmapped on drop.
#[derive(Debug)]
pub(crate) struct Window {
    file: usize,
    start: u64,
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; moving it to another
// thread moves nothing but the address.
unsafe impl Send for Window {}

impl Window {
    /// Maps up to `window_bytes` of `file` (torrent file number `index`) from the page holding
    /// byte `pos`, never past the file's current end. Errors with `Truncated` when the file
    /// now ends at or before `pos`.
    pub(crate) fn map(
        file: &File,
        index: usize,
        pos: u64,
        window_bytes: usize,
    ) -> Result<Window, ReadProblem> {
        let file_len = file
            .metadata()
            .map_err(|e| ReadProblem::Io(e.to_string()))?
            .len();
        if pos >= file_len {
            return Err(ReadProblem::Truncated { file_len });
        }
        let start = pos - pos % page_bytes();
        let len = (file_len - start).min(window_bytes.max(1) as u64) as usize;
        // SAFETY: a fresh mapping at an address the kernel picks, of a file we hold open;
        // `len > 0` because `start <= pos < file_len`, and `start` is page-aligned.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                start as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(ReadProblem::Io(std::io::Error::last_os_error().to_string()));
        }
        // SAFETY: `ptr..ptr+len` is the mapping just made. The advice only tunes read-ahead
        // and reclaim; its failure changes nothing but speed. Measured on cached data (1 GiB,
        // 7 files, 2 cores): 0.96-0.98 of cores x single-core with or without it, and the same
        // with `MAP_POPULATE`, `MADV_WILLNEED` or `MADV_POPULATE_READ` per piece: page faults
        // are cheap next to hashing, so we keep only the hint that helps cold data, and no
        // populate, which would read a whole window ahead of the run a worker hashes.
        unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        let ptr = NonNull::new(ptr.cast()).expect("mmap never returns null on success");
        Ok(Window {
            file: index,
            start,
            ptr,
            len,
        })
    }

    /// The mapped bytes of file `file` from `pos` up to `end` (or the window's end, if
    /// sooner); `None` when `pos` is not inside this window.
    ///
    /// The bytes belong to a shared file mapping: another process may change them while we
    /// read (the hash then mixes old and new data, exactly as with `pread`, and `create`'s size
    /// checks or `verify`'s comparison catch it), and truncation makes a read raise SIGBUS.
    pub(crate) fn bytes(&self, file: usize, pos: u64, end: u64) -> Option<&[u8]> {
        let window_end = self.start + self.len as u64;
        if file != self.file || pos < self.start || pos >= window_end {
            return None;
        }
        let from = (pos - self.start) as usize;
        let to = (end.min(window_end) - self.start) as usize;
        // SAFETY: `from < to <= len`, so the range lies inside the live mapping, which lives as
        // long as `self`. The pages are never written through this process.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(from), to - from) })
    }

    /// Address of the first mapped byte, for tests that touch the mapping directly.
    #[cfg(test)]
    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `map` made; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A worker's live windows, most recently used last; never more than
/// [`WINDOWS_PER_WORKER_MAX`].
#[derive(Debug)]
pub(crate) struct Windows {
    window_bytes: usize,
    open: Vec<Window>,
}

impl Windows {
    /// No mapping yet; each new one covers up to `window_bytes`.
    pub(crate) fn new(window_bytes: usize) -> Windows {
        Windows {
            window_bytes,
            open: Vec::with_capacity(WINDOWS_PER_WORKER_MAX),
        }
    }

    /// The longest run of file `index`'s bytes from `pos` towards `end` that one mapping
    /// holds, mapping a new window (and unmapping the least recently used one) if needed.
    pub(crate) fn bytes(
        &mut self,
        file: &File,
        index: usize,
        pos: u64,
        end: u64,
    ) -> Result<&[u8], ReadProblem> {
        debug_assert!(pos < end, "empty reads never reach the windows");
        let hit = self
            .open
            .iter()
            .position(|w| w.bytes(index, pos, end).is_some());
        match hit {
            Some(i) => {
                let window = self.open.remove(i);
                self.open.push(window);
            }
            None => {
                if self.open.len() == WINDOWS_PER_WORKER_MAX {
                    // Unmap before mapping, so the bound holds at every instant.
                    self.open.remove(0);
                }
                self.open
                    .push(Window::map(file, index, pos, self.window_bytes)?);
            }
        }
        let window = self.open.last().expect("just pushed");
        Ok(window.bytes(index, pos, end).expect("window covers pos"))
    }

    /// Mappings alive now.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.open.len()
    }
}

/// The system page size; mapping offsets must be multiples of it.
fn page_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}
