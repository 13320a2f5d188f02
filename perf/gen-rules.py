#!/usr/bin/env python3
"""Writes an iptables-restore rule set for a benchmark scenario.

Usage: gen-rules.py OUT.rules [--services N --endpoints K] [--filter] [--payload]
                    [--service-net CIDR] [--service-port P] [--endpoint-net CIDR]

  --services N   kube-proxy (iptables mode) NAT chains for N ClusterIP-like
                 services: KUBE-SERVICES matches -d VIP -p tcp --dport P and
                 jumps to KUBE-SVC-*, which splits over K KUBE-SEP-* with
                 statistic --mode random 1/K, 1/(K-1)...; each SEP DNATs to
                 an endpoint. VIPs and ports match gen-pcap.py --services.
  --filter       a stateful FORWARD filter: ESTABLISHED,RELATED accepted,
                 INVALID dropped, NEW tcp to the benchmark ports accepted
                 after 20 rules that do not match, policy DROP.
  --payload      filter FORWARD with 16 `-m string --algo bm` DROP rules whose
                 patterns gen-pcap.py's payload never contains, then ACCEPT.
Addresses default to 198.18.0.0/15 and to what perf/run.sh routes.
"""
import argparse
import hashlib
import ipaddress


def chain_id(prefix, text):
    return prefix + hashlib.sha256(text.encode()).hexdigest()[:16].upper()


def nat(a, out):
    svc_net = ipaddress.ip_network(a.service_net)
    ep_net = ipaddress.ip_network(a.endpoint_net)
    ep_hosts = ep_net.num_addresses - 2
    svcs, seps, rules = [], [], []
    for i in range(a.services):
        name = f"bench/svc{i}:tcp"
        vip = svc_net.network_address + 1 + i
        svc = chain_id("KUBE-SVC-", name)
        svcs.append(svc)
        rules.append(f'-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment "{name} cluster IP" '
                     f'-m tcp --dport {a.service_port} -j {svc}')
        for k in range(a.endpoints):
            ep = ep_net.network_address + 1 + (i * a.endpoints + k) % ep_hosts
            sep = chain_id("KUBE-SEP-", f"{name}:{ep}:{k}")
            seps.append(sep)
            left = a.endpoints - k
            stat = f" -m statistic --mode random --probability {1.0 / left:.11f}" if left > 1 else ""
            rules.append(f'-A {svc} -m comment --comment "{name} -> {ep}:8080"{stat} -j {sep}')
            rules.append(f'-A {sep} -s {ep}/32 -m comment --comment "{name}" -j KUBE-MARK-MASQ')
            rules.append(f'-A {sep} -p tcp -m comment --comment "{name}" -m tcp -j DNAT --to-destination {ep}:8080')
    out.append("*nat")
    for c in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"):
        out.append(f":{c} ACCEPT [0:0]")
    for c in ["KUBE-SERVICES", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"] + svcs + seps:
        out.append(f":{c} - [0:0]")
    out += [
        '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
        '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING',
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully',
    ]
    out += rules
    out.append("COMMIT")


def filt(a, out):
    out += ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]"]
    if a.payload:
        for k in range(16):
            out.append(f'-A FORWARD -p tcp -m string --string "dpgate-bench-{k:02d}" --algo bm -j DROP')
        out.append("-A FORWARD -j ACCEPT")
    if a.filter:
        out.append("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
        out.append("-A FORWARD -m conntrack --ctstate INVALID -j DROP")
        for k in range(20):
            out.append(f"-A FORWARD -s 198.19.{k}.0/24 -p tcp -m tcp --dport {6000 + k} -j ACCEPT")
        out.append("-A FORWARD -s 198.18.0.0/24 -p tcp -m tcp --dport 5001:5016 -m conntrack --ctstate NEW -j ACCEPT")
        if a.services:
            out.append(f"-A FORWARD -p tcp -m tcp --dport 8080 -m conntrack --ctstate NEW -j ACCEPT")
    out.append("COMMIT")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--services", type=int, default=0)
    ap.add_argument("--endpoints", type=int, default=4)
    ap.add_argument("--filter", action="store_true")
    ap.add_argument("--payload", action="store_true")
    ap.add_argument("--service-net", default="198.19.0.0/16")
    ap.add_argument("--service-port", type=int, default=80)
    ap.add_argument("--endpoint-net", default="198.18.1.0/24")
    a = ap.parse_args()
    if a.endpoints < 1:
        ap.error("--endpoints must be >= 1")
    out = []
    if a.services:
        nat(a, out)
    if a.filter or a.payload:
        filt(a, out)
    with open(a.out, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
