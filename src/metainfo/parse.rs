//! Parsing `.torrent` files into [`Metainfo`] and building them from an [`Info`].

use std::sync::Arc;

use sha1::{Digest, Sha1};

use super::path::validate_component;
use super::{FileEntry, Info, InfoHash, Layout, Metainfo, MetainfoError};
use super::{FILES_MAX, PATH_COMPONENTS_MAX, PIECE_LENGTH_MAX, PIECE_LENGTH_MIN};
use crate::bencode::{decode, Dict, Limits, OwnedValue, Value};

type Result<T> = std::result::Result<T, MetainfoError>;

fn invalid(field: &'static str, reason: impl Into<String>) -> MetainfoError {
    MetainfoError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn text(v: &Value<'_>, field: &'static str) -> Result<String> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(field, "not a UTF-8 string"))
}

fn opt_text(d: &Dict<'_>, key: &'static str) -> Result<Option<String>> {
    // Optional descriptive fields that are not text are ignored rather than fatal: they do
    // not affect what we serve, and refusing the torrent over a binary comment helps nobody.
    Ok(d.get(key.as_bytes())
        .and_then(|v| v.as_str())
        .map(str::to_owned))
}

/// Parses and validates a `.torrent` file.
pub fn parse_torrent(bytes: &[u8]) -> Result<Metainfo> {
    let root = decode(bytes, Limits::TORRENT_FILE)?;
    let root = root
        .as_dict()
        .ok_or_else(|| invalid("(root)", "not a dict"))?;
    let info_value = root.get(b"info").ok_or(MetainfoError::Missing("info"))?;
    let info_dict = info_value
        .as_dict()
        .ok_or_else(|| invalid("info", "not a dict"))?;
    let info = parse_info(info_dict)?;
    let info_hash = InfoHash(Sha1::digest(info_dict.raw).into());
    let announce = match root.get(b"announce") {
        Some(v) => Some(text(v, "announce")?),
        None => None,
    };
    Ok(Metainfo {
        info,
        info_hash,
        info_bytes: Arc::from(info_dict.raw),
        announce,
        announce_list: parse_announce_list(root)?,
        comment: opt_text(root, "comment")?,
        created_by: opt_text(root, "created by")?,
        creation_date: root.get(b"creation date").and_then(Value::as_int),
    })
}

fn parse_announce_list(root: &Dict<'_>) -> Result<Vec<Vec<String>>> {
    let Some(v) = root.get(b"announce-list") else {
        return Ok(Vec::new());
    };
    let tiers = v
        .as_list()
        .ok_or_else(|| invalid("announce-list", "not a list"))?;
    let mut out = Vec::new();
    for tier in tiers {
        let urls = tier
            .as_list()
            .ok_or_else(|| invalid("announce-list", "a tier is not a list"))?;
        let tier: Vec<String> = urls
            .iter()
            .map(|u| text(u, "announce-list"))
            .collect::<Result<_>>()?;
        if !tier.is_empty() {
            out.push(tier);
        }
    }
    Ok(out)
}

