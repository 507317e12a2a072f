//! Magnet parsing never panics, and whatever parses re-emits to a URI that parses identically.
//! The input is tried as a whole URI and as parameters after a valid `xt`, so the fuzzer
//! reaches the parameter parsers without first guessing `magnet:?xt=urn:btih:`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringseed::metainfo::Magnet;

fn check(text: &str) {
    if let Ok(magnet) = Magnet::parse(text) {
        let emitted = magnet.to_string();
        assert_eq!(Magnet::parse(&emitted).as_ref(), Ok(&magnet), "{emitted}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check(&text);
    check(&format!(
        "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&{text}"
    ));
});
