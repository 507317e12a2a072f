//! The I/O backend abstraction: operations with completion semantics, and choosing a backend.
//!
//! Owns the op vocabulary (accept, connect, recv, send of many segments, file read and write at
//! an offset, fdatasync, close, cancel, wake-up) and the [`IoKind`] selection with its io_uring probe. A backend
//! takes ownership of every buffer an op uses and gives it back only in the op's completion, so
//! the shard can never touch memory the kernel may still be using. Not here: protocol state.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::time::Duration;

use super::buffers::{BufferPool, PoolBuf};

#[cfg(test)]
mod backend_tests;
pub(crate) mod epoll;
pub(crate) mod uring;

/// Environment variable that picks the backend when the caller passes [`IoKind::Auto`].
pub const IO_ENV_VAR: &str = "RINGSEED_IO";

/// Most segments (iovecs) in one send. Control bytes plus 16 block messages (header and payload
/// each) fit with room to spare; Linux allows 1024 (UIO_MAXIOV).
pub const SEND_IOVECS_MAX: usize = 64;

/// Most bytes gathered into one send. Around 16 blocks: large enough to amortise the syscall and
/// the completion, small enough that one fast peer does not hog the shard between completions.
pub const SEND_BYTES_MAX: usize = 256 * 1024;

/// Which I/O backend a shard runs on.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum IoKind {
    /// io_uring with our own completion loop.
    Uring,
    /// epoll (through mio) emulating completions.
    Epoll,
    /// `RINGSEED_IO` if set, else io_uring when the kernel probe passes, else epoll.
    #[default]
    Auto,
}

impl std::str::FromStr for IoKind {
    type Err = String;
    fn from_str(s: &str) -> Result<IoKind, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "uring" | "io_uring" | "io-uring" => Ok(IoKind::Uring),
            "epoll" | "mio" => Ok(IoKind::Epoll),
            "auto" | "" => Ok(IoKind::Auto),
            other => Err(format!(
                "unknown I/O backend {other:?} (expected uring, epoll or auto)"
            )),
        }
    }
}

/// Decides the concrete backend for `requested`, consulting `env` (the value of
/// [`IO_ENV_VAR`]) when `requested` is Auto and calling `probe` only when still undecided.
///
/// Returns the backend and, when Auto fell back to epoll, the reason (the caller logs it once).
pub(crate) fn resolve_kind(
    requested: IoKind,
    env: Option<&str>,
    probe: impl FnOnce() -> Result<(), String>,
) -> Result<(IoKind, Option<String>), String> {
    let mut kind = requested;
    if kind == IoKind::Auto {
        if let Some(value) = env {
            kind = value.parse().map_err(|e| format!("{IO_ENV_VAR}: {e}"))?;
        }
    }
    match kind {
        IoKind::Uring | IoKind::Epoll => Ok((kind, None)),
        IoKind::Auto => match probe() {
            Ok(()) => Ok((IoKind::Uring, None)),
            Err(reason) => Ok((IoKind::Epoll, Some(reason))),
        },
    }
}

/// An opaque value the shard attaches to an op and gets back in its completion.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token(pub(crate) u64);

/// A receive buffer lent by the backend with received data; give it back with
/// [`Backend::recycle_recv`] once the bytes are consumed or copied.
#[derive(Debug)]
pub(crate) struct RecvBuf {
    pub(crate) id: u16,
    pub(crate) len: usize,
}

/// The memory behind one send segment.
pub(crate) enum Payload {
    /// Control bytes and block headers.
    Bytes(Vec<u8>),
    /// A block read from disk.
    Block(PoolBuf),
    /// A block from memory (piece cache).
    Shared(bytes::Bytes),
}

/// A segment of a connection's output: `payload[start..end]` is still to be sent.
pub(crate) struct Chunk {
    pub(crate) payload: Payload,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

impl Chunk {
    /// Bytes still to send.
    pub(crate) fn remaining(&self) -> usize {
        self.end - self.start
    }

    fn ptr(&self) -> *const u8 {
        let base = match &self.payload {
            Payload::Bytes(v) => v.as_ptr(),
            Payload::Block(b) => b.as_ptr(),
            Payload::Shared(b) => b.as_ptr(),
        };
        // SAFETY: start <= end <= the payload's length (maintained by whoever builds the chunk).
        unsafe { base.add(self.start) }
    }
}

/// Segments gathered into one send, plus the iovec array and message header the kernel reads.
///
/// Boxed and owned by the backend while in flight: the heap address (and so `iov` and `msg`)
/// does not move, and every segment's memory lives in `chunks`.
pub(crate) struct SendBatch {
    pub(crate) chunks: Vec<Chunk>,
    pub(crate) iov: Vec<libc::iovec>,
    pub(crate) msg: libc::msghdr,
}

impl SendBatch {
    /// An empty batch with room for [`SEND_IOVECS_MAX`] segments (allocated once, then reused).
    pub(crate) fn new() -> Box<SendBatch> {
        Box::new(SendBatch {
            chunks: Vec::with_capacity(SEND_IOVECS_MAX),
            iov: Vec::with_capacity(SEND_IOVECS_MAX),
            // SAFETY: msghdr is plain old data; all-zero is a valid empty header.
            msg: unsafe { std::mem::zeroed() },
        })
    }

