use std::fs;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use sha1::{Digest, Sha1};

use super::*;
use crate::metainfo::{FileEntry, PieceIndex};
use crate::storage::Preallocate;

const PIECE: u32 = 16 * 1024;
/// Five pieces: piece 2 crosses from `a` over `empty` into `b`; the last one is short.
const FILES: &[(&str, u64)] = &[("a", 40_000), ("empty", 0), ("b", 30_000)];
const TOTAL: usize = 70_000;

fn stream() -> Vec<u8> {
    (0..TOTAL).map(|i| (i * 13 % 251) as u8 ^ 0x5a).collect()
}

/// A multi-file torrent over `stream()` with real piece hashes.
fn torrent() -> Info {
    let data = stream();
    let pieces = data
        .chunks(PIECE as usize)
        .map(|p| Sha1::digest(p).into())
        .collect();
    Info {
        name: "t".to_owned(),
        piece_length: PIECE,
        pieces,
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

const HASH: InfoHash = InfoHash([7; 20]);

fn piece(n: u32) -> PieceIndex {
    torrent().layout().piece(n).unwrap()
}

fn bits(count: u32, set: &[u32]) -> Bitfield {
    let mut have = Bitfield::empty(count);
    for &p in set {
        have.set(torrent().layout().piece(p).unwrap());
    }
    have
}

/// Writes piece `n` of the stream through the download storage.
fn write_piece(storage: &DownloadStorage, n: u32) {
    let layout = storage.layout();
    let p = layout.piece(n).unwrap();
    let start = layout.piece_start(p) as usize;
    let data = stream();
    for b in 0..layout.blocks_in_piece(p) {
        let offset = b * crate::metainfo::BLOCK_BYTES;
        let len = (layout.piece_len(p) - offset).min(16_384);
        let block = layout.block(n, offset, len).unwrap();
        let at = start + offset as usize;
        storage
            .write_block(block, &data[at..at + len as usize])
            .unwrap();
    }
}

fn sample() -> ResumeData {
    ResumeData {
        info_hash: HASH,
        have: bits(5, &[0, 2, 4]),
        files: vec![
            FileStat {
                size: 40_000,
                mtime_ns: 1_700_000_000_123_456_789,
            },
            FileStat {
                size: 0,
                mtime_ns: -5,
            },
            FileStat {
                size: 30_000,
                mtime_ns: 1_700_000_001_000_000_000,
            },
        ],
    }
}

#[test]
fn save_then_load_gives_back_the_same_resume_data() {
    // A saved resume file loads back equal, leaves no temp file, and a missing one is `None`.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.resume");
    assert!(ResumeData::load(&path).unwrap().is_none());
    sample().save(&path).unwrap();
    assert_eq!(ResumeData::load(&path).unwrap(), Some(sample()));
    assert!(!dir.path().join("t.resume.tmp").exists());
    let err = sample()
        .save(&dir.path().join("no/such/dir/r"))
        .unwrap_err();
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}

#[test]
fn a_torn_or_stale_temp_file_never_replaces_a_good_resume() {
    // A crash while writing the temp file (cut short) or before the rename (complete) leaves
    // the previous resume file in force; the next save overwrites the leftover and wins.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.resume");
    let tmp = dir.path().join("t.resume.tmp");
    sample().save(&path).unwrap();
    let mut newer = sample();
    newer.have = bits(5, &[0, 1, 2, 3, 4]);
    let encoded = newer.encode();
    fs::write(&tmp, &encoded[..encoded.len() / 2]).unwrap();
    assert_eq!(ResumeData::load(&path).unwrap(), Some(sample()));
    fs::write(&tmp, &encoded).unwrap();
    assert_eq!(ResumeData::load(&path).unwrap(), Some(sample()));
    newer.save(&path).unwrap();
    assert_eq!(ResumeData::load(&path).unwrap(), Some(newer));
    assert!(!tmp.exists());
}

#[test]
fn a_damaged_resume_file_is_an_error_never_partial_trust() {
    // Every prefix of a valid file, a zero-filled tail (what a crash can leave when a file is
    // written in place) and another version are refused with an error.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r");
    let encoded = sample().encode();
    for cut in 0..encoded.len() {
        fs::write(&path, &encoded[..cut]).unwrap();
        assert!(ResumeData::load(&path).is_err(), "prefix of {cut} bytes");
    }
    let mut padded = encoded.clone();
    padded.extend([0u8; 4096]);
    fs::write(&path, &padded).unwrap();
    assert!(matches!(
        ResumeData::load(&path),
        Err(ResumeError::Bencode(_))
    ));
    let at = encoded.len() - b"1ee".len();
    assert_eq!(&encoded[at - b"7:versioni".len()..], b"7:versioni1ee");
    let mut other_version = encoded.clone();
    other_version[at] = b'2';
    assert!(matches!(
        ResumeData::decode(&other_version),
        Err(ResumeError::UnsupportedVersion { found: 2, .. })
    ));
}

#[test]
fn validate_trusts_only_the_same_torrent_with_unchanged_files() {
    // Trust needs the same info-hash, piece and file counts, and every non-empty file present
    // with its recorded size and mtime; each difference is named.
    let layout = torrent().layout();
    let resume = sample();
    let found: Vec<Option<FileStat>> = resume.files.iter().copied().map(Some).collect();
    assert_eq!(resume.validate(HASH, &layout, &found), Ok(&resume.have));

    let mut empty_changed = found.clone();
    empty_changed[1] = None;
    assert!(
        resume.validate(HASH, &layout, &empty_changed).is_ok(),
        "zero-length files hold no piece"
    );
    let other = InfoHash([8; 20]);
    assert!(matches!(
        resume.validate(other, &layout, &found),
        Err(Untrusted::OtherTorrent { .. })
    ));
    let longer = Layout::new(PIECE, &[40_000, 0, 30_000, PIECE as u64]).unwrap();
    assert!(matches!(
        resume.validate(HASH, &longer, &found),
        Err(Untrusted::PieceCount {
            recorded: 5,
            expected: 6
        })
    ));
    let more_files = Layout::new(PIECE, &[40_000, 0, 29_999, 1]).unwrap();
    let four: Vec<_> = found.iter().copied().chain([None]).collect();
    assert!(matches!(
        resume.validate(HASH, &more_files, &four),
        Err(Untrusted::FileCount {
            recorded: 3,
            expected: 4
        })
    ));
    let mut missing = found.clone();
    missing[2] = None;
    assert_eq!(
        resume.validate(HASH, &layout, &missing),
        Err(Untrusted::FileMissing { file: 2 })
    );
    let mut resized = found.clone();
    resized[0] = Some(FileStat {
        size: 39_999,
        ..resume.files[0]
    });
    assert!(matches!(
        resume.validate(HASH, &layout, &resized),
        Err(Untrusted::SizeChanged {
            file: 0,
            found: 39_999,
            ..
        })
    ));
    let mut touched = found.clone();
    touched[2] = Some(FileStat {
        mtime_ns: resume.files[2].mtime_ns + 1,
        ..resume.files[2]
    });
    assert!(matches!(
        resume.validate(HASH, &layout, &touched),
        Err(Untrusted::MtimeChanged { file: 2, .. })
    ));
    let mut wrong_record = resume.clone();
    wrong_record.files[0].size = 10;
    let agrees: Vec<_> = wrong_record.files.iter().copied().map(Some).collect();
    assert!(matches!(
        wrong_record.validate(HASH, &layout, &agrees),
        Err(Untrusted::SizeChanged { file: 0, .. })
    ));
}

#[test]
fn recheck_finds_exactly_the_good_pieces() {
    // Correct pieces pass; a piece with one flipped byte, a never-written (zero) piece and the
    // pieces of a deleted file fail, without an error for the whole recheck.
    let dir = tempfile::tempdir().unwrap();
    let info = torrent();
    let storage = DownloadStorage::prepare(&info, dir.path(), Preallocate::Sparse).unwrap();
    for n in [0, 1, 3, 4] {
        write_piece(&storage, n);
    }
    let a = storage.path(0).to_owned();
    let mut bytes = fs::read(&a).unwrap();
    bytes[PIECE as usize + 100] ^= 1;
    fs::write(&a, &bytes).unwrap();
    let have = recheck(&info, dir.path(), 2, &Progress::new()).unwrap();
    assert_eq!(have, bits(5, &[0, 3, 4]));

    fs::remove_file(storage.path(2)).unwrap();
    let have = recheck(&info, dir.path(), 0, &Progress::new()).unwrap();
    assert_eq!(
        have,
        bits(5, &[0]),
        "pieces 3 and 4 live in the deleted file"
    );
}

/// Prepares the download again, as a restart does, and checks the saved resume data.
fn restart(info: &Info, out: &Path, resume: &Path) -> Result<Bitfield, Untrusted> {
    let storage = DownloadStorage::prepare(info, out, Preallocate::Sparse).unwrap();
    let saved = ResumeData::load(resume).unwrap().expect("resume saved");
    saved
        .validate(HASH, storage.layout(), storage.found())
        .cloned()
}

#[test]
fn resume_saved_after_sync_is_trusted_and_a_later_write_forces_a_recheck() {
    // Write, sync, capture, save: a restart trusts exactly those pieces. A piece written after
    // the save (then a crash) moves the mtime, so the restart rechecks and finds all written
    // pieces; a clean save after that is trusted again.
    let dir = tempfile::tempdir().unwrap();
    let (out, resume) = (dir.path().join("out"), dir.path().join("t.resume"));
    let info = torrent();
    let storage = DownloadStorage::prepare(&info, &out, Preallocate::Sparse).unwrap();
    for n in [0, 2] {
        write_piece(&storage, n);
    }
    storage.sync_all().unwrap();
    let have = bits(5, &[0, 2]);
    ResumeData::capture(HASH, have.clone(), &storage)
        .unwrap()
        .save(&resume)
        .unwrap();
    drop(storage);
    assert_eq!(restart(&info, &out, &resume), Ok(have.clone()));

    // Past the filesystem's timestamp granularity, so the write below moves the mtime.
    std::thread::sleep(Duration::from_millis(20));
    let storage = DownloadStorage::prepare(&info, &out, Preallocate::Sparse).unwrap();
    write_piece(&storage, 4);
    drop(storage); // killed before the next save
    let untrusted = restart(&info, &out, &resume).unwrap_err();
    assert!(
        matches!(untrusted, Untrusted::MtimeChanged { file: 2, .. }),
        "{untrusted}"
    );
    let rechecked = recheck(&info, &out, 0, &Progress::new()).unwrap();
    assert_eq!(rechecked, bits(5, &[0, 2, 4]));
    assert!(rechecked.get(piece(4)));

    let storage = DownloadStorage::prepare(&info, &out, Preallocate::Sparse).unwrap();
    storage.sync_all().unwrap();
    ResumeData::capture(HASH, rechecked.clone(), &storage)
        .unwrap()
        .save(&resume)
        .unwrap();
    assert_eq!(restart(&info, &out, &resume), Ok(rechecked));
}

fn arb_resume() -> impl Strategy<Value = ResumeData> {
    let files = prop::collection::vec((0..i64::MAX as u64, any::<i64>()), 0..20);
    (any::<[u8; 20]>(), 0u32..2_000, any::<u64>(), files).prop_map(|(hash, pieces, seed, files)| {
        let mut have = Bitfield::empty(pieces);
        let layout = Layout::new(PIECE, &[u64::from(pieces) * u64::from(PIECE)]);
        if let Some(layout) = layout {
            for p in layout
                .pieces()
                .filter(|p| (seed >> (p.get() % 64)) & 1 == 1)
            {
                have.set(p);
            }
        }
        ResumeData {
            info_hash: InfoHash(hash),
            have,
            files: files
                .into_iter()
                .map(|(size, mtime_ns)| FileStat { size, mtime_ns })
                .collect(),
        }
    })
}

proptest! {
    #[test]
    fn decode_of_encode_is_identity(resume in arb_resume()) {
        // Any resume data survives encoding and decoding unchanged.
        prop_assert_eq!(ResumeData::decode(&resume.encode()).unwrap(), resume);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        // Garbage is an error, never a panic.
        let _ = ResumeData::decode(&bytes);
    }

    #[test]
    fn mutated_resume_files_never_panic(
        resume in arb_resume(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        // A valid file with one byte changed decodes to something or fails; never panics.
        let mut bytes = resume.encode();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = ResumeData::decode(&bytes);
    }
}
