//! Capacity math for `ringseed plan`: every figure as a step (formula, inputs, result,
//! assumption), so a reader can check the arithmetic the way the seed's capacity table does.
//!
//! Pure functions of their inputs; the per-GB CPU and hashing figures come from
//! docs/BENCHMARKS.md (constants below). The bounds are the fluid-model ones (Kumar & Ross,
//! "Peer-assisted file distribution", 2006): a swarm cannot finish faster than its slowest
//! downloader's link, or than total demand divided by total upload. The simulator
//! (`ringseed sim`) shows how far real policy stays from them.

use super::units::{fmt_secs, fmt_si, trim_num};

/// Seeder CPU per GB served, seconds: ringseed with io_uring and 4 leechers, loopback
/// (docs/BENCHMARKS.md, 0.375 s/GB; it includes loopback receive work, so it is high).
pub const SEEDER_CPU_SECS_PER_GB: f64 = 0.375;

/// SHA-1 throughput of one core with SHA-NI, GB/s (docs/BENCHMARKS.md, `sha1` crate).
pub const SHA1_GB_PER_SEC_PER_CORE: f64 = 1.64;

/// Bytes of per-connection state besides the bitfield: session, request queue (250 × 12 B),
/// rate meters, receive-buffer share; rounded up.
pub const CONN_STATE_BYTES: f64 = 8.0 * 1024.0;

/// Fraction of a NIC we plan to fill: headroom for TCP retransmits, bursts and control
/// traffic, and the SLO's error budget.
pub const NIC_UTILISATION: f64 = 0.8;

/// One line of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// What is computed.
    pub what: &'static str,
    /// The formula in symbols.
    pub formula: &'static str,
    /// The formula with the numbers put in.
    pub inputs: String,
    /// The result, in the unit people read.
    pub result: String,
    /// The raw result (bits/s, seconds, bytes, or a count; `what` says which).
    pub value: f64,
    /// What has to be true for the result to hold.
    pub assumption: &'static str,
}

/// The inputs of a swarm plan (the seed's table).
#[derive(Clone, Copy, Debug)]
pub struct SwarmInputs {
    /// File size, bytes.
    pub file_bytes: u64,
    /// Piece size, bytes.
    pub piece_bytes: u64,
    /// Peers in the swarm, seeders included.
    pub peers: u64,
    /// Peers that start with the whole file.
    pub seeders: u64,
    /// Average upload per peer, bits/s.
    pub upload_bps: u64,
    /// Download capacity per peer, bits/s.
    pub download_bps: u64,
}

/// The inputs of an origin plan: one or more appliances seeding a release to a swarm.
#[derive(Clone, Copy, Debug)]
pub struct OriginInputs {
    /// Release size, bytes.
    pub file_bytes: u64,
    /// Piece size, bytes.
    pub piece_bytes: u64,
    /// Downloading peers.
    pub peers: u64,
    /// Every peer must be complete by then, seconds.
    pub deadline_secs: f64,
    /// One appliance's NIC, bits/s.
    pub nic_bps: u64,
    /// Upload per peer, bits/s.
    pub peer_upload_bps: u64,
    /// Download per peer, bits/s.
    pub peer_download_bps: u64,
    /// Round-trip time to peers, seconds (socket buffers hold rate × RTT).
    pub rtt_secs: f64,
    /// Upload slots per appliance (the seeding choker's `upload_slots`).
    pub upload_slots: u64,
}

fn step(
    what: &'static str,
    formula: &'static str,
    inputs: String,
    value: f64,
    result: String,
    assumption: &'static str,
) -> Step {
    Step {
        what,
        formula,
        inputs,
        result,
        value,
        assumption,
    }
}

fn bits(bytes: u64) -> f64 {
    bytes as f64 * 8.0
}

