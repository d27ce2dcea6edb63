"""gzip on streamed proxied responses: 200 MB with bounded memory, a close-delimited body, a reset."""

import http.client
import zlib

import pytest

from tests.http.test_nginx_parity_gzip import fetch, summary
from tests.support.processes import FaultUpstream, free_port

GZIP = {"Accept-Encoding": "gzip"}

CONFIG = """
master_process off;
error_log error.log warn;
events {{ worker_connections 64; }}
http {{
    server {{
        listen 127.0.0.1:{port};
        location / {{
            gzip on;
            gzip_types *;
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

SIZE = 200 * 1000 * 1000


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_200_mb_upstream_body_is_gzipped_as_it_streams(start_gateway, backend):
    port = free_port()
    gateway = start_gateway(CONFIG.format(port=port, backend=backend.port), port)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    # A first compressed answer: the code paths and zlib are loaded before the baseline.
    conn.request("GET", "/chunked?n=100000&parts=10", headers={"Accept-Encoding": "gzip"})
    warm = conn.getresponse()
    assert zlib.decompress(warm.read(), 31) == b"y" * 100000
    before = rss_kib(gateway.proc.pid)

    conn.request("GET", f"/chunked?n={SIZE}&parts=4000", headers={"Accept-Encoding": "gzip"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Encoding") == "gzip"
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Length") is None
    inflate = zlib.decompressobj(31)
    received = compressed = 0
    peak = before
    while piece := response.read(256 * 1024):
        compressed += len(piece)
        out = inflate.decompress(piece)
        assert out.count(b"y") == len(out)
        received += len(out)
        peak = max(peak, rss_kib(gateway.proc.pid))
    received += len(inflate.flush())
    assert inflate.eof and received == SIZE
    assert compressed < SIZE // 100            # it was compressed, not passed through
    # The body went through, never all of it at once: a few MiB at most beyond the baseline.
    print(f"gateway RSS {before} KiB before, {peak} KiB at most while streaming")
    assert peak - before < 32 * 1024, (before, peak)
    # And the connection is still good for the next request.
    conn.request("GET", "/chunked?n=1000&parts=2", headers={"Accept-Encoding": "gzip"})
    assert zlib.decompress(conn.getresponse().read(), 31) == b"y" * 1000
    conn.close()


FAULT_CONFIG = """
user root;
worker_processes 1;
error_log error.log info;
pid server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    gzip on;
    gzip_types *;
    gzip_comp_level 6;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


@pytest.mark.nginx
def test_close_delimited_upstream_and_a_reset_mid_body_as_nginx(start_gateway, start_nginx, tmp_path):
    upstream = FaultUpstream(tmp_path / "upstream.log")
    try:
        seen = {}
        for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
            port = free_port()
            start(FAULT_CONFIG.format(port=port, upstream=upstream.port), port)
            seen[name] = [summary(fetch(port, "GET", "/close-delimited", GZIP, version))
                          for version in (11, 10)]
            # The upstream resets 10 KB into a 100 KB body: the client must not get a complete
            # answer (no last chunk), whatever was compressed so far.
            status, fields, raw = fetch(port, "GET", "/reset-mid-body", GZIP, 11, raw=True)
            seen[name].append((status, fields.get("content-encoding"), raw.endswith(b"0\r\n\r\n")))
    finally:
        upstream.stop()
    assert seen["gateway"] == seen["nginx"]
    chunked, closed, reset = seen["gateway"]
    assert chunked[1] == ["gzip"] and chunked[4] == ["chunked"] and len(chunked[8]) == 2000 * 44
    assert closed[1] is None        # gzip_http_version 1.1 (the default) leaves HTTP/1.0 out
    assert reset == (200, ["gzip"], False)

