//! SHELL CODE: the tracker's Prometheus counters. Shards count in plain integers and flush
//! into the shared registry every few seconds, so the hot path touches no shared cache line.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::tracker::server::SwarmStore;

/// Labels of a request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `udp` or `http`.
    pub proto: &'static str,
    /// `connect`, `announce`, `scrape`.
    pub action: &'static str,
}

/// Labels of a per-shard gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShardLabels {
    /// Shard index.
    pub shard: u32,
}

/// The registry and its metrics.
pub struct Metrics {
    /// The registry rendered at `/metrics`.
    pub registry: Registry,
    requests: Family<RequestLabels, Counter>,
    udp_responses: Counter,
    dropped: Counter,
    refused: Counter,
    swarms: Family<ShardLabels, Gauge>,
    peers: Family<ShardLabels, Gauge>,
}

impl Metrics {
    /// Registers every metric under `ringseed_tracker_`.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ringseed_tracker");
        let m = Metrics {
            requests: Family::default(),
            udp_responses: Counter::default(),
            dropped: Counter::default(),
            refused: Counter::default(),
            swarms: Family::default(),
            peers: Family::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Requests received", m.requests.clone());
        registry.register(
            "udp_responses",
            "UDP datagrams sent",
            m.udp_responses.clone(),
        );
        registry.register(
            "dropped",
            "Requests dropped (malformed, bad connection id, rate limited, shard mailbox full)",
            m.dropped.clone(),
        );
        registry.register(
            "refused",
            "Announces refused (not allowed, tracker or swarm full)",
            m.refused.clone(),
        );
        registry.register("swarms", "Swarms held per shard", m.swarms.clone());
        registry.register("peers", "Peers held per shard", m.peers.clone());
        Metrics { registry, ..m }
    }

    /// Counts one HTTP request.
    pub fn http_request(&self, action: &'static str) {
        self.requests
            .get_or_create(&RequestLabels {
                proto: "http",
                action,
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        crate::metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// A shard's counts since its last flush.
#[derive(Default)]
pub struct LocalCounts {
    /// The shared metrics.
    pub shared: Option<Arc<Metrics>>,
    /// UDP connects answered.
    pub udp_connect: u64,
    /// UDP announces received.
    pub udp_announce: u64,
    /// UDP scrapes received.
    pub udp_scrape: u64,
    /// UDP datagrams sent.
    pub udp_sent: u64,
    /// HTTP announces handled by this shard.
    pub http_announce: u64,
    /// HTTP scrapes handled by this shard (one per shard per scrape).
    pub http_scrape: u64,
    /// Dropped requests.
    pub dropped: u64,
    /// Refused announces.
    pub refused: u64,
}

impl LocalCounts {
    /// Adds the counts into the registry and zeroes them; sets the shard's gauges.
    pub fn flush(&mut self, shard: usize, store: &SwarmStore) {
        let Some(m) = self.shared.clone() else { return };
        for (action, n) in [
            ("connect", self.udp_connect),
            ("announce", self.udp_announce),
            ("scrape", self.udp_scrape),
        ] {
            let labels = RequestLabels {
                proto: "udp",
                action,
            };
            m.requests.get_or_create(&labels).inc_by(n);
        }
        m.udp_responses.inc_by(self.udp_sent);
        m.dropped.inc_by(self.dropped);
        m.refused.inc_by(self.refused);
        let labels = ShardLabels {
            shard: shard as u32,
        };
        m.swarms
            .get_or_create(&labels)
            .set(store.swarm_count() as i64);
        m.peers
            .get_or_create(&labels)
            .set(store.peer_count() as i64);
        *self = LocalCounts {
            shared: self.shared.take(),
            ..LocalCounts::default()
        };
    }
}
