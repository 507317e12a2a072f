//! The simulator's event queue: a binary heap ordered by virtual time, then by insertion
//! order, so events at the same instant run first-in first-out and every run repeats exactly.
//! Rescheduled events are not removed: they carry a version and stale ones are skipped by
//! the engine when popped (cheaper than a decrease-key heap for flows whose rate changes).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

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
#[derive(Debug, Default)]
pub(super) struct Queue {
    heap: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    /// Events ever pushed.
    pub pushed: u64,
    /// Largest heap size seen.
    pub peak_len: usize,
}

impl Queue {
    /// Schedules `ev` at `at_ns`.
    pub fn push(&mut self, at_ns: u64, ev: Event) {
        self.seq += 1;
        self.pushed += 1;
        self.heap.push(Reverse((at_ns, self.seq, ev)));
        self.peak_len = self.peak_len.max(self.heap.len());
    }

    /// The earliest event.
    pub fn pop(&mut self) -> Option<(u64, Event)> {
        self.heap.pop().map(|Reverse((t, _, ev))| (t, ev))
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
}
