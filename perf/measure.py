#!/usr/bin/env python3
"""Measures one running DPDK process from outside: port counters over a window.

Usage: measure.py --pid PID --prefix FILE_PREFIX --rx-port N --tx-port N
                  [--warmup S] [--window S] [--tsc-hz HZ] [--timeout S]

Reads ethdev stats through DPDK's telemetry socket
(/var/run/dpdk/PREFIX/dpdk_telemetry.v2), so testpmd, l3fwd and dpgate are
measured the same way, and each forwarding thread's CPU time from
/proc/PID/task/TID/schedstat (--threads: EAL names worker lcores
lcore-worker-N or rte-worker-N; 'main' is the main lcore, for l3fwd run on one lcore). Waits until
packets flow, lets --warmup seconds pass, then samples twice --window
seconds apart and prints one JSON object:
  pkts_in / pkts_out     rx ipackets of --rx-port, tx opackets of --tx-port
  mpps                   pkts_out per wall-clock second
  mpps_per_core          pkts_out per second the forwarding threads were on
                         a CPU (robust to other jobs preempting them)
  cycles_per_pkt         on-CPU time x TSC Hz / pkts_out
  preempted              share of the window the threads waited to run
"""
import argparse
import json
import os
import socket
import sys
import time


def telemetry(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(path)
    info = json.loads(s.recv(65536).decode())
    return s, int(info.get("max_output_len", 16384))


def query(s, bufsize, cmd):
    s.send(cmd.encode())
    return json.loads(s.recv(bufsize).decode())


def port_stats(s, bufsize, port):
    return query(s, bufsize, f"/ethdev/stats,{port}")["/ethdev/stats"]


def worker_threads(pid, names):
    tids = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() in names or tid == str(pid) and "main" in names:
                    tids.append(tid)
        except OSError:
            pass
    return tids


def cpu_ns(pid, tids):
    run = wait = 0
    for tid in tids:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            r, w, _ = f.read().split()
            run, wait = run + int(r), wait + int(w)
    return run, wait


def sample(s, bufsize, a, tids):
    rx = port_stats(s, bufsize, a.rx_port)
    tx = port_stats(s, bufsize, a.tx_port)
    run, wait = cpu_ns(a.pid, tids)
    return time.monotonic(), rx["ipackets"], tx["opackets"], tx.get("oerrors", 0), run, wait


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--prefix", required=True)
    ap.add_argument("--rx-port", type=int, default=0)
    ap.add_argument("--tx-port", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--window", type=float, default=2.0)
    ap.add_argument("--tsc-hz", type=float, default=0.0)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--threads", default="lcore-worker-1,rte-worker-1",
                    help="forwarding threads: comma list of thread names; 'main' is the main thread")
    a = ap.parse_args()

    path = f"/var/run/dpdk/{a.prefix}/dpdk_telemetry.v2"
    deadline = time.monotonic() + a.timeout
    s = None
    while time.monotonic() < deadline:
        if not os.path.exists(f"/proc/{a.pid}"):
            sys.exit(f"measure: process {a.pid} exited before packets flowed")
        try:
            if s is None and os.path.exists(path):
                s, bufsize = telemetry(path)
            if s is not None and port_stats(s, bufsize, a.tx_port)["opackets"] > 0:
                break
        except (OSError, KeyError, TypeError, ValueError):
            s = None
        time.sleep(0.1)
    else:
        sys.exit(f"measure: no packets out of port {a.tx_port} within {a.timeout:.0f} s")
    names = a.threads.split(",")
    tids = [t for t in worker_threads(a.pid, names)]
    if not tids:
        sys.exit(f"measure: process {a.pid} has no thread named {a.threads}")
    time.sleep(a.warmup)
    t0, in0, out0, err0, run0, wait0 = sample(s, bufsize, a, tids)
    time.sleep(a.window)
    t1, in1, out1, err1, run1, wait1 = sample(s, bufsize, a, tids)
    wall = t1 - t0
    pkts_out, run_s = out1 - out0, (run1 - run0) / 1e9
    result = {
        "window_s": round(wall, 4),
        "pkts_in": in1 - in0,
        "pkts_out": pkts_out,
        "tx_errors": err1 - err0,
        "threads": len(tids),
        "cpu_s": round(run_s, 4),
        "preempted": round((wait1 - wait0) / 1e9 / (wall * len(tids)), 4),
        "mpps": round(pkts_out / wall / 1e6, 4),
        "mpps_per_core": round(pkts_out / run_s / 1e6, 4) if run_s > 0 else None,
    }
    if a.tsc_hz and pkts_out:
        result["cycles_per_pkt"] = round(run_s * a.tsc_hz / pkts_out, 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