/// The seed's table, step by step: pieces, total upload, the per-download estimate at the
/// download rate, and the flow bound that a flash crowd of every leecher at once meets.
pub fn swarm_plan(i: &SwarmInputs) -> Vec<Step> {
    let f = bits(i.file_bytes);
    let leechers = i.peers.saturating_sub(i.seeders);
    let pieces = i.file_bytes.div_ceil(i.piece_bytes.max(1));
    let total_up = i.peers as f64 * i.upload_bps as f64;
    let t_link = f / i.download_bps.max(1) as f64;
    let share = total_up / leechers.max(1) as f64;
    let t_flow = leechers as f64 * f / total_up.max(1.0);
    let t_bound = t_link.max(t_flow);
    let concurrent = total_up / i.download_bps.max(1) as f64;
    let throughput = total_up / f;
    vec![
        step(
            "pieces",
            "P = ⌈F / piece⌉",
            format!("⌈{} B / {} B⌉", i.file_bytes, i.piece_bytes),
            pieces as f64,
            format!("{pieces}"),
            "one piece is the unit peers trade and verify",
        ),
        step(
            "leechers",
            "L = N − S",
            format!("{} − {}", i.peers, i.seeders),
            leechers as f64,
            format!("{leechers}"),
            "seeders start with the whole file",
        ),
        step(
            "total swarm upload (bits/s)",
            "U = N · u",
            format!("{} · {}", i.peers, fmt_si(i.upload_bps as f64, "bps")),
            total_up,
            fmt_si(total_up, "bps"),
            "every peer uploads at its average rate all the time (leechers once they have pieces)",
        ),
        step(
            "download time at the download rate (s)",
            "T_d = F / d",
            format!(
                "{} / {}",
                fmt_si(f, "bit"),
                fmt_si(i.download_bps as f64, "bps")
            ),
            t_link,
            fmt_secs(t_link),
            "the seed's estimate: each downloader gets its full download rate",
        ),
        step(
            "downloaders the swarm can feed at that rate",
            "C = U / d",
            format!(
                "{} / {}",
                fmt_si(total_up, "bps"),
                fmt_si(i.download_bps as f64, "bps")
            ),
            concurrent,
            trim_num(concurrent),
            "T_d holds only while at most C peers download at once",
        ),
        step(
            "upload share per leecher, all at once (bits/s)",
            "U / L",
            format!("{} / {leechers}", fmt_si(total_up, "bps")),
            share,
            fmt_si(share, "bps"),
            "flash crowd: every leecher starts together and shares U fairly",
        ),
        step(
            "flash-crowd completion bound (s)",
            "T ≥ max(F / d, L · F / U)",
            format!(
                "max({}, {leechers} · {} / {})",
                fmt_secs(t_link),
                fmt_si(f, "bit"),
                fmt_si(total_up, "bps")
            ),
            t_bound,
            fmt_secs(t_bound),
            "no policy beats it; the simulator shows how close rarest-first + tit-for-tat gets",
        ),
        step(
            "swarm throughput (downloads/hour)",
            "3600 · U / F",
            format!("3600 · {} / {}", fmt_si(total_up, "bps"), fmt_si(f, "bit")),
            throughput * 3600.0,
            trim_num(throughput * 3600.0),
            "steady state: completed downloads per hour the swarm's upload can carry",
        ),
    ]
}

