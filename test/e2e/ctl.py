#!/usr/bin/env python3
"""A minimal control-socket client for tests, independent of dpgatectl.

Usage: ctl.py SOCKET COMMAND [ARG...]   prints the reply text; exit 1 on an error reply
"""
import socket
import sys


def call(path, line):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(line.encode() + b"\n")
        data = b""
        while b"\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\n")
        status, length = head.decode().split(" ")
        while len(rest) < int(length):
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, rest.decode()


if __name__ == "__main__":
    status, text = call(sys.argv[1], " ".join(sys.argv[2:]))
    sys.stdout.write(text)
    sys.exit(0 if status == "ok" else 1)
