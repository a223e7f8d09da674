#!/usr/bin/python3
"""Trims a lab capture to what classification reads, for committing it as a fixture.

    trim.py IN.pcap OUT.pcap [--payload-packets N]

Each flow keeps every packet up to and including its N-th packet with a transport payload
(default 34: the classifier inspects at most 32, like the kernel), then only its TCP
control packets (SYN, FIN, RST), cut to their headers. Frames keep their on-the-wire length
in the record header. Classic pcap in (what tcpdump -w writes), the same format out.

Nothing a label depends on is lost: inspection, the endpoint cache and the behaviour
counters read a flow's first packets and its endpoints only. A flow's packet and byte
totals shrink, which the scores ignore.
"""

import argparse
import struct
import sys

ETH_HLEN = 14


def transport(frame):
    """(flow key, payload offset, payload length, TCP flags) of an Ethernet frame carrying
    TCP or UDP over IPv4 or IPv6 (no extension headers: the lab sends none), else None."""
    if len(frame) < ETH_HLEN:
        return None
    off = ETH_HLEN
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 4:
        ethertype = struct.unpack_from("!H", frame, off + 2)[0]
        off += 4
    if ethertype == 0x0800 and len(frame) >= off + 20:
        ihl = (frame[off] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, off + 2)[0]
        proto = frame[off + 9]
        src, dst = frame[off + 12:off + 16], frame[off + 16:off + 20]
        l4, end = off + ihl, off + total
    elif ethertype == 0x86DD and len(frame) >= off + 40:
        plen = struct.unpack_from("!H", frame, off + 4)[0]
        proto = frame[off + 6]
        src, dst = frame[off + 8:off + 24], frame[off + 24:off + 40]
        l4, end = off + 40, off + 40 + plen
    else:
        return None
    if proto == 6 and len(frame) >= l4 + 20:
        hlen = (frame[l4 + 12] >> 4) * 4
        flags = frame[l4 + 13]
    elif proto == 17 and len(frame) >= l4 + 8:
        hlen, flags = 8, 0
    else:
        return None
    sport, dport = struct.unpack_from("!HH", frame, l4)
    a, b = (src, sport), (dst, dport)
    key = (proto,) + ((a, b) if a <= b else (b, a))
    return key, l4 + hlen, max(0, end - l4 - hlen), flags


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--payload-packets", type=int, default=34)
    args = p.parse_args()
    with open(args.input, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        sys.exit("trim.py: %s is not a classic pcap file" % args.input)
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    if linktype != 1:
        sys.exit("trim.py: link type %d, only Ethernet (1) is handled" % linktype)
    out = bytearray(data[:24])
    seen = {}
    kept = dropped = 0
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from(endian + "IIII", data, off)
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        t = transport(frame)
        if t is None:
            keep = frame
        else:
            key, payload_off, payload_len, flags = t
            n = seen.get(key, 0)
            if n < args.payload_packets:
                keep = frame
                if payload_len > 0:
                    seen[key] = n + 1
            elif flags & 0x07:  # FIN, SYN, RST
                keep = frame[:payload_off]
            else:
                keep = None
        if keep is None:
            dropped += 1
            continue
        kept += 1
        out += struct.pack(endian + "IIII", sec, frac, len(keep), orig)
        out += keep
    with open(args.output, "wb") as f:
        f.write(out)
    print("trim.py: %s: kept %d packets, dropped %d, %d -> %d bytes"
          % (args.output, kept, dropped, len(data), len(out)))


if __name__ == "__main__":
    main()
