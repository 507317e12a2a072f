//! Interop: our HTTP and UDP (BEP 15) tracker clients against a real opentracker on loopback.
//!
//! Needs `/usr/bin/opentracker` (Debian package `opentracker`); fails, never skips, without it.
//! The tracker runs in whitelist mode on free loopback ports and is killed by a guard when the
//! test ends, panics included.

mod common;

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant as StdInstant};

use common::{free_port_udp_too, whitelist_loaded};
use ringseed::metainfo::{build_torrent, FileEntry, Info, InfoHash, PeerId, TorrentBuilder};
use ringseed::time::Instant;
use ringseed::tracker::udp_client::{UdpGoal, UdpOutcome};
use ringseed::tracker::{
    announce_url, AnnounceParams, AnnounceResponse, AnnounceScheduler, Event, Progress,
    TrackerError,
};
use ringseed::tracker_http::announce_blocking;
use ringseed::tracker_udp::{exchange_blocking, UdpConnections};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A running opentracker; dropping it kills and reaps the process.
struct Tracker {
    child: Child,
    announce: String,
    udp: String,
    dir: tempfile::TempDir,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tracker {
    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }
}

/// Starts opentracker allowing only `allowed`, and waits until it accepts connections.
fn start_tracker(allowed: &[InfoHash]) -> Tracker {
    let dir = tempfile::Builder::new()
        .prefix("ringseed-opentracker")
        .tempdir_in("/tmp")
        .unwrap();
    // opentracker drops to `nobody` and chroots to its working directory, then reads the
    // whitelist: both must be readable by everyone.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let whitelist: PathBuf = dir.path().join("whitelist");
    let lines: String = allowed
        .iter()
        .map(|h| format!("{}\n", h.to_hex()))
        .collect();
    fs::write(&whitelist, lines).unwrap();
    fs::set_permissions(&whitelist, fs::Permissions::from_mode(0o644)).unwrap();
    let port = free_port_udp_too();
    let log = fs::File::create(dir.path().join("log")).unwrap();
    let child = Command::new("/usr/bin/opentracker")
        .args([
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            &port.to_string(),
        ])
        .arg("-w")
        .arg(&whitelist)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect(
            "opentracker must be installed at /usr/bin/opentracker (apt-get install opentracker)",
        );
    let mut tracker = Tracker {
        child,
        announce: format!("http://127.0.0.1:{port}/announce"),
        udp: format!("udp://127.0.0.1:{port}/announce"),
        dir,
    };
    let deadline = StdInstant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Some(status) = tracker.child.try_wait().unwrap() {
            panic!("opentracker exited with {status}: {}", tracker.log());
        }
        assert!(
            StdInstant::now() < deadline,
            "opentracker did not listen: {}",
            tracker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Some(first) = allowed.first() {
        while !whitelist_loaded(port, &first.to_hex()) {
            assert!(
                StdInstant::now() < deadline,
                "opentracker never loaded its whitelist: {}",
                tracker.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    tracker
}

fn info_hash() -> InfoHash {
    let info = Info {
        name: "interop.bin".into(),
        piece_length: 16_384,
        pieces: vec![[3; 20]; 2],
        files: vec![FileEntry {
            path: vec![],
            length: 20_000,
        }],
        multi_file: false,
        private: false,
    };
    build_torrent(&info, &TorrentBuilder::default())
        .unwrap()
        .1
        .info_hash
}

fn peer(info_hash: InfoHash, n: u8, port: u16, left: u64) -> AnnounceScheduler {
    let mut id = *b"-RS0100-000000000000";
    id[19] = b'0' + n;
    let params = AnnounceParams {
        info_hash,
        peer_id: PeerId(id),
        port,
        numwant: Some(50),
        key: u32::from(n),
    };
    let progress = Progress {
        uploaded: 0,
        downloaded: 0,
        left,
    };
    AnnounceScheduler::new(params, progress, Instant::ZERO)
}

/// Sends the announce that is due (it must be `event`) and feeds the reply back.
fn announce(
    t: &Tracker,
    s: &mut AnnounceScheduler,
    now: Instant,
    event: Event,
) -> Result<AnnounceResponse, TrackerError> {
    let req = s.poll_announce(now).expect("an announce is due");
    assert_eq!(req.event, event);
    let url = announce_url(&t.announce, &req).unwrap();
    match announce_blocking(&url, TIMEOUT) {
        Ok(body) => s.handle_response(&body, now),
        Err(e) => {
            s.handle_failure(now);
            Err(e)
        }
    }
}

#[test]
fn peers_find_each_other_through_opentracker() {
    // A seeder and a leecher announce with binary info-hashes; the leecher is told about the
    // seeder, `completed` is accepted, and after `stopped` the seeder is no longer handed out.
    let hash = info_hash();
    let t = start_tracker(&[hash]);
    let now = Instant::from_secs(1);
    let mut seeder = peer(hash, 1, 40001, 0);
    let mut leecher = peer(hash, 2, 40002, 20_000);
    let first = announce(&t, &mut seeder, now, Event::Started).unwrap();
    assert!(first.interval_secs.is_some(), "{first:?}");
    let reply = announce(&t, &mut leecher, now, Event::Started).unwrap();
    let seeder_addr: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    assert!(reply.peers.contains(&seeder_addr), "{reply:?}");
    assert_eq!(reply.complete, Some(1), "{reply:?}");
    assert_eq!(reply.incomplete, Some(1), "{reply:?}");

    let done = Progress {
        uploaded: 0,
        downloaded: 20_000,
        left: 0,
    };
    leecher.update_progress(done, now);
    let reply = announce(&t, &mut leecher, now, Event::Completed).unwrap();
    assert_eq!(reply.complete, Some(2), "{reply:?}");

    seeder.shutdown(now);
    announce(&t, &mut seeder, now, Event::Stopped).unwrap();
    assert!(seeder.is_done());
    let mut newcomer = peer(hash, 3, 40003, 20_000);
    let reply = announce(&t, &mut newcomer, now, Event::Started).unwrap();
    assert!(!reply.peers.contains(&seeder_addr), "{reply:?}");
    assert!(
        reply.peers.contains(&"127.0.0.1:40002".parse().unwrap()),
        "{reply:?}"
    );
}

#[test]
fn unlisted_torrent_is_refused_with_the_trackers_reason() {
    // opentracker's whitelist refusal reaches us as a Failure with its text, and the
    // scheduler backs off instead of hammering the tracker.
    let t = start_tracker(&[InfoHash([0x11; 20])]);
    let mut s = peer(info_hash(), 1, 40010, 0);
    let err = announce(&t, &mut s, Instant::from_secs(1), Event::Started).unwrap_err();
    match err {
        TrackerError::Failure { reason } => assert!(reason.contains("not authorized"), "{reason}"),
        other => panic!("expected a failure reason, got {other:?}"),
    }
    assert_eq!(s.failures(), 1);
    let (at, event) = s.next_announce().unwrap();
    assert_eq!((at, event), (Instant::from_secs(16), Event::Started));
}

/// Sends the due announce over UDP and feeds the reply to the scheduler.
fn announce_udp(
    t: &Tracker,
    s: &mut AnnounceScheduler,
    conns: &mut UdpConnections,
    now: Instant,
) -> Result<AnnounceResponse, TrackerError> {
    let req = s.poll_announce(now).expect("an announce is due");
    match exchange_blocking(&t.udp, UdpGoal::Announce(req), conns, 2, TIMEOUT) {
        Ok(UdpOutcome::Announce(r)) => {
            s.handle_reply(&r, now).unwrap();
            Ok(r)
        }
        Ok(other) => panic!("{other:?}"),
        Err(e) => {
            s.handle_failure(now);
            Err(e)
        }
    }
}

#[test]
fn peers_find_each_other_through_opentracker_over_udp() {
    // BEP 15 against opentracker: connect, announce (the connection id is reused for the
    // second peer), the leecher learns the seeder, and a scrape counts both.
    let hash = info_hash();
    let t = start_tracker(&[hash]);
    let now = Instant::from_secs(1);
    let mut conns = UdpConnections::default();
    let mut seeder = peer(hash, 1, 40021, 0);
    let mut leecher = peer(hash, 2, 40022, 20_000);
    let first = announce_udp(&t, &mut seeder, &mut conns, now).unwrap();
    assert!(first.interval_secs.unwrap() > 0, "{first:?}");
    let reply = announce_udp(&t, &mut leecher, &mut conns, now).unwrap();
    assert!(
        reply.peers.contains(&"127.0.0.1:40021".parse().unwrap()),
        "{reply:?}"
    );
    assert_eq!((reply.complete, reply.incomplete), (Some(1), Some(1)));
    let scrape = exchange_blocking(&t.udp, UdpGoal::Scrape(vec![hash]), &mut conns, 2, TIMEOUT);
    let Ok(UdpOutcome::Scrape(stats)) = scrape else {
        panic!("{scrape:?}")
    };
    assert_eq!((stats[0].seeders, stats[0].leechers), (1, 1), "{stats:?}");
}

#[test]
fn unlisted_torrent_over_udp_is_a_clear_error_not_a_hang() {
    // opentracker refuses an unlisted torrent over UDP with a bare 8-byte announce header
    // (no interval, no counts); that is reported as a short packet at once.
    let t = start_tracker(&[InfoHash([0x11; 20])]);
    let mut s = peer(info_hash(), 1, 40030, 0);
    let mut conns = UdpConnections::default();
    let err = announce_udp(&t, &mut s, &mut conns, Instant::from_secs(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "bad UDP tracker packet: announce response is 8 bytes, shorter than the 20 it needs"
    );
    assert_eq!(s.failures(), 1);
}

#[test]
fn silent_udp_tracker_times_out_within_the_deadline() {
    // Nothing listens on the port: the exchange ends by its deadline with a clear error.
    let port = free_port_udp_too();
    let mut conns = UdpConnections::default();
    let started = StdInstant::now();
    let mut s = peer(info_hash(), 1, 40031, 0);
    let req = s.poll_announce(Instant::ZERO).unwrap();
    let url = format!("udp://127.0.0.1:{port}");
    let err = exchange_blocking(
        &url,
        UdpGoal::Announce(req),
        &mut conns,
        2,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(matches!(err, TrackerError::UdpTimedOut { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
