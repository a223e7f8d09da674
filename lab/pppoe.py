#!/usr/bin/python3
"""A user-space PPPoE access concentrator and client, for the PPPoE lab (issue 14).

The lab machine's kernel is built without PPP (CONFIG_PPP is not set: no /dev/ppp, no
pppoe module), so Debian's pppd and pppoe-server cannot run there. This script plays either
end of a PPPoE link (RFC 2516) instead: an AF_PACKET socket on an Ethernet interface for the
frames, a TUN device for the IP side.

    pppoe.py ac     --iface IF --tun NAME --local IP --peer IP [--local6 IP --peer6 IP]
    pppoe.py client --iface IF --tun NAME [--local6 IP] [--route CIDR ...] [--timeout S]

Discovery: PADI, PADO, PADR, PADS (the concentrator picks the session id), PADT when either
end stops. Then, in session frames: LCP (Configure-Request/Ack with MRU 1492 and a magic
number; Echo-Request answered; Terminate-Request honoured), IPCP (the client asks for
0.0.0.0, the concentrator naks with the address it assigns, the client asks again and is
acked; each end learns the other's address) and IPv6CP (interface identifiers) when both
ends are given IPv6 addresses (--local6; the concentrator also --peer6). Then IP: every
packet the TUN device gives is sent in a session frame (PPP protocol 0x0021 for IPv4,
0x0057 for IPv6), every IP session frame from the peer is written to the TUN device. One session per concentrator: the lab has one
subscriber line.

Every line on stdout is a JSON object (`{"event": ...}`), as bt_peer.py's. Runs inside a lab
namespace (`ip netns exec`) and touches only the interface and TUN device it is given.
"""

import argparse
import fcntl
import ipaddress
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time

ETH_P_PPP_DISC = 0x8863
ETH_P_PPP_SES = 0x8864
PADI, PADO, PADR, PADS, PADT = 0x09, 0x07, 0x19, 0x65, 0xA7
TAG_SERVICE_NAME, TAG_AC_NAME, TAG_HOST_UNIQ, TAG_AC_COOKIE = 0x0101, 0x0102, 0x0103, 0x0104
PPP_IP, PPP_IPV6, PPP_LCP, PPP_IPCP, PPP_IPV6CP = 0x0021, 0x0057, 0xC021, 0x8021, 0x8057
CONF_REQ, CONF_ACK, CONF_NAK, TERM_REQ, TERM_ACK = 1, 2, 3, 5, 6
ECHO_REQ, ECHO_REPLY = 9, 10
MRU = 1492
BROADCAST = b"\xff" * 6
PACKET_OUTGOING = 4
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def emit(event, **fields):
    fields["event"] = event
    sys.stdout.write(json.dumps(fields, sort_keys=True) + "\n")
    sys.stdout.flush()


class Stop(Exception):
    pass


def on_signal(_signum, _frame):
    raise Stop()


def packet_socket(iface, proto):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(proto))
    s.bind((iface, proto))
    return s


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def ip(*args):
    subprocess.run(["ip"] + list(args), check=True)


def tags(data):
    """The tags of a discovery packet's payload, as {type: value}."""
    out, off = {}, 0
    while off + 4 <= len(data):
        t, n = struct.unpack_from("!HH", data, off)
        out[t] = data[off + 4:off + 4 + n]
        off += 4 + n
    return out


def tag_bytes(items):
    return b"".join(struct.pack("!HH", t, len(v)) + v for t, v in items)


class Link:
    """One end of a PPPoE link on `iface`."""

    def __init__(self, iface):
        self.disc = packet_socket(iface, ETH_P_PPP_DISC)
        self.sess = packet_socket(iface, ETH_P_PPP_SES)
        self.mac = self.disc.getsockname()[4][:6]
        self.peer = None
        self.sid = 0

    def send_disc(self, dst, code, sid, payload):
        hdr = struct.pack("!6s6sHBBHH", dst, self.mac, ETH_P_PPP_DISC, 0x11, code, sid,
                          len(payload))
        self.disc.send(hdr + payload)

    def recv(self, sock):
        """A frame for us (not one we sent): (source MAC, code, session id, payload)."""
        data, addr = sock.recvfrom(65535)
        if addr[2] == PACKET_OUTGOING or len(data) < 20:
            return None
        _, src, _, _, code, sid, n = struct.unpack_from("!6s6sHBBHH", data)
        return src, code, sid, data[20:20 + n]

    def send_ppp(self, proto, payload):
        hdr = struct.pack("!6s6sHBBHHH", self.peer, self.mac, ETH_P_PPP_SES, 0x11, 0, self.sid,
                          len(payload) + 2, proto)
        self.sess.send(hdr + payload)

    def padt(self):
        if self.peer is not None and self.sid:
            self.send_disc(self.peer, PADT, self.sid, b"")


