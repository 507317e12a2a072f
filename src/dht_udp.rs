//! The DHT shell: one thread, one `std::net::UdpSocket`, driving a sans-IO [`Node`].
//!
//! Control plane (a few datagrams a second), so a plain blocking socket with a read timeout
//! is enough. The routing table is loaded from and saved to a state file (atomic write:
//! temporary file, fsync, rename), so a restarted node keeps its id and its neighbours.
//! Peers found are handed to a caller-supplied sink, as the tracker announcer does.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

use crate::metainfo::InfoHash;
use crate::time::{Clock, Instant};

use crate::dht::krpc::KRPC_BYTES_MAX;
use crate::dht::routing::parse_saved;
use crate::dht::{Event, Node, NodeConfig, NodeId};

/// Longest the thread sleeps in `recv` before checking commands and the stop flag.
pub const POLL_MAX: Duration = Duration::from_millis(50);
/// How often the shell logs a status line (table size, stored peers).
pub const STATUS_EVERY: Duration = Duration::from_secs(30);

/// How to run a DHT node.
#[derive(Clone, Debug)]
pub struct DhtConfig {
    /// UDP address to bind (IPv4).
    pub listen: SocketAddr,
    /// Nodes to bootstrap from.
    pub bootstrap: Vec<SocketAddrV4>,
    /// Where the routing table is loaded from at start and saved at exit.
    pub state: Option<PathBuf>,
}

/// Public routers used when no bootstrap node is given (resolved at start; in a sandbox
/// without network they simply do not resolve).
pub const DEFAULT_BOOTSTRAP: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
];

/// Resolves `host:port` strings to IPv4 addresses; names that do not resolve are logged.
pub fn resolve_bootstrap(names: &[String]) -> Vec<SocketAddrV4> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for name in names {
        match name.to_socket_addrs() {
            Ok(addrs) => out.extend(addrs.filter_map(|a| match a {
                SocketAddr::V4(a) => Some(a),
                SocketAddr::V6(_) => None,
            })),
            Err(e) => tracing::warn!("DHT bootstrap node {name} not resolved: {e}"),
        }
    }
    out
}

/// Where found peers go: the torrent and its new peers.
pub type DhtPeerSink = Box<dyn FnMut(InfoHash, &[SocketAddr]) + Send>;

enum Command {
    Track {
        info_hash: InfoHash,
        port: Option<u16>,
        seeking: bool,
    },
    Forget(InfoHash),
}

/// A running DHT node thread.
pub struct Dht {
    commands: Sender<Command>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    local: SocketAddrV4,
}

