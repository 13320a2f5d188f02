#!/usr/bin/env python3
"""Malformed-input corpus for dpgate on net_pcap ports, and its oracle.

Every malformed frame is followed by a good one, so the run shows both that
each bad frame is dropped under its named reason and that forwarding goes on
around it. Expected output and counters are computed here from the RFCs
(RFC 1812 for the router's duties), independently of dpgate's code.

Usage:
  malformed_frames.py gen PHASE DIR LAN_MAC WAN_MAC
      writes DIR/in_{lan,wan}.pcap, DIR/expected_{lan,wan}.pcap, DIR/expected_drops.json
  malformed_frames.py frames DIR
      compares DIR/out_*.pcap with the expected frames; prints every difference
  malformed_frames.py drops DIR LOG
      compares dpgate's final drop counters in LOG with the expected ones
PHASE is "corpus" (the malformed corpus) or "rfc1812" (destinations and
sources a router must never forward or answer).
"""
import json
import os
import re
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pcap_frames import (BROADCAST, CLIENT_MAC, SERVER_MAC, arp, csum, eth, icmp, ip4,  # noqa: E402
                         read_pcap, write_pcap)

LAN_MTU, WAN_MTU = 1500, 1400
ROUTER_LAN, ROUTER_WAN = "198.18.1.1", "198.18.2.1"
CLIENT, SERVER, REMOTE = "198.18.1.2", "198.18.2.2", "198.19.0.10"


def ipv4_raw(src, dst, proto, payload, ttl=64, ident=1, tos=0, frag=0, options=b"", ihl=None,
             total=None, version=4, checksum=None):
    """An IPv4 datagram with every header field under the caller's control."""
    hl = 20 + len(options)
    ihl = hl // 4 if ihl is None else ihl
    total = hl + len(payload) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, tos, total, ident, frag, ttl, proto, 0,
                      ip4(src), ip4(dst)) + options
    c = csum(hdr) if checksum is None else checksum
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + payload


def l4_sum(src, dst, proto, body, off):
    pseudo = ip4(src) + ip4(dst) + struct.pack("!BBH", 0, proto, len(body))
    c = csum(pseudo + body)
    return body[:off] + struct.pack("!H", c) + body[off + 2:]


def udp_body(src, dst, sport, dport, data=b""):
    return l4_sum(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data, 6)


def tcp_body(src, dst, sport, dport, flags=0x02, offset_words=5, data=b""):
    body = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, offset_words << 4, flags, 65535, 0, 0) + data
    return l4_sum(src, dst, 6, body, 16)


def routed(dgram):
    """RFC 1812 5.3.1: TTL-1, header checksum recomputed over the whole header (options too)."""
    hl = (dgram[0] & 0x0F) * 4
    hdr = bytearray(dgram[:hl])
    hdr[8] -= 1
    hdr[10:12] = b"\0\0"
    hdr[10:12] = struct.pack("!H", csum(bytes(hdr)))
    return bytes(hdr) + dgram[hl:]


def icmp_error(src, type_, code, original, mtu=0):
    """RFC 1812 4.3.2.3: as much of the original as fits in 576 bytes; TOS 0xc0 as Linux."""
    quote = original[: 576 - 28]
    rest = struct.pack("!HH", 0, mtu if (type_, code) == (3, 4) else 0)
    dst = ".".join(str(b) for b in original[12:16])
    return ipv4_raw(src, dst, 1, icmp(type_, code, rest, quote), ttl=64, ident=0, tos=0xC0)


