//! Helpers for tests that drive `ringseed::runtime` shards directly.

use ringseed::runtime::{probe_uring, IoKind, IO_ENV_VAR};

/// The backends each test runs on: the one `RINGSEED_IO` names, else both (io_uring if usable).
pub fn backends() -> Vec<IoKind> {
    if std::env::var(IO_ENV_VAR).is_ok() {
        return vec![IoKind::Auto];
    }
    match probe_uring() {
        Ok(()) => vec![IoKind::Uring, IoKind::Epoll],
        Err(why) => {
            eprintln!("io_uring unavailable ({why}); testing epoll only");
            vec![IoKind::Epoll]
        }
    }
}