def discover_as_client(link, timeout):
    uniq = os.urandom(4)
    deadline = time.monotonic() + timeout
    state, cookie = "padi", b""
    while time.monotonic() < deadline:
        if state == "padi":
            link.send_disc(BROADCAST, PADI, 0,
                           tag_bytes([(TAG_SERVICE_NAME, b""), (TAG_HOST_UNIQ, uniq)]))
        else:
            link.send_disc(link.peer, PADR, 0, tag_bytes(
                [(TAG_SERVICE_NAME, b""), (TAG_HOST_UNIQ, uniq), (TAG_AC_COOKIE, cookie)]))
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            r, _, _ = select.select([link.disc], [], [], max(0.0, end - time.monotonic()))
            if not r:
                continue
            got = link.recv(link.disc)
            if got is None:
                continue
            src, code, sid, payload = got
            t = tags(payload)
            if t.get(TAG_HOST_UNIQ) != uniq:
                continue
            if code == PADO and state == "padi":
                link.peer, cookie, state = src, t.get(TAG_AC_COOKIE, b""), "padr"
                emit("pado", ac=t.get(TAG_AC_NAME, b"").decode(errors="replace"))
                break
            if code == PADS and state == "padr" and src == link.peer and sid:
                link.sid = sid
                emit("pads", session=sid)
                return
    raise SystemExit("no PPPoE session within %d s" % timeout)


def discover_as_ac(link):
    cookie = os.urandom(16)
    while True:
        got = link.recv(link.disc)
        if got is None:
            continue
        src, code, _, payload = got
        t = tags(payload)
        echo = [(TAG_HOST_UNIQ, t[TAG_HOST_UNIQ])] if TAG_HOST_UNIQ in t else []
        if code == PADI:
            link.send_disc(src, PADO, 0, tag_bytes(
                [(TAG_AC_NAME, b"peerwarden-lab"), (TAG_SERVICE_NAME, b"")] + echo
                + [(TAG_AC_COOKIE, cookie)]))
            emit("padi", client=src.hex(":"))
        elif code == PADR and t.get(TAG_AC_COOKIE) == cookie:
            link.peer, link.sid = src, int.from_bytes(os.urandom(2), "big") % 0xFFFE + 1
            link.send_disc(src, PADS, link.sid, tag_bytes([(TAG_SERVICE_NAME, b"")] + echo))
            emit("pads", session=link.sid, client=src.hex(":"))
            return


def options(data):
    out, off = [], 0
    while off + 2 <= len(data):
        t, n = data[off], data[off + 1]
        if n < 2:
            break
        out.append((t, data[off + 2:off + n]))
        off += n
    return out


def option_bytes(items):
    return b"".join(bytes([t, len(v) + 2]) + v for t, v in items)


class Protocol:
    """A PPP control protocol's negotiation: our Configure-Request until it is acked, and
    the peer's acked (or, for IPCP on the concentrator, naked with the address to take)."""

    def __init__(self, proto, ours):
        self.proto, self.ours, self.ident = proto, ours, 0
        self.acked = self.peer_acked = False
        self.peer_options = []

    def request(self, link):
        if not self.acked:
            self.ident = (self.ident + 1) & 0xFF
            body = option_bytes(self.ours)
            link.send_ppp(self.proto, struct.pack("!BBH", CONF_REQ, self.ident, len(body) + 4)
                          + body)

    @property
    def opened(self):
        return self.acked and self.peer_acked


