//! Units for capacity planning and scenarios: data sizes, bit rates and durations as people
//! write them (`4GB`, `2MiB`, `1Mbps`, `10Gbps`, `2h`, `30ms`), parsed and printed.
//!
//! Sizes follow SI for `kB`/`MB`/`GB`/`TB` (10³ steps, as link speeds and the capacity table
//! do) and binary for `KiB`/`MiB`/`GiB`/`TiB` and the bare letters `K`/`M`/`G`/`T` (2¹⁰
//! steps, as piece sizes are); the command line uses the same parser. Rates are bits per
//! second, always SI.

use serde::de::{Deserializer, Error as _};
use serde::Deserialize;

/// A unit string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// The number part is missing or not a number.
    #[error("`{0}` does not start with a number")]
    NotANumber(String),
    /// The unit is not one we know.
    #[error("unknown unit `{unit}` in `{text}` (try {examples})")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit part.
        unit: String,
        /// Units that would have parsed.
        examples: &'static str,
    },
    /// Negative, not finite, or too large.
    #[error("`{0}` is out of range")]
    OutOfRange(String),
}

fn split(text: &str) -> Result<(f64, String), UnitError> {
    let t = text.trim();
    let at = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(at);
    let n: f64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| UnitError::NotANumber(text.to_string()))?;
    if !n.is_finite() || n < 0.0 {
        return Err(UnitError::OutOfRange(text.to_string()));
    }
    Ok((n, unit.trim().to_string()))
}

fn scaled(text: &str, n: f64, factor: f64) -> Result<u64, UnitError> {
    let v = (n * factor).round();
    if v > 1e19 {
        return Err(UnitError::OutOfRange(text.to_string()));
    }
    Ok(v as u64)
}

/// Parses a size in bytes, the one convention for every size ringseed reads (command line
/// and scenario files), as GNU coreutils write them:
/// - `kB`/`MB`/`GB`/`TB` are SI: `4GB` = 4·10⁹ (the capacity table's and disks' units);
/// - `KiB`/`MiB`/`GiB`/`TiB` and the bare letters `K`/`M`/`G`/`T` are binary: `2MiB` =
///   `2M` = 2·2²⁰ (piece sizes);
/// - no unit or `B` is bytes. Letters are case-insensitive (`mb` = `MB`, `g` = `G`).
///
/// Whole numbers are exact; decimals (`1.5GB`) are rounded to the byte.
pub fn parse_bytes(text: &str) -> Result<u64, UnitError> {
    let (n, unit) = split(text)?;
    let lower = unit.to_ascii_lowercase();
    let (prefix, suffix) = match lower.char_indices().nth(1) {
        Some((at, _)) => lower.split_at(at),
        None => (lower.as_str(), ""),
    };
    let power = match prefix {
        "" | "b" if suffix.is_empty() => Some(0),
        "k" => Some(1),
        "m" => Some(2),
        "g" => Some(3),
        "t" => Some(4),
        _ => None,
    };
    let base: u64 = match suffix {
        "" | "ib" => 1024,
        "b" => 1000,
        _ => 0,
    };
    let (Some(power), true) = (power, base > 0) else {
        return Err(UnitError::UnknownUnit {
            text: text.to_string(),
            unit,
            examples: "4GB, 2MB, 256KiB, 2MiB, 16M",
        });
    };
    let factor = base.pow(power);
    let t = text.trim();
    let digits = &t[..t.len() - unit.len()];
    if let Ok(whole) = digits.trim().replace('_', "").parse::<u64>() {
        return whole
            .checked_mul(factor)
            .ok_or_else(|| UnitError::OutOfRange(text.to_string()));
    }
    scaled(text, n, factor as f64)
}

/// Parses a bit rate in bits per second: `1Mbps` = 10⁶, `10Gbps` = 10¹⁰, `100MB/s` = 8·10⁸.
pub fn parse_bps(text: &str) -> Result<u64, UnitError> {
    let (n, unit) = split(text)?;
    let factor = match unit.as_str() {
        "bps" | "bit/s" => 1.0,
        "kbps" | "Kbps" | "kbit/s" => 1e3,
        "Mbps" | "mbps" | "Mbit/s" => 1e6,
        "Gbps" | "gbps" | "Gbit/s" => 1e9,
        "Tbps" | "tbps" | "Tbit/s" => 1e12,
        "B/s" => 8.0,
        "kB/s" | "KB/s" => 8e3,
        "MB/s" => 8e6,
        "GB/s" => 8e9,
        _ => {
            return Err(UnitError::UnknownUnit {
                text: text.to_string(),
                unit,
                examples: "1Mbps, 10Gbps, 100MB/s",
            })
        }
    };
    scaled(text, n, factor)
}