    /// Total bytes the batch will try to send.
    pub(crate) fn total_bytes(&self) -> usize {
        self.chunks.iter().map(Chunk::remaining).sum()
    }

    /// Fills `iov` and `msg` from `chunks`. Called right before submission; nothing may change
    /// `chunks` afterwards until the completion.
    pub(crate) fn prepare(&mut self) {
        debug_assert!(self.chunks.len() <= SEND_IOVECS_MAX);
        self.iov.clear();
        for chunk in &self.chunks {
            self.iov.push(libc::iovec {
                iov_base: chunk.ptr() as *mut libc::c_void,
                iov_len: chunk.remaining(),
            });
        }
        // SAFETY: as in `new`.
        self.msg = unsafe { std::mem::zeroed() };
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = self.iov.len() as _;
    }
}

/// Why an op could not be submitted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubmitError {
    /// The op table is full; the table is sized so this means a runtime bug.
    #[error("op table full ({max} ops in flight)")]
    OpsFull { max: usize },
    /// The kernel refused the submission.
    #[error("submit failed: {0}")]
    Io(#[from] io::Error),
}

/// The result of one finished op, carrying back every buffer the op owned.
pub(crate) enum Completion {
    /// The listener registered with `token` accepted a connection.
    Accepted {
        token: Token,
        result: io::Result<OwnedFd>,
    },
    /// An outbound connect finished.
    Connected {
        token: Token,
        result: io::Result<()>,
    },
    /// A receive finished: `Ok(None)` is end of stream.
    Received {
        token: Token,
        result: io::Result<Option<RecvBuf>>,
    },
    /// A send finished: `Ok(n)` bytes went out (maybe fewer than the batch held).
    Sent {
        token: Token,
        batch: Box<SendBatch>,
        result: io::Result<usize>,
    },
    /// A file read finished: `Ok(n)` bytes were read into `buf` at the requested offset.
    FileRead {
        token: Token,
        buf: PoolBuf,
        result: io::Result<usize>,
    },
    /// A file write finished: `Ok(n)` bytes of `buf` reached the file (maybe fewer than asked).
    FileWritten {
        token: Token,
        buf: PoolBuf,
        result: io::Result<usize>,
    },
    /// An fdatasync finished.
    FileSynced {
        token: Token,
        result: io::Result<()>,
    },
    /// The wake-up eventfd was written (shutdown or a command is waiting).
    Woken,
}

/// One I/O backend. Every op either fails at submission (its buffers handed back in the error)
/// or produces exactly one [`Completion`] (an accept produces one per connection until the
/// listener is closed). Ops on one socket may complete in any order; the shard keeps at most one
/// receive and one send in flight per socket, which keeps the byte stream ordered.
pub(crate) trait Backend {
    /// Pool of block buffers for file reads (registered with the kernel where possible).
    fn block_pool(&self) -> &BufferPool;
    /// Pool of block buffers for file writes (registered with the kernel where possible).
    fn write_pool(&self) -> &BufferPool;
    /// Starts accepting on a listening socket; the shard keeps it open until shutdown.
    fn listen(&mut self, token: Token, fd: RawFd) -> Result<(), SubmitError>;
    /// Connects a fresh non-blocking socket to `addr`.
    fn connect(&mut self, token: Token, fd: RawFd, addr: SocketAddr) -> Result<(), SubmitError>;
    /// Receives into a buffer of the backend's receive pool.
    fn recv(&mut self, token: Token, fd: RawFd) -> Result<(), SubmitError>;
    /// The received bytes in `buf`.
    fn recv_data(&self, buf: &RecvBuf) -> &[u8];
    /// Gives a receive buffer back to the pool.
    fn recycle_recv(&mut self, buf: RecvBuf);
    /// Sends the batch's segments in order with one submission.
    fn send(
        &mut self,
        token: Token,
        fd: RawFd,
        batch: Box<SendBatch>,
    ) -> Result<(), (SubmitError, Box<SendBatch>)>;
    /// Reads `len` bytes at `offset` of file `fd` into `buf[buf_offset..]`.
    fn read_file(
        &mut self,
        token: Token,
        read: FileRead,
        buf: PoolBuf,
    ) -> Result<(), (SubmitError, PoolBuf)>;
    /// Writes `len` bytes of `buf[buf_offset..]` at `offset` of file `fd` (`buf` must come
    /// from [`Backend::write_pool`]). A short count is possible; the caller writes the rest.
    fn write_file(
        &mut self,
        token: Token,
        write: FileWrite,
        buf: PoolBuf,
    ) -> Result<(), (SubmitError, PoolBuf)>;
    /// Flushes the data of file `fd` to stable storage (fdatasync). It covers the writes that
    /// completed before it was submitted; writes still in flight may or may not be included.
    fn sync_file(&mut self, token: Token, fd: RawFd) -> Result<(), SubmitError>;
    /// Asks every op on `fd` to finish soon (they complete with an error or what they had).
    fn cancel_fd(&mut self, fd: RawFd);
    /// Closes a socket none of whose ops are still in flight.
    fn close(&mut self, fd: OwnedFd);
    /// Reports [`Completion::Woken`] whenever the eventfd `fd` is written.
    fn watch_wakeup(&mut self, fd: RawFd) -> Result<(), SubmitError>;
    /// Submits queued ops and waits up to `timeout` for at least one completion.
    fn wait(&mut self, out: &mut Vec<Completion>, timeout: Duration) -> io::Result<()>;
}

/// Where a file read goes.
#[derive(Copy, Clone, Debug)]
pub(crate) struct FileRead {
    pub(crate) fd: RawFd,
    pub(crate) offset: u64,
    pub(crate) buf_offset: usize,
    pub(crate) len: usize,
}

/// Where a file write comes from and goes to.
#[derive(Copy, Clone, Debug)]
pub(crate) struct FileWrite {
    pub(crate) fd: RawFd,
    pub(crate) offset: u64,
    pub(crate) buf_offset: usize,
    pub(crate) len: usize,
}

/// Sizes a backend is built with.
#[derive(Copy, Clone, Debug)]
pub(crate) struct BackendConfig {
    /// Receive buffers in the pool.
    pub(crate) recv_bufs: usize,
    /// Block buffers in the pool.
    pub(crate) block_bufs: usize,
    /// Write buffers in the pool.
    pub(crate) write_bufs: usize,
    /// Most ops in flight at once (the op table size).
    pub(crate) ops_max: usize,
}

/// Builds the backend for a resolved kind (`Uring` or `Epoll`).
pub(crate) fn build(kind: IoKind, cfg: BackendConfig) -> io::Result<Box<dyn Backend>> {
    match kind {
        IoKind::Uring => Ok(Box::new(uring::UringBackend::new(cfg)?)),
        IoKind::Epoll | IoKind::Auto => Ok(Box::new(epoll::EpollBackend::new(cfg)?)),
    }
}

/// Checks that io_uring can be set up and supports every opcode and feature the backend uses.
pub fn probe_uring() -> Result<(), String> {
    uring::probe()
}

/// Converts a syscall's `-errno` result into `io::Result`.
pub(crate) fn cqe_result(res: i32) -> io::Result<usize> {
    if res < 0 {
        Err(io::Error::from_raw_os_error(-res))
    } else {
        Ok(res as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_falls_back_to_epoll_when_probe_fails() {
        // A refused io_uring_setup (as under Docker's seccomp profile) selects epoll with a reason.
        let probe = || Err("io_uring_setup: Operation not permitted (EPERM)".to_string());
        let (kind, why) = resolve_kind(IoKind::Auto, None, probe).unwrap();
        assert_eq!(kind, IoKind::Epoll);
        assert!(why.unwrap().contains("EPERM"));
        let (kind, why) = resolve_kind(IoKind::Auto, None, || Ok(())).unwrap();
        assert_eq!((kind, why), (IoKind::Uring, None));
    }

    #[test]
    fn env_var_chooses_backend_only_for_auto() {
        // RINGSEED_IO is the default for Auto; an explicit choice wins; garbage is an error.
        let never = || -> Result<(), String> { panic!("probe must not run") };
        assert_eq!(
            resolve_kind(IoKind::Auto, Some("epoll"), never).unwrap().0,
            IoKind::Epoll
        );
        assert_eq!(
            resolve_kind(IoKind::Auto, Some("uring"), never).unwrap().0,
            IoKind::Uring
        );
        assert_eq!(
            resolve_kind(IoKind::Epoll, Some("uring"), never).unwrap().0,
            IoKind::Epoll
        );
        assert!(resolve_kind(IoKind::Auto, Some("kqueue"), never).is_err());
        let (kind, why) =
            resolve_kind(IoKind::Auto, Some("auto"), || Err("ENOSYS".into())).unwrap();
        assert_eq!(kind, IoKind::Epoll);
        assert_eq!(why.as_deref(), Some("ENOSYS"));
    }
}
