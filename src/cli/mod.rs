//! The command line: `create`, `seed`, `verify`, `magnet`, `bench`, `demo`.
