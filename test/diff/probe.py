#!/usr/bin/env python3
"""Sends a fixed list of probes from the client namespace and prints one
outcome per probe, so the same probes through the kernel and through dpgate
can be compared line by line.

Usage: probe.py PROBES_FILE     (lines: "tcp|udp|ping ADDRESS PORT")
Outcomes: open:<answer>, refused, unreachable:<code>, timeout.
"""
import concurrent.futures
import errno
import socket
import subprocess
import sys

TIMEOUT = 0.7


def tcp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect((addr, port))
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        chunks = []
        while True:  # HTTP/1.0: the server closes after the answer
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                break
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks).decode(errors="replace")
        body = data.split("\r\n\r\n", 1)[-1].split(" ")[0].strip()
        return "open:" + (body or "-")
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES):
            return f"unreachable:{errno.errorcode[e.errno]}"
        return f"error:{errno.errorcode.get(e.errno, e.errno)}"
    finally:
        s.close()


def udp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(TIMEOUT)
    try:
        s.connect((addr, port))
        s.send(b"probe")
        data = s.recv(4096).decode(errors="replace")
        return "open:" + data.split(" ")[0]
    except ConnectionRefusedError:
        return "refused"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return f"unreachable:{errno.errorcode.get(e.errno, e.errno)}"
    finally:
        s.close()


def ping(addr, _port):
    r = subprocess.run(["ping", "-c", "1", "-W", "1", addr], capture_output=True, text=True)
    if r.returncode == 0:
        return "open:echo"
    if "Unreachable" in r.stdout or "Prohibited" in r.stdout:
        return "unreachable:icmp"
    return "timeout"


def main():
    probes = [line.split() for line in open(sys.argv[1]) if line.strip()]
    kinds = {"tcp": tcp, "udp": udp, "ping": ping}
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda p: kinds[p[0]](p[1], int(p[2])), probes))
    for p, r in zip(probes, results):
        print(" ".join(p), r)


if __name__ == "__main__":
    main()
