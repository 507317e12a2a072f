//! Scenario files (`scenarios/*.toml`): the torrent, the peer classes and the policy knobs
//! of one simulated swarm. Every field has a default except the torrent size and the classes;
//! unknown fields are refused, so a typo does not silently run another experiment.

use serde::Deserialize;

use super::units::{de_bps, de_bytes, de_secs};

/// Most peers a scenario may have (the engine's tables are sized from it).
pub const PEERS_MAX: u64 = 200_000;
/// Most pieces a scenario may have.
pub const PIECES_MAX: u64 = 100_000;
/// Most picker blocks per piece (the flow model's resolution inside a piece).
pub const BLOCKS_PER_PIECE_MAX: u32 = 64;

/// A scenario file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Not valid TOML or not our schema.
    #[error("scenario is not valid: {0}")]
    Parse(#[from] toml::de::Error),
    /// A value outside what the simulator supports.
    #[error("scenario field `{field}`: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// Which pieces a downloader starts next.
#[derive(Copy, Clone, Debug, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PickOrderConfig {
    /// Rarest first (the default; BEP 3's strategy).
    #[default]
    Rarest,
    /// Lowest index first (streaming clients).
    Sequential,
    /// Uniformly random.
    Random,
}

/// One simulated swarm.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (used in output file names).
    pub name: String,
    /// What the scenario shows, for the summary.
    #[serde(default)]
    pub description: String,
    /// RNG seed: the same seed gives the same output.
    #[serde(default = "one")]
    pub seed: u64,
    /// File size.
    #[serde(deserialize_with = "de_bytes")]
    pub file_size: u64,
    /// Piece size.
    #[serde(deserialize_with = "de_bytes")]
    pub piece_size: u64,
    /// Picker blocks per piece: a choke or a departure loses at most the block in flight.
    #[serde(default = "eight")]
    pub blocks_per_piece: u32,
    /// Stop the simulation at this virtual time even if peers are still downloading.
    #[serde(default = "day", deserialize_with = "de_secs")]
    pub time_limit: f64,
    /// Time-series sampling interval.
    #[serde(default = "minute", deserialize_with = "de_secs")]
    pub sample_interval: f64,
    /// Piece order of every downloader.
    #[serde(default)]
    pub pick_order: PickOrderConfig,
    /// Leechers rank peers by what they upload to us (BEP 3 tit-for-tat); false: they rank
    /// by what we upload to them, the seeding rule, which ignores reciprocation.
    #[serde(default = "yes")]
    pub tit_for_tat: bool,
    /// Regular (rate-ranked) unchoke slots of a downloader; one optimistic slot comes on top.
    #[serde(default = "four")]
    pub leech_regular_slots: usize,
    /// Connections a peer dials up to (`SwarmConfig::conns_min`).
    #[serde(default = "twenty")]
    pub conns_min: usize,
    /// Connections a peer accepts at most (`SwarmConfig::conns_max`).
    #[serde(default = "fifty")]
    pub conns_max: usize,
    /// Peers a tracker announce returns.
    #[serde(default = "fifty")]
    pub numwant: usize,
    /// Regular announce interval.
    #[serde(default = "half_hour", deserialize_with = "de_secs")]
    pub announce_interval: f64,
    /// Shortest time between announces made because candidates ran out.
    #[serde(default = "minute", deserialize_with = "de_secs")]
    pub announce_min_interval: f64,
    /// The peer classes.
    #[serde(rename = "class")]
    pub classes: Vec<PeerClass>,
}

