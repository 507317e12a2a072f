//! Bencode (BEP 3): a decoder with hard limits and a canonical encoder.
