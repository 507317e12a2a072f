//! The load generator's event loop: one mio poll per thread driving many leechers.
//!
//! Cheap per byte on purpose (it shares a 2-core box with the seeder under test): 256 KiB
//! reads, blocks hashed in place from the receive buffer, no per-message allocation.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::leecher::{BenchTorrent, Leecher};
use super::PeerResult;

/// Receive buffer per connection: many 16 KiB block frames per read syscall.
const RECV_BUFFER_BYTES: usize = 256 * 1024;

/// One leecher to run: where to connect from and to.
#[derive(Clone, Debug)]
pub struct PeerPlan {
    /// Index of the peer in the report.
    pub index: usize,
    /// Local address to bind before connecting (`None`: let the kernel choose).
    pub source: Option<std::net::IpAddr>,
    /// The seeder.
    pub target: SocketAddr,
    /// First piece of this leecher's rotation.
    pub first_piece: u32,
}

struct Conn {
    plan: PeerPlan,
    stream: TcpStream,
    leecher: Leecher,
    rbuf: Vec<u8>,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    started: Instant,
    finished: Option<Result<(), String>>,
}

fn connect(plan: &PeerPlan) -> io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(plan.target);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = plan.source {
        socket.bind(&SocketAddr::new(ip, 0).into())?;
    }
    match socket.connect(&plan.target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Runs `plans` to completion on this thread, each leecher downloading the whole torrent;
/// gives up on a leecher after `timeout`.
pub fn run_thread(
    torrent: Arc<BenchTorrent>,
    plans: Vec<PeerPlan>,
    pipeline: usize,
    timeout: Duration,
) -> Vec<PeerResult> {
    let mut poll = Poll::new().expect("create epoll instance");
    let mut conns: Vec<Conn> = Vec::with_capacity(plans.len());
    let mut results = Vec::with_capacity(plans.len());
    for plan in plans {
        match connect(&plan) {
            Ok(mut stream) => {
                let token = Token(conns.len());
                poll.registry()
                    .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                    .expect("register socket");
                let leecher = Leecher::new(torrent.clone(), plan.first_piece, pipeline);
                conns.push(Conn {
                    plan,
                    stream,
                    leecher,
                    rbuf: vec![0; RECV_BUFFER_BYTES],
                    rlen: 0,
                    wbuf: Vec::with_capacity(64 * 1024),
                    wpos: 0,
                    started: Instant::now(),
                    finished: None,
                });
            }
            Err(e) => results.push(PeerResult::failed(&plan, format!("connect: {e}"))),
        }
    }
    let deadline = Instant::now() + timeout;
    let mut events = Events::with_capacity(1024);
    let mut open = conns.len();
    while open > 0 {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        poll.poll(
            &mut events,
            Some((deadline - now).min(Duration::from_millis(200))),
        )
        .or_else(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            }
        })
        .expect("epoll_wait");
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if c.finished.is_some() {
                continue;
            }
            if let Err(e) = drive(c) {
                c.finished = Some(Err(e));
            } else if c.leecher.done() {
                c.finished = Some(Ok(()));
            }
            if c.finished.is_some() {
                open -= 1;
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
    }
    for c in conns {
        let outcome = c
            .finished
            .unwrap_or_else(|| Err(format!("timed out after {timeout:?}")));
        results.push(PeerResult {
            index: c.plan.index,
            source: c.plan.source,
            bytes: c.leecher.bytes,
            pieces_ok: c.leecher.pieces_ok,
            pieces_bad: c.leecher.pieces_bad,
            seconds: c.started.elapsed().as_secs_f64(),
            error: outcome.err(),
        });
    }
    results
}

/// Reads and writes until the socket would block.
fn drive(c: &mut Conn) -> Result<(), String> {
    loop {
        let mut progressed = false;
        // Write pending output first so requests go out before we wait for more data.
        if c.wpos == c.wbuf.len() {
            c.wbuf.clear();
            c.wpos = 0;
            c.leecher.take_output(&mut c.wbuf);
        }
        while c.wpos < c.wbuf.len() {
            match c.stream.write(&c.wbuf[c.wpos..]) {
                Ok(0) => return Err("connection closed while writing".into()),
                Ok(n) => {
                    c.wpos += n;
                    progressed = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        match c.stream.read(&mut c.rbuf[c.rlen..]) {
            Ok(0) => return Err("seeder closed the connection".into()),
            Ok(n) => {
                c.rlen += n;
                let used = c
                    .leecher
                    .handle_input(&c.rbuf[..c.rlen])
                    .map_err(|e| e.to_string())?;
                c.rbuf.copy_within(used..c.rlen, 0);
                c.rlen -= used;
                progressed = true;
                if c.leecher.done() {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
            Err(e) => return Err(format!("read: {e}")),
        }
        if !progressed {
            return Ok(());
        }
    }
}
