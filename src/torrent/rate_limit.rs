//! Rate limits as token buckets, sans-IO: the caller passes `now`. [`TokenBucket`] caps bytes
//! per second with a bounded burst; [`UploadThrottle`] is one connection's view of a bucket
//! its shard shares among connections (`Rc<RefCell<_>>`: one shard, one thread, no lock).
//!
//! Uploads are admitted while the bucket is positive and then charged in full, so a block
//! may overdraw it by up to one block; the debt delays the next one. That keeps whole 16 KiB
//! blocks on the wire without knowing a block's length before the session hands it out.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use crate::time::Instant;

/// Bytes per second with a burst of `burst_bytes`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    bytes_per_s: u64,
    burst_bytes: f64,
    tokens: f64,
    refilled_at: Option<Instant>,
}

/// Shortest wait a throttled connection sleeps: waking more often than this burns CPU for
/// slivers of a block.
pub const THROTTLE_WAIT_MIN: Duration = Duration::from_millis(5);

impl TokenBucket {
    /// A bucket of `bytes_per_s` (at least 1) that starts empty and holds at most
    /// `burst_bytes`.
    pub fn new(bytes_per_s: u64, burst_bytes: u64) -> TokenBucket {
        TokenBucket {
            bytes_per_s: bytes_per_s.max(1),
            burst_bytes: burst_bytes as f64,
            tokens: 0.0,
            refilled_at: None,
        }
    }

    /// The configured rate.
    pub fn bytes_per_s(&self) -> u64 {
        self.bytes_per_s
    }

    /// Adds what accrued since the last call (none before the first).
    pub fn refill(&mut self, now: Instant) {
        if let Some(at) = self.refilled_at {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            self.tokens = (self.tokens + dt * self.bytes_per_s as f64).min(self.burst_bytes);
        }
        if self.refilled_at.is_none_or(|at| now > at) {
            self.refilled_at = Some(now);
        }
    }

    /// Bytes that may go now (negative: debt still to pay back).
    pub fn tokens(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.tokens
    }

    /// Charges `bytes`; the bucket may go negative.
    pub fn spend(&mut self, bytes: u64) {
        self.tokens -= bytes as f64;
    }

    /// When the bucket will next be positive (`now` if it is).
    pub fn ready_at(&mut self, now: Instant) -> Instant {
        let missing = -self.tokens(now);
        if missing < 0.0 {
            return now;
        }
        let wait = Duration::from_secs_f64((missing + 1.0) / self.bytes_per_s as f64);
        now + wait.max(THROTTLE_WAIT_MIN)
    }
}

/// A bucket shared by the connections of one shard.
pub type SharedBucket = Rc<RefCell<TokenBucket>>;

/// One connection's side of a shared upload bucket (or no limit).
#[derive(Debug, Clone, Default)]
pub struct UploadThrottle {
    bucket: Option<SharedBucket>,
    now: Instant,
    wake_at: Option<Instant>,
}

impl UploadThrottle {
    /// Draws on `bucket`, or on nothing (unlimited) when `None`.
    pub fn new(bucket: Option<SharedBucket>, now: Instant) -> UploadThrottle {
        UploadThrottle {
            bucket,
            now,
            wake_at: None,
        }
    }

    /// The latest time the connection saw (its next admission is judged at it).
    pub fn note_now(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if self.wake_at.is_some_and(|w| w <= now) {
            self.wake_at = None;
        }
    }

    /// May a block go now? When not, [`wake_at`](Self::wake_at) says when to ask again.
    pub fn admit(&mut self) -> bool {
        let Some(bucket) = &self.bucket else {
            return true;
        };
        let mut b = bucket.borrow_mut();
        if b.tokens(self.now) > 0.0 {
            return true;
        }
        self.wake_at = Some(b.ready_at(self.now));
        false
    }

    /// Charges a block that was admitted.
    pub fn spend(&mut self, bytes: u64) {
        if let Some(bucket) = &self.bucket {
            bucket.borrow_mut().spend(bytes);
        }
    }

    /// When a refused connection should poll again.
    pub fn wake_at(&self) -> Option<Instant> {
        self.wake_at
    }
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn bucket_admits_its_rate_over_time_and_no_more() {
        // Spending whatever is available every 10 ms for 10 s moves rate × 10 s ± one burst.
        let mut b = TokenBucket::new(1_000_000, 100_000);
        let mut sent = 0u64;
        for ms in (0..=10_000).step_by(10) {
            while b.tokens(at_ms(ms)) > 0.0 {
                b.spend(16_384);
                sent += 16_384;
            }
        }
        let expected = 10_000_000u64;
        assert!(
            sent.abs_diff(expected) <= 100_000 + 16_384,
            "sent {sent}, expected about {expected}"
        );
    }

    #[test]
    fn idle_time_accrues_only_up_to_the_burst() {
        // After a minute idle, only `burst` bytes may go at once.
        let mut b = TokenBucket::new(1_000_000, 50_000);
        b.refill(at_ms(0));
        assert_eq!(b.tokens(at_ms(60_000)), 50_000.0);
    }

    #[test]
    fn debt_sets_the_wake_up_time() {
        // 16 KiB overdrawn at 16 KiB/s: positive again after about a second.
        let mut b = TokenBucket::new(16_384, 16_384);
        b.refill(at_ms(0));
        b.spend(16_384);
        let ready = b.ready_at(at_ms(0));
        let wait = ready - at_ms(0);
        assert!(
            wait >= Duration::from_millis(999) && wait <= Duration::from_millis(1_010),
            "{wait:?}"
        );
    }

    #[test]
    fn throttled_connections_share_one_bucket() {
        // Two connections on one shard bucket: once one drains it, the other waits too.
        let bucket: SharedBucket = Rc::new(RefCell::new(TokenBucket::new(32_768, 32_768)));
        bucket.borrow_mut().refill(at_ms(0));
        let mut a = UploadThrottle::new(Some(bucket.clone()), at_ms(0));
        let mut b = UploadThrottle::new(Some(bucket.clone()), at_ms(0));
        a.note_now(at_ms(1_000));
        b.note_now(at_ms(1_000));
        assert!(a.admit());
        a.spend(32_768);
        assert!(!a.admit());
        assert!(!b.admit());
        let wake = b.wake_at().expect("a wake-up time");
        assert!(wake > at_ms(1_000));
        b.note_now(wake);
        assert_eq!(b.wake_at(), None);
        assert!(b.admit());
    }

    #[test]
    fn no_bucket_means_no_limit() {
        // Without a configured rate every block is admitted and nothing waits.
        let mut t = UploadThrottle::new(None, Instant::ZERO);
        for _ in 0..1_000 {
            assert!(t.admit());
            t.spend(16_384);
        }
        assert_eq!(t.wake_at(), None);
    }
}
