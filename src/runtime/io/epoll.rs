//! epoll backend (through mio): emulates the completion interface on readiness.
//!
//! Owns the mio poller, per-descriptor readiness and pending ops, and the receive pool. An op is
//! never completed inside the call that submits it: it is attempted in `wait`, so the shard sees
//! the same ordering as with io_uring. File reads, writes and syncs are `pread`, `pwrite` and
//! `fdatasync` calls done at submission and reported at the next `wait`: fine for page-cache
//! data, but a cold disk read or an fdatasync of many dirty pages stalls the whole shard for
//! as long as the call takes (io_uring runs them asynchronously).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token as MioToken};

use super::{
    Backend, BackendConfig, Completion, FileRead, FileWrite, RecvBuf, SendBatch, SubmitError, Token,
};
use crate::runtime::buffers::{BufferPool, PoolBuf, Region, BLOCK_BYTES_MAX, RECV_BUF_BYTES};

/// Events taken from epoll per wait; more stay queued in the kernel for the next wait.
const EVENTS_PER_WAIT: usize = 1024;

/// Connections accepted per listener per wait, so a connect storm cannot starve established
/// peers; the listener is retried on the next wait without blocking.
const ACCEPTS_PER_WAIT: usize = 64;

/// Readiness and pending ops of one descriptor.
#[derive(Default)]
struct FdState {
    registered: bool,
    readable: bool,
    writable: bool,
    /// In `ready`, so not pushed twice.
    queued: bool,
    accept: Option<Token>,
    wake: bool,
    connect: Option<Token>,
    recv: Option<Token>,
    send: Option<(Token, Box<SendBatch>)>,
}

/// The epoll backend of one shard.
pub(crate) struct EpollBackend {
    poll: Poll,
    events: Events,
    fds: Vec<FdState>,
    /// Descriptors with a pending op that may be able to progress.
    ready: Vec<RawFd>,
    recv_region: Region,
    recv_free: Vec<u16>,
    /// Descriptors whose receive waits for a free receive buffer.
    starved: Vec<RawFd>,
    block_pool: BufferPool,
    write_pool: BufferPool,
    /// Completions produced at submission (file reads, writes, syncs, cancels), reported at the next wait.
    done: Vec<Completion>,
    /// Scratch list of descriptors with events, kept to avoid allocating per wait.
    woken: Vec<RawFd>,
}