/// Parses a duration in seconds: `2h`, `90min`, `30s`, `20ms`.
pub fn parse_secs(text: &str) -> Result<f64, UnitError> {
    let (n, unit) = split(text)?;
    let factor = match unit.as_str() {
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => {
            return Err(UnitError::UnknownUnit {
                text: text.to_string(),
                unit,
                examples: "20ms, 30s, 90min, 2h",
            })
        }
    };
    Ok(n * factor)
}

/// `n` scaled to three significant-ish digits with an SI prefix: `fmt_si(1.25e9, "bps")`
/// is `1.25 Gbps`.
pub fn fmt_si(n: f64, unit: &str) -> String {
    let (v, p) = if n.abs() >= 1e15 {
        (n / 1e15, "P")
    } else if n.abs() >= 1e12 {
        (n / 1e12, "T")
    } else if n.abs() >= 1e9 {
        (n / 1e9, "G")
    } else if n.abs() >= 1e6 {
        (n / 1e6, "M")
    } else if n.abs() >= 1e3 {
        (n / 1e3, "k")
    } else {
        (n, "")
    };
    format!("{} {p}{unit}", trim_num(v))
}

/// A number with at most 3 decimals and no trailing zeros.
pub fn trim_num(v: f64) -> String {
    let s = if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    };
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// A duration for people: `53.3 min`, `7.11 h`, `42 s`.
pub fn fmt_secs(s: f64) -> String {
    if s >= 2.0 * 3600.0 {
        format!("{} h", trim_num(s / 3600.0))
    } else if s >= 120.0 {
        format!("{} min", trim_num(s / 60.0))
    } else {
        format!("{} s", trim_num(s))
    }
}

/// Serde adapter: a size written as a string (`"4GB"`) or a plain number of bytes.
pub fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrText::deserialize(d)? {
        NumOrText::Num(n) => Ok(n as u64),
        NumOrText::Text(t) => parse_bytes(&t).map_err(D::Error::custom),
    }
}

/// Serde adapter: a bit rate written as a string (`"1Mbps"`) or a number of bits/s.
pub fn de_bps<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match NumOrText::deserialize(d)? {
        NumOrText::Num(n) => Ok(n as u64),
        NumOrText::Text(t) => parse_bps(&t).map_err(D::Error::custom),
    }
}

/// Serde adapter: a duration written as a string (`"20ms"`) or a number of seconds.
pub fn de_secs<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match NumOrText::deserialize(d)? {
        NumOrText::Num(n) => Ok(n),
        NumOrText::Text(t) => parse_secs(&t).map_err(D::Error::custom),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Num(f64),
    Text(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_rates_and_durations_parse_in_the_units_the_docs_use() {
        // SI for GB/MB and link speeds, IEC for MiB; the seed's figures come out exact.
        assert_eq!(parse_bytes("4GB"), Ok(4_000_000_000));
        assert_eq!(parse_bytes("2MB"), Ok(2_000_000));
        assert_eq!(parse_bytes("256KiB"), Ok(262_144));
        assert_eq!(parse_bytes("100GB"), Ok(100_000_000_000));
        assert_eq!(parse_bps("1Mbps"), Ok(1_000_000));
        assert_eq!(parse_bps("10Gbps"), Ok(10_000_000_000));
        assert_eq!(parse_bps("2.5Gbps"), Ok(2_500_000_000));
        assert_eq!(parse_bps("100MB/s"), Ok(800_000_000));
        assert_eq!(parse_secs("2h"), Ok(7200.0));
        assert_eq!(parse_secs("20ms"), Ok(0.02));
        assert!(parse_bytes("4 parsecs").is_err());
        assert!(parse_bps("fast").is_err());
        assert!(parse_bps("-1Mbps").is_err());
    }

    #[test]
    fn sizes_follow_one_convention_si_with_b_binary_without() {
        // The GNU coreutils rule, shared by the command line and scenario files.
        assert_eq!(parse_bytes("1kB"), Ok(1000));
        assert_eq!(parse_bytes("1KB"), Ok(1000));
        assert_eq!(parse_bytes("1K"), Ok(1024));
        assert_eq!(parse_bytes("1KiB"), Ok(1024));
        assert_eq!(parse_bytes("16M"), Ok(16 << 20));
        assert_eq!(parse_bytes("16mib"), Ok(16 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1TB"), Ok(1_000_000_000_000));
        assert_eq!(parse_bytes("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("512B"), Ok(512));
        assert_eq!(parse_bytes("12345678901234567"), Ok(12_345_678_901_234_567));
        for bad in [
            "MiB",
            "4 parsecs",
            "1bb",
            "1Mbps",
            "1KiBB",
            "99999999999T",
            "-1K",
            "",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn numbers_print_with_si_prefixes() {
        // What `plan` prints for the seed's figures.
        assert_eq!(fmt_si(10e9, "bps"), "10 Gbps");
        assert_eq!(fmt_si(1.25e6, "bps"), "1.25 Mbps");
        assert_eq!(fmt_secs(3200.0), "53.333 min");
        assert_eq!(fmt_secs(25_600.0), "7.111 h");
    }
}
