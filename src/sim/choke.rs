//! The choker's turn: a peer's [`Choker`](crate::torrent::Choker) sees its connections as
//! [`LeechPeer`] values built from the simulated connection state, and its decisions open
//! and close flows.

use super::engine::{ConnId, PeerId, World};
use crate::time::Instant;
use crate::torrent::{Decision, LeechPeer};

impl World {
    /// Runs `p`'s choker; returns when it wants to run next.
    pub(super) fn choke(&mut self, p: PeerId) -> Instant {
        let now = self.instant();
        let flows: Vec<u32> = {
            let peer = &self.peers[p as usize];
            peer.in_flows
                .iter()
                .chain(&peer.out_flows)
                .copied()
                .collect()
        };
        for f in flows {
            self.settle(f);
        }
        // Peers neither interested nor unchoked cannot gain or lose a slot: leaving them out
        // gives the choker the same answer for less work.
        let mut view = Vec::with_capacity(self.peers[p as usize].conns.len());
        for &c in &self.peers[p as usize].conns {
            let conn = &self.conns[c as usize];
            let e = conn.end_of(p);
            let (me, them) = (&conn.sides[e], &conn.sides[1 - e]);
            if !them.interested && me.choking {
                continue;
            }
            let receiving = me.flow_in.is_some_and(|f| self.flows[f as usize].active);
            view.push(LeechPeer {
                key: c,
                interested: them.interested,
                choked: me.choking,
                am_interested: me.interested,
                peer_choking_us: them.choking,
                download_rate: me.recv.rate(now),
                upload_rate: me.sent.rate(now),
                last_block_received: if receiving { Some(now) } else { me.last_block },
                waiting_since: me.waiting_since,
                connected_at: conn.connected_at,
            });
        }
        let mut decisions = Vec::new();
        self.peers[p as usize]
            .choker
            .tick(now, &view, &mut decisions);
        for (c, d) in decisions {
            self.apply(p, c, d);
        }
        self.peers[p as usize].choker.next_tick()
    }

    fn apply(&mut self, p: PeerId, c: ConnId, d: Decision) {
        let now = self.instant();
        let Some(conn) = self.conns.get_mut(c as usize) else {
            return;
        };
        let e = conn.end_of(p);
        let other = conn.ends[1 - e];
        match d {
            Decision::Unchoke => {
                conn.sides[e].choking = false;
                conn.sides[1 - e].waiting_since = now;
                // Unchoke to the peer, request back, first byte out: the request's round
                // trip after the one-way unchoke, counted as two trips from here.
                let delay = 1.5 * self.round_trip(c);
                self.request(other, c, delay);
            }
            Decision::Choke => {
                conn.sides[e].choking = true;
                if let Some(f) = conn.sides[1 - e].flow_in {
                    self.end_flow(f);
                    self.refill(other);
                }
            }
        }
    }
}
