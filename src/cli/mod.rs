//! The command line: `create`, `seed`, `verify`, `magnet`, `bench`, `demo`, `dht`.
//!
//! Glue only: argument parsing (clap), reading files, logging set-up and reports. Every
//! decision lives in the library modules; a command's job is to wire them together and turn
//! errors into one-line reasons and non-zero exit codes.

mod bench;
mod create;
mod demo;
mod demo_swarm;
pub(crate) mod dht;
mod get;
mod magnet;
mod plan;
mod probe;
mod seed;
mod sim;
mod size;
mod tracker;

pub use create::write_atomically;

pub use size::parse_size;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::metainfo::{parse_torrent, Metainfo};

/// ringseed: a thread-per-core io_uring BitTorrent seeder and peer.
#[derive(Debug, Parser)]
#[command(name = "ringseed", version, about, long_about = None)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the demo: make a sample release, seed it to a swarm of `get` peers that trade
    /// pieces, then serve it at line rate to verifying leechers.
    Demo(demo::DemoArgs),
    /// Download a torrent (resumes after a crash), then seed per --seed-ratio/--seed-time/--seed.
    Get(get::GetArgs),
    /// Make a .torrent file from a file or directory (hashing on all cores).
    Create(create::CreateArgs),
    /// Seed torrents: serve their data to peers until interrupted.
    Seed(seed::SeedArgs),
    /// Recheck data against a torrent and list bad pieces.
    Verify(create::VerifyArgs),
    /// Print the magnet URI of a torrent file.
    Magnet(magnet::MagnetArgs),
    /// Download a torrent from a seeder with many verifying leechers and report throughput.
    Bench(bench::BenchArgs),
    /// Run a standalone DHT node (bootstrap router; can announce or search info-hashes).
    Dht(dht::DhtArgs),
    /// Capacity math step by step: swarm download time, or origin appliances (--origin).
    Plan(plan::PlanArgs),
    /// Run a swarm scenario in the discrete-event simulator; write summary, CSV and plots.
    Sim(sim::SimArgs),
    /// Run a UDP and HTTP tracker (announce, scrape, /metrics).
    Tracker(tracker::TrackerArgs),
    /// Canary: fetch and verify one piece from a seeder, timing each stage (once, N times or
    /// every interval; optional /metrics).
    Probe(probe::ProbeArgs),
}

/// Runs the command line; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Get(a) => get::run(a),
        Command::Create(a) => create::run_create(a),
        Command::Seed(a) => seed::run(a),
        Command::Verify(a) => create::run_verify(a),
        Command::Magnet(a) => magnet::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Dht(a) => dht::run(a),
        Command::Plan(a) => plan::run(a),
        Command::Sim(a) => sim::run(a),
        Command::Tracker(a) => tracker::run(a),
        Command::Probe(a) => probe::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ringseed: {}", error_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// An error as one line: its chain of causes, outermost first, joined by `: `.
///
/// Many of our error types already print their cause (`"{path}: {source}"`,
/// `"not valid bencode: {0}"`) and also expose it as `source()`, so anyhow's `{:#}` would say
/// it twice ("x: No such file: No such file"). A cause whose text the line already ends with
/// is skipped; embedded newlines become spaces so a log line stays one line.
pub fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace(['\n', '\r'], " ")
}

/// Logs go to stderr; `RUST_LOG` overrides the default level (`info`).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Reads and parses a .torrent file; errors name the file and the field.
pub fn load_torrent(path: &Path) -> anyhow::Result<Metainfo> {
    let bytes = read_torrent_file(path)?;
    parse_torrent(&bytes).with_context(|| format!("{} is not a valid torrent", path.display()))
}

/// Reads a .torrent file, refusing empty ones and reading no more than the parser accepts
/// (`Limits::TORRENT_FILE`), so a huge file or `/dev/zero` is refused instead of filling memory.
pub fn read_torrent_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let max = crate::bencode::Limits::TORRENT_FILE.total_bytes_max;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.is_empty() {
        anyhow::bail!("{} is empty, not a torrent", path.display());
    }
    if bytes.len() > max {
        anyhow::bail!(
            "{} is larger than {} MiB, the most a torrent file may be",
            path.display(),
            max >> 20
        );
    }
    Ok(bytes)
}

/// Every `.torrent` file directly inside `dir`, sorted.
pub fn torrents_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "torrent") && path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}
