//! Resume data for downloads: which pieces are verified *and durable*, with every file's size
//! and mtime at that moment, in a small versioned bencode file that is replaced atomically.
//! Also [`recheck`], which hashes what is on disk when resume data cannot be trusted.
//!
//! The rules that make a `kill -9` (or a power cut) at any moment lose no verified piece and
//! never make us trust a bad one:
//! 1. A piece goes into `have` only once its bytes are durable: every block's write finished
//!    and an fdatasync of its files completed after that (`ShardCtx::sync_files`).
//! 2. Then stat the files ([`ResumeData::capture`]) and [`save`](ResumeData::save): temp file
//!    in the same directory, fsync, rename over the old file, fsync the directory. A crash at
//!    any point leaves the old file or the new one, never a mix; a stale temp file is ignored.
//! 3. A piece written after the stat is simply not in `have`: it is downloaded or rechecked
//!    again. Writing it moves the file's mtime, so after a crash mid-download the files
//!    usually fail [`validate`](ResumeData::validate) and everything is rechecked (slow, safe);
//!    a clean exit (stop writing, sync, capture, save) resumes without a recheck.
//! 4. Never write into a piece that is in `have`.
//!
//! Why that is enough: trust only ever covers bytes that were durable before the resume file
//! naming them was renamed into place, and nothing of ours writes them again (rule 4). Size and
//! mtime catch the files someone else changed, truncated or replaced since. If a write lands in
//! the same timestamp tick as the stat, the mtime does not move and the resume is trusted
//! anyway, which is still right: that write went to a piece not in `have` (rule 3). fdatasync
//! may not persist the mtime itself, so after a power cut the mtime can be older than
//! recorded: that fails validation, never the other way round.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{DownloadStorage, FileStat, StorageError};
use crate::bencode::{decode, BencodeError, Dict, Limits, OwnedValue, Value};
use crate::hash::{verify, HashError, Progress, ReadMode, VerifyOptions};
use crate::metainfo::{Info, InfoHash, Layout, FILES_MAX};
use crate::wire::Bitfield;

/// Format version written by [`ResumeData::encode`]; anything else is refused on load.
pub const RESUME_VERSION: i64 = 1;

/// Largest resume file we read. A million files at about 50 bytes each plus the bitfield of a
/// torrent of millions of pieces fits in less than this; more is not ours.
pub const RESUME_BYTES_MAX: usize = 64 << 20;

/// Decoder bounds for resume files: a dict of a list of two-key dicts is 3 levels deep, and
/// each file costs 3 values (its dict and two integers).
const RESUME_LIMITS: Limits = Limits {
    depth_max: 4,
    string_bytes_max: RESUME_BYTES_MAX as u64,
    total_bytes_max: RESUME_BYTES_MAX,
    values_max: 3 * FILES_MAX + 16,
};

/// What a download had verified and durable when it was last saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeData {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Verified pieces whose bytes were durable when the file stats were taken.
    pub have: Bitfield,
    /// Size and mtime of every file, in torrent order, taken after those pieces were durable.
    pub files: Vec<FileStat>,
}

/// Why resume data cannot be trusted: the caller must [`recheck`] (every variant names what
/// differs, for the log line that explains the recheck).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    /// The resume data is for another torrent.
    #[error("resume data is for torrent {recorded}, not {expected}")]
    OtherTorrent {
        /// Info-hash recorded (hex).
        recorded: String,
        /// Info-hash of this download (hex).
        expected: String,
    },
    /// The piece count differs from the torrent's.
    #[error("resume data has {recorded} pieces, the torrent {expected}")]
    PieceCount {
        /// Pieces recorded.
        recorded: u32,
        /// Pieces in the torrent.
        expected: u32,
    },
    /// The file count differs from the torrent's.
    #[error("resume data has {recorded} files, the torrent {expected}")]
    FileCount {
        /// Files recorded.
        recorded: usize,
        /// Files in the torrent.
        expected: usize,
    },
    /// A file was missing before this start (it was created empty since).
    #[error("file {file} was missing")]
    FileMissing {
        /// Index in the torrent.
        file: usize,
    },
    /// A file's size differs from the recorded one or from the torrent's.
    #[error("file {file} is {found} bytes, resume data says {recorded}")]
    SizeChanged {
        /// Index in the torrent.
        file: usize,
        /// Size recorded.
        recorded: u64,
        /// Size found.
        found: u64,
    },
    /// A file was modified after the resume data was saved (by us after the last save, or by
    /// someone else).
    #[error("file {file} modified at {found_ns} ns, resume data says {recorded_ns} ns")]
    MtimeChanged {
        /// Index in the torrent.
        file: usize,
        /// Mtime recorded.
        recorded_ns: i64,
        /// Mtime found.
        found_ns: i64,
    },
}

