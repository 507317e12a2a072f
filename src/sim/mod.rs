//! The simulation and capacity-planning shell: `plan` (the capacity math, step by step) and
//! the discrete-event swarm simulator that drives the real policy of `torrent` (picker,
//! chokers, swarm) for thousands of virtual peers in virtual time.
//!
//! A shell in ARCHITECTURE.md's sense: it owns a virtual clock and a seeded RNG, never the
//! wall clock, so the same scenario and seed give the same output byte for byte.

pub mod plan;
pub mod plot;
pub mod units;

mod choke;
pub mod engine;
mod queue;
pub mod report;
pub mod scenario;
mod setup;
mod tracker;
mod transfer;

pub use engine::{Outcome, PeerRecord, Sample, World};
pub use scenario::{PeerClass, Scenario, ScenarioError};

#[cfg(test)]
mod tests;
