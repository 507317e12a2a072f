//! The load generator behind `ringseed bench`: many cheap wire-protocol leechers.
