#!/usr/bin/python3
"""BitTorrent peers for the capture scenarios (python3-libtorrent 2.0, Debian's).

Runs under /usr/bin/python3 inside one lab namespace (`ip netns exec`); several libtorrent
sessions per process, one per `--peer ADDR:PORT`, each listening on and connecting from its
own lab address, so the ground truth of a capture is "every flow to or from these
endpoints is BitTorrent".

    swarm.py make --out DIR --name NAME --size-kb N [--tracker URL]...
    swarm.py run  --torrent T --dir D --mode MODE --peer ADDR:PORT... [--seed]
                  [--connect ADDR:PORT]... [--dht-node ADDR:PORT]...
                  [--upload-limit BYTES/S] [--duration S]

MODE sets what the sessions speak (LAB-NOTES.md, "Clients that must not reach outside"):

- `encrypted`: message stream encryption forced both ways (`out_enc_policy` and
  `in_enc_policy` forced, `allowed_enc_level` rc4), TCP only, so every peer connection is
  MSE over TCP; trackers are plain HTTP and UDP.
- `utp`: uTP only (`enable_outgoing_tcp`/`enable_incoming_tcp` off), encryption as the
  client's default (enabled: tried first, plaintext accepted).
- `dht`: no tracker, peers found through the Mainline DHT, bootstrapped only from the lab
  nodes given with `--dht-node` (and `add_dht_node`); peer wire over TCP only, so the DHT's
  UDP flows and the peer connections are separate flows (libtorrent runs uTP on the DHT's
  socket, which would make each pair of peers one UDP flow carrying both); default
  encryption.

LSD, UPnP, NAT-PMP and the IP notifier are always off; the DHT is off unless the mode is
`dht`. Every line on stdout is one JSON object (`{"event": ...}`). The process ends when
`--duration` is over, when every leeching session has the whole file and `--seed` is not
given, or on SIGTERM.
"""

import argparse
import json
import os
import signal
import sys
import time

import libtorrent as lt


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
    sys.stdout.flush()


def endpoint(s):
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def settings(addr, port, mode, dht_nodes):
    s = {
        "listen_interfaces": "%s:%d" % (addr if ":" not in addr else "[%s]" % addr, port),
        "outgoing_interfaces": addr,
        "listen_system_port_fallback": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        "enable_dht": False,
        "dht_bootstrap_nodes": "",
        # Several sessions share the namespace's addresses; the lab's prefixes are not
        # "local" to libtorrent, so its local-network exemptions must not apply either.
        "allow_multiple_connections_per_ip": True,
        "ignore_limits_on_local_network": False,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "stop_tracker_timeout": 1,
        "alert_mask": int(lt.alert.category_t.error_notification
                          | lt.alert.category_t.status_notification),
    }
    if mode == "encrypted":
        s.update({
            "out_enc_policy": int(lt.enc_policy.forced),
            "in_enc_policy": int(lt.enc_policy.forced),
            "allowed_enc_level": int(lt.enc_level.rc4),
            "prefer_rc4": True,
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
        })
    elif mode == "utp":
        s.update({"enable_outgoing_tcp": False, "enable_incoming_tcp": False})
    elif mode == "dht":
        s.update({
            "enable_outgoing_utp": False,
            "enable_incoming_utp": False,
            "enable_dht": True,
            "dht_bootstrap_nodes": ",".join("%s:%d" % n for n in dht_nodes),
            # Lab and documentation prefixes, several nodes per /24, node ids not derived
            # from the (lab) address: all refused by default as a defence on the internet.
            "dht_ignore_dark_internet": False,
            "dht_restrict_routing_ips": False,
            "dht_restrict_search_ips": False,
            "dht_prefer_verified_node_ids": False,
            "dht_enforce_node_id": False,
        })
    return s


def cmd_make(args):
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, args.name)
    with open(path, "wb") as f:
        f.write(os.urandom(args.size_kb * 1024))
    fs = lt.file_storage()
    lt.add_files(fs, path)
    ct = lt.create_torrent(fs, 32 * 1024)
    for tier, url in enumerate(args.tracker):
        ct.add_tracker(url, tier)
    ct.set_creator("peerwarden lab capture")
    lt.set_piece_hashes(ct, args.out)
    torrent = path + ".torrent"
    with open(torrent, "wb") as f:
        f.write(lt.bencode(ct.generate()))
    info = lt.torrent_info(torrent)
    emit("made", torrent=torrent, infohash=str(info.info_hash()), bytes=info.total_size())


