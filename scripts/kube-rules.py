#!/usr/bin/env python3
"""Generates a kube-proxy-shaped iptables-restore ruleset (nat + filter).

Usage: scripts/kube-rules.py SERVICES [ENDPOINTS] [--affinity-every N] [--nodeport-every N] > FILE

Follows the structure kube-proxy's iptables proxier emits (see
../shared/fixtures/kube-proxy): KUBE-SERVICES dispatches ClusterIPs to
KUBE-SVC-*, which split with chained `statistic --probability 1/n` rules
(or `recent --rcheck` for ClientIP affinity) to KUBE-SEP-* chains that DNAT;
KUBE-MARK-MASQ / KUBE-POSTROUTING do the masquerade; NodePorts go through
KUBE-NODEPORTS and KUBE-EXT-*. Addresses are in 198.18.0.0/15 and 10.0.0.0/8.
"""
import argparse
import base64
import hashlib
import sys


def chain(prefix, name):
    digest = hashlib.sha256(name.encode()).digest()
    return prefix + base64.b32encode(digest).decode()[:16]


def ip(n, base):
    return "%d.%d.%d.%d" % (base[0], base[1] + (n >> 16 & 0xff), n >> 8 & 0xff, n & 0xff)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("services", type=int)
    ap.add_argument("endpoints", type=int, nargs="?", default=3)
    ap.add_argument("--affinity-every", type=int, default=5, help="every Nth service has ClientIP affinity (0: none)")
    ap.add_argument("--nodeport-every", type=int, default=4, help="every Nth service is a NodePort (0: none)")
    a = ap.parse_args()

    nat_chains = ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]
    nat_rules = []
    svc_rules = []
    nodeport_rules = []
    for s in range(a.services):
        name = "ns%d/svc%d:p80" % (s % 50, s)
        vip = ip(s + 1, (198, 19))
        svc = chain("KUBE-SVC-", name + "tcp")
        ext = chain("KUBE-EXT-", name + "tcp")
        affinity = a.affinity_every and s % a.affinity_every == 0
        nodeport = a.nodeport_every and s % a.nodeport_every == 0
        nat_chains.append(svc)
        svc_rules.append('-A KUBE-SERVICES -m comment --comment "%s cluster IP" -m tcp -p tcp -d %s --dport 80 -j %s' % (name, vip, svc))
        nat_rules.append('-A %s -m comment --comment "%s cluster IP" -m tcp -p tcp -d %s --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ' % (svc, name, vip))
        if nodeport:
            port = 30000 + (s // a.nodeport_every) % 2768
            nat_chains.append(ext)
            nodeport_rules.append("-A KUBE-NODEPORTS -m comment --comment %s -m tcp -p tcp --dport %d -j %s" % (name, port, ext))
            nat_rules.append('-A %s -m comment --comment "masquerade traffic for %s external destinations" -j KUBE-MARK-MASQ' % (ext, name))
            nat_rules.append("-A %s -j %s" % (ext, svc))
        seps = []
        for e in range(a.endpoints):
            ep = ip(s * a.endpoints + e + 1, (10, 0))
            sep = chain("KUBE-SEP-", name + ep)
            seps.append((ep, sep))
            nat_chains.append(sep)
            nat_rules.append("-A %s -m comment --comment %s -s %s -j KUBE-MARK-MASQ" % (sep, name, ep))
            recent = " -m recent --name %s --set" % sep if affinity else ""
            nat_rules.append("-A %s -m comment --comment %s%s -m tcp -p tcp -j DNAT --to-destination %s:8080" % (sep, name, recent, ep))
        if affinity:
            for ep, sep in seps:
                nat_rules.append('-A %s -m comment --comment "%s -> %s:8080" -m recent --name %s --rcheck --seconds 10800 --reap -j %s' % (svc, name, ep, sep, sep))
        for i, (ep, sep) in enumerate(seps):
            left = len(seps) - i
            prob = " -m statistic --mode random --probability %.10f" % (1.0 / left) if left > 1 else ""
            nat_rules.append('-A %s -m comment --comment "%s -> %s:8080"%s -j %s' % (svc, name, ep, prob, sep))

    out = sys.stdout
    out.write("*filter\n:KUBE-FORWARD - [0:0]\n:KUBE-NODEPORTS - [0:0]\n")
    out.write("-A INPUT -j KUBE-NODEPORTS\n-A FORWARD -j KUBE-FORWARD\n")
    out.write("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n")
    out.write('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT\n')
    out.write('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n')
    out.write("COMMIT\n*nat\n")
    for c in nat_chains:
        out.write(":%s - [0:0]\n" % c)
    out.write("-A PREROUTING -j KUBE-SERVICES\n-A OUTPUT -j KUBE-SERVICES\n-A POSTROUTING -j KUBE-POSTROUTING\n")
    out.write("\n".join(svc_rules + nodeport_rules) + ("\n" if svc_rules or nodeport_rules else ""))
    out.write('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n')
    out.write("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n")
    out.write("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n")
    out.write("-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n")
    out.write('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE\n')
    out.write("\n".join(nat_rules) + "\n")
    out.write("COMMIT\n")


if __name__ == "__main__":
    main()
