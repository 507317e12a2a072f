//! Torrent files (BEP 3 v1), magnet URIs (BEP 9) and the piece-to-file layout.
