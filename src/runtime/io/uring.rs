//! io_uring backend: our own submission/completion loop over the `io-uring` crate.
//!
//! Owns the ring, the op table, the receive buffer group and the registration of the block and
//! write pools (fixed buffers 0 and 1).
//!
//! Memory-safety invariants (the reason this file has `unsafe`):
//! 1. Every SQE that points at memory has `user_data` = the index of an entry in `ops` that owns
//!    that memory (a `PoolBuf`, a boxed `SendBatch` with its iovecs and msghdr, a boxed socket
//!    address) or points into memory owned by the backend itself (receive region, wake buffer).
//! 2. An `ops` entry is removed only when its final CQE arrives (for multishot accept: the CQE
//!    without `IORING_CQE_F_MORE`). Until then nobody else can reach the memory it owns.
//! 3. Boxed payloads never move while in flight; the op table is preallocated to `ops_max` and
//!    never grows past it, so entries never move either.
//! 4. Receive buffers belong to the kernel from `ProvideBuffers` until a CQE selects one; the
//!    shard then holds a `RecvBuf` until `recycle_recv` provides it again.
//! 5. On drop, every in-flight op is cancelled and its CQE awaited before memory is freed; if the
//!    kernel does not answer in time the memory is leaked rather than freed under it.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant as StdInstant};

use io_uring::types::{CancelBuilder, Fd, FsyncFlags, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};
use slab::Slab;

use super::{
    cqe_result, Backend, BackendConfig, Completion, FileRead, FileWrite, RecvBuf, SendBatch,
    SubmitError, Token,
};
use crate::runtime::buffers::{BufferPool, PoolBuf, Region, BLOCK_BYTES_MAX, RECV_BUF_BYTES};

/// `user_data` of SQEs that own nothing and whose result we only log (provide, close, cancel).
const UD_INTERNAL: u64 = u64::MAX;

/// Buffer group id of the receive pool.
const RECV_GROUP: u16 = 1;

/// Submission queue entries. Full queues are flushed with `submit` and refilled, so this only
/// trades syscalls for memory; 1024 covers a busy loop iteration in one `io_uring_enter`.
const SQ_ENTRIES: u32 = 1024;

/// Completion queue entries: 4x the submission queue because multishot accepts and bursts of
/// finished reads produce more completions than one iteration submitted. Overflow is not lost
/// (IORING_FEAT_NODROP) but costs a slow path.
const CQ_ENTRIES: u32 = 4 * SQ_ENTRIES;

/// Fixed-buffer index of the block pool (reads).
const FIXED_BLOCK_POOL: u16 = 0;

/// Fixed-buffer index of the write pool.
const FIXED_WRITE_POOL: u16 = 1;

/// How long `drop` waits for cancelled ops before leaking their memory instead.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Opcodes the backend uses; the probe fails if any is missing.
const REQUIRED_OPCODES: &[(u8, &str)] = &[
    (opcode::Accept::CODE, "ACCEPT"),
    (opcode::Connect::CODE, "CONNECT"),
    (opcode::Recv::CODE, "RECV"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::Read::CODE, "READ"),
    (opcode::ReadFixed::CODE, "READ_FIXED"),
    (opcode::Write::CODE, "WRITE"),
    (opcode::WriteFixed::CODE, "WRITE_FIXED"),
    (opcode::Fsync::CODE, "FSYNC"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::ProvideBuffers::CODE, "PROVIDE_BUFFERS"),
];

/// What an in-flight op owns until its final CQE.
enum Op {
    Accept {
        token: Token,
        fd: RawFd,
        multishot: bool,
    },
    Connect {
        token: Token,
        _addr: Box<socket2::SockAddr>,
    },
    Recv {
        token: Token,
        fd: RawFd,
    },
    Send {
        token: Token,
        batch: Box<SendBatch>,
    },
    Read {
        token: Token,
        buf: PoolBuf,
    },
    Write {
        token: Token,
        buf: PoolBuf,
    },
    Sync {
        token: Token,
    },
    Wake {
        fd: RawFd,
    },
}

