//! The Kademlia routing table (BEP 5): up to 160 buckets of [`K`] nodes each, split only
//! where our own id lives, with a preference for long-lived nodes.
//!
//! Bucket `i` (for `i` below the last) holds nodes whose ids share exactly `i` leading bits
//! with ours; the last bucket holds everything closer. When the last bucket is full it splits
//! (up to 160 buckets). A full bucket that cannot split keeps its nodes: a newcomer only gets
//! in if a node there has failed twice (bad), or if the least recently seen node has gone
//! quiet for [`QUESTIONABLE_AFTER`] and then fails the ping we send it. Long-lived nodes stay
//! online longest (the Kademlia paper's measurement), so they are the ones worth keeping.
//! Sans-IO: the table says "ping this node"; the node state machine sends the ping.

use std::net::SocketAddrV4;
use std::time::Duration;

use crate::time::Instant;

use super::{NodeId, NodeInfo, ID_BITS, K};

/// A node not heard from for this long is questionable: pinged before it can be replaced, and
/// pinged by the periodic check; a failed ping then expires it.
pub const QUESTIONABLE_AFTER: Duration = Duration::from_secs(15 * 60);
/// A bucket unchanged for this long is refreshed with a lookup of a random id in its range.
pub const BUCKET_REFRESH_AFTER: Duration = Duration::from_secs(15 * 60);
/// Failed queries in a row after which a node is bad and dropped.
pub const FAILS_MAX: u8 = 2;
/// How long a newcomer waits for the ping of the node it may replace.
pub const CANDIDATE_TTL: Duration = Duration::from_secs(10);

/// One node in a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Id and address.
    pub info: NodeInfo,
    /// When it entered the table.
    pub first_seen: Instant,
    /// When we last heard from it.
    pub last_seen: Instant,
    /// Queries it failed to answer since it last answered.
    pub fails: u8,
}

#[derive(Clone, Debug)]
struct Candidate {
    node: NodeInfo,
    /// The least recently seen node, pinged to see whether it is still there.
    evicting: NodeId,
    since: Instant,
}

#[derive(Clone, Debug)]
struct Bucket {
    nodes: Vec<Entry>,
    candidate: Option<Candidate>,
    changed: Instant,
}

impl Bucket {
    fn new(now: Instant) -> Bucket {
        Bucket {
            nodes: Vec::with_capacity(K),
            candidate: None,
            changed: now,
        }
    }
}

/// What [`RoutingTable::heard_from`] did with a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insert {
    /// Already known: its last-seen time was updated.
    Refreshed,
    /// Added to a bucket with room (perhaps after a split, or replacing a bad node).
    Added,
    /// The bucket is full of live nodes: the newcomer was not added.
    Dropped,
    /// The bucket is full and its least recently seen node is questionable: ping it; if it
    /// fails, the newcomer takes its place.
    PingOldest(NodeInfo),
}

