#!/usr/bin/env python3
"""Random -m string rules and UDP datagrams for string_test.sh (fixed seed).

Usage: string_corpus.py gen SEED RULES PACKETS OUTDIR   writes OUTDIR/diff.rules, OUTDIR/corpus.txt
       string_corpus.py send CORPUS SRC DST             sends every datagram (raw socket, fixed bytes)
       string_corpus.py recv PORT OUT IDLE_S            records the source ports that arrive
Datagram k goes from SRC:20000+k to DST:9999 with IP id k+1 and DF, so the
kernel and dpgate see the same bytes; payloads and patterns share a small
alphabet (ASCII and Latin-1 case pairs, NUL) so that many of them match.
"""
import random
import socket
import struct
import sys
import time

ALPHABET = b"aAbB\xe0\xc0\xdf\xbf\xff\x00"
PORT = 9999


def rand_bytes(rng, n):
    return bytes(rng.choice(ALPHABET) for _ in range(n))


def match_text(rng):
    pat = rand_bytes(rng, rng.randint(1, 5))
    opts = ["-m string"]
    if rng.random() < 0.5:
        opts.append("--string " + pat.decode("latin-1") if all(0x61 <= c <= 0x7a or 0x41 <= c <= 0x5a for c in pat)
                    else "--hex-string |" + pat.hex() + "|")
    else:
        opts.append("--hex-string |" + pat.hex() + "|")
    algo = rng.choice(["bm", "kmp"])
    icase = rng.random() < 0.5
    # The kernel's ts_bm misses --icase matches of Latin-1 bytes (its bad-shift
    # table is filled with tolower(toupper(c)), which is not c for 0xff or
    # 0xdf, so it skips over them): dpgate answers as ts_kmp does.
    if icase and any(c >= 0x80 for c in pat):
        algo = "kmp"
    opts.append("--algo " + algo)
    if rng.random() < 0.6:
        lo = rng.randint(0, 60)
        opts.append("--from %d" % lo)
        if rng.random() < 0.8:
            opts.append("--to %d" % (lo + rng.randint(0, 90)))
    if icase:
        opts.append("--icase")
    if rng.random() < 0.1:
        opts[1] = "! " + opts[1]
    return pat, " ".join(opts)


def gen(seed, n_rules, n_packets, outdir):
    rng = random.Random(seed)
    lines = ["*raw", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    pats = []
    only = "-A PREROUTING -s 198.18.1.2/32 -d 198.18.2.2/32 -p udp -m udp --dport %d " % PORT
    for _ in range(n_rules):
        pat, text = match_text(rng)
        pats.append(pat)
        lines.append(only + text)  # counts only: every datagram meets every rule
    for _ in range(8):
        _, text = match_text(rng)
        lines.append(only + text + " -j " + rng.choice(["DROP", "DROP", "ACCEPT"]))
    lines.append("COMMIT")
    with open(outdir + "/diff.rules", "w", encoding="latin-1") as f:
        f.write("\n".join(lines) + "\n")
    with open(outdir + "/corpus.txt", "w") as f:
        for k in range(n_packets):
            n = rng.choice([0, 1, 3, 8, 20, 40, 80, 150]) if k % 10 else rng.randint(900, 1400)
            data = bytearray(rand_bytes(rng, n))
            if n and rng.random() < 0.5:  # plant a rule's pattern somewhere
                p = rng.choice(pats)
                at = rng.randint(0, max(0, n - 1))
                data[at:at + len(p)] = p
            f.write(bytes(data).hex() + "\n")


def send(corpus, src, dst):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    for k, line in enumerate(open(corpus)):
        payload = bytes.fromhex(line.strip())
        udp = struct.pack("!HHHH", 20000 + k, PORT, 8 + len(payload), 0) + payload
        # Version/IHL, TOS, total length, id, DF, TTL 64, UDP; the kernel fills the checksum.
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), k + 1, 0x4000, 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
        s.sendto(ip + udp, (dst, 0))
        time.sleep(0.002)


def recv(port, out, idle):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(float(idle))
    got = []
    deadline = time.time() + 300
    while time.time() < deadline:
        try:
            _, addr = s.recvfrom(65535)
        except socket.timeout:
            break
        got.append(addr[1] - 20000)
    with open(out, "w") as f:
        f.write("".join("%d\n" % k for k in sorted(got)))


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("gen", "send", "recv"):
        sys.exit(__doc__)
    if sys.argv[1] == "gen":
        gen(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif sys.argv[1] == "send":
        send(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        recv(int(sys.argv[2]), sys.argv[3], sys.argv[4])
