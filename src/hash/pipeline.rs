//! The parallel piece hasher: workers claim contiguous runs of pieces from a shared counter
//! and hash them, reading each piece's file spans either with `pread` into their own buffer or
//! straight from their own read-only mappings ([`ReadMode`]). No reader thread, no channel:
//! every worker does its own I/O, so nothing serialises the cores.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use sha1::{Digest, Sha1};

use super::mmap::{Windows, MMAP_FILE_BYTES_MIN, MMAP_WINDOW_BYTES_MAX};
use super::progress::Progress;
use super::sigbus::sigbus_guard_installed;
use super::HashError;
use crate::metainfo::{FileSpan, Layout, PieceIndex};

/// How hash workers read the data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadMode {
    /// `pread` into a per-worker buffer. Always safe: a file that shrinks or a disk error
    /// only makes the pieces it touches unreadable. Costs one kernel copy per byte, about 14%
    /// of all-core hashing speed on page-cached data.
    #[default]
    Pread,
    /// Map files of 1 MiB or more read-only, in windows of up to 1 GiB (at most two alive per
    /// worker), and hash straight from the page cache: no copy. Refused with
    /// [`HashError::SigbusGuardMissing`] unless [`install_sigbus_guard`](super::install_sigbus_guard)
    /// ran first, because a file that shrinks while mapped, or a disk read error on a mapped
    /// page, raises SIGBUS: the guard turns that into a one-line message and exit status 2
    /// for the whole process, instead of a per-piece error. `cargo bench --bench hashing`
    /// (1 GiB in 7 files, page cache, 2 cores), create and verify as a share of cores x
    /// single-core SHA-1: mmap 0.95-0.98, pread 0.85-0.87.
    Mmap,
}

/// Bytes each worker reads per `pread`. Small enough that the chunk the kernel just copied
/// is still in L2 when SHA-1 reads it, large enough that syscalls cost nothing measurable.
/// `cargo bench --bench hashing` (1 GiB, 2 cores, ratio to cores x single-core SHA-1):
/// 16 KiB 0.83, 32 KiB 0.85, 64 KiB 0.86, 128 KiB 0.86, 256 KiB 0.86, 1 MiB 0.82.
/// The remaining ~14% is the kernel's copy out of the page cache (about 10 GB/s against
/// SHA-NI's 1.6 GB/s per core here), which [`ReadMode::Mmap`] avoids; mapping and unmapping
/// each piece costs more than the copy (0.80), hence windows.
pub(crate) const READ_CHUNK_BYTES: usize = 128 * 1024;

/// Why a piece's bytes could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadProblem {
    /// The file does not exist (or could not be opened because a parent is not a directory).
    #[error("file is missing")]
    Missing,
    /// The path names a directory, FIFO, socket or device, not a regular file.
    #[error("not a regular file")]
    NotRegular,
    /// The file ends before the bytes the torrent expects.
    #[error("file ends at byte {file_len}, before the data this piece needs")]
    Truncated {
        /// Where the file ended.
        file_len: u64,
    },
    /// The file's size is not what the torrent (or the directory listing) says.
    #[error("file is {actual} bytes, expected {expected}")]
    WrongSize {
        /// Size the torrent needs.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// Another I/O error (permissions, media errors).
    #[error("{0}")]
    Io(String),
}

/// What hashing one piece produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PieceOutcome {
    /// The piece's SHA-1.
    Hashed([u8; 20]),
    /// The piece could not be read; `file` is the first file that failed.
    Unreadable { file: usize, problem: ReadProblem },
}

/// Opens `path` read-only and checks it is a regular file. `O_NONBLOCK` keeps a FIFO planted
/// where a file should be from blocking the open; it changes nothing for regular files.
pub(crate) fn open_regular(path: &Path) -> Result<File, ReadProblem> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => ReadProblem::Missing,
            _ => ReadProblem::Io(e.to_string()),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| ReadProblem::Io(e.to_string()))?;
    if !meta.is_file() {
        return Err(ReadProblem::NotRegular);
    }
    advise_sequential(&file);
    Ok(file)
}