/// The io_uring backend of one shard.
pub(crate) struct UringBackend {
    ring: IoUring,
    ops: Slab<Op>,
    ops_max: usize,
    /// Receive buffers, handed to the kernel as buffer group `RECV_GROUP`.
    recv_region: Region,
    block_pool: BufferPool,
    write_pool: BufferPool,
    /// The block pool is registered as fixed buffer 0, so reads use READ_FIXED (no page
    /// pinning per op).
    fixed_reads: bool,
    /// The write pool is registered as fixed buffer 1, so writes use WRITE_FIXED.
    fixed_writes: bool,
    /// Recv ops that found the buffer group empty (ENOBUFS); resubmitted as buffers return.
    starved: VecDeque<usize>,
    /// Completions produced without a CQE (cancelled starved receives).
    synthetic: Vec<Completion>,
    /// 8-byte target of the wake-up eventfd read; boxed so its address is stable.
    wake_buf: Box<[u8; 8]>,
    cqes: Vec<(u64, i32, u32)>,
}

/// Checks that io_uring can be set up here and supports what the backend needs.
pub(crate) fn probe() -> Result<(), String> {
    let ring = IoUring::new(8).map_err(|e| describe_setup_error(&e))?;
    if !ring.params().is_feature_ext_arg() {
        return Err("io_uring lacks IORING_FEAT_EXT_ARG (kernel older than 5.11)".into());
    }
    let mut probe = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("io_uring opcode probe failed: {e}"))?;
    for (code, name) in REQUIRED_OPCODES {
        if !probe.is_supported(*code) {
            return Err(format!(
                "io_uring opcode IORING_OP_{name} not supported by this kernel"
            ));
        }
    }
    Ok(())
}

fn describe_setup_error(e: &io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::ENOSYS) => " (ENOSYS: kernel without io_uring)",
        Some(libc::EPERM) => " (EPERM: forbidden, e.g. by a seccomp profile or sysctl)",
        _ => "",
    };
    format!("io_uring_setup failed: {e}{hint}")
}

