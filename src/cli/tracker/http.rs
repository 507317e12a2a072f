//! SHELL CODE: the tracker's HTTP side on `tiny_http`: `/announce` and `/scrape` are parsed by
//! the sans-IO front and routed to the owning shards; `/metrics` renders Prometheus text.

use std::net::SocketAddr;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::metrics::Metrics;
use super::worker::{shard_of, ShardHandle, ShardMsg};
use crate::tracker::server::http::{failure, parse_announce, parse_scrape, scrape_reply};
use crate::tracker::server::ServerError;

/// How long an HTTP request waits for its shard.
const SHARD_REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// The running HTTP side.
pub struct HttpServer {
    server: Arc<tiny_http::Server>,
    thread: JoinHandle<()>,
}

impl HttpServer {
    /// Stops accepting and joins the thread.
    pub fn stop(self) {
        self.server.unblock();
        let _ = self.thread.join();
    }
}

/// Binds `addr` and serves on a thread.
pub fn spawn(
    addr: SocketAddr,
    shards: Vec<ShardHandle>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<HttpServer> {
    let server = Arc::new(
        tiny_http::Server::http(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on HTTP {addr}: {e}"))?,
    );
    let s = server.clone();
    let thread = std::thread::Builder::new()
        .name("tracker-http".into())
        .spawn(move || {
            for req in s.incoming_requests() {
                let (status, ctype, body) = handle(&req, &shards, &metrics);
                crate::metrics::respond(req, status, ctype, body);
            }
        })?;
    Ok(HttpServer { server, thread })
}

fn handle(
    req: &tiny_http::Request,
    shards: &[ShardHandle],
    metrics: &Metrics,
) -> (u16, &'static str, Vec<u8>) {
    const BENCODE: &str = "text/plain";
    let url = req.url();
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let Some(src) = req.remote_addr().map(|a| a.ip()) else {
        return (400, BENCODE, failure(&ServerError::MissingParam("source")));
    };
    match path {
        "/announce" => {
            metrics.http_request("announce");
            let a = match parse_announce(query, src) {
                Ok(a) => a,
                Err(e) => return (200, BENCODE, failure(&e)),
            };
            let owner = shard_of(&a.announce.info_hash, shards.len());
            let (tx, rx) = sync_channel(1);
            if !shards[owner].send(ShardMsg::HttpAnnounce(Box::new(a), tx)) {
                return (503, BENCODE, b"d14:failure reason4:busye".to_vec());
            }
            match rx.recv_timeout(SHARD_REPLY_TIMEOUT) {
                Ok(body) => (200, BENCODE, body),
                Err(_) => (503, BENCODE, b"d14:failure reason4:busye".to_vec()),
            }
        }
        "/scrape" => {
            metrics.http_request("scrape");
            let hashes = match parse_scrape(query) {
                Ok(h) => h,
                Err(e) => return (200, BENCODE, failure(&e)),
            };
            let (tx, rx) = sync_channel(shards.len());
            let mut asked = 0;
            for s in shards {
                asked += usize::from(s.send(ShardMsg::HttpScrape(hashes.clone(), tx.clone())));
            }
            let mut stats = Vec::new();
            for _ in 0..asked {
                match rx.recv_timeout(SHARD_REPLY_TIMEOUT) {
                    Ok(part) => stats.extend(part),
                    Err(_) => return (503, BENCODE, b"d14:failure reason4:busye".to_vec()),
                }
            }
            (200, BENCODE, scrape_reply(&stats))
        }
        "/metrics" => (
            200,
            crate::metrics::OPENMETRICS_CONTENT_TYPE,
            metrics.render().into_bytes(),
        ),
        _ => (404, BENCODE, failure(&ServerError::MissingParam("path"))),
    }
}
