//! Storage: data files of a torrent, checked against the layout; block reads as requests.
