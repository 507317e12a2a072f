use std::fs;
use std::path::Path;

use super::*;
use crate::metainfo::{FileEntry, BLOCK_BYTES};

/// Deterministic test bytes, different per seed.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

/// A multi-file `Info` named `name` (piece hashes are irrelevant to storage and left zero).
fn info(name: &str, piece_length: u32, files: &[(&str, u64)]) -> Info {
    let files: Vec<FileEntry> = files
        .iter()
        .map(|(p, len)| FileEntry {
            path: p.split('/').map(str::to_owned).collect(),
            length: *len,
        })
        .collect();
    let lengths: Vec<u64> = files.iter().map(|f| f.length).collect();
    let pieces = Layout::new(piece_length, &lengths).unwrap().piece_count();
    Info {
        name: name.to_owned(),
        piece_length,
        pieces: vec![[0; 20]; pieces as usize],
        files,
        multi_file: true,
        private: false,
    }
}

/// Files whose sizes are not multiples of the piece size, with an empty file in the middle.
const FILES: &[(&str, u64)] = &[
    ("a.bin", 40_000),
    ("empty", 0),
    ("d/b.bin", 16_385),
    ("c", 7),
];

/// Writes `FILES` under `dir/rel/` and returns the concatenated stream.
fn write_files(dir: &Path) -> Vec<u8> {
    let mut stream = Vec::new();
    for (i, (rel, len)) in FILES.iter().enumerate() {
        let path = dir.join("rel").join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes = pattern(*len as usize, i as u8);
        fs::write(&path, &bytes).unwrap();
        stream.extend(bytes);
    }
    stream
}

fn open_err(info: &Info, dir: &Path) -> StorageError {
    Storage::open(info, dir, SymlinkPolicy::Follow).unwrap_err()
}

#[test]
fn every_block_reads_back_the_stream_bytes() {
    // Reading every block of every piece (blocks crossing files, a short last piece, an empty
    // file in between) reproduces the files laid end to end, via read_block and via the fds.
    let dir = tempfile::tempdir().unwrap();
    let stream = write_files(dir.path());
    let info = info("rel", 32 * 1024, FILES);
    let storage = Storage::open(&info, dir.path(), SymlinkPolicy::Follow).unwrap();
    let layout = storage.layout().clone();
    let fds: Vec<Option<RawFd>> = storage.fds().collect();
    assert_eq!(
        fds.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, false, true, true]
    );
    let mut via_read_block = Vec::new();
    let mut via_fds = Vec::new();
    for piece in layout.pieces() {
        for b in 0..layout.blocks_in_piece(piece) {
            let offset = b * BLOCK_BYTES;
            let len = (layout.piece_len(piece) - offset).min(BLOCK_BYTES);
            let block = layout.block(piece.get(), offset, len).unwrap();
            let mut buf = vec![0u8; len as usize];
            storage.read_block(block, &mut buf).unwrap();
            via_read_block.extend_from_slice(&buf);
            let mut buf = vec![0u8; len as usize];
            for span in storage.block_spans(block) {
                assert_eq!(Some(span.fd), fds[span.file]);
                let dst = &mut buf[span.buf_offset as usize..][..span.len as usize];
                // SAFETY: `dst` is a valid writable buffer of `span.len` bytes and the fd
                // is open while `storage` lives.
                let n = unsafe {
                    libc::pread(
                        span.fd,
                        dst.as_mut_ptr().cast(),
                        dst.len(),
                        span.offset as i64,
                    )
                };
                assert_eq!(n, span.len as isize);
            }
            via_fds.extend_from_slice(&buf);
        }
    }
    assert_eq!(via_read_block, stream);
    assert_eq!(via_fds, stream);
}

#[test]
fn block_crossing_a_file_boundary_has_two_spans_in_buffer_order() {
    // The block holding the end of a.bin and the start of d/b.bin (skipping the empty file)
    // is two reads landing back to back in the buffer.
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let storage = Storage::open(
        &info("rel", 32 * 1024, FILES),
        dir.path(),
        SymlinkPolicy::Follow,
    )
    .unwrap();
    // Piece 1 starts at 32768; a.bin ends at 40000, so block (1, 0, 16384) crosses it.
    let block = storage.layout().block(1, 0, BLOCK_BYTES).unwrap();
    let spans: Vec<(usize, u64, u32, u32)> = storage
        .block_spans(block)
        .map(|s| (s.file, s.offset, s.len, s.buf_offset))
        .collect();
    assert_eq!(spans, [(0, 32_768, 7_232, 0), (2, 0, 9_152, 7_232)]);
}

#[test]
fn single_file_torrent_lives_at_data_dir_slash_name() {
    // A single-file torrent's data is `data_dir/name`.
    let dir = tempfile::tempdir().unwrap();
    let bytes = pattern(20_000, 3);
    fs::write(dir.path().join("disk.iso"), &bytes).unwrap();
    let mut single = info("disk.iso", 16 * 1024, &[("x", 20_000)]);
    single.files[0].path.clear();
    single.multi_file = false;
    let storage = Storage::open(&single, dir.path(), SymlinkPolicy::Follow).unwrap();
    assert_eq!(storage.path(0), dir.path().join("disk.iso"));
    let block = storage.layout().block(1, 0, 20_000 - 16_384).unwrap();
    let mut buf = vec![0u8; block.len as usize];
    storage.read_block(block, &mut buf).unwrap();
    assert_eq!(buf, bytes[16_384..]);
}

