#!/usr/bin/env python3
"""Summarises perf/run.sh samples: JSON result, a table, gnuplot PNGs.

Usage: report.py SAMPLES.jsonl --out RESULT.json [--plots PREFIX] [--tsc-hz HZ]
                 [--repeats N] [--warmup S] [--window S] [--commit C] [--skipped FILE]
       report.py --redraw RESULT.json [--plots PREFIX]   (table and plots again)

Per scenario and peer: median, min and max over the repeats of Mpps (wall
clock), Mpps per busy core-second and cycles per packet. Ratios (dpgate /
peer) are taken repeat by repeat, from runs made back to back, then their
median and range are reported: a machine that drifts between repeats moves
both sides of a ratio alike.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

PEERS = ("testpmd", "l3fwd", "kernel", "dpgate")


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "n": len(values)}


def summarise(samples):
    scenarios = {}
    for s in samples:
        sc = scenarios.setdefault(s["scenario"], {"axis": s["axis"], "workers": s["workers"], "peers": {}, "raw": {}})
        sc["raw"].setdefault(s["peer"], {})[s["repeat"]] = s.get("sample")
    for name, sc in scenarios.items():
        for peer, reps in sc["raw"].items():
            ok = [r for r in reps.values() if r]
            sc["peers"][peer] = {
                "mpps": spread([r["mpps"] for r in ok]),
                "mpps_per_core": spread([r["mpps_per_core"] for r in ok]),
                "cycles_per_pkt": spread([r.get("cycles_per_pkt") for r in ok]),
                "preempted": spread([r["preempted"] for r in ok]),
                "failed_runs": len(reps) - len(ok),
            }
        ratios = {}
        dp = sc["raw"].get("dpgate", {})
        for peer in PEERS[:-1]:
            other = sc["raw"].get(peer, {})
            per_core = [dp[k]["mpps_per_core"] / other[k]["mpps_per_core"]
                        for k in dp if dp[k] and other.get(k) and other[k]["mpps_per_core"]]
            wall = [dp[k]["mpps"] / other[k]["mpps"] for k in dp if dp[k] and other.get(k) and other[k]["mpps"]]
            if per_core:
                ratios[peer] = {"per_core": spread(per_core), "wall": spread(wall)}
        sc["dpgate_over"] = ratios
        # Cycles dpgate spends beyond the I/O ceiling's (source copy, sink free).
        tp = sc["peers"].get("testpmd", {}).get("cycles_per_pkt")
        dc = sc["peers"].get("dpgate", {}).get("cycles_per_pkt")
        if tp and dc:
            sc["dpgate_cycles_above_io"] = round(dc["median"] - tp["median"], 1)
        sc["samples"] = sc.pop("raw")
    return scenarios


# Issue 7's targets, each a ratio taken repeat by repeat within this run:
# (label, scenario, peer compared, scenario divided by (None: same), at least).
TARGETS = (
    ("L3 forwarding vs l3fwd LPM", "l3-64", "l3fwd", None, 1.0),
    ("established DNAT, 1 M flows, vs l3fwd LPM", "dnat-1m", "l3fwd", None, 0.6),
    ("new connections, 10 000 vs 10 services", "svc-new-10000", "dpgate", "svc-new-10", 0.8),
    ("new connections, 10 000 services, vs the kernel", "svc-new-10000", "kernel", None, 20.0),
)


def targets(scenarios):
    """The targets this run measured: dpgate's per-core rate over the peer's
    (or over its own in the other scenario), repeat by repeat."""
    out = []
    for label, name, peer, other_name, least in TARGETS:
        sc = scenarios.get(name)
        other = scenarios.get(other_name or name)
        if not sc or not other:
            continue
        dp = sc["samples"].get("dpgate", {})
        ref = other["samples"].get(peer, {})
        r = spread([dp[k]["mpps_per_core"] / ref[k]["mpps_per_core"]
                    for k in dp if dp[k] and ref.get(k) and ref[k]["mpps_per_core"]])
        if r:
            out.append({"target": label, "scenario": name, "over": f"{other_name or name} {peer}",
                        "at_least": least, "ratio": r, "met": r["median"] >= least})
    return out


def fmt(x, digits=2):
    return "-" if x is None else f"{x['median']:.{digits}f} [{x['min']:.{digits}f}-{x['max']:.{digits}f}]"


def table(result):
    lines = []
    head = f"{'scenario':<14} {'peer':<8} {'Mpps (wall)':<22} {'Mpps/core':<22} {'cycles/pkt':<22} {'preempt':<7}"
    lines.append(head)
    lines.append("-" * len(head))
    for name, sc in result["scenarios"].items():
        for peer in PEERS:
            p = sc["peers"].get(peer)
            if not p:
                continue
            pre = "-" if not p["preempted"] else f"{p['preempted']['median']:.0%}"
            lines.append(f"{name:<14} {peer:<8} {fmt(p['mpps']):<22} {fmt(p['mpps_per_core']):<22} "
                         f"{fmt(p['cycles_per_pkt'], 0):<22} {pre:<7}"
                         + (f" ({p['failed_runs']} failed)" if p["failed_runs"] else ""))
        for peer, r in sc["dpgate_over"].items():
            lines.append(f"{name:<14} {'ratio':<8} dpgate/{peer} per core {fmt(r['per_core'])}, wall {fmt(r['wall'])}")
        if "dpgate_cycles_above_io" in sc:
            lines.append(f"{name:<14} {'':<8} dpgate cycles/pkt above testpmd io: {sc['dpgate_cycles_above_io']}")
    for s in result.get("not_run", []):
        lines.append(f"not run: {s}")
    for t in targets(result["scenarios"]):
        lines.append(f"target: {t['target']} >= {t['at_least']}x: {fmt(t['ratio'])} "
                     f"({'met' if t['met'] else 'NOT met'} by the median)")
    return "\n".join(lines)


def plots(result, prefix):
    if not shutil.which("gnuplot"):
        print("report: gnuplot not found (apt-get install gnuplot-nox): no plots", file=sys.stderr)
        return []
    curves = {}
    for name, sc in result["scenarios"].items():
        for axis in sc["axis"].split(";"):
            key, _, x = axis.partition("=")
            # Across worker counts the wall rate is the figure; elsewhere per core.
            metric = "mpps" if key == "workers" else "mpps_per_core"
            for peer, p in sc["peers"].items():
                if p[metric]:
                    curves.setdefault(key, {}).setdefault(peer, []).append((float(x), p[metric]))
    made = []
    with tempfile.TemporaryDirectory() as tmp:
        for key, by_peer in curves.items():
            if max(len(v) for v in by_peer.values()) < 2:
                continue
            cmds = [f"set terminal png noenhanced size 800,500", f"set output '{prefix}-{key}.png'",
                    f"set title '{'Mpps (wall)' if key == 'workers' else 'Mpps per busy core'} vs {key} (median, min-max)'",
                    f"set xlabel '{key}'", "set ylabel 'Mpps'", "set grid", "set key outside right",
                    "set yrange [0:*]"]
            if key in ("flows", "services", "dnat_flows", "services_new"):
                cmds.append("set logscale x")
            series = []
            for peer, pts in sorted(by_peer.items()):
                path = os.path.join(tmp, f"{key}-{peer}.dat")
                with open(path, "w") as f:
                    for x, s in sorted(pts):
                        f.write(f"{x} {s['median']} {s['min']} {s['max']}\n")
                series.append(f"'{path}' using 1:2:3:4 with yerrorlines title '{peer}'")
            cmds.append("plot " + ", ".join(series))
            subprocess.run(["gnuplot"], input="\n".join(cmds), text=True, check=True)
            made.append(f"{prefix}-{key}.png")
    return made


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("samples", nargs="?")
    ap.add_argument("--out")
    ap.add_argument("--redraw")
    ap.add_argument("--plots")
    ap.add_argument("--tsc-hz", type=float, default=0)
    ap.add_argument("--repeats", type=int, default=0)
    ap.add_argument("--warmup", type=float, default=0)
    ap.add_argument("--window", type=float, default=0)
    ap.add_argument("--commit", default="unknown")
    ap.add_argument("--skipped")
    a = ap.parse_args()
    if a.redraw:
        result = json.load(open(a.redraw))
    else:
        if not a.samples or not a.out:
            ap.error("SAMPLES and --out are required")
        samples = [json.loads(l) for l in open(a.samples) if l.strip()]
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
        result = {
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "commit": a.commit,
            "machine": {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(), "tsc_hz": a.tsc_hz,
                        "load_avg": os.getloadavg()},
            "method": {"source": "net_pcap infinite_rx=1", "sink": "net_null no-rx=1", "repeats": a.repeats,
                       "warmup_s": a.warmup, "window_s": a.window,
                       "mpps_per_core": "packets out / seconds the forwarding threads ran (schedstat)",
                       "cycles_per_pkt": "forwarding threads' on-CPU time x TSC Hz / packets out"},
            "scenarios": summarise(samples),
            "method_new_connections": "rows svc-new-*: dpgate fed by dpgate-gen over net_memif, unpaced, a new "
                                      "TCP tuple per packet (a pcap is new only on its first pass); the kernel "
                                      "replays the row's pcap of new tuples",
            "not_run": [l.strip() for l in open(a.skipped) if l.strip()] if a.skipped else [],
        }
        result["targets"] = targets(result["scenarios"])
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)
    print(table(result))
    if a.plots:
        for p in plots(result, a.plots):
            print(f"plot: {p}")


if __name__ == "__main__":
    main()
