//! Swarm policy tests in virtual time.

use super::*;

fn addr(i: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::from([10, 0, (i >> 8) as u8, i as u8]), 6881)
}

fn t(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

fn small() -> SwarmConfig {
    SwarmConfig {
        conns_min: 3,
        conns_max: 4,
        connecting_max: 2,
        pool_max: 10,
        ..SwarmConfig::default()
    }
}

fn dial_all(s: &mut Swarm, now: Instant) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    while let Some(a) = s.poll_connect(now) {
        s.on_connecting(a, now);
        s.on_connected(a, now);
        out.push(a);
    }
    out
}

#[test]
fn dials_up_to_the_low_water_mark_in_arrival_order() {
    // With 5 candidates and conns_min 3, exactly the first 3 are dialled.
    let mut s = Swarm::new(small());
    s.add_peers((0..5).map(addr), PeerSource::Tracker, t(0));
    assert_eq!(dial_all(&mut s, t(0)), vec![addr(0), addr(1), addr(2)]);
    assert_eq!(s.connection_count(), 3);
}

#[test]
fn connects_in_flight_are_bounded() {
    // No more than connecting_max connects are pending at once.
    let mut s = Swarm::new(small());
    s.add_peers((0..5).map(addr), PeerSource::Tracker, t(0));
    let a = s.poll_connect(t(0)).unwrap();
    s.on_connecting(a, t(0));
    let b = s.poll_connect(t(0)).unwrap();
    s.on_connecting(b, t(0));
    assert_eq!(s.poll_connect(t(0)), None);
}

#[test]
fn failed_connects_back_off_exponentially_then_are_forgotten() {
    // 15 s, 30 s, 60 s … between attempts; after failures_max the address is dropped.
    let mut s = Swarm::new(SwarmConfig {
        failures_max: 3,
        ..small()
    });
    s.add_peers([addr(1)], PeerSource::Tracker, t(0));
    let a = s.poll_connect(t(0)).unwrap();
    s.on_connecting(a, t(0));
    s.on_connect_failed(a, t(0));
    assert_eq!(s.poll_connect(t(14)), None);
    assert_eq!(s.poll_connect(t(15)), Some(a));
    s.on_connecting(a, t(15));
    s.on_connect_failed(a, t(15));
    assert_eq!(s.poll_connect(t(44)), None);
    assert_eq!(s.poll_connect(t(45)), Some(a));
    s.on_connecting(a, t(45));
    s.on_connect_failed(a, t(45));
    assert_eq!(s.candidate_count(), 0);
}

#[test]
fn connect_timeouts_are_reported() {
    // A connect still pending after connect_timeout is listed as expired.
    let mut s = Swarm::new(small());
    s.add_peers([addr(1)], PeerSource::Tracker, t(0));
    let a = s.poll_connect(t(0)).unwrap();
    s.on_connecting(a, t(0));
    assert!(s.expired_connects(t(9)).is_empty());
    assert_eq!(s.expired_connects(t(10)), vec![a]);
    assert_eq!(s.next_timeout(t(0)), Some(t(10)));
}

#[test]
fn per_ip_limit_applies_to_dials_and_incoming() {
    // Two ports on one IP: only one connection with per_ip_max 1.
    let mut s = Swarm::new(small());
    let ip = IpAddr::from([10, 9, 9, 9]);
    s.add_peers(
        [SocketAddr::new(ip, 1), SocketAddr::new(ip, 2)],
        PeerSource::Pex,
        t(0),
    );
    assert_eq!(dial_all(&mut s, t(0)).len(), 1);
    assert!(!s.accept_incoming(SocketAddr::new(ip, 40000), t(0)));
    assert!(s.accept_incoming(addr(7), t(0)));
}

#[test]
fn incoming_connections_stop_at_the_high_water_mark() {
    // conns_max is a hard bound for accepted connections.
    let mut s = Swarm::new(small());
    for i in 0..4 {
        assert!(s.accept_incoming(addr(i), t(0)));
    }
    assert!(!s.accept_incoming(addr(9), t(0)));
}

