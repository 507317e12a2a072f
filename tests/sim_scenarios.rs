//! The scenario files of scenarios/ at reduced size (CI): each still shows what it is for.
//! Full size: `scripts/sim-scenarios.sh` (see docs/CAPACITY.md).

use std::path::Path;

use ringseed::sim::report::{completion_times, quantile};
use ringseed::sim::{Outcome, Scenario, World};

fn load(name: &str, scale_down: u64) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("scenarios/{name}.toml"));
    let text = std::fs::read_to_string(&path).expect("scenario file");
    Scenario::from_toml(&text)
        .expect("valid scenario")
        .scaled_down(scale_down)
}

fn class(sc: &Scenario, name: &str) -> u16 {
    sc.classes
        .iter()
        .position(|c| c.name == name)
        .expect("class") as u16
}

fn downloaders(o: &Outcome, class: u16) -> usize {
    o.peers
        .iter()
        .filter(|p| p.class == class && !p.seed)
        .count()
}

#[test]
fn seed_table_is_bound_by_total_upload_not_by_the_download_link() {
    // 20 seeders + 80 leechers at 1 Mbps (the seed's ratios): everyone completes, not in
    // the seed's 53 min but near leechers × size / total upload = 80 × 32 Gbit / 100 Mbps.
    // (At 1/200, 50 peers, everyone is connected to everyone: all leechers see the same
    // availability, rarest-first sends them after the same pieces, they trade little and
    // the median lands at 1.6 × the bound. From 100 peers on, as at full size, it is ~1.03.)
    let sc = load("seed-table", 100);
    let leecher = class(&sc, "leecher");
    let o = World::new(&sc).run();
    let t = completion_times(&o, leecher);
    assert_eq!(t.len(), downloaders(&o, leecher), "all complete");
    let bound = 80.0 * 32e9 / 100e6;
    let median = quantile(&t, 0.5).unwrap();
    assert!(median > 53.4 * 60.0, "median {median} s");
    assert!(
        median > 0.9 * bound && median < 1.4 * bound,
        "median {median} s, bound {bound}"
    );
}

#[test]
fn rarest_first_completes_where_sequential_and_random_starve() {
    // The origin leaves after 1.2 copies: rarest-first has spread every piece by then.
    let done = |name: &str| {
        let sc = load(name, 8);
        let o = World::new(&sc).run();
        let l = class(&sc, "leecher");
        (completion_times(&o, l).len(), downloaders(&o, l))
    };
    let (rarest, n) = done("rarest-vs-sequential");
    assert_eq!(rarest, n, "rarest-first: all complete");
    let (seq, _) = done("rarest-vs-sequential-seq");
    assert!(seq < n / 2, "sequential: {seq} of {n} complete");
    let (random, _) = done("rarest-vs-sequential-random");
    assert!(random < n, "random: {random} of {n} complete");
}

#[test]
fn churned_swarm_still_completes_for_peers_that_stay() {
    // Flash crowd, departures after completing and at random: every stayer completes.
    let sc = load("churn", 40);
    let o = World::new(&sc).run();
    let stayer = class(&sc, "stayer");
    assert_eq!(
        completion_times(&o, stayer).len(),
        downloaders(&o, stayer),
        "all stayers complete"
    );
    assert!(!o.hit_time_limit);
}

#[test]
fn origin_serves_less_than_client_server_would() {
    // One 10 Gbps origin and peers at 100 Mbps up: all complete, and the origin sends less
    // than peers × size (what client-server delivery costs).
    let sc = load("origin-seeder", 400);
    let o = World::new(&sc).run();
    let (origin, peer) = (class(&sc, "origin"), class(&sc, "peer"));
    let n = downloaders(&o, peer);
    assert_eq!(completion_times(&o, peer).len(), n, "all complete");
    let origin_bytes: f64 = o
        .peers
        .iter()
        .filter(|p| p.class == origin)
        .map(|p| p.uploaded)
        .sum();
    let client_server = n as f64 * sc.file_size as f64;
    assert!(
        origin_bytes < client_server,
        "{origin_bytes} vs {client_server}"
    );
}

#[test]
fn every_piece_size_completes() {
    // 256 KiB, 2 MiB and 4 MiB pieces on one swarm (reduced): all leechers complete.
    for name in ["piece-size-256kib", "piece-size-2mib", "piece-size-4mib"] {
        let sc = load(name, 100);
        let o = World::new(&sc).run();
        let l = class(&sc, "leecher");
        assert_eq!(completion_times(&o, l).len(), downloaders(&o, l), "{name}");
    }
}

#[test]
fn free_rider_scenarios_complete_for_everyone() {
    // Both free-rider files are usable; the TFT comparison itself is the unit test
    // `free_riders_finish_later_under_tit_for_tat_only`.
    for name in ["free-riders", "free-riders-no-tft"] {
        let sc = load(name, 40);
        let o = World::new(&sc).run();
        let all = o.peers.iter().filter(|p| !p.seed).count();
        let done = o.peers.iter().filter(|p| p.completed.is_some()).count();
        assert_eq!(done, all, "{name}");
    }
}
