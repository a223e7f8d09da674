#!/usr/bin/python3
"""Makes the libtorrent fixtures of tests/fixtures.rs: two python3-libtorrent sessions on
127.0.0.1 (seeder on 16881, leecher on 26881) swap a 256 KiB random file, over TCP or uTP,
with message stream encryption forced or disabled. Loopback only; nothing leaves the host.

    tcpdump -i lo -s 256 -w OUT.pcap 'port 16881' &
    /usr/bin/python3 libtorrent_pair.py tcp|utp forced|disabled
    kill %1; tcpdump -r OUT.pcap -c 60 -w libtorrent_....pcap

The committed captures: libtorrent_mse_tcp.pcap (tcp forced), libtorrent_mse_utp.pcap
(utp forced, first 60 packets), libtorrent_plain_tcp.pcap (tcp disabled, first 60 packets).
"""

import os
import sys
import time

import libtorrent as lt

transport, enc = sys.argv[1], sys.argv[2]
policy = int(lt.enc_policy.forced if enc == "forced" else lt.enc_policy.disabled)
level = int(lt.enc_level.rc4 if enc == "forced" else lt.enc_level.plaintext)
d = "/tmp/pw-libtorrent-pair"
os.makedirs(d, exist_ok=True)
path = os.path.join(d, "blob.bin")
if not os.path.exists(path):
    with open(path, "wb") as f:
        f.write(os.urandom(256 * 1024))
fs = lt.file_storage()
lt.add_files(fs, path)
t = lt.create_torrent(fs, 16384)
lt.set_piece_hashes(t, d)


def session(port):
    return lt.session({
        "listen_interfaces": "127.0.0.1:%d" % port,
        "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "enable_dht": False, "dht_bootstrap_nodes": "",
        "out_enc_policy": policy, "in_enc_policy": policy, "allowed_enc_level": level,
        "enable_outgoing_tcp": transport == "tcp", "enable_incoming_tcp": transport == "tcp",
        "enable_outgoing_utp": transport == "utp", "enable_incoming_utp": transport == "utp",
        "allow_multiple_connections_per_ip": True,
    })


seed, leech = session(16881), session(26881)
seed.add_torrent({"ti": lt.torrent_info(t.generate()), "save_path": d})
out = os.path.join(d, "leech-%s-%s" % (transport, enc))
os.makedirs(out, exist_ok=True)
h = leech.add_torrent({"ti": lt.torrent_info(t.generate()), "save_path": out})
time.sleep(1)
h.connect_peer(("127.0.0.1", 16881))
for _ in range(100):
    if h.status().is_seeding:
        break
    time.sleep(0.1)
print(transport, enc, h.status().progress)
