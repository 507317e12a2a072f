//! The swarm part of `ringseed demo`: several `ringseed get` processes, each on its own
//! 127.0.0.x address, download from one upload-capped seeder and from each other. Their
//! `--json` status lines are collected to draw how pieces spread and who uploaded what.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

/// One status line of a `get` peer (the fields the demo reads).
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Seconds since the swarm started.
    pub at_s: f64,
    /// Verified pieces.
    pub pieces: u64,
    /// Payload bytes received.
    pub downloaded: u64,
    /// Payload bytes sent.
    pub uploaded: u64,
    /// Every piece verified.
    pub complete: bool,
}

/// A running `ringseed get` peer and the thread reading its status lines.
pub struct Peer {
    /// Where it listens.
    pub addr: SocketAddr,
    child: Child,
    samples: Arc<Mutex<Vec<Sample>>>,
    reader: Option<JoinHandle<()>>,
    /// When it first reported complete (seconds since the swarm started).
    pub done_at_s: Option<f64>,
}

impl Peer {
    /// Starts `ringseed get` on `addr`, dialing `seeder` and the `others`; it keeps seeding
    /// until stopped, so late peers can still fetch from early ones.
    pub fn spawn(
        torrent: &Path,
        out: &Path,
        addr: SocketAddr,
        seeder: SocketAddr,
        others: &[SocketAddr],
        io: &str,
        started: Instant,
    ) -> anyhow::Result<Peer> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.arg("get")
            .arg(torrent)
            .arg("-o")
            .arg(out)
            .args(["--listen", &addr.to_string(), "--json", "--seed"])
            .args(["--no-announce", "--io", io])
            .args(["--peer", &seeder.to_string()]);
        for o in others.iter().filter(|o| **o != addr) {
            cmd.args(["--peer", &o.to_string()]);
        }
        let log = std::fs::File::create(out.with_extension("log"))?;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .context("cannot start a `ringseed get` peer")?;
        let stdout = child.stdout.take().expect("piped stdout");
        let samples = Arc::new(Mutex::new(Vec::new()));
        let sink = samples.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(s) = parse_status(&line, started.elapsed().as_secs_f64()) {
                    sink.lock().expect("samples").push(s);
                }
            }
        });
        Ok(Peer {
            addr,
            child,
            samples,
            reader: Some(reader),
            done_at_s: None,
        })
    }

    /// The latest status line.
    pub fn latest(&self) -> Sample {
        self.samples
            .lock()
            .expect("samples")
            .last()
            .copied()
            .unwrap_or_default()
    }

    /// Notes completion; true once complete.
    pub fn poll_done(&mut self) -> bool {
        let s = self.latest();
        if s.complete && self.done_at_s.is_none() {
            self.done_at_s = Some(s.at_s);
        }
        self.done_at_s.is_some()
    }

    /// The process ended before it was asked to (it crashed or refused its arguments).
    pub fn exited_early(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Stops the peer (SIGTERM, so it prints its final line) and returns its last status.
    pub fn stop(mut self) -> Sample {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && !self.exited_early() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.latest()
    }
}

fn parse_status(line: &str, at_s: f64) -> Option<Sample> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(Sample {
        at_s,
        pieces: v.get("pieces")?.as_u64()?,
        downloaded: v.get("downloaded")?.as_u64()?,
        uploaded: v.get("uploaded")?.as_u64()?,
        complete: v.get("complete")?.as_bool()?,
    })
}

/// One row of the spread chart: each peer's share of the pieces as a bar.
pub fn spread_row(at_s: f64, peers: &[Peer], pieces_total: u64) -> String {
    const WIDTH: u64 = 10;
    let mut row = format!("{at_s:5.1} s ");
    for p in peers {
        let have = p.latest().pieces.min(pieces_total);
        let filled = (have * WIDTH).div_ceil(pieces_total.max(1)).min(WIDTH) as usize;
        row.push_str(&format!(
            " {}{} {:3}%",
            "█".repeat(filled),
            "·".repeat(WIDTH as usize - filled),
            have * 100 / pieces_total.max(1)
        ));
    }
    row
}

/// The table printed when the swarm is done: who finished when, who uploaded what.
pub fn summary(
    finals: &[(SocketAddr, Option<f64>, Sample)],
    seeder_uploaded: Option<u64>,
    total_bytes: u64,
) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    let copies = |b: u64| b as f64 / total_bytes.max(1) as f64;
    let mut out = String::from(
        "peer  address              done at   downloaded     uploaded   uploaded copies\n",
    );
    for (i, (addr, done, s)) in finals.iter().enumerate() {
        let done = done.map_or("   -    ".to_string(), |t| format!("{t:6.1} s"));
        out.push_str(&format!(
            "{:<5} {:<20} {done}  {:8.1} MB  {:8.1} MB   {:5.2}\n",
            i + 1,
            addr.to_string(),
            mb(s.downloaded),
            mb(s.uploaded),
            copies(s.uploaded)
        ));
    }
    let peers_up: u64 = finals.iter().map(|(_, _, s)| s.uploaded).sum();
    let down: u64 = finals.iter().map(|(_, _, s)| s.downloaded).sum();
    if let Some(seed_up) = seeder_uploaded {
        out.push_str(&format!(
            "seeder                                             {:8.1} MB   {:5.2}\n",
            mb(seed_up),
            copies(seed_up)
        ));
    }
    let share = peers_up as f64 * 100.0 / down.max(1) as f64;
    out.push_str(&format!(
        "\nthe peers received {:.1} MB; {share:.0} % of it came from other peers, the rest \
         from the seeder.\n",
        mb(down)
    ));
    out
}

/// The seeder's own total from its log (`uploaded X MB in total`, written when it stops).
pub fn seeder_uploaded_from_log(log: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains("MB in total"))?;
    let at = line.find("uploaded ")? + "uploaded ".len();
    let number: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let mb: f64 = number.parse().ok()?;
    Some((mb * 1e6) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_of_get_are_understood() {
        // The fields the demo reads are the ones `get --json` prints.
        let line =
            r#"{"pieces":7,"pieces_total":10,"downloaded":100,"uploaded":50,"complete":false}"#;
        let s = parse_status(line, 1.5).expect("parsed");
        assert_eq!((s.pieces, s.downloaded, s.uploaded), (7, 100, 50));
        assert!(!s.complete);
        assert!(parse_status("not json", 0.0).is_none());
    }

    #[test]
    fn seeder_total_is_read_from_its_log() {
        // The seeder logs its total on exit; the demo reports it.
        let log = "x\n2026 INFO ringseed::seeder: uploaded 123.4 MB in total torrent=a\n";
        assert_eq!(seeder_uploaded_from_log(log), Some(123_400_000));
        assert_eq!(seeder_uploaded_from_log("nothing"), None);
    }
}
