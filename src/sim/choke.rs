//! The choker's turn: a peer's [`Choker`](crate::torrent::Choker) sees its connections as
//! [`LeechPeer`] values built from the simulated connection state, and its decisions open
//! and close flows.

use super::engine::{ConnId, PeerId, World};
use crate::time::Instant;
use crate::torrent::{Decision, LeechPeer};

/// The choker's view of one connection, keyed by connection.
pub(super) type View = LeechPeer<ConnId>;

impl World {
    /// Runs `p`'s choker; returns when it wants to run next.
    pub(super) fn choke(&mut self, p: PeerId) -> Instant {
        let now = self.instant();
        // The tit-for-tat rule ranks by download rate, the seeding rule by upload rate:
        // bring only the meters it reads up to date (an in-flow feeds our `recv`, an
        // out-flow the other end's), and do not evaluate the others (each reading is an
        // `exp`). Meters take a flow's bytes as spread over time, so settling the others
        // later changes no reading.
        let seeding = self.peers[p as usize].choker.is_seeding();
        for i in 0..self.flows_of(p, seeding).len() {
            let f = self.flows_of(p, seeding)[i];
            self.settle(f);
        }
        // Peers neither interested nor unchoked cannot gain or lose a slot: leaving them out
        // gives the choker the same answer for less work. The connections are read in a pass
        // of their own (independent loads whose cache misses overlap), then the view is built.
        let mut open = std::mem::take(&mut self.scratch_fan);
        open.clear();
        for &c in &self.peers[p as usize].conns {
            let conn = &self.conns[c as usize];
            let e = conn.end_of(p);
            if conn.sides[1 - e].interested || !conn.sides[e].choking {
                open.push((c, e as u8, conn.ends[1 - e]));
            }
        }
        let mut view = std::mem::take(&mut self.scratch_view);
        view.clear();
        for &(c, e, _) in &open {
            let conn = &self.conns[c as usize];
            let e = usize::from(e);
            let (me, them) = (&conn.sides[e], &conn.sides[1 - e]);
            let (mine, theirs) = (&conn.meters[e], &conn.meters[1 - e]);
            let receiving = me.flow_in.is_some_and(|f| self.flows[f as usize].active);
            let (download_rate, upload_rate) = if seeding {
                (0, theirs.recv.rate(now))
            } else {
                (mine.recv.rate(now), 0)
            };
            view.push(LeechPeer {
                key: c,
                interested: them.interested,
                choked: me.choking,
                am_interested: me.interested,
                peer_choking_us: them.choking,
                download_rate,
                upload_rate,
                last_block_received: if receiving {
                    Some(now)
                } else {
                    mine.last_block
                },
                waiting_since: mine.waiting_since,
                connected_at: conn.connected_at,
            });
        }
        self.scratch_fan = open;
        let mut decisions = std::mem::take(&mut self.scratch_decisions);
        decisions.clear();
        self.peers[p as usize]
            .choker
            .tick(now, &view, &mut decisions);
        self.scratch_view = view;
        for &(c, d) in &decisions {
            self.apply(p, c, d);
        }
        self.scratch_decisions = decisions;
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
                conn.meters[1 - e].waiting_since = now;
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
