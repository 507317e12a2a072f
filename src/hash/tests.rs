use std::fs;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::*;
use crate::metainfo::{parse_torrent, Metainfo};

/// Deterministic, non-repeating test bytes (xorshift), so a misplaced span changes a hash.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Files of a small release, given in a deliberately unsorted order: sizes straddle 16 KiB
/// piece boundaries, one file is empty, one is hidden, one is nested.
const TREE: &[(&str, usize)] = &[
    ("video.mkv", 100_000),
    ("a/b.txt", 5),
    ("a.txt", 16_384),
    (".hidden", 777),
    ("empty.dat", 0),
    ("sub/dir/deep.bin", 40_001),
];

fn write_tree(root: &Path, tree: &[(&str, usize)]) {
    for (i, (rel, len)) in tree.iter().enumerate() {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, pattern(*len, i as u64 + 1)).unwrap();
    }
}

/// A temp dir holding `release/` with `TREE` in it.
fn release() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("release");
    write_tree(&root, TREE);
    (dir, root)
}

fn options(piece_length: u32) -> CreateOptions {
    CreateOptions {
        piece_length: Some(piece_length),
        creation_date: None,
        ..CreateOptions::default()
    }
}

fn create(path: &Path, opts: &CreateOptions) -> Metainfo {
    let (bytes, meta) = create_torrent(path, opts, &Progress::new()).unwrap();
    let reparsed = parse_torrent(&bytes).unwrap();
    assert_eq!(reparsed.info_hash, meta.info_hash);
    reparsed
}

/// The obvious implementation: concatenate the files, cut into pieces, hash each.
fn naive_pieces(root: &Path, meta: &Metainfo) -> Vec<[u8; 20]> {
    let mut stream = Vec::new();
    for i in 0..meta.info.files.len() {
        let rel = meta.info.file_path(i);
        stream.extend(fs::read(root.parent().unwrap().join(rel)).unwrap());
    }
    stream
        .chunks(meta.info.piece_length as usize)
        .map(|c| Sha1::digest(c).into())
        .collect()
}

fn bad_indices(report: &VerifyReport) -> Vec<u32> {
    report.bad_pieces.iter().map(|b| b.piece.get()).collect()
}

fn verify_ok(meta: &Metainfo, data_dir: &Path) -> VerifyReport {
    verify(
        &meta.info,
        data_dir,
        &VerifyOptions::default(),
        &Progress::new(),
    )
    .unwrap()
}

#[test]
fn created_torrent_parses_back_and_verifies() {
    // A torrent made from a directory round-trips through the parser and its data verifies.
    let (dir, root) = release();
    let opts = CreateOptions {
        trackers: vec![vec!["http://t.example/announce".into()]],
        comment: Some("hello".into()),
        private: true,
        ..options(16 * 1024)
    };
    let meta = create(&root, &opts);
    assert_eq!(meta.info.name, "release");
    assert!(meta.info.multi_file && meta.info.private);
    assert_eq!(meta.announce.as_deref(), Some("http://t.example/announce"));
    assert_eq!(meta.comment.as_deref(), Some("hello"));
    assert_eq!(meta.created_by.as_deref(), Some(CREATED_BY));
    let total: usize = TREE.iter().map(|t| t.1).sum();
    assert_eq!(meta.info.total_length(), total as u64);
    let report = verify_ok(&meta, dir.path());
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.pieces_total, meta.info.pieces.len() as u32);
    assert_eq!(report.bytes_checked, total as u64);
}

#[test]
fn files_are_sorted_by_path_with_hidden_and_empty_included() {
    // The file list is ordered component by component, byte-wise, whatever the creation order.
    let (_dir, root) = release();
    let meta = create(&root, &options(16 * 1024));
    let paths: Vec<String> = meta.info.files.iter().map(|f| f.path.join("/")).collect();
    assert_eq!(
        paths,
        [
            ".hidden",
            "a/b.txt",
            "a.txt",
            "empty.dat",
            "sub/dir/deep.bin",
            "video.mkv"
        ]
    );
}

