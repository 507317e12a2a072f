//! The bencode decoder: borrowed values, exact raw spans, hard limits.

use super::BencodeError;

/// Bounds applied while decoding; every one is checked before memory is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists and dicts. Real torrents use 4-5 levels.
    pub depth_max: usize,
    /// Longest single byte string. The `pieces` string of a 100 GB torrent with 1 MiB pieces
    /// is 2 MB, so the default leaves room for small pieces on large releases.
    pub string_bytes_max: u64,
    /// Largest input accepted at all.
    pub total_bytes_max: usize,
    /// Most values (integers, strings, lists, dicts) in one document.
    pub values_max: usize,
}

impl Limits {
    /// Limits for .torrent files: up to 64 MiB with 64 Mi-byte strings.
    pub const TORRENT_FILE: Limits = Limits {
        depth_max: 32,
        string_bytes_max: 64 << 20,
        total_bytes_max: 64 << 20,
        values_max: 4 << 20,
    };
    /// Limits for small protocol messages (extension handshakes, tracker replies, KRPC).
    pub const MESSAGE: Limits = Limits {
        depth_max: 16,
        string_bytes_max: 1 << 20,
        total_bytes_max: 1 << 20,
        values_max: 64 << 10,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::TORRENT_FILE
    }
}

/// A decoded value borrowing its strings from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// `i…e`
    Int(i64),
    /// `<len>:<bytes>`
    Bytes(&'a [u8]),
    /// `l…e`, with the raw bytes it was decoded from.
    List(Vec<Value<'a>>, &'a [u8]),
    /// `d…e`
    Dict(Dict<'a>),
}

/// A decoded dict: entries in input order (keys unique) and the raw bytes it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dict<'a> {
    /// Key/value pairs in the order they appeared.
    pub entries: Vec<(&'a [u8], Value<'a>)>,
    /// The exact input bytes of this dict, `d` to `e` inclusive (for info-hashes).
    pub raw: &'a [u8],
}

impl<'a> Dict<'a> {
    /// The value for `key`, if present.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl<'a> Value<'a> {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    /// The byte string as UTF-8, if this is a valid UTF-8 string.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }
    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(items, _) => Some(items),
            _ => None,
        }
    }
    /// The dict, if this is one.
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
}

/// Decodes exactly one value that must span the whole input.
pub fn decode(input: &[u8], limits: Limits) -> Result<Value<'_>, BencodeError> {
    let (value, used) = decode_prefix(input, limits)?;
    if used != input.len() {
        return Err(BencodeError::TrailingBytes {
            at: used,
            extra: input.len() - used,
        });
    }
    Ok(value)
}

/// Decodes one value at the start of `input`; returns it and how many bytes it used.
/// Used where bencode is followed by raw data (BEP 9 metadata pieces).
pub fn decode_prefix(input: &[u8], limits: Limits) -> Result<(Value<'_>, usize), BencodeError> {
    if input.len() > limits.total_bytes_max {
        return Err(BencodeError::TooLarge {
            len: input.len(),
            max: limits.total_bytes_max,
        });
    }
    let mut d = Decoder {
        input,
        pos: 0,
        limits,
        values: 0,
    };
    let v = d.value(0)?;
    Ok((v, d.pos))
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    limits: Limits,
    values: usize,
}

