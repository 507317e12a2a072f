//! Tests of the announce scheduler with virtual time.

use std::time::Duration;

use super::*;
use crate::bencode::OwnedValue;

fn params() -> AnnounceParams {
    AnnounceParams {
        info_hash: InfoHash([9; 20]),
        peer_id: PeerId(*b"-RS0100-000000000000"),
        port: 6881,
        numwant: Some(80),
        key: 7,
    }
}

fn leecher(left: u64) -> Progress {
    Progress {
        uploaded: 0,
        downloaded: 0,
        left,
    }
}

fn secs(s: u64) -> Instant {
    Instant::from_secs(s)
}

/// A reply body with the given interval, min interval and tracker id.
fn reply(interval: Option<i64>, min_interval: Option<i64>, tracker_id: Option<&str>) -> Vec<u8> {
    let mut d = OwnedValue::dict();
    if let Some(i) = interval {
        d.insert("interval", OwnedValue::Int(i));
    }
    if let Some(i) = min_interval {
        d.insert("min interval", OwnedValue::Int(i));
    }
    if let Some(id) = tracker_id {
        d.insert("tracker id", OwnedValue::str(id));
    }
    d.insert("peers", OwnedValue::Bytes(vec![127, 0, 0, 1, 0x1a, 0xe1]));
    d.to_bytes()
}

/// Polls at `now` and asserts an announce with `event` goes out.
fn expect_announce(s: &mut AnnounceScheduler, now: Instant, event: Event) -> AnnounceRequest {
    let req = s
        .poll_announce(now)
        .unwrap_or_else(|| panic!("no announce at {now:?}, next {:?}", s.next_announce()));
    assert_eq!(req.event, event, "at {now:?}");
    req
}

#[test]
fn started_goes_out_first_then_regular_announces_follow_the_interval() {
    // `started` at once; after the reply, nothing until `interval` has passed, then a regular
    // announce without event carrying the tracker id.
    let mut s = AnnounceScheduler::new(params(), leecher(1000), secs(0));
    let req = expect_announce(&mut s, secs(0), Event::Started);
    assert_eq!(
        (req.left, req.numwant, req.tracker_id.clone()),
        (1000, Some(80), None)
    );
    assert!(
        s.poll_announce(secs(0)).is_none(),
        "one announce in flight at a time"
    );
    let r = s
        .handle_response(&reply(Some(600), None, Some("T1")), secs(1))
        .unwrap();
    assert_eq!(r.peers.len(), 1);
    assert_eq!(s.next_announce(), Some((secs(601), Event::None)));
    assert!(s.poll_announce(secs(600)).is_none());
    let req = expect_announce(&mut s, secs(601), Event::None);
    assert_eq!(req.tracker_id.as_deref(), Some(&b"T1"[..]));
}

#[test]
fn interval_is_clamped_to_sane_bounds() {
    // A 1-second interval becomes INTERVAL_MIN and a week becomes INTERVAL_MAX; a reply
    // without one keeps the interval in force.
    let mut s = AnnounceScheduler::new(params(), leecher(1), secs(0));
    let _ = expect_announce(&mut s, secs(0), Event::Started);
    s.handle_response(&reply(Some(1), Some(0), None), secs(0))
        .unwrap();
    assert_eq!(s.interval(), INTERVAL_MIN);
    assert_eq!(s.min_interval(), MIN_INTERVAL_FLOOR);
    assert_eq!(
        s.next_announce(),
        Some((secs(0) + INTERVAL_MIN, Event::None))
    );
    let at = secs(0) + INTERVAL_MIN;
    let _ = expect_announce(&mut s, at, Event::None);
    s.handle_response(&reply(Some(7 * 86_400), Some(7 * 86_400), None), at)
        .unwrap();
    assert_eq!(s.interval(), INTERVAL_MAX);
    assert_eq!(s.min_interval(), INTERVAL_MAX);
    let at = at + INTERVAL_MAX;
    let _ = expect_announce(&mut s, at, Event::None);
    s.handle_response(&reply(None, None, None), at).unwrap();
    assert_eq!(s.interval(), INTERVAL_MAX);
}