/// The routing table of one node.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    own: NodeId,
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    /// An empty table for node `own`.
    pub fn new(own: NodeId, now: Instant) -> RoutingTable {
        RoutingTable {
            own,
            buckets: vec![Bucket::new(now)],
        }
    }

    /// Our own id.
    pub fn own_id(&self) -> NodeId {
        self.own
    }

    /// Nodes in the table.
    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    /// True when the table has no node.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many buckets exist (1 to 160).
    pub fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Every node, bucket by bucket.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    /// The entry for `id`, if present.
    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        let b = &self.buckets[self.bucket_of(id)];
        b.nodes.iter().find(|e| e.info.id == *id)
    }

    fn bucket_of(&self, id: &NodeId) -> usize {
        self.own.common_prefix_bits(id).min(self.buckets.len() - 1)
    }

    /// Records a message from `node`: refreshes it, adds it, or says whom to ping first.
    pub fn heard_from(&mut self, node: NodeInfo, now: Instant) -> Insert {
        if node.id == self.own {
            return Insert::Dropped;
        }
        loop {
            let i = self.bucket_of(&node.id);
            let count = self.buckets.len();
            let last = i == count - 1;
            let bucket = &mut self.buckets[i];
            if let Some(e) = bucket.nodes.iter_mut().find(|e| e.info.id == node.id) {
                if e.info.addr != node.addr {
                    // Same id from another address: keep the one we know (an id is cheap
                    // to claim; the old address has answered us before).
                    return Insert::Dropped;
                }
                e.last_seen = now;
                e.fails = 0;
                if bucket
                    .candidate
                    .as_ref()
                    .is_some_and(|c| c.evicting == node.id)
                {
                    // The pinged node answered: it stays and the newcomer goes.
                    bucket.candidate = None;
                }
                return Insert::Refreshed;
            }
            if bucket.nodes.iter().any(|e| e.info.addr == node.addr) {
                return Insert::Dropped;
            }
            if bucket.nodes.len() < K {
                bucket.nodes.push(fresh(node, now));
                bucket.changed = now;
                return Insert::Added;
            }
            if last && count < ID_BITS {
                self.split_last(now);
                continue;
            }
            return replace_or_ping(bucket, node, now);
        }
    }

    fn split_last(&mut self, now: Instant) {
        let depth = self.buckets.len() - 1;
        let own = self.own;
        let last = self.buckets.last_mut().expect("at least one bucket");
        let (stay, go): (Vec<Entry>, Vec<Entry>) = last
            .nodes
            .drain(..)
            .partition(|e| own.common_prefix_bits(&e.info.id) == depth);
        last.nodes = stay;
        last.candidate = None;
        let mut next = Bucket::new(now);
        next.nodes = go;
        self.buckets.push(next);
    }

    /// Records a query to `id` that went unanswered; a pinged node that fails loses its place
    /// to the waiting newcomer, and any node failing [`FAILS_MAX`] times in a row is dropped.
    pub fn failed(&mut self, id: &NodeId, now: Instant) {
        let i = self.bucket_of(id);
        let bucket = &mut self.buckets[i];
        let Some(pos) = bucket.nodes.iter().position(|e| e.info.id == *id) else {
            return;
        };
        bucket.nodes[pos].fails = bucket.nodes[pos].fails.saturating_add(1);
        let evicting = bucket.candidate.as_ref().is_some_and(|c| c.evicting == *id);
        if evicting || bucket.nodes[pos].fails >= FAILS_MAX {
            bucket.nodes.remove(pos);
            bucket.changed = now;
            if let Some(c) = bucket.candidate.take() {
                if now - c.since <= CANDIDATE_TTL {
                    bucket.nodes.push(fresh(c.node, now));
                }
            }
        }
    }

    /// Up to `n` nodes closest to `target` by XOR distance, closest first; nodes that failed
    /// their last query come after those that did not.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<NodeInfo> {
        let mut all: Vec<&Entry> = self.entries().collect();
        all.sort_by_key(|e| (e.fails > 0, target.distance(&e.info.id)));
        all.into_iter().take(n).map(|e| e.info).collect()
    }

    /// Targets for refreshing buckets unchanged for [`BUCKET_REFRESH_AFTER`]: a random id in
    /// each such bucket's range (`random` supplies the bits). Marks them refreshed.
    pub fn refresh_targets(
        &mut self,
        now: Instant,
        mut random: impl FnMut() -> [u8; 20],
    ) -> Vec<NodeId> {
        let count = self.buckets.len();
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if now - b.changed >= BUCKET_REFRESH_AFTER {
                b.changed = now;
                // The last bucket covers every prefix from `i` on; a random id there is
                // "close to us", which is what refreshing it means.
                let target = if i == count - 1 {
                    NodeId(mix_prefix(&self.own, &NodeId(random()), i))
                } else {
                    self.own.random_with_prefix(i, random())
                };
                out.push(target);
            }
        }
        out
    }

    /// Targets for joining a network (Kademlia paper §2.3): a random id at every prefix
    /// length shorter than our closest neighbour's, so each far bucket gets a lookup of its
    /// own range right after bootstrap instead of waiting 15 minutes for its refresh.
    pub fn join_targets(&self, mut random: impl FnMut() -> [u8; 20]) -> Vec<NodeId> {
        let depth = self
            .entries()
            .map(|e| self.own.common_prefix_bits(&e.info.id))
            .max()
            .unwrap_or(0);
        (0..depth)
            .map(|i| self.own.random_with_prefix(i, random()))
            .collect()
    }

    /// Nodes not heard from for [`QUESTIONABLE_AFTER`], to be pinged (a failed ping counts
    /// towards their expiry). At most `max`, the longest quiet first.
    pub fn questionable(&self, now: Instant, max: usize) -> Vec<NodeInfo> {
        let mut quiet: Vec<&Entry> = self
            .entries()
            .filter(|e| now - e.last_seen >= QUESTIONABLE_AFTER)
            .collect();
        quiet.sort_by_key(|e| e.last_seen);
        quiet.into_iter().take(max).map(|e| e.info).collect()
    }

    /// Saved form: our id and every node, compact (`d2:id20:…5:nodes<26·n bytes>e`).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut nodes = Vec::with_capacity(self.len() * 26);
        for e in self.entries() {
            nodes.extend_from_slice(&e.info.id.0);
            super::krpc::push_addr(&mut nodes, &e.info.addr);
        }
        let mut out = Vec::new();
        let mut enc = crate::bencode::Encoder::new(&mut out);
        enc.begin_dict();
        enc.key("id");
        enc.bytes(&self.own.0);
        enc.key("nodes");
        enc.bytes(&nodes);
        enc.end();
        out
    }
}

