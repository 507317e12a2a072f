//! What a simulation run tells its reader: a summary per peer class (completion-time
//! median and p90, bytes up and down), the time series as CSV and everything as JSON.

use std::fmt::Write as _;

use super::engine::Outcome;
use super::scenario::Scenario;
use super::units::{fmt_secs, fmt_si};

/// One class's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ClassSummary {
    /// Class name.
    pub name: String,
    /// Peers in the class.
    pub peers: usize,
    /// Downloaders that completed.
    pub completed: usize,
    /// Downloaders that did not (left or time limit).
    pub unfinished: usize,
    /// Completion time from joining, seconds: median, 90th percentile, slowest.
    pub median_secs: Option<f64>,
    /// 90th percentile.
    pub p90_secs: Option<f64>,
    /// Slowest.
    pub max_secs: Option<f64>,
    /// Mean bytes uploaded per peer.
    pub uploaded_mean: f64,
}

/// The whole run's figures.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Summary {
    /// Scenario name.
    pub scenario: String,
    /// Peers.
    pub peers: usize,
    /// Pieces.
    pub pieces: u64,
    /// Virtual time at the end.
    pub end_secs: f64,
    /// When the last downloader completed.
    pub all_complete_secs: Option<f64>,
    /// Events processed.
    pub events: u64,
    /// Events processed, by kind.
    pub events_by_kind: Vec<(String, u64)>,
    /// Largest event-queue length.
    pub queue_peak: usize,
    /// Bytes uploaded by all peers.
    pub uploaded_total: f64,
    /// Bytes lost to chokes, cancels and departures or received twice.
    pub wasted_bytes: f64,
    /// The run stopped at the time limit.
    pub hit_time_limit: bool,
    /// Per class.
    pub classes: Vec<ClassSummary>,
}

/// The `q`-quantile of sorted `v` (nearest rank).
pub fn quantile(v: &[f64], q: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

/// Completion times (from joining) of class `class`, sorted.
pub fn completion_times(o: &Outcome, class: u16) -> Vec<f64> {
    let mut v: Vec<f64> = o
        .peers
        .iter()
        .filter(|p| p.class == class && !p.seed)
        .filter_map(|p| p.completed.map(|c| c - p.joined))
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Summarises a run.
pub fn summarize(sc: &Scenario, o: &Outcome) -> Summary {
    let classes = sc
        .classes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let members: Vec<_> = o.peers.iter().filter(|p| p.class == i as u16).collect();
            let times = completion_times(o, i as u16);
            let downloaders = members.iter().filter(|p| !p.seed).count();
            ClassSummary {
                name: c.name.clone(),
                peers: members.len(),
                completed: times.len(),
                unfinished: downloaders - times.len(),
                median_secs: quantile(&times, 0.5),
                p90_secs: quantile(&times, 0.9),
                max_secs: times.last().copied(),
                uploaded_mean: members.iter().map(|p| p.uploaded).sum::<f64>()
                    / members.len().max(1) as f64,
            }
        })
        .collect();
    let all_complete = if o.peers.iter().any(|p| !p.seed && p.completed.is_none()) {
        None
    } else {
        o.peers.iter().filter_map(|p| p.completed).reduce(f64::max)
    };
    Summary {
        scenario: sc.name.clone(),
        peers: o.peers.len(),
        pieces: sc.pieces(),
        end_secs: o.end_time,
        all_complete_secs: all_complete,
        events: o.events,
        events_by_kind: o
            .events_by_kind
            .iter()
            .map(|&(k, n)| (k.to_string(), n))
            .collect(),
        queue_peak: o.queue_peak,
        uploaded_total: o.peers.iter().map(|p| p.uploaded).sum(),
        wasted_bytes: o.wasted_bytes,
        hit_time_limit: o.hit_time_limit,
        classes,
    }
}

fn opt_secs(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), fmt_secs)
}

/// The summary as a text table.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "scenario {}: {} peers, {} pieces, ended at {}{}",
        s.scenario,
        s.peers,
        s.pieces,
        fmt_secs(s.end_secs),
        if s.hit_time_limit {
            " (time limit, some unfinished)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "{:<14} {:>7} {:>9} {:>10} {:>11} {:>11} {:>11} {:>12}",
        "class", "peers", "complete", "unfinished", "median", "p90", "max", "up/peer"
    );
    for c in &s.classes {
        let _ = writeln!(
            out,
            "{:<14} {:>7} {:>9} {:>10} {:>11} {:>11} {:>11} {:>12}",
            c.name,
            c.peers,
            c.completed,
            c.unfinished,
            opt_secs(c.median_secs),
            opt_secs(c.p90_secs),
            opt_secs(c.max_secs),
            fmt_si(c.uploaded_mean, "B"),
        );
    }
    let _ = writeln!(
        out,
        "all complete at {}; uploaded {}; wasted {} ({:.2} %); {} events, queue peak {}",
        opt_secs(s.all_complete_secs),
        fmt_si(s.uploaded_total, "B"),
        fmt_si(s.wasted_bytes, "B"),
        100.0 * s.wasted_bytes / s.uploaded_total.max(1.0),
        s.events,
        s.queue_peak
    );
    let kinds: Vec<String> = s
        .events_by_kind
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    let _ = writeln!(out, "events by kind: {}", kinds.join(", "));
    out
}

/// The time series as CSV, one row per sample, one upload column per class.
pub fn timeseries_csv(sc: &Scenario, o: &Outcome) -> String {
    let mut out = String::from(
        "t_secs,online,leechers,completed,min_availability,mean_availability,upload_bytes_per_sec",
    );
    for c in &sc.classes {
        let _ = write!(out, ",uploaded_bytes_{}", c.name);
    }
    out.push('\n');
    for s in &o.samples {
        let _ = write!(
            out,
            "{:.3},{},{},{},{},{:.3},{:.1}",
            s.t,
            s.online,
            s.leechers,
            s.completed,
            s.min_availability,
            s.mean_availability,
            s.upload_rate
        );
        for u in &s.uploaded_by_class {
            let _ = write!(out, ",{u:.0}");
        }
        out.push('\n');
    }
    out
}

/// Every peer as CSV: class, join, completion, bytes.
pub fn peers_csv(sc: &Scenario, o: &Outcome) -> String {
    let mut out = String::from("peer,class,seed,joined_secs,completed_secs,uploaded,downloaded\n");
    for (i, p) in o.peers.iter().enumerate() {
        let _ = writeln!(
            out,
            "{i},{},{},{:.3},{},{:.0},{:.0}",
            sc.classes[p.class as usize].name,
            p.seed,
            p.joined,
            p.completed.map_or(String::new(), |c| format!("{c:.3}")),
            p.uploaded,
            p.downloaded
        );
    }
    out
}
