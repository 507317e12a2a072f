//! One peer connection as a sans-IO state machine: bytes and time in, actions out.