#[test]
fn pieces_spanning_files_match_a_naive_reference_for_any_thread_count() {
    // Parallel hashing across file boundaries gives exactly the single-threaded reference.
    let (_dir, root) = release();
    for piece_length in [16 * 1024, 32 * 1024, 1 << 20] {
        for threads in [1, 2, 3, 16] {
            let meta = create(
                &root,
                &CreateOptions {
                    threads,
                    ..options(piece_length)
                },
            );
            assert_eq!(
                meta.info.pieces,
                naive_pieces(&root, &meta),
                "{piece_length}"
            );
        }
    }
}

#[test]
fn single_file_torrent_is_named_after_the_file() {
    // A plain file gives a single-file torrent whose name is the file name.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.iso");
    fs::write(&path, pattern(50_000, 9)).unwrap();
    let meta = create(&path, &options(16 * 1024));
    assert_eq!(meta.info.name, "disk.iso");
    assert!(!meta.info.multi_file);
    assert_eq!(meta.info.files.len(), 1);
    assert_eq!(meta.info.pieces.len(), 4);
    assert!(verify_ok(&meta, dir.path()).is_ok());
}

#[test]
fn flipped_byte_makes_exactly_its_piece_bad() {
    // Corrupting one byte is reported as a hash mismatch of that piece only, naming its files.
    let (dir, root) = release();
    let meta = create(&root, &options(16 * 1024));
    // video.mkv is last; flipping its byte 10 hits stream offset total - 100_000 + 10.
    let total = meta.info.total_length();
    let stream_offset = total - 100_000 + 10;
    let video = root.join("video.mkv");
    let mut bytes = fs::read(&video).unwrap();
    bytes[10] ^= 0x01;
    fs::write(&video, bytes).unwrap();
    let report = verify_ok(&meta, dir.path());
    let piece = (stream_offset / 16_384) as u32;
    assert_eq!(bad_indices(&report), [piece]);
    assert_eq!(report.bad_pieces[0].fault, PieceFault::HashMismatch);
    assert!(report.bad_pieces[0].files.contains(&video));
    assert!(report.file_problems.is_empty());
}

#[test]
fn truncated_file_makes_its_later_pieces_bad_and_is_listed() {
    // Cutting a file short reports the pieces past the cut and the file's wrong size,
    // while the pieces before the cut still verify.
    let (dir, root) = release();
    let meta = create(&root, &options(16 * 1024));
    let deep = root.join("sub/dir/deep.bin");
    let file = fs::OpenOptions::new().write(true).open(&deep).unwrap();
    file.set_len(20_000).unwrap();
    let report = verify_ok(&meta, dir.path());
    let index = meta
        .info
        .files
        .iter()
        .position(|f| f.path[0] == "sub")
        .unwrap();
    let layout = meta.info.layout();
    let file_start: u64 = meta.info.files[..index].iter().map(|f| f.length).sum();
    let first_bad = (file_start + 20_000) / 16_384;
    let expected: Vec<u32> = (first_bad as u32..layout.pieces_of_file(index).end).collect();
    assert_eq!(bad_indices(&report), expected);
    assert!(report.bad_pieces.iter().all(|b| matches!(
        &b.fault,
        PieceFault::Unreadable { file, problem: ReadProblem::Truncated { .. } } if *file == deep
    )));
    assert_eq!(
        report.file_problems,
        [FileProblem {
            path: deep,
            problem: ReadProblem::WrongSize {
                expected: 40_001,
                actual: 20_000
            }
        }]
    );
}

