//! The piece-to-file layout: a torrent's files laid end to end and cut into pieces.
//!
//! Pieces span file boundaries; zero-length files occupy no bytes and never appear in a
//! span. Piece and block numbers from the network are validated here once
//! ([`Layout::piece`], [`Layout::block`]) and travel as [`PieceIndex`]/[`BlockRef`] after.

/// Standard block size (BEP 3 practice): 16 KiB requests.
pub const BLOCK_BYTES: u32 = 16 * 1024;
/// Largest block a peer may request; libtorrent and others refuse more than 16 KiB too.
pub const BLOCK_BYTES_MAX: u32 = 16 * 1024;

/// A piece number known to be inside the torrent.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PieceIndex(u32);

impl PieceIndex {
    /// The raw number.
    pub fn get(self) -> u32 {
        self.0
    }
    /// As a `usize`, for indexing piece tables.
    pub fn idx(self) -> usize {
        self.0 as usize
    }
    /// The piece at position `i` of a table that has one entry per piece of the torrent
    /// (the table's size is what bounds `i`; nothing from the network comes this way).
    pub(crate) fn from_table(i: usize) -> PieceIndex {
        PieceIndex(i as u32)
    }
}

/// A block known to lie inside its piece: `(piece, offset, len)` with `0 < len <= 16 KiB`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct BlockRef {
    /// The piece.
    pub piece: PieceIndex,
    /// Byte offset inside the piece.
    pub offset: u32,
    /// Length in bytes.
    pub len: u32,
}

/// One contiguous run of bytes inside one file.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FileSpan {
    /// Index into the torrent's file list.
    pub file: usize,
    /// Offset inside that file.
    pub offset: u64,
    /// Length of the run.
    pub len: u64,
}

/// Piece geometry and file boundaries of one torrent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    piece_length: u32,
    total_length: u64,
    piece_count: u32,
    /// Start offset of every file in the concatenated stream (same order as the file list).
    file_starts: Vec<u64>,
    file_lengths: Vec<u64>,
}

impl Layout {
    /// Builds the layout; `None` if the piece length is zero or the piece count overflows u32.
    pub fn new(piece_length: u32, file_lengths: &[u64]) -> Option<Layout> {
        if piece_length == 0 {
            return None;
        }
        let mut file_starts = Vec::with_capacity(file_lengths.len());
        let mut total: u64 = 0;
        for &len in file_lengths {
            file_starts.push(total);
            total = total.checked_add(len)?;
        }
        let piece_count = u32::try_from(total.div_ceil(u64::from(piece_length))).ok()?;
        Some(Layout {
            piece_length,
            total_length: total,
            piece_count,
            file_starts,
            file_lengths: file_lengths.to_vec(),
        })
    }

    /// Nominal piece length (every piece but possibly the last).
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }
    /// Sum of all file lengths.
    pub fn total_length(&self) -> u64 {
        self.total_length
    }
    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }
    /// Number of files (zero-length ones included).
    pub fn file_count(&self) -> usize {
        self.file_lengths.len()
    }
    /// Length of file `file`.
    pub fn file_length(&self, file: usize) -> u64 {
        self.file_lengths[file]
    }

    /// Validates a piece number from the network.
    pub fn piece(&self, index: u32) -> Option<PieceIndex> {
        (index < self.piece_count).then_some(PieceIndex(index))
    }

    /// Every piece, in order.
    pub fn pieces(&self) -> impl Iterator<Item = PieceIndex> {
        (0..self.piece_count).map(PieceIndex)
    }

    /// Length of `piece` (the last one may be short).
    pub fn piece_len(&self, piece: PieceIndex) -> u32 {
        let start = self.piece_start(piece);
        (self.total_length - start).min(u64::from(self.piece_length)) as u32
    }

    /// Offset of `piece` in the concatenated stream.
    pub fn piece_start(&self, piece: PieceIndex) -> u64 {
        u64::from(piece.0) * u64::from(self.piece_length)
    }

    /// Validates a block request: inside the torrent, inside the piece, `0 < len <= 16 KiB`.
    pub fn block(&self, piece: u32, offset: u32, len: u32) -> Option<BlockRef> {
        let piece = self.piece(piece)?;
        let end = u64::from(offset) + u64::from(len);
        if len == 0 || len > BLOCK_BYTES_MAX || end > u64::from(self.piece_len(piece)) {
            return None;
        }
        Some(BlockRef { piece, offset, len })
    }

    /// Number of 16 KiB blocks in `piece`.
    pub fn blocks_in_piece(&self, piece: PieceIndex) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_BYTES)
    }

    /// The file runs covering `len` bytes at `offset` inside `piece`, in stream order.
    /// Zero-length files never appear.
    pub fn spans(&self, piece: PieceIndex, offset: u32, len: u32) -> Spans<'_> {
        let start = self.piece_start(piece) + u64::from(offset);
        let end = (start + u64::from(len)).min(self.total_length);
        // The first file whose end is past `start`: files are sorted by start offset.
        let file = self
            .file_starts
            .partition_point(|&s| s <= start)
            .saturating_sub(1);
        Spans {
            layout: self,
            pos: start,
            end,
            file,
        }
    }

    /// The pieces that overlap file `file` (empty for zero-length files).
    pub fn pieces_of_file(&self, file: usize) -> std::ops::Range<u32> {
        let len = self.file_lengths[file];
        if len == 0 {
            return 0..0;
        }
        let start = self.file_starts[file];
        let pl = u64::from(self.piece_length);
        (start / pl) as u32..(start + len).div_ceil(pl) as u32
    }
}

