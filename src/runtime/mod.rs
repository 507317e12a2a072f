//! Thread-per-core shards: io_uring backend and an epoll (mio) fallback running one shard loop.
//!
//! Owns threads, sockets, files and the clock for the protocol core: each shard is a pinned
//! thread with its own backend, `SO_REUSEPORT` listener, connection slab, buffer pools and
//! timers, driving [`Connection`]s and a [`ShardApp`], and writing and syncing the blocks the
//! app asks it to ([`ShardCtx::write_block`]). No locks on the data path; other threads
//! reach a shard through a bounded command queue and an eventfd. Start here: [`spawn_shards`].

mod buffers;
mod core;
mod disk;
mod files;
mod io;
mod latency;
mod listener;
mod mailbox;
mod outq;
mod protocol;
mod shard;
mod timers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use buffers::{BufferPool, PoolBuf, BLOCK_BYTES_MAX, BLOCK_HEADER_BYTES, RECV_BUF_BYTES};
pub use disk::{DiskError, IoTag};
pub use io::{probe_uring, IoKind, IO_ENV_VAR, SEND_BYTES_MAX, SEND_IOVECS_MAX};
pub use latency::{LatencyHistogram, LATENCY_BOUNDS_US, LATENCY_BUCKETS};
pub use listener::{Listener, LISTEN_BACKLOG};
pub use mailbox::{Mailboxes, COMMANDS_QUEUED_MAX};
pub use protocol::{
    BlockSend, BlockSource, CloseReason, ConnKey, Connection, FileId, FileSpan, FileSpans,
    ShardApp, BLOCK_SPANS_MAX, CLOSE_KINDS,
};
pub use shard::{ShardCtx, ShardLimits, ShardStats, HEARTBEAT};

use crate::time::Clock;

/// How often [`Runtime::supervise`] checks the shards' join handles.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(100);

/// How a [`Runtime`] is started.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Shard threads; 0 means one per available core.
    pub shards: usize,
    /// Backend; `Auto` honours `RINGSEED_IO`, then probes io_uring.
    pub io: IoKind,
    /// Addresses every shard listens on (port 0: the kernel picks one port for all shards).
    pub listen: Vec<SocketAddr>,
    /// Pin shard `i` to core `i % cores` (failure is logged at debug level and ignored).
    pub pin_cores: bool,
    /// Per-shard bounds.
    pub limits: ShardLimits,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shards: 0,
            io: IoKind::Auto,
            listen: Vec::new(),
            pin_cores: true,
            limits: ShardLimits::default(),
        }
    }
}

/// What can go wrong starting or supervising shards.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// `RINGSEED_IO` holds something other than uring, epoll or auto.
    #[error("bad I/O backend choice: {0}")]
    BadIoKind(String),
    /// Binding a listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A shard could not set up its backend (e.g. io_uring forced but forbidden).
    #[error("shard {shard} failed to start on {io:?}: {source}")]
    ShardStart {
        /// Shard index.
        shard: usize,
        /// The backend it tried.
        io: IoKind,
        /// The cause.
        source: std::io::Error,
    },
    /// Creating a thread or an eventfd failed.
    #[error("cannot start shard {shard}: {source}")]
    Spawn {
        /// Shard index.
        shard: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// A shard thread ended while the runtime was running.
    #[error("shard {shard} died: {cause}")]
    ShardDied {
        /// Shard index.
        shard: usize,
        /// Panic message or the error that ended its loop.
        cause: String,
    },
    /// The shard's command queue is full (it is overloaded or stuck).
    #[error("command queue of shard {shard} is full ({max} queued)")]
    CommandQueueFull {
        /// Shard index.
        shard: usize,
        /// The queue bound.
        max: usize,
    },
    /// No such shard, or it has stopped.
    #[error("shard {shard} is not running")]
    ShardGone {
        /// Shard index.
        shard: usize,
    },
}

/// What `make_app` gets to build one shard's application.
pub struct ShardInfo<Cmd> {
    /// This shard's index (0-based).
    pub index: usize,
    /// Every shard's command queue, for cross-shard messages (this one's included).
    pub mailboxes: Mailboxes<Cmd>,
}

