//! Tests of torrent file parsing and building.

use super::*;
use crate::bencode::OwnedValue;

fn sample_info(multi: bool) -> Info {
    let files = if multi {
        vec![
            FileEntry {
                path: vec!["a.bin".into()],
                length: 40_000,
            },
            FileEntry {
                path: vec!["sub".into(), "empty".into()],
                length: 0,
            },
            FileEntry {
                path: vec!["sub".into(), "b.bin".into()],
                length: 9,
            },
        ]
    } else {
        vec![FileEntry {
            path: vec![],
            length: 40_009,
        }]
    };
    Info {
        name: "release".into(),
        piece_length: 16_384,
        pieces: vec![[7u8; 20]; 3],
        files,
        multi_file: multi,
        private: false,
    }
}

#[test]
fn built_torrent_parses_back_identically() {
    // What `create` writes is what `seed` reads, for single- and multi-file torrents.
    for multi in [false, true] {
        let info = sample_info(multi);
        let extra = TorrentBuilder {
            trackers: vec![
                vec!["http://127.0.0.1:6969/announce".into()],
                vec!["udp://x:1".into()],
            ],
            comment: Some("hello".into()),
            created_by: Some("ringseed".into()),
            creation_date: Some(1_700_000_000),
        };
        let (bytes, meta) = build_torrent(&info, &extra).unwrap();
        assert_eq!(meta.info, info);
        assert_eq!(
            meta.announce.as_deref(),
            Some("http://127.0.0.1:6969/announce")
        );
        assert_eq!(meta.announce_list.len(), 2);
        assert_eq!(meta.comment.as_deref(), Some("hello"));
        let again = parse_torrent(&bytes).unwrap();
        assert_eq!(again.info_hash, meta.info_hash);
        assert_eq!(meta.info.layout().piece_count(), 3);
    }
}

#[test]
fn info_hash_is_sha1_of_the_original_bytes() {
    // An info dict with unsorted keys hashes as written, not as re-encoded.
    let info = b"d6:lengthi5e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaae";
    let mut unsorted = b"d4:infod4:name1:x6:lengthi5e12:piece lengthi16384e".to_vec();
    unsorted.extend_from_slice(b"6:pieces20:aaaaaaaaaaaaaaaaaaaaee");
    let meta = parse_torrent(&unsorted).unwrap();
    let expected: [u8; 20] = {
        use sha1::Digest;
        sha1::Sha1::digest(&unsorted[7..unsorted.len() - 1]).into()
    };
    assert_eq!(meta.info_hash.0, expected);
    assert_ne!(&unsorted[7..unsorted.len() - 1], &info[..]);
}

fn torrent_with_path(path: &[&str]) -> Vec<u8> {
    let mut file = OwnedValue::dict();
    file.insert("length", OwnedValue::Int(1));
    file.insert(
        "path",
        OwnedValue::List(path.iter().map(|c| OwnedValue::str(c)).collect()),
    );
    let mut info = OwnedValue::dict();
    info.insert("name", OwnedValue::str("t"));
    info.insert("piece length", OwnedValue::Int(16_384));
    info.insert("pieces", OwnedValue::Bytes(vec![0; 20]));
    info.insert("files", OwnedValue::List(vec![file]));
    let mut root = OwnedValue::dict();
    root.insert("info", info);
    root.to_bytes()
}

#[test]
fn paths_that_escape_the_data_directory_are_refused() {
    // `..`, absolute and empty components never reach the storage layer.
    for bad in [
        &["..", "etc", "passwd"][..],
        &["/etc"],
        &[""],
        &["a", "..", ".."],
        &["NUL"],
    ] {
        let err = parse_torrent(&torrent_with_path(bad)).unwrap_err();
        assert!(
            matches!(err, MetainfoError::UnsafePath { .. }),
            "{bad:?}: {err}"
        );
    }
    assert!(parse_torrent(&torrent_with_path(&["ok", "file"])).is_ok());
}

#[test]
fn wrong_piece_count_names_the_field() {
    // A `pieces` string that does not match the total length is refused with the field name.
    let mut info = sample_info(true);
    info.pieces.pop();
    let err = build_torrent(&info, &TorrentBuilder::default()).unwrap_err();
    assert!(err.to_string().contains("`pieces`"), "{err}");
}
