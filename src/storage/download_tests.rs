use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::*;
use crate::metainfo::{FileEntry, BLOCK_BYTES};

/// A multi-file `Info` named `name` (piece hashes are irrelevant here and left zero).
pub(super) fn info(name: &str, piece_length: u32, files: &[(&str, u64)]) -> Info {
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

const FILES: &[(&str, u64)] = &[
    ("a.bin", 40_000),
    ("empty", 0),
    ("d/e/b.bin", 16_385),
    ("c", 7),
];

fn prepare(info: &Info, out: &Path) -> Result<DownloadStorage> {
    DownloadStorage::prepare(info, out, Preallocate::Sparse)
}

/// Every entry under `dir`, recursively, as paths relative to it.
fn tree(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            found.push(path.strip_prefix(dir).unwrap().display().to_string());
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn creates_the_tree_with_every_file_at_full_length() {
    // A fresh download gets its directories and files (the empty one too), each at its
    // torrent length, all reported as created and found missing.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out/nested");
    let storage = prepare(&info("rel", 32 * 1024, FILES), &out).unwrap();
    for (i, (rel, len)) in FILES.iter().enumerate() {
        let path = out.join("rel").join(rel);
        assert_eq!(storage.path(i), path);
        assert_eq!(fs::metadata(&path).unwrap().len(), *len, "{rel}");
        assert_eq!(storage.prepared(i), Prepared::Created);
    }
    assert!(storage.found().iter().all(Option::is_none));
    assert_eq!(storage.file_count(), 4);
}

#[test]
fn large_files_are_created_sparse_and_full_preallocation_reserves_space() {
    // A 1 GiB file costs (almost) no disk blocks by default; `Full` reserves all of them.
    let dir = tempfile::tempdir().unwrap();
    let gib = 1u64 << 30;
    let sparse = info("sparse", 1 << 20, &[("big", gib)]);
    DownloadStorage::prepare(&sparse, dir.path(), Preallocate::Sparse).unwrap();
    let meta = fs::metadata(dir.path().join("sparse/big")).unwrap();
    assert_eq!(meta.len(), gib);
    assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());

    let full = info("full", 1 << 20, &[("big", 64 << 20)]);
    DownloadStorage::prepare(&full, dir.path(), Preallocate::Full).unwrap();
    let meta = fs::metadata(dir.path().join("full/big")).unwrap();
    assert_eq!(meta.len(), 64 << 20);
    assert!(meta.blocks() * 512 >= 64 << 20, "{} blocks", meta.blocks());
}

#[test]
fn right_sized_files_are_kept_untouched_and_wrong_sized_ones_fixed() {
    // Reopening keeps data and mtime of files with the right length; a long file is cut and a
    // short one extended, and `found` reports each as it was before the fix.
    let dir = tempfile::tempdir().unwrap();
    let info = info("rel", 32 * 1024, FILES);
    let storage = prepare(&info, dir.path()).unwrap();
    let block = storage.layout().block(0, 0, BLOCK_BYTES).unwrap();
    storage.write_block(block, &[9u8; 16_384]).unwrap();
    storage.sync_all().unwrap();
    let before = storage.stat_files().unwrap();
    drop(storage);
    let root = dir.path().join("rel");
    fs::write(root.join("c"), b"0123456789").unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(root.join("d/e/b.bin"))
        .unwrap()
        .set_len(100)
        .unwrap();
    let c_before = FileStat::of(&File::open(root.join("c")).unwrap()).unwrap();

    let storage = prepare(&info, dir.path()).unwrap();
    assert_eq!(storage.prepared(0), Prepared::Kept);
    assert_eq!(storage.prepared(1), Prepared::Kept);
    assert_eq!(storage.prepared(2), Prepared::Resized { from: 100 });
    assert_eq!(storage.prepared(3), Prepared::Resized { from: 10 });
    assert_eq!(storage.found()[0], Some(before[0]));
    assert_eq!(storage.found()[3], Some(c_before));
    assert_eq!(
        storage.stat_files().unwrap()[0],
        before[0],
        "kept file untouched"
    );
    assert_eq!(fs::read(root.join("c")).unwrap(), b"0123456");
    assert_eq!(fs::metadata(root.join("d/e/b.bin")).unwrap().len(), 16_385);
    assert_eq!(
        &fs::read(root.join("a.bin")).unwrap()[..16_384],
        &[9u8; 16_384]
    );
}

#[test]
fn blocks_written_across_files_land_at_their_offsets() {
    // Every block of every piece written with `write_block` rebuilds the stream laid end to
    // end over the files (crossing the empty file and a short last piece).
    let dir = tempfile::tempdir().unwrap();
    let info = info("rel", 32 * 1024, FILES);
    let storage = prepare(&info, dir.path()).unwrap();
    let layout = storage.layout().clone();
    let total = layout.total_length() as usize;
    let stream: Vec<u8> = (0..total).map(|i| (i * 7 % 251) as u8).collect();
    for piece in layout.pieces() {
        for b in 0..layout.blocks_in_piece(piece) {
            let offset = b * BLOCK_BYTES;
            let len = (layout.piece_len(piece) - offset).min(BLOCK_BYTES);
            let block = layout.block(piece.get(), offset, len).unwrap();
            let at = (layout.piece_start(piece) + u64::from(offset)) as usize;
            storage
                .write_block(block, &stream[at..at + len as usize])
                .unwrap();
        }
    }
    let on_disk: Vec<u8> = (0..FILES.len())
        .flat_map(|i| fs::read(storage.path(i)).unwrap())
        .collect();
    assert!(on_disk == stream);
    let foreign = Layout::new(16 * 1024, &[1 << 30]).unwrap();
    let past_end = foreign.block(5_000, 0, BLOCK_BYTES).unwrap();
    let err = storage.write_block(past_end, &[0; 16_384]).unwrap_err();
    assert!(matches!(
        err,
        StorageError::BlockOutOfRange { piece: 5_000, .. }
    ));
}

#[test]
fn symlinks_in_the_tree_are_refused_and_nothing_is_written_outside() {
    // A link planted where the torrent's directory or one of its files goes is refused,
    // however the link is spelled, and the target outside stays untouched and unlisted.
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("a.bin"), b"secret").unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let info = info("rel", 32 * 1024, FILES);

    std::os::unix::fs::symlink(&outside, out.join("rel")).unwrap();
    let err = prepare(&info, &out).unwrap_err();
    assert!(matches!(err, StorageError::Symlink { .. }), "{err}");

    fs::remove_file(out.join("rel")).unwrap();
    fs::create_dir(out.join("rel")).unwrap();
    std::os::unix::fs::symlink(outside.join("a.bin"), out.join("rel/a.bin")).unwrap();
    let err = prepare(&info, &out).unwrap_err();
    assert!(matches!(err, StorageError::Symlink { .. }), "{err}");

    fs::remove_file(out.join("rel/a.bin")).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("rel/d")).unwrap();
    let err = prepare(&info, &out).unwrap_err();
    assert!(matches!(err, StorageError::Symlink { .. }), "{err}");

    assert_eq!(fs::read(outside.join("a.bin")).unwrap(), b"secret");
    assert_eq!(tree(&outside), ["a.bin"]);
}

