//! Torrent parsing never panics; what it accepts keeps its promises and yields a magnet link
//! that parses back. The input is tried as a whole file and as the tail of an info dict that
//! already has valid fields, so the fuzzer reaches file-list and path validation quickly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringseed::metainfo::{parse_torrent, Magnet};

/// The start of a torrent whose info dict has a name and piece length; the fuzz input
/// supplies the rest (`pieces`, `length` or `files`, …) and the closing `ee` is appended.
const HEAD: &[u8] = b"d8:announce14:http://t/a/ann4:infod4:name1:x12:piece lengthi16384e";

fn check(data: &[u8]) {
    let Ok(meta) = parse_torrent(data) else {
        return;
    };
    let layout = meta.info.layout();
    assert_eq!(layout.piece_count() as usize, meta.info.pieces.len());
    for i in 0..meta.info.files.len() {
        assert!(meta.info.file_path(i).is_relative());
    }
    let magnet = Magnet::from_metainfo(&meta);
    assert_eq!(Magnet::parse(&magnet.to_string()).as_ref(), Ok(&magnet));
}

fuzz_target!(|data: &[u8]| {
    check(data);
    check(&[HEAD, data, b"ee"].concat());
});