impl<'a> Decoder<'a> {
    fn peek(&self) -> Result<u8, BencodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(BencodeError::UnexpectedEnd { at: self.pos })
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        self.values += 1;
        if self.values > self.limits.values_max {
            return Err(BencodeError::TooManyValues {
                max: self.limits.values_max,
            });
        }
        match self.peek()? {
            b'i' => self.int(),
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => self.list(depth),
            b'd' => self.dict(depth),
            byte => Err(BencodeError::InvalidByte { at: self.pos, byte }),
        }
    }

    fn enter(&self, depth: usize) -> Result<(), BencodeError> {
        if depth >= self.limits.depth_max {
            return Err(BencodeError::NestedTooDeep {
                at: self.pos,
                max: self.limits.depth_max,
            });
        }
        Ok(())
    }

    fn int(&mut self) -> Result<Value<'a>, BencodeError> {
        self.pos += 1; // 'i'
        let end = self.find(b'e')?;
        let text = &self.input[self.pos..end];
        let value = parse_int(text, self.pos)?;
        self.pos = end + 1;
        Ok(Value::Int(value))
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        let colon = self.find(b':')?;
        let len = parse_len(&self.input[start..colon], start)?;
        let max = self.limits.string_bytes_max;
        if len > max {
            return Err(BencodeError::StringTooLong {
                at: start,
                len,
                max,
            });
        }
        // Within the limit but past the end: the input was cut short (a truncated file),
        // which "exceeds the limit of <bytes left>" would misdescribe.
        if len > (self.input.len() - colon - 1) as u64 {
            return Err(BencodeError::UnexpectedEnd {
                at: self.input.len(),
            });
        }
        let from = colon + 1;
        let to = from + len as usize;
        self.pos = to;
        Ok(&self.input[from..to])
    }

    fn list(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        self.enter(depth)?;
        let start = self.pos;
        self.pos += 1; // 'l'
        let mut items = Vec::new();
        while self.peek()? != b'e' {
            items.push(self.value(depth + 1)?);
        }
        self.pos += 1;
        Ok(Value::List(items, &self.input[start..self.pos]))
    }

    fn dict(&mut self, depth: usize) -> Result<Value<'a>, BencodeError> {
        self.enter(depth)?;
        let start = self.pos;
        self.pos += 1; // 'd'
        let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
        // Key order is not enforced (many real torrents have unsorted keys and the info-hash
        // is taken from raw bytes anyway), but a repeated key is ambiguous. Sorted keys are
        // checked against the previous one; the first out-of-order key switches to a set so
        // hostile reverse-sorted dicts cost O(n), not O(n^2).
        let mut seen: Option<std::collections::HashSet<&'a [u8]>> = None;
        while self.peek()? != b'e' {
            let key_at = self.pos;
            let byte = self.peek()?;
            if !byte.is_ascii_digit() {
                return Err(BencodeError::InvalidByte { at: key_at, byte });
            }
            let key = self.bytes()?;
            let fresh = match (&mut seen, entries.last()) {
                (Some(set), _) => set.insert(key),
                (None, Some((last, _))) if key > *last => true,
                (None, None) => true,
                (None, Some(_)) => {
                    let set = seen.insert(entries.iter().map(|(k, _)| *k).collect());
                    set.insert(key)
                }
            };
            if !fresh {
                return Err(BencodeError::DuplicateKey { at: key_at });
            }
            let value = self.value(depth + 1)?;
            entries.push((key, value));
        }
        self.pos += 1;
        Ok(Value::Dict(Dict {
            entries,
            raw: &self.input[start..self.pos],
        }))
    }

    /// Position of the next `byte`, searching at most 21 bytes (enough for any i64 or
    /// string length) so a missing terminator costs nothing.
    fn find(&self, byte: u8) -> Result<usize, BencodeError> {
        let window_end = (self.pos + 22).min(self.input.len());
        match self.input[self.pos..window_end]
            .iter()
            .position(|&b| b == byte)
        {
            Some(i) => Ok(self.pos + i),
            None if window_end == self.input.len() => Err(BencodeError::UnexpectedEnd {
                at: self.input.len(),
            }),
            None => Err(BencodeError::IntegerOverflow { at: self.pos }),
        }
    }
}

fn parse_int(text: &[u8], at: usize) -> Result<i64, BencodeError> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    check_digits(digits, at)?;
    if negative && digits == b"0" {
        return Err(BencodeError::NonCanonicalNumber { at });
    }
    let mut value: i64 = 0;
    for &d in digits {
        let digit = i64::from(d - b'0');
        value = value
            .checked_mul(10)
            .and_then(|v| {
                if negative {
                    v.checked_sub(digit)
                } else {
                    v.checked_add(digit)
                }
            })
            .ok_or(BencodeError::IntegerOverflow { at })?;
    }
    Ok(value)
}

fn parse_len(text: &[u8], at: usize) -> Result<u64, BencodeError> {
    check_digits(text, at)?;
    let mut value: u64 = 0;
    for &d in text {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d - b'0')))
            .ok_or(BencodeError::IntegerOverflow { at })?;
    }
    Ok(value)
}

/// Digits only, at least one, and no leading zero unless the number is exactly `0`.
fn check_digits(digits: &[u8], at: usize) -> Result<(), BencodeError> {
    if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
        return Err(BencodeError::NonCanonicalNumber { at });
    }
    if let Some(i) = digits.iter().position(|b| !b.is_ascii_digit()) {
        return Err(BencodeError::InvalidByte {
            at: at + i,
            byte: digits[i],
        });
    }
    Ok(())
}
