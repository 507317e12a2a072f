//! A torrent's files for downloading: the directory tree created under an output directory,
//! every file opened read-write and sized to its full length before the first block arrives.
//!
//! Never escapes the output directory: every component is validated, and the tree is walked
//! with `openat(O_NOFOLLOW)`, so neither the torrent nor a symbolic link planted in the tree
//! can make us create or write a file elsewhere. Files are sparse by default ([`Preallocate`]).

use std::collections::{BTreeSet, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::clear_nonblock;
use super::{Result, StorageError};
use crate::metainfo::{validate_component, BlockRef, Info, Layout};

/// How [`DownloadStorage::prepare`] reserves space for files it creates or resizes.
///
/// Sparse is the default: creating a 100 GB torrent costs nothing, a finished download uses
/// exactly its size, and on copy-on-write filesystems (btrfs, ZFS) preallocating gains nothing.
/// The price is that a full disk shows up later, as a failed block write (`ENOSPC`), and that
/// blocks arriving out of order can fragment files on ext4/XFS.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Preallocate {
    /// `ftruncate` to the full length: a hole until blocks are written.
    #[default]
    Sparse,
    /// `fallocate` the full length (mode 0, so the size is set too): the space is reserved now,
    /// so the download cannot run out of disk later. Falls back to sparse where the filesystem
    /// does not support it. Never applied to a file kept as it was (fallocate may touch mtime,
    /// which resume data depends on).
    Full,
}

/// Size and modification time of a data file, as resume data records them.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FileStat {
    /// Length in bytes.
    pub size: u64,
    /// Last modification, nanoseconds since the Unix epoch (negative before 1970).
    pub mtime_ns: i64,
}

impl FileStat {
    /// Stats an open file (`fstat`: the file we hold, whatever its path now names).
    pub fn of(file: &File) -> io::Result<FileStat> {
        let meta = file.metadata()?;
        Ok(FileStat {
            size: meta.len(),
            mtime_ns: meta
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(meta.mtime_nsec()),
        })
    }
}

/// What [`DownloadStorage::prepare`] found and did for one file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The file did not exist and was created at full length.
    Created,
    /// The file existed with the right length and was left untouched.
    Kept,
    /// The file existed with another length and was truncated or extended to the right one.
    Resized {
        /// The length found.
        from: u64,
    },
}

/// The open, read-write files of one download.
#[derive(Debug)]
pub struct DownloadStorage {
    layout: Layout,
    paths: Vec<PathBuf>,
    files: Vec<File>,
    found: Vec<Option<FileStat>>,
    prepared: Vec<Prepared>,
}

impl DownloadStorage {
    /// Creates (or reopens) the files of `info` under `out_dir` (file `i` at
    /// `out_dir/<info.file_path(i)>`), creating `out_dir` and the directories on the way.
    ///
    /// A file of the right length is kept untouched, so a resumed download keeps its data and
    /// mtime. A file of the wrong length is truncated or extended to the right one: bytes past
    /// the torrent's end are not the torrent's, and a short file is what an interrupted copy
    /// leaves. Either way [`found`](Self::found) keeps what was there *before* any change, which
    /// is what resume data must be checked against (a resized or recreated file can never
    /// pass, whatever the filesystem's timestamp granularity). New entries are made durable
    /// by fsyncing their directories.
    ///
    /// Refuses (before creating anything) unsafe names and paths that name one file twice or a
    /// file and a directory; refuses a symbolic link, FIFO or device anywhere in the tree.
    pub fn prepare(info: &Info, out_dir: &Path, prealloc: Preallocate) -> Result<DownloadStorage> {
        let names = file_names(info)?;
        std::fs::create_dir_all(out_dir).map_err(|source| io_error(out_dir, source))?;
        let root = open_root(out_dir)?;
        let mut dirs_to_sync = BTreeSet::new();
        let count = info.files.len();
        let (mut paths, mut files) = (Vec::with_capacity(count), Vec::with_capacity(count));
        let (mut found, mut prepared) = (Vec::with_capacity(count), Vec::with_capacity(count));
        for (i, entry) in info.files.iter().enumerate() {
            let path = out_dir.join(info.file_path(i));
            let (dirs, name) = names[i].split_at(names[i].len() - 1);
            let dir = open_dirs(&root, out_dir, dirs, &mut dirs_to_sync)?;
            let (file, before) = open_file(&dir, &name[0], &path)?;
            let outcome = fit_length(&file, before, entry.length, prealloc)
                .map_err(|source| io_error(&path, source))?;
            if outcome == Prepared::Created {
                dirs_to_sync.insert(dirs.to_vec());
            }
            paths.push(path);
            files.push(file);
            found.push(before);
            prepared.push(outcome);
        }
        for dirs in dirs_to_sync {
            let mut ignored = BTreeSet::new();
            let dir = open_dirs(&root, out_dir, &dirs, &mut ignored)?;
            // SAFETY: plain syscall on a descriptor we own.
            if unsafe { libc::fsync(dir.as_raw_fd()) } != 0 {
                let path = dirs.iter().fold(out_dir.to_owned(), |p, d| p.join(d));
                return Err(io_error(&path, io::Error::last_os_error()));
            }
        }
        Ok(DownloadStorage {
            layout: info.layout(),
            paths,
            files,
            found,
            prepared,
        })
    }