#[test]
fn unsafe_or_clashing_paths_are_refused_before_anything_is_created() {
    // `..` (possible only in a hand-built Info), a path named twice and a file that is also a
    // directory of another file are all refused, and the output directory stays empty.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    type Expect = fn(&StorageError) -> bool;
    let cases: [(Info, Expect); 4] = [
        (info("rel", 16_384, &[("ok", 1), ("../x", 1)]), |e| {
            matches!(e, StorageError::UnsafePath { .. })
        }),
        (info("..", 16_384, &[("x", 1)]), |e| {
            matches!(e, StorageError::UnsafePath { .. })
        }),
        (info("rel", 16_384, &[("a/b", 1), ("a/b", 2)]), |e| {
            matches!(e, StorageError::PathClash { .. })
        }),
        (info("rel", 16_384, &[("a/b", 1), ("a", 2)]), |e| {
            matches!(e, StorageError::PathClash { .. })
        }),
    ];
    for (info, expected) in cases {
        let err = prepare(&info, &out).unwrap_err();
        assert!(expected(&err), "{err}");
    }
    assert!(tree(&out).is_empty(), "{:?}", tree(&out));
}

#[test]
fn a_fifo_or_directory_where_a_file_goes_is_refused_without_blocking() {
    // A FIFO planted at a file's path is refused as not regular (the open does not wait for
    // a writer); so is a directory, and a file where a directory goes.
    let dir = tempfile::tempdir().unwrap();
    let info = info("rel", 32 * 1024, FILES);
    let root = dir.path().join("rel");
    fs::create_dir_all(&root).unwrap();
    let fifo = std::ffi::CString::new(root.join("c").to_str().unwrap()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let err = prepare(&info, dir.path()).unwrap_err();
    assert!(matches!(err, StorageError::NotRegular { .. }), "{err}");

    fs::remove_file(root.join("c")).unwrap();
    fs::create_dir(root.join("c")).unwrap();
    let err = prepare(&info, dir.path()).unwrap_err();
    assert!(matches!(err, StorageError::NotRegular { .. }), "{err}");

    fs::remove_dir(root.join("c")).unwrap();
    fs::remove_dir_all(root.join("d")).unwrap();
    fs::write(root.join("d"), b"").unwrap();
    let err = prepare(&info, dir.path()).unwrap_err();
    assert!(matches!(err, StorageError::NotDirectory { .. }), "{err}");
}

#[test]
fn single_file_torrents_live_directly_in_the_output_directory() {
    // A single-file torrent is `out/<name>`, with no directory of its own.
    let dir = tempfile::tempdir().unwrap();
    let mut single = info("movie.mkv", 16_384, &[("x", 20_000)]);
    single.files[0].path.clear();
    single.multi_file = false;
    let storage = prepare(&single, dir.path()).unwrap();
    assert_eq!(storage.path(0), dir.path().join("movie.mkv"));
    assert_eq!(tree(dir.path()), ["movie.mkv"]);
    assert_eq!(fs::metadata(storage.path(0)).unwrap().len(), 20_000);
}
