//! Moving bytes: requests, flows and the flow-level network model, piece completion and
//! `have` propagation. A flow is one uploader sending the blocks one request batch names to
//! one downloader; its rate is `min(uplink / uploads, downlink / downloads)` of the two
//! ends, recomputed only when either end's count of active flows changes.

use super::engine::{ConnId, PeerId, Status, World};
use super::queue::Event;
use crate::metainfo::BlockRef;
use crate::time::Instant;
use crate::torrent::Arrival;

/// One active or pending transfer. Everything but the blocks fits one cache line (the
/// struct is aligned to one): settling a flow and finding the uploader's next completion,
/// which run for every flow of a peer, read that line only.
#[repr(C, align(64))]
pub(super) struct Flow {
    pub from: PeerId,
    pub to: PeerId,
    pub conn: ConnId,
    /// Which end of `conn` the downloader `to` is.
    pub to_end: u8,
    /// Counted in both ends' shares (data is moving).
    pub active: bool,
    /// Bytes the blocks stand for, and bytes moved so far.
    pub total: f64,
    pub done: f64,
    /// Bytes per second while active.
    pub rate: f64,
    /// When `done` was last brought up to date, seconds.
    pub settled_at: f64,
    /// Unique per flow: tells a pending start or a survivor apart from a reused slot.
    pub version: u64,
    pub blocks: Vec<BlockRef>,
}

const _: () = assert!(std::mem::offset_of!(Flow, blocks) <= 64);

impl World {
    /// Brings `f`'s progress up to now and feeds the connection's rate meters. The bytes
    /// since the last settle moved at the flow's constant rate, and the meters take them as
    /// such (`record_spread`), so readings do not depend on how often a flow is settled.
    pub(super) fn settle(&mut self, f: u32) {
        let now = self.now();
        let at = self.instant();
        let flow = &mut self.flows[f as usize];
        let before = flow.done;
        if flow.active && now > flow.settled_at {
            flow.done = (flow.done + flow.rate * (now - flow.settled_at)).min(flow.total);
        }
        let from = Instant::from_nanos((flow.settled_at * 1e9).round() as u64);
        flow.settled_at = now;
        let fresh = flow.done - before;
        if fresh > 0.0 {
            let m = &mut self.conns[flow.conn as usize].meters[usize::from(flow.to_end)];
            m.recv.record_spread(fresh, from, at);
            m.last_block = Some(at);
        }
    }

    /// Recomputes `f`'s rate from both ends' shares; true if it changed.
    fn set_rate(&mut self, f: u32) -> bool {
        let flow = &self.flows[f as usize];
        let (up, down) = (
            &self.peers[flow.from as usize],
            &self.peers[flow.to as usize],
        );
        let rate = (up.up / up.out_flows.len().max(1) as f64)
            .min(down.down / down.in_flows.len().max(1) as f64);
        if rate == flow.rate {
            // Progress stays a straight line from the last settle: nothing to bring up to date.
            return false;
        }
        self.settle(f);
        self.flows[f as usize].rate = rate;
        true
    }

    /// Schedules `u`'s next flow completion: one pending event per uploader, not per flow.
    /// A pending event that fires no later than the new time is kept (it finds nothing due
    /// and reschedules then), so a share change that delays completions costs no heap entry;
    /// only an earlier time pushes a new event, and the old one goes stale.
    pub(super) fn schedule_uploader(&mut self, u: PeerId) {
        let now = self.now();
        let mut first = f64::INFINITY;
        for &f in &self.peers[u as usize].out_flows {
            let flow = &self.flows[f as usize];
            if flow.rate > 0.0 {
                let at = flow.settled_at + (flow.total - flow.done).max(0.0) / flow.rate;
                first = first.min(at);
            }
        }
        if !first.is_finite() {
            return;
        }
        let at_ns = (((first.max(now)) * 1e9).ceil() as u64).max(self.now_ns);
        let peer = &mut self.peers[u as usize];
        if peer.done_at <= at_ns {
            return;
        }
        self.version += 1;
        peer.done_version = self.version;
        peer.done_at = at_ns;
        self.q.push(
            at_ns,
            Event::UploaderDone {
                peer: u,
                version: self.version,
            },
        );
    }

    /// `p`'s active uploads (`out`) or downloads.
    pub(super) fn flows_of(&self, p: PeerId, out: bool) -> &[u32] {
        let peer = &self.peers[p as usize];
        if out {
            &peer.out_flows
        } else {
            &peer.in_flows
        }
    }

