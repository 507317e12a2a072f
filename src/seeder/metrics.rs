//! SHELL CODE: the seeder appliance's metrics (docs/CAPACITY.md §4 maps them to its SLOs).
//!
//! Owns the hand-off from the shards to the `/metrics` thread. Each shard counts in its own
//! [`ShardStats`] (plain integers and a fixed-bucket histogram, no sharing) and, from its
//! tick, copies them into its slot here once per [`PUBLISH_INTERVAL`] with a `try_lock` that
//! never waits: while a scrape holds the slot, the shard skips that publish. A scrape sums the
//! slots and reads the torrents' and the announcer's relaxed atomics. So the numbers are at
//! most about a second old, and nothing on the data path blocks or touches a shared cache
//! line per block.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::registry::Registry;
use crate::announcer::AnnounceCounts;
use crate::runtime::{ShardStats, CLOSE_KINDS};

/// How often a shard publishes its counters (the metrics' staleness bound, plus one tick).
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);

/// Metric names' prefix: `ringseed_seed_uploaded_bytes_total` and so on.
pub const METRICS_PREFIX: &str = "ringseed_seed";

/// One shard's last published counters.
#[derive(Clone, Debug, Default)]
struct ShardSnapshot {
    stats: ShardStats,
    /// Connections open, opening or closing on the shard.
    connections: usize,
}

/// What the shards publish and the `/metrics` thread reads.
#[derive(Debug)]
pub struct SeedMetrics {
    shards: Vec<Mutex<ShardSnapshot>>,
    torrents: Arc<Registry>,
    announces: Arc<AnnounceCounts>,
}

impl SeedMetrics {
    /// Slots for `shards` shards, reading per-torrent and announce counters from the others.
    pub fn new(shards: usize, torrents: Arc<Registry>, announces: Arc<AnnounceCounts>) -> Self {
        SeedMetrics {
            shards: (0..shards).map(|_| Mutex::default()).collect(),
            torrents,
            announces,
        }
    }

    /// Copies shard `shard`'s counters into its slot unless a scrape is reading it right now
    /// (then this publish is skipped: the shard never waits). Returns whether it published.
    pub fn publish(&self, shard: usize, stats: &ShardStats, connections: usize) -> bool {
        let Some(slot) = self.shards.get(shard) else {
            return false;
        };
        match slot.try_lock() {
            Ok(mut snap) => {
                snap.stats.clone_from(stats);
                snap.connections = connections;
                true
            }
            Err(_) => false,
        }
    }

    /// The sum of every shard's last published counters, and their connections.
    fn totals(&self) -> (ShardStats, usize) {
        let mut sum = ShardStats::default();
        let mut connections = 0;
        for slot in &self.shards {
            let snap = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
            add_stats(&mut sum, &snap.stats);
            connections += snap.connections;
        }
        (sum, connections)
    }

    /// A Prometheus registry that renders these metrics on every scrape.
    pub fn prometheus_registry(self: &Arc<Self>) -> prometheus_client::registry::Registry {
        let mut registry = prometheus_client::registry::Registry::with_prefix(METRICS_PREFIX);
        registry.register_collector(Box::new(self.clone()));
        registry
    }
}

