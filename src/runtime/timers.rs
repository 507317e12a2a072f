//! Per-connection deadlines of one shard: a min-heap keyed by connection with lazy deletion.
//!
//! Owns only instants and keys; whether a deadline is still wanted is decided by the caller
//! (it asks the connection again). It never reads a clock: `now` is passed in.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::time::Instant;

use super::protocol::ConnKey;

/// Stale heap entries tolerated per live connection before the heap is rebuilt; keeps the heap
/// bounded when deadlines move earlier again and again.
const STALE_FACTOR: usize = 2;

/// Deadlines of many connections. Each connection has at most one *armed* deadline (the caller
/// records it); older heap entries for the same connection are skipped when they surface.
#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, ConnKey)>>,
}

impl Timers {
    /// Records that `key` wants a wake-up at `at`.
    pub(crate) fn arm(&mut self, key: ConnKey, at: Instant) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest recorded deadline (possibly stale).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops the next entry due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, ConnKey)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    /// Drops stale entries when the heap has grown past `STALE_FACTOR` x `live` entries.
    /// `is_armed(key, at)` says whether an entry is still the connection's armed deadline.
    pub(crate) fn compact(&mut self, live: usize, is_armed: impl Fn(ConnKey, Instant) -> bool) {
        if self.heap.len() <= STALE_FACTOR * live + 64 {
            return;
        }
        let entries = std::mem::take(&mut self.heap).into_vec();
        self.heap = entries
            .into_iter()
            .filter(|Reverse((at, key))| is_armed(*key, *at))
            .collect();
    }

    /// Entries in the heap, stale ones included.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(index: u32) -> ConnKey {
        ConnKey {
            index,
            generation: 0,
        }
    }

    #[test]
    fn deadlines_fire_in_order_and_only_when_due() {
        // Entries come out earliest first and never before their instant.
        let mut timers = Timers::default();
        timers.arm(key(1), Instant::from_secs(5));
        timers.arm(key(2), Instant::from_secs(2));
        assert_eq!(timers.next_deadline(), Some(Instant::from_secs(2)));
        assert_eq!(timers.pop_due(Instant::from_secs(1)), None);
        assert_eq!(
            timers.pop_due(Instant::from_secs(3)),
            Some((Instant::from_secs(2), key(2)))
        );
        assert_eq!(timers.pop_due(Instant::from_secs(3)), None);
        assert_eq!(
            timers.pop_due(Instant::from_secs(9)),
            Some((Instant::from_secs(5), key(1)))
        );
    }

    #[test]
    fn stale_entries_are_compacted_away() {
        // Re-arming one connection many times does not grow the heap without bound.
        let mut timers = Timers::default();
        for i in 0..1000 {
            timers.arm(key(1), Instant::from_secs(1000 - i));
            timers.compact(1, |_, at| at == Instant::from_secs(1000 - i));
        }
        assert!(timers.len() <= 2 + 64 + 1);
    }
}