/// Parses an info dict on its own (also used for metadata fetched over BEP 9).
pub fn parse_info(d: &Dict<'_>) -> Result<Info> {
    let name_value = d.get(b"name").ok_or(MetainfoError::Missing("name"))?;
    let (name, name_field) = match d.get(b"name.utf-8") {
        Some(v) if v.as_str().is_some() => (text(v, "name.utf-8")?, "name.utf-8"),
        _ => (text(name_value, "name")?, "name"),
    };
    validate_component(&name).map_err(|reason| MetainfoError::UnsafePath {
        field: name_field,
        path: name.clone(),
        reason,
    })?;
    let piece_length = d
        .get(b"piece length")
        .ok_or(MetainfoError::Missing("piece length"))?
        .as_int()
        .ok_or_else(|| invalid("piece length", "not an integer"))?;
    if piece_length < i64::from(PIECE_LENGTH_MIN) || piece_length > i64::from(PIECE_LENGTH_MAX) {
        return Err(invalid(
            "piece length",
            format!("{piece_length} is outside {PIECE_LENGTH_MIN}..={PIECE_LENGTH_MAX}"),
        ));
    }
    let piece_length = piece_length as u32;
    let pieces_raw = d
        .get(b"pieces")
        .ok_or(MetainfoError::Missing("pieces"))?
        .as_bytes()
        .ok_or_else(|| invalid("pieces", "not a byte string"))?;
    if pieces_raw.len() % 20 != 0 {
        return Err(invalid("pieces", "length is not a multiple of 20"));
    }
    let pieces: Vec<[u8; 20]> = pieces_raw
        .chunks_exact(20)
        .map(|c| c.try_into().expect("chunks of 20"))
        .collect();
    let (files, multi_file) = match (d.get(b"length"), d.get(b"files")) {
        (Some(len), None) => (vec![single_file(len)?], false),
        (None, Some(list)) => (parse_files(list)?, true),
        (Some(_), Some(_)) => return Err(invalid("files", "both `length` and `files` present")),
        (None, None) => return Err(MetainfoError::Missing("length or files")),
    };
    let lengths: Vec<u64> = files.iter().map(|f| f.length).collect();
    let layout = Layout::new(piece_length, &lengths)
        .ok_or_else(|| invalid("files", "total length overflows"))?;
    if layout.piece_count() as usize != pieces.len() {
        return Err(invalid(
            "pieces",
            format!(
                "{} hashes for {} bytes, which need {} pieces",
                pieces.len(),
                layout.total_length(),
                layout.piece_count()
            ),
        ));
    }
    let private = d.get(b"private").and_then(Value::as_int) == Some(1);
    Ok(Info {
        name,
        piece_length,
        pieces,
        files,
        multi_file,
        private,
    })
}

fn length(v: &Value<'_>, field: &'static str) -> Result<u64> {
    let n = v.as_int().ok_or_else(|| invalid(field, "not an integer"))?;
    u64::try_from(n).map_err(|_| invalid(field, format!("negative length {n}")))
}

fn single_file(len: &Value<'_>) -> Result<FileEntry> {
    Ok(FileEntry {
        path: Vec::new(),
        length: length(len, "length")?,
    })
}

fn parse_files(list: &Value<'_>) -> Result<Vec<FileEntry>> {
    let items = list
        .as_list()
        .ok_or_else(|| invalid("files", "not a list"))?;
    if items.is_empty() {
        return Err(invalid("files", "empty list"));
    }
    if items.len() > FILES_MAX {
        return Err(invalid("files", format!("more than {FILES_MAX} files")));
    }
    let mut files = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::new();
    for item in items {
        let f = item
            .as_dict()
            .ok_or_else(|| invalid("files", "an entry is not a dict"))?;
        let len = length(
            f.get(b"length")
                .ok_or(MetainfoError::Missing("files.length"))?,
            "files.length",
        )?;
        let path = parse_path(f)?;
        // Two entries with one path would make one file's bytes overwrite the other's.
        if !seen.insert(path.clone()) {
            return Err(MetainfoError::UnsafePath {
                field: "files.path",
                path: path.join("/"),
                reason: "the same path appears twice",
            });
        }
        files.push(FileEntry { path, length: len });
    }
    check_prefix_collisions(&files)?;
    Ok(files)
}

fn parse_path(f: &Dict<'_>) -> Result<Vec<String>> {
    let (value, field) = match f.get(b"path.utf-8") {
        Some(v) => (v, "files.path.utf-8"),
        None => (
            f.get(b"path").ok_or(MetainfoError::Missing("files.path"))?,
            "files.path",
        ),
    };
    let parts = value
        .as_list()
        .ok_or_else(|| invalid(field, "not a list"))?;
    if parts.is_empty() {
        return Err(MetainfoError::UnsafePath {
            field,
            path: String::new(),
            reason: "empty path",
        });
    }
    if parts.len() > PATH_COMPONENTS_MAX {
        return Err(invalid(
            field,
            format!("more than {PATH_COMPONENTS_MAX} components"),
        ));
    }
    let mut path = Vec::with_capacity(parts.len());
    for p in parts {
        let c = text(p, field)?;
        validate_component(&c).map_err(|reason| MetainfoError::UnsafePath {
            field,
            path: lossy_join(parts),
            reason,
        })?;
        path.push(c);
    }
    Ok(path)
}

