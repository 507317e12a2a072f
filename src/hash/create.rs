//! `create`: a `.torrent` from a file or a directory tree.
//!
//! Directory walk rules (deterministic: the same tree always gives the same info-hash):
//! - entries are sorted by path, component by component, comparing names as bytes;
//! - hidden files are included, empty files are included (they appear in the file list);
//! - symbolic links are followed, as mktorrent, transmission-create and libtorrent do by
//!   default, so the link's target content is shared under the link's name; a link that
//!   loops back to a parent directory, or whose target is missing, is an error;
//! - FIFOs, sockets and devices are an error naming the entry: reading one could block or
//!   never end, and silently skipping it would make a torrent that differs from the tree.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::pipeline::{hash_pieces, open_regular, PieceOutcome, ReadMode, ReadPlan};
use super::progress::Progress;
use super::{resolve_threads, HashError};
use crate::metainfo::{
    build_torrent, validate_component, FileEntry, Info, Layout, Metainfo, TorrentBuilder,
    FILES_MAX, PATH_COMPONENTS_MAX, PIECE_LENGTH_MIN,
};

/// `created by` written into every torrent we make.
pub const CREATED_BY: &str = "ringseed 0.1";
/// Smallest piece length [`choose_piece_length`] picks: below 256 KiB the piece list and the
/// per-piece overhead (bitfields, HAVE messages, hash checks) grow with no benefit.
pub const PIECE_LENGTH_AUTO_MIN: u32 = 256 * 1024;
/// Largest piece length we create, automatically or on request: 16 MiB keeps a 100 GB release
/// near 6,000 pieces while every mainstream client still accepts the torrent.
pub const PIECE_LENGTH_AUTO_MAX: u32 = 16 << 20;
/// Most pieces [`choose_piece_length`] aims for before doubling the piece length.
pub const PIECES_TARGET_MAX: u64 = 2_000;

/// Picks a piece length for `total_bytes` of data.
///
/// Rule: the smallest power of two that cuts the data into at most 2,000 pieces, clamped to
/// 256 KiB..=16 MiB. Unclamped, that lands between 1,000 and 2,000 pieces: few enough that the
/// torrent file and bitfields stay small, many enough that peers can trade pieces early. So
/// 100 MiB gets 256 KiB pieces, 1 GiB gets 1 MiB, 4 GiB gets 4 MiB and anything past 32 GiB
/// gets 16 MiB (a 100 GB release: about 6,000 pieces).
pub fn choose_piece_length(total_bytes: u64) -> u32 {
    let mut piece_length = PIECE_LENGTH_AUTO_MIN;
    while piece_length < PIECE_LENGTH_AUTO_MAX
        && total_bytes.div_ceil(u64::from(piece_length)) > PIECES_TARGET_MAX
    {
        piece_length *= 2;
    }
    piece_length
}

/// What goes into a new torrent besides the data.
#[derive(Clone, Debug)]
pub struct CreateOptions {
    /// Piece length in bytes (a power of two, 16 KiB..=16 MiB); `None` picks one with
    /// [`choose_piece_length`].
    pub piece_length: Option<u32>,
    /// Tracker tiers (BEP 12); the first URL becomes `announce`.
    pub trackers: Vec<Vec<String>>,
    /// `comment`.
    pub comment: Option<String>,
    /// `private` (BEP 27): peers use only the trackers, no DHT or PEX.
    pub private: bool,
    /// `creation date` in seconds since the Unix epoch. `Default` sets the current time;
    /// `None` leaves the field out, so the same tree always gives byte-identical files.
    pub creation_date: Option<i64>,
    /// Hashing threads; `0` means one per core.
    pub threads: usize,
    /// How to read the files; [`ReadMode::Mmap`] needs
    /// [`install_sigbus_guard`](super::install_sigbus_guard) first.
    pub read_mode: ReadMode,
}

impl Default for CreateOptions {
    fn default() -> CreateOptions {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        CreateOptions {
            piece_length: None,
            trackers: Vec::new(),
            comment: None,
            private: false,
            creation_date: Some(now),
            threads: 0,
            read_mode: ReadMode::Pread,
        }
    }
}

/// One file found by the walk.
struct Found {
    /// Where to read it.
    abs: PathBuf,
    /// Its path inside the torrent (empty for a single-file torrent).
    rel: Vec<String>,
    /// Size when listed.
    length: u64,
}