    /// The piece-to-file layout.
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

    /// What `prepare` did to file `file`.
    pub fn prepared(&self, file: usize) -> Prepared {
        self.prepared[file]
    }

    /// Each file's size and mtime as `prepare` found it, before any change (`None`: it did
    /// not exist). Check resume data against this, not against the files as they are now.
    pub fn found(&self) -> &[Option<FileStat>] {
        &self.found
    }

    /// A new read-write handle on file `file` (same open file description), e.g. for
    /// [`ShardCtx::add_file`](crate::runtime::ShardCtx::add_file).
    pub fn clone_file(&self, file: usize) -> io::Result<File> {
        self.files[file].try_clone()
    }

    /// Size and mtime of every file now. For resume data, call it only once the pieces to be
    /// recorded are durable (see [`super::resume`]).
    pub fn stat_files(&self) -> Result<Vec<FileStat>> {
        self.files
            .iter()
            .zip(&self.paths)
            .map(|(file, path)| FileStat::of(file).map_err(|source| io_error(path, source)))
            .collect()
    }

    /// Writes `block` with `pwrite` (for tools and tests; the downloader writes through the
    /// shards). `data.len()` must equal `block.len`.
    pub fn write_block(&self, block: BlockRef, data: &[u8]) -> Result<()> {
        assert_eq!(data.len(), block.len as usize, "data must fill the block");
        let (piece, offset, len) = (block.piece.get(), block.offset, block.len);
        if self.layout.block(piece, offset, len) != Some(block) {
            return Err(StorageError::BlockOutOfRange { piece, offset, len });
        }
        let mut at = 0;
        for span in self.layout.spans(block.piece, offset, len) {
            let bytes = &data[at..at + span.len as usize];
            self.files[span.file]
                .write_all_at(bytes, span.offset)
                .map_err(|source| io_error(&self.paths[span.file], source))?;
            at += span.len as usize;
        }
        Ok(())
    }

    /// fdatasyncs every file (for tools and tests; the downloader syncs through the shards).
    pub fn sync_all(&self) -> Result<()> {
        for (file, path) in self.files.iter().zip(&self.paths) {
            file.sync_data().map_err(|source| io_error(path, source))?;
        }
        Ok(())
    }
}