#[test]
fn missing_file_marks_its_pieces_and_the_rest_are_still_checked() {
    // A deleted file does not abort verification: its pieces are bad, the others are good.
    let (dir, root) = release();
    let meta = create(&root, &options(16 * 1024));
    fs::remove_file(root.join("a.txt")).unwrap();
    fs::remove_file(root.join("empty.dat")).unwrap();
    let report = verify_ok(&meta, dir.path());
    let index = meta
        .info
        .files
        .iter()
        .position(|f| f.path == ["a.txt"])
        .unwrap();
    let expected: Vec<u32> = meta.info.layout().pieces_of_file(index).collect();
    assert_eq!(bad_indices(&report), expected);
    let missing: Vec<&Path> = report
        .file_problems
        .iter()
        .filter(|p| p.problem == ReadProblem::Missing)
        .map(|p| p.path.as_path())
        .collect();
    assert_eq!(missing, [root.join("a.txt"), root.join("empty.dat")]);
}

#[test]
fn too_long_file_verifies_its_pieces_but_is_listed() {
    // Extra bytes at the end of the last file leave every piece good but are reported.
    let (dir, root) = release();
    let meta = create(&root, &options(16 * 1024));
    let video = root.join("video.mkv");
    let mut bytes = fs::read(&video).unwrap();
    bytes.push(0);
    fs::write(&video, bytes).unwrap();
    let report = verify_ok(&meta, dir.path());
    assert!(report.bad_pieces.is_empty());
    assert!(!report.is_ok());
    assert_eq!(report.file_problems.len(), 1);
    assert_eq!(report.file_problems[0].path, video);
}

#[test]
fn piece_length_rule_follows_the_table() {
    // The automatic piece length is the smallest power of two giving <= 2,000 pieces,
    // clamped to 256 KiB..=16 MiB.
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    const GIB: u64 = 1024 * MIB;
    let table: &[(u64, u32)] = &[
        (0, 256 << 10),
        (1, 256 << 10),
        (100 * MIB, 256 << 10),
        (500 * MIB, 256 << 10), // exactly 2,000 pieces of 256 KiB
        (500 * MIB + 1, 512 << 10),
        (GIB, 1 << 20),
        (4 * GIB, 4 << 20),
        (8 * GIB, 8 << 20),
        (32 * GIB, 16 << 20),
        (100_000_000_000, 16 << 20),
        (u64::MAX, 16 << 20),
    ];
    for &(total, expected) in table {
        assert_eq!(choose_piece_length(total), expected, "total {total}");
    }
    for total in [1, 3 * MIB, 700 * MIB, 3 * GIB, 20 * GIB, 1 << 40] {
        let p = choose_piece_length(total);
        assert!(p.is_power_of_two());
        let pieces = total.div_ceil(u64::from(p));
        let clamped = p == PIECE_LENGTH_AUTO_MIN || p == PIECE_LENGTH_AUTO_MAX;
        assert!(
            clamped || (1_000..=2_000).contains(&pieces),
            "{total}: {pieces}"
        );
    }
}

#[test]
fn automatic_piece_length_is_used_when_none_is_given() {
    // Without an explicit piece length, create applies choose_piece_length.
    let (_dir, root) = release();
    let meta = create(
        &root,
        &CreateOptions {
            piece_length: None,
            ..options(0)
        },
    );
    assert_eq!(meta.info.piece_length, PIECE_LENGTH_AUTO_MIN);
}

