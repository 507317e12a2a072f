//! What `get` shows while it runs: a progress bar (pieces, rate, peers, ETA) when stderr is a
//! terminal, otherwise one JSON status line per second on stdout (`--json` forces it).

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::stats::GetStats;

/// The status output of one download.
pub struct Display {
    bar: Option<ProgressBar>,
    pieces: u32,
    total_bytes: u64,
    started: Instant,
}

impl Display {
    /// A bar on a terminal (unless `json`), JSON lines otherwise.
    pub fn new(json: bool, pieces: u32, total_bytes: u64) -> Display {
        let bar = (!json && std::io::stderr().is_terminal()).then(|| {
            let style = ProgressStyle::with_template("{bar:40} {pos}/{len} pieces {msg} eta {eta}")
                .expect("valid template")
                .progress_chars("=> ");
            ProgressBar::with_draw_target(Some(u64::from(pieces)), ProgressDrawTarget::stderr())
                .with_style(style)
        });
        Display {
            bar,
            pieces,
            total_bytes,
            started: Instant::now(),
        }
    }

    /// Shows the current state.
    pub fn show(&mut self, s: &GetStats) {
        let have = s.pieces_have.load(Ordering::Relaxed);
        let down = s.download_rate.load(Ordering::Relaxed);
        let up = s.upload_rate.load(Ordering::Relaxed);
        let peers = s.peers.load(Ordering::Relaxed);
        match &self.bar {
            Some(bar) => {
                bar.set_position(u64::from(have));
                bar.set_message(format!(
                    "↓ {:.1} MB/s ↑ {:.1} MB/s, {peers} peers",
                    down as f64 / 1e6,
                    up as f64 / 1e6
                ));
            }
            None => println!("{}", self.json(s)),
        }
    }

    fn json(&self, s: &GetStats) -> String {
        let left = s.left.load(Ordering::Relaxed);
        let down = s.download_rate.load(Ordering::Relaxed);
        let eta = (down > 0 && left > 0).then(|| left / down);
        serde_json::json!({
            "pieces": s.pieces_have.load(Ordering::Relaxed),
            "pieces_total": self.pieces,
            "bytes_left": left,
            "bytes_total": self.total_bytes,
            "downloaded": s.downloaded.load(Ordering::Relaxed),
            "uploaded": s.uploaded(),
            "download_rate": down,
            "upload_rate": s.upload_rate.load(Ordering::Relaxed),
            "peers": s.peers.load(Ordering::Relaxed),
            "candidates": s.candidates.load(Ordering::Relaxed),
            "hash_failures": s.hash_failures.load(Ordering::Relaxed),
            "bans": s.bans.load(Ordering::Relaxed),
            "complete": s.complete.load(Ordering::Relaxed),
            "eta_s": eta,
            "elapsed_s": self.started.elapsed().as_secs_f64(),
        })
        .to_string()
    }

    /// Final line.
    pub fn finish(&mut self, s: &GetStats) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        let mut line: serde_json::Value = serde_json::from_str(&self.json(s)).expect("json");
        line["done"] = serde_json::Value::Bool(true);
        println!("{line}");
    }
}
