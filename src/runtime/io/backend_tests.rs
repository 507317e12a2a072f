//! The same behaviour tests run against both backends through the [`Backend`] trait.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant as StdInstant};

use super::*;
use crate::runtime::buffers::BLOCK_BYTES_MAX;

const WAIT_MAX: Duration = Duration::from_secs(5);

fn kinds() -> Vec<IoKind> {
    let mut kinds = vec![IoKind::Epoll];
    if probe_uring().is_ok() {
        kinds.push(IoKind::Uring);
    }
    kinds
}

fn backend(kind: IoKind, recv_bufs: usize) -> Box<dyn Backend> {
    let cfg = BackendConfig {
        recv_bufs,
        block_bufs: 16,
        write_bufs: 4,
        ops_max: 64,
    };
    build(kind, cfg).expect("backend")
}

/// Waits until `done` says the completions gathered so far are enough.
fn wait_for(io: &mut dyn Backend, mut done: impl FnMut(&[Completion]) -> bool) -> Vec<Completion> {
    let deadline = StdInstant::now() + WAIT_MAX;
    let mut all = Vec::new();
    while !done(&all) {
        assert!(
            StdInstant::now() < deadline,
            "timed out; {} completions",
            all.len()
        );
        io.wait(&mut all, Duration::from_millis(20)).expect("wait");
    }
    all
}

/// A connected pair: (our non-blocking socket as an fd, the peer's blocking stream).
fn pair() -> (OwnedFd, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (theirs, _) = listener.accept().unwrap();
    ours.set_nonblocking(true).unwrap();
    theirs.set_read_timeout(Some(WAIT_MAX)).unwrap();
    (OwnedFd::from(ours), theirs)
}

#[test]
fn send_gathers_many_segments_into_one_op() {
    // Forty segments (control vectors and pool blocks) leave in order from one submission.
    for kind in kinds() {
        let mut io = backend(kind, 4);
        let (fd, mut peer) = pair();
        let mut batch = SendBatch::new();
        let mut expected = Vec::new();
        for i in 0..40u8 {
            let payload = if i % 4 == 3 {
                let mut block = io.block_pool().alloc().expect("block buffer");
                block.as_mut_slice()[..100].fill(i);
                expected.extend(std::iter::repeat_n(i, 100));
                Chunk {
                    payload: Payload::Block(block),
                    start: 0,
                    end: 100,
                }
            } else {
                let bytes = vec![i; 1 + i as usize];
                expected.extend_from_slice(&bytes[1..]);
                Chunk {
                    payload: Payload::Bytes(bytes),
                    start: 1,
                    end: 1 + i as usize,
                }
            };
            batch.chunks.push(payload);
        }
        let total = batch.total_bytes();
        assert!(io.send(Token(7), fd.as_raw_fd(), batch).is_ok());
        let done = wait_for(&mut *io, |c| !c.is_empty());
        match &done[0] {
            Completion::Sent { token, result, .. } => {
                assert_eq!(*token, Token(7));
                assert_eq!(*result.as_ref().unwrap(), total, "{kind:?}");
            }
            _ => panic!("expected a send completion"),
        }
        let mut got = vec![0u8; total];
        peer.read_exact(&mut got).unwrap();
        assert!(got == expected, "{kind:?}: bytes out of order");
    }
}

#[test]
fn recv_delivers_data_then_end_of_stream() {
    // Data arrives in a pool buffer; after the peer closes, a receive reports end of stream.
    for kind in kinds() {
        let mut io = backend(kind, 2);
        let (fd, mut peer) = pair();
        peer.write_all(b"hello").unwrap();
        io.recv(Token(1), fd.as_raw_fd()).unwrap();
        let mut done = wait_for(&mut *io, |c| !c.is_empty());
        let Completion::Received {
            result: Ok(Some(buf)),
            ..
        } = done.remove(0)
        else {
            panic!("{kind:?}: expected data");
        };
        assert_eq!(io.recv_data(&buf), b"hello");
        io.recycle_recv(buf);
        drop(peer);
        io.recv(Token(1), fd.as_raw_fd()).unwrap();
        let done = wait_for(&mut *io, |c| !c.is_empty());
        assert!(
            matches!(
                done[0],
                Completion::Received {
                    result: Ok(None),
                    ..
                }
            ),
            "{kind:?}"
        );
        io.close(fd);
    }
}

