//! Simulator speed on the seed-table scenario (2,000 pieces, 1 Mbps peers, 7-8 h of virtual
//! time) at reduced sizes, side by side in one run: events per second, wall time and the
//! cost of one leecher-piece (every event a piece causes: its flow, its `have` to ~40
//! neighbours' pickers, choker ticks). The ratio of that cost between sizes shows how the
//! simulator slows as the swarm outgrows the CPU caches. Full size (10,000 peers) is
//! `ringseed sim scenarios/seed-table.toml --out DIR`, which also reports peak memory.
//!
//! `cargo bench --bench sim` (RINGSEED_BENCH_SIM_SCALES, default "80,40,20": divisors of
//! the 10,000 peers).

use std::path::Path;
use std::time::Instant;

use ringseed::sim::{Scenario, World};

fn main() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/seed-table.toml");
    let text = std::fs::read_to_string(path).expect("scenarios/seed-table.toml");
    let full = Scenario::from_toml(&text).expect("valid scenario");
    let scales: Vec<u64> = std::env::var("RINGSEED_BENCH_SIM_SCALES")
        .unwrap_or_else(|_| "80,40,20".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "| peers | leecher-pieces | events | wall s | events/s | µs per leecher-piece | vs smallest |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut first_cost = None;
    for scale in scales {
        let sc = full.scaled_down(scale);
        let leechers: u64 = sc.classes.iter().filter(|c| !c.seed).map(|c| c.count).sum();
        let pieces = leechers * sc.pieces();
        let t = Instant::now();
        let o = World::new(&sc).run();
        let wall = t.elapsed().as_secs_f64();
        let cost = wall * 1e6 / pieces as f64;
        let base = *first_cost.get_or_insert(cost);
        println!(
            "| {} | {} | {} | {:.2} | {:.0} | {:.2} | {:.2}x |",
            sc.peers(),
            pieces,
            o.events,
            wall,
            o.events as f64 / wall,
            cost,
            cost / base
        );
    }
}
