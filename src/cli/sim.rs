//! `ringseed sim`: run a scenario file in the swarm simulator and write its reports.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::sim::report::{peers_csv, render, summarize, timeseries_csv};
use crate::sim::{Scenario, World};

/// Arguments of `ringseed sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// The scenario file (see scenarios/*.toml).
    pub scenario: PathBuf,
    /// Directory for summary.txt, summary.json, timeseries.csv, peers.csv and plots.
    #[arg(long)]
    pub out: PathBuf,
    /// Divide every class's peer count by this (CI runs scenarios at reduced size).
    #[arg(long, default_value_t = 1)]
    pub scale_down: u64,
    /// Override the scenario's RNG seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Runs the scenario; prints the summary with wall time, events/s and peak memory.
pub fn run(a: SimArgs) -> anyhow::Result<ExitCode> {
    reexec_with_huge_pages();
    let text = std::fs::read_to_string(&a.scenario)
        .with_context(|| format!("cannot read {}", a.scenario.display()))?;
    let mut sc = Scenario::from_toml(&text)
        .with_context(|| format!("{} is not a usable scenario", a.scenario.display()))?;
    if a.scale_down > 1 {
        sc = sc.scaled_down(a.scale_down);
    }
    if let Some(seed) = a.seed {
        sc.seed = seed;
    }
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let wall = std::time::Instant::now();
    let outcome = World::new(&sc).run();
    let secs = wall.elapsed().as_secs_f64();
    let summary = summarize(&sc, &outcome);
    let mut text = render(&summary);
    text.push_str(&format!(
        "wall {:.2} s, {:.0} events/s, peak RSS {} MiB\n",
        secs,
        outcome.events as f64 / secs.max(1e-9),
        peak_rss_kib().map_or("?".into(), |k| (k / 1024).to_string())
    ));
    print!("{text}");
    let write = |name: &str, body: String| -> anyhow::Result<()> {
        let path = a.out.join(name);
        std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))
    };
    write("summary.txt", text.clone())?;
    let json = serde_json::json!({ "summary": summary, "samples": outcome.samples });
    write("summary.json", serde_json::to_string_pretty(&json)?)?;
    write("timeseries.csv", timeseries_csv(&sc, &outcome))?;
    write("peers.csv", peers_csv(&sc, &outcome))?;
    crate::sim::plot::write_all(&a.out, &sc, &outcome)?;
    Ok(ExitCode::SUCCESS)
}

/// The environment variable that asks glibc's malloc to advise transparent huge pages.
const TUNABLES: &str = "GLIBC_TUNABLES";

/// A full-size run reads gigabytes of peers, pickers and connections at random, so most
/// accesses miss the TLB; transparent huge pages (the kernel's `madvise` mode, Debian's
/// default) cut that: 12 % less CPU at a fifth of the seed-table (docs/CAPACITY.md §7).
/// glibc's malloc advises them only when `GLIBC_TUNABLES` says so at start-up, so the
/// simulator executes itself once more with `glibc.malloc.hugetlb=1`, unless the variable is
/// already set (set it to anything, even empty, to opt out). If the exec fails the run goes
/// on as it is.
fn reexec_with_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os(TUNABLES).is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(TUNABLES, "glibc.malloc.hugetlb=1")
            .exec();
        eprintln!("note: running without huge pages ({err})");
    }
}

/// Peak resident memory of this process (Linux `VmHWM`), KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
