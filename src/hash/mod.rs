//! SHA-1 piece hashing: a parallel pipeline over all cores using the `sha1` crate (SHA-NI).
