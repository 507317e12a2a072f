//! Simulator tests: small swarms whose outcome is known by hand or by a clear ordering.

use super::*;

/// A scenario from TOML text (panics on a bad one: these are the tests' own files).
fn scenario(text: &str) -> Scenario {
    Scenario::from_toml(text).expect("test scenario")
}

fn completion_times(o: &Outcome, class: u16) -> Vec<f64> {
    let mut v: Vec<f64> = o
        .peers
        .iter()
        .filter(|p| p.class == class)
        .filter_map(|p| p.completed.map(|c| c - p.joined))
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

fn median(v: &[f64]) -> f64 {
    v[v.len() / 2]
}

#[test]
fn one_seeder_one_leecher_takes_size_over_bandwidth() {
    // 100 MB over an 8 Mbps uplink (1 MB/s) is 100 s; handshake, unchoke and request
    // latencies add well under 1 %.
    let sc = scenario(
        r#"
        name = "pair"
        file_size = "100MB"
        piece_size = "1MB"
        [[class]]
        name = "seeder"
        count = 1
        seed = true
        upload = "8Mbps"
        download = "8Mbps"
        latency = "10ms"
        [[class]]
        name = "leecher"
        count = 1
        upload = "8Mbps"
        download = "100Mbps"
        latency = "10ms"
        "#,
    );
    let o = World::new(&sc).run();
    let t = completion_times(&o, 1);
    assert_eq!(t.len(), 1, "the leecher completes");
    assert!((t[0] - 100.0).abs() < 1.0, "took {} s", t[0]);
    assert!((o.peers[1].downloaded - 100e6).abs() < 1.0);
}

/// A swarm of `leechers` downloaders and one seeder, `extra` appended to the TOML.
fn small_swarm(header: &str, classes: &str) -> Scenario {
    scenario(&format!(
        r#"
        name = "small"
        file_size = "40MB"
        piece_size = "512KB"
        blocks_per_piece = 4
        sample_interval = "10s"
        {header}
        {classes}
        "#
    ))
}

const ONE_SEEDER_40_LEECHERS: &str = r#"
    [[class]]
    name = "seeder"
    count = 1
    seed = true
    upload = "20Mbps"
    download = "20Mbps"
    upload_slots = 4
    [[class]]
    name = "leecher"
    count = 40
    upload = "4Mbps"
    download = "20Mbps"
    join_spread = "5s"
"#;

#[test]
fn same_seed_gives_identical_output() {
    // Two runs of one scenario and seed agree on every peer's times and bytes and every
    // sample; another seed gives another run.
    let sc = small_swarm("seed = 7", ONE_SEEDER_40_LEECHERS);
    let a = World::new(&sc).run();
    let b = World::new(&sc).run();
    let json = |o: &Outcome| serde_json::to_string(&(&o.peers, &o.samples)).unwrap();
    assert_eq!(json(&a), json(&b));
    assert_eq!(a.events, b.events);
    let mut other = sc.clone();
    other.seed = 8;
    assert_ne!(json(&a), json(&World::new(&other).run()));
}

#[test]
fn every_leecher_completes_and_bytes_add_up() {
    // Nothing is lost: every leecher gets exactly the file, and all useful bytes were
    // uploaded by someone (uploads = downloads + waste).
    let sc = small_swarm("", ONE_SEEDER_40_LEECHERS);
    let o = World::new(&sc).run();
    assert_eq!(completion_times(&o, 1).len(), 40);
    for p in o.peers.iter().filter(|p| !p.seed) {
        assert!((p.downloaded - 40e6).abs() < 1.0, "{}", p.downloaded);
    }
    let up: f64 = o.peers.iter().map(|p| p.uploaded).sum();
    let down: f64 = o.peers.iter().map(|p| p.downloaded).sum();
    assert!(
        (up - down - o.wasted_bytes).abs() < 1.0,
        "{up} {down} {}",
        o.wasted_bytes
    );
}

/// The origin seeds 1.2 copies and leaves; leechers keep going on their own.
const ORIGIN_LEAVES: &str = r#"
    [[class]]
    name = "origin"
    count = 1
    seed = true
    upload = "20Mbps"
    download = "20Mbps"
    upload_slots = 4
    leave_after_copies = 1.2
    [[class]]
    name = "leecher"
    count = 30
    upload = "4Mbps"
    download = "20Mbps"
    join_spread = "5s"
"#;

#[test]
fn rarest_first_keeps_minimum_availability_above_sequential() {
    // With an origin that leaves after 1.2 copies, rarest-first spreads every piece before
    // it goes (min availability stays >= 1, all complete); sequential leaves the tail of
    // the file with nobody and the swarm starves.
    let time_limit = r#"time_limit = "2h""#;
    let rarest = World::new(&small_swarm(time_limit, ORIGIN_LEAVES)).run();
    let seq = small_swarm(
        &format!("{time_limit}\npick_order = \"sequential\""),
        ORIGIN_LEAVES,
    );
    let seq = World::new(&seq).run();
    let min_after = |o: &Outcome, t: f64| {
        o.samples
            .iter()
            .filter(|s| s.t >= t && s.leechers > 0)
            .map(|s| s.min_availability)
            .min()
    };
    assert_eq!(
        completion_times(&rarest, 1).len(),
        30,
        "rarest-first completes"
    );
    assert!(completion_times(&seq, 1).len() < 30, "sequential starves");
    let r = min_after(&rarest, 60.0).unwrap_or(u32::MAX);
    let s = min_after(&seq, 60.0).expect("sequential leechers remain");
    assert!(
        r >= 1 && s == 0,
        "min availability rarest {r}, sequential {s}"
    );
}

#[test]
fn free_riders_finish_later_under_tit_for_tat_only() {
    // 20 % of leechers upload nothing. Tit-for-tat serves those who reciprocate, so free
    // riders' median completion is clearly later; with the seeding rule instead (no
    // reciprocation), they are not.
    let classes = r#"
        [[class]]
        name = "seeder"
        count = 1
        seed = true
        upload = "8Mbps"
        download = "8Mbps"
        upload_slots = 4
        [[class]]
        name = "contributor"
        count = 40
        upload = "4Mbps"
        download = "40Mbps"
        join_spread = "5s"
        [[class]]
        name = "free-rider"
        count = 10
        free_rider = true
        upload = "4Mbps"
        download = "40Mbps"
        join_spread = "5s"
    "#;
    // One run's ratio varies by about ±0.1 with the seed (1.17–1.39 over seeds 1–8), so
    // the claim is made on the mean of six seeds.
    let ratio = |tft: bool, seed: u64| {
        let sc = small_swarm(&format!("tit_for_tat = {tft}\nseed = {seed}"), classes);
        let o = World::new(&sc).run();
        let (c, f) = (completion_times(&o, 1), completion_times(&o, 2));
        assert_eq!((c.len(), f.len()), (40, 10), "everyone completes");
        median(&f) / median(&c)
    };
    let mean = |tft: bool| (1..=6).map(|seed| ratio(tft, seed)).sum::<f64>() / 6.0;
    let (with_tft, without) = (mean(true), mean(false));
    eprintln!("free riders / contributors: with TFT {with_tft:.2}, without {without:.2}");
    assert!(
        with_tft > 1.15,
        "free riders / contributors under TFT: {with_tft}"
    );
    assert!(
        without < with_tft * 0.85,
        "without TFT {without}, with {with_tft}"
    );
}
