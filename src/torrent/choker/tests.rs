//! Choker tests with virtual time and a scripted set of peers.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;

/// Peers keyed 0..n, the choker, and a clock; decisions are applied as a shell would.
struct Swarm {
    peers: Vec<ChokerPeer<u32>>,
    choker: SeedChoker<u32>,
    now: Instant,
}

impl Swarm {
    fn new(slots: usize, n: u32, seed: u64) -> Swarm {
        let cfg = ChokerConfig {
            upload_slots: slots,
            ..ChokerConfig::default()
        };
        Swarm {
            peers: (0..n)
                .map(|key| ChokerPeer {
                    key,
                    interested: false,
                    choked: true,
                    upload_rate: 0,
                })
                .collect(),
            choker: SeedChoker::new(cfg, seed),
            now: Instant::ZERO,
        }
    }

    /// All peers interested, peer `k` uploading at `rates[k]`.
    fn interested_with_rates(slots: usize, rates: &[u64], seed: u64) -> Swarm {
        let mut s = Swarm::new(slots, rates.len() as u32, seed);
        for (p, &r) in s.peers.iter_mut().zip(rates) {
            p.interested = true;
            p.upload_rate = r;
        }
        s
    }

    fn tick_at(&mut self, secs: u64) -> Vec<(u32, Decision)> {
        self.now = Instant::from_secs(secs);
        let mut out = Vec::new();
        self.choker.tick(self.now, &self.peers, &mut out);
        for &(key, d) in &out {
            let p = &mut self.peers[key as usize];
            assert_eq!(p.choked, d == Decision::Unchoke, "decision repeats state");
            p.choked = d == Decision::Choke;
        }
        out
    }

    fn unchoked(&self) -> BTreeSet<u32> {
        self.peers
            .iter()
            .filter(|p| !p.choked)
            .map(|p| p.key)
            .collect()
    }
}

fn set(keys: &[u32]) -> BTreeSet<u32> {
    keys.iter().copied().collect()
}

#[test]
fn fastest_interested_peers_get_the_regular_slots_at_each_rechoke() {
    // With 4 slots, the 3 fastest peers are unchoked plus one optimistic; when another peer
    // becomes the fastest it takes a regular slot at the next rechoke, not before.
    let rates: Vec<u64> = (0..10).map(|k| k * 100).collect();
    let mut s = Swarm::interested_with_rates(4, &rates, 1);
    s.tick_at(0);
    let optimistic = s.choker.optimistic().unwrap();
    assert!(optimistic < 7);
    assert_eq!(s.unchoked(), set(&[7, 8, 9, optimistic]));
    let fresh = (0..7).find(|&k| k != optimistic).unwrap();
    s.peers[fresh as usize].upload_rate = 10_000;
    assert!(s.tick_at(5).is_empty());
    s.tick_at(10);
    assert_eq!(s.unchoked(), set(&[fresh, 8, 9, optimistic]));
    assert_eq!(s.choker.optimistic(), Some(optimistic));
}

#[test]
fn optimistic_slot_rotates_every_30_seconds_and_reaches_every_peer() {
    // Three fast peers keep the regular slots; the optimistic slot moves to another slow
    // peer exactly every 30 s and, over 30 minutes, visits every slow peer.
    let rates = [0, 0, 0, 0, 0, 0, 0, 900, 800, 700];
    let mut s = Swarm::interested_with_rates(4, &rates, 7);
    let mut seen = BTreeSet::new();
    let mut history = Vec::new();
    let mut previous = None;
    for t in (0..1800).step_by(10) {
        s.tick_at(t);
        assert!(set(&[7, 8, 9]).is_subset(&s.unchoked()));
        let now = s.choker.optimistic();
        if t % 30 == 0 {
            assert_ne!(now, previous, "rotation at {t}s");
        } else {
            assert_eq!(now, previous, "no rotation at {t}s");
        }
        previous = now;
        seen.insert(now.unwrap());
        history.push(now);
    }
    assert_eq!(seen, set(&[0, 1, 2, 3, 4, 5, 6]));
    // Same seed, same choices: the scenario replays exactly.
    let mut again = Swarm::interested_with_rates(4, &rates, 7);
    let replay: Vec<_> = (0..1800)
        .step_by(10)
        .map(|t| {
            again.tick_at(t);
            again.choker.optimistic()
        })
        .collect();
    assert_eq!(replay, history);
}

