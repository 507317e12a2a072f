//! One iterative Kademlia lookup (BEP 5 `find_node` / `get_peers`): the candidate list
//! sorted by XOR distance to the target, α queries in flight, and the stop rule "the K
//! closest nodes we know have all answered or failed".
//!
//! Hop counting: nodes from our routing table (or bootstrap list) are hop 1; a node first
//! learnt from a hop-h reply is hop h+1. A lookup's hop count is the hop of the closest node
//! that answered, i.e. how many sequential rounds it took to reach the target's
//! neighbourhood. Pure state: the node state machine sends the queries it asks for.

use std::net::SocketAddrV4;

use super::krpc::Response;
use super::{NodeId, NodeInfo, ALPHA, K};

/// Candidates a lookup remembers (the closest ones; farther ones are forgotten).
pub const CANDIDATES_MAX: usize = 64;
/// Distinct peers a `get_peers` lookup collects.
pub const LOOKUP_PEERS_MAX: usize = 1000;

/// Where a candidate stands.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CandState {
    /// Not asked yet.
    Fresh,
    /// Query in flight.
    Asked,
    /// Replied.
    Answered,
    /// Timed out or replied with an error.
    Failed,
}

/// A node the lookup may ask.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Its id; `None` for a bootstrap address we have not heard from yet.
    pub id: Option<NodeId>,
    /// Its address.
    pub addr: SocketAddrV4,
    /// Where it stands.
    pub state: CandState,
    /// Hop at which we learnt of it (1 = from our own table).
    pub hop: u8,
    /// Its write token (`get_peers` replies), for the announce that follows.
    pub token: Option<Vec<u8>>,
}

/// One lookup in progress.
#[derive(Clone, Debug)]
pub struct Lookup {
    /// The id or info-hash looked for.
    pub target: NodeId,
    cands: Vec<Candidate>,
    own: NodeId,
    /// Distinct peers found so far.
    pub peers: Vec<SocketAddrV4>,
    /// Hop of the first reply that carried peers.
    pub first_peers_hop: Option<u8>,
    /// Queries sent.
    pub queried: u32,
    /// Replies received.
    pub answered: u32,
}

impl Lookup {
    /// A lookup of `target` starting from `seeds` (closest known nodes) and `bootstrap`
    /// addresses (ids unknown); `own` is never asked.
    pub fn new(
        target: NodeId,
        own: NodeId,
        seeds: &[NodeInfo],
        bootstrap: &[SocketAddrV4],
    ) -> Lookup {
        let mut l = Lookup {
            target,
            cands: Vec::new(),
            own,
            peers: Vec::new(),
            first_peers_hop: None,
            queried: 0,
            answered: 0,
        };
        for addr in bootstrap {
            if !l.cands.iter().any(|c| c.addr == *addr) {
                l.cands.push(Candidate {
                    id: None,
                    addr: *addr,
                    state: CandState::Fresh,
                    hop: 1,
                    token: None,
                });
            }
        }
        l.add_nodes(seeds, 1);
        l
    }

    /// Sort key: unknown ids first (bootstrap nodes must be asked to learn anything), then
    /// by distance to the target.
    fn key(&self, c: &Candidate) -> (bool, [u8; 20]) {
        match c.id {
            None => (false, [0; 20]),
            Some(id) => (true, self.target.distance(&id)),
        }
    }

    fn add_nodes(&mut self, nodes: &[NodeInfo], hop: u8) {
        for n in nodes {
            if n.id == self.own || n.addr.port() == 0 {
                continue;
            }
            let known = self
                .cands
                .iter()
                .any(|c| c.id == Some(n.id) || c.addr == n.addr);
            if !known {
                self.cands.push(Candidate {
                    id: Some(n.id),
                    addr: n.addr,
                    state: CandState::Fresh,
                    hop,
                    token: None,
                });
            }
        }
        let mut cands = std::mem::take(&mut self.cands);
        cands.sort_by_key(|c| self.key(c));
        cands.truncate(CANDIDATES_MAX);
        self.cands = cands;
    }

    /// Queries in flight.
    pub fn in_flight(&self) -> usize {
        self.cands
            .iter()
            .filter(|c| c.state == CandState::Asked)
            .count()
    }

    /// The next node to ask, if the α budget allows and a fresh node is still among the K
    /// closest not-failed candidates; it is marked asked.
    pub fn next_to_ask(&mut self) -> Option<Candidate> {
        if self.in_flight() >= ALPHA {
            return None;
        }
        let mut alive = 0;
        for c in &mut self.cands {
            if c.state == CandState::Failed {
                continue;
            }
            if alive >= K {
                return None;
            }
            alive += 1;
            if c.state == CandState::Fresh {
                c.state = CandState::Asked;
                self.queried += 1;
                return Some(c.clone());
            }
        }
        None
    }

    /// True when nothing is in flight and no fresh node is left among the K closest.
    pub fn is_done(&self) -> bool {
        if self.in_flight() > 0 {
            return false;
        }
        !self
            .cands
            .iter()
            .filter(|c| c.state != CandState::Failed)
            .take(K)
            .any(|c| c.state == CandState::Fresh)
    }

    /// Records `from`'s reply; returns the peers in it that are new to this lookup.
    pub fn on_response(&mut self, from: SocketAddrV4, r: &Response) -> Vec<SocketAddrV4> {
        let Some(i) = self.cands.iter().position(|c| c.addr == from) else {
            return Vec::new();
        };
        if self.cands[i].state != CandState::Asked {
            return Vec::new();
        }
        self.answered += 1;
        let hop = self.cands[i].hop;
        {
            let c = &mut self.cands[i];
            c.state = CandState::Answered;
            c.id = Some(r.id);
            c.token = r.token.clone();
        }
        let mut new_peers = Vec::new();
        for p in &r.values {
            if self.peers.len() >= LOOKUP_PEERS_MAX {
                break;
            }
            if p.port() != 0 && !self.peers.contains(p) {
                self.peers.push(*p);
                new_peers.push(*p);
            }
        }
        if !r.values.is_empty() && self.first_peers_hop.is_none() {
            self.first_peers_hop = Some(hop);
        }
        // A responder that turns out to be ourselves (a bootstrap address that is our own)
        // is dropped from the list.
        if r.id == self.own {
            self.cands[i].state = CandState::Failed;
        }
        self.add_nodes(&r.nodes, hop.saturating_add(1));
        new_peers
    }

    /// Records that `from` did not answer.
    pub fn on_failure(&mut self, from: SocketAddrV4) {
        if let Some(c) = self.cands.iter_mut().find(|c| c.addr == from) {
            if c.state == CandState::Asked {
                c.state = CandState::Failed;
            }
        }
    }

    /// The K closest nodes that answered, closest first.
    pub fn closest_answered(&self) -> Vec<&Candidate> {
        self.cands
            .iter()
            .filter(|c| c.state == CandState::Answered && c.id.is_some())
            .take(K)
            .collect()
    }

    /// The hop of the closest node that answered (0 when none did).
    pub fn hops(&self) -> u8 {
        self.closest_answered().first().map_or(0, |c| c.hop)
    }
}
