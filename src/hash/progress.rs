//! Progress of a hashing job: an atomic byte counter that workers bump once per piece, and,
//! for the CLI, an `indicatif` bar on stderr when stderr is a terminal (silent otherwise, so
//! logs and pipes stay clean). `create` and `verify` both report through it.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Bar layout: label, bar, bytes done of total, rate, time left.
const BAR_TEMPLATE: &str =
    "{msg:>9} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}";

/// Bytes hashed so far out of a total; safe to share between worker threads and a watcher.
#[derive(Debug, Default)]
pub struct Progress {
    done_bytes: AtomicU64,
    total_bytes: AtomicU64,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A silent counter: read it with [`Progress::bytes_done`] from another thread.
    pub fn new() -> Progress {
        Progress::default()
    }

    /// A counter that also draws a bar labelled `label` on stderr if stderr is a terminal.
    pub fn stderr_bar(label: &str) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::new();
        }
        let style = ProgressStyle::with_template(BAR_TEMPLATE)
            .expect("the bar template is valid")
            .progress_chars("=> ");
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_message(label.to_owned());
        Progress {
            done_bytes: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            bar: Some(bar),
        }
    }

    /// Sets the number of bytes the job will hash (known once files are listed).
    pub fn set_total(&self, bytes: u64) {
        self.total_bytes.store(bytes, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_length(bytes);
        }
    }

    /// Records `bytes` more hashed. Called once per piece by each worker.
    pub fn add(&self, bytes: u64) {
        self.done_bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            // `inc` is an atomic add; indicatif redraws at most ~20 times a second.
            bar.inc(bytes);
        }
    }

    /// Bytes hashed so far.
    pub fn bytes_done(&self) -> u64 {
        self.done_bytes.load(Ordering::Relaxed)
    }

    /// The total set by [`Progress::set_total`] (0 before).
    pub fn bytes_total(&self) -> u64 {
        self.total_bytes.load(Ordering::Relaxed)
    }

    /// Removes the bar from the terminal; the counter keeps its value.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A bar left behind by an early return (an error) would garble the error message.
        self.finish();
    }
}
