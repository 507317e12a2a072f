//! A torrent's data files: for seeding ([`Storage`]) opened read-only under a data directory,
//! checked against the torrent's file list, and turned into `(fd, offset, len)` reads per block;
//! for downloading ([`DownloadStorage`]) created sparse and opened read-write, with resume data
//! ([`resume`]) that says which pieces are already verified and durable.
//!
//! Owns path resolution (nothing may leave the data or output directory) and the file handles;
//! the runtime reads and writes through them. [`Storage`] never creates, writes or truncates.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::metainfo::{validate_component, BlockRef, Info, Layout};

mod download;
pub mod resume;

pub use download::{DownloadStorage, FileStat, Preallocate, Prepared};

/// Whether a data file reached through a symbolic link may live outside the data directory.
///
/// Paths from a torrent are validated components (no `..`, no absolute paths), so a torrent
/// alone can never point outside. Symlinks can only be placed by someone who can write the
/// data directory, and `create` follows them, so by default we follow them too: an operator
/// who links `data/Release -> /mnt/disk2/Release` gets what they expect. Choose
/// [`SymlinkPolicy::Confined`] when others can write the data directory and ringseed must not
/// serve anything it could not reach without links (e.g. a planted link to a private file).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum SymlinkPolicy {
    /// Follow symbolic links wherever they lead.
    #[default]
    Follow,
    /// Follow links only when the file finally opened lies inside the data directory
    /// (checked on the opened descriptor, so a link swapped after the check changes nothing).
    Confined,
}

/// One run of a block inside one file: read `len` bytes at `offset` of `fd` into the block
/// buffer at `buf_offset`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BlockSpan {
    /// Index of the file in the torrent (also its index in [`Storage::fds`]).
    pub file: usize,
    /// The open file's descriptor, valid while the [`Storage`] lives.
    pub fd: RawFd,
    /// Byte offset inside the file.
    pub offset: u64,
    /// Bytes to read (a block is at most 16 KiB, so this fits easily).
    pub len: u32,
    /// Where the bytes go in the block buffer.
    pub buf_offset: u32,
}

/// The open data files of one torrent. Immutable once opened; share it between shards with
/// an `Arc`. The fds stay valid for as long as the `Storage` lives.
#[derive(Debug)]
pub struct Storage {
    layout: Layout,
    /// Full path of every file, for error messages and logs.
    paths: Vec<PathBuf>,
    /// One handle per file; `None` for zero-length files, which are checked but never read.
    files: Vec<Option<File>>,
}

impl Storage {
    /// Opens the files of `info` under `data_dir` (file `i` at `data_dir/<info.file_path(i)>`)
    /// read-only, checking that each exists, is a regular file and has exactly its length.
    ///
    /// Zero-length files must exist too: a seeder whose tree lacks a file the torrent lists
    /// is serving a different release. Nothing is created.
    pub fn open(info: &Info, data_dir: &Path, symlinks: SymlinkPolicy) -> Result<Storage> {
        let confine_to = match symlinks {
            SymlinkPolicy::Follow => None,
            SymlinkPolicy::Confined => Some(canonical(data_dir)?),
        };
        let mut paths = Vec::with_capacity(info.files.len());
        let mut files = Vec::with_capacity(info.files.len());
        for (i, entry) in info.files.iter().enumerate() {
            let path = resolve(info, i, data_dir)?;
            let file = open_checked(&path, entry.length)?;
            if let Some(dir) = &confine_to {
                check_confined(&file, &path, dir)?;
            }
            files.push((entry.length > 0).then_some(file));
            paths.push(path);
        }
        Ok(Storage {
            layout: info.layout(),
            paths,
            files,
        })
    }

    /// The piece-to-file layout the spans are computed from.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Number of files (zero-length ones included).
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Full path of file `file`.
    pub fn path(&self, file: usize) -> &Path {
        &self.paths[file]
    }