/// Tells the kernel we read front to back, which doubles its read-ahead window for cold data.
/// Purely advisory: a failure changes nothing but speed.
fn advise_sequential(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads the fd, which `file` keeps open for the call.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

/// Most bytes a worker claims at once. Contiguous runs let each worker walk its own stretch of
/// the data front to back (reusing its mmap window, keeping read-ahead sequential); a run is
/// also never more than 1/([`RUN_SHARE_DIVISOR`] x threads) of the pieces left, so runs shrink
/// to single pieces at the end and every core stays busy to the last piece even when another
/// process slows one of them (guided scheduling).
const RUN_BYTES_MAX: u64 = 64 << 20;
/// See [`RUN_BYTES_MAX`].
const RUN_SHARE_DIVISOR: u32 = 4;

/// How workers get a piece's bytes: the public [`ReadMode`] once the guard check passed, plus
/// the window sizes (tests shrink them to exercise window boundaries on small files).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadPlan {
    /// `pread` every file into the worker's buffer.
    Pread,
    /// Map files of at least `file_bytes_min` bytes in windows of up to `window_bytes`; `pread`
    /// smaller ones.
    Mmap {
        window_bytes: usize,
        file_bytes_min: u64,
    },
}

impl ReadPlan {
    /// The plan for `mode` with production window sizes. `Mmap` is refused until the SIGBUS
    /// guard is installed: without it a file shrinking under a mapping kills the process.
    pub(crate) fn for_mode(mode: ReadMode) -> Result<ReadPlan, HashError> {
        match mode {
            ReadMode::Pread => Ok(ReadPlan::Pread),
            ReadMode::Mmap if sigbus_guard_installed() => Ok(ReadPlan::Mmap {
                window_bytes: MMAP_WINDOW_BYTES_MAX,
                file_bytes_min: MMAP_FILE_BYTES_MIN,
            }),
            ReadMode::Mmap => Err(HashError::SigbusGuardMissing),
        }
    }
}

/// Hashes every piece of `layout` reading from `files` (one per file of the layout, `None`
/// when it could not be opened) on `threads` workers. Results are in piece order.
pub(crate) fn hash_pieces(
    layout: &Layout,
    files: &[Option<File>],
    threads: usize,
    plan: ReadPlan,
    progress: &Progress,
) -> Vec<PieceOutcome> {
    assert_eq!(files.len(), layout.file_count(), "one handle slot per file");
    let piece_count = layout.piece_count() as usize;
    // No point waking more workers than there are pieces.
    let threads = threads.clamp(1, piece_count.max(1));
    let claims = Claims::new(layout, threads);
    let per_worker: Vec<Vec<(u32, PieceOutcome)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| worker(layout, files, plan, &claims, progress)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("hash worker panicked"))
            .collect()
    });
    let mut ordered: Vec<Option<PieceOutcome>> = vec![None; piece_count];
    for (index, outcome) in per_worker.into_iter().flatten() {
        debug_assert!(ordered[index as usize].is_none(), "piece hashed twice");
        ordered[index as usize] = Some(outcome);
    }
    ordered
        .into_iter()
        .map(|o| o.expect("every piece claimed by exactly one worker"))
        .collect()
}

/// The shared piece counter workers claim runs from; see [`RUN_BYTES_MAX`].
pub(crate) struct Claims {
    next: AtomicU32,
    piece_count: u32,
    run_pieces_max: u32,
    share_divisor: u32,
}

impl Claims {
    /// Runs for `threads` workers over every piece of `layout`.
    pub(crate) fn new(layout: &Layout, threads: usize) -> Claims {
        let run_pieces_max = RUN_BYTES_MAX / u64::from(layout.piece_length());
        Claims {
            next: AtomicU32::new(0),
            piece_count: layout.piece_count(),
            run_pieces_max: u32::try_from(run_pieces_max.max(1)).unwrap_or(u32::MAX),
            share_divisor: u32::try_from(threads).unwrap_or(u32::MAX) * RUN_SHARE_DIVISOR,
        }
    }

    /// The next run of pieces nobody has claimed, or `None` when all are taken.
    pub(crate) fn claim(&self) -> Option<Range<u32>> {
        let mut start = self.next.load(Ordering::Relaxed);
        loop {
            if start >= self.piece_count {
                return None;
            }
            let left = self.piece_count - start;
            let take = (left / self.share_divisor).clamp(1, self.run_pieces_max);
            match self.next.compare_exchange_weak(
                start,
                start + take,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(start..start + take),
                Err(now) => start = now,
            }
        }
    }
}