/// Iterator over the file runs of a byte range; see [`Layout::spans`].
pub struct Spans<'a> {
    layout: &'a Layout,
    pos: u64,
    end: u64,
    file: usize,
}

impl Iterator for Spans<'_> {
    type Item = FileSpan;

    fn next(&mut self) -> Option<FileSpan> {
        while self.pos < self.end && self.file < self.layout.file_lengths.len() {
            let file_start = self.layout.file_starts[self.file];
            let file_end = file_start + self.layout.file_lengths[self.file];
            if file_end <= self.pos {
                self.file += 1;
                continue;
            }
            let run_end = file_end.min(self.end);
            let span = FileSpan {
                file: self.file,
                offset: self.pos - file_start,
                len: run_end - self.pos,
            };
            self.pos = run_end;
            return Some(span);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_spanning_files_and_empty_files_maps_correctly() {
        // Files of 5, 0, 7 and 4 bytes with 4-byte pieces: piece 1 covers the end of file 0,
        // skips the empty file and starts file 2.
        let l = Layout::new(4, &[5, 0, 7, 4]).unwrap();
        assert_eq!(l.piece_count(), 4);
        let p1 = l.piece(1).unwrap();
        let spans: Vec<_> = l.spans(p1, 0, 4).collect();
        assert_eq!(
            spans,
            vec![
                FileSpan {
                    file: 0,
                    offset: 4,
                    len: 1
                },
                FileSpan {
                    file: 2,
                    offset: 0,
                    len: 3
                }
            ]
        );
        assert_eq!(l.pieces_of_file(1), 0..0);
        assert_eq!(l.pieces_of_file(2), 1..3);
        assert_eq!(l.pieces_of_file(3), 3..4);
    }

    #[test]
    fn last_piece_is_short_and_blocks_are_validated() {
        // A 10-byte torrent with 4-byte pieces has a 2-byte last piece; requests past it fail.
        let l = Layout::new(4, &[10]).unwrap();
        let last = l.piece(2).unwrap();
        assert_eq!(l.piece_len(last), 2);
        assert!(l.block(2, 0, 2).is_some());
        assert!(l.block(2, 0, 3).is_none());
        assert!(l.block(3, 0, 1).is_none());
        assert!(l.block(0, 0, 0).is_none());
        assert!(l.block(0, u32::MAX, 2).is_none());
    }

    #[test]
    fn spans_cover_every_byte_exactly_once() {
        // Walking every piece's spans reproduces each file's length.
        let lengths = [0, 70_000, 1, 0, 33_333, 16_384];
        let l = Layout::new(16_384, &lengths).unwrap();
        let mut per_file = vec![0u64; lengths.len()];
        for p in l.pieces() {
            let mut covered = 0;
            for s in l.spans(p, 0, l.piece_len(p)) {
                per_file[s.file] += s.len;
                covered += s.len;
            }
            assert_eq!(covered, u64::from(l.piece_len(p)));
        }
        assert_eq!(per_file, lengths.to_vec());
    }
}