    /// Re-shares `p`'s uplink (`up`) or downlink after its count of active flows changed;
    /// the uploaders whose flows changed rate are rescheduled.
    fn reshare(&mut self, p: PeerId, up: bool) {
        let mut uploaders = std::mem::take(&mut self.scratch_peers);
        uploaders.clear();
        for i in 0..self.flows_of(p, up).len() {
            let f = self.flows_of(p, up)[i];
            if self.set_rate(f) {
                let u = self.flows[f as usize].from;
                if !uploaders.contains(&u) {
                    uploaders.push(u);
                }
            }
        }
        if up && !uploaders.contains(&p) {
            uploaders.push(p);
        }
        for &u in &uploaders {
            self.schedule_uploader(u);
        }
        self.scratch_peers = uploaders;
    }

    /// `u`'s earliest flows are due: complete every flow that has moved all its bytes.
    pub(super) fn uploader_done(&mut self, u: PeerId, version: u64) {
        if self.peers[u as usize].done_version != version {
            return;
        }
        self.peers[u as usize].done_at = u64::MAX;
        let now = self.now();
        let mut due = std::mem::take(&mut self.scratch_due);
        due.clear();
        due.extend(
            self.peers[u as usize]
                .out_flows
                .iter()
                .copied()
                .filter(|&f| {
                    let flow = &self.flows[f as usize];
                    let left = flow.total - flow.done - flow.rate * (now - flow.settled_at);
                    left <= flow.rate * 1e-6 + 1e-3
                }),
        );
        for &f in &due {
            if self
                .flows
                .get(f as usize)
                .is_some_and(|x| x.active && x.from == u)
            {
                self.flow_done(f);
            }
        }
        self.scratch_due = due;
        if self.peers[u as usize].done_version == version {
            self.schedule_uploader(u);
        }
    }

    /// `d` requests a batch from the other end of `c` if it is interested, unchoked and has
    /// no request outstanding there; the data starts after `delay` seconds.
    pub(super) fn request(&mut self, d: PeerId, c: ConnId, delay: f64) {
        let conn = &self.conns[c as usize];
        let e = conn.end_of(d);
        let u = conn.ends[1 - e];
        let (mine, theirs) = (&conn.sides[e], &conn.sides[1 - e]);
        if !mine.interested || theirs.choking || mine.flow_in.is_some() {
            return;
        }
        let Some(mut picker) = self.peers[d as usize].picker.take() else {
            return;
        };
        let mut blocks = std::mem::take(&mut self.scratch_blocks);
        blocks.clear();
        let want = self.sc.blocks_per_piece as usize;
        picker.pick(u, &self.peers[u as usize].ann, want, &mut blocks);
        self.peers[d as usize].picker = Some(picker);
        if blocks.is_empty() {
            self.scratch_blocks = blocks;
            return;
        }
        let total = blocks.len() as f64 * self.block_bytes;
        let now = self.now();
        self.version += 1;
        let version = self.version;
        let f = self.flows.insert(Flow {
            from: u,
            to: d,
            conn: c,
            to_end: e as u8,
            blocks: blocks.clone(),
            total,
            done: 0.0,
            rate: 0.0,
            settled_at: now,
            active: false,
            version,
        }) as u32;
        self.scratch_blocks = blocks;
        self.conns[c as usize].sides[e].flow_in = Some(f);
        if delay <= 0.0 {
            self.activate(f);
        } else {
            self.after(delay, Event::FlowStart { flow: f, version });
        }
    }

    /// Requests on every connection of `d` that could carry one (after blocks were released).
    pub(super) fn refill(&mut self, d: PeerId) {
        if self.peers[d as usize].picker.is_none() {
            return;
        }
        let n = self.peers[d as usize].conns.len();
        for i in 0..n {
            let Some(&c) = self.peers[d as usize].conns.get(i) else {
                break;
            };
            let delay = self.round_trip(c);
            self.request(d, c, delay);
        }
    }

    /// Request to the uploader plus the first byte back: two one-way trips.
    pub(super) fn round_trip(&self, c: ConnId) -> f64 {
        let [a, b] = self.conns[c as usize].ends;
        self.peers[a as usize].lat + self.peers[b as usize].lat
    }

    pub(super) fn flow_start(&mut self, f: u32, version: u64) {
        match self.flows.get(f as usize) {
            Some(flow) if !flow.active && flow.version == version => self.activate(f),
            _ => {}
        }
    }

