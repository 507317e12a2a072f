//! `ringseed tracker` end to end: our own UDP and HTTP clients, access-list reload, and real
//! clients (libtorrent, aria2, Transmission, ringseed) that find each other through it and
//! complete a download byte-exact. Transmission never dials loopback peers, so it is the
//! seeder the other side dials.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use ringseed::metainfo::{InfoHash, PeerId};
use ringseed::tracker::udp_client::{UdpGoal, UdpOutcome};
use ringseed::tracker::{
    announce_url, parse_response, parse_scrape, scrape_url, AnnounceRequest, AnnounceResponse,
    Event, TrackerError,
};
use ringseed::tracker_http::announce_blocking;
use ringseed::tracker_udp::{exchange_blocking, UdpConnections};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A running `ringseed tracker`, killed when dropped.
struct OurTracker {
    proc: Proc,
    http: String,
    udp: String,
}

fn start_tracker(dir: &Path, extra: &[&str]) -> OurTracker {
    start_tracker_on(dir, "127.0.0.1", extra)
}

/// Starts the tracker on `host` (`127.0.0.1` or `[::1]`), HTTP and UDP on one free port.
fn start_tracker_on(dir: &Path, host: &str, extra: &[&str]) -> OurTracker {
    let port = free_port_udp_too();
    let mut cmd = Command::new(ringseed_bin());
    cmd.args(["tracker", "--http", &format!("{host}:{port}")])
        .args(["--udp", &format!("{host}:{port}"), "--workers", "2"])
        .args(extra)
        .env("RUST_LOG", "info");
    let proc = Proc::spawn("ringseed tracker", cmd, dir.join("tracker.log"));
    // Its own log line first: it is printed once both sockets are bound, so the port probe
    // below cannot be answered by another test's short-lived listener on a reused port.
    assert!(
        wait_until(Duration::from_secs(10), || proc
            .log_text()
            .contains("tracker running")),
        "tracker did not start"
    );
    let addr: SocketAddr = format!("{host}:{port}").parse().unwrap();
    assert!(
        wait_listening(addr, Duration::from_secs(10)),
        "tracker did not listen"
    );
    OurTracker {
        proc,
        http: format!("http://{host}:{port}/announce"),
        udp: format!("udp://{host}:{port}/announce"),
    }
}

fn request(h: InfoHash, n: u8, port: u16, left: u64) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: h,
        peer_id: PeerId([n; 20]),
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event: Event::Started,
        numwant: Some(50),
        key: 1,
        tracker_id: None,
    }
}

fn http_announce(t: &OurTracker, req: &AnnounceRequest) -> Result<AnnounceResponse, TrackerError> {
    parse_response(&announce_blocking(&announce_url(&t.http, req)?, TIMEOUT)?)
}