#[test]
fn receives_wait_for_a_free_buffer_instead_of_failing() {
    // With one receive buffer, a second socket's data waits until the first buffer returns.
    for kind in kinds() {
        let mut io = backend(kind, 1);
        let (fd_a, mut peer_a) = pair();
        let (fd_b, mut peer_b) = pair();
        peer_a.write_all(b"aaaa").unwrap();
        io.recv(Token(1), fd_a.as_raw_fd()).unwrap();
        let mut done = wait_for(&mut *io, |c| !c.is_empty());
        let Completion::Received {
            result: Ok(Some(held)),
            ..
        } = done.remove(0)
        else {
            panic!("{kind:?}: expected data on a");
        };
        peer_b.write_all(b"bbbb").unwrap();
        io.recv(Token(2), fd_b.as_raw_fd()).unwrap();
        let mut early = Vec::new();
        for _ in 0..5 {
            io.wait(&mut early, Duration::from_millis(20)).unwrap();
        }
        assert!(
            early.is_empty(),
            "{kind:?}: receive completed without a buffer"
        );
        io.recycle_recv(held);
        let mut done = wait_for(&mut *io, |c| !c.is_empty());
        let Completion::Received {
            token,
            result: Ok(Some(buf)),
        } = done.remove(0)
        else {
            panic!("{kind:?}: expected data on b");
        };
        assert_eq!(token, Token(2));
        assert_eq!(io.recv_data(&buf), b"bbbb");
        io.recycle_recv(buf);
        drop((peer_a, peer_b));
    }
}

#[test]
fn file_read_lands_at_the_buffer_offset() {
    // A read at a file offset fills exactly the requested range of the pooled buffer.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let file = std::fs::File::open(&path).unwrap();
    for kind in kinds() {
        let mut io = backend(kind, 1);
        let buf = io.block_pool().alloc().unwrap();
        let read = FileRead {
            fd: file.as_raw_fd(),
            offset: 5000,
            buf_offset: 100,
            len: 3000,
        };
        assert!(io.read_file(Token(3), read, buf).is_ok());
        let mut done = wait_for(&mut *io, |c| !c.is_empty());
        let Completion::FileRead { token, buf, result } = done.remove(0) else {
            panic!("{kind:?}: expected a read");
        };
        assert_eq!(token, Token(3));
        assert_eq!(result.unwrap(), 3000);
        assert_eq!(&buf.as_slice()[100..3100], &data[5000..8000]);
        assert_eq!(buf.capacity(), BLOCK_BYTES_MAX);
    }
}

#[test]
fn cancel_finishes_a_pending_receive() {
    // Cancelling a socket's ops makes an idle receive complete, so the socket can be closed.
    for kind in kinds() {
        let mut io = backend(kind, 2);
        let (fd, _peer) = pair();
        io.recv(Token(9), fd.as_raw_fd()).unwrap();
        let mut none = Vec::new();
        io.wait(&mut none, Duration::from_millis(20)).unwrap();
        assert!(none.is_empty());
        io.cancel_fd(fd.as_raw_fd());
        let done = wait_for(&mut *io, |c| !c.is_empty());
        assert!(matches!(
            done[0],
            Completion::Received {
                token: Token(9),
                result: Err(_)
            }
        ));
        io.close(fd);
    }
}

#[test]
fn accepts_connects_and_wakeups_complete() {
    // A listener yields each incoming connection; connect succeeds to a listener and fails to
    // a closed port; an eventfd write wakes the waiter.
    for kind in kinds() {
        let mut io = backend(kind, 2);
        let listener =
            crate::runtime::listener::Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        io.listen(Token(0), listener.raw_fd()).unwrap();
        let clients: Vec<_> = (0..3)
            .map(|_| TcpStream::connect(listener.local_addr()).unwrap())
            .collect();
        let done = wait_for(&mut *io, |c| c.len() >= 3);
        assert!(done
            .iter()
            .all(|c| matches!(c, Completion::Accepted { result: Ok(_), .. })));
        drop(clients);

        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let sock =
            crate::runtime::listener::outbound_socket(target.local_addr().unwrap(), None).unwrap();
        io.connect(Token(5), sock.as_raw_fd(), target.local_addr().unwrap())
            .unwrap();
        let done = wait_for(&mut *io, |c| !c.is_empty());
        assert!(matches!(
            done[0],
            Completion::Connected {
                token: Token(5),
                result: Ok(())
            }
        ));
        io.close(sock);

        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let sock = crate::runtime::listener::outbound_socket(closed, None).unwrap();
        io.connect(Token(6), sock.as_raw_fd(), closed).unwrap();
        let done = wait_for(&mut *io, |c| !c.is_empty());
        assert!(matches!(
            done[0],
            Completion::Connected {
                token: Token(6),
                result: Err(_)
            }
        ));
        io.close(sock);

        // SAFETY: plain syscall returning a fresh descriptor.
        let efd = unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, libc::EFD_NONBLOCK)) };
        io.watch_wakeup(efd.as_raw_fd()).unwrap();
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a local array.
        assert_eq!(
            unsafe { libc::write(efd.as_raw_fd(), one.as_ptr().cast(), 8) },
            8
        );
        let done = wait_for(&mut *io, |c| {
            c.iter().any(|c| matches!(c, Completion::Woken))
        });
        assert!(!done.is_empty());
        drop(io); // drains in-flight accept and wake-up ops before `listener` and `efd` close
    }
}