    fn activate(&mut self, f: u32) {
        let now = self.now();
        let flow = &mut self.flows[f as usize];
        flow.active = true;
        flow.settled_at = now;
        let (u, d) = (flow.from, flow.to);
        self.peers[u as usize].out_flows.push(f);
        self.peers[d as usize].in_flows.push(f);
        self.reshare(u, true);
        self.reshare(d, false);
    }

    fn flow_done(&mut self, f: u32) {
        let version = self.flows[f as usize].version;
        self.settle(f);
        let flow = &mut self.flows[f as usize];
        flow.done = flow.total;
        let (u, d, c) = (flow.from, flow.to, flow.conn);
        let blocks = std::mem::take(&mut flow.blocks);
        let bytes = flow.total;
        flow.total = 0.0;
        flow.done = 0.0;
        self.credit_upload(u, bytes);
        for &b in &blocks {
            self.receive(d, u, b);
        }
        // Pipelined: the next batch from the same peer follows without a gap, at the same
        // rate (no share changes), if the flow survived what the blocks triggered.
        if self
            .flows
            .get(f as usize)
            .is_none_or(|x| x.version != version)
        {
            return;
        }
        let Some(mut picker) = self.peers[d as usize].picker.take() else {
            self.end_flow(f);
            return;
        };
        let conn = &self.conns[c as usize];
        let e = conn.end_of(d);
        let go = conn.sides[e].interested && !conn.sides[1 - e].choking;
        let mut next = blocks;
        next.clear();
        if go {
            let want = self.sc.blocks_per_piece as usize;
            picker.pick(u, &self.peers[u as usize].ann, want, &mut next);
        }
        self.peers[d as usize].picker = Some(picker);
        if next.is_empty() {
            self.end_flow(f);
            return;
        }
        let flow = &mut self.flows[f as usize];
        flow.total = next.len() as f64 * self.block_bytes;
        flow.blocks = next;
        // Same rate, same shares: the uploader's next completion is rescheduled by the
        // caller, `uploader_done`.
    }

    /// Ends a flow early (choke, cancel, departure): blocks fully moved are delivered, the
    /// rest are dropped from the picker; both ends re-share their links.
    pub(super) fn end_flow(&mut self, f: u32) {
        self.settle(f);
        let flow = self.flows.remove(f as usize);
        let (u, d) = (flow.from, flow.to);
        if let Some(conn) = self.conns.get_mut(flow.conn as usize) {
            let e = conn.end_of(d);
            conn.sides[e].flow_in = None;
        }
        if flow.active {
            remove_from(&mut self.peers[u as usize].out_flows, f);
            remove_from(&mut self.peers[d as usize].in_flows, f);
        }
        let whole = (flow.done / self.block_bytes + 1e-9).floor() as usize;
        let whole = whole.min(flow.blocks.len());
        let moved = whole as f64 * self.block_bytes;
        // The partial block was sent but is useless without the rest: uploaded and wasted.
        self.wasted += flow.done - moved;
        self.credit_upload(u, flow.done);
        for &b in &flow.blocks[..whole] {
            self.receive(d, u, b);
        }
        if let Some(picker) = self.peers[d as usize].picker.as_mut() {
            for &b in &flow.blocks[whole..] {
                picker.block_dropped(u, b);
            }
        }
        if flow.active {
            self.reshare(u, true);
            self.reshare(d, false);
        }
    }

    fn credit_upload(&mut self, u: PeerId, bytes: f64) {
        let peer = &mut self.peers[u as usize];
        peer.uploaded += bytes;
        let copies = self.sc.classes[peer.class as usize].leave_after_copies;
        if let Some(k) = copies {
            let file = self.sc.file_size as f64;
            if !peer.leaving && peer.uploaded >= k * file {
                peer.leaving = true;
                self.q.push(self.now_ns, Event::Leave(u));
            }
        }
    }

    /// A block from `u` reaches `d`'s picker.
    fn receive(&mut self, d: PeerId, u: PeerId, b: BlockRef) {
        let Some(picker) = self.peers[d as usize].picker.as_mut() else {
            self.wasted += self.block_bytes;
            return;
        };
        let mut cancel = std::mem::take(&mut self.scratch_cancel);
        cancel.clear();
        match picker.block_received(u, b, &mut cancel) {
            Arrival::New { piece_complete } => {
                self.peers[d as usize].downloaded += self.block_bytes;
                if piece_complete {
                    // No corrupt peers in the simulator: every piece verifies.
                    let picker = self.peers[d as usize].picker.as_mut().expect("checked");
                    picker.piece_verified(b.piece);
                    self.piece_done(d, b.piece.get());
                }
            }
            Arrival::Duplicate | Arrival::Unrequested => self.wasted += self.block_bytes,
        }
        let others: Vec<PeerId> = cancel.clone();
        self.scratch_cancel = cancel;
        for v in others {
            self.cancel_from(d, v);
        }
    }