fn udp_announce(
    t: &OurTracker,
    conns: &mut UdpConnections,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, TrackerError> {
    match exchange_blocking(&t.udp, UdpGoal::Announce(req.clone()), conns, 2, TIMEOUT)? {
        UdpOutcome::Announce(r) => Ok(r),
        other => panic!("{other:?}"),
    }
}

#[test]
fn udp_and_http_peers_share_one_swarm_with_scrape_and_metrics() {
    // A UDP seeder and an HTTP leecher of one torrent are told about each other; scrape over
    // both transports counts them; /metrics shows the requests.
    let dir = TestDir::new("our-tracker");
    let t = start_tracker(dir.path(), &[]);
    let h = InfoHash([0x5a; 20]);
    let mut conns = UdpConnections::default();
    let first = udp_announce(&t, &mut conns, &request(h, 1, 40101, 0)).unwrap();
    assert_eq!(first.interval_secs, Some(1800));
    let r = http_announce(&t, &request(h, 2, 40102, 10)).unwrap();
    assert_eq!(
        r.peers,
        vec!["127.0.0.1:40101".parse::<SocketAddr>().unwrap()]
    );
    let r = udp_announce(&t, &mut conns, &request(h, 1, 40101, 0)).unwrap();
    assert_eq!(
        r.peers,
        vec!["127.0.0.1:40102".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!((r.complete, r.incomplete), (Some(1), Some(1)));
    let body = announce_blocking(&scrape_url(&t.http, &[h]).unwrap(), TIMEOUT).unwrap();
    let s = parse_scrape(&body).unwrap();
    assert_eq!((s[0].1.seeders, s[0].1.leechers), (1, 1));
    let UdpOutcome::Scrape(s) = exchange_blocking(
        &t.udp,
        UdpGoal::Scrape(vec![h, InfoHash([1; 20])]),
        &mut conns,
        2,
        TIMEOUT,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!((s[0].seeders, s[0].leechers, s[1].seeders), (1, 1, 0));
    let metrics_url = t.http.replace("/announce", "/metrics");
    let ok = wait_until(Duration::from_secs(5), || {
        let text = String::from_utf8(announce_blocking(&metrics_url, TIMEOUT).unwrap()).unwrap();
        text.contains("ringseed_tracker_requests_total{proto=\"udp\",action=\"announce\"} 2")
            && text
                .contains("ringseed_tracker_requests_total{proto=\"http\",action=\"announce\"} 1")
    });
    assert!(ok, "metrics never showed the requests");
}

#[test]
fn allow_list_is_reloaded_when_the_file_changes() {
    // A hash missing from the allow-list is refused over both transports, then accepted once
    // the file lists it; a deny-listed hash stays refused.
    let dir = TestDir::new("our-tracker-allow");
    let allow = dir.path().join("allow");
    let deny = dir.path().join("deny");
    let h = InfoHash([0x31; 20]);
    let denied = InfoHash([0x32; 20]);
    std::fs::write(&allow, format!("{}\n", denied.to_hex())).unwrap();
    std::fs::write(&deny, format!("{}\n", denied.to_hex())).unwrap();
    let t = start_tracker(
        dir.path(),
        &[
            "--allow-list",
            allow.to_str().unwrap(),
            "--deny-list",
            deny.to_str().unwrap(),
        ],
    );
    let mut conns = UdpConnections::default();
    let err = http_announce(&t, &request(h, 1, 1, 0)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "tracker refused the announce: torrent not allowed on this tracker"
    );
    let err = udp_announce(&t, &mut conns, &request(h, 1, 1, 0)).unwrap_err();
    assert!(matches!(err, TrackerError::Failure { .. }), "{err:?}");
    std::fs::write(&allow, format!("{}\n{}\n", denied.to_hex(), h.to_hex())).unwrap();
    let ok = wait_until(Duration::from_secs(5), || {
        udp_announce(&t, &mut conns, &request(h, 1, 1, 0)).is_ok()
    });
    assert!(
        ok,
        "the reloaded allow-list was not applied:\n{}",
        t.proc.log_text()
    );
    assert!(http_announce(&t, &request(h, 2, 2, 0)).is_ok());
    assert!(http_announce(&t, &request(denied, 2, 2, 0)).is_err());
}

/// Makes the release and its torrent announcing to `url`; returns (data, torrent).
fn release(dir: &Path, url: &str) -> (PathBuf, PathBuf) {
    release_tiers(dir, &[url])
}

/// Like [`release`] with one tier per URL.
fn release_tiers(dir: &Path, urls: &[&str]) -> (PathBuf, PathBuf) {
    let src = make_release(dir, "release", 4 << 20);
    let torrent = create_torrent(dir, &src, urls);
    (src, torrent)
}

fn scrape_seeders(t: &OurTracker, torrent: &Path) -> u32 {
    let h = InfoHash::from_hex(&info_hash_hex(torrent)).unwrap();
    announce_blocking(&scrape_url(&t.http, &[h]).unwrap(), TIMEOUT)
        .ok()
        .and_then(|b| parse_scrape(&b).ok())
        .and_then(|s| s.first().map(|e| e.1.seeders))
        .unwrap_or(0)
}

#[test]
fn aria2_downloads_from_libtorrent_found_through_udp_and_http_tiers() {
    // Tiers [udp], [http]: libtorrent seeds and announces over UDP (first tier); aria2c, which
    // speaks UDP trackers only with its DHT on, falls back to the HTTP tier (BEP 12). Both
    // land in one swarm, and aria2c downloads every file byte-exact from libtorrent.
    let dir = TestDir::new("our-tracker-aria2");
    let t = start_tracker(dir.path(), &[]);
    let (src, torrent) = release_tiers(dir.path(), &[&t.udp, &t.http]);
    let lt_port = free_port();
    let _lt = libtorrent(
        dir.path(),
        "lt-seed",
        &[
            "--torrent".into(),
            torrent.to_str().unwrap().into(),
            "--save".into(),
            dir.path().to_str().unwrap().into(),
            "--listen-port".into(),
            lt_port.to_string(),
            "--seed".into(),
        ],
    );
    assert!(
        wait_until(Duration::from_secs(30), || scrape_seeders(&t, &torrent)
            >= 1),
        "libtorrent never announced to our tracker"
    );
    let out = dir.path().join("aria2-out");
    aria2_download(dir.path(), &torrent, &out, &[], Duration::from_secs(120));
    assert_same_files(&src, &out.join("release"));
}

#[test]
fn libtorrent_downloads_from_transmission_found_through_the_http_tracker() {
    // Transmission seeds and announces over HTTP; libtorrent finds it through our tracker and
    // dials it (Transmission accepts loopback peers but never dials them).
    let dir = TestDir::new("our-tracker-transmission");
    let t = start_tracker(dir.path(), &[]);
    let (src, torrent) = release(dir.path(), &t.http);
    let config = dir.path().join("tr-config");
    std::fs::create_dir_all(&config).unwrap();
    let tr_port = free_port();
    let mut cmd = Command::new("transmission-cli");
    cmd.arg("-g")
        .arg(&config)
        .arg("-w")
        .arg(dir.path())
        .args(["-p", &tr_port.to_string(), "-D", "-M"])
        .arg(&torrent);
    let _tr = Proc::spawn("transmission-cli", cmd, dir.path().join("transmission.log"));
    assert!(
        wait_until(Duration::from_secs(60), || scrape_seeders(&t, &torrent)
            >= 1),
        "Transmission never announced as a seeder to our tracker"
    );
    let out = dir.path().join("lt-out");
    let mut lt = libtorrent(
        dir.path(),
        "lt-leech",
        &[
            "--torrent".into(),
            torrent.to_str().unwrap().into(),
            "--save".into(),
            out.to_str().unwrap().into(),
            "--listen-port".into(),
            free_port().to_string(),
            "--plaintext".into(),
            "--timeout".into(),
            "120".into(),
        ],
    );
    let status = lt.wait_timeout(Duration::from_secs(130));
    assert!(
        matches!(status, Some(s) if s.success()),
        "libtorrent did not finish ({status:?}):\n{}",
        lt.log_text()
    );
    assert_same_files(&src, &out.join("release"));
}

/// Runs `ringseed get` of `torrent` into `out` (peers from its trackers) and asserts it
/// finishes successfully within 60 s.
fn get_to_completion(dir: &Path, torrent: &Path, out: &Path) {
    let mut cmd = get_command(torrent, out, &format!("127.0.0.1:{}", free_port()));
    cmd.env("RUST_LOG", "info");
    let mut get = Proc::spawn("ringseed get", cmd, dir.join("get.log"));
    let status = get.wait_timeout(Duration::from_secs(60));
    assert!(
        matches!(status, Some(s) if s.success()),
        "ringseed get did not finish ({status:?}):\n{}",
        get.log_text()
    );
}

#[test]
fn ringseed_get_finds_a_ringseed_seeder_through_the_udp_tracker() {
    // The announcer's UDP path: seed and get both announce to udp://, and get completes.
    let dir = TestDir::new("our-tracker-get");
    let t = start_tracker(dir.path(), &[]);
    let (src, torrent) = release(dir.path(), &t.udp);
    let _seeder = spawn_seeder(dir.path(), &torrent, dir.path(), free_port(), &[]);
    assert!(
        wait_until(Duration::from_secs(20), || scrape_seeders(&t, &torrent)
            >= 1),
        "the ringseed seeder never announced over UDP"
    );
    let out = dir.path().join("get-out");
    get_to_completion(dir.path(), &torrent, &out);
    assert_same_files(&src, &out.join("release"));
}

#[test]
fn ipv6_peers_get_ipv6_peers_over_udp_and_http() {
    // On ::1, a UDP announcer (18-byte peers) and an HTTP announcer (`peers6`) find each other.
    let dir = TestDir::new("our-tracker-v6");
    let t = start_tracker_on(dir.path(), "[::1]", &[]);
    let h = InfoHash([0x66; 20]);
    let mut conns = UdpConnections::default();
    udp_announce(&t, &mut conns, &request(h, 1, 40201, 0)).unwrap();
    let r = http_announce(&t, &request(h, 2, 40202, 5)).unwrap();
    assert_eq!(r.peers, vec!["[::1]:40201".parse::<SocketAddr>().unwrap()]);
    let r = udp_announce(&t, &mut conns, &request(h, 1, 40201, 0)).unwrap();
    assert_eq!(r.peers, vec!["[::1]:40202".parse::<SocketAddr>().unwrap()]);
}

#[test]
fn announcer_falls_back_to_the_next_tier_when_the_first_tracker_is_down() {
    // Tiers [dead HTTP tracker], [our UDP tracker]: seed and get both skip the dead one
    // (BEP 12) and meet through the second tier; get completes byte-exact.
    let dir = TestDir::new("our-tracker-tiers");
    let t = start_tracker(dir.path(), &[]);
    let dead = format!("http://127.0.0.1:{}/announce", free_port());
    let (src, torrent) = release_tiers(dir.path(), &[&dead, &t.udp]);
    let _seeder = spawn_seeder(dir.path(), &torrent, dir.path(), free_port(), &[]);
    assert!(
        wait_until(Duration::from_secs(20), || scrape_seeders(&t, &torrent)
            >= 1),
        "the seeder never reached the second tier"
    );
    let out = dir.path().join("get-out");
    get_to_completion(dir.path(), &torrent, &out);
    assert_same_files(&src, &out.join("release"));
}

#[test]
fn rate_limited_source_gets_only_its_burst_answered() {
    // --rate-limit 1 (bursts of 4, per shard): 40 connects sent at once from one IP get at
    // most 4 replies per shard; the excess is dropped and counted in /metrics.
    let dir = TestDir::new("our-tracker-rate");
    let t = start_tracker(dir.path(), &["--rate-limit", "1"]);
    let target = t
        .udp
        .trim_start_matches("udp://")
        .trim_end_matches("/announce");
    let sock = std::net::UdpSocket::bind("127.0.0.9:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut out = Vec::new();
    for tid in 0..40 {
        out.clear();
        ringseed::tracker::udp_proto::UdpRequest::Connect {
            transaction_id: ringseed::tracker::udp_proto::TransactionId(tid),
        }
        .encode(&mut out);
        sock.send_to(&out, target).unwrap();
    }
    let mut replies = 0;
    let mut buf = [0u8; 64];
    while sock.recv(&mut buf).is_ok() {
        replies += 1;
    }
    assert!(
        (1..=8).contains(&replies),
        "{replies} replies to 40 connects"
    );
    let metrics_url = t.http.replace("/announce", "/metrics");
    let dropped = wait_until(Duration::from_secs(5), || {
        let text = String::from_utf8(announce_blocking(&metrics_url, TIMEOUT).unwrap()).unwrap();
        text.lines()
            .find(|l| l.starts_with("ringseed_tracker_dropped_total"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .is_some_and(|n| n >= 32)
    });
    assert!(dropped, "dropped datagrams were not counted");
}
