//! When to announce to one tracker next, and with which event (BEP 3), as a sans-IO machine.
//!
//! States (the phase and whether the tracker has acknowledged us):
//!
//! | state                    | next announce                                           |
//! |--------------------------|---------------------------------------------------------|
//! | active, not acknowledged | `started` now, then retried with back-off until a reply |
//! | active, acknowledged     | `completed` as soon as we finish (once), else a regular |
//! |                          | announce every `interval`, retries with back-off         |
//! | stopping                 | `stopped` now if the tracker knows us, never retried    |
//! | done                     | nothing                                                 |
//!
//! At most one announce is in flight; the driver reports its outcome with
//! [`AnnounceScheduler::handle_response`] or [`AnnounceScheduler::handle_failure`] (also for
//! its own timeouts). The scheduler knows no URL, so a BEP 12 tier can rotate trackers under
//! one schedule, and a BEP 15 UDP driver can feed [`AnnounceScheduler::handle_reply`].

use std::time::Duration;

use super::{parse_response, AnnounceRequest, AnnounceResponse, Event, TrackerError};
use crate::metainfo::{InfoHash, PeerId};
use crate::time::Instant;

/// Shortest regular interval we follow, whatever the tracker says: a broken or hostile reply
/// must not make us announce in a tight loop.
pub const INTERVAL_MIN: Duration = Duration::from_secs(60);
/// Longest regular interval we follow: after a tracker restart we would be invisible that
/// long. Common trackers ask for 30 minutes; 4 hours leaves room for busy ones.
pub const INTERVAL_MAX: Duration = Duration::from_secs(4 * 3600);
/// Interval used until a tracker tells us its own (opentracker's default is 30 minutes).
pub const INTERVAL_DEFAULT: Duration = Duration::from_secs(30 * 60);
/// Shortest spacing between an announce and an early one we ask for with
/// [`AnnounceScheduler::announce_soon`], when the tracker's `min interval` is lower or absent.
pub const MIN_INTERVAL_FLOOR: Duration = Duration::from_secs(30);
/// Delay before the first retry of a failed announce; it doubles with each failure.
pub const RETRY_FIRST: Duration = Duration::from_secs(15);
/// Longest delay between retries (reached after eight failures in a row).
pub const RETRY_MAX: Duration = Duration::from_secs(30 * 60);

/// What stays the same in every announce of a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceParams {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// The port we accept peers on.
    pub port: u16,
    /// Peers we ask for; `None` leaves it to the tracker.
    pub numwant: Option<u32>,
    /// Random session key (BEP 7 practice), chosen once by the shell.
    pub key: u32,
}

/// Transfer totals reported in announces.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Payload bytes sent this session.
    pub uploaded: u64,
    /// Payload bytes received and verified this session.
    pub downloaded: u64,
    /// Bytes still needed; 0 when we are a seeder.
    pub left: u64,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Phase {
    Active,
    Stopping,
    Done,
}

#[derive(Copy, Clone, Debug)]
struct InFlight {
    event: Event,
    left: u64,
}

/// The announce schedule of one tracker.
///
/// Getters: [`next_announce`](Self::next_announce), [`is_done`](Self::is_done) and friends.
/// Inputs: [`handle_response`](Self::handle_response), [`handle_reply`](Self::handle_reply),
/// [`handle_failure`](Self::handle_failure). Commands: [`update_progress`](Self::update_progress),
/// [`announce_soon`](Self::announce_soon), [`shutdown`](Self::shutdown). Output:
/// [`poll_announce`](Self::poll_announce), to be called whenever `now` reaches the instant
/// `next_announce` gave and after every input or command.
#[derive(Clone, Debug)]
pub struct AnnounceScheduler {
    params: AnnounceParams,
    progress: Progress,
    tracker_id: Option<Vec<u8>>,
    phase: Phase,
    /// The tracker has answered an announce of this session, so it lists us.
    acked: bool,
    /// The tracker last heard (and acknowledged) that we are incomplete.
    acked_incomplete: bool,
    /// `completed` was acknowledged; it is never sent again.
    completed_done: bool,
    /// Since when a `completed` announce has been owed.
    completed_due_at: Option<Instant>,
    in_flight: Option<InFlight>,
    /// When the next `started` or regular announce (or retry) is due.
    due_at: Instant,
    /// When the `stopped` announce is due.
    stop_at: Instant,
    last_sent_at: Option<Instant>,
    interval: Duration,
    min_interval: Duration,
    failures: u32,
}