impl Dht {
    /// Binds the socket, loads the saved table, and starts the node thread.
    pub fn start(cfg: DhtConfig, sink: DhtPeerSink) -> anyhow::Result<Dht> {
        let socket = UdpSocket::bind(cfg.listen)
            .with_context(|| format!("cannot bind the DHT socket on udp/{}", cfg.listen))?;
        let local = match socket.local_addr()? {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(a) => anyhow::bail!("the DHT is IPv4 only (asked for {a})"),
        };
        let (id, known) = load_state(cfg.state.as_ref());
        let clock = Clock::new();
        let node_cfg = NodeConfig {
            id,
            bootstrap: cfg
                .bootstrap
                .iter()
                .copied()
                .filter(|b| *b != local)
                .collect(),
            known,
            seed: rand::random(),
        };
        let node = Node::new(node_cfg, clock.now());
        tracing::info!(
            node_id = %id.to_hex(),
            "DHT node on udp/{local}, bootstrapping from {:?}",
            cfg.bootstrap
        );
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let shell = Shell {
            socket,
            node,
            clock,
            commands: rx,
            sink,
            state: cfg.state,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("dht".into())
            .spawn(move || shell.run())
            .context("cannot spawn the DHT thread")?;
        Ok(Dht {
            commands: tx,
            stop,
            thread: Some(thread),
            local,
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local
    }

    /// Announces `info_hash` with our TCP `port` (re-announced every 14 minutes); with
    /// `seeking`, searches again every few seconds until peers turn up.
    pub fn track(&self, info_hash: InfoHash, port: Option<u16>, seeking: bool) {
        let _ = self.commands.send(Command::Track {
            info_hash,
            port,
            seeking,
        });
    }

    /// Stops announcing and searching `info_hash`.
    pub fn forget(&self, info_hash: InfoHash) {
        let _ = self.commands.send(Command::Forget(info_hash));
    }

    /// Stops the thread and saves the routing table.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Dht {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Our saved id and nodes, or a fresh random id when there is no usable state file.
fn load_state(path: Option<&PathBuf>) -> (NodeId, Vec<crate::dht::NodeInfo>) {
    if let Some(p) = path {
        match std::fs::read(p) {
            Ok(bytes) => match parse_saved(&bytes) {
                Ok((id, nodes)) => {
                    tracing::info!("DHT: {} nodes loaded from {}", nodes.len(), p.display());
                    return (id, nodes);
                }
                Err(e) => tracing::warn!("DHT state {} ignored: {e}", p.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("DHT state {} unreadable: {e}", p.display()),
        }
    }
    (NodeId(rand::random()), Vec::new())
}

struct Shell {
    socket: UdpSocket,
    node: Node,
    clock: Clock,
    commands: Receiver<Command>,
    sink: DhtPeerSink,
    state: Option<PathBuf>,
    stop: Arc<AtomicBool>,
}

impl Shell {
    fn run(mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        let mut status_at = self.clock.now() + STATUS_EVERY;
        while !self.stop.load(Ordering::Relaxed) {
            let now = self.clock.now();
            self.take_commands(now);
            self.node.handle_timeout(now);
            self.flush();
            let wait = (self.node.poll_timeout() - self.clock.now())
                .clamp(Duration::from_millis(1), POLL_MAX);
            let _ = self.socket.set_read_timeout(Some(wait));
            match self.socket.recv_from(&mut buf) {
                Ok((len, SocketAddr::V4(from))) if len <= KRPC_BYTES_MAX => {
                    let now = self.clock.now();
                    self.node.handle_datagram(from, &buf[..len], now);
                }
                Ok(_) => {} // IPv6 or oversized: not ours to answer.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                            | std::io::ErrorKind::ConnectionRefused
                    ) => {}
                Err(e) => {
                    tracing::warn!("DHT socket error: {e}");
                    std::thread::sleep(POLL_MAX);
                }
            }
            self.flush();
            if self.clock.now() >= status_at {
                status_at = self.clock.now() + STATUS_EVERY;
                self.log_status();
            }
        }
        self.save();
    }

    fn take_commands(&mut self, now: Instant) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Track {
                    info_hash,
                    port,
                    seeking,
                } => self.node.track(info_hash.into(), port, seeking, now),
                Command::Forget(ih) => self.node.forget(&ih.into()),
            }
        }
    }

    fn flush(&mut self) {
        while let Some(t) = self.node.poll_transmit() {
            if let Err(e) = self.socket.send_to(&t.bytes, t.to) {
                tracing::debug!("DHT send to {} failed: {e}", t.to);
            }
        }
        while let Some(e) = self.node.poll_event() {
            match e {
                Event::Peers { info_hash, peers } => {
                    let peers: Vec<SocketAddr> = peers.into_iter().map(SocketAddr::V4).collect();
                    tracing::debug!(info_hash = %info_hash.to_hex(), "DHT peers {peers:?}");
                    (self.sink)(InfoHash(info_hash.0), &peers);
                }
                Event::LookupDone(r) if r.get_peers => tracing::info!(
                    info_hash = %r.target.to_hex(),
                    hops = r.hops,
                    queried = r.queried,
                    answered = r.answered,
                    peers = r.peers,
                    announced_to = r.announced_to,
                    elapsed_ms = r.elapsed.as_millis() as u64,
                    "DHT get_peers lookup done"
                ),
                Event::LookupDone(r) => tracing::debug!(?r, "DHT find_node lookup done"),
            }
        }
    }

    fn log_status(&self) {
        tracing::info!(
            nodes = self.node.table().len(),
            buckets = self.node.table().bucket_count(),
            torrents_stored = self.node.store().torrent_count(),
            peers_stored = self.node.store().peer_count(),
            "DHT status"
        );
    }

    fn save(&self) {
        let Some(path) = &self.state else {
            return;
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        match crate::cli::write_atomically(path, &self.node.table().to_bytes()) {
            Ok(()) => tracing::info!(
                "DHT: {} nodes saved to {}",
                self.node.table().len(),
                path.display()
            ),
            Err(e) => tracing::warn!("DHT state not saved: {e:#}"),
        }
    }
}
