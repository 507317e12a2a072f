//! Human byte sizes on the command line: `4MiB`, `256KiB`, `16M`, `4GB`, `1000000`.
//!
//! One convention for every size ringseed reads, shared with `plan` and scenario files (see
//! [`crate::sim::units::parse_bytes`]): `kB`/`MB`/`GB` are SI (10³ steps), `KiB`/`MiB`/`GiB`
//! and the bare letters `K`/`M`/`G` are binary (2¹⁰ steps), as GNU coreutils write them.

/// Parses a byte size (see the module docs), with an error message for the command line.
pub fn parse_size(text: &str) -> Result<u64, String> {
    crate::sim::units::parse_bytes(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_sizes_use_the_shared_convention() {
        // The forms used in the README and docs: binary with `iB` or a bare letter, SI with `B`.
        assert_eq!(parse_size("256KiB"), Ok(256 * 1024));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4GB"), Ok(4_000_000_000));
        assert_eq!(parse_size("12345"), Ok(12345));
        assert!(parse_size("4 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