/// The origin plan: client-server cost, the P2P bound with the origin's share, and per
/// appliance NIC, disk, CPU, memory and connections.
pub fn origin_plan(i: &OriginInputs) -> Vec<Step> {
    let f = bits(i.file_bytes);
    let n = i.peers as f64;
    let t = i.deadline_secs.max(1e-9);
    let nic_usable = i.nic_bps as f64 * NIC_UTILISATION;
    let cs_rate = n * f / t;
    let cs_boxes = (cs_rate / nic_usable).ceil();
    let swarm_up = n * i.peer_upload_bps as f64;
    let need_total = n * f / t;
    let origin_need = (need_total - swarm_up).max(f / t);
    let boxes = (origin_need / nic_usable).ceil().max(1.0);
    let origin_rate = boxes * nic_usable;
    let t_link = f / i.peer_download_bps.max(1) as f64;
    let t_copy = f / origin_rate;
    let t_bound = t_link.max(t_copy).max(n * f / (origin_rate + swarm_up));
    let per_box = origin_rate / boxes;
    let disk_bytes_s = per_box / 8.0;
    let cpu_cores = disk_bytes_s / 1e9 * SEEDER_CPU_SECS_PER_GB;
    let hash_secs = i.file_bytes as f64 / 1e9 / SHA1_GB_PER_SEC_PER_CORE;
    let conns = (n / boxes).ceil();
    let slots = i.upload_slots.max(1) as f64;
    let per_slot = per_box / slots;
    let sockbuf = 2.0 * per_slot / 8.0 * i.rtt_secs;
    let bitfield = (i.file_bytes.div_ceil(i.piece_bytes.max(1)) as f64 / 8.0).ceil();
    let per_conn = CONN_STATE_BYTES + bitfield;
    let mem = conns * per_conn + slots.min(conns) * sockbuf;
    vec![
        step(
            "client-server: bytes the servers send",
            "N · F",
            format!("{} · {}", i.peers, fmt_si(f / 8.0, "B")),
            n * f / 8.0,
            fmt_si(n * f / 8.0, "B"),
            "every peer downloads the whole release from the servers",
        ),
        step(
            "client-server: egress to meet the deadline (bits/s)",
            "N · F / T",
            format!("{} · {} / {}", i.peers, fmt_si(f, "bit"), fmt_secs(t)),
            cs_rate,
            fmt_si(cs_rate, "bps"),
            "the deadline is for the last peer; all download at once",
        ),
        step(
            "client-server: appliances",
            "⌈N · F / T / (nic · η)⌉",
            format!(
                "⌈{} / ({} · {})⌉",
                fmt_si(cs_rate, "bps"),
                fmt_si(i.nic_bps as f64, "bps"),
                NIC_UTILISATION
            ),
            cs_boxes,
            trim_num(cs_boxes),
            "η = 0.8: NICs are planned at 80 % (headroom and error budget)",
        ),
        step(
            "P2P: swarm upload (bits/s)",
            "N · u",
            format!("{} · {}", i.peers, fmt_si(i.peer_upload_bps as f64, "bps")),
            swarm_up,
            fmt_si(swarm_up, "bps"),
            "peers upload what they have at their full uplink",
        ),
        step(
            "P2P: origin egress needed (bits/s)",
            "max(N · F / T − N · u, F / T)",
            format!(
                "max({} − {}, {} / {})",
                fmt_si(need_total, "bps"),
                fmt_si(swarm_up, "bps"),
                fmt_si(f, "bit"),
                fmt_secs(t)
            ),
            origin_need,
            fmt_si(origin_need, "bps"),
            "total supply must cover total demand; the origin sends at least one copy",
        ),
        step(
            "P2P: appliances",
            "⌈origin egress / (nic · η)⌉",
            format!(
                "⌈{} / ({} · {})⌉",
                fmt_si(origin_need, "bps"),
                fmt_si(i.nic_bps as f64, "bps"),
                NIC_UTILISATION
            ),
            boxes,
            trim_num(boxes),
            "fluid bound; the simulator's origin-seeder run measures the real overhead",
        ),
        step(
            "P2P: completion bound with that origin (s)",
            "max(F / d, F / u_o, N · F / (u_o + N · u))",
            format!("max({}, {}, …)", fmt_secs(t_link), fmt_secs(t_copy)),
            t_bound,
            fmt_secs(t_bound),
            "no policy finishes sooner; compare with the deadline",
        ),
        step(
            "per appliance: NIC egress (bits/s)",
            "u_o / boxes",
            format!("{} / {}", fmt_si(origin_rate, "bps"), trim_num(boxes)),
            per_box,
            fmt_si(per_box, "bps"),
            "appliances share peers evenly behind one tracker",
        ),
        step(
            "per appliance: disk reads (bytes/s)",
            "egress / 8",
            format!("{} / 8", fmt_si(per_box, "bps")),
            disk_bytes_s,
            format!("{}/s", fmt_si(disk_bytes_s, "B")),
            "worst case, no piece cache: every block served is read once",
        ),
        step(
            "per appliance: CPU cores serving",
            "egress (GB/s) · CPU-s/GB",
            format!(
                "{} GB/s · {SEEDER_CPU_SECS_PER_GB} s/GB",
                trim_num(disk_bytes_s / 1e9)
            ),
            cpu_cores,
            trim_num(cpu_cores),
            "docs/BENCHMARKS.md seeder cost on loopback (an upper bound on a real NIC)",
        ),
        step(
            "per appliance: SHA-1 to verify the release once (CPU-s)",
            "F (GB) / SHA-1 GB/s per core",
            format!(
                "{} GB / {SHA1_GB_PER_SEC_PER_CORE} GB/s",
                trim_num(i.file_bytes as f64 / 1e9)
            ),
            hash_secs,
            fmt_secs(hash_secs),
            "at start-up or after a crash; spread over all cores (0.61 CPU-s per GB)",
        ),
        step(
            "per appliance: connections",
            "⌈N / boxes⌉",
            format!("⌈{} / {}⌉", i.peers, trim_num(boxes)),
            conns,
            trim_num(conns),
            "every peer keeps one connection to an origin",
        ),
        step(
            "per appliance: rate per upload slot (bits/s)",
            "egress / slots",
            format!("{} / {}", fmt_si(per_box, "bps"), i.upload_slots),
            per_slot,
            fmt_si(per_slot, "bps"),
            "the seeding choker gives the slots to the fastest takers",
        ),
        step(
            "per appliance: memory (bytes)",
            "conns · (state + P/8) + slots · 2 · rate/slot · RTT",
            format!(
                "{} · ({} + {}) + {} · {}",
                trim_num(conns),
                fmt_si(CONN_STATE_BYTES, "B"),
                fmt_si(bitfield, "B"),
                i.upload_slots,
                fmt_si(sockbuf, "B")
            ),
            mem,
            fmt_si(mem, "B"),
            "kernel socket buffers hold two bandwidth-delay products per unchoked peer; \
             page cache for hot pieces comes on top",
        ),
    ]
}