/// Why resume data could not be read, written or rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    /// The filesystem refused an operation.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The path names no file (it ends in `..` or `/`).
    #[error("{path}: not a file path")]
    NotAFilePath {
        /// The path given.
        path: PathBuf,
    },
    /// The file is larger than [`RESUME_BYTES_MAX`].
    #[error("resume file of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// Not bencode (e.g. a file cut short by a writer that did not rename atomically).
    #[error("resume file is not valid bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// Written by another version of the format.
    #[error("resume format version {found}, this build reads version {supported}")]
    UnsupportedVersion {
        /// Version found.
        found: i64,
        /// The version we read.
        supported: i64,
    },
    /// A field is missing or has a wrong type or value.
    #[error("resume field `{field}`: {reason}")]
    Malformed {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Taking the files' stats failed.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// Hashing the data on disk failed.
    #[error("recheck: {0}")]
    Recheck(#[from] HashError),
}

impl ResumeData {
    /// Records `have` with every file's size and mtime as they are now.
    ///
    /// Call it only when every piece in `have` is durable (rule 1 of the module docs): its
    /// blocks' writes finished and an fdatasync of its files completed after them.
    pub fn capture(
        info_hash: InfoHash,
        have: Bitfield,
        storage: &DownloadStorage,
    ) -> Result<ResumeData, ResumeError> {
        assert_eq!(have.len(), storage.layout().piece_count(), "bitfield size");
        Ok(ResumeData {
            info_hash,
            have,
            files: storage.stat_files()?,
        })
    }

    /// The pieces to start from, if this resume data may be trusted for the download of
    /// `info_hash` with `layout`, whose files [`DownloadStorage::prepare`] found as `found`
    /// ([`DownloadStorage::found`]: before any file was created or resized). Zero-length
    /// files are not compared: they hold no piece's bytes.
    pub fn validate(
        &self,
        info_hash: InfoHash,
        layout: &Layout,
        found: &[Option<FileStat>],
    ) -> Result<&Bitfield, Untrusted> {
        if self.info_hash != info_hash {
            return Err(Untrusted::OtherTorrent {
                recorded: self.info_hash.to_hex(),
                expected: info_hash.to_hex(),
            });
        }
        if self.have.len() != layout.piece_count() {
            return Err(Untrusted::PieceCount {
                recorded: self.have.len(),
                expected: layout.piece_count(),
            });
        }
        if self.files.len() != layout.file_count() || found.len() != layout.file_count() {
            return Err(Untrusted::FileCount {
                recorded: self.files.len(),
                expected: layout.file_count(),
            });
        }
        for (file, (recorded, found)) in self.files.iter().zip(found).enumerate() {
            let length = layout.file_length(file);
            if length == 0 {
                continue;
            }
            let Some(found) = found else {
                return Err(Untrusted::FileMissing { file });
            };
            // A recorded size other than the torrent's can only come from a damaged or
            // hand-made file; check it too, so a file that prepare resized never passes.
            if found.size != recorded.size || recorded.size != length {
                return Err(Untrusted::SizeChanged {
                    file,
                    recorded: recorded.size,
                    found: found.size,
                });
            }
            if found.mtime_ns != recorded.mtime_ns {
                return Err(Untrusted::MtimeChanged {
                    file,
                    recorded_ns: recorded.mtime_ns,
                    found_ns: found.mtime_ns,
                });
            }
        }
        Ok(&self.have)
    }

    /// The canonical bencode form: `{bitfield, files: [{mtime_ns, size}], info_hash, pieces,
    /// version}`.
    pub fn encode(&self) -> Vec<u8> {
        let files = self
            .files
            .iter()
            .map(|f| {
                let mut entry = OwnedValue::dict();
                let size = i64::try_from(f.size).expect("file sizes fit off_t");
                entry
                    .insert("mtime_ns", OwnedValue::Int(f.mtime_ns))
                    .insert("size", OwnedValue::Int(size));
                entry
            })
            .collect();
        let mut doc = OwnedValue::dict();
        doc.insert("bitfield", OwnedValue::Bytes(self.have.as_bytes().to_vec()))
            .insert("files", OwnedValue::List(files))
            .insert("info_hash", OwnedValue::Bytes(self.info_hash.0.to_vec()))
            .insert("pieces", OwnedValue::Int(i64::from(self.have.len())))
            .insert("version", OwnedValue::Int(RESUME_VERSION));
        doc.to_bytes()
    }

    /// Parses [`encode`](Self::encode)'s output; anything else is an error, never a panic.
    /// Unknown keys are ignored (a later version that needs them bumps the version).
    pub fn decode(bytes: &[u8]) -> Result<ResumeData, ResumeError> {
        let value = decode(bytes, RESUME_LIMITS)?;
        let dict = value
            .as_dict()
            .ok_or_else(|| malformed("(root)", "not a dict"))?;
        let version = int(dict, "version")?;
        if version != RESUME_VERSION {
            return Err(ResumeError::UnsupportedVersion {
                found: version,
                supported: RESUME_VERSION,
            });
        }
        let hash = bytes_field(dict, "info_hash")?;
        let info_hash = InfoHash(
            hash.try_into()
                .map_err(|_| malformed("info_hash", format!("{} bytes, not 20", hash.len())))?,
        );
        let pieces = int(dict, "pieces")?;
        let pieces =
            u32::try_from(pieces).map_err(|_| malformed("pieces", format!("{pieces} pieces")))?;
        let have = Bitfield::from_wire(bytes_field(dict, "bitfield")?, pieces)
            .map_err(|e| malformed("bitfield", e.to_string()))?;
        let list = dict
            .get(b"files")
            .and_then(Value::as_list)
            .ok_or_else(|| malformed("files", "missing or not a list"))?;
        let files = list.iter().map(file_stat).collect::<Result<_, _>>()?;
        Ok(ResumeData {
            info_hash,
            have,
            files,
        })
    }

    /// Writes the resume file at `path` atomically: `<path>.tmp` is written and fsynced, then
    /// renamed over `path`, then the directory is fsynced. One process owns a resume path (the
    /// temp name is fixed, so a crash leaves at most one stale temp file, overwritten next time).
    pub fn save(&self, path: &Path) -> Result<(), ResumeError> {
        let name = path.file_name().ok_or_else(|| ResumeError::NotAFilePath {
            path: path.to_owned(),
        })?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let mut tmp_name = name.to_owned();
        tmp_name.push(".tmp");
        let tmp = dir.join(tmp_name);
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ResumeError::Io { path, source }
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io(&tmp))?;
        file.write_all(&self.encode()).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io(path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
        Ok(())
    }

    /// Reads the resume file at `path`: `Ok(None)` when there is none. A damaged file is an
    /// error, which callers treat like no resume data (recheck); its temp file is never read.
    pub fn load(path: &Path) -> Result<Option<ResumeData>, ResumeError> {
        let io = |source| ResumeError::Io {
            path: path.to_owned(),
            source,
        };
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let len = file.metadata().map_err(io)?.len();
        if len > RESUME_BYTES_MAX as u64 {
            return Err(ResumeError::TooLarge {
                len,
                max: RESUME_BYTES_MAX,
            });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(RESUME_BYTES_MAX as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        ResumeData::decode(&bytes).map(Some)
    }
}

fn malformed(field: &'static str, reason: impl Into<String>) -> ResumeError {
    ResumeError::Malformed {
        field,
        reason: reason.into(),
    }
}

fn int(dict: &Dict<'_>, field: &'static str) -> Result<i64, ResumeError> {
    dict.get(field.as_bytes())
        .and_then(Value::as_int)
        .ok_or_else(|| malformed(field, "missing or not an integer"))
}

fn bytes_field<'a>(dict: &Dict<'a>, field: &'static str) -> Result<&'a [u8], ResumeError> {
    dict.get(field.as_bytes())
        .and_then(Value::as_bytes)
        .ok_or_else(|| malformed(field, "missing or not a byte string"))
}

fn file_stat(value: &Value<'_>) -> Result<FileStat, ResumeError> {
    let dict = value
        .as_dict()
        .ok_or_else(|| malformed("files", "entry is not a dict"))?;
    let size = int(dict, "size")?;
    Ok(FileStat {
        size: u64::try_from(size).map_err(|_| malformed("size", format!("{size} bytes")))?,
        mtime_ns: int(dict, "mtime_ns")?,
    })
}

/// Hashes every piece of `info` found under `out_dir` on `threads` workers (`0`: one per
/// core) and returns the pieces that match the torrent. Reads with `pread`, not mmap: a file
/// truncated by someone else while we hash must only fail its pieces, not raise SIGBUS.
/// Missing or short files only make their pieces bad.
pub fn recheck(
    info: &Info,
    out_dir: &Path,
    threads: usize,
    progress: &Progress,
) -> Result<Bitfield, ResumeError> {
    let options = VerifyOptions {
        threads,
        read_mode: ReadMode::Pread,
    };
    let report = verify(info, out_dir, &options, progress)?;
    let mut bad = Bitfield::empty(report.pieces_total);
    for piece in &report.bad_pieces {
        bad.set(piece.piece);
    }
    let mut have = Bitfield::empty(report.pieces_total);
    for piece in info.layout().pieces().filter(|&p| !bad.get(p)) {
        have.set(piece);
    }
    Ok(have)
}

#[cfg(test)]
#[path = "resume_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "crash_tests.rs"]
mod crash_tests;
