//! Transfer-rate estimation in virtual time.

use std::time::Duration;

use crate::time::Instant;

/// Time constant of [`RateMeter`]. An exponential average's samples have a mean age of one
/// time constant, like a 20-second sliding window's (BEP 3's choker uses "a rolling
/// 20-second average"), while costing two fields instead of a bucket array per peer.
pub const RATE_TIME_CONSTANT: Duration = Duration::from_secs(10);

/// Bytes per second, as an exponentially weighted moving average in continuous time: each
/// byte counts `1/τ` at once and decays by `e^(-t/τ)`. A steady rate `R` reads `R`; a peer
/// that stops reads `R/e` one time constant later.
#[derive(Copy, Clone, Debug)]
pub struct RateMeter {
    rate: f64,
    at: Instant,
    tau_s: f64,
}

/// Time constant of the fast meter that sizes request pipelines: the choker's 10 s average
/// reads only a tenth of a new peer's rate after one second, which would keep a fast peer's
/// pipeline shallow for most of a short download.
pub const FAST_RATE_TIME_CONSTANT: Duration = Duration::from_secs(1);

impl RateMeter {
    /// A meter reading zero, with [`RATE_TIME_CONSTANT`].
    pub fn new(now: Instant) -> RateMeter {
        RateMeter::with_time_constant(now, RATE_TIME_CONSTANT)
    }

    /// A meter reading zero with time constant `tau` (at least 1 ms).
    pub fn with_time_constant(now: Instant, tau: Duration) -> RateMeter {
        RateMeter {
            rate: 0.0,
            at: now,
            tau_s: tau.as_secs_f64().max(0.001),
        }
    }

    fn decayed(&self, now: Instant) -> f64 {
        if self.rate == 0.0 {
            // Nothing recorded yet: no `exp` needed (a choker reads many idle meters).
            return 0.0;
        }
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.rate * (-dt / self.tau_s).exp()
    }

    /// Counts `bytes` transferred at `now`.
    pub fn record(&mut self, bytes: u64, now: Instant) {
        let now = now.max(self.at);
        self.rate = self.decayed(now) + bytes as f64 / self.tau_s;
        self.at = now;
    }

    /// Counts `bytes` moved evenly over `[from, now]` (a fluid model's flow at a constant
    /// rate): exactly what recording every byte at its instant would give, so a model can
    /// bring its meters up to date as seldom or as often as it likes and read the same rates.
    /// `from` before the last record is taken as the last record.
    pub fn record_spread(&mut self, bytes: f64, from: Instant, now: Instant) {
        let now = now.max(self.at);
        let from = from.clamp(self.at, now);
        let span = now.saturating_duration_since(from).as_secs_f64() / self.tau_s;
        // Each byte at `s` counts `e^(-(now-s)/τ)/τ`; integrated over a uniform spread that
        // is `bytes/τ · (1 - e^(-span))/span`, which tends to `bytes/τ` as the span shrinks.
        // When the last record ended where this spread starts (a flow fed piece by piece),
        // the same `e^(-span)` also decays the old rate: one `exp` per record.
        let fade = (-span).exp();
        let gain = if span < 1e-6 {
            1.0 - span / 2.0
        } else {
            (1.0 - fade) / span
        };
        let old = if from == self.at {
            self.rate * fade
        } else {
            self.decayed(now)
        };
        self.rate = old + bytes / self.tau_s * gain;
        self.at = now;
    }

    /// The estimate at `now`, in bytes per second.
    pub fn rate(&self, now: Instant) -> u64 {
        self.decayed(now) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(meter: &mut RateMeter, from_ms: u64, to_ms: u64, bytes_per_ms: u64) {
        for ms in from_ms..to_ms {
            meter.record(bytes_per_ms, Instant::from_nanos(ms * 1_000_000));
        }
    }

    #[test]
    fn steady_rate_is_read_back_and_decays_after_a_stop() {
        // 1 MB/s for 60 s reads 1 MB/s (within 1%); 60 s of silence bring it under 1%.
        let mut m = RateMeter::new(Instant::ZERO);
        run(&mut m, 0, 60_000, 1_000);
        let r = m.rate(Instant::from_secs(60));
        assert!((990_000..=1_010_000).contains(&r), "{r}");
        assert!(m.rate(Instant::from_secs(120)) < 10_000);
    }

    #[test]
    fn a_spread_record_reads_as_per_instant_records_do_however_it_is_split() {
        // 1 MB/s for 20 s, recorded per millisecond, in one spread, or in uneven spreads,
        // reads the same (within 0.1 %) at 20 s and after a 5 s pause.
        let mut fine = RateMeter::new(Instant::ZERO);
        run(&mut fine, 0, 20_000, 1_000);
        let mut whole = RateMeter::new(Instant::ZERO);
        whole.record_spread(20e6, Instant::ZERO, Instant::from_secs(20));
        let mut split = RateMeter::new(Instant::ZERO);
        let cuts = [0, 1, 7, 7, 13, 20];
        for w in cuts.windows(2) {
            let bytes = (w[1] - w[0]) as f64 * 1e6;
            split.record_spread(bytes, Instant::from_secs(w[0]), Instant::from_secs(w[1]));
        }
        for t in [20, 25] {
            let now = Instant::from_secs(t);
            let want = fine.rate(now) as f64;
            for m in [&whole, &split] {
                let got = m.rate(now) as f64;
                assert!((got - want).abs() <= want * 1e-3, "{t}s: {got} vs {want}");
            }
        }
        // Half a time constant at 1 MB/s from zero reads 1 - e^(-0.5) of it.
        let mut half = RateMeter::new(Instant::ZERO);
        half.record_spread(5e6, Instant::ZERO, Instant::from_secs(5));
        let r = half.rate(Instant::from_secs(5)) as f64 / 1e6;
        assert!((r - (1.0 - (-0.5f64).exp())).abs() < 1e-6, "{r}");
    }

    #[test]
    fn the_fast_meter_follows_a_new_peer_within_a_few_seconds() {
        // With a 1 s time constant, 5 s at 1 MB/s read over 98 % of it (the 10 s meter: 39 %).
        let mut m = RateMeter::with_time_constant(Instant::ZERO, FAST_RATE_TIME_CONSTANT);
        run(&mut m, 0, 5_000, 1_000);
        let r = m.rate(Instant::from_secs(5));
        assert!((980_000..=1_010_000).contains(&r), "{r}");
    }

    #[test]
    fn faster_peer_reads_faster_after_ten_seconds() {
        // Two peers starting together are ranked correctly by the time of the first rechoke,
        // and a fresh peer reaches ~63% of its rate after one time constant.
        let (mut slow, mut fast) = (RateMeter::new(Instant::ZERO), RateMeter::new(Instant::ZERO));
        run(&mut slow, 0, 10_000, 100);
        run(&mut fast, 0, 10_000, 300);
        let now = Instant::from_secs(10);
        assert!(fast.rate(now) > 2 * slow.rate(now));
        let r = fast.rate(now) as f64 / 300_000.0;
        assert!((0.6..0.67).contains(&r), "{r}");
    }
}