/// A group of peers with the same links and behaviour.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerClass {
    /// Name, used in reports ("seeder", "leecher", "free-rider", "origin").
    pub name: String,
    /// How many peers.
    pub count: u64,
    /// Upload capacity.
    #[serde(deserialize_with = "de_bps")]
    pub upload: u64,
    /// Download capacity.
    #[serde(deserialize_with = "de_bps")]
    pub download: u64,
    /// One-way latency of the peer's access link (a path's latency is the sum of both ends).
    #[serde(default = "twenty_ms", deserialize_with = "de_secs")]
    pub latency: f64,
    /// Starts with every piece.
    #[serde(default)]
    pub seed: bool,
    /// Never unchokes anyone (uploads nothing).
    #[serde(default)]
    pub free_rider: bool,
    /// Upload slots while seeding (the seeding choker's `upload_slots`).
    #[serde(default = "five")]
    pub upload_slots: usize,
    /// Connection limit override for this class (an appliance accepts thousands).
    #[serde(default)]
    pub conns_max: Option<usize>,
    /// First join time.
    #[serde(default, deserialize_with = "de_secs")]
    pub join_at: f64,
    /// Joins spread over this window after `join_at`.
    #[serde(default, deserialize_with = "de_secs")]
    pub join_spread: f64,
    /// Joins arrive as a flash crowd: exponential gaps with this mean time after `join_at`
    /// (instead of a uniform spread).
    #[serde(default, deserialize_with = "de_secs")]
    pub join_decay: f64,
    /// Stay this long after completing, then leave (absent: stay to the end).
    #[serde(default, deserialize_with = "de_opt_secs")]
    pub seed_time: Option<f64>,
    /// Give up and leave after an exponential time with this mean from joining (absent: never).
    #[serde(default, deserialize_with = "de_opt_secs")]
    pub abort_mean: Option<f64>,
    /// Leave after uploading this many copies of the file (the origin that seeds one copy).
    #[serde(default)]
    pub leave_after_copies: Option<f64>,
}

fn de_opt_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    de_secs(d).map(Some)
}

fn one() -> u64 {
    1
}
fn four() -> usize {
    4
}
fn five() -> usize {
    5
}
fn eight() -> u32 {
    8
}
fn twenty() -> usize {
    20
}
fn fifty() -> usize {
    50
}
fn yes() -> bool {
    true
}
fn day() -> f64 {
    86_400.0
}
fn minute() -> f64 {
    60.0
}
fn half_hour() -> f64 {
    1800.0
}
fn twenty_ms() -> f64 {
    0.02
}

fn invalid(field: &'static str, why: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        field,
        why: why.into(),
    }
}

impl Scenario {
    /// Parses and checks a scenario file's text.
    pub fn from_toml(text: &str) -> Result<Scenario, ScenarioError> {
        let s: Scenario = toml::from_str(text)?;
        s.validate()?;
        Ok(s)
    }

    /// Number of pieces.
    pub fn pieces(&self) -> u64 {
        self.file_size.div_ceil(self.piece_size.max(1))
    }

    /// Total peers over all classes.
    pub fn peers(&self) -> u64 {
        self.classes.iter().map(|c| c.count).sum()
    }

    /// Checks the limits the engine relies on.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        if self.piece_size == 0 || self.file_size == 0 {
            return Err(invalid("file_size", "file and piece size must be positive"));
        }
        if self.pieces() > PIECES_MAX {
            return Err(invalid(
                "piece_size",
                format!("more than {PIECES_MAX} pieces"),
            ));
        }
        if self.blocks_per_piece == 0 || self.blocks_per_piece > BLOCKS_PER_PIECE_MAX {
            return Err(invalid(
                "blocks_per_piece",
                format!("must be 1..={BLOCKS_PER_PIECE_MAX}"),
            ));
        }
        if self.peers() == 0 || self.peers() > PEERS_MAX {
            return Err(invalid("class", format!("1..={PEERS_MAX} peers in total")));
        }
        if self.conns_min == 0 || self.conns_max < self.conns_min {
            return Err(invalid("conns_max", "need 0 < conns_min <= conns_max"));
        }
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.sample_interval) || !positive(self.time_limit) {
            return Err(invalid("sample_interval", "intervals must be positive"));
        }
        for c in &self.classes {
            if c.download == 0 {
                return Err(invalid(
                    "download",
                    format!("class {} has no download", c.name),
                ));
            }
            if c.upload_slots == 0 {
                return Err(invalid("upload_slots", "at least one"));
            }
        }
        Ok(())
    }

    /// The same scenario with every class count divided by `factor` (at least one peer per
    /// non-empty class): the reduced size CI runs.
    pub fn scaled_down(&self, factor: u64) -> Scenario {
        let mut s = self.clone();
        for c in &mut s.classes {
            if c.count > 0 {
                c.count = (c.count / factor.max(1)).max(1);
            }
        }
        s
    }
}