impl AnnounceScheduler {
    /// A schedule whose `started` announce is due at `now`. If `progress.left` is 0 we start
    /// as a seeder and never send `completed`.
    pub fn new(params: AnnounceParams, progress: Progress, now: Instant) -> AnnounceScheduler {
        AnnounceScheduler {
            params,
            progress,
            tracker_id: None,
            phase: Phase::Active,
            acked: false,
            acked_incomplete: false,
            completed_done: false,
            completed_due_at: None,
            in_flight: None,
            due_at: now,
            stop_at: now,
            last_sent_at: None,
            interval: INTERVAL_DEFAULT,
            min_interval: MIN_INTERVAL_FLOOR,
            failures: 0,
        }
    }

    /// When the next announce is due and with which event; `None` while one is in flight or
    /// once the schedule is done. An instant at or before `now` means "due now".
    pub fn next_announce(&self) -> Option<(Instant, Event)> {
        if self.in_flight.is_some() {
            return None;
        }
        match self.phase {
            Phase::Done => None,
            Phase::Stopping => Some((self.stop_at, Event::Stopped)),
            Phase::Active if !self.acked => Some((self.due_at, Event::Started)),
            Phase::Active => match self.completed_due_at {
                // Completion is news: it goes out at once, unless we are backing off.
                Some(t) if self.failures == 0 => Some((t.min(self.due_at), Event::Completed)),
                Some(_) => Some((self.due_at, Event::Completed)),
                None => Some((self.due_at, Event::None)),
            },
        }
    }