    /// The descriptor of every file in torrent order (`None` for zero-length files), e.g. for
    /// registering them with io_uring as fixed files at the same indices.
    pub fn fds(&self) -> impl Iterator<Item = Option<RawFd>> + '_ {
        self.files
            .iter()
            .map(|f| f.as_ref().map(AsRawFd::as_raw_fd))
    }

    /// A new handle on file `file` (same open file description), for a shard that keeps
    /// its own descriptors; `None` for zero-length files, which are never read.
    pub fn clone_file(&self, file: usize) -> std::io::Result<Option<File>> {
        self.files[file].as_ref().map(File::try_clone).transpose()
    }

    /// The file reads that make up `block`, in buffer order. Zero-length files never appear.
    pub fn block_spans(&self, block: BlockRef) -> impl Iterator<Item = BlockSpan> + '_ {
        debug_assert!(
            self.layout
                .block(block.piece.get(), block.offset, block.len)
                .is_some(),
            "block {block:?} is not from this torrent's layout"
        );
        let mut buf_offset = 0u32;
        self.layout
            .spans(block.piece, block.offset, block.len)
            .map(move |s| {
                let file = self.files[s.file]
                    .as_ref()
                    .expect("spans never include zero-length files");
                // A span is part of one block, so it is at most BLOCK_BYTES_MAX long.
                let len = s.len as u32;
                let span = BlockSpan {
                    file: s.file,
                    fd: file.as_raw_fd(),
                    offset: s.offset,
                    len,
                    buf_offset,
                };
                buf_offset += len;
                span
            })
    }

    /// Reads `block` into `buf` with `pread`; `buf.len()` must equal `block.len`.
    pub fn read_block(&self, block: BlockRef, buf: &mut [u8]) -> Result<()> {
        assert_eq!(buf.len(), block.len as usize, "buffer must fit the block");
        // A block validated against another torrent's layout would leave part of `buf`
        // unread, and stale bytes would go to a peer as data.
        let (piece, offset, len) = (block.piece.get(), block.offset, block.len);
        if self.layout.block(piece, offset, len) != Some(block) {
            return Err(StorageError::BlockOutOfRange { piece, offset, len });
        }
        for span in self.block_spans(block) {
            let file = self.files[span.file].as_ref().expect("non-empty file");
            let start = span.buf_offset as usize;
            let dst = &mut buf[start..start + span.len as usize];
            self.read_exact_at(span.file, file, dst, span.offset)?;
        }
        Ok(())
    }

    fn read_exact_at(&self, index: usize, file: &File, buf: &mut [u8], offset: u64) -> Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            let at = offset + filled as u64;
            match file.read_at(&mut buf[filled..], at) {
                Ok(0) => {
                    return Err(StorageError::Truncated {
                        path: self.paths[index].clone(),
                        offset: at,
                    })
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(StorageError::Io {
                        path: self.paths[index].clone(),
                        source,
                    })
                }
            }
        }
        Ok(())
    }
}

/// `data_dir/<name>/<path...>`, re-checking every component. The parser refuses unsafe paths
/// already; this is the second check, for `Info` values built in code.
fn resolve(info: &Info, file: usize, data_dir: &Path) -> Result<PathBuf> {
    let rel = info.file_path(file);
    for name in std::iter::once(&info.name).chain(&info.files[file].path) {
        validate_component(name).map_err(|reason| StorageError::UnsafePath {
            path: rel.clone(),
            reason,
        })?;
    }
    Ok(data_dir.join(rel))
}