class Run:
    """The frames of one run and what must come out of it."""

    def __init__(self, lan_mac, wan_mac):
        self.lan_mac, self.wan_mac = lan_mac, wan_mac
        self.lan_in, self.wan_in, self.lan_out, self.wan_out = [], [], [], []
        self.drops = {}
        self.good = 0
        self.names = []

    def count(self, reason):
        self.drops[reason] = self.drops.get(reason, 0) + 1

    def good_pair(self):
        """One good packet each way, numbered, so interleaved forwarding is checked exactly."""
        self.good += 1
        out = udp_body(CLIENT, REMOTE, 20000 + self.good, 9, b"good %d" % self.good)
        dgram = ipv4_raw(CLIENT, REMOTE, 17, out, ident=self.good)
        self.lan_in.append(eth(self.lan_mac, CLIENT_MAC, dgram))
        self.wan_out.append(eth(SERVER_MAC, self.wan_mac, routed(dgram)))
        back = udp_body(REMOTE, CLIENT, 9, 20000 + self.good, b"back %d" % self.good)
        dgram = ipv4_raw(REMOTE, CLIENT, 17, back, ident=self.good)
        self.wan_in.append(eth(self.wan_mac, SERVER_MAC, dgram))
        self.lan_out.append(eth(CLIENT_MAC, self.lan_mac, routed(dgram)))

    def lan(self, name, frame, reason=None, out=None, icmp_back=None):
        """A frame received on lan: dropped as `reason`, and/or forwarded to wan as `out`,
        and/or answered on lan with the ICMP error `icmp_back` (type, code, mtu)."""
        self.names.append(name)
        self.lan_in.append(frame)
        if reason:
            self.count(reason)
        if out is not None:
            self.wan_out.append(out)
        if icmp_back is not None:
            type_, code, mtu = icmp_back
            original = frame[14:]
            self.lan_out.append(eth(CLIENT_MAC, self.lan_mac, icmp_error(ROUTER_LAN, type_, code, original, mtu)))
        self.good_pair()

    def to_router(self, dgram):
        return eth(self.lan_mac, CLIENT_MAC, dgram)

    def write(self, d):
        write_pcap(f"{d}/in_lan.pcap", self.lan_in)
        write_pcap(f"{d}/in_wan.pcap", self.wan_in)
        write_pcap(f"{d}/expected_lan.pcap", self.lan_out)
        write_pcap(f"{d}/expected_wan.pcap", self.wan_out)
        with open(f"{d}/expected_drops.json", "w") as f:
            json.dump({"drops": self.drops, "cases": self.names}, f, indent=1)


