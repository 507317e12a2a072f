//! Bounded command queues into shards, each paired with an eventfd that wakes the shard loop.
//!
//! Owns the control-plane path between threads (tracker results, cross-shard messages to the
//! shard that owns a torrent's global state). Not for the data plane: a full queue is reported
//! to the sender, never grown.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use super::RuntimeError;

/// Commands queued per shard before a send reports the queue full.
pub const COMMANDS_QUEUED_MAX: usize = 1024;

struct Mailbox<Cmd> {
    tx: SyncSender<Cmd>,
    wake: Arc<OwnedFd>,
}

/// Senders to every shard's command queue. Cheap to clone, usable from any thread, including
/// from inside a shard (keep it in the [`ShardApp`](super::ShardApp) built by `make_app`).
pub struct Mailboxes<Cmd> {
    boxes: Arc<[Mailbox<Cmd>]>,
}

impl<Cmd> Clone for Mailboxes<Cmd> {
    fn clone(&self) -> Self {
        Mailboxes {
            boxes: Arc::clone(&self.boxes),
        }
    }
}

impl<Cmd: Send> Mailboxes<Cmd> {
    /// Queues `cmd` for shard `shard` and wakes it; fails if the queue is full or the shard gone.
    pub fn send(&self, shard: usize, cmd: Cmd) -> Result<(), RuntimeError> {
        let mailbox = self
            .boxes
            .get(shard)
            .ok_or(RuntimeError::ShardGone { shard })?;
        mailbox.tx.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => RuntimeError::CommandQueueFull {
                shard,
                max: COMMANDS_QUEUED_MAX,
            },
            TrySendError::Disconnected(_) => RuntimeError::ShardGone { shard },
        })?;
        wake(&mailbox.wake);
        Ok(())
    }

    /// Number of shards.
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    /// Whether there are no shards.
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }
}

impl<Cmd> Mailboxes<Cmd> {
    /// Wakes every shard (used at shutdown so they notice the stop flag at once).
    pub(crate) fn wake_all(&self) {
        for mailbox in self.boxes.iter() {
            wake(&mailbox.wake);
        }
    }
}

/// The receiving side of one shard's mailbox.
pub(crate) struct Inbox<Cmd> {
    pub(crate) rx: Receiver<Cmd>,
    pub(crate) wake: Arc<OwnedFd>,
}

/// Creates `count` mailboxes and their inboxes.
pub(crate) fn mailboxes<Cmd>(count: usize) -> std::io::Result<(Mailboxes<Cmd>, Vec<Inbox<Cmd>>)> {
    let mut boxes = Vec::with_capacity(count);
    let mut inboxes = Vec::with_capacity(count);
    for _ in 0..count {
        let wake = Arc::new(eventfd()?);
        let (tx, rx) = mpsc::sync_channel(COMMANDS_QUEUED_MAX);
        boxes.push(Mailbox {
            tx,
            wake: Arc::clone(&wake),
        });
        inboxes.push(Inbox { rx, wake });
    }
    Ok((
        Mailboxes {
            boxes: boxes.into(),
        },
        inboxes,
    ))
}

fn eventfd() -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is fresh and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn wake(fd: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a local u64 to an eventfd. A full counter (EAGAIN) already
    // means "wake up", so the result needs no handling.
    let _ = unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}