    /// Endgame: `d` got a block also requested from `v`; the flow from `v` stops.
    fn cancel_from(&mut self, d: PeerId, v: PeerId) {
        let found = self.peers[d as usize].conns.iter().find_map(|&c| {
            let conn = &self.conns[c as usize];
            let e = conn.end_of(d);
            (conn.ends[1 - e] == v).then_some((c, conn.sides[e].flow_in))
        });
        if let Some((c, Some(f))) = found {
            self.end_flow(f);
            let delay = self.round_trip(c);
            self.request(d, c, delay);
        }
    }

    /// `d` verified `piece`: interest in neighbours may end, the `have` goes out, and the
    /// download may be complete.
    fn piece_done(&mut self, d: PeerId, piece: u32) {
        let index = self.layout.piece(piece).expect("piece in range");
        // As in `have`: the connections in one pass, the neighbours' bitfields in the next.
        let mut fan = std::mem::take(&mut self.scratch_fan);
        self.gather_fan(d, &mut fan);
        fan.retain(|&(_, _, v)| self.peers[v as usize].ann.get(index));
        for &(c, e, v) in &fan {
            let s = &mut self.conns[c as usize].sides[usize::from(e)];
            s.lacking -= 1;
            if s.lacking == 0 && s.interested {
                s.interested = false;
                self.nudge(v);
            }
        }
        self.scratch_fan = fan;
        let lat = self.peers[d as usize].lat;
        self.after(2.0 * lat, Event::Have { peer: d, piece });
        let picker = self.peers[d as usize].picker.as_ref().expect("downloading");
        if picker.is_complete() {
            self.mark_complete(d);
        } else if picker.in_endgame() {
            self.refill(d);
        }
    }

    /// `d`'s connections as (connection, `d`'s end, the other end), into `fan`.
    fn gather_fan(&self, d: PeerId, fan: &mut Vec<(ConnId, u8, PeerId)>) {
        fan.clear();
        fan.extend(self.peers[d as usize].conns.iter().map(|&c| {
            let conn = &self.conns[c as usize];
            let e = conn.end_of(d);
            (c, e as u8, conn.ends[1 - e])
        }));
    }

    /// `d`'s `have` for `piece` reaches its neighbours.
    pub(super) fn have(&mut self, d: PeerId, piece: u32) {
        if self.peers[d as usize].status != Status::Online {
            return;
        }
        let index = self.layout.piece(piece).expect("piece in range");
        if !self.peers[d as usize].ann.set(index) {
            return;
        }
        self.avail[piece as usize] += 1;
        // A `have` fans out to ~40 neighbours whose connections and pickers lie anywhere in
        // hundreds of MB. One pass per kind of record, so each pass's reads are independent
        // of each other and the CPU overlaps their cache misses: the connections, then which
        // neighbours are downloading, then their pickers, then interest and requests.
        let mut fan = std::mem::take(&mut self.scratch_fan);
        self.gather_fan(d, &mut fan);
        fan.retain(|&(_, _, v)| self.peers[v as usize].picker.is_some());
        fan.retain(|&(_, _, v)| {
            let picker = self.peers[v as usize].picker.as_mut().expect("kept above");
            picker.peer_have(d, index)
        });
        let now = self.instant();
        for &(c, e, v) in &fan {
            let e = usize::from(e);
            let conn = &mut self.conns[c as usize];
            let s = &mut conn.sides[1 - e];
            s.lacking += 1;
            let became = !s.interested;
            if became {
                s.interested = true;
                conn.meters[1 - e].waiting_since = now;
                self.nudge(d);
            }
            let idle = self.conns[c as usize].sides[1 - e].flow_in.is_none();
            if idle && !self.conns[c as usize].sides[e].choking {
                let delay = self.round_trip(c);
                self.request(v, c, delay);
            }
        }
        self.scratch_fan = fan;
    }
}

fn remove_from(list: &mut Vec<u32>, f: u32) {
    if let Some(at) = list.iter().position(|&x| x == f) {
        list.swap_remove(at);
    }
}
