//! Monotonic time as the sans-IO core sees it: a value passed in by the caller.
//!
//! The core never reads a clock. Shells turn `std::time::Instant` into [`Instant`] with a
//! [`Clock`]; tests and the simulator build instants from plain numbers, so a 30-minute
//! choking scenario runs in microseconds and repeats exactly.

use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in monotonic time, in nanoseconds since an arbitrary origin chosen by the shell.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin; tests usually start here.
    pub const ZERO: Instant = Instant(0);

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// An instant `secs` seconds after the origin.
    pub const fn from_secs(secs: u64) -> Instant {
        Instant(secs * 1_000_000_000)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the far future instead of overflowing.
    pub fn saturating_add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// The shells' bridge from the OS monotonic clock to [`Instant`].
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    /// A clock whose origin is the moment of this call.
    pub fn new() -> Clock {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    /// The current instant. Only shells (runtime, CLI, load generator) call this.
    pub fn now(&self) -> Instant {
        let nanos = self.origin.elapsed().as_nanos();
        Instant(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_overflowing() {
        // Durations past the end of time clamp, and "since a later instant" is zero.
        let far = Instant::from_nanos(u64::MAX - 1) + Duration::from_secs(10);
        assert_eq!(far.as_nanos(), u64::MAX);
        assert_eq!(Instant::ZERO - Instant::from_secs(3), Duration::ZERO);
        assert_eq!(
            Instant::from_secs(5) - Instant::from_secs(3),
            Duration::from_secs(2)
        );
    }
}
