//! Shards driven end to end over loopback with real client sockets, on both backends.
//!
//! The protocol under test is a tiny file server: `R off len` answers with a 13-byte header and
//! `len` bytes read from two files laid end to end (so blocks may span both), `E n bytes` echoes
//! as control bytes, in request order (server and client helpers: `runtime_shards/harness.rs`).
//! Every test stops by itself within bounded time.

mod common;
#[path = "runtime_shards/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant as StdInstant};

use common::runtime::backends;
use harness::*;
use ringseed::runtime::*;

#[test]
fn blocks_and_control_bytes_arrive_in_request_order() {
    // Echoes (control bytes) and file blocks, one spanning both files, come back exactly in the
    // order they were requested, even with many requests in one packet.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let mut client = connect(server.runtime.local_addrs()[0]);
        let mut burst = Vec::new();
        burst.extend_from_slice(b"E\x03abc");
        client.write_all(&burst).unwrap();
        request(&mut client, 0, 16384);
        client.write_all(b"E\x02xy").unwrap();
        request(&mut client, (FILE_BYTES - 5000) as u32, 16384); // spans both files
        request(&mut client, 12345, 1);
        expect_echo(&mut client, b"abc");
        expect_block(&mut client, 0, 16384);
        expect_echo(&mut client, b"xy");
        expect_block(&mut client, (FILE_BYTES - 5000) as u32, 16384);
        expect_block(&mut client, 12345, 1);
        // A request split across two writes is buffered until complete.
        client.write_all(b"R\x00\x00").unwrap();
        client.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        client
            .write_all(&[0x10, 0x00, 0x00, 0x00, 0x00, 0x20])
            .unwrap();
        expect_block(&mut client, 4096, 32);
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn many_concurrent_connections_from_many_source_ips_are_served() {
    // 300 clients spread over 30 loopback source addresses and 2 shards all get their blocks.
    for io in backends() {
        let server = start_server(io, 2, ShardLimits::default(), None);
        let addr = server.runtime.local_addrs()[0];
        // RINGSEED_TEST_CONNS raises the count for a manual scale check (ulimit -n permitting).
        let conns: usize = std::env::var("RINGSEED_TEST_CONNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let mut clients: Vec<TcpStream> = (0..conns)
            .map(|i| {
                let source: SocketAddr = format!("127.0.0.{}:0", 10 + i % 30).parse().unwrap();
                let socket =
                    socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                        .unwrap();
                socket.bind(&socket2::SockAddr::from(source)).unwrap();
                socket.connect(&addr.into()).unwrap();
                let stream: TcpStream = socket.into();
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                stream
            })
            .collect();
        for (i, client) in clients.iter_mut().enumerate() {
            for k in 0..3 {
                request(client, (i * 101 + k * 16384) as u32 % 150_000, 16384);
            }
        }
        for (i, client) in clients.iter_mut().enumerate() {
            for k in 0..3 {
                expect_block(client, (i * 101 + k * 16384) as u32 % 150_000, 16384);
            }
        }
        drop(clients);
        wait_until("all closes", IO_TIMEOUT, || {
            server.shared.closed.load(Ordering::SeqCst) == conns
        });
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn peer_disconnecting_mid_send_closes_only_that_connection() {
    // A client that asks for 32 MiB and hangs up after 100 KiB is closed with a logged reason;
    // the shard keeps serving others.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let addr = server.runtime.local_addrs()[0];
        let mut quitter = connect(addr);
        for k in 0..2048u32 {
            request(&mut quitter, (k * 97) % 150_000, 16384);
        }
        let mut sink = vec![0u8; 100 * 1024];
        quitter.read_exact(&mut sink).unwrap();
        drop(quitter);
        wait_until("the quitter's close", IO_TIMEOUT, || {
            server.shared.closed.load(Ordering::SeqCst) == 1
        });
        let reason = server.shared.reasons.lock().unwrap()[0].clone();
        assert!(
            reason.contains("socket error") || reason.contains("peer closed"),
            "{reason}"
        );
        let mut other = connect(addr);
        request(&mut other, 777, 16384);
        expect_block(&mut other, 777, 16384);
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn slow_reader_is_held_back_by_bounded_send_queue() {
    // A client that requests 2000 blocks and reads nothing stops receiving polls once socket
    // buffers and the per-connection queue are full; the queue never exceeds its bound; when the
    // client starts reading, everything arrives.
    for io in backends() {
        let limits = ShardLimits::default();
        let server = start_server(io, 1, limits, None);
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(16 * 1024).unwrap();
        socket
            .connect(&server.runtime.local_addrs()[0].into())
            .unwrap();
        let mut client: TcpStream = socket.into();
        client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        const BLOCKS: u32 = 2000;
        let mut requests = Vec::new();
        for k in 0..BLOCKS {
            requests.extend_from_slice(b"R");
            requests.extend_from_slice(&((k * 16384) % 180_000).to_be_bytes());
            requests.extend_from_slice(&16384u32.to_be_bytes());
        }
        client.write_all(&requests).unwrap();
        // Polling must come to rest while nobody reads: sample until two readings 300 ms apart
        // agree (bounded, so a runaway server fails the test instead of hanging it).
        let polled = || server.shared.blocks_polled.load(Ordering::SeqCst);
        let mut last = usize::MAX;
        let deadline = StdInstant::now() + IO_TIMEOUT;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let now = polled();
            if now == last && now > 0 {
                break;
            }
            assert!(
                StdInstant::now() < deadline,
                "polling never stopped ({now} blocks)"
            );
            last = now;
        }
        assert!(
            last < BLOCKS as usize / 2,
            "{last} blocks polled for a stalled reader"
        );
        let high = server.shared.unsent_high.load(Ordering::SeqCst);
        assert!(
            high > 0 && high <= limits.out_bytes_max,
            "unsent high-water {high}"
        );
        for k in 0..BLOCKS {
            expect_block(&mut client, (k * 16384) % 180_000, 16384);
        }
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn outbound_connect_uses_the_chosen_source_ip() {
    // A shard connects out from 127.0.0.7; the remote sees that address and the greeting, and
    // the shard gets the reply. A refused connect reaches `closed` as a connect failure.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let remote = TcpListener::bind("127.0.0.1:0").unwrap();
        let source: IpAddr = "127.0.0.7".parse().unwrap();
        server
            .runtime
            .send(0, Cmd::Connect(remote.local_addr().unwrap(), Some(source)))
            .unwrap();
        let (mut stream, peer) = remote.accept().unwrap();
        assert_eq!(peer.ip(), source);
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        expect_echo(&mut stream, b"hello from shard");
        request(&mut stream, 100, 10); // the shard-side connection also serves blocks
        expect_block(&mut stream, 100, 10);

        let refused = TcpListener::bind("127.0.0.1:0").unwrap();
        let dead_addr = refused.local_addr().unwrap();
        drop(refused);
        server
            .runtime
            .send(0, Cmd::Connect(dead_addr, None))
            .unwrap();
        wait_until("connect failure", IO_TIMEOUT, || {
            server.shared.closed.load(Ordering::SeqCst) == 1
        });
        let reason = server.shared.reasons.lock().unwrap()[0].clone();
        assert!(reason.starts_with("connect failed"), "{reason}");
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn idle_connection_is_closed_by_its_timer() {
    // A connection whose poll_timeout passes gets handle_timeout and is closed; the client sees EOF.
    for io in backends() {
        let server = start_server(
            io,
            1,
            ShardLimits::default(),
            Some(Duration::from_millis(150)),
        );
        let mut client = connect(server.runtime.local_addrs()[0]);
        let started = StdInstant::now();
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap(), 0);
        assert!(started.elapsed() < Duration::from_secs(3));
        wait_until("close", IO_TIMEOUT, || {
            server.shared.closed.load(Ordering::SeqCst) == 1
        });
        assert!(server.shared.reasons.lock().unwrap()[0].contains("idle timeout"));
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn protocol_error_closes_the_connection_with_its_reason() {
    // A request the protocol rejects closes that connection and logs the protocol's reason.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let mut client = connect(server.runtime.local_addrs()[0]);
        client.write_all(b"Q").unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(client.read(&mut buf).unwrap_or(0), 0);
        wait_until("close", IO_TIMEOUT, || {
            server.shared.closed.load(Ordering::SeqCst) == 1
        });
        assert!(server.shared.reasons.lock().unwrap()[0].contains("client asked to quit"));
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn block_pool_exhaustion_waits_instead_of_failing() {
    // With only 2 block buffers per shard, 8 clients asking for 40 blocks each still get every
    // block: reads wait for buffers instead of failing or allocating more.
    for io in backends() {
        let limits = ShardLimits {
            block_bufs: 2,
            recv_bufs: 4,
            ..ShardLimits::default()
        };
        let server = start_server(io, 1, limits, None);
        let addr = server.runtime.local_addrs()[0];
        let mut clients: Vec<TcpStream> = (0..8).map(|_| connect(addr)).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            for k in 0..40u32 {
                request(client, (i as u32 * 1000 + k * 4000) % 180_000, 16384);
            }
        }
        for (i, client) in clients.iter_mut().enumerate() {
            for k in 0..40u32 {
                expect_block(client, (i as u32 * 1000 + k * 4000) % 180_000, 16384);
            }
        }
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn ipv6_loopback_listener_serves() {
    // Listeners take IPv6 addresses too (skipped where ::1 is not configured).
    if TcpListener::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback; skipping");
        return;
    }
    for io in backends() {
        let server = start_server_on(io, 1, ShardLimits::default(), None, "[::1]:0", false);
        let mut client = connect(server.runtime.local_addrs()[0]);
        request(&mut client, 5, 500);
        expect_block(&mut client, 5, 500);
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn shutdown_is_bounded_with_busy_connections() {
    // Shutdown with clients mid-transfer returns within a few heartbeats and closes them all.
    for io in backends() {
        let server = start_server(io, 2, ShardLimits::default(), None);
        let addr = server.runtime.local_addrs()[0];
        let mut clients: Vec<TcpStream> = (0..10).map(|_| connect(addr)).collect();
        for client in &mut clients {
            for k in 0..500u32 {
                request(client, (k * 333) % 150_000, 16384);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        let started = StdInstant::now();
        let shared = Arc::clone(&server.shared);
        server.runtime.shutdown().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "shutdown took {:?}",
            started.elapsed()
        );
        assert_eq!(shared.closed.load(Ordering::SeqCst), 10);
    }
}

#[test]
fn supervisor_reports_a_dead_shard_with_context() {
    // A shard that panics is noticed through its join handle and reported with the message.
    for io in backends() {
        let mut server = start_server(io, 2, ShardLimits::default(), None);
        server.runtime.send(1, Cmd::Panic).unwrap();
        let stop = AtomicBool::new(false);
        let err = server.runtime.supervise(&stop).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("shard 1") && text.contains("boom requested by test"),
            "{text}"
        );
        // The other shard still serves.
        let mut client = connect(server.runtime.local_addrs()[0]);
        request(&mut client, 0, 100);
        let got = std::thread::spawn(move || {
            let mut header = [0u8; 13];
            client.read_exact(&mut header).map(|_| header[4])
        });
        // With SO_REUSEPORT the dead shard's socket may still get the connection; accept either.
        let _ = got.join();
        let _ = server.runtime.shutdown();
    }
}

#[test]
fn forced_backends_report_their_kind() {
    // An explicit choice is honoured; Auto resolves to a concrete backend.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let kind = server.runtime.io_kind();
        assert_ne!(kind, IoKind::Auto);
        if io != IoKind::Auto {
            assert_eq!(kind, io);
        }
        match std::env::var(IO_ENV_VAR).as_deref() {
            Ok("uring") => assert_eq!(kind, IoKind::Uring),
            Ok("epoll") => assert_eq!(kind, IoKind::Epoll),
            _ => {}
        }
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn memory_blocks_are_sent_without_disk_reads() {
    // A block handed over as bytes in memory (a piece-cache hit) arrives like a file block.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let mut client = connect(server.runtime.local_addrs()[0]);
        request_memory(&mut client, 3000, 16384);
        request(&mut client, 50, 70);
        expect_block(&mut client, 3000, 16384);
        expect_block(&mut client, 50, 70);
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn tick_touching_all_connections_makes_them_send() {
    // A periodic tick that changes every connection (as the choker does) gets their output
    // flushed without any input from the peers.
    for io in backends() {
        let server = start_server_on(io, 1, ShardLimits::default(), None, "127.0.0.1:0", true);
        let addr = server.runtime.local_addrs()[0];
        let mut clients: Vec<TcpStream> = (0..5).map(|_| connect(addr)).collect();
        for client in &mut clients {
            for _ in 0..3 {
                let mut got = [0u8; 2];
                client.read_exact(&mut got).unwrap();
                assert_eq!(&got, b"T\x00");
            }
        }
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn shards_message_each_other_through_mailboxes() {
    // A command sent to shard 0 is forwarded to shard 1 and handled there, without locks.
    for io in backends() {
        let server = start_server(io, 2, ShardLimits::default(), None);
        server.runtime.send(0, Cmd::Forward(1)).unwrap();
        server.runtime.mailboxes().send(1, Cmd::Forward(0)).unwrap();
        wait_until("notes", IO_TIMEOUT, || {
            server.shared.notes.lock().unwrap().len() == 2
        });
        let mut notes = server.shared.notes.lock().unwrap().clone();
        notes.sort();
        assert_eq!(notes, vec![0, 1]);
        assert!(server.runtime.send(5, Cmd::Note).is_err());
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn blocks_of_a_removed_file_close_the_connection() {
    // After the app removes a file, a block naming it closes that connection with a reason
    // instead of reading a closed (or reused) descriptor.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let mut client = connect(server.runtime.local_addrs()[0]);
        request(&mut client, 0, 100);
        expect_block(&mut client, 0, 100);
        server.runtime.send(0, Cmd::RemoveFiles).unwrap();
        wait_until("removal", IO_TIMEOUT, || {
            server.shared.notes.lock().unwrap().len() == 1
        });
        assert_eq!(
            server.shared.notes.lock().unwrap()[0],
            0,
            "files still open"
        );
        request(&mut client, 0, 100);
        wait_until("close", IO_TIMEOUT, || {
            server.shared.closed.load(Ordering::SeqCst) == 1
        });
        let reason = server.shared.reasons.lock().unwrap()[0].clone();
        assert!(reason.contains("removed file"), "{reason}");
        server.runtime.shutdown().unwrap();
    }
}

#[test]
fn shard_stats_time_each_block_from_request_to_send_and_count_payload() {
    // Every block that carries its request instant gets one latency sample (file and memory
    // blocks alike), payload bytes exclude headers and control bytes, and a peer's close is
    // counted under its kind.
    for io in backends() {
        let server = start_server(io, 1, ShardLimits::default(), None);
        let mut client = connect(server.runtime.local_addrs()[0]);
        request_memory(&mut client, 3000, 16384);
        request(&mut client, 50, 70);
        request(&mut client, 70_000, 16384);
        client.write_all(b"E\x02hi").unwrap();
        expect_block(&mut client, 3000, 16384);
        expect_block(&mut client, 50, 70);
        expect_block(&mut client, 70_000, 16384);
        expect_echo(&mut client, b"hi");
        drop(client);
        let shard = |s: &Shared| s.stats.lock().unwrap().first().cloned().flatten();
        wait_until("the stats after the close", Duration::from_secs(10), || {
            shard(&server.shared).is_some_and(|s| s.closed >= 1)
        });
        let stats = shard(&server.shared).unwrap();
        assert_eq!(stats.block_latency.count(), 3, "{io:?}");
        assert!(stats.block_latency.sum_secs() < 5.0);
        assert_eq!(stats.payload_bytes_sent, 16384 + 70 + 16384);
        assert_eq!(stats.bytes_sent, stats.payload_bytes_sent + 3 * 13 + 4);
        let peer_closed = ringseed::runtime::CLOSE_KINDS
            .iter()
            .position(|k| *k == "peer_closed")
            .unwrap();
        assert_eq!(stats.closed_by_kind[peer_closed], 1);
        server.runtime.shutdown().unwrap();
    }
}