#[test]
fn banned_ips_are_refused_and_forgotten() {
    // A ban removes candidates, lists open connections to close, and refuses the IP later.
    let mut s = Swarm::new(small());
    s.add_peers([addr(1), addr(2)], PeerSource::Tracker, t(0));
    let dialled = dial_all(&mut s, t(0));
    assert_eq!(dialled.len(), 2);
    assert_eq!(s.ban(addr(1).ip()), vec![addr(1)]);
    s.on_disconnected(addr(1), Disconnect::Normal, t(1));
    s.add_peers([addr(1)], PeerSource::Pex, t(1));
    assert!(!s.accept_incoming(addr(1), t(1)));
    assert!(s.poll_connect(t(100)).is_none_or(|a| a != addr(1)));
}

#[test]
fn a_departed_peer_is_replaced_from_the_pool() {
    // When a connection ends, the next candidate is dialled to stay at conns_min.
    let mut s = Swarm::new(small());
    s.add_peers((0..5).map(addr), PeerSource::Tracker, t(0));
    dial_all(&mut s, t(0));
    s.on_disconnected(addr(0), Disconnect::Normal, t(5));
    assert_eq!(s.poll_connect(t(5)), Some(addr(3)));
}

#[test]
fn useless_peer_is_dropped_only_when_full_and_others_wait() {
    // At conns_max with a ready candidate, the oldest connection useless to both sides goes,
    // but not before its grace period; useful peers are never chosen.
    let mut s = Swarm::new(small());
    for i in 0..4 {
        assert!(s.accept_incoming(addr(i), t(0)));
    }
    let view = |i, us, them| ConnUsefulness {
        addr: addr(i),
        useful_to_us: us,
        useful_to_them: them,
    };
    let peers = [
        view(0, true, false),
        view(1, false, false),
        view(2, false, true),
        view(3, false, false),
    ];
    assert_eq!(s.choose_drop(&peers, t(100)), None, "no candidate waits");
    s.add_peers([addr(50)], PeerSource::Tracker, t(100));
    assert_eq!(s.choose_drop(&peers, t(30)), None, "grace period");
    assert_eq!(s.choose_drop(&peers, t(100)), Some(addr(1)));
}

#[test]
fn own_and_retired_addresses_are_never_dialled() {
    // Trackers return our own address; a peer with nothing to trade is not redialled.
    let mut s = Swarm::new(small());
    s.set_own_addrs([addr(9)]);
    s.add_peers([addr(9), addr(1)], PeerSource::Tracker, t(0));
    assert_eq!(dial_all(&mut s, t(0)), vec![addr(1)]);
    s.on_disconnected(addr(1), Disconnect::NothingToTrade, t(1));
    s.add_peers([addr(1)], PeerSource::Pex, t(2));
    assert_eq!(s.poll_connect(t(1000)), None);
}

#[test]
fn retired_addresses_are_bounded_oldest_first() {
    // A seed meets many seeds over its life: only the newest pool_max (10) stay retired,
    // so the oldest may be dialled again and memory stays bounded.
    let mut s = Swarm::new(SwarmConfig {
        conns_min: 1,
        ..small()
    });
    for i in 0..30 {
        s.add_peers([addr(i)], PeerSource::Tracker, t(u64::from(i)));
        assert_eq!(s.poll_connect(t(u64::from(i))), Some(addr(i)));
        s.on_connecting(addr(i), t(u64::from(i)));
        s.on_connected(addr(i), t(u64::from(i)));
        s.on_disconnected(addr(i), Disconnect::NothingToTrade, t(u64::from(i)));
    }
    assert_eq!(s.retired_count(), 10);
    s.add_peers([addr(29), addr(0)], PeerSource::Pex, t(100));
    assert_eq!(
        s.poll_connect(t(100)),
        Some(addr(0)),
        "forgotten: dialled again"
    );
    assert_eq!(s.poll_connect(t(100)), None, "still retired: never dialled");
}

