//! A fixed-bucket latency histogram a shard fills on its data path and other threads read as
//! a copy: no allocation, no atomics, no lock per sample.
//!
//! Owns the bucket bounds (chosen around the appliance's "p99 request → first byte < 50 ms"
//! SLO, so 50 ms is a bound) and the merge of several shards' copies. Exporting it (e.g. as
//! a Prometheus histogram) is the reader's business.

use std::time::Duration;

/// Upper bounds of the finite buckets, in microseconds; a last bucket takes everything above.
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Buckets: one per bound plus the overflow bucket.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// Counts of samples per bucket (not cumulative), their sum and their number.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: [u64; LATENCY_BUCKETS],
    sum_ns: u64,
    count: u64,
}

impl LatencyHistogram {
    /// Counts one sample.
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // Sixteen compares on one cache line: cheaper than anything clever.
        let index = LATENCY_BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(LATENCY_BOUNDS_US.len());
        self.counts[index] += 1;
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.count += 1;
    }

    /// Adds another histogram's samples (e.g. another shard's) to this one.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            *mine += theirs;
        }
        self.sum_ns = self.sum_ns.saturating_add(other.sum_ns);
        self.count += other.count;
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of all samples, in seconds.
    pub fn sum_secs(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }

    /// `(upper bound in seconds, samples in that bucket)`, ascending; the last bound is
    /// infinity. Counts are per bucket, not cumulative.
    pub fn buckets(&self) -> [(f64, u64); LATENCY_BUCKETS] {
        let mut out = [(f64::INFINITY, 0); LATENCY_BUCKETS];
        for (i, slot) in out.iter_mut().enumerate() {
            let bound = LATENCY_BOUNDS_US
                .get(i)
                .map_or(f64::INFINITY, |&us| us as f64 / 1e6);
            *slot = (bound, self.counts[i]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_first_bucket_whose_bound_holds_them() {
        // Bounds are inclusive; past the last bound is the overflow bucket; sum and count add up.
        let mut h = LatencyHistogram::default();
        h.record(Duration::from_micros(100));
        h.record(Duration::from_micros(101));
        h.record(Duration::from_millis(50));
        h.record(Duration::from_secs(60));
        let b = h.buckets();
        assert_eq!(b[0], (0.0001, 1));
        assert_eq!(b[1], (0.00025, 1));
        assert_eq!(b[8], (0.05, 1));
        assert_eq!(b[LATENCY_BUCKETS - 1], (f64::INFINITY, 1));
        assert_eq!(h.count(), 4);
        assert_eq!(b.iter().map(|&(_, n)| n).sum::<u64>(), 4);
        assert!((h.sum_secs() - 60.050201).abs() < 1e-9);
    }

    #[test]
    fn merged_shards_equal_one_histogram_of_all_samples() {
        // Merging per-shard copies loses nothing: same result as recording everything once.
        let samples: Vec<Duration> = (0..200)
            .map(|i| Duration::from_micros(i * i * 37))
            .collect();
        let (mut a, mut b, mut all) = Default::default();
        for (i, &s) in samples.iter().enumerate() {
            let h: &mut LatencyHistogram = if i % 3 == 0 { &mut a } else { &mut b };
            h.record(s);
            LatencyHistogram::record(&mut all, s);
        }
        let mut merged: LatencyHistogram = a;
        merged.merge(&b);
        assert_eq!(merged, all);
    }
}
