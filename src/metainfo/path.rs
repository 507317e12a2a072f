//! File path validation: nothing from a torrent may escape the data directory.

/// Names Windows reserves in any directory; refused so a torrent made here stays portable
/// and a torrent made elsewhere cannot smuggle in device names.
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Longest path component in bytes (the common filesystem limit).
pub const COMPONENT_BYTES_MAX: usize = 255;

/// Checks one path component; returns why it is refused.
pub fn validate_component(c: &str) -> Result<(), &'static str> {
    if c.is_empty() {
        return Err("empty path component");
    }
    if c == "." || c == ".." {
        return Err("`.` or `..` component");
    }
    if c.len() > COMPONENT_BYTES_MAX {
        return Err("path component longer than 255 bytes");
    }
    if c.contains(['/', '\\']) {
        return Err("path separator inside a component");
    }
    if c.chars().any(|ch| ch == '\0' || ch.is_control()) {
        return Err("control character in path");
    }
    if c.len() >= 2 && c.as_bytes()[1] == b':' {
        return Err("drive-letter (absolute) path");
    }
    let stem = c.split('.').next().unwrap_or(c).trim_end();
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem)) {
        return Err("reserved device name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_reserved_components_are_refused() {
        // Every way a component could leave the data directory or name a device is refused.
        for bad in [
            "", ".", "..", "a/b", "/etc", "a\\b", "C:x", "nul", "con.txt", "x\0y", "a\nb",
        ] {
            assert!(validate_component(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "file.bin",
            "..hidden",
            "a..b",
            "consonant",
            "日本語.txt",
            "with space",
        ] {
            assert!(validate_component(good).is_ok(), "{good:?} refused");
        }
    }
}
