#!/usr/bin/env python3
"""A static file server for tests that never resolves names (no DNS).

Usage: file_server.py ADDRESS PORT DIRECTORY
"""
import functools
import http.server
import socketserver
import sys


class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


Server((sys.argv[1], int(sys.argv[2])), functools.partial(Quiet, directory=sys.argv[3])).serve_forever()
