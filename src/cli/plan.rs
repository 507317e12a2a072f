//! `ringseed plan`: capacity math printed step by step (see `sim::plan`).

use std::process::ExitCode;

use clap::Args;

use crate::sim::plan::{origin_plan, render, swarm_plan, OriginInputs, SwarmInputs};
use crate::sim::units::{fmt_si, parse_bps, parse_bytes, parse_secs};
use crate::torrent::DEFAULT_UPLOAD_SLOTS;

/// Arguments of `ringseed plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Plan origin appliances for a release instead of a swarm's download time.
    #[arg(long)]
    pub origin: bool,
    /// File (release) size: 4GB (10⁹ bytes), 100GB, 4GiB.
    #[arg(long, value_parser = bytes)]
    pub file_size: u64,
    /// Piece size: 2MB, 4MiB, 256KiB.
    #[arg(long, value_parser = bytes, default_value = "2MB")]
    pub piece_size: u64,
    /// Peers in the swarm (with --origin: downloading peers).
    #[arg(long)]
    pub peers: u64,
    /// Peers that start complete (swarm plan only).
    #[arg(long, default_value_t = 0)]
    pub seeders: u64,
    /// Upload per peer [default: 1Mbps; with --origin 100Mbps].
    #[arg(long, value_parser = bps)]
    pub upload: Option<u64>,
    /// Download per peer [default: 10Mbps; with --origin 1Gbps].
    #[arg(long, value_parser = bps)]
    pub download: Option<u64>,
    /// With --origin: every peer complete within this time (2h, 90min).
    #[arg(long, value_parser = secs, default_value = "2h")]
    pub deadline: f64,
    /// With --origin: one appliance's NIC.
    #[arg(long, value_parser = bps, default_value = "10Gbps")]
    pub nic: u64,
    /// With --origin: round-trip time to peers (sizes socket buffers).
    #[arg(long, value_parser = secs, default_value = "50ms")]
    pub rtt: f64,
    /// With --origin: upload slots per appliance.
    #[arg(long, default_value_t = DEFAULT_UPLOAD_SLOTS as u64)]
    pub upload_slots: u64,
}

fn bytes(s: &str) -> Result<u64, String> {
    parse_bytes(s).map_err(|e| e.to_string())
}
fn bps(s: &str) -> Result<u64, String> {
    parse_bps(s).map_err(|e| e.to_string())
}
fn secs(s: &str) -> Result<f64, String> {
    parse_secs(s).map_err(|e| e.to_string())
}

/// Prints the plan.
pub fn run(a: PlanArgs) -> anyhow::Result<ExitCode> {
    if a.peers == 0 || a.file_size == 0 || a.piece_size == 0 {
        anyhow::bail!("--peers, --file-size and --piece-size must be positive");
    }
    let text = if a.origin {
        let i = OriginInputs {
            file_bytes: a.file_size,
            piece_bytes: a.piece_size,
            peers: a.peers,
            deadline_secs: a.deadline,
            nic_bps: a.nic,
            peer_upload_bps: a.upload.unwrap_or(100_000_000),
            peer_download_bps: a.download.unwrap_or(1_000_000_000),
            rtt_secs: a.rtt,
            upload_slots: a.upload_slots,
        };
        let title = format!(
            "origin plan: {} to {} peers (up {}, down {}) within {} s, {} NICs",
            fmt_si(i.file_bytes as f64, "B"),
            i.peers,
            fmt_si(i.peer_upload_bps as f64, "bps"),
            fmt_si(i.peer_download_bps as f64, "bps"),
            i.deadline_secs,
            fmt_si(i.nic_bps as f64, "bps"),
        );
        render(&title, &origin_plan(&i))
    } else {
        if a.seeders > a.peers {
            anyhow::bail!("--seeders ({}) exceeds --peers ({})", a.seeders, a.peers);
        }
        let i = SwarmInputs {
            file_bytes: a.file_size,
            piece_bytes: a.piece_size,
            peers: a.peers,
            seeders: a.seeders,
            upload_bps: a.upload.unwrap_or(1_000_000),
            download_bps: a.download.unwrap_or(10_000_000),
        };
        let title = format!(
            "swarm plan: {} in {} pieces, {} peers ({} seeders), up {}, down {}",
            fmt_si(i.file_bytes as f64, "B"),
            fmt_si(i.piece_bytes as f64, "B"),
            i.peers,
            i.seeders,
            fmt_si(i.upload_bps as f64, "bps"),
            fmt_si(i.download_bps as f64, "bps"),
        );
        render(&title, &swarm_plan(&i))
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}