/// Running shards. Dropping it stops them (like [`Runtime::shutdown`], ignoring errors).
pub struct Runtime<Cmd> {
    threads: Vec<Option<JoinHandle<std::io::Result<()>>>>,
    mailboxes: Mailboxes<Cmd>,
    stop: Arc<AtomicBool>,
    io: IoKind,
    local_addrs: Vec<SocketAddr>,
}

/// Starts `config.shards` shard threads, each running the app built by `make_app(info)` (on the
/// shard's own thread) with its own backend and listeners. Returns once every shard has set up its backend, so a
/// forced-but-unavailable io_uring is reported here.
///
/// ```no_run
/// # use ringseed::runtime::*;
/// # struct MyApp; struct MyConn;
/// # impl Connection for MyConn {
/// #   fn handle_input(&mut self, b: &[u8], _: ringseed::time::Instant) -> Result<usize, CloseReason> { Ok(b.len()) }
/// #   fn write_control(&mut self, _: &mut Vec<u8>) {}
/// #   fn poll_block(&mut self) -> Option<BlockSend> { None }
/// #   fn on_sent(&mut self, _: usize, _: ringseed::time::Instant) {}
/// #   fn handle_timeout(&mut self, _: ringseed::time::Instant) -> Result<(), CloseReason> { Ok(()) }
/// #   fn poll_timeout(&self) -> Option<ringseed::time::Instant> { None }
/// # }
/// # impl ShardApp for MyApp { type Conn = MyConn; type Command = ();
/// #   fn accept(&mut self, _: std::net::SocketAddr, _: ringseed::time::Instant) -> Option<MyConn> { Some(MyConn) } }
/// let config = RuntimeConfig { listen: vec!["0.0.0.0:6881".parse().unwrap()], ..Default::default() };
/// let mut runtime = spawn_shards(config, |_shard| MyApp)?;
/// let stop = std::sync::atomic::AtomicBool::new(false);
/// runtime.supervise(&stop)?; // returns Err(ShardDied) with context if a shard dies
/// # Ok::<(), RuntimeError>(())
/// ```
pub fn spawn_shards<A, F>(
    config: RuntimeConfig,
    make_app: F,
) -> Result<Runtime<A::Command>, RuntimeError>
where
    A: ShardApp,
    A::Command: Send,
    F: Fn(ShardInfo<A::Command>) -> A + Send + Sync + 'static,
{
    let env = std::env::var(IO_ENV_VAR).ok();
    let io = select_io(config.io, env.as_deref(), io::probe_uring)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let count = if config.shards == 0 {
        cores
    } else {
        config.shards
    };
    let mut listeners = bind_listeners(&config.listen, count)?;
    let local_addrs = listeners
        .first()
        .map_or_else(Vec::new, |l| l.iter().map(Listener::local_addr).collect());
    let make_app = Arc::new(make_app);
    let stop = Arc::new(AtomicBool::new(false));
    let clock = Clock::new();
    let (ready_tx, ready_rx) = mpsc::channel();
    let (mailboxes, inboxes) =
        mailbox::mailboxes(count).map_err(|source| RuntimeError::Spawn { shard: 0, source })?;
    let mut runtime = Runtime {
        threads: Vec::new(),
        mailboxes: mailboxes.clone(),
        stop: Arc::clone(&stop),
        io,
        local_addrs,
    };
    for (index, (shard_listeners, inbox)) in listeners.drain(..).zip(inboxes).enumerate() {
        let setup = ShardSetup {
            index,
            io,
            limits: config.limits,
            listeners: shard_listeners,
            parts: shard::ShardParts {
                stop: Arc::clone(&stop),
                inbox,
                clock,
            },
        };
        let info = ShardInfo {
            index,
            mailboxes: mailboxes.clone(),
        };
        let pin_core = config.pin_cores.then_some(index % cores);
        let thread = spawn_one(
            setup,
            info,
            Arc::clone(&make_app),
            ready_tx.clone(),
            pin_core,
        )?;
        runtime.threads.push(Some(thread));
    }
    drop(ready_tx);
    for _ in 0..count {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err((shard, source))) => return Err(RuntimeError::ShardStart { shard, io, source }),
            Err(_) => {
                return Err(runtime
                    .check()
                    .err()
                    .unwrap_or(RuntimeError::ShardGone { shard: 0 }))
            }
        }
    }
    Ok(runtime)
}

