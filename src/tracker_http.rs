//! SHELL CODE: the HTTP tracker client's I/O — a blocking HTTP GET with `ureq`.
//!
//! [`crate::tracker`] is sans-IO; a driver builds the URL with
//! [`announce_url`](crate::tracker::announce_url), calls [`announce_blocking`] on a thread that
//! may block, and feeds the body to
//! [`AnnounceScheduler::handle_response`](crate::tracker::AnnounceScheduler::handle_response).

use std::time::Duration;

use crate::tracker::{parse_response, TrackerError, RESPONSE_BYTES_MAX};

/// Performs the announce GET on `url` and returns the reply body (at most
/// [`RESPONSE_BYTES_MAX`] bytes), with `timeout` covering the whole exchange (DNS, connect,
/// redirects, body). A non-2xx status is [`TrackerError::HttpStatus`], unless its body is a
/// bencoded `failure reason`, which is returned as [`TrackerError::Failure`] since that says
/// more.
pub fn announce_blocking(url: &str, timeout: Duration) -> Result<Vec<u8>, TrackerError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("ringseed/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(transport)?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(RESPONSE_BYTES_MAX as u64)
        .read_to_vec()
        .map_err(transport)?;
    if !(200..300).contains(&status) {
        return match parse_response(&body) {
            Err(failure @ TrackerError::Failure { .. }) => Err(failure),
            _ => Err(TrackerError::HttpStatus { status }),
        };
    }
    Ok(body)
}

fn transport(e: ureq::Error) -> TrackerError {
    match e {
        ureq::Error::BodyExceedsLimit(_) => TrackerError::ResponseTooLarge {
            max: RESPONSE_BYTES_MAX,
        },
        other => TrackerError::Transport {
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    use super::*;

    /// A one-shot loopback HTTP server: answers one request with `response` (or, if `None`,
    /// holds the connection silent) and returns the request line it saw.
    fn serve_once(response: Option<Vec<u8>>) -> (String, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            match response {
                // The client may hang up early (oversized body); that is its right.
                Some(bytes) => drop((&stream).write_all(&bytes)),
                None => std::thread::sleep(Duration::from_secs(1)),
            }
            request_line.trim_end().to_owned()
        });
        (base, handle)
    }

    fn http_response(status: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn body_is_returned_and_the_query_is_sent_unchanged() {
        // The percent-encoded binary query reaches the server byte for byte.
        let (base, server) = serve_once(Some(http_response("200 OK", b"d8:intervali60ee")));
        let path = "/announce?info_hash=%00%FF%20a~&port=1";
        let body = announce_blocking(&format!("{base}{path}"), Duration::from_secs(5)).unwrap();
        assert_eq!(body, b"d8:intervali60ee");
        assert_eq!(server.join().unwrap(), format!("GET {path} HTTP/1.1"));
    }

    #[test]
    fn error_status_gives_the_failure_reason_or_the_status() {
        // A 4xx with a bencoded refusal yields its text; other error pages yield the status.
        let body = b"d14:failure reason12:unregisterede";
        let (base, server) = serve_once(Some(http_response("400 Bad Request", body)));
        let err = announce_blocking(&format!("{base}/a"), Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            err,
            TrackerError::Failure {
                reason: "unregistered".into()
            }
        );
        server.join().unwrap();
        let (base, server) = serve_once(Some(http_response("503 Busy", b"<html>")));
        let err = announce_blocking(&format!("{base}/a"), Duration::from_secs(5)).unwrap_err();
        assert_eq!(err, TrackerError::HttpStatus { status: 503 });
        server.join().unwrap();
    }

    #[test]
    fn oversized_body_is_refused() {
        // A body past RESPONSE_BYTES_MAX is an error, not a large allocation.
        let big = vec![b'x'; RESPONSE_BYTES_MAX + 1];
        let (base, server) = serve_once(Some(http_response("200 OK", &big)));
        let err = announce_blocking(&format!("{base}/a"), Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            err,
            TrackerError::ResponseTooLarge {
                max: RESPONSE_BYTES_MAX
            }
        );
        server.join().unwrap();
    }

    #[test]
    fn silent_tracker_times_out() {
        // A tracker that never answers costs at most the timeout.
        let (base, server) = serve_once(None);
        let started = std::time::Instant::now();
        let err = announce_blocking(&format!("{base}/a"), Duration::from_millis(300)).unwrap_err();
        assert!(matches!(err, TrackerError::Transport { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
        server.join().unwrap();
    }
}