class Stop(Exception):
    pass


def on_signal(_signum, _frame):
    raise Stop()


def cmd_run(args):
    dht_nodes = [endpoint(n) for n in args.dht_node]
    peers = []
    for i, spec in enumerate(args.peer):
        addr, port = endpoint(spec)
        ses = lt.session(settings(addr, port, args.mode, dht_nodes))
        if args.upload_limit:
            ses.apply_settings({"upload_rate_limit": args.upload_limit})
        for n in dht_nodes:
            if n != (addr, port):
                ses.add_dht_node(n)
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(args.torrent)
        # Seeders share the made file; each leecher downloads into a directory of its own.
        atp.save_path = args.dir if args.seed else os.path.join(args.dir, "peer%d" % i)
        os.makedirs(atp.save_path, exist_ok=True)
        atp.flags = lt.torrent_flags.default_flags & ~lt.torrent_flags.auto_managed
        atp.flags &= ~lt.torrent_flags.paused
        h = ses.add_torrent(atp)
        peers.append({"who": spec, "ses": ses, "h": h, "done": False, "dht": False, "nodes": 0})
    for p in peers:
        for c in args.connect:
            if c != p["who"]:
                p["h"].connect_peer(endpoint(c))
    emit("started", peers=[p["who"] for p in peers], mode=args.mode, seed=args.seed)
    deadline = time.monotonic() + args.duration
    last = 0.0
    try:
        while time.monotonic() < deadline:
            for p in peers:
                for a in p["ses"].pop_alerts():
                    if isinstance(a, lt.session_stats_alert):
                        # The DHT routing table's size (`post_session_stats` asks for it).
                        p["nodes"] = a.values.get("dht.dht_nodes", 0)
                    elif a.category() & lt.alert.category_t.error_notification:
                        emit("alert", who=p["who"], kind=type(a).__name__, message=a.message())
                st = p["h"].status()
                if st.is_seeding and not p["done"]:
                    p["done"] = True
                    emit("finished", who=p["who"], seed=args.seed)
                # Announce to the DHT as soon as the node knows some others, rather than
                # at the client's own pace.
                if args.mode == "dht" and not p["dht"]:
                    if p["nodes"] > 0:
                        p["h"].force_dht_announce()
                        p["dht"] = True
                        emit("dht_announce", who=p["who"], nodes=p["nodes"])
                    else:
                        p["ses"].post_session_stats()
            now = time.monotonic()
            if now - last >= 1.0:
                last = now
                emit("status", peers={p["who"]: p["h"].status().num_peers for p in peers},
                     done=sum(p["done"] for p in peers))
            if not args.seed and all(p["done"] for p in peers):
                break
            time.sleep(0.05)
    except (Stop, KeyboardInterrupt):
        pass
    emit("stopped", done=sum(p["done"] for p in peers), total=len(peers))
    for p in peers:
        p["ses"].pause()
    time.sleep(0.3)


def main():
    signal.signal(signal.SIGTERM, on_signal)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    m.add_argument("--name", required=True)
    m.add_argument("--size-kb", type=int, default=2048)
    m.add_argument("--tracker", action="append", default=[])
    r = sub.add_parser("run")
    r.add_argument("--torrent", required=True)
    r.add_argument("--dir", required=True)
    r.add_argument("--mode", choices=["encrypted", "utp", "dht"], required=True)
    r.add_argument("--peer", action="append", required=True, help="ADDR:PORT of one session")
    r.add_argument("--seed", action="store_true", help="the sessions have the file")
    r.add_argument("--connect", action="append", default=[], help="ADDR:PORT to dial at start")
    r.add_argument("--dht-node", action="append", default=[], help="ADDR:PORT of a lab node")
    r.add_argument("--upload-limit", type=int, default=0, help="bytes per second per session")
    r.add_argument("--duration", type=float, default=20.0)
    args = p.parse_args()
    {"make": cmd_make, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    main()
