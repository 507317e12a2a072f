//! `ringseed seed --metrics`: the appliance's `/metrics` page after a real download by
//! `ringseed get`, and the tracker announce counters against our own tracker and a dead one.
//! Loopback only; runs on the io backend RINGSEED_IO selects (the suite runs it under both).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::metrics::*;
use common::*;

const PIECE_BYTES: u64 = 256 * 1024;
const BLOCK_BYTES: u64 = 16 * 1024;

fn blocks_in(total_bytes: u64) -> u64 {
    let full_pieces = total_bytes / PIECE_BYTES;
    let rest = total_bytes % PIECE_BYTES;
    full_pieces * PIECE_BYTES.div_ceil(BLOCK_BYTES) + rest.div_ceil(BLOCK_BYTES)
}

fn tree_bytes(dir: &Path) -> u64 {
    list_files(dir)
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().len())
        .sum()
}

/// A seeder of `torrent` (data in `dir`) on a free port, exporting metrics on another:
/// returns its port, its process and the metrics address.
fn seeder_with_metrics(dir: &Path, torrent: &Path) -> (u16, Proc, SocketAddr) {
    let (port, metrics_port) = (free_port(), free_port());
    let metrics_arg = format!("127.0.0.1:{metrics_port}");
    let seeder = spawn_seeder(dir, torrent, dir, port, &["--metrics", &metrics_arg]);
    (port, seeder, metrics_arg.parse().unwrap())
}

#[test]
fn metrics_count_a_download_and_its_announce() {
    // After `get` fetches the release from the seeder, /metrics shows at least the release's
    // size uploaded, the accepted connection, one latency sample per block, and the started
    // announce to our tracker with no error; the page is well-formed OpenMetrics text.
    let dir = TestDir::new("seed-metrics");
    let src = make_release(dir.path(), "release", 3 << 20);
    let tracker_port = free_port();
    let mut cmd = Command::new(ringseed_bin());
    cmd.args(["tracker", "--http", &format!("127.0.0.1:{tracker_port}")])
        .args(["--workers", "1"]);
    let _tracker = Proc::spawn("ringseed tracker", cmd, dir.path().join("tracker.log"));
    let tracker_addr: SocketAddr = format!("127.0.0.1:{tracker_port}").parse().unwrap();
    assert!(wait_listening(tracker_addr, Duration::from_secs(10)));
    let torrent = create_torrent(
        dir.path(),
        &src,
        &[&format!("http://127.0.0.1:{tracker_port}/announce")],
    );
    let (port, seeder, metrics_addr) = seeder_with_metrics(dir.path(), &torrent);
    assert!(wait_listening(metrics_addr, Duration::from_secs(10)));
    let out = dir.path().join("out");
    let mut get = Command::new(ringseed_bin());
    get.arg("get")
        .arg(&torrent)
        .arg("-o")
        .arg(&out)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--no-announce", "--peer", &format!("127.0.0.1:{port}")]);
    let mut get = Proc::spawn("get", get, dir.path().join("get.log"));
    let status = get.wait_timeout(Duration::from_secs(120));
    assert!(matches!(status, Some(s) if s.success()), "get: {status:?}");
    assert_same_files(&src, &out.join("release"));

    let size = tree_bytes(&src);
    let blocks = blocks_in(size);
    let hist_count = "ringseed_seed_block_request_to_send_seconds_count";
    let m = scrape_until(metrics_addr, |m| {
        m.get("ringseed_seed_uploaded_bytes_total")
            .is_some_and(|&v| v >= size as f64)
            && m.get(hist_count).is_some_and(|&v| v >= blocks as f64)
            && m.get("ringseed_seed_tracker_announces_total")
                .is_some_and(|&v| v >= 1.0)
    });
    let uploaded = metric(&m, "ringseed_seed_uploaded_bytes_total");
    assert!(uploaded >= size as f64, "uploaded {uploaded} < {size}");
    let sent = metric(&m, "ringseed_seed_sent_bytes_total");
    assert!(
        sent > uploaded,
        "headers and control bytes count in sent_bytes only"
    );
    assert!(metric(&m, "ringseed_seed_listener_accepts_total") >= 1.0);
    let count = metric(&m, hist_count);
    assert!(
        count >= blocks as f64,
        "{count} latency samples < {blocks} blocks"
    );
    let inf = metric(
        &m,
        "ringseed_seed_block_request_to_send_seconds_bucket{le=\"+Inf\"}",
    );
    assert_eq!(inf, count, "the +Inf bucket holds every sample");
    let sum = metric(&m, "ringseed_seed_block_request_to_send_seconds_sum");
    assert!(
        sum > 0.0 && sum / count < 1.0,
        "mean latency {} s",
        sum / count
    );
    assert!(metric(&m, "ringseed_seed_tracker_announces_total") >= 1.0);
    assert_eq!(
        metric(&m, "ringseed_seed_tracker_announce_errors_total"),
        0.0
    );
    drop(seeder);
}

#[test]
fn metrics_count_failed_announces_to_a_dead_tracker() {
    // A tracker port where nothing listens: each announce attempt fails and is counted.
    let dir = TestDir::new("seed-metrics-dead-tracker");
    let src = make_release(dir.path(), "release", 256 << 10);
    let dead = free_port();
    let torrent = create_torrent(
        dir.path(),
        &src,
        &[&format!("http://127.0.0.1:{dead}/announce")],
    );
    let (_port, _seeder, metrics_addr) = seeder_with_metrics(dir.path(), &torrent);
    let errors = "ringseed_seed_tracker_announce_errors_total";
    let m = scrape_until(metrics_addr, |m| m.get(errors).is_some_and(|&v| v >= 1.0));
    assert!(metric(&m, errors) >= 1.0, "{m:?}");
    assert!(metric(&m, "ringseed_seed_tracker_announces_total") >= metric(&m, errors));
    assert_eq!(metric(&m, "ringseed_seed_uploaded_bytes_total"), 0.0);
}
