#!/usr/bin/env python3
"""A test backend: answers every HTTP GET with "NAME CLIENT_ADDRESS\n".

Usage: echo_server.py NAME ADDRESS PORT
"""
import http.server
import socketserver
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{sys.argv[1]} {self.client_address[0]}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        # HTTPServer.server_bind resolves its own name (DNS); a test host must not.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


Server((sys.argv[2], int(sys.argv[3])), Handler).serve_forever()