/// Reads a saved table: our former id and its nodes (to be pinged, not trusted blindly).
pub fn parse_saved(bytes: &[u8]) -> Result<(NodeId, Vec<NodeInfo>), SavedTableError> {
    let limits = crate::bencode::Limits {
        depth_max: 2,
        string_bytes_max: (SAVED_NODES_MAX * 26) as u64,
        total_bytes_max: SAVED_NODES_MAX * 26 + 64,
        values_max: 8,
    };
    let v = crate::bencode::decode(bytes, limits).map_err(SavedTableError::Bencode)?;
    let d = v.as_dict().ok_or(SavedTableError::Shape("not a dict"))?;
    let id = d
        .get(b"id")
        .and_then(|v| v.as_bytes())
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
        .ok_or(SavedTableError::Shape("no 20-byte `id`"))?;
    let raw = d
        .get(b"nodes")
        .and_then(|v| v.as_bytes())
        .ok_or(SavedTableError::Shape("no `nodes` string"))?;
    if !raw.len().is_multiple_of(26) {
        return Err(SavedTableError::Shape(
            "`nodes` is not whole 26-byte records",
        ));
    }
    let nodes = raw
        .chunks_exact(26)
        .map(|c| NodeInfo {
            id: NodeId(c[..20].try_into().expect("20 bytes")),
            addr: SocketAddrV4::new(
                [c[20], c[21], c[22], c[23]].into(),
                u16::from_be_bytes([c[24], c[25]]),
            ),
        })
        .collect();
    Ok((NodeId(id), nodes))
}

/// Most nodes a saved table may hold (160 buckets of K).
pub const SAVED_NODES_MAX: usize = ID_BITS * K;

/// Why a saved routing table cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SavedTableError {
    /// Not valid bencode or past a limit.
    #[error("not valid bencode: {0}")]
    Bencode(crate::bencode::BencodeError),
    /// Valid bencode of the wrong shape.
    #[error("not a saved routing table: {0}")]
    Shape(&'static str),
}

fn fresh(info: NodeInfo, now: Instant) -> Entry {
    Entry {
        info,
        first_seen: now,
        last_seen: now,
        fails: 0,
    }
}

fn replace_or_ping(bucket: &mut Bucket, node: NodeInfo, now: Instant) -> Insert {
    if let Some(pos) = bucket.nodes.iter().position(|e| e.fails >= FAILS_MAX) {
        bucket.nodes[pos] = fresh(node, now);
        bucket.changed = now;
        return Insert::Added;
    }
    if bucket
        .candidate
        .as_ref()
        .is_some_and(|c| now - c.since <= CANDIDATE_TTL)
    {
        // One eviction test at a time per bucket.
        return Insert::Dropped;
    }
    let oldest = bucket
        .nodes
        .iter()
        .min_by_key(|e| e.last_seen)
        .expect("a full bucket has nodes");
    if now - oldest.last_seen < QUESTIONABLE_AFTER {
        return Insert::Dropped;
    }
    let info = oldest.info;
    bucket.candidate = Some(Candidate {
        node,
        evicting: info.id,
        since: now,
    });
    Insert::PingOldest(info)
}

/// `own`'s first `bits` bits followed by `random`'s remaining bits.
fn mix_prefix(own: &NodeId, random: &NodeId, bits: usize) -> [u8; 20] {
    let mut out = random.0;
    for bit in 0..bits.min(ID_BITS) {
        let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
        out[byte] = (out[byte] & !mask) | (own.0[byte] & mask);
    }
    out
}