#[test]
fn peer_losing_interest_loses_its_slot_at_once() {
    // Between rechokes, a slot holder that is no longer interested is choked on the spot
    // and its slot goes to the fastest choked interested peer.
    let mut s = Swarm::interested_with_rates(2, &[500, 400, 300, 0], 3);
    s.tick_at(0);
    let optimistic = s.choker.optimistic().unwrap();
    assert_eq!(s.unchoked(), set(&[0, optimistic]));
    s.peers[0].interested = false;
    let out = s.tick_at(3);
    assert!(out.contains(&(0, Decision::Choke)));
    let next = [1, 2, 3].into_iter().find(|&k| k != optimistic).unwrap();
    assert!(out.contains(&(next, Decision::Unchoke)));
    assert_eq!(s.unchoked(), set(&[next, optimistic]));
}

#[test]
fn free_slots_are_filled_as_soon_as_a_peer_becomes_interested() {
    // Peers that become interested between rechokes get a free slot immediately, fastest
    // first, and never more than the slots.
    let mut s = Swarm::new(4, 6, 5);
    for k in 0..2 {
        s.peers[k].interested = true;
    }
    s.tick_at(0);
    assert_eq!(s.unchoked(), set(&[0, 1]));
    s.peers[2].interested = true;
    assert_eq!(s.tick_at(1), vec![(2, Decision::Unchoke)]);
    for (k, rate) in [(3, 10), (4, 30), (5, 20)] {
        s.peers[k].interested = true;
        s.peers[k].upload_rate = rate;
    }
    assert_eq!(s.tick_at(2), vec![(4, Decision::Unchoke)]);
    assert_eq!(s.unchoked().len(), 4);
}

#[test]
fn uninterested_peers_are_choked_and_next_tick_follows_the_interval() {
    // Unchoked peers that are not interested are choked; ticks in between do not move the
    // rechoke schedule.
    let mut s = Swarm::new(3, 3, 9);
    assert_eq!(s.choker.next_tick(), Instant::ZERO);
    s.peers[1].choked = false;
    assert_eq!(s.tick_at(0), vec![(1, Decision::Choke)]);
    assert_eq!(s.choker.next_tick(), Instant::from_secs(10));
    s.tick_at(4);
    assert_eq!(s.choker.next_tick(), Instant::from_secs(10));
    s.tick_at(10);
    assert_eq!(s.choker.next_tick(), Instant::from_secs(20));
}

proptest! {
    #[test]
    fn slots_are_always_min_of_slots_and_interested_peers(
        slots in 0usize..6,
        seed in any::<u64>(),
        steps in proptest::collection::vec((0u32..12, any::<bool>(), 0u64..1000, 0u64..15), 1..80),
    ) {
        // After every tick, exactly min(slots, interested) peers are unchoked, and all of
        // them are interested.
        let mut s = Swarm::new(slots, 12, seed);
        let mut t = 0;
        for (key, interested, rate, dt) in steps {
            let p = &mut s.peers[key as usize];
            p.interested = interested;
            p.upload_rate = rate;
            t += dt;
            s.tick_at(t);
            let unchoked = s.unchoked();
            let interested = s.peers.iter().filter(|p| p.interested).count();
            prop_assert_eq!(unchoked.len(), slots.min(interested));
            prop_assert!(unchoked.iter().all(|&k| s.peers[k as usize].interested));
        }
    }
}
