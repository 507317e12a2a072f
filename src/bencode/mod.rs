//! Bencode (BEP 3): a decoder with hard limits and a canonical encoder.
//!
//! The decoder borrows from its input and records the exact bytes of every list and dict, so
//! the info-hash is the SHA-1 of the info dict *as it appeared in the file*, never of a
//! re-encoding. Every dimension of the input is bounded ([`Limits`]); bad input gets a
//! [`BencodeError`] naming the offset and the rule, never a panic.

mod decode;
mod encode;

pub use decode::{decode, decode_prefix, Dict, Limits, Value};
pub use encode::{encode, Encoder, OwnedValue};

/// What went wrong while decoding, and where (byte offset into the input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    /// The input stopped in the middle of a value.
    #[error("input ends in the middle of a value (at byte {at})")]
    UnexpectedEnd {
        /// Offset where more input was needed.
        at: usize,
    },
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte 0x{byte:02x} at byte {at}")]
    InvalidByte {
        /// Offset of the byte.
        at: usize,
        /// The byte found.
        byte: u8,
    },
    /// Integers and string lengths may not have leading zeros or be `-0`.
    #[error("non-canonical number at byte {at} (leading zero, `-0` or no digits)")]
    NonCanonicalNumber {
        /// Offset of the number.
        at: usize,
    },
    /// An integer outside the range of `i64`.
    #[error("integer at byte {at} does not fit in 64 bits")]
    IntegerOverflow {
        /// Offset of the integer.
        at: usize,
    },
    /// A byte string longer than the limit (one cut short by the end of input is
    /// [`BencodeError::UnexpectedEnd`]).
    #[error("byte string of {len} bytes at byte {at} exceeds the limit of {max}")]
    StringTooLong {
        /// Offset of the string's length prefix.
        at: usize,
        /// Declared length.
        len: u64,
        /// The limit in force.
        max: u64,
    },
    /// Lists and dicts nested deeper than the limit.
    #[error("nesting deeper than {max} levels at byte {at}")]
    NestedTooDeep {
        /// Offset of the container that went too deep.
        at: usize,
        /// The limit in force.
        max: usize,
    },
    /// The whole input is larger than the limit.
    #[error("input of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// More values than the limit (bounds the memory of the decoded tree).
    #[error("more than {max} values in one document")]
    TooManyValues {
        /// The limit in force.
        max: usize,
    },
    /// The same key twice in one dict.
    #[error("duplicate dict key at byte {at}")]
    DuplicateKey {
        /// Offset of the second occurrence.
        at: usize,
    },
    /// Bytes left over after a complete value.
    #[error("{extra} trailing bytes after the value (at byte {at})")]
    TrailingBytes {
        /// Offset of the first extra byte.
        at: usize,
        /// How many extra bytes.
        extra: usize,
    },
}

#[cfg(test)]
mod tests;
