#!/usr/bin/env python3
"""Random filter + nat rule sets over the addresses and ports the
differential test's servers use, and the probes that exercise them.

Usage: gen_rules.py SEED RULES_OUT PROBES_OUT
Every rule set is valid iptables-restore input for Debian's iptables 1.8.9.
"""
import random
import sys

SERVERS = ["198.18.2.2", "198.18.2.11", "198.18.2.12"]
VIPS = ["198.19.50.1", "198.19.50.2"]
TCP_PORTS = [22, 80, 443, 8080]
UDP_PORTS = [53, 123]
REJECTS = ["icmp-port-unreachable", "icmp-host-unreachable", "icmp-net-prohibited", "icmp-admin-prohibited"]


def filter_rule(rng):
    parts = ["-A FORWARD"]
    proto = rng.choice(["tcp", "udp", "icmp", None])
    if rng.random() < 0.4:
        parts.append(f"-d {rng.choice(SERVERS)}/32")
    if rng.random() < 0.2:
        parts.append("! -s 198.18.1.0/24" if rng.random() < 0.3 else "-s 198.18.1.0/24")
    if rng.random() < 0.5:
        parts.append(f"-i {rng.choice(['lan', 'wan'])}")
    if proto:
        parts.append(f"-p {proto}")
        if proto in ("tcp", "udp") and rng.random() < 0.7:
            ports = TCP_PORTS if proto == "tcp" else UDP_PORTS
            if rng.random() < 0.3:
                parts.append(f"-m multiport --dports {','.join(str(p) for p in rng.sample(ports, 2))}")
            else:
                parts.append(f"-m {proto} {'! ' if rng.random() < 0.15 else ''}--dport {rng.choice(ports)}")
    if rng.random() < 0.3:
        parts.append(f"-m conntrack --ctstate {rng.choice(['NEW', 'ESTABLISHED', 'RELATED,ESTABLISHED', 'INVALID'])}")
    target = rng.choice(["ACCEPT", "DROP", "REJECT", "RETURN_CHAIN"])
    if target == "REJECT":
        if proto == "tcp" and rng.random() < 0.5:
            parts.append("-j REJECT --reject-with tcp-reset")
        else:
            parts.append(f"-j REJECT --reject-with {rng.choice(REJECTS)}")
    elif target == "RETURN_CHAIN":
        parts.append("-j USER")
    else:
        parts.append(f"-j {target}")
    return " ".join(parts)


def main():
    seed = int(sys.argv[1])
    rng = random.Random(seed)
    policy = rng.choice(["ACCEPT", "DROP"])
    lines = ["*filter", ":INPUT ACCEPT [0:0]", f":FORWARD {policy} [0:0]", ":OUTPUT ACCEPT [0:0]", ":USER - [0:0]"]
    if policy == "DROP" or rng.random() < 0.5:
        lines.append("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")
    for _ in range(rng.randint(3, 10)):
        lines.append(filter_rule(rng))
    for _ in range(rng.randint(0, 3)):
        lines.append(filter_rule(rng).replace("-A FORWARD", "-A USER").replace("-j USER", "-j RETURN"))
    lines.append("COMMIT")
    lines += ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
              ":POSTROUTING ACCEPT [0:0]"]
    for vip in VIPS:
        backend = rng.choice(SERVERS[1:])
        lines.append(f"-A PREROUTING -d {vip}/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination {backend}:8080")
        lines.append(f"-A PREROUTING -d {vip}/32 -p udp -m udp --dport 53 -j DNAT --to-destination {backend}:53")
    if rng.random() < 0.5:
        lines.append("-A POSTROUTING -o wan -j MASQUERADE")
    lines.append("COMMIT")
    with open(sys.argv[2], "w") as f:
        f.write("\n".join(lines) + "\n")
    probes = []
    for addr in SERVERS:
        probes += [f"tcp {addr} {p}" for p in TCP_PORTS] + [f"udp {addr} {p}" for p in UDP_PORTS] + [f"ping {addr} 0"]
    for vip in VIPS:
        probes += [f"tcp {vip} 80", f"udp {vip} 53"]
    with open(sys.argv[3], "w") as f:
        f.write("\n".join(probes) + "\n")


if __name__ == "__main__":
    main()
