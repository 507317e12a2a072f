//! Hashing throughput against its ceiling, measured in one run: single-core SHA-1 speed in
//! memory (the baseline), then `create` and `verify` on all cores over a data set in the page
//! cache, once per read mode (`pread`, `mmap`). Target: each reaches at least
//! 0.9 x cores x single-core.
//!
//! `cargo bench --bench hashing`; `RINGSEED_BENCH_BYTES` sets the data size (default 1 GiB),
//! `RINGSEED_BENCH_FILES` how many files it is split into (default 7),
//! `RINGSEED_BENCH_RUNS` the repetitions per measurement (default 3, best kept) and
//! `RINGSEED_BENCH_THREADS` the hashing threads (default one per core). GB means 10^9 bytes.
//! The extra "in-memory all-cores" column hashes a buffer on every core at once with no I/O:
//! it separates what the hardware allows (cores scaling) from what the pipeline costs.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use ringseed::hash::{self, CreateOptions, Progress, ReadMode, VerifyOptions};
use sha1::{Digest, Sha1};

/// Files the data set is split into by default: unequal sizes so pieces straddle file
/// boundaries.
const FILES_DEFAULT: u64 = 7;
/// The read modes compared, in the order they run within each repetition.
const READ_MODES: [ReadMode; 2] = [ReadMode::Pread, ReadMode::Mmap];
/// In-memory buffer for the baseline: larger than the 260 MiB L3 of the machine we measure
/// on, so the baseline reads from DRAM like hashing page-cache data does.
const BASELINE_BUFFER_BYTES: usize = 512 << 20;
/// Chunk hashed per digest in the baseline, the size of a typical piece.
const BASELINE_PIECE_BYTES: usize = 1 << 20;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Fast non-repeating filler (xorshift64): incompressible, so nothing downstream can cheat.
fn fill(buf: &mut [u8], state: &mut u64) {
    for chunk in buf.chunks_mut(8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

fn write_data_set(root: &Path, total_bytes: u64, files: u64) {
    std::fs::create_dir_all(root).unwrap();
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut buf = vec![0u8; 8 << 20];
    let mut left = total_bytes;
    for i in 0..files {
        // Sizes grow with i and are never piece-aligned; the last file takes the remainder.
        let share = total_bytes * (i + 1) / (files * (files + 1) / 2) + 12_345;
        let len = if i == files - 1 {
            left
        } else {
            share.min(left)
        };
        left -= len;
        let mut f = File::create(root.join(format!("part-{i:06}.bin"))).unwrap();
        let mut todo = len;
        while todo > 0 {
            let n = todo.min(buf.len() as u64) as usize;
            fill(&mut buf[..n], &mut state);
            f.write_all(&buf[..n]).unwrap();
            todo -= n as u64;
        }
        // Written back now, so write-back does not compete with the measurements.
        f.sync_all().unwrap();
    }
}

/// Reads every file once so the measurements run against the page cache.
fn warm(root: &Path) {
    let mut buf = vec![0u8; 8 << 20];
    for entry in std::fs::read_dir(root).unwrap() {
        let mut f = File::open(entry.unwrap().path()).unwrap();
        while f.read(&mut buf).unwrap() > 0 {}
    }
}

fn gbps(bytes: u64, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

/// SHA-1 over an in-memory buffer on `threads` threads at once, hashed as 1 MiB pieces for at
/// least 1 s each; returns the summed rate. With one thread this is the single-core baseline;
/// with all cores it shows what the hardware gives when no I/O is involved at all.
fn in_memory_gbps(buf: &[u8], threads: usize) -> f64 {
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| s.spawn(|| hash_for_a_second(buf)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    })
}

fn hash_for_a_second(buf: &[u8]) -> f64 {
    let started = Instant::now();
    let mut bytes = 0u64;
    let mut sink = 0u8;
    while started.elapsed() < Duration::from_secs(1) {
        for piece in buf.chunks(BASELINE_PIECE_BYTES) {
            sink ^= Sha1::digest(piece)[0];
        }
        bytes += buf.len() as u64;
    }
    std::hint::black_box(sink);
    gbps(bytes, started.elapsed())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Best create and verify rates of one read mode, GB/s.
#[derive(Clone, Copy, Default)]
struct Best {
    create: f64,
    verify: f64,
}

/// One `create` then one `verify` of `root` in `mode`; keeps the better rates in `best`.
/// Returns the piece length chosen.
fn create_and_verify(root: &Path, cores: usize, mode: ReadMode, best: &mut Best) -> u32 {
    let total_bytes = dir_bytes(root);
    let opts = CreateOptions {
        creation_date: None,
        threads: cores,
        read_mode: mode,
        ..CreateOptions::default()
    };
    let started = Instant::now();
    let (_, meta) = hash::create_torrent(root, &opts, &Progress::new()).unwrap();
    best.create = best.create.max(gbps(total_bytes, started.elapsed()));
    let options = VerifyOptions {
        threads: cores,
        read_mode: mode,
    };
    let report = hash::verify(
        &meta.info,
        root.parent().unwrap(),
        &options,
        &Progress::new(),
    )
    .unwrap();
    assert!(report.is_ok(), "freshly created data must verify");
    best.verify = best.verify.max(report.bytes_per_second() / 1e9);
    meta.info.piece_length
}

fn dir_bytes(root: &Path) -> u64 {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn main() {
    let total_bytes = env_u64("RINGSEED_BENCH_BYTES", 1 << 30);
    let files = env_u64("RINGSEED_BENCH_FILES", FILES_DEFAULT).max(1);
    let runs = env_u64("RINGSEED_BENCH_RUNS", 3).max(1);
    let cores = env_u64("RINGSEED_BENCH_THREADS", 0) as usize;
    let cores = if cores == 0 {
        hash::default_threads()
    } else {
        cores
    };
    // As `ringseed create`/`verify` do: required before mmap reading.
    hash::install_sigbus_guard().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bench-release");
    eprintln!(
        "writing {total_bytes} bytes in {files} files to {}",
        root.display()
    );
    write_data_set(&root, total_bytes, files);
    warm(&root);
    let mut baseline_buf = vec![0u8; BASELINE_BUFFER_BYTES];
    fill(&mut baseline_buf, &mut 42);
    let load_before = loadavg();

    let (mut single, mut parallel) = (0f64, 0f64);
    let mut best = [Best::default(); READ_MODES.len()];
    let mut piece_length = 0;
    for run in 1..=runs {
        single = single.max(in_memory_gbps(&baseline_buf, 1));
        parallel = parallel.max(in_memory_gbps(&baseline_buf, cores));
        for (mode, best) in READ_MODES.iter().zip(&mut best) {
            piece_length = create_and_verify(&root, cores, *mode, best);
        }
        eprintln!("run {run}/{runs} done");
    }

    let ceiling = cores as f64 * single;
    println!(
        "hashing: {total_bytes} bytes in {files} files, piece length {piece_length}, \
         best of {runs}"
    );
    println!("load average before: {load_before}, after: {}", loadavg());
    println!(
        "single-core SHA-1 {single:.2} GB/s, {cores} cores, in-memory all-cores {parallel:.2} \
         GB/s = {:.2} x (cores*single)",
        parallel / ceiling
    );
    println!(
        "| read mode | create GB/s | verify GB/s | create/(cores*single) | verify/(cores*single) |"
    );
    println!("|---|---|---|---|---|");
    for (mode, best) in READ_MODES.iter().zip(&best) {
        println!(
            "| {mode:?} | {:.2} | {:.2} | {:.2} | {:.2} |",
            best.create,
            best.verify,
            best.create / ceiling,
            best.verify / ceiling
        );
    }
}
