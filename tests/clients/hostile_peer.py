#!/usr/bin/env python3
"""A misbehaving BitTorrent peer for adversarial tests (loopback only).

It listens, answers the handshake, claims every piece with a full bitfield and unchokes.
  --mode silent : never answers a request (reads and ignores them).
  --mode liar   : really has only the even pieces of the (single-file) torrent; it serves
                  those byte-exact and passes over requests for odd pieces without a word.
It prints one line per second: `requests R served S` (flushed), so a test can check that
the peer under test really asked it for data.
"""
import argparse
import socket
import struct
import sys
import threading
import time

PSTR = b"BitTorrent protocol"


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.served = 0


def serve(conn, args, stats):
    info_hash = bytes.fromhex(args.info_hash)
    hs = recv_exact(conn, 68)
    if hs[1:20] != PSTR or hs[28:48] != info_hash:
        conn.close()
        return
    conn.sendall(bytes([19]) + PSTR + bytes(8) + info_hash + b"-XX0001-hostilepeer!")
    nbytes = (args.pieces + 7) // 8
    bits = bytearray(b"\xff" * nbytes)
    spare = nbytes * 8 - args.pieces
    if spare:
        bits[-1] = (0xFF << spare) & 0xFF
    conn.sendall(struct.pack(">IB", 1 + nbytes, 5) + bytes(bits))
    conn.sendall(struct.pack(">IB", 1, 1))  # unchoke
    data = open(args.data, "rb")
    while True:
        (length,) = struct.unpack(">I", recv_exact(conn, 4))
        if length == 0:
            continue
        if length > 1 << 20:
            return
        body = recv_exact(conn, length)
        if body[0] != 6 or length != 13:
            continue
        index, begin, size = struct.unpack(">III", body[1:13])
        with stats.lock:
            stats.requests += 1
        if args.mode == "silent" or index % 2 == 1:
            continue
        data.seek(index * args.piece_length + begin)
        block = data.read(size)
        conn.sendall(struct.pack(">IBII", 9 + len(block), 7, index, begin) + block)
        with stats.lock:
            stats.served += 1


def handle(conn, args, stats):
    try:
        serve(conn, args, stats)
    except (ConnectionError, OSError):
        pass
    finally:
        conn.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--info-hash", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--piece-length", type=int, required=True)
    p.add_argument("--pieces", type=int, required=True)
    p.add_argument("--listen", required=True, help="ip:port")
    p.add_argument("--mode", choices=["silent", "liar"], required=True)
    p.add_argument("--lifetime", type=float, default=120.0)
    args = p.parse_args()
    ip, port = args.listen.rsplit(":", 1)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((ip, int(port)))
    srv.listen(16)
    stats = Stats()

    def report():
        deadline = time.time() + args.lifetime
        while time.time() < deadline:
            time.sleep(1)
            with stats.lock:
                print(f"requests {stats.requests} served {stats.served}", flush=True)
        sys.stdout.flush()
        import os

        os._exit(0)

    threading.Thread(target=report, daemon=True).start()
    print("listening", flush=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=handle, args=(conn, args, stats), daemon=True).start()


if __name__ == "__main__":
    main()
