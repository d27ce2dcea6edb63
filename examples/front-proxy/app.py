"""A stand-in application for the front-proxy example: says who the gateway said you are.

Run: python3 examples/front-proxy/app.py [PORT]   (default 3000, loopback only)
"""

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class App(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({
            "path": self.path,
            "user": self.headers.get("X-User"),      # set by the gateway from the verified token
            "role": self.headers.get("X-Role"),
            "generated_at": time.strftime("%H:%M:%S"),
        }).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        # Shared caches may keep this for 30 s even though requests carry a token (RFC 9111 3.5).
        self.send_header("Cache-Control", "public, max-age=30")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    ThreadingHTTPServer(("127.0.0.1", port), App).serve_forever()
