//! Piece picker cost at the simulator's scale: one downloader with 50 connected peers over a
//! torrent of 2,000 pieces of 256 KiB (32,000 blocks). Each measurement downloads the whole
//! torrent — every peer keeps 8 requests outstanding, each step picks to refill and delivers
//! the oldest request, completed pieces are verified — so time / 32,000 is the cost of one
//! block's pick + arrival (+ 1/16 of a piece start and verification).
//!
//! Baseline in the same run: a naive rarest-first that scans all 2,000 pieces for every piece
//! it starts (what the bucketed index avoids); the ratio shows what the index buys. The
//! `_dense_index` rows use the dense availability layout the simulator uses
//! (`Picker::use_dense_availability`): slower for one picker in cache, which is why `get`
//! keeps the bucketed one.
//!
//! `cargo bench --bench picker`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use ringseed::metainfo::{Layout, PieceIndex};
use ringseed::torrent::{Arrival, Picker, PieceView};
use ringseed::wire::Bitfield;

const PIECES: u32 = 2_000;
const PIECE_BYTES: u32 = 256 * 1024;
const BLOCKS: u64 = PIECES as u64 * (PIECE_BYTES as u64 / (16 * 1024));
const PEERS: usize = 50;
const SEEDS: usize = 5;
const DEPTH: usize = 8;

/// 5 seeds and 45 peers that each hold a `fraction` of the pieces, drawn from a fixed seed.
fn swarm(layout: &Layout, fraction: f64) -> Vec<Bitfield> {
    let mut rng = SmallRng::seed_from_u64(42);
    (0..PEERS)
        .map(|i| {
            if i < SEEDS {
                return Bitfield::full(PIECES);
            }
            let mut b = Bitfield::empty(PIECES);
            for p in layout.pieces() {
                if rng.random_bool(fraction) {
                    b.set(p);
                }
            }
            b
        })
        .collect()
}

/// A picker that knows every peer's bitfield and already has the pieces in `have`.
fn announced(layout: &Layout, peers: &[Bitfield], have: Bitfield, dense: bool) -> Picker<usize> {
    let mut picker = Picker::new(layout, have, 7);
    if dense {
        assert!(picker.use_dense_availability());
    }
    for (k, bits) in peers.iter().enumerate() {
        picker.peer_bitfield(k, bits).unwrap();
    }
    picker
}

/// Downloads everything round-robin; returns the blocks delivered.
fn download(mut picker: Picker<usize>, peers: &[Bitfield]) -> u64 {
    let mut out = Vec::with_capacity(DEPTH);
    let mut cancel = Vec::new();
    let mut delivered = 0;
    while !picker.is_complete() {
        for (k, view) in peers.iter().enumerate() {
            let want = DEPTH - picker.outstanding(k);
            out.clear();
            picker.pick(k, view, want, &mut out);
            let Some(&block) = picker.requests(k).first() else {
                continue;
            };
            cancel.clear();
            if let Arrival::New { piece_complete } = picker.block_received(k, block, &mut cancel) {
                delivered += 1;
                if piece_complete {
                    picker.piece_verified(block.piece);
                }
            }
        }
    }
    delivered
}

/// The baseline: rarest first by scanning every piece's availability per piece started.
fn naive_rarest(
    avail: &[u32],
    wanted: &[bool],
    view: &impl PieceView,
    layout: &Layout,
) -> Option<PieceIndex> {
    layout
        .pieces()
        .filter(|p| wanted[p.idx()] && view.has(*p))
        .min_by_key(|p| avail[p.idx()])
}

fn bench(c: &mut Criterion) {
    let layout = Layout::new(PIECE_BYTES, &[u64::from(PIECES) * u64::from(PIECE_BYTES)]).unwrap();
    let mut group = c.benchmark_group("picker_2000x50");
    group.sample_size(10);
    group.throughput(Throughput::Elements(BLOCKS));
    for (name, fraction) in [("dense_50pct", 0.5), ("sparse_5pct", 0.05)] {
        let peers = swarm(&layout, fraction);
        for (index, dense) in [("", false), ("_dense_index", true)] {
            group.bench_function(format!("download_{name}{index}"), |b| {
                b.iter_batched(
                    || announced(&layout, &peers, Bitfield::empty(PIECES), dense),
                    |picker| assert_eq!(black_box(download(picker, &peers)), BLOCKS),
                    BatchSize::LargeInput,
                )
            });
        }
    }
    // Starting one piece past the random phase (4 pieces resumed) for a peer with 5 % of
    // the pieces: the index versus the naive scan.
    let mut have = Bitfield::empty(PIECES);
    for p in layout.pieces().take(4) {
        have.set(p);
    }
    let peers = swarm(&layout, 0.05);
    let mut avail = vec![0u32; PIECES as usize];
    for bits in &peers {
        for p in layout.pieces().filter(|&p| bits.get(p)) {
            avail[p.idx()] += 1;
        }
    }
    let wanted = vec![true; PIECES as usize];
    group.throughput(Throughput::Elements(1));
    group.sample_size(50);
    group.bench_function("naive_scan_start_piece_sparse_peer", |b| {
        b.iter(|| naive_rarest(&avail, &wanted, &peers[SEEDS], &layout))
    });
    for (index, dense) in [("", false), ("_dense_index", true)] {
        group.bench_function(format!("picker_start_piece_sparse_peer{index}"), |b| {
            b.iter_batched_ref(
                || announced(&layout, &peers, have.clone(), dense),
                |picker| {
                    let mut out = Vec::with_capacity(1);
                    picker.pick(SEEDS, &peers[SEEDS], 1, &mut out);
                    out
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
