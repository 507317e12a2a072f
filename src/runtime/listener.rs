//! Socket set-up for shards: `SO_REUSEPORT` listeners (IPv4 and IPv6) and outbound sockets bound
//! to a chosen source address.
//!
//! Owns only socket options and addresses; it never reads or writes data (the backends do).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Pending-connection queue of each listener. The kernel caps it at `net.core.somaxconn`
/// (4096 on current kernels); a seeder that serves thousands of peers takes bursts of connects.
pub const LISTEN_BACKLOG: i32 = 4096;

/// A listening socket owned by one shard; several shards bind the same address with
/// `SO_REUSEPORT` and the kernel spreads incoming connections between them.
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    local: SocketAddr,
}

impl Listener {
    /// Binds `addr` with `SO_REUSEPORT` (and `IPV6_V6ONLY` for IPv6, so `[::]` and `0.0.0.0`
    /// can both be bound on one port) and starts listening.
    pub fn bind(addr: SocketAddr) -> io::Result<Listener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.set_cloexec(true)?;
        socket.bind(&SockAddr::from(addr))?;
        socket.listen(LISTEN_BACKLOG)?;
        let local = socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("listener has a non-IP address"))?;
        Ok(Listener { socket, local })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The raw descriptor (for the backend).
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// A non-blocking TCP socket for an outbound connection to `peer`, bound first to `local_ip`
/// (port chosen by the kernel) when given, e.g. 127.0.0.5 to act as a distinct test peer.
pub(crate) fn outbound_socket(peer: SocketAddr, local_ip: Option<IpAddr>) -> io::Result<OwnedFd> {
    let socket = Socket::new(Domain::for_address(peer), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_cloexec(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(ip) = local_ip {
        if ip.is_ipv4() != peer.is_ipv4() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("source {ip} and peer {peer} are of different address families"),
            ));
        }
        // Bind-before-connect: without this the kernel reserves the port only at connect, and
        // with it a source IP gets its own 28k ephemeral ports.
        set_bind_address_no_port(&socket);
        socket.bind(&SockAddr::from(SocketAddr::new(ip, 0)))?;
    }
    Ok(socket.into())
}

/// Sets IP_BIND_ADDRESS_NO_PORT (Linux 4.2+); failure only costs ephemeral ports, so ignore it.
fn set_bind_address_no_port(socket: &Socket) {
    let one: libc::c_int = 1;
    // SAFETY: passes a valid c_int option value of the stated size.
    let res = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if res != 0 {
        tracing::debug!("IP_BIND_ADDRESS_NO_PORT: {}", io::Error::last_os_error());
    }
}

/// Prepares an accepted socket: non-blocking (epoll needs it, io_uring does not mind) and
/// Nagle off, because we batch ourselves and a request answered late costs throughput.
pub(crate) fn prepare_accepted(fd: &OwnedFd) -> io::Result<SocketAddr> {
    let socket = socket2::SockRef::from(fd);
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    socket
        .peer_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("peer has a non-IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_listeners_share_a_port_with_reuseport() {
        // SO_REUSEPORT lets every shard bind the same address.
        let first = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let second = Listener::bind(first.local_addr()).unwrap();
        assert_eq!(first.local_addr(), second.local_addr());
        let v6 = Listener::bind("[::1]:0".parse().unwrap());
        if let Ok(v6) = v6 {
            assert!(v6.local_addr().is_ipv6());
        }
    }
}
