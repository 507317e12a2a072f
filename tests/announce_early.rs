//! Peers short of peers ask the tracker again as soon as its `min interval` allows, not
//! after the full `interval`: a `get` with no candidates and a `seed` with idle upload slots
//! (what the simulator's origin-seeder scenario showed a seeder needs). A recording HTTP
//! tracker on loopback answers with no peers, `interval` 3600 s and `min interval` 30 s
//! (the announcer's floor).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// (seconds since the tracker started, query string) of every announce.
type Log = Arc<Mutex<Vec<(f64, String)>>>;

fn recording_tracker() -> (String, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/announce", listener.local_addr().unwrap());
    let log: Log = Arc::default();
    let l = log.clone();
    let start = Instant::now();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = vec![0u8; 8192];
            let mut len = 0;
            while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
                match s.read(&mut buf[len..]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => len += n,
                }
            }
            let head = String::from_utf8_lossy(&buf[..len]).into_owned();
            let query = head
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.split_once('?'))
                .map(|(_, q)| q.to_string())
                .unwrap_or_default();
            l.lock()
                .unwrap()
                .push((start.elapsed().as_secs_f64(), query));
            let body =
                b"d8:completei0e10:incompletei0e8:intervali3600e12:min intervali30e5:peers0:e";
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(body);
        }
    });
    (url, log)
}

/// Announce times of the seeder (`left=0`) or of the downloader (any other `left`).
fn times(log: &Log, seeder: bool) -> Vec<f64> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(_, q)| {
            q.split('&')
                .any(|kv| (kv == "left=0") == seeder && kv.starts_with("left="))
        })
        .map(|(t, _)| *t)
        .collect()
}

#[test]
fn a_peer_short_of_peers_announces_again_at_the_min_interval() {
    let dir = TestDir::new("announce-early");
    let (url, log) = recording_tracker();
    let data = dir.path().join("data.bin");
    std::fs::write(&data, pseudo_random(600_000, 3)).unwrap();
    let torrent = create_torrent(dir.path(), &data, &[&url]);
    // A seeder nobody is interested in (every slot idle) ...
    let _seeder = spawn_seeder(dir.path(), &torrent, &data, free_port(), &[]);
    // ... and a downloader the tracker gives no peers.
    let out = dir.path().join("out");
    let listen = format!("127.0.0.1:{}", free_port());
    let _get = Proc::spawn(
        "ringseed get",
        get_command(&torrent, &out, &listen),
        dir.path().join("get.log"),
    );
    let both_twice = wait_until(Duration::from_secs(60), || {
        times(&log, true).len() >= 2 && times(&log, false).len() >= 2
    });
    let (seed, get) = (times(&log, true), times(&log, false));
    assert!(both_twice, "announces: seeder {seed:?}, downloader {get:?}");
    for (who, t) in [("seeder", &seed), ("downloader", &get)] {
        let gap = t[1] - t[0];
        // Not before the tracker's min interval, and far before its 3600 s interval.
        assert!(
            (29.0..55.0).contains(&gap),
            "{who}: second announce {gap:.1} s after the first ({t:?})"
        );
    }
}
