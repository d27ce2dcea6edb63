"""The gateway worker's CPU for one request head written a byte at a time (issue 16 item 5).

A head of 300 header lines (about 30 KB, under `large_client_header_buffers 4 32k`) is sent one
byte per send() with a pause between them, so that nearly every byte is a read of its own. Work
linear in the head's size keeps this to the event loop's cost per read.

Run: .venv/bin/python -m bench.slow_head [--lines N] [--pause-us N]
     (GATEWAY_NO_EXTENSIONS=1 for the pure-Python twins)
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time

from bench import procs
from bench.systems import REPO


def config(port):
    return f"""worker_processes 1;
error_log error.log;
pid gateway.pid;
events {{ }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        large_client_header_buffers 4 32k;
        location / {{ return 200 ok; }}
    }}
}}
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=300)
    ap.add_argument("--pause-us", type=float, default=50)
    args = ap.parse_args(argv)
    head = (b"GET / HTTP/1.1\r\nHost: a\r\n"
            + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 90) for i in range(args.lines)) + b"\r\n")
    with tempfile.TemporaryDirectory(prefix="bench-slow-head-") as tmp:
        port = procs.free_port()
        conf = os.path.join(tmp, "gateway.conf")
        with open(conf, "w") as fh:
            fh.write(config(port))
        gateway = procs.start("gateway", [sys.executable, "-m", "gateway", "-p", tmp, "-c", conf,
                                          "-g", "daemon off;"], None, tmp, cwd=REPO)
        try:
            procs.wait_port(gateway, port)
            before = procs.cpu_seconds(gateway.pid)
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for i in range(len(head)):
                    sock.send(head[i:i + 1])
                    time.sleep(args.pause_us / 1e6)
                answer = sock.recv(100)
            used = procs.cpu_seconds(gateway.pid) - before
        finally:
            procs.stop(gateway)
    if not answer.startswith(b"HTTP/1.1 200"):
        print(f"unexpected answer: {answer!r}")
        return 1
    twins = "pure-Python twins" if os.environ.get("GATEWAY_NO_EXTENSIONS") == "1" else "compiled"
    print(f"{twins}: gateway CPU for a {len(head)}-byte head sent a byte at a time: {used * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
