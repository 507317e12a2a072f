//! What an announce says (transport-neutral) and its HTTP GET URL (BEP 3, BEP 23 `compact`).

use std::fmt::Write;

use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::TrackerError;
use crate::metainfo::{InfoHash, PeerId};

/// Bytes escaped in query values: everything but RFC 3986 unreserved characters, which is
/// what BEP 3 asks for binary `info_hash`/`peer_id` and what every tracker decodes.
pub(super) const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The `event` of an announce (BEP 3).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Event {
    /// A regular re-announce: no `event` parameter.
    None,
    /// First announce of a session.
    Started,
    /// The download finished during this session (sent once).
    Completed,
    /// The session ends.
    Stopped,
}

impl Event {
    /// The `event` parameter value, `None` for regular announces.
    pub fn as_param(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
        }
    }
}

/// One announce, independent of transport (the UDP protocol of BEP 15 carries the same).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Our peer id.
    pub peer_id: PeerId,
    /// The port we accept peers on.
    pub port: u16,
    /// Payload bytes sent to peers this session.
    pub uploaded: u64,
    /// Payload bytes received and verified this session.
    pub downloaded: u64,
    /// Bytes we still need (0 for a seeder).
    pub left: u64,
    /// The event, or [`Event::None`] for a regular announce.
    pub event: Event,
    /// How many peers we would like; `None` leaves it to the tracker.
    pub numwant: Option<u32>,
    /// Our random session key, so the tracker can recognise us if our IP changes.
    pub key: u32,
    /// The `tracker id` the tracker gave us earlier, echoed back.
    pub tracker_id: Option<Vec<u8>>,
}

/// The GET URL for `req` against the tracker's `announce` URL.
///
/// An announce URL that already has a query (`?passkey=…`) keeps it and gets ours appended
/// with `&`; a `#fragment` is dropped, as browsers never send one.
pub fn announce_url(announce: &str, req: &AnnounceRequest) -> Result<String, TrackerError> {
    let scheme_ok = ["http://", "https://"].iter().any(|s| {
        announce
            .get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
    });
    if !scheme_ok {
        return Err(TrackerError::UnsupportedScheme {
            url: announce.to_owned(),
        });
    }
    let base = announce.split_once('#').map_or(announce, |(b, _)| b);
    let mut url = String::with_capacity(base.len() + 256);
    url.push_str(base);
    match base.find('?') {
        None => url.push('?'),
        Some(_) if base.ends_with(['?', '&']) => {}
        Some(_) => url.push('&'),
    }
    // Writing into a String cannot fail; the results are ignored for that reason.
    let _ = write!(
        url,
        "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&key={:08x}",
        percent_encode(&req.info_hash.0, ESCAPED),
        percent_encode(&req.peer_id.0, ESCAPED),
        req.port,
        req.uploaded,
        req.downloaded,
        req.left,
        req.key,
    );
    if let Some(event) = req.event.as_param() {
        let _ = write!(url, "&event={event}");
    }
    if let Some(n) = req.numwant {
        let _ = write!(url, "&numwant={n}");
    }
    if let Some(id) = &req.tracker_id {
        let _ = write!(url, "&trackerid={}", percent_encode(id, ESCAPED));
    }
    Ok(url)
}