fn io_error(path: &Path, source: io::Error) -> StorageError {
    StorageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Every file's validated path components (`name` first), refusing a path named twice or
/// used both as a file and as a directory: those would make two torrent files share bytes.
fn file_names(info: &Info) -> Result<Vec<Vec<String>>> {
    let mut names = Vec::with_capacity(info.files.len());
    for (i, entry) in info.files.iter().enumerate() {
        let rel = info.file_path(i);
        let comps: Vec<String> = std::iter::once(&info.name)
            .chain(&entry.path)
            .cloned()
            .collect();
        for c in &comps {
            validate_component(c).map_err(|reason| StorageError::UnsafePath {
                path: rel.clone(),
                reason,
            })?;
        }
        names.push(comps);
    }
    let files: HashSet<&[String]> = names.iter().map(Vec::as_slice).collect();
    let mut seen = HashSet::with_capacity(names.len());
    for (i, comps) in names.iter().enumerate() {
        let is_dir_of_another = (1..comps.len()).any(|n| files.contains(&comps[..n]));
        if !seen.insert(comps.as_slice()) || is_dir_of_another {
            return Err(StorageError::PathClash {
                path: info.file_path(i),
            });
        }
    }
    Ok(names)
}

fn c_name(name: &str) -> CString {
    // Validated components contain no NUL byte.
    CString::new(name).expect("validated path component without NUL")
}

/// Opens the output directory itself (symbolic links followed: the user chose this path).
fn open_root(out_dir: &Path) -> Result<OwnedFd> {
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(out_dir)
        .map_err(|source| io_error(out_dir, source))?;
    Ok(OwnedFd::from(dir))
}

/// Walks (creating as needed) `dirs` below `root` without following symbolic links. Adds the
/// directories that got a new entry to `created_in`.
fn open_dirs(
    root: &OwnedFd,
    out_dir: &Path,
    dirs: &[String],
    created_in: &mut BTreeSet<Vec<String>>,
) -> Result<OwnedFd> {
    let mut current = root.try_clone().map_err(|e| io_error(out_dir, e))?;
    let mut path = out_dir.to_owned();
    for (depth, name) in dirs.iter().enumerate() {
        path.push(name);
        let c = c_name(name);
        // SAFETY: valid descriptor and NUL-terminated name.
        if unsafe { libc::mkdirat(current.as_raw_fd(), c.as_ptr(), 0o755) } == 0 {
            created_in.insert(dirs[..depth].to_vec());
        } else {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(io_error(&path, err));
            }
        }
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: valid descriptor and NUL-terminated name.
        let fd = unsafe { libc::openat(current.as_raw_fd(), c.as_ptr(), flags) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            return Err(match err.raw_os_error() {
                Some(libc::ELOOP) => StorageError::Symlink { path },
                Some(libc::ENOTDIR) if is_symlink_at(&current, &c) => {
                    StorageError::Symlink { path }
                }
                Some(libc::ENOTDIR) => StorageError::NotDirectory { path },
                _ => io_error(&path, err),
            });
        }
        // SAFETY: openat returned a fresh descriptor that nobody else owns.
        current = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    Ok(current)
}

/// Whether `name` in `dir` is a symbolic link (not followed).
fn is_symlink_at(dir: &OwnedFd, name: &CString) -> bool {
    // SAFETY: zeroed stat is a valid out-parameter; valid descriptor and name.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        ) == 0
            && st.st_mode & libc::S_IFMT == libc::S_IFLNK
    }
}

/// Opens (or creates) regular file `name` in `dir` read-write, never through a symbolic link.
/// Returns the file and its stat before we touched it (`None`: we created it).
fn open_file(dir: &OwnedFd, name: &str, path: &Path) -> Result<(File, Option<FileStat>)> {
    let c = c_name(name);
    // O_NONBLOCK: a FIFO planted in the tree must not block the open; cleared below, as it
    // would make io_uring fail writes with EAGAIN instead of waiting.
    let base = libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    let mut created = false;
    // SAFETY: valid descriptor and NUL-terminated name.
    let mut fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), base) };
    if fd < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) {
        let flags = base | libc::O_CREAT | libc::O_EXCL;
        // SAFETY: as above; the mode is passed as the variadic argument O_CREAT needs.
        fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags, 0o644 as libc::c_uint) };
        created = fd >= 0;
    }
    if fd < 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::ELOOP) => StorageError::Symlink {
                path: path.to_owned(),
            },
            Some(libc::EISDIR) | Some(libc::ENXIO) => StorageError::NotRegular {
                path: path.to_owned(),
            },
            _ => io_error(path, err),
        });
    }
    // SAFETY: openat returned a fresh descriptor that nobody else owns.
    let file = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(StorageError::NotRegular {
            path: path.to_owned(),
        });
    }
    clear_nonblock(&file).map_err(|e| io_error(path, e))?;
    let before = if created {
        None
    } else {
        Some(FileStat::of(&file).map_err(|e| io_error(path, e))?)
    };
    Ok((file, before))
}

/// Gives `file` its torrent length; never touches a file that already has it.
fn fit_length(
    file: &File,
    before: Option<FileStat>,
    length: u64,
    prealloc: Preallocate,
) -> io::Result<Prepared> {
    let outcome = match before {
        None => Prepared::Created,
        Some(stat) if stat.size == length => return Ok(Prepared::Kept),
        Some(stat) => Prepared::Resized { from: stat.size },
    };
    file.set_len(length)?;
    if prealloc == Preallocate::Full && length > 0 {
        allocate(file, length)?;
    }
    Ok(outcome)
}

/// Reserves `length` bytes of disk for `file`; a filesystem without fallocate keeps the file
/// sparse.
fn allocate(file: &File, length: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(length).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: plain syscall on a descriptor `file` keeps open.
    if unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) => Ok(()),
        _ => Err(err),
    }
}

#[cfg(test)]
#[path = "download_tests.rs"]
mod tests;
