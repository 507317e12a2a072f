//! Admission: which info-hashes the tracker serves (allow/deny lists parsed from text) and a
//! token bucket per source IP, held in a bounded table.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use crate::metainfo::InfoHash;
use crate::time::Instant;

/// Most source IPs whose buckets are kept; past it the table is emptied of idle (full)
/// buckets, and if still full a new IP starts over an arbitrary old one. ~64 B per entry.
pub const RATE_IPS_MAX: usize = 65_536;

/// Allow- and deny-lists of info-hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessList {
    allow: Option<HashSet<InfoHash>>,
    deny: HashSet<InfoHash>,
}

impl AccessList {
    /// Parses `allow` (if given) and `deny` texts: 40 hex digits a line, `#` comments and
    /// blank lines skipped. Returns the list and the numbers of the lines that were neither.
    pub fn parse(allow: Option<&str>, deny: Option<&str>) -> (AccessList, Vec<usize>) {
        let mut bad = Vec::new();
        let mut read = |text: &str| {
            let mut set = HashSet::new();
            for (n, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                match InfoHash::from_hex(line) {
                    Some(h) => {
                        set.insert(h);
                    }
                    None => bad.push(n + 1),
                }
            }
            set
        };
        let allow = allow.map(&mut read);
        let deny = deny.map(&mut read).unwrap_or_default();
        (AccessList { allow, deny }, bad)
    }

    /// True when `h` may be announced.
    pub fn allows(&self, h: &InfoHash) -> bool {
        !self.deny.contains(h) && self.allow.as_ref().is_none_or(|a| a.contains(h))
    }
}

#[derive(Copy, Clone, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-IP token buckets: `per_second` requests a second sustained, bursts of `burst`.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// A limiter; `per_second == 0` disables it.
    pub fn new(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `ip`; false when it has none left.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        if self.buckets.len() >= RATE_IPS_MAX && !self.buckets.contains_key(&ip) {
            self.evict(now);
        }
        let (rate, burst) = (self.per_second, self.burst);
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refill = (now - b.at).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// IPs tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no IP is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn evict(&mut self, now: Instant) {
        let full_after = Duration::from_secs_f64(self.burst / self.per_second);
        self.buckets.retain(|_, b| now - b.at < full_after);
        if self.buckets.len() >= RATE_IPS_MAX {
            if let Some(k) = self.buckets.keys().next().copied() {
                self.buckets.remove(&k);
            }
        }
    }
}
