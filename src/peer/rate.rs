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
