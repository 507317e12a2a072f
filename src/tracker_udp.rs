//! SHELL CODE: runs one [`UdpExchange`] over a blocking UDP socket (BEP 15 trackers).
//!
//! The exchange decides what to send and when; this file resolves `udp://host:port`, owns the
//! socket and the clock, and caches connection ids per tracker address between exchanges.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Duration;

use crate::time::Clock;
use crate::tracker::udp_client::{CachedConnection, UdpExchange, UdpGoal, UdpOutcome};
use crate::tracker::udp_proto::DATAGRAM_BYTES_MAX;
use crate::tracker::TrackerError;

/// Connection ids by tracker address, reused while fresh.
#[derive(Debug, Default)]
pub struct UdpConnections {
    by_addr: HashMap<SocketAddr, CachedConnection>,
}

/// The `host:port` of a `udp://host:port[/path]` URL.
pub fn udp_host_port(url: &str) -> Result<&str, TrackerError> {
    let unsupported = || TrackerError::UnsupportedScheme {
        url: url.to_owned(),
    };
    let rest = url
        .get(..6)
        .filter(|p| p.eq_ignore_ascii_case("udp://"))
        .map(|_| &url[6..])
        .ok_or_else(unsupported)?;
    let host_port = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host_port.is_empty() || !host_port.contains(':') {
        return Err(TrackerError::Transport {
            reason: format!("{url:?} has no host:port"),
        });
    }
    Ok(host_port)
}

/// Runs `goal` against the tracker at `url`, giving up after `attempts_max` sends of a step or
/// when `deadline` has passed, whichever is first.
pub fn exchange_blocking(
    url: &str,
    goal: UdpGoal,
    connections: &mut UdpConnections,
    attempts_max: u32,
    deadline: Duration,
) -> Result<UdpOutcome, TrackerError> {
    let transport = |e: std::io::Error| TrackerError::Transport {
        reason: e.to_string(),
    };
    let host_port = udp_host_port(url)?;
    let addr = host_port
        .to_socket_addrs()
        .map_err(transport)?
        .next()
        .ok_or_else(|| TrackerError::Transport {
            reason: format!("{host_port} resolves to no address"),
        })?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind).map_err(transport)?;
    socket.connect(addr).map_err(transport)?;
    let clock = Clock::new();
    let end = clock.now() + deadline;
    let cached = connections.by_addr.get(&addr).copied();
    let mut ex = UdpExchange::new(goal, cached, addr.is_ipv6(), attempts_max, rand::random());
    let mut out = Vec::with_capacity(128);
    let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
    loop {
        let now = clock.now();
        if let Some(result) = ex.outcome() {
            if let Some(c) = ex.connection() {
                connections.by_addr.insert(addr, c);
            }
            return result.clone();
        }
        if now >= end {
            return Err(TrackerError::UdpTimedOut {
                attempts: ex.sends(),
            });
        }
        if ex.poll_transmit(now, &mut out) {
            // A send error (ICMP unreachable from an earlier send) is retried like a loss.
            let _ = socket.send(&out);
        }
        let wake = ex.poll_timeout().unwrap_or(end).min(end);
        let wait = (wake - now).max(Duration::from_millis(1));
        socket.set_read_timeout(Some(wait)).map_err(transport)?;
        match socket.recv(&mut buf) {
            Ok(n) => {
                if let Err(e) = ex.handle_datagram(&buf[..n], clock.now()) {
                    tracing::debug!(tracker = url, "UDP tracker reply ignored or failed: {e}");
                }
            }
            Err(e) if is_timeout(&e) => ex.handle_timeout(clock.now()),
            // ECONNREFUSED from an ICMP port-unreachable: nothing listens; wait out the timer
            // as a lost packet would, but do not spin.
            Err(_) => {
                std::thread::sleep(wait.min(Duration::from_millis(200)));
                ex.handle_timeout(clock.now());
            }
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
