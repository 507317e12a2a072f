#!/usr/bin/python3
"""A libtorrent (python3-libtorrent, Debian) peer driven by ringseed's interop tests.

Downloads a torrent (a .torrent file or a magnet URI) into --save, optionally dialling
--peer HOST:PORT directly, and exits 0 once every piece is verified, or 1 on timeout.
With --seed it seeds existing data (checking it first) until killed.
Runs only under /usr/bin/python3: Debian's libtorrent binding is not importable elsewhere.
"""
import argparse
import json
import os
import sys
import time

import libtorrent as lt


def session(listen_port, high_performance, plaintext=False, dht_bootstrap=()):
    settings = lt.high_performance_seed() if high_performance else {}
    settings.update({
        "listen_interfaces": f"127.0.0.1:{listen_port}",
        "enable_dht": bool(dht_bootstrap),
        # DHT on loopback (see INTEROP.md): libtorrent otherwise refuses several nodes on
        # one IP, loopback addresses and ids not derived from the node's IP (BEP 42).
        **({"dht_bootstrap_nodes": ",".join(dht_bootstrap),
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_ignore_dark_internet": False,
            "dht_enforce_node_id": False} if dht_bootstrap else {}),
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # uTP between loopback peers crawls (~8 MB/s); the tests are about the TCP wire.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "allow_multiple_connections_per_ip": True,
        # libtorrent drops a peer that completes while it had every other piece of it
        # ("uninteresting upload-only peer": it checks redundancy before updating interest
        # on the final `have`) and waits min_reconnect_time (60 s) to dial it again.
        "min_reconnect_time": 1,
        # ringseed does not speak MSE; by default libtorrent tries it first and retries in
        # plaintext only after a delay.
        **({"out_enc_policy": lt.enc_policy.disabled} if plaintext else {}),
        "alert_mask": lt.alert.category_t.error_notification
        | lt.alert.category_t.peer_notification
        | lt.alert.category_t.status_notification
        | lt.alert.category_t.connect_notification
        | (lt.alert.category_t.dht_notification if dht_bootstrap else 0),
    })
    return lt.session(settings)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--torrent")
    ap.add_argument("--magnet")
    ap.add_argument("--save", required=True)
    ap.add_argument("--peer", action="append", default=[])
    ap.add_argument("--listen-port", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--seed", action="store_true")
    ap.add_argument("--plaintext", action="store_true",
                    help="dial without trying MSE encryption first")
    ap.add_argument("--dht-bootstrap", action="append", default=[],
                    help="enable the DHT, bootstrapping from HOST:PORT (repeatable)")
    ap.add_argument("--high-performance", action="store_true",
                    help="libtorrent's high_performance_seed settings (benchmarks)")
    args = ap.parse_args()

    ses = session(args.listen_port, args.high_performance, args.plaintext,
                  args.dht_bootstrap)
    if args.torrent:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(args.torrent)
    else:
        atp = lt.parse_magnet_uri(args.magnet)
    atp.save_path = args.save
    h = ses.add_torrent(atp)
    for p in args.peer:
        host, port = p.rsplit(":", 1)
        h.connect_peer((host.strip("[]"), int(port)))

    deadline = time.time() + args.timeout
    started = time.time()
    last = 0.0
    last_dht = started
    announced_seeding = False
    while True:
        for a in ses.pop_alerts():
            if (a.category() & lt.alert.category_t.error_notification
                    or isinstance(a, lt.peer_disconnected_alert)):
                print("alert:", a.message(), file=sys.stderr, flush=True)
        s = h.status()
        now = time.time()
        if now - last > 1.0:
            last = now
            line = {"state": str(s.state), "progress": s.progress,
                    "peers": s.num_peers, "rate": s.download_rate,
                    "has_metadata": s.has_metadata}
            if args.dht_bootstrap:
                line["dht_nodes"] = ses.status().dht_nodes
            print(json.dumps(line), flush=True)
        if args.seed and s.is_seeding and not announced_seeding:
            announced_seeding = True
            print(json.dumps({"seeding": True, "pid": os.getpid()}), flush=True)
        if not args.seed and s.has_metadata and s.is_seeding:
            print(json.dumps({"done": True, "total_download": s.total_download}), flush=True)
            return 0
        if not args.seed and now > deadline:
            print(json.dumps({"timeout": True, "progress": s.progress}), flush=True)
            return 1
        # libtorrent looks a torrent up on the DHT once at start (often before its DHT has
        # bootstrapped) and then only at its announce interval (minutes): nudge it every 5 s
        # while a leecher has no peer, and during a seeder's first 30 s.
        if args.dht_bootstrap and now - last_dht >= 5.0 and (
                (not args.seed and s.num_peers == 0)
                or (args.seed and now - started < 30)):
            last_dht = now
            h.force_dht_announce()
        for p in args.peer if s.num_peers == 0 else []:
            host, port = p.rsplit(":", 1)
            h.connect_peer((host.strip("[]"), int(port)))
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