/// Resolves the backend once for all shards, logging exactly one warning when Auto falls back.
fn select_io(
    requested: IoKind,
    env: Option<&str>,
    probe: impl FnOnce() -> Result<(), String>,
) -> Result<IoKind, RuntimeError> {
    let (io, why) = io::resolve_kind(requested, env, probe).map_err(RuntimeError::BadIoKind)?;
    if let Some(why) = why {
        tracing::warn!("io_uring unavailable, using the epoll backend: {why}");
    }
    Ok(io)
}

type Ready = mpsc::Sender<Result<(), (usize, std::io::Error)>>;

/// Starts one shard thread, pinned to `pin_core` if given.
fn spawn_one<A, F>(
    setup: ShardSetup<A::Command>,
    info: ShardInfo<A::Command>,
    make_app: Arc<F>,
    ready: Ready,
    pin_core: Option<usize>,
) -> Result<JoinHandle<std::io::Result<()>>, RuntimeError>
where
    A: ShardApp,
    A::Command: Send,
    F: Fn(ShardInfo<A::Command>) -> A + Send + Sync + 'static,
{
    let index = setup.index;
    std::thread::Builder::new()
        .name(format!("shard-{index}"))
        .spawn(move || {
            if let Some(core) = pin_core {
                pin_to_core(core);
            }
            run_shard(setup, info, &*make_app, ready)
        })
        .map_err(|source| RuntimeError::Spawn {
            shard: index,
            source,
        })
}

/// What a shard thread is started with, besides its application.
struct ShardSetup<Cmd> {
    index: usize,
    io: IoKind,
    limits: ShardLimits,
    listeners: Vec<Listener>,
    parts: shard::ShardParts<Cmd>,
}

fn run_shard<A: ShardApp>(
    setup: ShardSetup<A::Command>,
    info: ShardInfo<A::Command>,
    make_app: &(dyn Fn(ShardInfo<A::Command>) -> A + Send + Sync),
    ready: Ready,
) -> std::io::Result<()> {
    let ShardSetup {
        index,
        io,
        limits,
        listeners,
        parts,
    } = setup;
    let backend_config = io::BackendConfig {
        recv_bufs: limits.recv_bufs,
        block_bufs: limits.block_bufs,
        write_bufs: limits.write_bufs,
        ops_max: limits.ops_max(listeners.len()),
    };
    let built = io::build(io, backend_config).and_then(|backend| {
        let core = core::Core::new(index, backend, limits, listeners);
        shard::Shard::new(make_app(info), core, parts)
    });
    let shard = match built {
        Ok(shard) => {
            let _ = ready.send(Ok(()));
            shard
        }
        Err(e) => {
            let copy = std::io::Error::new(e.kind(), e.to_string());
            let _ = ready.send(Err((index, e)));
            return Err(copy);
        }
    };
    tracing::debug!(shard = index, ?io, "shard running");
    shard.run()
}

/// Binds every address once per shard; port 0 is resolved by the first shard's bind and reused.
fn bind_listeners(addrs: &[SocketAddr], count: usize) -> Result<Vec<Vec<Listener>>, RuntimeError> {
    let mut resolved = addrs.to_vec();
    let mut all = Vec::with_capacity(count);
    for _ in 0..count {
        let mut mine = Vec::with_capacity(resolved.len());
        for addr in resolved.iter_mut() {
            let listener = Listener::bind(*addr).map_err(|source| RuntimeError::Listen {
                addr: *addr,
                source,
            })?;
            *addr = listener.local_addr();
            mine.push(listener);
        }
        all.push(mine);
    }
    Ok(all)
}

/// Pins the calling thread to `core`; failure (e.g. a restricted cpuset) is only logged.
fn pin_to_core(core: usize) {
    // SAFETY: cpu_set_t is plain data; CPU_SET stays in bounds for core < CPU_SETSIZE.
    let result = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core % libc::CPU_SETSIZE as usize, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if result != 0 {
        tracing::debug!(
            core,
            "cannot pin shard thread: {}",
            std::io::Error::last_os_error()
        );
    }
}

