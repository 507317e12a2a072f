//! The simulator's event queue, ordered by virtual time, then by insertion order, so events
//! at the same instant run first-in first-out and every run repeats exactly. Rescheduled
//! events are not removed: they carry a version and stale ones are skipped by the engine
//! when popped (cheaper than a decrease-key heap for flows whose rate changes).
//!
//! A radix heap: the simulation never schedules into its past, so keys only grow, and each
//! key is filed in the bucket of the highest bit where it differs from the last key popped.
//! A pop empties the lowest non-empty bucket into lower ones; a key moves down at most once
//! per bit, by sequential pushes, where a binary heap of ~150,000 events walks 17 levels of
//! scattered memory on every pop.

use super::engine::PeerId;

/// Something that happens at an instant.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Event {
    /// A peer joins the swarm and announces.
    Join(PeerId),
    /// A peer leaves (completed and done seeding, gave up, or an origin done with its copies).
    Leave(PeerId),
    /// A peer gives up downloading if it has not completed.
    Abort(PeerId),
    /// Regular tracker announce.
    Announce(PeerId),
    /// Choker and swarm maintenance; stale unless it matches the peer's `tick_at`.
    Tick(PeerId),
    /// A dialled peer's SYN arrives.
    ConnectArrive { from: PeerId, to: PeerId },
    /// The dialler learns whether the connection is up.
    ConnectDone { from: PeerId, to: PeerId, ok: bool },
    /// A requested flow's first byte leaves the uploader.
    FlowStart { flow: u32, version: u64 },
    /// An uploader's earliest flow has moved all its bytes; stale unless `version` matches.
    UploaderDone { peer: PeerId, version: u64 },
    /// A peer's `have` for a verified piece reaches its neighbours.
    Have { peer: PeerId, piece: u32 },
    /// A peer completed: switch to seeding, drop seed-to-seed connections.
    Completed(PeerId),
    /// Record a time-series sample.
    Sample,
}

impl Event {
    /// Names of the kinds, indexed by [`Event::kind`] (for the run's event counts).
    pub const KINDS: [&'static str; 12] = [
        "join",
        "leave",
        "abort",
        "announce",
        "tick",
        "connect_arrive",
        "connect_done",
        "flow_start",
        "uploader_done",
        "have",
        "completed",
        "sample",
    ];

    /// This event's index in [`Event::KINDS`].
    pub fn kind(&self) -> usize {
        match self {
            Event::Join(_) => 0,
            Event::Leave(_) => 1,
            Event::Abort(_) => 2,
            Event::Announce(_) => 3,
            Event::Tick(_) => 4,
            Event::ConnectArrive { .. } => 5,
            Event::ConnectDone { .. } => 6,
            Event::FlowStart { .. } => 7,
            Event::UploaderDone { .. } => 8,
            Event::Have { .. } => 9,
            Event::Completed(_) => 10,
            Event::Sample => 11,
        }
    }
}

/// Events by time (nanoseconds of virtual time), FIFO among equal times.
#[derive(Debug)]
pub(super) struct Queue {
    /// `buckets[0]` holds keys equal to `last`; `buckets[i]` keys whose highest bit that
    /// differs from `last` is bit `i - 1`.
    buckets: Vec<Vec<(u128, Event)>>,
    /// The key popped last: no key below it is ever pushed.
    last: u128,
    len: usize,
    seq: u64,
    /// Events ever pushed.
    pub pushed: u64,
    /// Largest queue length seen.
    pub peak_len: usize,
}

impl Default for Queue {
    fn default() -> Queue {
        Queue {
            buckets: (0..=128).map(|_| Vec::new()).collect(),
            last: 0,
            len: 0,
            seq: 0,
            pushed: 0,
            peak_len: 0,
        }
    }
}

impl Queue {
    fn bucket(&self, key: u128) -> usize {
        128 - (key ^ self.last).leading_zeros() as usize
    }

    /// Schedules `ev` at `at_ns` (not before the last event popped).
    pub fn push(&mut self, at_ns: u64, ev: Event) {
        self.seq += 1;
        self.pushed += 1;
        // Time, then insertion order: unique keys, FIFO at equal times.
        let key = (u128::from(at_ns) << 64) | u128::from(self.seq);
        debug_assert!(key > self.last, "event scheduled in the past");
        let key = key.max(self.last);
        let b = self.bucket(key);
        self.buckets[b].push((key, ev));
        self.len += 1;
        self.peak_len = self.peak_len.max(self.len);
    }

    /// The earliest event.
    pub fn pop(&mut self) -> Option<(u64, Event)> {
        if self.len == 0 {
            return None;
        }
        if self.buckets[0].is_empty() {
            let i = (1..self.buckets.len())
                .find(|&i| !self.buckets[i].is_empty())
                .expect("a non-empty bucket when len > 0");
            let moving = std::mem::take(&mut self.buckets[i]);
            self.last = moving.iter().map(|&(k, _)| k).min().expect("non-empty");
            // Every key of bucket `i` agrees with the new `last` above bit `i - 1`, so each
            // lands in a lower bucket.
            for &(k, ev) in &moving {
                let b = self.bucket(k);
                self.buckets[b].push((k, ev));
            }
            // Hand the emptied allocation back for reuse.
            let mut spare = moving;
            spare.clear();
            self.buckets[i] = spare;
        }
        let (key, ev) = self.buckets[0].pop().expect("the minimum is in bucket 0");
        self.len -= 1;
        Some(((key >> 64) as u64, ev))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_pop_in_time_order_and_fifo_at_equal_times() {
        // Same-instant events keep their push order: the engine's determinism rests on it.
        let mut q = Queue::default();
        q.push(20, Event::Sample);
        q.push(10, Event::Join(2));
        q.push(10, Event::Join(1));
        q.push(5, Event::Leave(7));
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(
            order,
            [
                (5, Event::Leave(7)),
                (10, Event::Join(2)),
                (10, Event::Join(1)),
                (20, Event::Sample)
            ]
        );
    }

    proptest::proptest! {
        /// Against a sort by (time, push order): any interleaving of pushes (never before the
        /// last pop) and pops gives the same sequence.
        #[test]
        fn pops_in_time_then_push_order(
            steps in proptest::collection::vec((0u64..3, 0u64..1_000_000_000_000, 0u32..4), 1..600),
        ) {
            let mut q = Queue::default();
            let mut model: Vec<(u64, u64, Event)> = Vec::new();
            let (mut now, mut seq) = (0u64, 0u64);
            for (op, dt, kind) in steps {
                if op == 0 {
                    let got = q.pop();
                    model.sort_by_key(|&(t, s, _)| std::cmp::Reverse((t, s)));
                    let want = model.pop().map(|(t, _, ev)| (t, ev));
                    proptest::prop_assert_eq!(got, want);
                    if let Some((t, _)) = got {
                        now = t;
                    }
                } else {
                    // Many events at equal times: dt is often 0 or tiny.
                    let at = now + if kind == 0 { 0 } else { dt >> (kind * 12) };
                    seq += 1;
                    let ev = Event::Join(seq as PeerId);
                    q.push(at, ev);
                    model.push((at, seq, ev));
                }
            }
            model.sort_by_key(|&(t, s, _)| std::cmp::Reverse((t, s)));
            while let Some((t, _, ev)) = model.pop() {
                proptest::prop_assert_eq!(q.pop(), Some((t, ev)));
            }
            proptest::prop_assert_eq!(q.pop(), None);
        }
    }
}
