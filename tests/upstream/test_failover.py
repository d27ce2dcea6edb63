"""Killing an upstream under load: through the gateway, with real processes."""

import collections
import http.client
import json
import signal
import threading
import time

from tests.support.processes import EchoBackend, free_port


def gateway_config(port, backends, fail_timeout="2s"):
    servers = "".join(f"server {b.address} max_fails=1 fail_timeout={fail_timeout}; "
                      for b in backends)
    return f"""
worker_processes 1;
error_log error.log info;
pid gateway.pid;
events {{ worker_connections 256; }}
http {{
    upstream app {{ {servers} keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 1s;
            proxy_read_timeout 5s;
        }}
    }}
}}
"""


class Load(threading.Thread):
    """Sends requests back to back on keep-alive connections and records every outcome."""

    def __init__(self, port, method="GET", prefix="g"):
        super().__init__(daemon=True)
        self.port, self.method, self.prefix = port, method, prefix
        self.outcomes = []            # (request id, status, backend or None)
        self.stopped = threading.Event()

    def run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        n = 0
        while not self.stopped.is_set():
            n += 1
            target = f"/{self.prefix}/{n}"
            body = b"payload" if self.method == "POST" else None
            try:
                conn.request(self.method, target, body=body)
                response = conn.getresponse()
                data = response.read()
                backend = json.loads(data)["backend"] if response.status == 200 else None
                self.outcomes.append((target, response.status, backend))
            except (OSError, http.client.HTTPException) as exc:
                self.outcomes.append((target, repr(exc), None))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)


def test_kill_and_restart_an_upstream_under_load(start_gateway, tmp_path):
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    a = EchoBackend("a", log=logs[0])
    b = EchoBackend("b", log=logs[1])
    restarted = None
    port = free_port()
    try:
        start_gateway(gateway_config(port, [a, b]), port)
        gets, posts = Load(port, "GET", "g"), Load(port, "POST", "p")
        gets.start()
        posts.start()
        time.sleep(1.0)
        a.stop(signal.SIGKILL)                  # dies with requests in flight
        time.sleep(1.5)
        restarted = EchoBackend("a2", port=a.port, log=logs[0])
        time.sleep(3.0)                         # > fail_timeout: "a" must be back
        gets.stopped.set()
        posts.stopped.set()
        gets.join(15)
        posts.join(15)
    finally:
        for server in (restarted, b):
            if server is not None:
                server.stop()

    # Idempotent requests never fail while a healthy peer remains.
    failed = [o for o in gets.outcomes if o[1] != 200]
    assert not failed, failed[:5]
    assert len(gets.outcomes) > 50
    # The killed peer is back in rotation after fail_timeout.
    assert any(o[2] == "a2" for o in gets.outcomes)

    # A POST is never sent twice: each one reached at most one backend, once.
    seen = collections.Counter()
    for log in logs:
        for line in log.read_text().splitlines():
            method, target = line.split(" ", 1)
            if method == "POST":
                seen[target] += 1
    assert seen and max(seen.values()) == 1
    # And every POST answered 200 was really received by a backend.
    for target, status, _ in posts.outcomes:
        if status == 200:
            assert seen[target] == 1, target
