//! `kill -9` against the resume protocol: this test binary re-runs itself as a child that
//! downloads (writes pieces, syncs, captures, saves resume data as the module docs say) and is
//! killed at varied moments; after every kill the saved resume data must load, and every piece
//! it claims must hash correctly on disk.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use super::*;
use crate::metainfo::{FileEntry, BLOCK_BYTES};
use crate::storage::Preallocate;

/// Set in the child's environment: the directory it downloads into.
const CHILD_ENV: &str = "RINGSEED_RESUME_CRASH_DIR";
const CHILD_TEST: &str = "storage::resume::crash_tests::crash_child";
const PIECE: u32 = 16 * 1024;
const PIECES: u32 = 512;
/// File boundaries fall inside pieces; the 1-byte file sits inside one.
const FILES: &[(&str, u64)] = &[("a", 3_000_000), ("b", 1), ("c", 5_388_607)];
const HASH: InfoHash = InfoHash([3; 20]);

fn byte(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn torrent() -> Info {
    let total = (PIECES * PIECE) as usize;
    assert_eq!(FILES.iter().map(|f| f.1).sum::<u64>(), total as u64);
    let data: Vec<u8> = (0..total).map(byte).collect();
    Info {
        name: "crash".to_owned(),
        piece_length: PIECE,
        pieces: data
            .chunks(PIECE as usize)
            .map(|p| Sha1::digest(p).into())
            .collect(),
        files: FILES
            .iter()
            .map(|(p, len)| FileEntry {
                path: vec![(*p).to_owned()],
                length: *len,
            })
            .collect(),
        multi_file: true,
        private: false,
    }
}

/// The child: resumes (or rechecks), then writes the missing pieces in a scrambled order,
/// block by block, syncing after each piece and saving resume data after every other one.
fn download(dir: &Path) {
    let info = torrent();
    let (out, resume) = (dir.join("out"), dir.join("crash.resume"));
    let storage = DownloadStorage::prepare(&info, &out, Preallocate::Sparse).unwrap();
    let layout = storage.layout().clone();
    let trusted = match ResumeData::load(&resume) {
        Ok(Some(saved)) => saved.validate(HASH, &layout, storage.found()).ok().cloned(),
        _ => None,
    };
    let mut have = trusted.unwrap_or_else(|| recheck(&info, &out, 1, &Progress::new()).unwrap());
    let order = (0..PIECES).map(|i| (i * 37 + std::process::id()) % PIECES);
    for (n, index) in order.enumerate() {
        let piece = layout.piece(index).unwrap();
        if have.get(piece) {
            continue;
        }
        let start = layout.piece_start(piece) as usize;
        for b in 0..layout.blocks_in_piece(piece) {
            let offset = b * BLOCK_BYTES;
            let block = layout.block(index, offset, BLOCK_BYTES).unwrap();
            let at = start + offset as usize;
            let data: Vec<u8> = (at..at + BLOCK_BYTES as usize).map(byte).collect();
            storage.write_block(block, &data).unwrap();
        }
        storage.sync_all().unwrap();
        have.set(piece);
        if n % 2 == 1 {
            ResumeData::capture(HASH, have.clone(), &storage)
                .unwrap()
                .save(&resume)
                .unwrap();
        }
    }
    storage.sync_all().unwrap();
    ResumeData::capture(HASH, have, &storage)
        .unwrap()
        .save(&resume)
        .unwrap();
}

#[test]
#[ignore = "child process of kill_9_at_any_moment_never_loses_or_fakes_a_verified_piece"]
fn crash_child() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        download(Path::new(&dir));
    }
}

fn spawn_child(dir: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--ignored", "--test-threads=1", "-q"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn kill_9_at_any_moment_never_loses_or_fakes_a_verified_piece() {
    // After each SIGKILL the resume file loads (never torn), every piece it claims is good on
    // disk, and the claimed set never shrinks; a final uninterrupted run is trusted and full.
    let dir = tempfile::tempdir().unwrap();
    let info = torrent();
    let (out, resume) = (dir.path().join("out"), dir.path().join("crash.resume"));
    let mut claimed_before = 0;
    for round in 0..12u64 {
        let mut child = spawn_child(dir.path());
        // Kill early and at scattered moments, so most rounds die mid-piece or mid-save.
        std::thread::sleep(Duration::from_millis(15 + round * 23 % 90));
        let _ = child.kill(); // SIGKILL; it may already have finished
        child.wait().unwrap();
        let Some(saved) = ResumeData::load(&resume).expect("resume file is never torn") else {
            continue;
        };
        let on_disk = recheck(&info, &out, 2, &Progress::new()).unwrap();
        for piece in info.layout().pieces().filter(|&p| saved.have.get(p)) {
            assert!(
                on_disk.get(piece),
                "round {round}: claimed piece {piece:?} is bad"
            );
        }
        assert!(
            saved.have.count() >= claimed_before,
            "round {round}: pieces lost"
        );
        claimed_before = saved.have.count();
    }
    let mut child = spawn_child(dir.path());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "child did not finish");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success());
    let storage = DownloadStorage::prepare(&info, &out, Preallocate::Sparse).unwrap();
    let saved = ResumeData::load(&resume).unwrap().unwrap();
    let have = saved
        .validate(HASH, storage.layout(), storage.found())
        .unwrap();
    assert!(have.is_full(), "{} of {PIECES}", have.count());
    assert!(recheck(&info, &out, 0, &Progress::new()).unwrap().is_full());
}