/// Builds a torrent for the file or directory at `path`, hashing on all cores, and returns
/// the `.torrent` bytes together with their parsed form. Writes nothing: the caller stores
/// the bytes, after hashing is over.
pub fn create_torrent(
    path: &Path,
    options: &CreateOptions,
    progress: &Progress,
) -> Result<(Vec<u8>, Metainfo), HashError> {
    let plan = ReadPlan::for_mode(options.read_mode)?;
    create_with_plan(path, options, plan, progress)
}

/// [`create_torrent`] reading as `plan` says (`options.read_mode` is not looked at).
pub(crate) fn create_with_plan(
    path: &Path,
    options: &CreateOptions,
    plan: ReadPlan,
    progress: &Progress,
) -> Result<(Vec<u8>, Metainfo), HashError> {
    let name = torrent_name(path)?;
    let (found, multi_file) = list_files(path)?;
    let lengths: Vec<u64> = found.iter().map(|f| f.length).collect();
    let total_bytes = lengths.iter().sum::<u64>();
    if total_bytes == 0 {
        return Err(HashError::Empty {
            path: path.to_owned(),
        });
    }
    let piece_length = match options.piece_length {
        Some(p) => check_piece_length(p)?,
        None => choose_piece_length(total_bytes),
    };
    let layout = Layout::new(piece_length, &lengths).ok_or(HashError::TooManyPieces {
        total_bytes,
        piece_length,
    })?;
    let pieces = hash_files(&found, &layout, options.threads, plan, progress)?;
    let info = Info {
        name,
        piece_length,
        pieces,
        files: found
            .into_iter()
            .map(|f| FileEntry {
                path: f.rel,
                length: f.length,
            })
            .collect(),
        multi_file,
        private: options.private,
    };
    let extra = TorrentBuilder {
        trackers: options.trackers.clone(),
        comment: options.comment.clone(),
        created_by: Some(CREATED_BY.to_owned()),
        creation_date: options.creation_date,
    };
    Ok(build_torrent(&info, &extra)?)
}

fn check_piece_length(piece_length: u32) -> Result<u32, HashError> {
    let (min, max) = (PIECE_LENGTH_MIN, PIECE_LENGTH_AUTO_MAX);
    if piece_length.is_power_of_two() && (min..=max).contains(&piece_length) {
        Ok(piece_length)
    } else {
        Err(HashError::BadPieceLength {
            piece_length,
            min,
            max,
        })
    }
}

/// The torrent's `name`: the last component of `path` (of its absolute form for `.`).
fn torrent_name(path: &Path) -> Result<String, HashError> {
    let resolved;
    let file_name = match path.file_name() {
        Some(n) => n,
        None => {
            resolved = std::fs::canonicalize(path).map_err(|source| HashError::Io {
                path: path.to_owned(),
                source,
            })?;
            resolved.file_name().ok_or_else(|| HashError::UnsafeName {
                path: path.to_owned(),
                reason: "the file system root has no name",
            })?
        }
    };
    component(file_name, path)
}

/// Checks one name from the file system as a torrent path component.
fn component(name: &std::ffi::OsStr, path: &Path) -> Result<String, HashError> {
    let name = name.to_str().ok_or_else(|| HashError::NonUtf8Name {
        path: path.to_owned(),
    })?;
    validate_component(name).map_err(|reason| HashError::UnsafeName {
        path: path.to_owned(),
        reason,
    })?;
    Ok(name.to_owned())
}

/// Lists the files under `root` in torrent order; `true` when `root` is a directory.
fn list_files(root: &Path) -> Result<(Vec<Found>, bool), HashError> {
    let meta = metadata_following(root)?;
    if meta.is_file() {
        let single = Found {
            abs: root.to_owned(),
            rel: Vec::new(),
            length: meta.len(),
        };
        return Ok((vec![single], false));
    }
    if !meta.is_dir() {
        return Err(HashError::NotRegular {
            path: root.to_owned(),
        });
    }
    let mut walk = Walk {
        root,
        found: Vec::new(),
        ancestors: vec![(meta.dev(), meta.ino())],
        rel: Vec::new(),
    };
    walk.directory(root)?;
    Ok((walk.found, true))
}