impl EpollBackend {
    /// Creates the poller and the pools.
    pub(crate) fn new(cfg: BackendConfig) -> io::Result<EpollBackend> {
        assert!(cfg.recv_bufs > 0 && cfg.recv_bufs <= usize::from(u16::MAX));
        Ok(EpollBackend {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_PER_WAIT),
            fds: Vec::new(),
            ready: Vec::new(),
            recv_region: Region::new(RECV_BUF_BYTES, cfg.recv_bufs),
            recv_free: (0..cfg.recv_bufs as u16).rev().collect(),
            starved: Vec::new(),
            block_pool: BufferPool::new(BLOCK_BYTES_MAX, cfg.block_bufs),
            write_pool: BufferPool::new(BLOCK_BYTES_MAX, cfg.write_bufs),
            done: Vec::new(),
            woken: Vec::with_capacity(EVENTS_PER_WAIT),
        })
    }

    /// The state of `fd`, registering it with epoll (edge-triggered, both directions) on first
    /// use. A fresh registration assumes readiness; a failed attempt clears it.
    fn state(&mut self, fd: RawFd) -> io::Result<&mut FdState> {
        let slot = usize::try_from(fd).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
        if slot >= self.fds.len() {
            self.fds.resize_with(slot + 1, FdState::default);
        }
        if !self.fds[slot].registered {
            let interest = Interest::READABLE | Interest::WRITABLE;
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), MioToken(slot), interest)?;
            let state = &mut self.fds[slot];
            state.registered = true;
            state.readable = true;
            state.writable = true;
        }
        Ok(&mut self.fds[slot])
    }

    fn mark_ready(&mut self, fd: RawFd) {
        let state = &mut self.fds[fd as usize];
        if !state.queued {
            state.queued = true;
            self.ready.push(fd);
        }
    }

    fn run_ready(&mut self, out: &mut Vec<Completion>) {
        let ready = std::mem::take(&mut self.ready);
        for &fd in &ready {
            self.fds[fd as usize].queued = false;
            self.attempt(fd, out);
        }
        let mut ready = ready;
        ready.clear();
        if self.ready.is_empty() {
            self.ready = ready; // keep the allocation
        }
    }

    /// Tries every pending op of `fd` that its readiness allows.
    fn attempt(&mut self, fd: RawFd, out: &mut Vec<Completion>) {
        let state = &self.fds[fd as usize];
        if state.readable && state.accept.is_some() {
            self.attempt_accept(fd, out);
        }
        let state = &self.fds[fd as usize];
        if state.readable && state.wake {
            self.attempt_wake(fd, out);
        }
        let state = &self.fds[fd as usize];
        if state.writable && state.connect.is_some() {
            self.attempt_connect(fd, out);
        }
        let state = &self.fds[fd as usize];
        if state.readable && state.recv.is_some() {
            self.attempt_recv(fd, out);
        }
        let state = &self.fds[fd as usize];
        if state.writable && state.send.is_some() {
            self.attempt_send(fd, out);
        }
    }

    fn attempt_accept(&mut self, fd: RawFd, out: &mut Vec<Completion>) {
        let token = self.fds[fd as usize].accept.expect("accept pending");
        for _ in 0..ACCEPTS_PER_WAIT {
            let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
            // SAFETY: null address pointers are allowed; the result is a new fd or -1.
            let res =
                unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), flags) };
            if res >= 0 {
                // SAFETY: accept4 returned a fresh descriptor nobody else owns.
                let stream = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(res) };
                out.push(Completion::Accepted {
                    token,
                    result: Ok(stream),
                });
                continue;
            }
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => self.fds[fd as usize].readable = false,
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
                _ => out.push(Completion::Accepted {
                    token,
                    result: Err(err),
                }),
            }
            return;
        }
        self.mark_ready(fd); // more may be waiting: retry next wait
    }

    fn attempt_wake(&mut self, fd: RawFd, out: &mut Vec<Completion>) {
        let mut value = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a local array.
        let res = unsafe { libc::read(fd, value.as_mut_ptr().cast(), value.len()) };
        if res < 0 {
            self.fds[fd as usize].readable = false;
        } else {
            out.push(Completion::Woken);
            self.mark_ready(fd);
        }
    }

    fn attempt_connect(&mut self, fd: RawFd, out: &mut Vec<Completion>) {
        let token = self.fds[fd as usize].connect.expect("connect pending");
        let result = match socket_error(fd) {
            Err(e) => Err(e),
            Ok(Some(e)) => Err(e),
            Ok(None) if is_connected(fd) => Ok(()),
            Ok(None) => {
                // Spurious wake-up: still connecting.
                self.fds[fd as usize].writable = false;
                return;
            }
        };
        self.fds[fd as usize].connect = None;
        out.push(Completion::Connected { token, result });
    }

    fn attempt_recv(&mut self, fd: RawFd, out: &mut Vec<Completion>) {
        let Some(id) = self.recv_free.pop() else {
            if !self.starved.contains(&fd) {
                self.starved.push(fd);
            }
            return;
        };
        let ptr = self.recv_region.buf_ptr(usize::from(id));
        // SAFETY: buffer `id` is free (just popped), so nobody else reads or writes it.
        let res = unsafe { libc::recv(fd, ptr.cast(), RECV_BUF_BYTES, 0) };
        let state = &mut self.fds[fd as usize];
        let result = if res > 0 {
            Ok(Some(RecvBuf {
                id,
                len: res as usize,
            }))
        } else {
            self.recv_free.push(id);
            if res == 0 {
                Ok(None)
            } else {
                let err = io::Error::last_os_error();
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    state.readable = err.kind() == io::ErrorKind::Interrupted;
                    return;
                }
                Err(err)
            }
        };
        let token = state.recv.take().expect("recv pending");
        out.push(Completion::Received { token, result });
    }

    fn attempt_send(&mut self, fd: RawFd, out: &mut Vec<Completion>) {
        let state = &mut self.fds[fd as usize];
        let (_, batch) = state.send.as_mut().expect("send pending");
        // SAFETY: msghdr and iovecs were prepared from the batch, which owns every segment and
        // has not changed since `send` (the backend holds it exclusively).
        let res = unsafe { libc::sendmsg(fd, &batch.msg, libc::MSG_NOSIGNAL) };
        let result = if res >= 0 {
            Ok(res as usize)
        } else {
            let err = io::Error::last_os_error();
            if matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) {
                state.writable = err.kind() == io::ErrorKind::Interrupted;
                return;
            }
            Err(err)
        };
        let (token, batch) = state.send.take().expect("send pending");
        out.push(Completion::Sent {
            token,
            batch,
            result,
        });
    }
}

