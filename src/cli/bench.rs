//! `ringseed bench`: the load generator against a running seeder.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::loadgen::{self, BenchConfig, Verify};

/// Arguments of `ringseed bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The .torrent file the seeder serves.
    pub torrent: PathBuf,
    /// The seeder's address.
    #[arg(long)]
    pub target: SocketAddr,
    /// Number of leechers; each downloads the whole torrent.
    #[arg(long, default_value_t = 4)]
    pub peers: usize,
    /// Load-generator threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Block requests each leecher keeps outstanding.
    #[arg(long, default_value_t = 128)]
    pub pipeline: usize,
    /// The seeder's pid, to report its CPU seconds per GB.
    #[arg(long)]
    pub seeder_pid: Option<u32>,
    /// Give up on a leecher after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// SHA-1 every copy of every piece. By default each piece's first copy is SHA-1 checked
    /// and later copies (other leechers') are compared with it by XXH3-128, which is ~10x
    /// cheaper and keeps the load generator cheaper per byte than the seeder.
    #[arg(long)]
    pub sha1_every_copy: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark; fails when a leecher did not finish or a piece did not verify.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let meta = super::load_torrent(&args.torrent)?;
    let cfg = BenchConfig {
        peers: args.peers,
        target: args.target,
        threads: args.threads,
        pipeline: args.pipeline,
        seeder_pid: args.seeder_pid,
        timeout: Duration::from_secs(args.timeout_secs),
        verify: if args.sha1_every_copy {
            Verify::Sha1Always
        } else {
            Verify::Sha1Once
        },
    };
    let report = loadgen::run(&meta, &cfg);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