/// `stat` following symlinks, telling a dangling link apart from a missing path.
fn metadata_following(path: &Path) -> Result<std::fs::Metadata, HashError> {
    std::fs::metadata(path).map_err(|source| {
        let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        if is_link && source.kind() == std::io::ErrorKind::NotFound {
            HashError::BrokenSymlink {
                path: path.to_owned(),
            }
        } else {
            HashError::Io {
                path: path.to_owned(),
                source,
            }
        }
    })
}

/// Depth-first walk state. Visiting each directory's entries in sorted order yields the
/// files sorted by their component lists, which is the torrent's file order.
struct Walk<'a> {
    root: &'a Path,
    found: Vec<Found>,
    /// `(device, inode)` of the directories from the root down to the current one: meeting
    /// one again through a symlink is a loop.
    ancestors: Vec<(u64, u64)>,
    /// Path components of the current directory below the root.
    rel: Vec<String>,
}

impl Walk<'_> {
    fn directory(&mut self, dir: &Path) -> Result<(), HashError> {
        let io = |source| HashError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut entries = std::fs::read_dir(dir)
            .map_err(io)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(io)?;
        entries.sort_unstable_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for name in entries {
            let path = dir.join(&name);
            let name = component(&name, &path)?;
            let meta = metadata_following(&path)?;
            self.rel.push(name);
            if meta.is_dir() {
                self.enter(&path, &meta)?;
            } else if meta.is_file() {
                self.add_file(path, meta.len())?;
            } else {
                return Err(HashError::NotRegular { path });
            }
            self.rel.pop();
        }
        Ok(())
    }

    fn enter(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<(), HashError> {
        let id = (meta.dev(), meta.ino());
        if self.ancestors.contains(&id) {
            return Err(HashError::SymlinkLoop {
                path: path.to_owned(),
            });
        }
        // A file inside this directory would need one more component than `rel` has now.
        if self.rel.len() >= PATH_COMPONENTS_MAX {
            return Err(HashError::TooDeep {
                path: path.to_owned(),
                max: PATH_COMPONENTS_MAX,
            });
        }
        self.ancestors.push(id);
        self.directory(path)?;
        self.ancestors.pop();
        Ok(())
    }

    fn add_file(&mut self, abs: PathBuf, length: u64) -> Result<(), HashError> {
        if self.found.len() == FILES_MAX {
            return Err(HashError::TooManyFiles {
                path: self.root.to_owned(),
                max: FILES_MAX,
            });
        }
        self.found.push(Found {
            abs,
            rel: self.rel.clone(),
            length,
        });
        Ok(())
    }
}

/// Opens every listed file, hashes all pieces, and checks that no file changed size meanwhile.
fn hash_files(
    found: &[Found],
    layout: &Layout,
    threads: usize,
    plan: ReadPlan,
    progress: &Progress,
) -> Result<Vec<[u8; 20]>, HashError> {
    let files: Vec<Option<File>> = found
        .iter()
        .map(|f| {
            let file = open_regular(&f.abs).map_err(|problem| HashError::Unstable {
                path: f.abs.clone(),
                problem,
            })?;
            check_length(&file, f)?;
            Ok(Some(file))
        })
        .collect::<Result<_, HashError>>()?;
    progress.set_total(layout.total_length());
    let outcomes = hash_pieces(layout, &files, resolve_threads(threads), plan, progress);
    progress.finish();
    // A file that grew or shrank while we hashed may have given us a mix of old and new bytes.
    for (file, f) in files.iter().zip(found) {
        check_length(file.as_ref().expect("all opened"), f)?;
    }
    outcomes
        .into_iter()
        .map(|o| match o {
            PieceOutcome::Hashed(h) => Ok(h),
            PieceOutcome::Unreadable { file, problem } => Err(HashError::Unstable {
                path: found[file].abs.clone(),
                problem,
            }),
        })
        .collect()
}

fn check_length(file: &File, f: &Found) -> Result<(), HashError> {
    let actual = file
        .metadata()
        .map_err(|source| HashError::Io {
            path: f.abs.clone(),
            source,
        })?
        .len();
    if actual == f.length {
        return Ok(());
    }
    Err(HashError::Unstable {
        path: f.abs.clone(),
        problem: super::ReadProblem::WrongSize {
            expected: f.length,
            actual,
        },
    })
}
