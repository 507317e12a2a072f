//! The Kademlia DHT (BEP 5): node ids and XOR distance, the KRPC codec, the routing table,
//! the peer store and the node state machine with its iterative lookups.
//!
//! Sans-IO like the rest of the core: [`Node`] takes datagrams and `now` and returns datagrams
//! to send and events; it never touches a socket, a clock or a file. [`crate::dht_udp`]
//! (the UDP shell, outside the core) drives it over a `std::net::UdpSocket` on one thread.
//! IPv4 only for now (BEP 32's `nodes6` is ignored).

pub mod krpc;
pub mod lookup;
pub mod node;
pub mod peers;
pub mod routing;

#[cfg(test)]
mod krpc_tests;
#[cfg(test)]
mod node_tests;
#[cfg(test)]
mod routing_tests;
#[cfg(test)]
pub(crate) mod sim;

use std::fmt;
use std::net::SocketAddrV4;

pub use krpc::{KrpcError, Message};
pub use node::{Event, LookupId, LookupReport, Node, NodeConfig, Transmit};
pub use routing::RoutingTable;

/// Nodes per bucket (Kademlia's k) and the number of closest nodes a lookup converges on.
pub const K: usize = 8;
/// Queries a lookup keeps in flight at once (Kademlia's α).
pub const ALPHA: usize = 3;
/// Bits in a node id, and so the most buckets a routing table can have.
pub const ID_BITS: usize = 160;

/// A 160-bit node id (also used for info-hashes and lookup targets).
#[derive(Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; 20]);

impl NodeId {
    /// The XOR distance to `other`, comparable as a big-endian number.
    pub fn distance(&self, other: &NodeId) -> [u8; 20] {
        let mut d = [0u8; 20];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        d
    }

    /// How many leading bits `self` and `other` share (160 when equal).
    pub fn common_prefix_bits(&self, other: &NodeId) -> usize {
        for (i, b) in self.distance(other).iter().enumerate() {
            if *b != 0 {
                return i * 8 + b.leading_zeros() as usize;
            }
        }
        ID_BITS
    }

    /// A random id sharing exactly `prefix_bits` leading bits with `self` (bit `prefix_bits`
    /// flipped, the rest from `random`); with `prefix_bits == 160`, `self`.
    pub fn random_with_prefix(&self, prefix_bits: usize, random: [u8; 20]) -> NodeId {
        if prefix_bits >= ID_BITS {
            return *self;
        }
        let mut out = random;
        for bit in 0..=prefix_bits {
            let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
            let own = self.0[byte] & mask;
            let want = if bit == prefix_bits { own ^ mask } else { own };
            out[byte] = (out[byte] & !mask) | want;
        }
        NodeId(out)
    }

    /// Lowercase hex, for logs.
    pub fn to_hex(&self) -> String {
        crate::metainfo::to_hex(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", &self.to_hex()[..12])
    }
}

impl From<crate::metainfo::InfoHash> for NodeId {
    fn from(h: crate::metainfo::InfoHash) -> NodeId {
        NodeId(h.0)
    }
}

/// A node as the DHT knows it: its id and its UDP address.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    /// The id it claims.
    pub id: NodeId,
    /// Where it answers.
    pub addr: SocketAddrV4,
}