#[test]
fn the_pool_is_bounded() {
    // Past pool_max the oldest candidates are evicted.
    let mut s = Swarm::new(small());
    s.add_peers((0..100).map(addr), PeerSource::Pex, t(0));
    assert_eq!(s.candidate_count(), 10);
    assert_eq!(s.poll_connect(t(0)), Some(addr(90)));
}

#[test]
fn simultaneous_dials_keep_exactly_the_lower_ips_connection() {
    // A (10.0.0.1) and B (10.0.0.2) dial each other at once with one connection per IP:
    // A refuses B's connection, B accepts A's and gives up its own, so one survives.
    let (a_addr, b_addr) = (addr(1), addr(2));
    let mut a = Swarm::new(small());
    let mut b = Swarm::new(small());
    a.set_own_addrs([a_addr]);
    b.set_own_addrs([b_addr]);
    a.add_peers([b_addr], PeerSource::Hint, t(0));
    b.add_peers([a_addr], PeerSource::Hint, t(0));
    assert_eq!(dial_all(&mut a, t(0)), vec![b_addr]);
    assert_eq!(dial_all(&mut b, t(0)), vec![a_addr]);
    let from_b = SocketAddr::new(b_addr.ip(), 50_000);
    let from_a = SocketAddr::new(a_addr.ip(), 50_001);
    assert!(
        !a.accept_incoming(from_b, t(0)),
        "the higher IP's dial must lose"
    );
    assert!(
        b.accept_incoming(from_a, t(0)),
        "the lower IP's dial must win"
    );
    assert_eq!(b.take_superseded(), vec![a_addr]);
    assert!(a.take_superseded().is_empty());
    assert_eq!((a.connection_count(), b.connection_count()), (1, 1));
    // B's own connect, closed by the shell, is not held against A's address.
    b.on_connect_failed(a_addr, t(0));
    b.on_disconnected(from_a, Disconnect::Normal, t(1));
    assert_eq!(
        b.poll_connect(t(1)),
        Some(a_addr),
        "no back-off for a superseded dial"
    );
}

#[test]
fn an_established_outbound_connection_is_never_superseded() {
    // Past connect_timeout our connection is a working one: a second connection from the
    // same IP is refused even if that IP is lower than ours.
    let mut s = Swarm::new(small());
    s.set_own_addrs([addr(9)]);
    s.add_peers([addr(1)], PeerSource::Hint, t(0));
    assert_eq!(dial_all(&mut s, t(0)), vec![addr(1)]);
    let later = t(0) + s.cfg.connect_timeout;
    assert!(!s.accept_incoming(SocketAddr::new(addr(1).ip(), 50_000), later));
    assert!(s.take_superseded().is_empty());
}

#[test]
fn a_fruitless_dial_attempt_is_remembered_until_something_changes() {
    // After an attempt finds every candidate backing off, the next attempts answer from
    // memory until the earliest backoff ends; a new candidate, or a closed connection that
    // frees its IP's room, is seen at once.
    let mut s = Swarm::new(SwarmConfig {
        per_ip_max: 1,
        ..small()
    });
    s.add_peers([addr(1)], PeerSource::Tracker, t(0));
    let a = s.poll_connect(t(0)).unwrap();
    s.on_connecting(a, t(0));
    s.on_connect_failed(a, t(0));
    assert_eq!(s.poll_connect(t(5)), None);
    assert_eq!(s.poll_connect(t(10)), None);
    s.add_peers([addr(2)], PeerSource::Tracker, t(10));
    assert_eq!(s.poll_connect(t(10)), Some(addr(2)));
    s.on_connecting(addr(2), t(10));
    s.on_connected(addr(2), t(10));
    assert_eq!(s.poll_connect(t(15)), Some(a), "the backoff ended");

    // Another port of a connected IP waits for the room, not for a time.
    let other_port = SocketAddr::new(addr(2).ip(), 7000);
    s.add_peers([other_port], PeerSource::Tracker, t(15));
    s.on_connecting(a, t(15));
    s.on_connected(a, t(15));
    assert_eq!(s.poll_connect(t(16)), None);
    assert_eq!(s.poll_connect(t(1000)), None);
    s.on_disconnected(addr(2), Disconnect::Normal, t(1000));
    assert_eq!(s.poll_connect(t(1000)), Some(other_port));
}

