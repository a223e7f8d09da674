#!/usr/bin/python3
"""BitTorrent peers for `peerwarden lab traffic` (python3-libtorrent 2.0, Debian's).

Embedded in the peerwarden binary and written to the lab's state dir at run time. Runs under
/usr/bin/python3 inside a lab namespace (`ip netns exec`), so it only ever sees lab addresses.

    bt_peer.py make  --out DIR --name NAME --size-mb N --tracker URL...   -> DIR/NAME, DIR/NAME.torrent
    bt_peer.py seed  --torrent T --dir D --bind IP --port P
    bt_peer.py leech --torrent T --dir D --bind IP --port P --transport tcp|utp ... [--block CIDR]

Every line on stdout is one JSON object (`{"event": ...}`) so the caller can follow progress.

Settings, per LAB-NOTES.md: no LSD, UPnP, NAT-PMP or DHT, trackers are IP literals, and
encryption is disabled (`pe_disabled` both ways) because the kernel only labels plaintext
BitTorrent so far (foundation issue). Everything is passed to the session constructor so
none of the discovery services starts even briefly.
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


def base_settings(bind, port, transports):
    tcp = "tcp" in transports
    utp = "utp" in transports
    return {
        "listen_interfaces": "%s:%d" % (bind, port),
        # Outgoing peer and tracker connections from the lab address only (the internet
        # namespace holds several addresses).
        "outgoing_interfaces": bind,
        "listen_system_port_fallback": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_dht": False,
        "dht_bootstrap_nodes": "",
        "enable_ip_notifier": False,
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.disabled),
        "allowed_enc_level": int(lt.enc_level.plaintext),
        "enable_outgoing_tcp": tcp,
        "enable_incoming_tcp": tcp,
        "enable_outgoing_utp": utp,
        "enable_incoming_utp": utp,
        # The seeder sees both of alice's sessions from 100.64.1.10.
        "allow_multiple_connections_per_ip": True,
        # Announce over HTTP and UDP (one tier each) so both tracker kinds carry traffic.
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        "stop_tracker_timeout": 1,
        "alert_mask": int(lt.alert.category_t.error_notification
                          | lt.alert.category_t.status_notification),
    }


def add_torrent(ses, torrent, save_dir, extra_flags=0):
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = save_dir
    atp.flags = (lt.torrent_flags.default_flags | extra_flags) & ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    return ses.add_torrent(atp)


def drain_alerts(ses, who):
    for a in ses.pop_alerts():
        if a.category() & lt.alert.category_t.error_notification:
            emit("alert", who=who, kind=type(a).__name__, message=a.message())


def cmd_make(args):
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, args.name)
    with open(path, "wb") as f:
        remaining = args.size_mb * 1024 * 1024
        while remaining > 0:
            chunk = min(remaining, 1 << 20)
            f.write(os.urandom(chunk))
            remaining -= chunk
    fs = lt.file_storage()
    lt.add_files(fs, path)
    ct = lt.create_torrent(fs, 256 * 1024)
    for tier, url in enumerate(args.tracker):
        ct.add_tracker(url, tier)
    ct.set_creator("peerwarden lab")
    lt.set_piece_hashes(ct, args.out)
    torrent = path + ".torrent"
    with open(torrent, "wb") as f:
        f.write(lt.bencode(ct.generate()))
    info = lt.torrent_info(torrent)
    emit("made", torrent=torrent, infohash=str(info.info_hash()), bytes=info.total_size())


class Stop(Exception):
    pass


def on_signal(signum, _frame):
    raise Stop()


def cmd_seed(args):
    ses = lt.session(base_settings(args.bind, args.port, ("tcp", "utp")))
    if args.upload_limit:
        ses.apply_settings({"upload_rate_limit": args.upload_limit})
    h = add_torrent(ses, args.torrent, args.dir)
    seeding_said = False
    last = 0.0
    try:
        while True:
            drain_alerts(ses, "seeder")
            st = h.status()
            if st.is_seeding and not seeding_said:
                emit("seeding", bytes=st.total_wanted)
                seeding_said = True
            now = time.monotonic()
            if now - last >= 1.0:
                last = now
                emit("status", state=str(st.state), peers=st.num_peers,
                     uploaded=st.total_payload_upload)
            time.sleep(0.1)
    except (Stop, KeyboardInterrupt):
        st = h.status()
        emit("stopped", uploaded=st.total_payload_upload)
        del ses


def cmd_leech(args):
    sessions = []
    for i, transport in enumerate(args.transport):
        ses = lt.session(base_settings(args.bind, args.port + i, (transport,)))
        if args.block:
            # Keep alice's sessions from trading with each other over loopback: the swarm
            # is meant to cross the gateway.
            f = lt.ip_filter()
            for cidr in args.block:
                lo, hi = cidr_range(cidr)
                f.add_rule(lo, hi, 1)
            ses.set_ip_filter(f)
        save = os.path.join(args.dir, transport)
        os.makedirs(save, exist_ok=True)
        h = add_torrent(ses, args.torrent, save)
        sessions.append((transport, ses, h))
    done = set()
    last = 0.0
    try:
        while len(done) < len(sessions):
            now = time.monotonic()
            for transport, ses, h in sessions:
                drain_alerts(ses, "leecher-" + transport)
                st = h.status()
                if st.is_seeding and transport not in done:
                    done.add(transport)
                    emit("finished", transport=transport, downloaded=st.total_payload_download)
            if now - last >= 1.0:
                last = now
                for transport, ses, h in sessions:
                    st = h.status()
                    emit("status", transport=transport, state=str(st.state),
                         progress=round(st.progress, 4), peers=st.num_peers,
                         downloaded=st.total_payload_download)
            time.sleep(0.05)
    except (Stop, KeyboardInterrupt):
        emit("interrupted")
        sys.exit(1)
    total = {t: h.status().total_payload_download for t, _, h in sessions}
    emit("done", downloaded=total)
    for _, ses, h in sessions:
        ses.remove_torrent(h)
    time.sleep(0.2)


def cidr_range(cidr):
    import ipaddress
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address), str(net.broadcast_address)


def main():
    signal.signal(signal.SIGTERM, on_signal)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", required=True)
    m.add_argument("--name", required=True)
    m.add_argument("--size-mb", type=int, default=8)
    m.add_argument("--tracker", action="append", required=True)
    s = sub.add_parser("seed")
    s.add_argument("--torrent", required=True)
    s.add_argument("--dir", required=True)
    s.add_argument("--bind", required=True)
    s.add_argument("--port", type=int, default=6881)
    s.add_argument("--upload-limit", type=int, default=0, help="bytes per second, 0 = none")
    l = sub.add_parser("leech")
    l.add_argument("--torrent", required=True)
    l.add_argument("--dir", required=True)
    l.add_argument("--bind", required=True)
    l.add_argument("--port", type=int, default=6881)
    l.add_argument("--transport", action="append", choices=["tcp", "utp"], required=True,
                   help="one session per transport, on consecutive ports")
    l.add_argument("--block", action="append", default=[], help="CIDR not to trade with")
    args = p.parse_args()
    {"make": cmd_make, "seed": cmd_seed, "leech": cmd_leech}[args.cmd](args)


if __name__ == "__main__":
    main()
