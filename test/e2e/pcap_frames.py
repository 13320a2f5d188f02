#!/usr/bin/env python3
"""Frames for the deterministic pcap test, and the expected output, computed
here independently of dpgate's code (plain struct packing, full checksums).

Usage:
  pcap_frames.py gen DIR LAN_MAC WAN_MAC   writes DIR/in_{lan,wan}.pcap and DIR/expected_{lan,wan}.pcap
  pcap_frames.py compare DIR               compares DIR/out_X.pcap with DIR/expected_X.pcap
  pcap_frames.py same A.pcap B.pcap        the same frames in the same order
"""
import struct
import sys

CLIENT_MAC = bytes.fromhex("02cc00000002")
SERVER_MAC = bytes.fromhex("025500000002")
BROADCAST = b"\xff" * 6


def ip4(s):
    return bytes(int(x) for x in s.split("."))


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4(src, dst, proto, payload, ttl=64, ident=1, tos=0, flags=0, bad_csum=False):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(payload), ident, flags, ttl, proto, 0, ip4(src), ip4(dst))
    c = 0x1234 if bad_csum else csum(hdr)
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def l4(src, dst, proto, body):
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, proto, len(body))
    c = csum(pseudo + body)
    if proto == 17 and c == 0:
        c = 0xFFFF
    off = 16 if proto == 6 else 6
    return body[:off] + struct.pack("!H", c) + body[off + 2:]


def tcp(src, dst, sport, dport, flags=0x02, data=b""):
    body = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 65535, 0, 0) + data
    return ipv4(src, dst, 6, l4(src, dst, 6, body))


def udp(src, dst, sport, dport, data=b"", **kw):
    body = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    return ipv4(src, dst, 17, l4(src, dst, 17, body), **kw)


def icmp(type_, code, rest, data=b""):
    msg = struct.pack("!BBH", type_, code, 0) + rest + data
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]


def eth(dst, src, payload, ethertype=0x0800, vlan=None):
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return dst + src + tag + struct.pack("!H", ethertype) + payload


def arp(op, smac, sip, tmac, tip):
    return struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, smac, ip4(sip), tmac, ip4(tip))


def routed(datagram):
    """What a router does to an IPv4 datagram: TTL-1, header checksum redone."""
    hdr = bytearray(datagram[:20])
    hdr[8] -= 1
    hdr[10:12] = b"\0\0"
    hdr[10:12] = struct.pack("!H", csum(bytes(hdr)))
    return bytes(hdr) + datagram[20:]


def icmp_error(src, type_, code, original, mtu=0):
    quote = original[: 576 - 28]
    rest = struct.pack("!HH", 0, mtu if (type_, code) == (3, 4) else 0)
    dst = ".".join(str(b) for b in original[12:16])
    return ipv4(src, dst, 1, icmp(type_, code, rest, quote), ttl=64, ident=0, tos=0xC0)


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", 1700000000, i, len(fr), len(fr)) + fr)


def read_pcap(path):
    frames = []
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    pos = 24
    while pos + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[pos : pos + 16])
        frames.append(data[pos + 16 : pos + 16 + incl])
        pos += 16 + incl
    return frames


