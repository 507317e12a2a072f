//! Piece verification off the shard thread: worker threads read a finished piece back from
//! the page cache, SHA-1 it, make the good ones durable (`fdatasync` of the files they
//! touch) and only then report them — so a piece is on stable storage before anyone hears
//! we have it (`have` messages, the resume file).
//!
//! Workers drain every queued job before syncing, so under load one `fdatasync` per file
//! covers many pieces.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha1::{Digest, Sha1};

use crate::metainfo::{Layout, PieceIndex};

/// Where verdicts go: `(piece, good)`, good pieces already durable.
pub type Verdicts = Arc<dyn Fn(PieceIndex, bool) + Send + Sync>;

/// Pieces a worker hashes before it syncs and reports (bounds the reporting delay).
const BATCH_PIECES_MAX: usize = 64;

/// The worker pool. Dropping it stops the workers once the queue is empty.
pub struct Hasher {
    tx: Option<Sender<PieceIndex>>,
    threads: Vec<JoinHandle<()>>,
}

struct Ctx {
    layout: Layout,
    hashes: Vec<[u8; 20]>,
    files: Vec<Option<File>>,
    verdicts: Verdicts,
}

impl Hasher {
    /// Starts `threads` workers over the torrent's files (`None`: zero-length).
    pub fn spawn(
        layout: Layout,
        hashes: Vec<[u8; 20]>,
        files: Vec<Option<File>>,
        threads: usize,
        verdicts: Verdicts,
    ) -> Hasher {
        let (tx, rx) = mpsc::channel::<PieceIndex>();
        let rx = Arc::new(Mutex::new(rx));
        let ctx = Arc::new(Ctx {
            layout,
            hashes,
            files,
            verdicts,
        });
        let threads = (0..threads.max(1))
            .map(|i| {
                let (rx, ctx) = (rx.clone(), ctx.clone());
                std::thread::Builder::new()
                    .name(format!("hasher-{i}"))
                    .spawn(move || worker(&rx, &ctx))
                    .expect("spawn hasher thread")
            })
            .collect();
        Hasher {
            tx: Some(tx),
            threads,
        }
    }

    /// Queues a piece whose every block is written (in the page cache).
    pub fn submit(&self, piece: PieceIndex) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(piece);
        }
    }
}

impl Drop for Hasher {
    fn drop(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker(rx: &Mutex<Receiver<PieceIndex>>, ctx: &Ctx) {
    let mut buf = Vec::new();
    loop {
        let mut batch = Vec::new();
        {
            let rx = rx.lock().expect("hasher queue");
            match rx.recv() {
                Ok(p) => batch.push(p),
                Err(_) => return,
            }
            while batch.len() < BATCH_PIECES_MAX {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
        }
        let mut results = Vec::with_capacity(batch.len());
        let mut touched = BTreeSet::new();
        for piece in batch {
            let good = hash_piece(ctx, piece, &mut buf);
            if good {
                touched.extend(
                    ctx.layout
                        .spans(piece, 0, ctx.layout.piece_len(piece))
                        .map(|s| s.file),
                );
            }
            results.push((piece, good));
        }
        let mut synced = true;
        for f in touched {
            if let Some(file) = &ctx.files[f] {
                if let Err(e) = file.sync_data() {
                    tracing::error!("fdatasync of file {f} failed: {e}");
                    synced = false;
                }
            }
        }
        for (piece, good) in results {
            // A piece that could not be made durable is reported bad: it is downloaded
            // again rather than announced while it might not survive a crash.
            (ctx.verdicts)(piece, good && synced);
        }
    }
}

fn hash_piece(ctx: &Ctx, piece: PieceIndex, buf: &mut Vec<u8>) -> bool {
    let len = ctx.layout.piece_len(piece) as usize;
    buf.resize(len, 0);
    let mut at = 0;
    for s in ctx.layout.spans(piece, 0, len as u32) {
        let Some(file) = &ctx.files[s.file] else {
            return false;
        };
        let part = &mut buf[at..at + s.len as usize];
        if let Err(e) = file.read_exact_at(part, s.offset) {
            tracing::error!("reading piece {} back failed: {e}", piece.get());
            return false;
        }
        at += s.len as usize;
    }
    let digest: [u8; 20] = Sha1::digest(&buf[..]).into();
    digest == ctx.hashes[piece.idx()]
}