impl UringBackend {
    /// Sets up the ring, provides the receive buffers and registers the block pool.
    pub(crate) fn new(cfg: BackendConfig) -> io::Result<UringBackend> {
        assert!(cfg.recv_bufs > 0 && cfg.recv_bufs <= usize::from(u16::MAX));
        // SINGLE_ISSUER + DEFER_TASKRUN (6.1+) run completion work only when we wait, in one batch;
        // older kernels reject them with EINVAL, so retry with only the CQ size.
        let ring: IoUring = IoUring::builder()
            .setup_cqsize(CQ_ENTRIES)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(SQ_ENTRIES)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(CQ_ENTRIES)
                    .build(SQ_ENTRIES)
            })
            .map_err(|e| io::Error::new(e.kind(), describe_setup_error(&e)))?;
        let block_pool = BufferPool::new(BLOCK_BYTES_MAX, cfg.block_bufs);
        let write_pool = BufferPool::new(BLOCK_BYTES_MAX, cfg.write_bufs);
        let iovs = [&block_pool, &write_pool].map(|pool| {
            let (base, len) = pool.raw_region();
            libc::iovec {
                iov_base: base.cast(),
                iov_len: len,
            }
        });
        // Registration pins the pages and counts against RLIMIT_MEMLOCK: when both pools do not
        // fit, keep fixed reads (the seeding hot path) and write the plain way.
        // SAFETY: the regions stay allocated for the ring's lifetime: the pools are fields
        // dropped after `ring` (declaration order), and `Drop` leaks them if ops remain.
        let register = |iovs: &[libc::iovec]| unsafe { ring.submitter().register_buffers(iovs) };
        let (fixed_reads, fixed_writes) = if register(&iovs).is_ok() {
            (true, true)
        } else {
            (register(&iovs[..1]).is_ok(), false)
        };
        if !fixed_reads || !fixed_writes {
            tracing::debug!(
                fixed_reads,
                fixed_writes,
                "io_uring: buffer registration refused (RLIMIT_MEMLOCK?), using plain READ/WRITE"
            );
        }
        let mut backend = UringBackend {
            ring,
            ops: Slab::with_capacity(cfg.ops_max),
            ops_max: cfg.ops_max,
            recv_region: Region::new(RECV_BUF_BYTES, cfg.recv_bufs),
            block_pool,
            write_pool,
            fixed_reads,
            fixed_writes,
            starved: VecDeque::new(),
            synthetic: Vec::new(),
            wake_buf: Box::new([0; 8]),
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
        };
        backend.provide_initial_buffers()?;
        Ok(backend)
    }

    fn provide_initial_buffers(&mut self) -> io::Result<()> {
        let sqe = opcode::ProvideBuffers::new(
            self.recv_region.base_ptr(),
            RECV_BUF_BYTES as i32,
            self.recv_region.count() as u16,
            RECV_GROUP,
            0,
        )
        .build()
        .user_data(UD_INTERNAL);
        // SAFETY: the region outlives the ring (invariant 4/5).
        unsafe { self.push(&sqe)? };
        self.ring.submit_and_wait(1)?;
        let cqe = self
            .ring
            .completion()
            .next()
            .expect("provide buffers completion");
        cqe_result(cqe.result()).map(drop)
    }

    /// Pushes one SQE, flushing the queue to the kernel first if it is full.
    ///
    /// # Safety
    /// The memory the SQE points at must satisfy the module's invariants until its CQE.
    unsafe fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        if self.ring.submission().is_full() {
            self.ring.submit()?;
        }
        // SAFETY: forwarded from the caller; the queue has room after the flush above.
        unsafe { self.ring.submission().push(sqe) }.map_err(|_| io::Error::other("SQ full"))
    }

    fn insert(&mut self, op: Op) -> Result<usize, (SubmitError, Op)> {
        if self.ops.len() >= self.ops_max {
            return Err((SubmitError::OpsFull { max: self.ops_max }, op));
        }
        Ok(self.ops.insert(op))
    }

    fn recv_sqe(fd: RawFd, index: usize) -> squeue::Entry {
        opcode::Recv::new(Fd(fd), std::ptr::null_mut(), RECV_BUF_BYTES as u32)
            .buf_group(RECV_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(index as u64)
    }

    fn accept_sqe(fd: RawFd, index: usize, multishot: bool) -> squeue::Entry {
        let sqe = if multishot {
            opcode::AcceptMulti::new(Fd(fd))
                .flags(libc::SOCK_CLOEXEC)
                .build()
        } else {
            opcode::Accept::new(Fd(fd), std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        };
        sqe.user_data(index as u64)
    }

    fn wake_sqe(&mut self, fd: RawFd, index: usize) -> squeue::Entry {
        opcode::Read::new(Fd(fd), self.wake_buf.as_mut_ptr(), 8)
            .build()
            .user_data(index as u64)
    }

    /// Turns one CQE into completions, re-arming multishot-style ops.
    fn complete(&mut self, user_data: u64, res: i32, flags: u32, out: &mut Vec<Completion>) {
        if user_data == UD_INTERNAL {
            if res < 0 && res != -libc::ENOENT && res != -libc::EALREADY {
                tracing::debug!(
                    "io_uring internal op failed: {}",
                    io::Error::from_raw_os_error(-res)
                );
            }
            return;
        }
        let index = user_data as usize;
        match self.ops.get(index) {
            Some(Op::Accept { .. }) => self.complete_accept(index, res, flags, out),
            Some(Op::Recv { .. }) if res == -libc::ENOBUFS => self.starved.push_back(index),
            Some(Op::Wake { fd }) if res >= 0 || res == -libc::EINTR => {
                let sqe = self.wake_sqe(*fd, index);
                // SAFETY: the wake buffer is owned by the backend (invariant 1).
                if let Err(e) = unsafe { self.push(&sqe) } {
                    tracing::warn!("io_uring: cannot re-arm wake-up read: {e}");
                }
                out.push(Completion::Woken);
            }
            Some(_) => {
                let op = self.ops.remove(index);
                Self::finish(op, res, flags, out, &mut |id| self.recycle_id(id));
            }
            None => debug_assert!(false, "CQE for unknown op {index}"),
        }
    }

    fn finish(
        op: Op,
        res: i32,
        flags: u32,
        out: &mut Vec<Completion>,
        recycle: &mut dyn FnMut(u16),
    ) {
        match op {
            Op::Connect { token, .. } => out.push(Completion::Connected {
                token,
                result: cqe_result(res).map(drop),
            }),
            Op::Recv { token, .. } => {
                let selected = cqueue::buffer_select(flags);
                let result = match (cqe_result(res), selected) {
                    (Ok(0), id) => {
                        id.into_iter().for_each(&mut *recycle);
                        Ok(None)
                    }
                    (Ok(len), Some(id)) => Ok(Some(RecvBuf { id, len })),
                    (Ok(_), None) => Err(io::Error::other("recv completed without a buffer")),
                    (Err(e), id) => {
                        id.into_iter().for_each(&mut *recycle);
                        Err(e)
                    }
                };
                out.push(Completion::Received { token, result });
            }
            Op::Send { token, batch } => out.push(Completion::Sent {
                token,
                batch,
                result: cqe_result(res),
            }),
            Op::Read { token, buf } => out.push(Completion::FileRead {
                token,
                buf,
                result: cqe_result(res),
            }),
            Op::Write { token, buf } => out.push(Completion::FileWritten {
                token,
                buf,
                result: cqe_result(res),
            }),
            Op::Sync { token } => out.push(Completion::FileSynced {
                token,
                result: cqe_result(res).map(drop),
            }),
            Op::Wake { .. } => {
                tracing::debug!("io_uring: wake-up read ended: {:?}", cqe_result(res).err());
            }
            Op::Accept { .. } => {
                if res >= 0 {
                    // SAFETY: an accept CQE's result is a fresh descriptor only we own.
                    drop(unsafe { OwnedFd::from_raw_fd(res) });
                }
            }
        }
    }

    fn complete_accept(&mut self, index: usize, res: i32, flags: u32, out: &mut Vec<Completion>) {
        let Some(Op::Accept {
            token,
            fd,
            multishot,
        }) = self.ops.get_mut(index)
        else {
            return;
        };
        let (token, fd) = (*token, *fd);
        if res == -libc::EINVAL && *multishot {
            // Multishot accept arrived in 5.19; older kernels reject it, so go single-shot.
            *multishot = false;
        } else if res >= 0 {
            // SAFETY: a successful accept CQE carries a fresh descriptor that nobody else owns.
            let stream = unsafe { OwnedFd::from_raw_fd(res) };
            out.push(Completion::Accepted {
                token,
                result: Ok(stream),
            });
        } else if res == -libc::ECANCELED || res == -libc::EBADF {
            self.ops.remove(index);
            return;
        } else {
            out.push(Completion::Accepted {
                token,
                result: Err(io::Error::from_raw_os_error(-res)),
            });
        }
        if !cqueue::more(flags) {
            let multishot = matches!(
                self.ops.get(index),
                Some(Op::Accept {
                    multishot: true,
                    ..
                })
            );
            let sqe = Self::accept_sqe(fd, index, multishot);
            // SAFETY: accept SQEs point at no memory.
            if let Err(e) = unsafe { self.push(&sqe) } {
                tracing::warn!("io_uring: cannot re-arm accept: {e}");
            }
        }
    }

    /// Gives receive buffer `id` back to the kernel and feeds one starved receive.
    fn recycle_id(&mut self, id: u16) {
        assert!(
            usize::from(id) < self.recv_region.count(),
            "bad receive buffer id {id}"
        );
        let sqe = opcode::ProvideBuffers::new(
            self.recv_region.buf_ptr(usize::from(id)),
            RECV_BUF_BYTES as i32,
            1,
            RECV_GROUP,
            id,
        )
        .build()
        .user_data(UD_INTERNAL);
        // SAFETY: the buffer is backend-owned memory returned by its only user (invariant 4).
        if let Err(e) = unsafe { self.push(&sqe) } {
            tracing::warn!("io_uring: cannot provide receive buffer {id}: {e}");
            return;
        }
        if let Some(index) = self.starved.pop_front() {
            if let Some(Op::Recv { fd, .. }) = self.ops.get(index) {
                let sqe = Self::recv_sqe(*fd, index);
                // SAFETY: buffer-select receives point at no memory of their own.
                if let Err(e) = unsafe { self.push(&sqe) } {
                    tracing::warn!("io_uring: cannot resubmit receive: {e}");
                    self.starved.push_front(index);
                }
            }
        }
    }

    /// Takes all CQEs out of the ring into `self.cqes`.
    fn reap(&mut self) {
        self.cqes.clear();
        for cqe in self.ring.completion() {
            self.cqes.push((cqe.user_data(), cqe.result(), cqe.flags()));
        }
    }
}

impl Backend for UringBackend {
    fn block_pool(&self) -> &BufferPool {
        &self.block_pool
    }

    fn write_pool(&self) -> &BufferPool {
        &self.write_pool
    }

    fn listen(&mut self, token: Token, fd: RawFd) -> Result<(), SubmitError> {
        let index = self
            .insert(Op::Accept {
                token,
                fd,
                multishot: true,
            })
            .map_err(|(e, _)| e)?;
        let sqe = Self::accept_sqe(fd, index, true);
        // SAFETY: accept SQEs point at no memory.
        unsafe { self.push(&sqe) }.map_err(|e| {
            self.ops.remove(index);
            SubmitError::Io(e)
        })
    }

    fn connect(&mut self, token: Token, fd: RawFd, addr: SocketAddr) -> Result<(), SubmitError> {
        let addr = Box::new(socket2::SockAddr::from(addr));
        let (ptr, len) = (addr.as_ptr().cast::<libc::sockaddr>(), addr.len());
        let index = self
            .insert(Op::Connect { token, _addr: addr })
            .map_err(|(e, _)| e)?;
        let sqe = opcode::Connect::new(Fd(fd), ptr, len)
            .build()
            .user_data(index as u64);
        // SAFETY: the boxed address is owned by op `index` until its CQE (invariants 1-3).
        unsafe { self.push(&sqe) }.map_err(|e| {
            self.ops.remove(index);
            SubmitError::Io(e)
        })
    }

    fn recv(&mut self, token: Token, fd: RawFd) -> Result<(), SubmitError> {
        let index = self.insert(Op::Recv { token, fd }).map_err(|(e, _)| e)?;
        let sqe = Self::recv_sqe(fd, index);
        // SAFETY: the kernel picks a provided buffer (invariant 4); the SQE owns no memory.
        unsafe { self.push(&sqe) }.map_err(|e| {
            self.ops.remove(index);
            SubmitError::Io(e)
        })
    }

    fn recv_data(&self, buf: &RecvBuf) -> &[u8] {
        assert!(buf.len <= RECV_BUF_BYTES);
        let ptr = self.recv_region.buf_ptr(usize::from(buf.id));
        // SAFETY: the kernel selected this buffer and wrote `len` bytes before posting the CQE;
        // it will not touch it again until `recycle_recv` provides it (invariant 4).
        unsafe { std::slice::from_raw_parts(ptr, buf.len) }
    }

    fn recycle_recv(&mut self, buf: RecvBuf) {
        self.recycle_id(buf.id);
    }

    fn send(
        &mut self,
        token: Token,
        fd: RawFd,
        mut batch: Box<SendBatch>,
    ) -> Result<(), (SubmitError, Box<SendBatch>)> {
        batch.prepare();
        let msg: *const libc::msghdr = &batch.msg;
        let index = match self.insert(Op::Send { token, batch }) {
            Ok(index) => index,
            Err((e, Op::Send { batch, .. })) => return Err((e, batch)),
            Err(_) => unreachable!(),
        };
        let sqe = opcode::SendMsg::new(Fd(fd), msg)
            .flags(libc::MSG_NOSIGNAL as u32)
            .build()
            .user_data(index as u64);
        // SAFETY: msghdr, iovecs and every segment are owned by the boxed batch in op `index`,
        // which does not move or change until the CQE (invariants 1-3).
        unsafe { self.push(&sqe) }.map_err(|e| match self.ops.remove(index) {
            Op::Send { batch, .. } => (SubmitError::Io(e), batch),
            _ => unreachable!(),
        })
    }

    fn read_file(
        &mut self,
        token: Token,
        read: FileRead,
        mut buf: PoolBuf,
    ) -> Result<(), (SubmitError, PoolBuf)> {
        assert!(
            read.buf_offset + read.len <= buf.capacity(),
            "read past buffer end"
        );
        // SAFETY: in bounds per the assertion.
        let ptr = unsafe { buf.as_mut_ptr().add(read.buf_offset) };
        let len = read.len as u32;
        let sqe = if self.fixed_reads && self.block_pool.owns(&buf) {
            opcode::ReadFixed::new(Fd(read.fd), ptr, len, FIXED_BLOCK_POOL)
                .offset(read.offset)
                .build()
        } else {
            opcode::Read::new(Fd(read.fd), ptr, len)
                .offset(read.offset)
                .build()
        };
        let index = match self.insert(Op::Read { token, buf }) {
            Ok(index) => index,
            Err((e, Op::Read { buf, .. })) => return Err((e, buf)),
            Err(_) => unreachable!(),
        };
        // SAFETY: the buffer is owned by op `index` until the CQE (invariants 1-3); for
        // READ_FIXED it lies inside registered buffer 0, the whole block pool.
        unsafe { self.push(&sqe.user_data(index as u64)) }.map_err(|e| {
            match self.ops.remove(index) {
                Op::Read { buf, .. } => (SubmitError::Io(e), buf),
                _ => unreachable!(),
            }
        })
    }

    fn write_file(
        &mut self,
        token: Token,
        write: FileWrite,
        mut buf: PoolBuf,
    ) -> Result<(), (SubmitError, PoolBuf)> {
        assert!(
            write.buf_offset + write.len <= buf.capacity(),
            "write past buffer end"
        );
        // A buffer from another pool is outside registered buffer 1: write it the plain way.
        let fixed = self.fixed_writes && self.write_pool.owns(&buf);
        // SAFETY: in bounds per the assertion.
        let ptr = unsafe { buf.as_mut_ptr().add(write.buf_offset) };
        let len = write.len as u32;
        let sqe = if fixed {
            opcode::WriteFixed::new(Fd(write.fd), ptr, len, FIXED_WRITE_POOL)
                .offset(write.offset)
                .build()
        } else {
            opcode::Write::new(Fd(write.fd), ptr, len)
                .offset(write.offset)
                .build()
        };
        let index = match self.insert(Op::Write { token, buf }) {
            Ok(index) => index,
            Err((e, Op::Write { buf, .. })) => return Err((e, buf)),
            Err(_) => unreachable!(),
        };
        // SAFETY: the buffer is owned by op `index` until the CQE (invariants 1-3); for
        // WRITE_FIXED it lies inside registered buffer 1, the whole write pool.
        unsafe { self.push(&sqe.user_data(index as u64)) }.map_err(|e| {
            match self.ops.remove(index) {
                Op::Write { buf, .. } => (SubmitError::Io(e), buf),
                _ => unreachable!(),
            }
        })
    }

    fn sync_file(&mut self, token: Token, fd: RawFd) -> Result<(), SubmitError> {
        let index = self.insert(Op::Sync { token }).map_err(|(e, _)| e)?;
        let sqe = opcode::Fsync::new(Fd(fd))
            .flags(FsyncFlags::DATASYNC)
            .build()
            .user_data(index as u64);
        // SAFETY: an fsync SQE points at no memory.
        unsafe { self.push(&sqe) }.map_err(|e| {
            self.ops.remove(index);
            SubmitError::Io(e)
        })
    }

    fn cancel_fd(&mut self, fd: RawFd) {
        // Shutting the socket down first ends a pending receive or send even on kernels whose
        // ASYNC_CANCEL lacks fd matching (before 5.19); the socket is being closed anyway.
        // SAFETY: plain syscall on a descriptor the shard still owns.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        let sqe = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(fd)).all())
            .build()
            .user_data(UD_INTERNAL);
        // SAFETY: a cancel SQE points at no memory.
        if let Err(e) = unsafe { self.push(&sqe) } {
            tracing::warn!("io_uring: cannot cancel ops on fd {fd}: {e}");
        }
        // Receives parked on ENOBUFS are not in the kernel: cancel them here.
        let ops = &mut self.ops;
        let synthetic = &mut self.synthetic;
        self.starved.retain(|&index| match ops.get(index) {
            Some(Op::Recv { fd: op_fd, .. }) if *op_fd == fd => {
                if let Op::Recv { token, .. } = ops.remove(index) {
                    let result = Err(io::Error::from_raw_os_error(libc::ECANCELED));
                    synthetic.push(Completion::Received { token, result });
                }
                false
            }
            _ => true,
        });
    }

    fn close(&mut self, fd: OwnedFd) {
        let raw = fd.into_raw_fd();
        let sqe = opcode::Close::new(Fd(raw)).build().user_data(UD_INTERNAL);
        // SAFETY: a close SQE points at no memory.
        if let Err(e) = unsafe { self.push(&sqe) } {
            tracing::warn!("io_uring: close op failed ({e}), closing synchronously");
            // SAFETY: we own `raw` (taken from the OwnedFd) and it was not submitted.
            drop(unsafe { OwnedFd::from_raw_fd(raw) });
        }
    }

    fn watch_wakeup(&mut self, fd: RawFd) -> Result<(), SubmitError> {
        let index = self.insert(Op::Wake { fd }).map_err(|(e, _)| e)?;
        let sqe = self.wake_sqe(fd, index);
        // SAFETY: the wake buffer is owned by the backend (invariant 1).
        unsafe { self.push(&sqe) }.map_err(SubmitError::Io)
    }

    fn wait(&mut self, out: &mut Vec<Completion>, timeout: Duration) -> io::Result<()> {
        out.append(&mut self.synthetic);
        let want = if out.is_empty() && !timeout.is_zero() {
            1
        } else {
            0
        };
        let ts = Timespec::from(timeout);
        let args = SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(want, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        self.reap();
        let cqes = std::mem::take(&mut self.cqes);
        for &(user_data, res, flags) in &cqes {
            self.complete(user_data, res, flags, out);
        }
        self.cqes = cqes;
        Ok(())
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        if self.ops.is_empty() {
            return;
        }
        let sqe = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(UD_INTERNAL);
        // SAFETY: a cancel SQE points at no memory.
        let _ = unsafe { self.push(&sqe) };
        let deadline = StdInstant::now() + DRAIN_TIMEOUT;
        let mut sink = Vec::new();
        while !self.ops.is_empty() && StdInstant::now() < deadline {
            let ts = Timespec::from(Duration::from_millis(20));
            let args = SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            self.reap();
            for i in 0..self.cqes.len() {
                let (user_data, res, flags) = self.cqes[i];
                let index = user_data as usize;
                if user_data == UD_INTERNAL || !self.ops.contains(index) {
                    continue;
                }
                if matches!(self.ops[index], Op::Recv { .. }) && res == -libc::ENOBUFS {
                    self.ops.remove(index);
                } else if matches!(self.ops[index], Op::Accept { .. }) && cqueue::more(flags) {
                    if res >= 0 {
                        // SAFETY: an accept CQE's result is a fresh descriptor only we own.
                        drop(unsafe { OwnedFd::from_raw_fd(res) });
                    }
                } else if !(cqueue::more(flags)) {
                    let op = self.ops.remove(index);
                    Self::finish(op, res, flags, &mut sink, &mut |_| {});
                }
            }
            // Starved receives are not in the kernel; nothing to wait for.
            for index in self.starved.drain(..) {
                self.ops.try_remove(index);
            }
            sink.clear();
        }
        if !self.ops.is_empty() {
            tracing::warn!(
                "io_uring: {} ops did not finish within {:?}; leaking their buffers",
                self.ops.len(),
                DRAIN_TIMEOUT
            );
            std::mem::forget(std::mem::take(&mut self.ops));
            std::mem::forget(self.block_pool.clone());
            std::mem::forget(self.write_pool.clone());
            let region = std::mem::replace(&mut self.recv_region, Region::new(1, 1));
            std::mem::forget(region);
            std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new([0; 8])));
        }
    }
}
