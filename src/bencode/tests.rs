//! Unit and property tests for the bencode codec.

use proptest::prelude::*;

use super::*;

fn dec(s: &[u8]) -> Result<Value<'_>, BencodeError> {
    decode(s, Limits::MESSAGE)
}

#[test]
fn decodes_every_kind_of_value() {
    // One document with each value type decodes to the expected tree.
    let v = dec(b"d3:agei-42e4:listl1:a1:be4:name4:spame").unwrap();
    let d = v.as_dict().unwrap();
    assert_eq!(d.get(b"age").and_then(Value::as_int), Some(-42));
    assert_eq!(d.get(b"name").and_then(Value::as_str), Some("spam"));
    assert_eq!(
        d.get(b"list").and_then(Value::as_list).map(<[_]>::len),
        Some(2)
    );
}

#[test]
fn dict_records_its_exact_raw_bytes() {
    // The info-hash must be taken from the original bytes, including unsorted keys.
    let doc = b"d4:infod1:zi1e1:ai2ee3:zzz0:e";
    let v = dec(doc).unwrap();
    let info = v
        .as_dict()
        .unwrap()
        .get(b"info")
        .unwrap()
        .as_dict()
        .unwrap();
    assert_eq!(info.raw, b"d1:zi1e1:ai2ee");
}

#[test]
fn integer_rules_are_enforced() {
    // Leading zeros, -0, empty and overflowing integers are refused with a clear error.
    for bad in [
        &b"i03e"[..],
        b"i-0e",
        b"ie",
        b"i-e",
        b"i1x2e",
        b"i99999999999999999999e",
    ] {
        assert!(
            dec(bad).is_err(),
            "{:?} accepted",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(dec(b"i0e").unwrap(), Value::Int(0));
    assert_eq!(
        dec(b"i-9223372036854775808e").unwrap(),
        Value::Int(i64::MIN)
    );
    assert_eq!(dec(b"i9223372036854775807e").unwrap(), Value::Int(i64::MAX));
}

#[test]
fn string_lengths_are_bounded() {
    // A declared length beyond the input or the limit is refused before allocating; one
    // beyond the input only is reported as the input ending early (a truncated file).
    assert!(matches!(
        dec(b"5:abc"),
        Err(BencodeError::UnexpectedEnd { at: 5 })
    ));
    let limits = Limits {
        string_bytes_max: 2,
        ..Limits::MESSAGE
    };
    assert!(decode(b"3:abc", limits).is_err());
    assert!(dec(b"03:abc").is_err());
    assert!(dec(b"99999999999999999999999:").is_err());
}

#[test]
fn nesting_depth_is_bounded() {
    // Deeply nested lists are refused instead of overflowing the stack.
    let deep: Vec<u8> = std::iter::repeat_n(b'l', 100_000)
        .chain(std::iter::repeat_n(b'e', 100_000))
        .collect();
    assert!(matches!(
        dec(&deep),
        Err(BencodeError::TooLarge { .. }) | Err(BencodeError::NestedTooDeep { .. })
    ));
    let limits = Limits {
        total_bytes_max: usize::MAX,
        ..Limits::MESSAGE
    };
    assert!(matches!(
        decode(&deep, limits),
        Err(BencodeError::NestedTooDeep { max: 16, .. })
    ));
}

#[test]
fn value_count_is_bounded() {
    // Many tiny values cannot blow up the decoded tree's memory.
    let mut doc = b"l".to_vec();
    for _ in 0..100 {
        doc.extend_from_slice(b"i1e");
    }
    doc.push(b'e');
    let limits = Limits {
        values_max: 50,
        ..Limits::MESSAGE
    };
    assert_eq!(
        decode(&doc, limits),
        Err(BencodeError::TooManyValues { max: 50 })
    );
}

#[test]
fn duplicate_keys_and_trailing_bytes_are_refused() {
    // Ambiguous dicts and garbage after a document are errors.
    assert!(matches!(
        dec(b"d1:ai1e1:ai2ee"),
        Err(BencodeError::DuplicateKey { .. })
    ));
    assert!(matches!(
        dec(b"i1ei2e"),
        Err(BencodeError::TrailingBytes { at: 3, extra: 3 })
    ));
    assert!(matches!(
        dec(b"di1ei2ee"),
        Err(BencodeError::InvalidByte { .. })
    ));
    assert_eq!(decode_prefix(b"i1eXYZ", Limits::MESSAGE).unwrap().1, 3);
}

#[test]
fn encoder_sorts_dict_keys() {
    // Re-encoding an unsorted dict yields the canonical (sorted) form.
    let v = dec(b"d1:bi1e1:ai2ee").unwrap();
    assert_eq!(encode(&v), b"d1:ai2e1:bi1ee");
}

fn arb_value() -> impl Strategy<Value = OwnedValue> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(OwnedValue::Int),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(OwnedValue::Bytes),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(OwnedValue::List),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..12),
                inner,
                0..8
            )
            .prop_map(OwnedValue::Dict),
        ]
    })
}

proptest! {
    #[test]
    fn decode_of_encode_is_identity(v in arb_value()) {
        let bytes = v.to_bytes();
        let decoded = dec(&bytes).unwrap();
        prop_assert_eq!(OwnedValue::from(&decoded), v);
        prop_assert_eq!(encode(&decoded), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = dec(&bytes);
    }

    #[test]
    fn mutated_documents_never_panic(v in arb_value(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut bytes = v.to_bytes();
        for (i, b) in flips {
            if !bytes.is_empty() {
                let n = bytes.len();
                bytes[i % n] = b;
            }
        }
        let _ = dec(&bytes);
    }
}
