//! Property tests of torrent parsing: built torrents round-trip, hostile input never panics
//! and hostile file lists are always refused.

use proptest::prelude::*;
use sha1::{Digest, Sha1};

use super::*;
use crate::bencode::OwnedValue;

/// A path component that the validator accepts (checked, since random text can spell `CON`).
fn component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_ -]{1,12}".prop_filter("valid component", |c| validate_component(c).is_ok())
}

fn piece_length() -> impl Strategy<Value = u32> {
    prop_oneof![
        (14u32..=26).prop_map(|shift| 1 << shift),
        PIECE_LENGTH_MIN..=PIECE_LENGTH_MAX,
    ]
}

/// Multi-file lists whose paths are unique and never collide with a directory: directory
/// names have no `.` and every file name ends in `.f<index>`.
fn multi_files() -> impl Strategy<Value = Vec<FileEntry>> {
    let file = (
        proptest::collection::vec(component(), 0..3),
        component(),
        0u64..200_000,
    );
    proptest::collection::vec(file, 1..8).prop_map(|files| {
        files
            .into_iter()
            .enumerate()
            .map(|(i, (mut dirs, name, length))| {
                dirs.push(format!("{name}.f{i}"));
                FileEntry { path: dirs, length }
            })
            .collect()
    })
}

fn info_strategy() -> impl Strategy<Value = Info> {
    let files = prop_oneof![
        (0u64..2_000_000).prop_map(|length| (
            vec![FileEntry {
                path: vec![],
                length
            }],
            false
        )),
        multi_files().prop_map(|f| (f, true)),
    ];
    (
        component(),
        piece_length(),
        files,
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(name, piece_length, (files, multi_file), private, seed)| {
            let total: u64 = files.iter().map(|f| f.length).sum();
            let count = total.div_ceil(u64::from(piece_length)) as usize;
            let pieces = (0..count)
                .map(|i| [seed.wrapping_add(i as u8); 20])
                .collect();
            Info {
                name,
                piece_length,
                pieces,
                files,
                multi_file,
                private,
            }
        })
}

/// A torrent whose file list is given as raw (unvalidated) paths.
fn torrent_with_paths(paths: &[Vec<String>]) -> Vec<u8> {
    let files = paths
        .iter()
        .map(|p| {
            let mut f = OwnedValue::dict();
            f.insert("length", OwnedValue::Int(1));
            f.insert(
                "path",
                OwnedValue::List(p.iter().map(|c| OwnedValue::str(c)).collect()),
            );
            f
        })
        .collect();
    let mut info = OwnedValue::dict();
    info.insert("name", OwnedValue::str("t"));
    info.insert("piece length", OwnedValue::Int(16_384));
    let pieces = (paths.len() as u64).div_ceil(16_384) as usize;
    info.insert("pieces", OwnedValue::Bytes(vec![0; 20 * pieces]));
    info.insert("files", OwnedValue::List(files));
    let mut root = OwnedValue::dict();
    root.insert("info", info);
    root.to_bytes()
}

/// A component no torrent may use: escapes, separators, drive letters, devices, controls.
fn hostile_component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("/etc".to_owned()),
        Just("/".to_owned()),
        Just("a/../b".to_owned()),
        Just("..\\..\\x".to_owned()),
        Just("C:".to_owned()),
        Just("c:\\windows".to_owned()),
        Just("NUL".to_owned()),
        Just("com1.txt".to_owned()),
        "[a-z]{0,3}[\\x00-\\x1f][a-z]{0,3}",
        "[a-z]{256,300}",
    ]
}

/// Checks every invariant a parsed torrent promises to later layers.
fn check_parsed(meta: &Metainfo) {
    assert_eq!(
        meta.info.layout().piece_count() as usize,
        meta.info.pieces.len()
    );
    assert_eq!(
        meta.info_hash.0,
        <[u8; 20]>::from(Sha1::digest(&meta.info_bytes))
    );
    for (i, f) in meta.info.files.iter().enumerate() {
        assert!(f.path.iter().all(|c| validate_component(c).is_ok()));
        assert!(meta.info.file_path(i).is_relative());
    }
}

proptest! {
    #[test]
    fn built_info_dicts_parse_back_identically(info in info_strategy(), comment in ".{0,20}") {
        // Any valid info dict we build is read back field for field, with the same hash.
        let extra = TorrentBuilder { comment: Some(comment.clone()), ..Default::default() };
        let (bytes, meta) = build_torrent(&info, &extra).unwrap();
        prop_assert_eq!(&meta.info, &info);
        prop_assert_eq!(meta.comment.as_deref(), Some(comment.as_str()));
        let again = parse_torrent(&bytes).unwrap();
        prop_assert_eq!(again.info_hash, meta.info_hash);
        prop_assert_eq!(again.info_hash.0, <[u8; 20]>::from(Sha1::digest(&*again.info_bytes)));
        check_parsed(&again);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        // Random input gives an error or a torrent that keeps every promise; never a panic.
        if let Ok(meta) = parse_torrent(&bytes) {
            check_parsed(&meta);
        }
    }

    #[test]
    fn mutated_torrents_never_panic(
        info in info_strategy(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        // Flipped, inserted and deleted bytes in a real torrent never panic the parser, and
        // whatever still parses keeps every promise.
        let (mut bytes, _) = build_torrent(&info, &TorrentBuilder::default()).unwrap();
        for (at, b, op) in edits {
            let i = at % (bytes.len() + 1);
            match op {
                0 if i < bytes.len() => bytes[i] = b,
                1 => bytes.insert(i, b),
                _ if i < bytes.len() => { bytes.remove(i); }
                _ => {}
            }
        }
        if let Ok(meta) = parse_torrent(&bytes) {
            check_parsed(&meta);
        }
    }

    #[test]
    fn hostile_file_lists_are_always_refused(
        good in proptest::collection::vec(proptest::collection::vec(component(), 1..4), 0..4),
        bad in hostile_component(),
        prefix in proptest::collection::vec(component(), 0..3),
        suffix in proptest::collection::vec(component(), 0..3),
        at in any::<usize>(),
    ) {
        // One bad component anywhere in any path sinks the whole torrent with UnsafePath.
        let mut hostile = prefix;
        hostile.push(bad);
        hostile.extend(suffix);
        let mut paths = good;
        let i = at % (paths.len() + 1);
        paths.insert(i, hostile);
        let err = parse_torrent(&torrent_with_paths(&paths)).unwrap_err();
        prop_assert!(matches!(err, MetainfoError::UnsafePath { .. }), "{:?}: {}", paths, err);
    }

    #[test]
    fn colliding_file_lists_are_always_refused(
        path in proptest::collection::vec(component(), 1..4),
        extra in component(),
        dup in any::<bool>(),
    ) {
        // A path listed twice, or used both as a file and as a directory, is refused.
        let mut other = path.clone();
        if !dup {
            other.push(extra);
        }
        let err = parse_torrent(&torrent_with_paths(&[path, other])).unwrap_err();
        prop_assert!(matches!(err, MetainfoError::UnsafePath { .. }), "{}", err);
    }
}

#[test]
fn empty_path_list_is_refused() {
    // A file entry with no path components at all would alias the torrent's directory.
    let err = parse_torrent(&torrent_with_paths(&[vec![]])).unwrap_err();
    assert!(matches!(err, MetainfoError::UnsafePath { .. }), "{err}");
}
