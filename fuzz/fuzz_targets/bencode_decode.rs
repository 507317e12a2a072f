//! Bencode decoding never panics, and canonical re-encoding is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringseed::bencode::{decode, decode_prefix, encode, Limits};

fuzz_target!(|data: &[u8]| {
    let _ = decode_prefix(data, Limits::MESSAGE);
    if let Ok(value) = decode(data, Limits::TORRENT_FILE) {
        let canonical = encode(&value);
        let again = decode(&canonical, Limits::TORRENT_FILE).expect("canonical output decodes");
        assert_eq!(encode(&again), canonical, "re-encoding is not stable");
    }
});
