#!/usr/bin/env python3
"""UDP test server: answers every datagram with "NAME".

Usage: udp_echo.py NAME ADDRESS PORT
"""
import socket
import sys

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[2], int(sys.argv[3])))
while True:
    data, peer = s.recvfrom(4096)
    s.sendto(sys.argv[1].encode() + b" " + peer[0].encode(), peer)