#[test]
fn missing_files_are_refused_by_name_including_empty_ones() {
    // A missing data file, or a missing zero-length file, is an error naming that file.
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let info = info("rel", 32 * 1024, FILES);
    for rel in ["d/b.bin", "empty"] {
        let path = dir.path().join("rel").join(rel);
        let saved = fs::read(&path).unwrap();
        fs::remove_file(&path).unwrap();
        let err = open_err(&info, dir.path());
        assert!(
            matches!(&err, StorageError::Missing { path: p } if *p == path),
            "{err}"
        );
        assert!(err.to_string().contains(rel));
        fs::write(&path, saved).unwrap();
    }
    assert!(Storage::open(&info, dir.path(), SymlinkPolicy::Follow).is_ok());
}

#[test]
fn wrong_size_is_refused_with_both_sizes() {
    // A file one byte short is refused, naming the file, the expected and the actual size.
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let path = dir.path().join("rel/a.bin");
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(39_999)
        .unwrap();
    let err = open_err(&info("rel", 32 * 1024, FILES), dir.path());
    assert!(
        matches!(&err, StorageError::WrongSize { path: p, expected: 40_000, actual: 39_999 } if *p == path),
        "{err}"
    );
}

#[test]
fn directory_in_place_of_a_file_is_refused() {
    // A directory where the torrent expects a file is not served.
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let path = dir.path().join("rel/c");
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let err = open_err(&info("rel", 32 * 1024, FILES), dir.path());
    assert!(
        matches!(&err, StorageError::NotRegular { path: p } if *p == path),
        "{err}"
    );
}

#[test]
fn hand_built_info_cannot_escape_the_data_dir() {
    // An Info built in code with `..` components is refused before any file is opened.
    let dir = tempfile::tempdir().unwrap();
    let evil = info("rel", 32 * 1024, &[("../../etc/passwd", 10)]);
    let err = open_err(&evil, dir.path());
    assert!(matches!(err, StorageError::UnsafePath { .. }), "{err}");
    let evil_name = info("..", 32 * 1024, &[("x", 10)]);
    assert!(matches!(
        open_err(&evil_name, dir.path()),
        StorageError::UnsafePath { .. }
    ));
}

#[test]
fn confined_policy_refuses_links_leaving_the_data_dir_and_follow_accepts_them() {
    // A symlink to a file outside the data directory is served under Follow, refused under
    // Confined (naming both ends); a symlink staying inside is accepted by both.
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let c = dir.path().join("rel/c");
    let secret = outside.path().join("secret");
    fs::rename(&c, &secret).unwrap();
    std::os::unix::fs::symlink(&secret, &c).unwrap();
    let info = info("rel", 32 * 1024, FILES);
    assert!(Storage::open(&info, dir.path(), SymlinkPolicy::Follow).is_ok());
    let err = Storage::open(&info, dir.path(), SymlinkPolicy::Confined).unwrap_err();
    assert!(
        matches!(&err, StorageError::OutsideDataDir { path, target } if *path == c && target.ends_with("secret")),
        "{err}"
    );
    let inside = dir.path().join("rel/c.real");
    fs::rename(&secret, &inside).unwrap();
    fs::remove_file(&c).unwrap();
    std::os::unix::fs::symlink(&inside, &c).unwrap();
    assert!(Storage::open(&info, dir.path(), SymlinkPolicy::Confined).is_ok());
}

#[test]
fn file_truncated_after_open_gives_an_error_not_garbage() {
    // If a file shrinks while seeding, reading past its new end is an error naming the file.
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let storage = Storage::open(
        &info("rel", 32 * 1024, FILES),
        dir.path(),
        SymlinkPolicy::Follow,
    )
    .unwrap();
    let path = dir.path().join("rel/a.bin");
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(10)
        .unwrap();
    let block = storage.layout().block(0, 0, BLOCK_BYTES).unwrap();
    let err = storage
        .read_block(block, &mut vec![0; BLOCK_BYTES as usize])
        .unwrap_err();
    assert!(
        matches!(&err, StorageError::Truncated { path: p, offset: 10 } if *p == path),
        "{err}"
    );
}

#[test]
fn block_from_a_larger_torrent_is_refused_not_served_short() {
    // A BlockRef validated against another torrent's layout cannot read past this one's end.
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path());
    let storage = Storage::open(
        &info("rel", 32 * 1024, FILES),
        dir.path(),
        SymlinkPolicy::Follow,
    )
    .unwrap();
    let bigger = Layout::new(32 * 1024, &[1 << 20]).unwrap();
    let foreign = bigger.block(1, BLOCK_BYTES, BLOCK_BYTES).unwrap();
    let err = storage
        .read_block(foreign, &mut vec![0; BLOCK_BYTES as usize])
        .unwrap_err();
    assert!(
        matches!(err, StorageError::BlockOutOfRange { piece: 1, .. }),
        "{err}"
    );
}
