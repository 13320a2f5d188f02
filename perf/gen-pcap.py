#!/usr/bin/env python3
"""Writes a pcap of benchmark traffic: N flows, one frame size, TCP or UDP.

Usage: gen-pcap.py OUT.pcap [--flows N] [--size BYTES] [--proto tcp|udp]
                   [--dst-mac MAC] [--src-mac MAC] [--dst-net CIDR]
                   [--services N --service-net CIDR --service-port P]
                   [--new-ratio F] [--packets N] [--orders N]

Frames replay in a loop (net_pcap's infinite_rx=1), so the file holds each
flow once, in an order that spreads consecutive frames over flows.
  --size       Ethernet frame size with its 4-byte FCS, as RFC 2544 counts it
               (64, 512, 1518); the pcap frame is size - 4 bytes.
  --flows      distinct 5-tuples; sources 198.18.0.2-251, ports from 1024.
  --dst-net    destinations cycle through this prefix (plain routing).
  --services   kube-proxy style: destination is one of N ClusterIP-like
               VIPs from --service-net, port --service-port (overrides --dst-net).
  --new-ratio  TCP only: this fraction of frames are SYNs of tuples that
               appear once in the file; the rest are ACKs of established
               flows. A replayed file repeats those tuples on its next loop.
  --packets    frames in the file (default: --flows); must be >= --flows.
  --orders     the file holds the flows N times: first in the order above,
               then each time in another (seeded) random order. A stateful
               peer creates its flows on the first pass; replayed in that
               order only, a table that allocates entries in creation order
               reads them one after the other, which real traffic never
               does. With N >= 2 most passes read them at random.
Only 198.18.0.0/15 addresses are produced by the defaults.
"""
import argparse
import functools
import array
import ipaddress
import random
import struct
import sys

PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
ETH_IPV4 = 0x0800
FCS = 4
MIN_FRAME = 64


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(array.array("H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def mac_bytes(text):
    parts = text.split(":")
    if len(parts) != 6:
        raise argparse.ArgumentTypeError(f"bad MAC '{text}'")
    return bytes(int(p, 16) for p in parts)


@functools.lru_cache(maxsize=4)
def payload_bytes(n):
    return bytes((i * 7) & 0xFF for i in range(n))


def frame(src_mac, dst_mac, src, dst, proto, sport, dport, flags, frame_len):
    l4_len = 20 if proto == 6 else 8
    payload_len = frame_len - 14 - 20 - l4_len
    if payload_len < 0:
        raise SystemExit(f"gen-pcap: frame of {frame_len + FCS} bytes is too small for {l4_len}-byte L4 headers")
    payload = payload_bytes(payload_len)
    total = 20 + l4_len + payload_len
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, proto, 0, src, dst))
    struct.pack_into("!H", ip, 10, 0)
    c = csum(bytes(ip))
    struct.pack_into("H", ip, 10, c)  # csum() works in host order over host-order words
    pseudo = struct.pack("!4s4sBBH", src, dst, 0, proto, l4_len + payload_len)
    if proto == 6:
        l4 = bytearray(struct.pack("!HHIIBBHHH", sport, dport, 1000, 1 if flags & 0x10 else 0, 5 << 4, flags, 65535, 0, 0))
        off = 16
    else:
        l4 = bytearray(struct.pack("!HHHH", sport, dport, l4_len + payload_len, 0))
        off = 6
    c = csum(pseudo + bytes(l4) + payload)
    if proto == 17 and c == 0:
        c = 0xFFFF
    struct.pack_into("H", l4, off, c)
    return dst_mac + src_mac + struct.pack("!H", ETH_IPV4) + bytes(ip) + bytes(l4) + payload


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--flows", type=int, default=1024)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--proto", choices=("tcp", "udp"), default="udp")
    ap.add_argument("--dst-mac", type=mac_bytes, default=mac_bytes("02:00:00:00:00:01"))
    ap.add_argument("--src-mac", type=mac_bytes, default=mac_bytes("02:00:00:00:00:02"))
    ap.add_argument("--dst-net", default="198.18.1.0/24")
    ap.add_argument("--services", type=int, default=0)
    ap.add_argument("--service-net", default="198.19.0.0/16")
    ap.add_argument("--service-port", type=int, default=80)
    ap.add_argument("--new-ratio", type=float, default=0.0)
    ap.add_argument("--packets", type=int, default=0)
    ap.add_argument("--orders", type=int, default=1)
    a = ap.parse_args()

    if a.size < MIN_FRAME or a.size > 9018:
        ap.error("--size must be 64..9018")
    if a.flows < 1 or a.flows > 250 * 64000:
        ap.error("--flows must be 1..16000000")
    if a.orders < 1 or (a.orders > 1 and (a.packets or a.new_ratio)):
        ap.error("--orders is >= 1, and above 1 goes with neither --packets nor --new-ratio")
    packets = a.packets or a.flows * a.orders
    if packets < a.flows:
        ap.error("--packets must be >= --flows")
    if not 0.0 <= a.new_ratio <= 1.0 or (a.new_ratio and a.proto != "tcp"):
        ap.error("--new-ratio is 0..1 and needs --proto tcp")
    proto = 6 if a.proto == "tcp" else 17
    dst_net = ipaddress.ip_network(a.dst_net)
    hosts = max(dst_net.num_addresses - 2, 1)
    svc_net = ipaddress.ip_network(a.service_net)
    if a.services > svc_net.num_addresses - 2:
        ap.error("--service-net is too small for --services")

    def tuple_of(i):
        src = bytes([198, 18, 0, 2 + i % 250])
        sport = 1024 + (i // 250) % 64000
        if a.services:
            dst = (svc_net.network_address + 1 + i % a.services).packed
            dport = a.service_port
        else:
            dst = (dst_net.network_address + 1 + (i * 7) % hosts).packed
            dport = 5001 + i % 16
        return src, dst, sport, dport

    # Pass 0 keeps index order; pass j > 0 a shuffle seeded by j.
    orders = [None]
    for j in range(1, a.orders):
        perm = list(range(a.flows))
        random.Random(j).shuffle(perm)
        orders.append(perm)

    n_new = round(packets * a.new_ratio)
    with open(a.out, "wb") as f:
        f.write(PCAP_HEADER)
        frame_len = a.size - FCS
        for k in range(packets):
            # New connections take tuples past the established ones, each once.
            if n_new and k % max(1, round(packets / n_new)) == 0 and n_new > 0:
                idx, flags = a.flows + k, 0x02
            else:
                order = orders[k // a.flows % a.orders]
                idx, flags = (k % a.flows if order is None else order[k % a.flows]), 0x10
            src, dst, sport, dport = tuple_of(idx)
            fr = frame(a.src_mac, a.dst_mac, src, dst, proto, sport, dport, flags, frame_len)
            f.write(struct.pack("<IIII", k // 1000000, k % 1000000, len(fr), len(fr)))
            f.write(fr)
    print(f"gen-pcap: {a.out}: {packets} frames of {a.size} B, {a.flows} flows, {a.proto}"
          + (f", {a.services} services" if a.services else "")
          + (f", {a.new_ratio:.0%} SYNs of new tuples" if n_new else "")
          + (f", {a.orders} orders" if a.orders > 1 else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
