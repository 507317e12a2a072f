//! The shard's open files, named by [`FileId`], with ops in flight counted per file.
//!
//! Owns the descriptors blocks are read from and written to. A removed file is closed only once
//! no read, write or sync of it is in flight, so the kernel never touches a descriptor number
//! that was closed and reused.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};

use super::protocol::FileId;

#[derive(Default)]
struct Entry {
    file: Option<File>,
    ops_in_flight: u32,
    removing: bool,
}

/// Open files of one shard. Ids of removed files are reused by later additions, so an app must
/// drop its ids when it removes a file.
#[derive(Default)]
pub(crate) struct FileTable {
    entries: Vec<Entry>,
    free: Vec<u32>,
}

impl FileTable {
    /// Takes ownership of `file` and names it.
    pub(crate) fn add(&mut self, file: File) -> FileId {
        let entry = Entry {
            file: Some(file),
            ops_in_flight: 0,
            removing: false,
        };
        if let Some(index) = self.free.pop() {
            self.entries[index as usize] = entry;
            return FileId(index);
        }
        self.entries.push(entry);
        FileId((self.entries.len() - 1) as u32)
    }

    /// Closes `id` now, or after its last op in flight. False if `id` is not open.
    pub(crate) fn remove(&mut self, id: FileId) -> bool {
        let Some(entry) = self.entries.get_mut(id.0 as usize) else {
            return false;
        };
        if entry.file.is_none() || entry.removing {
            return false;
        }
        entry.removing = true;
        self.release_if_done(id);
        true
    }

    /// The descriptor of `id`, counting one more op (read, write or sync) in flight; `None` if
    /// `id` is unknown or being removed. Pair every success with one [`FileTable::release`].
    pub(crate) fn acquire(&mut self, id: FileId) -> Option<RawFd> {
        let entry = self.entries.get_mut(id.0 as usize)?;
        if entry.removing {
            return None;
        }
        let fd = entry.file.as_ref()?.as_raw_fd();
        entry.ops_in_flight += 1;
        Some(fd)
    }

    /// An op of `id` completed.
    pub(crate) fn release(&mut self, id: FileId) {
        let entry = &mut self.entries[id.0 as usize];
        debug_assert!(entry.ops_in_flight > 0);
        entry.ops_in_flight -= 1;
        self.release_if_done(id);
    }

    fn release_if_done(&mut self, id: FileId) {
        let entry = &mut self.entries[id.0 as usize];
        if entry.removing && entry.ops_in_flight == 0 {
            *entry = Entry::default();
            self.free.push(id.0);
        }
    }

    /// Files open (including ones waiting for ops before closing).
    pub(crate) fn open_count(&self) -> usize {
        self.entries.iter().filter(|e| e.file.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_file_closes_after_its_last_op() {
        // A file with an op in flight stays open until that op finishes; its id is reused.
        let mut table = FileTable::default();
        let id = table.add(tempfile::tempfile().unwrap());
        assert!(table.acquire(id).is_some());
        assert!(table.remove(id));
        assert!(table.acquire(id).is_none(), "no new ops on a removed file");
        assert_eq!(table.open_count(), 1);
        table.release(id);
        assert_eq!(table.open_count(), 0);
        assert!(!table.remove(id));
        assert_eq!(table.add(tempfile::tempfile().unwrap()), id);
    }
}