/// Opens `path` read-only and checks type and size. `O_NONBLOCK` keeps a FIFO planted in the
/// tree from blocking the open; it is cleared once the file is known to be regular, because
/// io_uring may answer reads of a non-blocking file with EAGAIN instead of waiting for disk.
fn open_checked(path: &Path, expected: u64) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|source| match source.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENOTDIR) => StorageError::Missing {
                path: path.to_owned(),
            },
            _ => StorageError::Io {
                path: path.to_owned(),
                source,
            },
        })?;
    let meta = file.metadata().map_err(|source| StorageError::Io {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() {
        return Err(StorageError::NotRegular {
            path: path.to_owned(),
        });
    }
    if meta.len() != expected {
        return Err(StorageError::WrongSize {
            path: path.to_owned(),
            expected,
            actual: meta.len(),
        });
    }
    clear_nonblock(&file).map_err(|source| StorageError::Io {
        path: path.to_owned(),
        source,
    })?;
    Ok(file)
}

/// Clears `O_NONBLOCK` on an open file.
pub(crate) fn clear_nonblock(file: &File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: plain fcntl calls on a descriptor `file` keeps open.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn canonical(dir: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(dir).map_err(|source| StorageError::Io {
        path: dir.to_owned(),
        source,
    })
}

/// Checks where the opened descriptor really points (`/proc/self/fd`), so the answer is
/// about the file we will read, not about a path that could change after the check.
fn check_confined(file: &File, path: &Path, dir: &Path) -> Result<()> {
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    let target = std::fs::read_link(link).map_err(|source| StorageError::Io {
        path: path.to_owned(),
        source,
    })?;
    if target.starts_with(dir) {
        Ok(())
    } else {
        Err(StorageError::OutsideDataDir {
            path: path.to_owned(),
            target,
        })
    }
}

/// Result of storage operations.
type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Why a torrent's data cannot be served; every variant names the file, so `seed` can refuse
/// that one torrent and say which file to fix while the others keep seeding.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The file does not exist.
    #[error("{path}: missing")]
    Missing {
        /// Full path expected.
        path: PathBuf,
    },
    /// The file exists with another size than the torrent says.
    #[error("{path}: {actual} bytes, the torrent says {expected}")]
    WrongSize {
        /// Full path.
        path: PathBuf,
        /// Length in the torrent.
        expected: u64,
        /// Length on disk.
        actual: u64,
    },
    /// A directory, FIFO, socket or device where a data file should be.
    #[error("{path}: not a regular file")]
    NotRegular {
        /// Full path.
        path: PathBuf,
    },
    /// The torrent names a path that could leave the data directory.
    #[error("{path}: unsafe path in torrent: {reason}")]
    UnsafePath {
        /// The path relative to the data directory.
        path: PathBuf,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// Under [`SymlinkPolicy::Confined`], a symlink led outside the data directory.
    #[error("{path}: resolves to {target}, outside the data directory")]
    OutsideDataDir {
        /// Full path as the torrent names it.
        path: PathBuf,
        /// Where it really leads.
        target: PathBuf,
    },
    /// The file ended early during a read: it was truncated after it was opened.
    #[error("{path}: ends before byte {offset} (truncated while seeding?)")]
    Truncated {
        /// Full path.
        path: PathBuf,
        /// Offset where the read found end of file.
        offset: u64,
    },
    /// A block that does not lie inside this torrent (a caller's bug, refused rather than
    /// served short).
    #[error("block (piece {piece}, offset {offset}, len {len}) is outside the torrent")]
    BlockOutOfRange {
        /// Piece number.
        piece: u32,
        /// Offset inside the piece.
        offset: u32,
        /// Length.
        len: u32,
    },
    /// A symbolic link where the torrent needs a directory or a file of a download: refused,
    /// so nothing is ever created or written outside the output directory.
    #[error("{path}: is a symbolic link; downloads never write through links")]
    Symlink {
        /// Full path.
        path: PathBuf,
    },
    /// Something other than a directory where the torrent needs one.
    #[error("{path}: not a directory")]
    NotDirectory {
        /// Full path.
        path: PathBuf,
    },
    /// The torrent names this path twice, or as a file and as a directory of another file.
    #[error("{path}: named twice in the torrent (two files, or a file and a directory)")]
    PathClash {
        /// The path relative to the output directory.
        path: PathBuf,
    },
    /// Any other I/O error.
    #[error("{path}: {source}")]
    Io {
        /// Full path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests;
