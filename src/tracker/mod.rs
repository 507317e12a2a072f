//! Tracker protocol: HTTP announce (BEP 3, BEP 23 compact) as a sans-IO state machine.
