//! Feeds arbitrary bytes to the BEP 11 `ut_pex` decoder. Nothing may panic, a decoded message
//! stays within the per-message limits and holds only usable addresses, and re-encoding it
//! then decoding again gives the same message (IPv4 entries ahead of IPv6 ones, as on the
//! wire).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringseed::wire::{PexMessage, PEX_ADDED_MAX, PEX_DROPPED_MAX};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = PexMessage::decode(data) else {
        return;
    };
    assert!(msg.added.len() <= PEX_ADDED_MAX);
    assert!(msg.dropped.len() <= PEX_DROPPED_MAX);
    for p in &msg.added {
        assert!(p.addr.port() != 0 && !p.addr.ip().is_unspecified());
    }
    let mut again = Vec::new();
    msg.encode(&mut again);
    assert_eq!(PexMessage::decode(&again).expect("our own encoding decodes"), msg);
});