/// The plan as text: one block per step.
pub fn render(title: &str, steps: &[Step]) -> String {
    let mut out = format!("{title}\n");
    for (n, s) in steps.iter().enumerate() {
        out.push_str(&format!(
            "\n{:>2}. {}\n    formula:    {}\n    inputs:     {}\n    result:     {}\n    assumption: {}\n",
            n + 1,
            s.what,
            s.formula,
            s.inputs,
            s.result,
            s.assumption
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_table() -> SwarmInputs {
        SwarmInputs {
            file_bytes: 4_000_000_000,
            piece_bytes: 2_000_000,
            peers: 10_000,
            seeders: 2_000,
            upload_bps: 1_000_000,
            download_bps: 10_000_000,
        }
    }

    fn value(steps: &[Step], what: &str) -> f64 {
        steps
            .iter()
            .find(|s| s.what.starts_with(what))
            .unwrap_or_else(|| panic!("no step {what}"))
            .value
    }

    #[test]
    fn plan_reproduces_the_seeds_table() {
        // 4 GB, 2 MB pieces, 10,000 peers at 1 Mbps: 2,000 pieces, 10 Gbps, ~53 min.
        let steps = swarm_plan(&seed_table());
        assert_eq!(value(&steps, "pieces"), 2_000.0);
        assert_eq!(value(&steps, "leechers"), 8_000.0);
        assert_eq!(value(&steps, "total swarm upload"), 10e9);
        let t = value(&steps, "download time");
        assert!((t / 60.0 - 53.33).abs() < 0.01, "{t}");
        assert_eq!(value(&steps, "downloaders the swarm"), 1_000.0);
    }

    #[test]
    fn flash_crowd_bound_is_demand_over_supply() {
        // 8,000 leechers × 32 Gbit / 10 Gbps = 25,600 s: the gap the simulator explains.
        let steps = swarm_plan(&seed_table());
        assert_eq!(value(&steps, "upload share"), 1.25e6);
        assert_eq!(value(&steps, "flash-crowd completion bound"), 25_600.0);
        assert!(render("t", &steps).contains("7.111 h"));
    }

    #[test]
    fn origin_plan_counts_appliances_and_resources() {
        // 100 GB to 10,000 peers in 2 h: client-server needs 1.11 Tbps (56 boxes of 25 Gbps
        // at 80 %); peers at 100 Mbps supply 1 Tbps, leaving 111 Gbps: 6 boxes.
        let i = OriginInputs {
            file_bytes: 100_000_000_000,
            piece_bytes: 4 << 20,
            peers: 10_000,
            deadline_secs: 7200.0,
            nic_bps: 25_000_000_000,
            peer_upload_bps: 100_000_000,
            peer_download_bps: 1_000_000_000,
            rtt_secs: 0.05,
            upload_slots: 500,
        };
        let steps = origin_plan(&i);
        let cs = value(&steps, "client-server: egress");
        assert!((cs - 1.111e12).abs() < 1e9, "{cs}");
        assert_eq!(value(&steps, "client-server: appliances"), 56.0);
        assert_eq!(value(&steps, "P2P: appliances"), 6.0);
        assert_eq!(value(&steps, "per appliance: connections"), 1667.0);
        let cpu = value(&steps, "per appliance: CPU");
        assert!((cpu - 2.5 * 0.375).abs() < 1e-9, "{cpu}");
        let bound = value(&steps, "P2P: completion bound");
        assert!(bound <= 7200.0 + 1e-6, "{bound}");
    }
}