/// The socket's pending error (SO_ERROR), if any.
fn socket_error(fd: RawFd) -> io::Result<Option<io::Error>> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: value/len describe a valid c_int out-parameter.
    let res = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut value as *mut i32).cast(),
            &mut len,
        )
    };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((value != 0).then(|| io::Error::from_raw_os_error(value)))
}

/// Whether the socket has a peer (the connect finished).
fn is_connected(fd: RawFd) -> bool {
    // SAFETY: zeroed storage is a valid out-parameter for getpeername.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: storage/len describe a valid buffer.
    unsafe {
        libc::getpeername(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        ) == 0
    }
}

impl Backend for EpollBackend {
    fn block_pool(&self) -> &BufferPool {
        &self.block_pool
    }

    fn write_pool(&self) -> &BufferPool {
        &self.write_pool
    }

    fn listen(&mut self, token: Token, fd: RawFd) -> Result<(), SubmitError> {
        self.state(fd)?.accept = Some(token);
        self.mark_ready(fd);
        Ok(())
    }

    fn connect(&mut self, token: Token, fd: RawFd, addr: SocketAddr) -> Result<(), SubmitError> {
        let addr = socket2::SockAddr::from(addr);
        // SAFETY: addr points at a valid sockaddr of addr.len() bytes.
        let res = unsafe { libc::connect(fd, addr.as_ptr().cast(), addr.len()) };
        let result = if res == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        };
        let state = self.state(fd)?;
        match result {
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                // Wait for the writable edge that ends the handshake.
                state.writable = false;
                state.connect = Some(token);
            }
            result => self.done.push(Completion::Connected { token, result }),
        }
        Ok(())
    }

    fn recv(&mut self, token: Token, fd: RawFd) -> Result<(), SubmitError> {
        let state = self.state(fd)?;
        debug_assert!(state.recv.is_none(), "two receives on one socket");
        state.recv = Some(token);
        if state.readable {
            self.mark_ready(fd);
        }
        Ok(())
    }

    fn recv_data(&self, buf: &RecvBuf) -> &[u8] {
        assert!(buf.len <= RECV_BUF_BYTES);
        let ptr = self.recv_region.buf_ptr(usize::from(buf.id));
        // SAFETY: `recv` wrote `len` bytes into buffer `id`, which stays out of the free list
        // until `recycle_recv`.
        unsafe { std::slice::from_raw_parts(ptr, buf.len) }
    }

    fn recycle_recv(&mut self, buf: RecvBuf) {
        debug_assert!(!self.recv_free.contains(&buf.id));
        self.recv_free.push(buf.id);
        if let Some(fd) = self.starved.pop() {
            if self.fds[fd as usize].recv.is_some() {
                self.mark_ready(fd);
            }
        }
    }

    fn send(
        &mut self,
        token: Token,
        fd: RawFd,
        mut batch: Box<SendBatch>,
    ) -> Result<(), (SubmitError, Box<SendBatch>)> {
        batch.prepare();
        let state = match self.state(fd) {
            Ok(state) => state,
            Err(e) => return Err((SubmitError::Io(e), batch)),
        };
        debug_assert!(state.send.is_none(), "two sends on one socket");
        state.send = Some((token, batch));
        if state.writable {
            self.mark_ready(fd);
        }
        Ok(())
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
        let target = &mut buf.as_mut_slice()[read.buf_offset..read.buf_offset + read.len];
        let offset = read.offset as libc::off_t;
        // SAFETY: target is a valid writable slice of exactly `len` bytes.
        let res = unsafe { libc::pread(read.fd, target.as_mut_ptr().cast(), target.len(), offset) };
        let result = if res < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(res as usize)
        };
        self.done.push(Completion::FileRead { token, buf, result });
        Ok(())
    }

    fn write_file(
        &mut self,
        token: Token,
        write: FileWrite,
        buf: PoolBuf,
    ) -> Result<(), (SubmitError, PoolBuf)> {
        assert!(
            write.buf_offset + write.len <= buf.capacity(),
            "write past buffer end"
        );
        let source = &buf.as_slice()[write.buf_offset..write.buf_offset + write.len];
        let offset = write.offset as libc::off_t;
        let result = loop {
            // SAFETY: source is a valid readable slice of exactly `len` bytes.
            let res =
                unsafe { libc::pwrite(write.fd, source.as_ptr().cast(), source.len(), offset) };
            if res >= 0 {
                break Ok(res as usize);
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                break Err(err);
            }
        };
        self.done
            .push(Completion::FileWritten { token, buf, result });
        Ok(())
    }

    fn sync_file(&mut self, token: Token, fd: RawFd) -> Result<(), SubmitError> {
        let result = loop {
            // SAFETY: plain syscall on a descriptor the caller keeps open for the call.
            if unsafe { libc::fdatasync(fd) } == 0 {
                break Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                break Err(err);
            }
        };
        self.done.push(Completion::FileSynced { token, result });
        Ok(())
    }

    fn cancel_fd(&mut self, fd: RawFd) {
        let Some(state) = self.fds.get_mut(fd as usize) else {
            return;
        };
        let cancelled = || io::Error::from_raw_os_error(libc::ECANCELED);
        if let Some(token) = state.recv.take() {
            self.done.push(Completion::Received {
                token,
                result: Err(cancelled()),
            });
        }
        if let Some((token, batch)) = state.send.take() {
            self.done.push(Completion::Sent {
                token,
                batch,
                result: Err(cancelled()),
            });
        }
        if let Some(token) = state.connect.take() {
            self.done.push(Completion::Connected {
                token,
                result: Err(cancelled()),
            });
        }
        self.starved.retain(|&s| s != fd);
    }

    fn close(&mut self, fd: OwnedFd) {
        let raw = fd.as_raw_fd();
        if let Some(state) = self.fds.get_mut(raw as usize) {
            debug_assert!(state.recv.is_none() && state.send.is_none() && state.connect.is_none());
            if state.registered {
                let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
            }
            *state = FdState::default();
        }
        self.ready.retain(|&r| r != raw);
        drop(fd);
    }

    fn watch_wakeup(&mut self, fd: RawFd) -> Result<(), SubmitError> {
        self.state(fd)?.wake = true;
        self.mark_ready(fd);
        Ok(())
    }

    fn wait(&mut self, out: &mut Vec<Completion>, timeout: Duration) -> io::Result<()> {
        out.append(&mut self.done);
        self.run_ready(out);
        let busy = !out.is_empty() || !self.ready.is_empty();
        let timeout = if busy { Duration::ZERO } else { timeout };
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let mut woken = std::mem::take(&mut self.woken);
        for event in self.events.iter() {
            let fd = event.token().0;
            let Some(state) = self.fds.get_mut(fd) else {
                continue;
            };
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                state.readable = true;
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                state.writable = true;
            }
            woken.push(fd as RawFd);
        }
        for fd in woken.drain(..) {
            self.mark_ready(fd);
        }
        self.woken = woken;
        self.run_ready(out);
        Ok(())
    }
}