    /// True once `stopped` was answered or failed, or shutdown needed no `stopped`.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// The regular interval in force (the tracker's, clamped to
    /// [`INTERVAL_MIN`]..=[`INTERVAL_MAX`]).
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The minimum spacing in force for early announces (the tracker's `min interval`, clamped
    /// to [`MIN_INTERVAL_FLOOR`]..=[`interval`](Self::interval)).
    pub fn min_interval(&self) -> Duration {
        self.min_interval
    }

    /// Failed announces in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The `tracker id` the tracker gave us, if any.
    pub fn tracker_id(&self) -> Option<&[u8]> {
        self.tracker_id.as_deref()
    }

    /// Records new transfer totals. Finishing (left drops to 0) after the tracker heard we
    /// were incomplete makes `completed` due at `now`.
    pub fn update_progress(&mut self, progress: Progress, now: Instant) {
        self.progress = progress;
        self.refresh_completed(now);
    }

    /// Asks for a regular announce before the interval is up (we need peers): due at `now`,
    /// or when `min interval` since the last announce has passed. Ignored while starting,
    /// backing off, stopping or with an announce in flight.
    pub fn announce_soon(&mut self, now: Instant) {
        if self.phase != Phase::Active || !self.acked || self.failures > 0 {
            return;
        }
        if self.in_flight.is_some() {
            return;
        }
        let earliest = self.last_sent_at.map_or(now, |t| t + self.min_interval);
        self.due_at = self.due_at.min(earliest.max(now));
    }

    /// Ends the session: `stopped` becomes due at `now` if the tracker lists us (or may, with
    /// an announce in flight); otherwise the schedule is done at once.
    pub fn shutdown(&mut self, now: Instant) {
        if self.phase != Phase::Active {
            return;
        }
        if self.acked || self.in_flight.is_some() {
            self.phase = Phase::Stopping;
            self.stop_at = now;
        } else {
            self.phase = Phase::Done;
        }
    }

    /// The announce to send now, if one is due; it is then in flight until its outcome is
    /// reported.
    #[must_use]
    pub fn poll_announce(&mut self, now: Instant) -> Option<AnnounceRequest> {
        let (at, event) = self.next_announce()?;
        if now < at {
            return None;
        }
        self.in_flight = Some(InFlight {
            event,
            left: self.progress.left,
        });
        self.last_sent_at = Some(now);
        Some(AnnounceRequest {
            info_hash: self.params.info_hash,
            peer_id: self.params.peer_id,
            port: self.params.port,
            uploaded: self.progress.uploaded,
            downloaded: self.progress.downloaded,
            left: self.progress.left,
            event,
            // A leaving peer needs no peers; saying so spares the tracker the work.
            numwant: if event == Event::Stopped {
                Some(0)
            } else {
                self.params.numwant
            },
            key: self.params.key,
            tracker_id: self.tracker_id.clone(),
        })
    }

    /// Feeds the body of the HTTP reply to the announce in flight. A malformed reply or a
    /// `failure reason` counts as a failed announce (retried with back-off) and is returned.
    pub fn handle_response(
        &mut self,
        body: &[u8],
        now: Instant,
    ) -> Result<AnnounceResponse, TrackerError> {
        if self.in_flight.is_none() {
            return Err(TrackerError::NoAnnounceInFlight);
        }
        match parse_response(body) {
            Ok(reply) => {
                self.handle_reply(&reply, now)?;
                Ok(reply)
            }
            Err(e) => {
                self.handle_failure(now);
                Err(e)
            }
        }
    }

    /// Feeds an already parsed successful reply to the announce in flight.
    pub fn handle_reply(
        &mut self,
        reply: &AnnounceResponse,
        now: Instant,
    ) -> Result<(), TrackerError> {
        let sent = self
            .in_flight
            .take()
            .ok_or(TrackerError::NoAnnounceInFlight)?;
        self.failures = 0;
        if let Some(id) = &reply.tracker_id {
            self.tracker_id = Some(id.clone());
        }
        if let Some(secs) = reply.interval_secs {
            self.interval = Duration::from_secs(secs.into()).clamp(INTERVAL_MIN, INTERVAL_MAX);
        }
        if let Some(secs) = reply.min_interval_secs {
            self.min_interval = Duration::from_secs(secs.into());
        }
        // The interval may have shrunk below an earlier `min interval`.
        self.min_interval = self.min_interval.clamp(MIN_INTERVAL_FLOOR, self.interval);
        match sent.event {
            Event::Stopped => {
                self.phase = Phase::Done;
                return Ok(());
            }
            Event::Completed => {
                self.completed_done = true;
                self.acked_incomplete = false;
            }
            Event::Started | Event::None => self.acked_incomplete |= sent.left > 0,
        }
        self.acked = true;
        self.due_at = now + self.interval;
        self.stop_at = now;
        self.refresh_completed(now);
        Ok(())
    }

    /// Reports that the announce in flight failed (transport error, HTTP error, timeout
    /// decided by the driver). Retries back off from [`RETRY_FIRST`] to [`RETRY_MAX`];
    /// `stopped` is never retried. Ignored when nothing is in flight.
    pub fn handle_failure(&mut self, now: Instant) {
        let Some(sent) = self.in_flight.take() else {
            return;
        };
        self.failures = self.failures.saturating_add(1);
        match self.phase {
            Phase::Active => self.due_at = now + self.retry_delay(),
            Phase::Stopping if sent.event != Event::Stopped && self.acked => self.stop_at = now,
            Phase::Stopping | Phase::Done => self.phase = Phase::Done,
        }
    }

    /// `RETRY_FIRST * 2^(failures - 1)`, at most `RETRY_MAX`.
    fn retry_delay(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(16);
        (RETRY_FIRST * (1u32 << doublings)).min(RETRY_MAX)
    }

    fn refresh_completed(&mut self, now: Instant) {
        let due = self.phase == Phase::Active
            && self.acked_incomplete
            && !self.completed_done
            && self.progress.left == 0;
        self.completed_due_at = match (due, self.completed_due_at) {
            (true, Some(since)) => Some(since),
            (true, None) => Some(now),
            (false, _) => None,
        };
    }
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