fn lossy_join(parts: &[Value<'_>]) -> String {
    parts
        .iter()
        .map(|p| String::from_utf8_lossy(p.as_bytes().unwrap_or(b"?")).into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// A file may not also be a directory of another file (`a` and `a/b`).
fn check_prefix_collisions(files: &[FileEntry]) -> Result<()> {
    let mut dirs = std::collections::HashSet::new();
    for f in files {
        for i in 1..f.path.len() {
            dirs.insert(&f.path[..i]);
        }
    }
    for f in files {
        if dirs.contains(&f.path[..]) {
            return Err(MetainfoError::UnsafePath {
                field: "files.path",
                path: f.path.join("/"),
                reason: "a file is also used as a directory",
            });
        }
    }
    Ok(())
}

/// What goes into a new torrent file besides the info dict.
#[derive(Clone, Debug, Default)]
pub struct TorrentBuilder {
    /// Tracker tiers; the first URL becomes `announce`.
    pub trackers: Vec<Vec<String>>,
    /// `comment`.
    pub comment: Option<String>,
    /// `created by`.
    pub created_by: Option<String>,
    /// `creation date` (seconds since the epoch).
    pub creation_date: Option<i64>,
}

/// Encodes a torrent file for `info` (canonical bencode) and parses it back, so the result
/// is exactly what a reader of the file will see.
pub fn build_torrent(info: &Info, extra: &TorrentBuilder) -> Result<(Vec<u8>, Metainfo)> {
    let mut root = OwnedValue::dict();
    if let Some(first) = extra.trackers.first().and_then(|t| t.first()) {
        root.insert("announce", OwnedValue::str(first));
    }
    if extra.trackers.iter().map(Vec::len).sum::<usize>() > 1 {
        let tiers = extra
            .trackers
            .iter()
            .map(|t| OwnedValue::List(t.iter().map(|u| OwnedValue::str(u)).collect()))
            .collect();
        root.insert("announce-list", OwnedValue::List(tiers));
    }
    if let Some(c) = &extra.comment {
        root.insert("comment", OwnedValue::str(c));
    }
    if let Some(c) = &extra.created_by {
        root.insert("created by", OwnedValue::str(c));
    }
    if let Some(d) = extra.creation_date {
        root.insert("creation date", OwnedValue::Int(d));
    }
    root.insert("info", info_value(info));
    let bytes = root.to_bytes();
    let meta = parse_torrent(&bytes)?;
    Ok((bytes, meta))
}

fn info_value(info: &Info) -> OwnedValue {
    let mut d = OwnedValue::dict();
    d.insert("name", OwnedValue::str(&info.name));
    d.insert(
        "piece length",
        OwnedValue::Int(i64::from(info.piece_length)),
    );
    d.insert("pieces", OwnedValue::Bytes(info.pieces.concat()));
    if info.private {
        d.insert("private", OwnedValue::Int(1));
    }
    if info.multi_file {
        let files = info
            .files
            .iter()
            .map(|f| {
                let mut e = OwnedValue::dict();
                e.insert("length", OwnedValue::Int(f.length as i64));
                let path = f.path.iter().map(|c| OwnedValue::str(c)).collect();
                e.insert("path", OwnedValue::List(path));
                e
            })
            .collect();
        d.insert("files", OwnedValue::List(files));
    } else {
        d.insert("length", OwnedValue::Int(info.files[0].length as i64));
    }
    d
}