def corpus(r):
    """The malformed corpus: every frame is dropped under its named reason, or
    handled as RFC 1812 says (forwarded, or dropped with an ICMP error)."""
    m = r.to_router

    def udp_to(dst, src=CLIENT, **kw):
        return ipv4_raw(src, dst, 17, udp_body(src, dst, 1000, 2000, b"payload"), **kw)

    good = udp_to(REMOTE)
    # Ethernet
    r.lan("runt frame (10 bytes)", m(b"")[:10], "truncated_ethernet")
    r.lan("VLAN tag cut short", (r.lan_mac + CLIENT_MAC + b"\x81\x00\x00"), "truncated_ethernet")
    r.lan("LLDP ethertype", eth(r.lan_mac, CLIENT_MAC, b"\0" * 46, ethertype=0x88CC), "unsupported_ethertype")
    r.lan("another host's MAC", eth(SERVER_MAC, CLIENT_MAC, good), "not_for_us")
    r.lan("IPv6", eth(r.lan_mac, CLIENT_MAC, b"\x60" + b"\0" * 39, ethertype=0x86DD), "ipv6_not_forwarded")
    # IPv4 header
    r.lan("IPv4 header cut at 12 bytes", m(good[:12]), "truncated_ip_header")
    r.lan("version 6 in an IPv4 ethertype", m(udp_to(REMOTE, version=6)), "bad_ip_version")
    r.lan("IHL 0", m(udp_to(REMOTE, ihl=0)), "bad_ip_header_length")
    r.lan("IHL 3", m(udp_to(REMOTE, ihl=3)), "bad_ip_header_length")
    r.lan("IHL 4", m(udp_to(REMOTE, ihl=4)), "bad_ip_header_length")
    r.lan("IHL 15 beyond the frame", m(udp_to(REMOTE, ihl=15)[:40]), "bad_ip_header_length")
    r.lan("total length beyond the frame", m(udp_to(REMOTE, total=200)), "bad_ip_total_length")
    r.lan("total length below the header", m(udp_to(REMOTE, total=12)), "bad_ip_total_length")
    r.lan("total length 0", m(udp_to(REMOTE, total=0)), "bad_ip_total_length")
    r.lan("header checksum wrong", m(udp_to(REMOTE, checksum=0x1234)), "bad_ip_checksum")
    r.lan("header checksum zero", m(udp_to(REMOTE, checksum=0)), "bad_ip_checksum")
    # L4 headers
    r.lan("TCP header cut at 10 bytes", m(ipv4_raw(CLIENT, REMOTE, 6, tcp_body(CLIENT, REMOTE, 1, 2)[:10])),
          "truncated_l4_header")
    r.lan("UDP header cut at 4 bytes", m(ipv4_raw(CLIENT, REMOTE, 17, b"\x03\xe8\x07\xd0")), "truncated_l4_header")
    r.lan("ICMP header cut at 4 bytes", m(ipv4_raw(CLIENT, REMOTE, 1, b"\x08\x00\x00\x00")), "truncated_l4_header")
    r.lan("TCP data offset 4", m(ipv4_raw(CLIENT, REMOTE, 6, tcp_body(CLIENT, REMOTE, 1, 2, offset_words=4))),
          "bad_tcp_header_length")
    r.lan("TCP data offset beyond the datagram",
          m(ipv4_raw(CLIENT, REMOTE, 6, tcp_body(CLIENT, REMOTE, 1, 2, offset_words=15))), "bad_tcp_header_length")
    # Sources and destinations (RFC 1812 5.3.7, 4.2.2.11)
    r.lan("source 127.0.0.1", m(udp_to(REMOTE, src="127.0.0.1")), "martian_source")
    r.lan("source 0.0.0.7", m(udp_to(REMOTE, src="0.0.0.7")), "martian_source")
    r.lan("source 0.0.0.0", m(udp_to(REMOTE, src="0.0.0.0")), "martian_source")
    r.lan("multicast source 224.0.0.9", m(udp_to(REMOTE, src="224.0.0.9")), "martian_source")
    r.lan("broadcast source 255.255.255.255", m(udp_to(REMOTE, src="255.255.255.255")), "martian_source")
    r.lan("class E source 240.0.0.1", m(udp_to(REMOTE, src="240.0.0.1")), "martian_source")
    r.lan("destination 127.0.0.1", m(udp_to("127.0.0.1")), "martian_destination")
    r.lan("destination 0.1.2.3", m(udp_to("0.1.2.3")), "martian_destination")
    r.lan("directed broadcast of wan", m(udp_to("198.18.2.255")), "martian_destination")
    # TTL (RFC 1812 5.3.1): Time Exceeded from the ingress address
    for ttl in (0, 1):
        d = udp_to(REMOTE, ttl=ttl)
        r.lan(f"TTL {ttl}", m(d), "ttl_exceeded", icmp_back=(11, 0, 0))
    # Fragments are forwarded as they are (dpgate is a router, it does not reassemble)
    first = ipv4_raw(CLIENT, REMOTE, 17, udp_body(CLIENT, REMOTE, 5, 6, b"x" * 24)[:16], frag=0x2000, ident=77)
    r.lan("first fragment", m(first), out=eth(SERVER_MAC, r.wan_mac, routed(first)))
    later = ipv4_raw(CLIENT, REMOTE, 17, b"y" * 16, frag=2, ident=77)
    r.lan("later fragment", m(later), out=eth(SERVER_MAC, r.wan_mac, routed(later)))
    later_no_l4 = ipv4_raw(CLIENT, REMOTE, 6, b"z" * 3, frag=0x2000 | 100, ident=78)
    r.lan("later fragment too short for any L4 header", m(later_no_l4), out=eth(SERVER_MAC, r.wan_mac, routed(later_no_l4)))
    r.lan("later fragment with TTL 1: no ICMP error (RFC 1812 4.3.2.7)",
          m(ipv4_raw(CLIENT, REMOTE, 17, b"w" * 8, frag=5, ttl=1)), "ttl_exceeded")
    r.lan("first fragment with TTL 1", m(ipv4_raw(CLIENT, REMOTE, 17, udp_body(CLIENT, REMOTE, 5, 6), frag=0x2000, ttl=1)),
          "ttl_exceeded", icmp_back=(11, 0, 0))
    # IP options are forwarded untouched (RFC 1812 5.3.1: checksum over the whole header)
    for name, opts in (("record route", b"\x07\x07\x04" + b"\0" * 4 + b"\x00"), ("NOPs", b"\x01" * 4),
                       ("router alert", b"\x94\x04\x00\x00")):
        d = ipv4_raw(CLIENT, REMOTE, 17, udp_body(CLIENT, REMOTE, 7, 7, b"opt"), options=opts)
        r.lan(f"IP option {name}", m(d), out=eth(SERVER_MAC, r.wan_mac, routed(d)))
    # Zero ports are just ports to a router
    for proto, body in ((6, tcp_body(CLIENT, REMOTE, 0, 0)), (17, udp_body(CLIENT, REMOTE, 0, 0))):
        d = ipv4_raw(CLIENT, REMOTE, proto, body)
        r.lan(f"proto {proto} with ports 0", m(d), out=eth(SERVER_MAC, r.wan_mac, routed(d)))
    # Oversize
    big = ipv4_raw(CLIENT, SERVER, 17, udp_body(CLIENT, SERVER, 1, 2, b"b" * 1450), frag=0x4000)
    r.lan("1478-byte datagram to a 1400-byte MTU, DF", m(big), "fragmentation_needed", icmp_back=(3, 4, WAN_MTU))
    big_nodf = ipv4_raw(CLIENT, SERVER, 17, udp_body(CLIENT, SERVER, 1, 2, b"c" * 1450))
    r.lan("1478-byte datagram to a 1400-byte MTU, no DF (dpgate does not fragment)", m(big_nodf),
          "fragmentation_needed", icmp_back=(3, 4, WAN_MTU))
    jumbo = ipv4_raw(CLIENT, SERVER, 17, udp_body(CLIENT, SERVER, 1, 2, b"j" * 2972))
    r.lan("3000-byte frame, over the mbuf: the first segment is short of the total length", m(jumbo),
          "bad_ip_total_length")
    # Routing
    r.lan("no route", m(udp_to("198.21.0.1")), "no_route", icmp_back=(3, 0, 0))
    # ARP garbage
    good_arp = arp(1, CLIENT_MAC, CLIENT, b"\0" * 6, ROUTER_LAN)
    for name, body in (("ARP cut at 20 bytes", good_arp[:20]),):
        r.lan(name, eth(BROADCAST, CLIENT_MAC, body, ethertype=0x0806), "malformed_arp")
    for name, body in (
            ("ARP hardware type 6", b"\x00\x06" + good_arp[2:]),
            ("ARP protocol IPv6", good_arp[:2] + b"\x86\xdd" + good_arp[4:]),
            ("ARP hardware length 8", good_arp[:4] + b"\x08" + good_arp[5:]),
            ("ARP protocol length 16", good_arp[:5] + b"\x10" + good_arp[6:]),
            ("ARP opcode 3 (RARP)", good_arp[:6] + b"\x00\x03" + good_arp[8:]),
            ("ARP opcode 0", good_arp[:6] + b"\x00\x00" + good_arp[8:])):
        r.lan(name, eth(BROADCAST, CLIENT_MAC, body + b"\0" * 18, ethertype=0x0806), "malformed_arp")
    r.lan("ARP request for another host", eth(BROADCAST, CLIENT_MAC, arp(1, CLIENT_MAC, CLIENT, b"\0" * 6,
                                                                         "198.18.1.77") + b"\0" * 18, ethertype=0x0806),
          "not_for_us")