#[test]
fn early_announce_waits_for_min_interval() {
    // Asking for peers early is honoured only once `min interval` since the last announce
    // has passed.
    let mut s = AnnounceScheduler::new(params(), leecher(1), secs(0));
    let _ = expect_announce(&mut s, secs(0), Event::Started);
    s.handle_response(&reply(Some(1800), Some(300), None), secs(2))
        .unwrap();
    s.announce_soon(secs(100));
    assert_eq!(s.next_announce(), Some((secs(300), Event::None)));
    assert!(s.poll_announce(secs(299)).is_none());
    let _ = expect_announce(&mut s, secs(300), Event::None);
    s.handle_response(&reply(Some(1800), Some(300), None), secs(301))
        .unwrap();
    // Long after min interval, an early announce is due at once.
    s.announce_soon(secs(1000));
    assert_eq!(s.next_announce(), Some((secs(1000), Event::None)));
}

#[test]
fn failures_back_off_exponentially_up_to_the_cap() {
    // Failed `started` announces are retried after 15 s, 30 s, 60 s… up to RETRY_MAX, with a
    // tracker `failure reason` counting as a failure; a success resets the back-off.
    let mut s = AnnounceScheduler::new(params(), leecher(1), secs(0));
    let mut now = secs(0);
    let mut delays = Vec::new();
    for i in 0..10 {
        let _ = expect_announce(&mut s, now, Event::Started);
        if i == 0 {
            let err = s
                .handle_response(b"d14:failure reason4:busye", now)
                .unwrap_err();
            assert!(matches!(err, TrackerError::Failure { .. }));
        } else {
            s.handle_failure(now);
        }
        let (next, event) = s.next_announce().unwrap();
        assert_eq!(event, Event::Started);
        assert!(s
            .poll_announce(Instant::from_nanos(next.as_nanos() - 1))
            .is_none());
        delays.push((next - now).as_secs());
        now = next;
    }
    assert_eq!(delays, [15, 30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
    assert_eq!(s.failures(), 10);
    let _ = expect_announce(&mut s, now, Event::Started);
    s.handle_response(&reply(Some(900), None, None), now)
        .unwrap();
    assert_eq!(s.failures(), 0);
    assert_eq!(
        s.next_announce(),
        Some((now + Duration::from_secs(900), Event::None))
    );
}

#[test]
fn malformed_reply_counts_as_a_failure() {
    // A reply that is not bencode is returned as an error and retried with back-off.
    let mut s = AnnounceScheduler::new(params(), leecher(1), secs(0));
    let _ = expect_announce(&mut s, secs(0), Event::Started);
    assert!(s.handle_response(b"<html>", secs(0)).is_err());
    assert_eq!(s.next_announce(), Some((secs(15), Event::Started)));
    assert_eq!(
        s.handle_response(&reply(None, None, None), secs(1))
            .unwrap_err(),
        TrackerError::NoAnnounceInFlight
    );
}

#[test]
fn completed_is_sent_once_and_at_once() {
    // Finishing makes `completed` due immediately; once acknowledged it never repeats, and
    // regular announces resume at the interval.
    let mut s = AnnounceScheduler::new(params(), leecher(500), secs(0));
    let _ = expect_announce(&mut s, secs(0), Event::Started);
    s.handle_response(&reply(Some(1800), Some(900), None), secs(0))
        .unwrap();
    s.update_progress(
        Progress {
            uploaded: 5,
            downloaded: 500,
            left: 0,
        },
        secs(40),
    );
    let req = expect_announce(&mut s, secs(40), Event::Completed);
    assert_eq!((req.left, req.downloaded), (0, 500));
    s.handle_failure(secs(41));
    assert_eq!(
        s.next_announce(),
        Some((secs(56), Event::Completed)),
        "retried after failure"
    );
    let _ = expect_announce(&mut s, secs(56), Event::Completed);
    s.handle_response(&reply(Some(1800), None, None), secs(57))
        .unwrap();
    s.update_progress(
        Progress {
            uploaded: 9,
            downloaded: 500,
            left: 0,
        },
        secs(60),
    );
    assert_eq!(s.next_announce(), Some((secs(1857), Event::None)));
    let _ = expect_announce(&mut s, secs(1857), Event::None);
}

#[test]
fn seeder_from_the_start_never_sends_completed() {
    // BEP 3: no `completed` when the data was complete when we started.
    let mut s = AnnounceScheduler::new(params(), leecher(0), secs(0));
    let req = expect_announce(&mut s, secs(0), Event::Started);
    assert_eq!(req.left, 0);
    s.handle_response(&reply(Some(60), None, None), secs(0))
        .unwrap();
    s.update_progress(leecher(0), secs(10));
    assert_eq!(s.next_announce(), Some((secs(60), Event::None)));
}

#[test]
fn finishing_before_started_is_acknowledged_needs_no_completed() {
    // If `started` failed and we finish meanwhile, the retried `started` says left=0 and no
    // `completed` follows.
    let mut s = AnnounceScheduler::new(params(), leecher(10), secs(0));
    let _ = expect_announce(&mut s, secs(0), Event::Started);
    s.handle_failure(secs(1));
    s.update_progress(leecher(0), secs(5));
    let req = expect_announce(&mut s, secs(16), Event::Started);
    assert_eq!(req.left, 0);
    s.handle_response(&reply(Some(60), None, None), secs(16))
        .unwrap();
    assert_eq!(s.next_announce(), Some((secs(76), Event::None)));
}

#[test]
fn finishing_while_started_is_in_flight_sends_completed_after_it() {
    // `started` went out with left > 0; finishing before its reply still owes `completed`.
    let mut s = AnnounceScheduler::new(params(), leecher(10), secs(0));
    let _ = expect_announce(&mut s, secs(0), Event::Started);
    s.update_progress(leecher(0), secs(1));
    s.handle_response(&reply(Some(60), None, None), secs(2))
        .unwrap();
    let _ = expect_announce(&mut s, secs(2), Event::Completed);
}

#[test]
fn shutdown_sends_stopped_once_and_finishes() {
    // `stopped` goes out at once with numwant=0, is not retried, and the schedule ends.
    let mut s = AnnounceScheduler::new(params(), leecher(0), secs(0));
    let _ = expect_announce(&mut s, secs(0), Event::Started);
    s.handle_response(&reply(Some(60), None, None), secs(0))
        .unwrap();
    s.shutdown(secs(10));
    let req = expect_announce(&mut s, secs(10), Event::Stopped);
    assert_eq!(req.numwant, Some(0));
    s.handle_failure(secs(11));
    assert!(s.is_done());
    assert_eq!(s.next_announce(), None);
    assert!(s.poll_announce(secs(100_000)).is_none());
}

#[test]
fn shutdown_before_the_tracker_knows_us_sends_nothing() {
    // Never acknowledged: no `stopped`; with `started` in flight, `stopped` follows its reply.
    let mut s = AnnounceScheduler::new(params(), leecher(0), secs(0));
    s.shutdown(secs(0));
    assert!(s.is_done() && s.poll_announce(secs(0)).is_none());

    let mut s = AnnounceScheduler::new(params(), leecher(0), secs(0));
    let _ = expect_announce(&mut s, secs(0), Event::Started);
    s.shutdown(secs(1));
    assert!(s.poll_announce(secs(1)).is_none(), "waits for the reply");
    s.handle_response(&reply(None, None, None), secs(2))
        .unwrap();
    let _ = expect_announce(&mut s, secs(2), Event::Stopped);
    s.handle_response(&reply(None, None, None), secs(3))
        .unwrap();
    assert!(s.is_done());

    let mut s = AnnounceScheduler::new(params(), leecher(0), secs(0));
    let _ = expect_announce(&mut s, secs(0), Event::Started);
    s.shutdown(secs(1));
    s.handle_failure(secs(2));
    assert!(s.is_done(), "started failed, the tracker never listed us");
}