fn seed_cfg() -> SwarmConfig {
    SwarmConfig {
        conns_min: 3,
        conns_max: 8,
        pool_max: 20,
        ..SwarmConfig::default()
    }
}

#[test]
fn a_seed_with_idle_slots_dials_past_the_low_water_mark() {
    // 3 connections, 1 of them interested, 4 slots: the 2 uninterested ones take no slot, so
    // the seed dials to 3 - 1 + 4 = 6; never past conns_max however many slots.
    let mut s = Swarm::new(seed_cfg());
    s.add_peers((0..12).map(addr), PeerSource::Tracker, t(0));
    assert_eq!(dial_all(&mut s, t(0)).len(), 3);
    s.want_slots_filled(1, 4);
    assert_eq!(s.dial_target(), 6);
    assert_eq!(dial_all(&mut s, t(0)).len(), 3);
    s.want_slots_filled(0, 100);
    assert_eq!(s.dial_target(), 8);
    assert_eq!(dial_all(&mut s, t(0)).len(), 2);
    // Every slot taken by an interested peer: back to what is open, not below conns_min.
    s.want_slots_filled(8, 4);
    assert_eq!(s.dial_target(), 4);
    assert_eq!(s.poll_connect(t(0)), None);
}

#[test]
fn a_seed_replaces_peers_that_completed() {
    // 5 slots, 5 interested peers; 2 complete and leave (nothing to trade with a seed). A
    // downloader would stay at conns_min (3); the seed dials 2 new peers into its idle slots.
    let mut s = Swarm::new(seed_cfg());
    s.add_peers((0..10).map(addr), PeerSource::Tracker, t(0));
    s.want_slots_filled(0, 5);
    let first = dial_all(&mut s, t(0));
    assert_eq!(first.len(), 5);
    for &a in &first[..2] {
        s.on_disconnected(a, Disconnect::NothingToTrade, t(10));
    }
    s.want_slots_filled(3, 5);
    assert_eq!(dial_all(&mut s, t(10)), vec![addr(5), addr(6)]);
    assert_eq!(s.connection_count(), 5);
    // The completed peers are never dialled again.
    s.want_slots_filled(0, 8);
    assert!(!dial_all(&mut s, t(10))
        .iter()
        .any(|a| first[..2].contains(a)));
}

#[test]
fn a_seed_short_of_peers_asks_for_more_while_its_candidates_back_off() {
    // The seed wants 5 connections; its only 2 candidates refuse and back off: it should ask
    // the tracker for more. A ready candidate, or a full set of slots, means no need.
    let mut s = Swarm::new(seed_cfg());
    s.add_peers((0..3).map(addr), PeerSource::Tracker, t(0));
    assert_eq!(dial_all(&mut s, t(0)).len(), 3);
    assert!(!s.wants_peers(), "at conns_min with no slots to fill");
    s.add_peers((3..5).map(addr), PeerSource::Tracker, t(0));
    s.want_slots_filled(0, 5);
    assert!(!s.wants_peers(), "candidates are ready");
    for _ in 0..2 {
        let a = s.poll_connect(t(0)).unwrap();
        s.on_connecting(a, t(0));
        s.on_connect_failed(a, t(1));
    }
    assert_eq!(s.poll_connect(t(1)), None);
    assert!(s.wants_peers(), "below target, every candidate backing off");
    s.want_slots_filled(3, 3);
    assert!(!s.wants_peers(), "slots full");
    // Below conns_min but every slot taken: more peers would not be served, so no early
    // announce (a downloader in the same state would ask).
    s.on_disconnected(addr(0), Disconnect::Normal, t(2));
    s.want_slots_filled(2, 2);
    assert_eq!(s.connection_count(), 2);
    assert!(s.dial_target() > s.connection_count());
    assert_eq!(s.poll_connect(t(2)), None);
    assert!(!s.wants_peers(), "slots full, below conns_min");
}
