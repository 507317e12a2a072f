//! Thread-per-core shards: io_uring backend and an epoll (mio) fallback running one shard loop.
