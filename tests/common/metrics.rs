//! Scraping and checking a `/metrics` page (OpenMetrics text) from tests.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::wait_until;

/// `GET /metrics` over a plain socket; returns the status line's code and the body.
pub fn scrape(addr: SocketAddr) -> Option<(String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.to_string();
    Some((code, body.to_string()))
}

/// Checks the OpenMetrics text shape (every sample belongs to a declared family, values are
/// numbers, `# EOF` ends it) and returns the samples by name (labels included).
pub fn parse_openmetrics(text: &str) -> HashMap<String, f64> {
    assert!(text.ends_with("# EOF\n"), "no `# EOF` at the end:\n{text}");
    let mut families = HashSet::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().expect("TYPE names a family");
            families.insert(name.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').expect("sample is `name value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of `{line}` is not a number"));
        let base = name.split('{').next().unwrap();
        assert!(
            families.iter().any(|f| base.starts_with(f.as_str())),
            "sample `{line}` has no # TYPE line"
        );
        samples.insert(name.to_string(), value);
    }
    samples
}

pub fn metric(samples: &HashMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("no `{name}` in {samples:?}"))
}

/// Scrapes until `done` holds (or 20 s pass: shards publish once a second) and returns the
/// last page's samples.
pub fn scrape_until(
    addr: SocketAddr,
    done: impl Fn(&HashMap<String, f64>) -> bool,
) -> HashMap<String, f64> {
    let mut last = HashMap::new();
    wait_until(Duration::from_secs(20), || {
        let Some((code, body)) = scrape(addr) else {
            return false;
        };
        assert_eq!(code, "200", "{body}");
        last = parse_openmetrics(&body);
        done(&last)
    });
    last
}