def gen(out, lan_mac, wan_mac):
    lan_in, wan_in, lan_out, wan_out = [], [], [], []

    def forward(dgram, in_list, out_list, out_src, out_dst, **kw):
        in_list.append(eth(kw.pop("to", lan_mac), CLIENT_MAC, dgram, vlan=kw.pop("vlan", None)))
        out_list.append(eth(out_dst, out_src, routed(dgram)))

    # Routed through the static route (via 198.18.2.2) and on-link.
    forward(tcp("198.18.1.2", "198.19.0.10", 40000, 80, data=b"GET / HTTP/1.1\r\n\r\n"), lan_in, wan_out, wan_mac, SERVER_MAC)
    forward(udp("198.18.1.2", "198.18.2.2", 5353, 53, b"query"), lan_in, wan_out, wan_mac, SERVER_MAC)
    forward(udp("198.18.1.2", "198.18.2.2", 7, 7, b"tagged"), lan_in, wan_out, wan_mac, SERVER_MAC, vlan=100)
    # Ethernet padding is not forwarded.
    small = udp("198.18.1.2", "198.18.2.2", 9, 9, b"")
    lan_in.append(eth(lan_mac, CLIENT_MAC, small) + b"\0" * 18)
    wan_out.append(eth(SERVER_MAC, wan_mac, routed(small)))
    # TTL runs out: Time Exceeded from the ingress address.
    expiring = udp("198.18.1.2", "198.19.0.10", 33434, 33435, b"trace", ttl=1)
    lan_in.append(eth(lan_mac, CLIENT_MAC, expiring))
    lan_out.append(eth(CLIENT_MAC, lan_mac, icmp_error("198.18.1.1", 11, 0, expiring)))
    # No route: Network Unreachable.
    lost = tcp("198.18.1.2", "198.20.0.1", 40001, 443)
    lan_in.append(eth(lan_mac, CLIENT_MAC, lost))
    lan_out.append(eth(CLIENT_MAC, lan_mac, icmp_error("198.18.1.1", 3, 0, lost)))
    # Too big for the WAN MTU (1400): Fragmentation Needed.
    big = udp("198.18.1.2", "198.18.2.2", 1, 2, b"x" * 1450, flags=0x4000)
    lan_in.append(eth(lan_mac, CLIENT_MAC, big))
    lan_out.append(eth(CLIENT_MAC, lan_mac, icmp_error("198.18.1.1", 3, 4, big, mtu=1400)))
    # Echo to the router.
    req = ipv4("198.18.1.2", "198.18.1.1", 1, icmp(8, 0, struct.pack("!HH", 0x42, 1), b"ping"), ident=77)
    lan_in.append(eth(lan_mac, CLIENT_MAC, req))
    lan_out.append(eth(CLIENT_MAC, lan_mac, ipv4("198.18.1.1", "198.18.1.2", 1, icmp(0, 0, struct.pack("!HH", 0x42, 1), b"ping"), ident=77)))
    # ARP for the router's address.
    lan_in.append(eth(BROADCAST, CLIENT_MAC, arp(1, CLIENT_MAC, "198.18.1.2", b"\0" * 6, "198.18.1.1"), 0x0806) + b"\0" * 18)
    lan_out.append(eth(CLIENT_MAC, lan_mac, arp(2, lan_mac, "198.18.1.1", CLIENT_MAC, "198.18.1.2"), 0x0806) + b"\0" * 18)
    # Dropped without a word: bad header checksum, another host's MAC.
    lan_in.append(eth(lan_mac, CLIENT_MAC, udp("198.18.1.2", "198.18.2.2", 1, 1, bad_csum=True)))
    lan_in.append(eth(SERVER_MAC, CLIENT_MAC, udp("198.18.1.2", "198.18.2.2", 1, 1)))
    # The other direction.
    back = tcp("198.18.2.2", "198.18.1.2", 80, 40000, flags=0x12)
    wan_in.append(eth(wan_mac, SERVER_MAC, back))
    lan_out.append(eth(CLIENT_MAC, lan_mac, routed(back)))

    write_pcap(f"{out}/in_lan.pcap", lan_in)
    write_pcap(f"{out}/in_wan.pcap", wan_in)
    write_pcap(f"{out}/expected_lan.pcap", lan_out)
    write_pcap(f"{out}/expected_wan.pcap", wan_out)


def compare(d):
    ok = True
    for port in ("lan", "wan"):
        got = read_pcap(f"{d}/out_{port}.pcap")
        want = read_pcap(f"{d}/expected_{port}.pcap")
        # Order within a port follows dpgate's stage order; compare as multisets
        # and require the forwarded packets of one flow to keep their order.
        missing = [w for w in want if w not in got]
        extra = [g for g in got if g not in want]
        if missing or extra or len(got) != len(want):
            ok = False
            print(f"{port}: got {len(got)} frames, want {len(want)}")
            for w in missing:
                print(f"  missing: {w.hex()}")
            for g in extra:
                print(f"  unexpected: {g.hex()}")
        else:
            print(f"{port}: {len(got)} frames, all as expected")
    return ok


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2], bytes.fromhex(sys.argv[3].replace(":", "")), bytes.fromhex(sys.argv[4].replace(":", "")))
    elif sys.argv[1] == "same":
        # Frames (not capture timestamps) of two pcaps are identical, in order.
        sys.exit(0 if read_pcap(sys.argv[2]) == read_pcap(sys.argv[3]) else 1)
    elif sys.argv[1] == "compare":
        sys.exit(0 if compare(sys.argv[2]) else 1)
    else:
        sys.exit(__doc__)