fn add_stats(sum: &mut ShardStats, s: &ShardStats) {
    sum.accepted += s.accepted;
    sum.connected += s.connected;
    sum.closed += s.closed;
    sum.refused_full += s.refused_full;
    sum.bytes_received += s.bytes_received;
    sum.bytes_sent += s.bytes_sent;
    sum.payload_bytes_sent += s.payload_bytes_sent;
    sum.blocks_read += s.blocks_read;
    sum.block_buf_waits += s.block_buf_waits;
    for (a, b) in sum.closed_by_kind.iter_mut().zip(s.closed_by_kind) {
        *a += b;
    }
    sum.block_latency.merge(&s.block_latency);
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(enc.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(enc.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for SeedMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let (s, connections) = self.totals();
        let e = &mut enc;
        counter(
            e,
            "uploaded_bytes",
            "Block payload bytes sent to peers",
            s.payload_bytes_sent,
        )?;
        counter(
            e,
            "sent_bytes",
            "Bytes sent to peers (payload, headers and control)",
            s.bytes_sent,
        )?;
        counter(
            e,
            "received_bytes",
            "Bytes received from peers",
            s.bytes_received,
        )?;
        counter(
            e,
            "listener_accepts",
            "Inbound connections accepted",
            s.accepted,
        )?;
        counter(
            e,
            "listener_refused",
            "Inbound connections refused because the shard was at its connection limit",
            s.refused_full,
        )?;
        counter(
            e,
            "outbound_connects",
            "Outbound connections established",
            s.connected,
        )?;
        let mut closed = e.encode_descriptor(
            "connections_closed",
            "Connections closed, by reason",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in CLOSE_KINDS.iter().zip(s.closed_by_kind) {
            ConstCounter::new(n).encode(closed.encode_family(&[("reason", *kind)])?)?;
        }
        gauge(
            e,
            "connections",
            "Connections open, opening or closing",
            connections as u64,
        )?;
        let peers: usize = self.torrents.torrents.iter().map(|t| t.peers()).sum();
        gauge(
            e,
            "peers_connected",
            "Peers connected to a torrent",
            peers as u64,
        )?;
        counter(e, "blocks_read", "Blocks read from disk", s.blocks_read)?;
        counter(
            e,
            "block_buffer_waits",
            "Times a block waited for a free read buffer",
            s.block_buf_waits,
        )?;
        let hist = &s.block_latency;
        e.encode_descriptor(
            "block_request_to_send_seconds",
            "Time from a block request parsed to the block's data handed to a socket send",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            hist.sum_secs(),
            hist.count(),
            &hist.buckets(),
            None,
        )?;
        let a = &self.announces;
        counter(
            e,
            "tracker_announces",
            "Tracker announces sent (one per tracker tried)",
            a.attempts.load(Ordering::Relaxed),
        )?;
        counter(
            e,
            "tracker_announce_errors",
            "Tracker announces that failed (no or bad answer, or a failure reason)",
            a.errors.load(Ordering::Relaxed),
        )?;
        self.encode_torrents(e)
    }
}

impl SeedMetrics {
    /// Per-torrent series, labelled by info-hash: bounded by the torrents loaded, and read
    /// from atomics the seeder keeps anyway.
    fn encode_torrents(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        {
            let mut up = e.encode_descriptor(
                "torrent_sent_bytes",
                "Bytes sent to a torrent's peers (payload and protocol)",
                None,
                MetricType::Counter,
            )?;
            for t in &self.torrents.torrents {
                let hash = t.meta.info_hash.to_string();
                let labels = [("info_hash", hash.as_str())];
                let v = t.uploaded.load(Ordering::Relaxed);
                ConstCounter::new(v).encode(up.encode_family(&labels)?)?;
            }
        }
        let mut peers = e.encode_descriptor(
            "torrent_peers",
            "Peers connected to a torrent",
            None,
            MetricType::Gauge,
        )?;
        for t in &self.torrents.torrents {
            let hash = t.meta.info_hash.to_string();
            let labels = [("info_hash", hash.as_str())];
            let n = i64::try_from(t.peers()).unwrap_or(i64::MAX);
            ConstGauge::new(n).encode(peers.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_skips_instead_of_waiting_while_a_scrape_reads() {
        // The shard side never blocks: with the slot locked, publish returns false at once;
        // afterwards it publishes and the totals sum every shard.
        let m = SeedMetrics::new(2, Arc::default(), Arc::default());
        let mut stats = ShardStats {
            payload_bytes_sent: 100,
            accepted: 1,
            ..ShardStats::default()
        };
        stats.block_latency.record(Duration::from_millis(3));
        {
            let _scrape = m.shards[0].lock().unwrap();
            assert!(!m.publish(0, &stats, 5));
        }
        assert!(m.publish(0, &stats, 5));
        assert!(m.publish(1, &stats, 2));
        assert!(!m.publish(2, &stats, 1), "no such shard");
        let (sum, connections) = m.totals();
        assert_eq!(sum.payload_bytes_sent, 200);
        assert_eq!(sum.accepted, 2);
        assert_eq!(sum.block_latency.count(), 2);
        assert_eq!(connections, 7);
    }

    #[test]
    fn scrape_text_names_every_slo_metric() {
        // The rendered page carries the names docs/CAPACITY.md §4 promises, with values.
        let m = Arc::new(SeedMetrics::new(1, Arc::default(), Arc::default()));
        let mut stats = ShardStats {
            payload_bytes_sent: 16384,
            accepted: 3,
            ..ShardStats::default()
        };
        stats.closed_by_kind[0] = 2;
        stats.block_latency.record(Duration::from_millis(20));
        m.publish(0, &stats, 1);
        m.announces.attempts.store(4, Ordering::Relaxed);
        m.announces.errors.store(1, Ordering::Relaxed);
        let text = crate::metrics::render(&m.prometheus_registry());
        for line in [
            "ringseed_seed_uploaded_bytes_total 16384",
            "ringseed_seed_listener_accepts_total 3",
            "ringseed_seed_connections_closed_total{reason=\"peer_closed\"} 2",
            "ringseed_seed_peers_connected 0",
            "ringseed_seed_block_request_to_send_seconds_count 1",
            "ringseed_seed_block_request_to_send_seconds_bucket{le=\"0.01\"} 0",
            "ringseed_seed_block_request_to_send_seconds_bucket{le=\"0.025\"} 1",
            "ringseed_seed_block_request_to_send_seconds_bucket{le=\"+Inf\"} 1",
            "ringseed_seed_tracker_announces_total 4",
            "ringseed_seed_tracker_announce_errors_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
