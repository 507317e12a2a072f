//! SHELL CODE: Prometheus/OpenMetrics exposition shared by the seeder and the tracker: the
//! text rendering of a `prometheus-client` registry and a `tiny_http` thread that serves it
//! at `/metrics`.
//!
//! Control plane only. The server thread renders on each scrape from whatever the registry's
//! metrics read (atomics, or snapshots the data-plane threads publish); it never reaches into
//! a shard.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use prometheus_client::registry::Registry;

/// The content type of [`render`]'s output (OpenMetrics text 1.0).
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry as OpenMetrics text, ending with `# EOF`.
pub fn render(registry: &Registry) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail; a collector's own error leaves a partial page.
    if let Err(e) = prometheus_client::encoding::text::encode(&mut s, registry) {
        tracing::warn!("metrics rendering failed: {e}");
    }
    s
}

/// Answers `req` with `status`, a `Content-Type` and `body`; a client that hung up is ignored.
pub fn respond(req: tiny_http::Request, status: u16, content_type: &str, body: Vec<u8>) {
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
        .expect("content types are ASCII");
    let resp = tiny_http::Response::from_data(body)
        .with_status_code(status)
        .with_header(header);
    let _ = req.respond(resp);
}

/// A thread serving `GET /metrics` (and 404 for anything else).
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: JoinHandle<()>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` (port 0: any free port) and serves `registry` on a thread named `name`.
    pub fn spawn(
        addr: SocketAddr,
        name: &str,
        registry: Arc<Registry>,
    ) -> anyhow::Result<MetricsServer> {
        let server = Arc::new(
            tiny_http::Server::http(addr)
                .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?,
        );
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| anyhow::anyhow!("metrics server is not on an IP address"))?;
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for req in s.incoming_requests() {
                    let path = req.url().split('?').next().unwrap_or("");
                    if path == "/metrics" {
                        let body = render(&registry).into_bytes();
                        respond(req, 200, OPENMETRICS_CONTENT_TYPE, body);
                    } else {
                        respond(req, 404, "text/plain", b"only /metrics here\n".to_vec());
                    }
                }
            })?;
        Ok(MetricsServer {
            server,
            thread,
            addr: bound,
        })
    }

    /// The address it listens on (with the port resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and joins the thread.
    pub fn stop(self) {
        self.server.unblock();
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    fn status(response: &str) -> &str {
        response.split_whitespace().nth(1).unwrap_or("")
    }

    #[test]
    fn serves_the_registry_at_metrics_and_404_elsewhere() {
        // A scrape sees the counter's current value in OpenMetrics text; other paths are 404.
        let counter = Counter::<u64>::default();
        let mut registry = Registry::with_prefix("test");
        registry.register("things", "Things seen", counter.clone());
        counter.inc_by(41);
        let localhost = "127.0.0.1:0".parse().unwrap();
        let server = MetricsServer::spawn(localhost, "test-metrics", Arc::new(registry)).unwrap();
        counter.inc();
        let page = get(server.local_addr(), "/metrics");
        assert_eq!(status(&page), "200", "{page}");
        assert!(page.contains("application/openmetrics-text"), "{page}");
        assert!(page.contains("\ntest_things_total 42\n"), "{page}");
        assert!(page.trim_end().ends_with("# EOF"), "{page}");
        assert_eq!(status(&get(server.local_addr(), "/other")), "404");
        server.stop();
    }
}