def rfc1812(r):
    """Frames a router must neither forward nor answer with an ICMP error, sent
    to the router's MAC (a host's misconfiguration or an attack)."""
    m = r.to_router

    def udp_to(dst, src=CLIENT):
        return ipv4_raw(src, dst, 17, udp_body(src, dst, 1000, 2000, b"payload"))

    # RFC 1812 5.3.5.1 / 4.3.2.7: limited broadcast is never forwarded and
    # never draws an ICMP error; Linux delivers it locally (RTN_BROADCAST).
    r.lan("destination 255.255.255.255", m(udp_to("255.255.255.255")), "martian_destination")
    # RFC 1812 4.3.2.7 and 5.3.7: no ICMP error about a multicast destination;
    # Linux does not forward multicast without a multicast router.
    r.lan("destination 224.0.0.251", m(udp_to("224.0.0.251")), "martian_destination")
    r.lan("destination 239.1.2.3", m(udp_to("239.1.2.3")), "martian_destination")
    # RFC 1812 5.3.7: a directed broadcast of a connected network is not a
    # valid source; Linux drops it as a martian source.
    r.lan("source is lan's directed broadcast", m(udp_to(REMOTE, src="198.18.1.255")), "martian_source")


def parse_drops(log):
    """Sums every worker's final 'drops: name=N ...' line."""
    text = open(log).read()
    final = text.split("final counters:")[-1]
    drops = {}
    for line in final.splitlines():
        line = line.strip()
        if line.startswith("drops:"):
            for name, n in re.findall(r"(\w+)=(\d+)", line):
                drops[name] = drops.get(name, 0) + int(n)
    return drops