#[test]
fn invalid_piece_lengths_and_empty_data_are_refused() {
    // A piece length that is not a power of two or out of range, and a tree with no bytes,
    // are refused with errors saying so.
    let (_dir, root) = release();
    for bad in [0, 3 << 14, 8 * 1024, 32 << 20] {
        let err = create_torrent(&root, &options(bad), &Progress::new()).unwrap_err();
        assert!(
            matches!(err, HashError::BadPieceLength { piece_length, .. } if piece_length == bad)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("nothing");
    write_tree(&empty, &[("zero", 0), ("d/zero", 0)]);
    let err = create_torrent(&empty, &options(16_384), &Progress::new()).unwrap_err();
    assert!(matches!(err, HashError::Empty { .. }), "{err}");
}

#[test]
fn symlinks_are_followed_and_loops_refused() {
    // A symlink to a file contributes the target's bytes under the link's name; a link to a
    // parent directory is an error naming the link.
    let (dir, root) = release();
    let outside = dir.path().join("outside.bin");
    fs::write(&outside, pattern(1000, 42)).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("link.bin")).unwrap();
    let meta = create(&root, &options(16 * 1024));
    let link = meta
        .info
        .files
        .iter()
        .find(|f| f.path == ["link.bin"])
        .unwrap();
    assert_eq!(link.length, 1000);
    assert_eq!(meta.info.pieces, naive_pieces(&root, &meta));

    let looped = root.join("sub/dir/up");
    std::os::unix::fs::symlink(&root, &looped).unwrap();
    let err = create_torrent(&root, &options(16_384), &Progress::new()).unwrap_err();
    assert!(
        matches!(&err, HashError::SymlinkLoop { path } if *path == looped),
        "{err}"
    );
}

#[test]
fn special_files_and_broken_links_are_refused_by_name() {
    // A FIFO or a dangling symlink in the tree is an error that names the entry.
    let (_dir, root) = release();
    let dangling = root.join("dangling");
    std::os::unix::fs::symlink(root.join("no-such-file"), &dangling).unwrap();
    let err = create_torrent(&root, &options(16_384), &Progress::new()).unwrap_err();
    assert!(
        matches!(&err, HashError::BrokenSymlink { path } if *path == dangling),
        "{err}"
    );
    fs::remove_file(&dangling).unwrap();

    let fifo = root.join("pipe");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c_path` is a valid NUL-terminated string for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let err = create_torrent(&root, &options(16_384), &Progress::new()).unwrap_err();
    assert!(
        matches!(&err, HashError::NotRegular { path } if *path == fifo),
        "{err}"
    );
}

#[test]
fn verify_of_a_fifo_in_place_of_a_file_reports_it_without_blocking() {
    // A FIFO where a data file should be is reported as not regular instead of hanging.
    let (dir, root) = release();
    let meta = create(&root, &options(16 * 1024));
    let target = root.join("a.txt");
    fs::remove_file(&target).unwrap();
    let c_path = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c_path` is a valid NUL-terminated string for the duration of the call.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    let report = verify_ok(&meta, dir.path());
    assert_eq!(report.file_problems.len(), 1);
    assert_eq!(report.file_problems[0].problem, ReadProblem::NotRegular);
    assert!(!report.bad_pieces.is_empty());
}

#[test]
fn progress_counts_every_byte_once() {
    // After create and verify, the progress counter equals the data size.
    let (dir, root) = release();
    let progress = Progress::new();
    let (_, meta) = create_torrent(&root, &options(16 * 1024), &progress).unwrap();
    let total = meta.info.total_length();
    assert_eq!(
        (progress.bytes_done(), progress.bytes_total()),
        (total, total)
    );
    let progress = Progress::new();
    verify(
        &meta.info,
        dir.path(),
        &VerifyOptions {
            threads: 3,
            ..VerifyOptions::default()
        },
        &progress,
    )
    .unwrap();
    assert_eq!(progress.bytes_done(), total);
}

#[test]
fn hand_built_info_with_escaping_path_is_refused_by_verify() {
    // An Info built in code (not parsed) with a `..` component cannot make verify read
    // outside the data directory.
    let (dir, root) = release();
    let mut meta = create(&root, &options(16 * 1024));
    meta.info.files[0].path = vec!["..".into(), "..".into(), "etc".into(), "passwd".into()];
    let err = verify(
        &meta.info,
        dir.path(),
        &VerifyOptions::default(),
        &Progress::new(),
    );
    assert!(matches!(err, Err(HashError::UnsafeName { .. })));
}

#[test]
fn hand_built_info_with_wrong_hash_count_is_refused_by_verify() {
    // An Info whose piece list does not match its files is an error, not a panic.
    let (dir, root) = release();
    let mut meta = create(&root, &options(16 * 1024));
    meta.info.pieces.pop();
    let err = verify(
        &meta.info,
        dir.path(),
        &VerifyOptions::default(),
        &Progress::new(),
    );
    assert!(matches!(err, Err(HashError::Metainfo(_))));
}
