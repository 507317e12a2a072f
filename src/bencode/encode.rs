//! The canonical bencode encoder: dict keys sorted, integers without leading zeros.

use std::collections::BTreeMap;

use super::{Dict, Value};

/// An owned value for building documents (torrent files, extension messages, replies).
/// Dicts are `BTreeMap`s, so encoding is canonical by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedValue {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<OwnedValue>),
    /// A dict with sorted keys.
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

impl OwnedValue {
    /// A byte string from UTF-8 text.
    pub fn str(s: &str) -> OwnedValue {
        OwnedValue::Bytes(s.as_bytes().to_vec())
    }

    /// An empty dict, to be filled with [`OwnedValue::insert`].
    pub fn dict() -> OwnedValue {
        OwnedValue::Dict(BTreeMap::new())
    }

    /// Inserts `key → value` if this is a dict (does nothing otherwise); returns `self`.
    pub fn insert(&mut self, key: &str, value: OwnedValue) -> &mut OwnedValue {
        if let OwnedValue::Dict(map) = self {
            map.insert(key.as_bytes().to_vec(), value);
        }
        self
    }

    /// This value's canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends this value's canonical encoding to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut e = Encoder::new(out);
        self.write(&mut e);
    }

    fn write(&self, e: &mut Encoder<'_>) {
        match self {
            OwnedValue::Int(i) => e.int(*i),
            OwnedValue::Bytes(b) => e.bytes(b),
            OwnedValue::List(items) => {
                e.begin_list();
                for item in items {
                    item.write(e);
                }
                e.end();
            }
            OwnedValue::Dict(map) => {
                e.begin_dict();
                for (k, v) in map {
                    e.bytes(k);
                    v.write(e);
                }
                e.end();
            }
        }
    }
}

impl<'a> From<&Value<'a>> for OwnedValue {
    fn from(v: &Value<'a>) -> OwnedValue {
        match v {
            Value::Int(i) => OwnedValue::Int(*i),
            Value::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Value::List(items, _) => OwnedValue::List(items.iter().map(OwnedValue::from).collect()),
            Value::Dict(Dict { entries, .. }) => OwnedValue::Dict(
                entries
                    .iter()
                    .map(|(k, v)| (k.to_vec(), OwnedValue::from(v)))
                    .collect(),
            ),
        }
    }
}

/// Canonical encoding of a decoded value (keys re-sorted).
pub fn encode(value: &Value<'_>) -> Vec<u8> {
    OwnedValue::from(value).to_bytes()
}

/// A streaming writer for hot paths that should not build a tree (wire messages).
/// The caller is responsible for writing dict keys in sorted order.
pub struct Encoder<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> Encoder<'o> {
    /// An encoder appending to `out`.
    pub fn new(out: &'o mut Vec<u8>) -> Encoder<'o> {
        Encoder { out }
    }
    /// Writes `i<n>e`.
    pub fn int(&mut self, n: i64) {
        self.out.push(b'i');
        self.out.extend_from_slice(n.to_string().as_bytes());
        self.out.push(b'e');
    }
    /// Writes `<len>:<bytes>`.
    pub fn bytes(&mut self, b: &[u8]) {
        self.out.extend_from_slice(b.len().to_string().as_bytes());
        self.out.push(b':');
        self.out.extend_from_slice(b);
    }
    /// Writes a dict key (a byte string).
    pub fn key(&mut self, k: &str) {
        self.bytes(k.as_bytes());
    }
    /// Opens a list.
    pub fn begin_list(&mut self) {
        self.out.push(b'l');
    }
    /// Opens a dict.
    pub fn begin_dict(&mut self) {
        self.out.push(b'd');
    }
    /// Closes the innermost list or dict.
    pub fn end(&mut self) {
        self.out.push(b'e');
    }
}