def check_frames(d):
    ok = True
    for port in ("lan", "wan"):
        got = read_pcap(f"{d}/out_{port}.pcap")
        want = read_pcap(f"{d}/expected_{port}.pcap")
        missing = [w for w in want if w not in got]
        extra = [g for g in got if g not in want]
        if missing or extra or len(got) != len(want):
            ok = False
            print(f"{port}: got {len(got)} frames, want {len(want)}")
            for w in missing:
                print(f"  missing:    {w[:64].hex()}{'...' if len(w) > 64 else ''}")
            for g in extra:
                print(f"  unexpected: {g[:64].hex()}{'...' if len(g) > 64 else ''}")
        else:
            print(f"{port}: {len(got)} frames, all as expected")
        # The numbered good packets keep their order.
        good = [g for g in got if b"good " in g or b"back " in g]
        if good != [w for w in want if b"good " in w or b"back " in w]:
            ok = False
            print(f"{port}: the good packets are not all there in order")
    return ok


def check_drops(d, log):
    ok = True
    expected = json.load(open(f"{d}/expected_drops.json"))["drops"]
    got = parse_drops(log)
    for reason in sorted(set(expected) | set(got)):
        if expected.get(reason, 0) != got.get(reason, 0):
            ok = False
            print(f"drops {reason}: got {got.get(reason, 0)}, want {expected.get(reason, 0)}")
    if ok:
        print("drops: " + " ".join(f"{k}={v}" for k, v in sorted(got.items())) + " (all as expected)")
    return ok


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "gen":
        _, _, phase, d, lan_mac, wan_mac = sys.argv
        r = Run(bytes.fromhex(lan_mac.replace(":", "")), bytes.fromhex(wan_mac.replace(":", "")))
        {"corpus": corpus, "rfc1812": rfc1812}[phase](r)
        r.write(d)
        print(f"{phase}: {len(r.names)} frames under test, {r.good * 2} good packets around them")
    elif len(sys.argv) == 3 and sys.argv[1] == "frames":
        sys.exit(0 if check_frames(sys.argv[2]) else 1)
    elif len(sys.argv) == 4 and sys.argv[1] == "drops":
        sys.exit(0 if check_drops(sys.argv[2], sys.argv[3]) else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