/// Waits for the single completion of a file op.
fn one_completion(io: &mut dyn Backend) -> Completion {
    let mut done = wait_for(io, |c| !c.is_empty());
    assert_eq!(done.len(), 1, "one op, one completion");
    done.remove(0)
}

#[test]
fn file_write_lands_at_the_file_offset_and_reads_back() {
    // A write of part of a pool buffer puts exactly those bytes at the file offset, past the
    // end of a short file too, leaving a hole of zeros; the buffer comes back.
    let dir = tempfile::tempdir().unwrap();
    for kind in kinds() {
        let path = dir.path().join(format!("{kind:?}"));
        std::fs::write(&path, b"head").unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut io = backend(kind, 1);
        let mut buf = io.write_pool().alloc().unwrap();
        let data: Vec<u8> = (0..BLOCK_BYTES_MAX).map(|i| (i % 253) as u8).collect();
        buf.as_mut_slice().copy_from_slice(&data);
        let write = FileWrite {
            fd: file.as_raw_fd(),
            offset: 10_000,
            buf_offset: 100,
            len: 3000,
        };
        assert!(io.write_file(Token(4), write, buf).is_ok());
        let Completion::FileWritten { token, buf, result } = one_completion(&mut *io) else {
            panic!("{kind:?}: expected a write completion");
        };
        assert_eq!((token, result.unwrap()), (Token(4), 3000), "{kind:?}");
        assert!(io.write_pool().owns(&buf));
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk.len(), 13_000, "{kind:?}");
        assert_eq!(&on_disk[..4], b"head");
        assert!(on_disk[4..10_000].iter().all(|&b| b == 0), "{kind:?}: hole");
        assert_eq!(&on_disk[10_000..], &data[100..3100], "{kind:?}");
    }
}

#[test]
fn sync_completes_and_bad_descriptors_fail_as_errors() {
    // fdatasync of a written file succeeds; a write to a read-only descriptor and a sync of a
    // closed one come back as completions carrying EBADF, not as panics or submit errors.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, vec![7u8; 5000]).unwrap();
    let writable = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let read_only = std::fs::File::open(&path).unwrap();
    for kind in kinds() {
        let mut io = backend(kind, 1);
        io.sync_file(Token(1), writable.as_raw_fd()).unwrap();
        let Completion::FileSynced { token, result } = one_completion(&mut *io) else {
            panic!("{kind:?}: expected a sync completion");
        };
        assert_eq!(token, Token(1));
        result.unwrap();

        let buf = io.write_pool().alloc().unwrap();
        let write = FileWrite {
            fd: read_only.as_raw_fd(),
            offset: 0,
            buf_offset: 0,
            len: 10,
        };
        assert!(io.write_file(Token(2), write, buf).is_ok());
        let Completion::FileWritten { result, .. } = one_completion(&mut *io) else {
            panic!("{kind:?}: expected a write completion");
        };
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EBADF));

        let closed = {
            let f = std::fs::File::open(&path).unwrap();
            f.as_raw_fd()
        };
        io.sync_file(Token(3), closed).unwrap();
        let Completion::FileSynced { result, .. } = one_completion(&mut *io) else {
            panic!("{kind:?}: expected a sync completion");
        };
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EBADF));
    }
    assert_eq!(std::fs::read(&path).unwrap(), vec![7u8; 5000]);
}
