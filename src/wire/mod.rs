//! The peer wire protocol codec (BEP 3, BEP 6 fast, BEP 10 extensions, BEP 9 metadata).