impl<Cmd: Send + 'static> Runtime<Cmd> {
    /// The backend the shards run on (`Uring` or `Epoll`, never `Auto`).
    pub fn io_kind(&self) -> IoKind {
        self.io
    }

    /// The listening addresses, with ports resolved.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.threads.len()
    }

    /// Queues a command for shard `shard` and wakes it.
    pub fn send(&self, shard: usize, cmd: Cmd) -> Result<(), RuntimeError> {
        self.mailboxes.send(shard, cmd)
    }

    /// Senders to every shard, for threads that outlive a borrow of the runtime.
    pub fn mailboxes(&self) -> Mailboxes<Cmd> {
        self.mailboxes.clone()
    }

    /// Reports the first shard that has ended, with its panic message or error.
    pub fn check(&mut self) -> Result<(), RuntimeError> {
        for (shard, slot) in self.threads.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(JoinHandle::is_finished) {
                let thread = slot.take().expect("checked above");
                let cause = match thread.join() {
                    Ok(Ok(())) => "its loop returned while the runtime was running".to_string(),
                    Ok(Err(e)) => format!("I/O error: {e}"),
                    Err(panic) => panic_message(&panic),
                };
                return Err(RuntimeError::ShardDied { shard, cause });
            }
        }
        Ok(())
    }

    /// Watches the shards until `stop` is set (Ok) or one dies (its error, with context).
    pub fn supervise(&mut self, stop: &AtomicBool) -> Result<(), RuntimeError> {
        while !stop.load(Ordering::Acquire) {
            self.check()?;
            std::thread::sleep(SUPERVISE_INTERVAL);
        }
        Ok(())
    }

    /// Stops every shard (each within about [`HEARTBEAT`] plus a bounded drain) and joins them.
    /// Returns the first shard failure seen, if any.
    pub fn shutdown(mut self) -> Result<(), RuntimeError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), RuntimeError> {
        self.stop.store(true, Ordering::Release);
        self.mailboxes.wake_all();
        let mut first_error = None;
        for (shard, slot) in self.threads.iter_mut().enumerate() {
            let Some(thread) = slot.take() else {
                continue;
            };
            let cause = match thread.join() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => format!("I/O error: {e}"),
                Err(panic) => panic_message(&panic),
            };
            first_error.get_or_insert(RuntimeError::ShardDied { shard, cause });
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl<Cmd> Drop for Runtime<Cmd> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.mailboxes.wake_all();
        for slot in &mut self.threads {
            if let Some(thread) = slot.take() {
                let _ = thread.join();
            }
        }
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn auto_fallback_logs_exactly_one_warning_with_the_reason() {
        // A failing probe (as under Docker's seccomp profile) yields epoll and one warn line.
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .finish();
        let eperm = || Err("io_uring_setup failed: Operation not permitted (EPERM)".to_string());
        let io = tracing::subscriber::with_default(subscriber, || {
            select_io(IoKind::Auto, None, eperm).unwrap()
        });
        assert_eq!(io, IoKind::Epoll);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let warnings: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warnings.len(), 1, "{text}");
        assert!(warnings[0].contains("EPERM") && warnings[0].contains("epoll"));
    }

    #[test]
    fn explicit_or_working_choice_logs_nothing() {
        // No warning when io_uring works or the caller chose a backend.
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            assert_eq!(
                select_io(IoKind::Auto, None, || Ok(())).unwrap(),
                IoKind::Uring
            );
            assert_eq!(
                select_io(IoKind::Epoll, None, || Err("x".into())).unwrap(),
                IoKind::Epoll
            );
            assert!(select_io(IoKind::Auto, Some("bogus"), || Ok(())).is_err());
        });
        assert!(captured.0.lock().unwrap().is_empty());
    }

    #[test]
    fn forced_uring_that_cannot_start_is_an_error_not_a_fallback() {
        // Asking for io_uring explicitly never silently runs epoll (probe not consulted).
        let io = select_io(IoKind::Uring, Some("epoll"), || Err("EPERM".into())).unwrap();
        assert_eq!(io, IoKind::Uring);
    }
}
