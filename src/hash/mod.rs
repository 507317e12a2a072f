//! SHA-1 piece hashing (BEP 3) on every core: building torrents from files (`create`) and
//! checking data against a torrent (`verify`).
//!
//! Owns the parallel pipeline: one worker per core, each reads its own runs of pieces (`pread`
//! into a reused buffer, or read-only mmap windows once the SIGBUS guard is installed) and
//! hashes them with the `sha1` crate (SHA-NI where the CPU has it). This is a shell module
//! (threads, files, clocks); it never runs on a thread that serves peers.

mod create;
mod mmap;
mod pipeline;
pub mod progress;
mod sigbus;
mod verify;

pub use create::{
    choose_piece_length, create_torrent, CreateOptions, CREATED_BY, PIECES_TARGET_MAX,
    PIECE_LENGTH_AUTO_MAX, PIECE_LENGTH_AUTO_MIN,
};
pub use pipeline::{ReadMode, ReadProblem};
pub use progress::Progress;
pub use sigbus::{install_sigbus_guard, sigbus_guard_installed, SIGBUS_EXIT_CODE, SIGBUS_MESSAGE};
pub use verify::{verify, BadPiece, FileProblem, PieceFault, VerifyOptions, VerifyReport};

use std::path::PathBuf;

/// Worker threads to use when the caller asks for `0`: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Resolves a thread-count option (`0` = one per core).
fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        default_threads()
    } else {
        threads
    }
}

/// Why a torrent could not be created or verified; every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The filesystem refused an operation on `path`.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A FIFO, socket or device where a regular file or directory was expected: reading it
    /// could block forever or never end, so it cannot be part of a torrent.
    #[error("{path}: not a regular file or directory")]
    NotRegular {
        /// The offending entry.
        path: PathBuf,
    },
    /// A symbolic link whose target does not exist.
    #[error("{path}: broken symbolic link")]
    BrokenSymlink {
        /// The link.
        path: PathBuf,
    },
    /// A symbolic link that leads back to one of its own parent directories.
    #[error("{path}: symbolic link loop (points at a parent directory)")]
    SymlinkLoop {
        /// The link.
        path: PathBuf,
    },
    /// A file name that is not UTF-8 cannot be written into a torrent portably.
    #[error("{path}: file name is not valid UTF-8")]
    NonUtf8Name {
        /// The entry.
        path: PathBuf,
    },
    /// A file name the torrent format refuses (see `metainfo::validate_component`).
    #[error("{path}: unusable file name: {reason}")]
    UnsafeName {
        /// The entry.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// More files than a torrent may hold.
    #[error("{path}: more than {max} files")]
    TooManyFiles {
        /// The directory being walked.
        path: PathBuf,
        /// The limit (`metainfo::FILES_MAX`).
        max: usize,
    },
    /// Directories nested deeper than a torrent path may be.
    #[error("{path}: nested deeper than {max} directories")]
    TooDeep {
        /// The directory past the limit.
        path: PathBuf,
        /// The limit (`metainfo::PATH_COMPONENTS_MAX`).
        max: usize,
    },
    /// Nothing to share: no files, or only empty ones.
    #[error("{path}: no data (no files, or only empty files)")]
    Empty {
        /// The path given to `create`.
        path: PathBuf,
    },
    /// A piece length given by the caller that we will not create.
    #[error("piece length {piece_length} refused: must be a power of two in {min}..={max}")]
    BadPieceLength {
        /// The requested length.
        piece_length: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// More pieces than a `u32` can number (tiny pieces on a huge data set).
    #[error("{total_bytes} bytes in pieces of {piece_length} bytes is more than 2^32 pieces")]
    TooManyPieces {
        /// Total data size.
        total_bytes: u64,
        /// The piece length.
        piece_length: u32,
    },
    /// A file changed size, vanished or could not be read while it was being hashed.
    #[error("{path}: changed or unreadable while hashing: {problem}")]
    Unstable {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        problem: ReadProblem,
    },
    /// [`ReadMode::Mmap`] was asked for before [`install_sigbus_guard`]: without the guard a
    /// file shrinking under a mapping would kill the process with no message.
    #[error("mmap reading needs the SIGBUS guard: call hash::install_sigbus_guard() first")]
    SigbusGuardMissing,
    /// The torrent could not be encoded or did not parse back.
    #[error("building the torrent: {0}")]
    Metainfo(#[from] crate::metainfo::MetainfoError),
}

#[cfg(test)]
mod mmap_tests;
#[cfg(test)]
mod tests;
