"""`metrics;`: Prometheus text counted over every worker process, equal to the requests sent,
kept across a reload; nothing of it where it is not configured."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time

from prometheus_client.parser import text_string_to_metric_families

from gateway.config import load_config
from gateway.observe import statedir
from tests.observe.client import get
from tests.support.processes import free_port

CONFIG = """
worker_processes 2;
error_log error.log info;
pid server.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    upstream app {{ server {backend}; server 127.0.0.1:9 down; }}
    server {{
        listen 127.0.0.1:{port};
        server_name example;
        location = /metrics {{ metrics; }}
        location /api/ {{ proxy_pass http://app; }}
        location /missing {{ return 404; }}
        location / {{ return 200 "hello"; }}
    }}
}}
"""


def scrape(port) -> dict:
    """{(sample name, sorted labels): value}, parsed by prometheus_client's own parser."""
    status, ctype, body = get(port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def requests_by_location(samples) -> dict:
    return {(dict(labels)["location"], dict(labels)["status"]): value
            for (name, labels), value in samples.items()
            if name == "gateway_http_requests_total" and dict(labels)["location"] != "= /metrics"}


def wait_for_counts(port, expected, timeout=15.0) -> dict:
    """Scrape until the request counters reach `expected` and both workers have published
    (workers publish once a second; the second one may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        workers = sum(v for (name, labels), v in samples.items()
                      if name == "gateway_upstream_peer_state" and ("state", "down") in labels)
        if (requests_by_location(samples) == expected and workers == 2) \
                or time.monotonic() > deadline:
            return samples
        time.sleep(0.2)


def send_mix(port, rounds):
    for _ in range(rounds):
        assert get(port, "/")[0] == 200
        assert get(port, "/api/x")[0] == 200
        assert get(port, "/missing")[0] == 404


def test_counters_equal_requests_sent_over_workers_and_a_reload(start_gateway, backend):
    port = free_port()
    gateway = start_gateway(CONFIG.format(port=port, backend=backend.address), port)
    send_mix(port, 15)
    expected = {("/", "2xx"): 15, ("/api/", "2xx"): 15, ("/missing", "4xx"): 15}
    samples = wait_for_counts(port, expected)
    assert requests_by_location(samples) == expected
    for location in ("/", "/api/", "/missing"):
        labels = (("location", location), ("server", "example"))
        assert samples[("gateway_http_request_duration_seconds_count", labels)] == 15
        assert samples[("gateway_http_request_duration_seconds_bucket",
                        tuple(sorted(labels + (("le", "+Inf"),))))] == 15
    peer = (("peer", "127.0.0.1:9"), ("upstream", "app"))
    up = ((("peer", backend.address), ("upstream", "app")))
    # Each of the two workers sees the backend up and the "down" server down.
    assert samples[("gateway_upstream_peer_state", tuple(sorted(peer + (("state", "down"),))))] == 2
    assert samples[("gateway_upstream_peer_state", tuple(sorted(up + (("state", "up"),))))] == 2
    assert samples[("gateway_connections", (("state", "active"),))] >= 1
    assert samples[("gateway_connections_accepted_total", ())] >= 46

    # A reload replaces both workers: what the old ones counted stays, the new ones add.
    gateway.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while gateway.errors().count("exited with code 0") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    send_mix(port, 5)
    expected = {("/", "2xx"): 20, ("/api/", "2xx"): 20, ("/missing", "4xx"): 20}
    assert requests_by_location(wait_for_counts(port, expected)) == expected
    # The master made the shared directory, and removes it when it exits.
    shared = re.search(r'publish into "([^"]+)"', gateway.errors()).group(1)
    assert any(name.startswith("counter_") for name in os.listdir(shared))
    gateway.stop(signal.SIGQUIT)
    assert not os.path.exists(shared)


def test_metrics_rejects_other_methods(start_gateway, backend):
    port = free_port()
    start_gateway(CONFIG.format(port=port, backend=backend.address), port)
    assert get(port, "/metrics", method="POST")[0] == 405


def test_nothing_is_counted_where_metrics_is_not_configured(tmp_path):
    """Without metrics or status_json no location carries a meter: the request path is unchanged."""
    from gateway.http.server import WorkerApp
    conf = tmp_path / "g.conf"
    conf.write_text(CONFIG.format(port=free_port(), backend="127.0.0.1:9")
                    .replace("location = /metrics {{ metrics; }}".format(), ""))
    loop = asyncio.new_event_loop()
    try:
        app = WorkerApp(load_config(str(conf), str(tmp_path)), loop)
        plans = [loc.plan for server in app.config.http.servers for loc in server.locations]
        assert app.meter is None and all(plan.meter is None for plan in plans)
        conf.write_text(CONFIG.format(port=free_port(), backend="127.0.0.1:9"))
        app = WorkerApp(load_config(str(conf), str(tmp_path)), loop)
        plans = [loc.plan for server in app.config.http.servers for loc in server.locations]
        assert app.meter is not None and all(plan.meter is not None for plan in plans)
    finally:
        loop.close()
        statedir.remove()       # the app made one, as a gateway without a master does


WRAPPED_CONFIG = """
worker_processes 1;
error_log error.log info;
pid server.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    limit_conn_zone $binary_remote_addr zone=one:1m;
    limit_req_zone $binary_remote_addr zone=rate:1m rate=1000r/s;
    upstream app {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port};
        server_name example;
        location = /metrics {{ metrics; }}
        location /conn/ {{ limit_conn one 5; proxy_pass http://app; }}
        location /rate/ {{ limit_req zone=rate burst=100 nodelay; proxy_pass http://app; }}
        location /allowed/ {{ allow 127.0.0.1; deny all; proxy_pass http://app; }}
        location /rewritten/ {{ set $word "rewritten"; return 200 $word; }}
        location /pages/ {{ error_page 404 =200 /inner; return 404; }}
        location = /inner {{ internal; return 200 "inner"; }}
    }}
}}
"""


def test_locations_with_checks_scripts_and_error_pages_are_counted(start_gateway, backend):
    """Plans wrapped by preaccess/access checks, a rewrite script or `internal` still count."""
    port = free_port()
    start_gateway(WRAPPED_CONFIG.format(port=port, backend=backend.address), port)
    paths = ("/conn/", "/rate/", "/allowed/", "/rewritten/", "/pages/")
    for _ in range(3):
        for path in paths:
            assert get(port, path)[0] == 200, path
    expected = {(path, "2xx"): 3 for path in paths[:4]}
    expected[("= /inner", "2xx")] = 3      # counted where the error page was answered, as logged
    deadline = time.monotonic() + 15
    while (seen := requests_by_location(scrape(port))) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert seen == expected
