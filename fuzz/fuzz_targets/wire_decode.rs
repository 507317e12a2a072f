//! Feeds arbitrary bytes to every wire decoder: the handshake, a stream of framed messages,
//! and the BEP 10 / BEP 9 payloads found inside `extended` frames. Nothing may panic, every
//! decoded frame must re-encode to exactly the bytes it came from, and `missing` must never
//! claim more bytes than the frame limit allows.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringseed::wire::{
    decode_message, Decoded, ExtensionHandshake, Handshake, Message, MetadataMessage,
    HANDSHAKE_BYTES, MESSAGE_BYTES_MAX,
};

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    if let Ok(Decoded::Complete { used, .. }) = Handshake::decode(rest) {
        assert_eq!(used, HANDSHAKE_BYTES);
        rest = &rest[used..];
    }
    loop {
        match decode_message(rest) {
            Ok(Decoded::Complete { value, used }) => {
                assert!(used <= MESSAGE_BYTES_MAX);
                let mut again = Vec::with_capacity(used);
                value.encode(&mut again);
                assert_eq!(again, &rest[..used]);
                if let Message::Extended { payload, .. } = value {
                    let _ = ExtensionHandshake::decode(payload);
                    let _ = MetadataMessage::decode(payload);
                }
                rest = &rest[used..];
            }
            Ok(Decoded::Incomplete { missing }) => {
                assert!(missing > 0 && rest.len() + missing <= MESSAGE_BYTES_MAX);
                break;
            }
            Err(_) => break,
        }
    }
});
