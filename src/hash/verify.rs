//! `verify`: hash every piece of a torrent's data on disk and compare with the torrent.
//!
//! Never stops at the first problem: a missing, short or unreadable file makes the pieces it
//! touches bad and is listed on its own, and every other piece is still checked, so one run
//! tells the operator everything that is wrong.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::pipeline::{hash_pieces, open_regular, PieceOutcome, ReadMode, ReadPlan, ReadProblem};
use super::progress::Progress;
use super::{resolve_threads, HashError};
use crate::metainfo::{validate_component, Info, Layout, MetainfoError, PieceIndex};

/// How to verify.
#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    /// Hashing threads; `0` means one per core.
    pub threads: usize,
    /// How to read the data; [`ReadMode::Mmap`] needs
    /// [`install_sigbus_guard`](super::install_sigbus_guard) first.
    pub read_mode: ReadMode,
}

/// What a verification found.
#[derive(Clone, Debug)]
pub struct VerifyReport {
    /// Pieces in the torrent.
    pub pieces_total: u32,
    /// Pieces that did not match or could not be read, in piece order.
    pub bad_pieces: Vec<BadPiece>,
    /// Files that are missing, unreadable or of the wrong size, in torrent order. A file that
    /// is too long can have all its pieces good and still be listed: seeding refuses it.
    pub file_problems: Vec<FileProblem>,
    /// Bytes of torrent data covered (the torrent's total length).
    pub bytes_checked: u64,
    /// Wall-clock time spent hashing.
    pub elapsed: Duration,
}

impl VerifyReport {
    /// True when every piece matched and every file has its expected size.
    pub fn is_ok(&self) -> bool {
        self.bad_pieces.is_empty() && self.file_problems.is_empty()
    }

    /// Hashing throughput in bytes per second.
    pub fn bytes_per_second(&self) -> f64 {
        self.bytes_checked as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One piece that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadPiece {
    /// The piece.
    pub piece: PieceIndex,
    /// What went wrong.
    pub fault: PieceFault,
    /// Every file holding bytes of this piece (full paths, in torrent order).
    pub files: Vec<PathBuf>,
}

/// Why a piece is bad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PieceFault {
    /// The bytes were read but their SHA-1 differs from the torrent's.
    HashMismatch,
    /// The bytes could not be read from `file`.
    Unreadable {
        /// The file that failed (full path).
        file: PathBuf,
        /// Why.
        problem: ReadProblem,
    },
}

/// A file that is not as the torrent describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProblem {
    /// Full path of the file.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: ReadProblem,
}

/// Hashes the data of `info` found under `data_dir` (files at `data_dir/<info.file_path(i)>`)
/// on all cores and compares every piece with the torrent.
///
/// Errors only when the torrent itself names an unsafe path; problems with the data are
/// reported in the [`VerifyReport`].
pub fn verify(
    info: &Info,
    data_dir: &Path,
    options: &VerifyOptions,
    progress: &Progress,
) -> Result<VerifyReport, HashError> {
    let plan = ReadPlan::for_mode(options.read_mode)?;
    verify_with_plan(info, data_dir, options.threads, plan, progress)
}

/// [`verify`] on `threads` workers reading as `plan` says.
pub(crate) fn verify_with_plan(
    info: &Info,
    data_dir: &Path,
    threads: usize,
    plan: ReadPlan,
    progress: &Progress,
) -> Result<VerifyReport, HashError> {
    let paths = file_paths(info, data_dir)?;
    let layout = info.layout();
    if info.pieces.len() != layout.piece_count() as usize {
        // Only a hand-built `Info` can get here; the parser checks the same thing.
        return Err(HashError::Metainfo(MetainfoError::Invalid {
            field: "pieces",
            reason: format!(
                "{} hashes for {} pieces",
                info.pieces.len(),
                layout.piece_count()
            ),
        }));
    }
    let started = Instant::now();
    let (files, file_problems) = open_files(info, &paths);
    progress.set_total(layout.total_length());
    let outcomes = hash_pieces(&layout, &files, resolve_threads(threads), plan, progress);
    progress.finish();
    let elapsed = started.elapsed();
    let bad_pieces = outcomes
        .into_iter()
        .zip(layout.pieces())
        .filter_map(|(outcome, piece)| {
            let fault = match outcome {
                PieceOutcome::Hashed(h) if h == info.pieces[piece.idx()] => return None,
                PieceOutcome::Hashed(_) => PieceFault::HashMismatch,
                PieceOutcome::Unreadable { file, problem } => PieceFault::Unreadable {
                    file: paths[file].clone(),
                    problem,
                },
            };
            let files = files_of_piece(&layout, piece)
                .map(|f| paths[f].clone())
                .collect();
            Some(BadPiece {
                piece,
                fault,
                files,
            })
        })
        .collect();
    Ok(VerifyReport {
        pieces_total: layout.piece_count(),
        bad_pieces,
        file_problems,
        bytes_checked: layout.total_length(),
        elapsed,
    })
}

/// Full paths of every file, refusing any component that could leave `data_dir`. The parser
/// already refuses those, but `Info` can also be built by hand.
fn file_paths(info: &Info, data_dir: &Path) -> Result<Vec<PathBuf>, HashError> {
    (0..info.files.len())
        .map(|i| {
            let rel = info.file_path(i);
            let names = std::iter::once(&info.name).chain(&info.files[i].path);
            for name in names {
                validate_component(name).map_err(|reason| HashError::UnsafeName {
                    path: rel.clone(),
                    reason,
                })?;
            }
            Ok(data_dir.join(rel))
        })
        .collect()
}

/// Opens every file that can be opened; lists those that are missing or of the wrong size.
fn open_files(info: &Info, paths: &[PathBuf]) -> (Vec<Option<File>>, Vec<FileProblem>) {
    let mut files = Vec::with_capacity(paths.len());
    let mut problems = Vec::new();
    for (entry, path) in info.files.iter().zip(paths) {
        let opened = open_regular(path).and_then(|file| {
            let actual = file
                .metadata()
                .map_err(|e| ReadProblem::Io(e.to_string()))?
                .len();
            if actual != entry.length {
                // Keep reading it: the pieces before the difference may still be good.
                problems.push(FileProblem {
                    path: path.clone(),
                    problem: ReadProblem::WrongSize {
                        expected: entry.length,
                        actual,
                    },
                });
            }
            Ok(file)
        });
        match opened {
            Ok(file) => files.push(Some(file)),
            Err(problem) => {
                problems.push(FileProblem {
                    path: path.clone(),
                    problem,
                });
                files.push(None);
            }
        }
    }
    (files, problems)
}

/// Indices of the files holding bytes of `piece`, each once.
fn files_of_piece(layout: &Layout, piece: PieceIndex) -> impl Iterator<Item = usize> + '_ {
    // Spans come in stream order and a file's bytes are contiguous, so each file appears once.
    layout
        .spans(piece, 0, layout.piece_len(piece))
        .map(|s| s.file)
}
