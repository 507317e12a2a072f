//! HTTP scrape (BEP 48): the scrape URL derived from an announce URL, and the reply's
//! `files` dict decoded under the same limits as announce replies.

use percent_encoding::percent_encode;

use super::response::RESPONSE_LIMITS;
use super::udp_proto::{ScrapeStats, SCRAPE_HASHES_MAX};
use super::TrackerError;
use crate::bencode::{decode, Value};
use crate::metainfo::InfoHash;

/// The scrape URL for `hashes` on the tracker whose announce URL is `announce`, or `None`
/// when the tracker has no scrape convention (the last path segment must start with
/// `announce`, BEP 48). At most [`SCRAPE_HASHES_MAX`] hashes are put in the URL.
pub fn scrape_url(announce: &str, hashes: &[InfoHash]) -> Option<String> {
    let base = announce.split_once('#').map_or(announce, |(b, _)| b);
    let (path, query) = base
        .split_once('?')
        .map_or((base, None), |(p, q)| (p, Some(q)));
    let slash = path.rfind('/')?;
    let last = &path[slash + 1..];
    let rest = last.strip_prefix("announce")?;
    let mut url = format!("{}/scrape{rest}", &path[..slash]);
    let mut sep = '?';
    if let Some(q) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
        sep = '&';
    }
    for h in hashes.iter().take(SCRAPE_HASHES_MAX) {
        url.push(sep);
        url.push_str("info_hash=");
        url.extend(percent_encode(&h.0, super::announce::ESCAPED));
        sep = '&';
    }
    Some(url)
}

/// Decodes a scrape reply into `(info_hash, counts)` pairs in the tracker's (sorted) order.
/// A `failure reason` becomes [`TrackerError::Failure`].
pub fn parse_scrape(body: &[u8]) -> Result<Vec<(InfoHash, ScrapeStats)>, TrackerError> {
    let root = decode(body, RESPONSE_LIMITS)?;
    let d = root.as_dict().ok_or(TrackerError::NotADict)?;
    if let Some(v) = d.get(b"failure reason") {
        let reason = v.as_bytes().unwrap_or(b"(not a string)");
        return Err(TrackerError::Failure {
            reason: String::from_utf8_lossy(reason).into_owned(),
        });
    }
    let bad = |reason| TrackerError::BadScrape { reason };
    let files = d
        .get(b"files")
        .ok_or_else(|| bad("no `files` dict"))?
        .as_dict()
        .ok_or_else(|| bad("`files` is not a dict"))?;
    let mut out = Vec::new();
    for (key, v) in &files.entries {
        let hash: [u8; 20] = (*key)
            .try_into()
            .map_err(|_| bad("a `files` key is not a 20-byte info-hash"))?;
        let stats = v
            .as_dict()
            .ok_or_else(|| bad("a `files` entry is not a dict"))?;
        let count = |field: &str| -> Result<u32, TrackerError> {
            match stats.get(field.as_bytes()) {
                None => Ok(0),
                Some(Value::Int(n)) => {
                    u32::try_from(*n).map_err(|_| bad("a count is outside 0..2^32"))
                }
                Some(_) => Err(bad("a count is not an integer")),
            }
        };
        out.push((
            InfoHash(hash),
            ScrapeStats {
                seeders: count("complete")?,
                completed: count("downloaded")?,
                leechers: count("incomplete")?,
            },
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_url_follows_the_announce_convention() {
        // `/announce` → `/scrape`, `/x/announce.php?k=1` → `/x/scrape.php?k=1&…`, others none.
        let h = InfoHash([0xff; 20]);
        assert_eq!(
            scrape_url("http://t:1/announce", &[h]).unwrap(),
            format!("http://t:1/scrape?info_hash={}", "%FF".repeat(20))
        );
        let u = scrape_url("http://t/x/announce.php?k=1", &[h, h]).unwrap();
        assert!(
            u.starts_with("http://t/x/scrape.php?k=1&info_hash=%FF"),
            "{u}"
        );
        assert_eq!(u.matches("info_hash=").count(), 2);
        assert_eq!(scrape_url("http://t/a", &[h]), None);
    }

    #[test]
    fn scrape_reply_is_decoded_and_bad_ones_named() {
        // Counts come out per hash; a broken key or a failure gives its own error.
        let mut body = b"d5:filesd20:".to_vec();
        body.extend_from_slice(&[7; 20]);
        body.extend_from_slice(b"d8:completei3e10:downloadedi9e10:incompletei2eeee");
        let got = parse_scrape(&body).unwrap();
        assert_eq!(
            got,
            vec![(
                InfoHash([7; 20]),
                ScrapeStats {
                    seeders: 3,
                    completed: 9,
                    leechers: 2
                }
            )]
        );
        let err = parse_scrape(b"d5:filesd3:abcdeee").unwrap_err();
        assert!(matches!(err, TrackerError::BadScrape { .. }), "{err}");
        let err = parse_scrape(b"d14:failure reason4:nopee").unwrap_err();
        assert_eq!(
            err,
            TrackerError::Failure {
                reason: "nope".into()
            }
        );
        assert!(parse_scrape(b"d5:filesi3ee").is_err());
    }
}