def run_session(link, tun, role, args):
    magic = os.urandom(4)
    lcp = Protocol(PPP_LCP, [(1, struct.pack("!H", MRU)), (5, magic)])
    if role == "ac":
        ipcp = Protocol(PPP_IPCP, [(3, ipaddress.IPv4Address(args.local).packed)])
    else:
        ipcp = Protocol(PPP_IPCP, [(3, b"\0\0\0\0")])
    ipv6cp = Protocol(PPP_IPV6CP, [(1, os.urandom(8))])
    want_v6 = args.local6 is not None
    ncps = [ipcp, ipv6cp] if want_v6 else [ipcp]
    addresses = {}
    up = False
    last_request = 0.0
    while True:
        now = time.monotonic()
        if now - last_request >= 1.0:
            last_request = now
            lcp.request(link)
            if lcp.opened:
                for p in ncps:
                    p.request(link)
        fds = [link.sess, link.disc] + ([tun] if up else [])
        r, _, _ = select.select(fds, [], [], 0.2)
        if link.disc in r:
            got = link.recv(link.disc)
            if got and got[1] == PADT and got[2] == link.sid:
                emit("padt", session=link.sid)
                return
        if tun in r:
            pkt = os.read(tun, 65535)
            if pkt:
                link.send_ppp(PPP_IPV6 if pkt[0] >> 4 == 6 else PPP_IP, pkt)
        if link.sess not in r:
            continue
        got = link.recv(link.sess)
        if got is None or got[0] != link.peer or got[2] != link.sid or len(got[3]) < 2:
            continue
        proto = struct.unpack_from("!H", got[3])[0]
        body = got[3][2:]
        if proto in (PPP_IP, PPP_IPV6):
            if up:
                os.write(tun, body)
            continue
        p = {PPP_LCP: lcp, PPP_IPCP: ipcp, PPP_IPV6CP: ipv6cp}.get(proto)
        if p is None or len(body) < 4:
            continue
        code, ident, n = struct.unpack_from("!BBH", body)
        data = body[4:n]
        if code == CONF_REQ:
            opts = options(data)
            if p is ipcp and role == "ac" and dict(opts).get(3) != addresses.get("peer4"):
                # Nak with the address this end assigns.
                assigned = ipaddress.IPv4Address(args.peer).packed
                addresses["peer4"] = assigned
                reply = option_bytes([(3, assigned)])
                link.send_ppp(proto, struct.pack("!BBH", CONF_NAK, ident, len(reply) + 4) + reply)
                continue
            link.send_ppp(proto, struct.pack("!BBH", CONF_ACK, ident, len(data) + 4) + data)
            p.peer_acked, p.peer_options = True, opts
            if p is ipcp:
                addresses["peer4"] = dict(opts).get(3)
        elif code == CONF_ACK and ident == p.ident:
            p.acked = True
        elif code == CONF_NAK and ident == p.ident and p is ipcp:
            # The concentrator's address for us: ask for it.
            p.ours = [(3, dict(options(data)).get(3, b"\0\0\0\0"))]
            p.request(link)
        elif code == ECHO_REQ and p is lcp:
            link.send_ppp(proto, struct.pack("!BBH", ECHO_REPLY, ident, 8) + magic)
        elif code == TERM_REQ:
            link.send_ppp(proto, struct.pack("!BBH", TERM_ACK, ident, 4))
            emit("terminated", by="peer")
            return
        if not up and lcp.opened and all(x.opened for x in ncps):
            up = True
            configure(args, role, ipcp, addresses)
            emit("up", session=link.sid,
                 local=str(ipaddress.IPv4Address(dict(ipcp.ours)[3])),
                 peer=str(ipaddress.IPv4Address(addresses["peer4"])))


def configure(args, role, ipcp, addresses):
    local4 = ipaddress.IPv4Address(dict(ipcp.ours)[3])
    peer4 = ipaddress.IPv4Address(addresses["peer4"])
    ip("link", "set", args.tun, "mtu", str(MRU), "up")
    ip("addr", "add", str(local4), "peer", str(peer4), "dev", args.tun)
    if role == "ac" and args.local6:
        ip("-6", "addr", "add", args.local6, "peer", args.peer6, "dev", args.tun, "nodad")
    if role == "client" and args.local6:
        ip("-6", "addr", "add", args.local6, "dev", args.tun, "nodad")
    for cidr in args.route:
        ip("route", "add", cidr, "dev", args.tun)


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("role", choices=["ac", "client"])
    p.add_argument("--iface", required=True)
    p.add_argument("--tun", required=True)
    p.add_argument("--local", help="the concentrator's IPv4 address")
    p.add_argument("--peer", help="the IPv4 address the concentrator assigns")
    p.add_argument("--local6", help="this end's IPv6 address")
    p.add_argument("--peer6", help="the client's IPv6 address (concentrator)")
    p.add_argument("--route", action="append", default=[], help="a prefix to route here")
    p.add_argument("--timeout", type=float, default=20.0, help="discovery bound, seconds")
    args = p.parse_args()
    if args.role == "ac" and not (args.local and args.peer):
        p.error("the concentrator needs --local and --peer")
    link = Link(args.iface)
    tun = open_tun(args.tun)
    try:
        if args.role == "ac":
            discover_as_ac(link)
        else:
            discover_as_client(link, args.timeout)
        run_session(link, tun, args.role, args)
    except Stop:
        link.padt()
        emit("stopped", session=link.sid)


if __name__ == "__main__":
    main()
