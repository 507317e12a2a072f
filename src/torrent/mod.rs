//! Torrent-wide policy: choking (and later picking, swarm management and bans).