/// One worker: hashes the runs it claims until none is left.
fn worker(
    layout: &Layout,
    files: &[Option<File>],
    plan: ReadPlan,
    claims: &Claims,
    progress: &Progress,
) -> Vec<(u32, PieceOutcome)> {
    let mut reader = Reader::new(plan);
    let mut done = Vec::new();
    while let Some(run) = claims.claim() {
        for index in run {
            let piece = layout
                .piece(index)
                .expect("claims stay below the piece count");
            done.push((index, reader.hash_piece(layout, files, piece)));
            progress.add(u64::from(layout.piece_len(piece)));
        }
    }
    done
}

/// A worker's reading state: its `pread` buffer and, in mmap mode, its windows.
pub(crate) struct Reader {
    buf: Vec<u8>,
    /// `Some` in mmap mode.
    windows: Option<Windows>,
    /// Files shorter than this are read with `pread` even in mmap mode.
    mmap_file_bytes_min: u64,
}

impl Reader {
    /// A reader following `plan`; maps nothing until a piece needs it.
    pub(crate) fn new(plan: ReadPlan) -> Reader {
        let (windows, mmap_file_bytes_min) = match plan {
            ReadPlan::Pread => (None, u64::MAX),
            ReadPlan::Mmap {
                window_bytes,
                file_bytes_min,
            } => (Some(Windows::new(window_bytes)), file_bytes_min),
        };
        Reader {
            buf: vec![0u8; READ_CHUNK_BYTES],
            windows,
            mmap_file_bytes_min,
        }
    }

    /// Reads and hashes one piece, span by span: a piece straddling files feeds bytes from
    /// several windows and reads into one hasher.
    pub(crate) fn hash_piece(
        &mut self,
        layout: &Layout,
        files: &[Option<File>],
        piece: PieceIndex,
    ) -> PieceOutcome {
        let mut hasher = Sha1::new();
        for span in layout.spans(piece, 0, layout.piece_len(piece)) {
            let Some(file) = &files[span.file] else {
                return PieceOutcome::Unreadable {
                    file: span.file,
                    problem: ReadProblem::Missing,
                };
            };
            let mapped = layout.file_length(span.file) >= self.mmap_file_bytes_min;
            let result = match &mut self.windows {
                Some(windows) if mapped => hash_mapped(windows, file, span, &mut hasher),
                _ => hash_read(file, span, &mut self.buf, &mut hasher),
            };
            if let Err(problem) = result {
                return PieceOutcome::Unreadable {
                    file: span.file,
                    problem,
                };
            }
        }
        PieceOutcome::Hashed(hasher.finalize().into())
    }
}

/// Feeds `span` to `hasher` straight from the worker's windows.
fn hash_mapped(
    windows: &mut Windows,
    file: &File,
    span: FileSpan,
    hasher: &mut Sha1,
) -> Result<(), ReadProblem> {
    let end = span.offset + span.len;
    let mut pos = span.offset;
    while pos < end {
        let bytes = windows.bytes(file, span.file, pos, end)?;
        hasher.update(bytes);
        pos += bytes.len() as u64;
    }
    Ok(())
}

/// Feeds `span` to `hasher` through `buf`, one `pread` chunk at a time.
fn hash_read(
    file: &File,
    span: FileSpan,
    buf: &mut [u8],
    hasher: &mut Sha1,
) -> Result<(), ReadProblem> {
    let end = span.offset + span.len;
    let mut pos = span.offset;
    while pos < end {
        let want = (end - pos).min(buf.len() as u64) as usize;
        let chunk = &mut buf[..want];
        let n = read_full_at(file, chunk, pos).map_err(|e| ReadProblem::Io(e.to_string()))?;
        if n < want {
            // Report where the file really ends, as the mmap path does: after a read of
            // zero bytes, `pos + n` is only where we looked.
            let file_len = file.metadata().map_or(pos + n as u64, |m| m.len());
            return Err(ReadProblem::Truncated { file_len });
        }
        hasher.update(&chunk[..]);
        pos += want as u64;
    }
    Ok(())
}

/// Fills `buf` from `offset`; returns fewer bytes only at end of file.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
