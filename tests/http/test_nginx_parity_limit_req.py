"""limit_req side by side with real nginx: the same requests admitted, delayed and rejected for the
same sequences (statuses and $limit_req_status compared, never timings), with burst, nodelay,
delay=, several limit_req at one level, empty keys, dry run, limit_req_status, and counted
across two worker processes."""

import collections
import hashlib
import json
import re
import signal
import socket
import time

import pytest

from tests.support.processes import EchoBackend, free_port

pytestmark = pytest.mark.nginx

# nginx's workers read the files under pytest's folder, which only root may enter.
CONFIG = """
user root;
worker_processes {workers};
error_log error.log info;
pid server.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    default_type text/plain;
    limit_req_zone $binary_remote_addr zone=nodelay:1m rate=30r/m;
    limit_req_zone $binary_remote_addr zone=delayed:1m rate=2r/s;
    limit_req_zone $binary_remote_addr zone=plain:64k rate=2r/s;
    limit_req_zone $binary_remote_addr zone=dry:1m rate=1r/m;
    limit_req_zone $binary_remote_addr zone=coded:1m rate=1r/m;
    limit_req_zone $binary_remote_addr zone=first:1m rate=1r/m;
    limit_req_zone $http_x_key zone=second:1m rate=1r/m;
    limit_req_zone $http_x_key zone=keyed:1m rate=1r/m;
    limit_req_zone $binary_remote_addr zone=workers:1m rate=1r/m;
    limit_req_zone $binary_remote_addr zone=paged:1m rate=1r/m;
    server {{
        listen 127.0.0.1:{port} reuseport;
        root {root};
        add_header X-Limit "$limit_req_status" always;
        add_header X-Pid $pid always;
        location /nodelay/ {{ limit_req zone=nodelay burst=5 nodelay; }}
        location /delayed/ {{ limit_req zone=delayed burst=5 delay=2; }}
        location /plain/ {{ limit_req zone=plain burst=2; }}
        location /dry/ {{ limit_req zone=dry burst=1 nodelay; limit_req_dry_run on; }}
        location /coded/ {{ limit_req zone=coded; limit_req_status 429; limit_req_log_level warn; }}
        location /multi/ {{
            limit_req zone=first burst=6 nodelay;
            limit_req zone=second burst=2 nodelay;
        }}
        location /keyed/ {{ limit_req zone=keyed burst=1 nodelay; }}
        location /workers/ {{ limit_req zone=workers burst=3 nodelay; }}
        location /paged/ {{ limit_req zone=paged; error_page 503 /busy.txt; }}
        location = /busy.txt {{ limit_req zone=paged; }}
        location /return/ {{ limit_req zone=coded; return 200 "rewrite phase first\\n"; }}
    }}
}}
"""


def site(tmp_path):
    root = tmp_path / "site"
    for name in ("nodelay", "delayed", "plain", "dry", "coded", "multi", "keyed", "workers", "paged"):
        (root / name).mkdir(parents=True)
        (root / name / "f.txt").write_text("file\n")
    (root / "busy.txt").write_text("busy\n")
    return root


def send(port, path, headers=(), full=False):
    """One request on its own connection: (status, $limit_req_status, pid) or with ``full``
    (status, $limit_req_status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode())
        return answer(sock, full)


def answer(sock, full=False):
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), fields.get("X-Limit", ""), body if full else fields.get("X-Pid")


def burst_at_once(port, path, count):
    """`count` requests sent together on their own connections, answers read afterwards."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        socks.append(sock)
    try:
        return collections.Counter(answer(sock)[:2] for sock in socks)
    finally:
        for sock in socks:
            sock.close()


def log_lines(text):
    """The limit_req lines of an error log: level, what, zone (excess values depend on timing)."""
    found = re.findall(r'\[(\w+)\] .*?(limiting requests|delaying request)(, dry run)?, excess: '
                       r'[\d.]+,? by zone "(\w+)", client: 127.0.0.1', text)
    return sorted(set(found))


def sequences(port):
    seen = {}
    seen["nodelay"] = [send(port, "/nodelay/f.txt")[:2] for _ in range(20)]
    seen["delayed"] = burst_at_once(port, "/delayed/f.txt", 10)
    seen["plain"] = burst_at_once(port, "/plain/f.txt", 6)
    seen["dry"] = [send(port, "/dry/f.txt")[:2] for _ in range(4)]
    seen["coded"] = [send(port, "/coded/f.txt")[:2] for _ in range(3)]
    seen["multi"] = [send(port, "/multi/f.txt", [("X-Key", "k")])[:2] for _ in range(5)] + \
        [send(port, "/multi/f.txt")[:2] for _ in range(6)]
    seen["keyed"] = [send(port, "/keyed/f.txt", [("X-Key", key)])[:2]
                     for key in ("a", "a", "a", "b", "b", "b")] + \
        [send(port, "/keyed/f.txt")[:2] for _ in range(4)]
    seen["return"] = [send(port, "/return/")[:2] for _ in range(3)]
    # The error page of a refused request is not limited again (the request counted once).
    seen["paged"] = [send(port, "/paged/f.txt", full=True) for _ in range(3)]
    return seen


def test_limit_req_admits_what_nginx_admits(start_gateway, start_nginx, tmp_path):
    root = site(tmp_path)
    seen, logged = {}, {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port = free_port()
        server = start(CONFIG.format(port=port, root=root, workers=1), port)
        seen[name] = sequences(port)
        server.stop()
        logged[name] = log_lines((server.dir / "error.log").read_text())
    assert logged["gateway"] == logged["nginx"]
    for case in seen["nginx"]:
        assert seen["gateway"][case] == seen["nginx"][case], case
    # And what the module is for: 1 + burst admitted at once, the rest refused.
    nodelay = seen["nginx"]["nodelay"]
    assert nodelay[:6] == [(200, "PASSED")] * 6 and set(nodelay[6:]) == {(503, "REJECTED")}
    assert seen["nginx"]["delayed"][(200, "DELAYED")] == 3
    assert seen["nginx"]["coded"][1] == (429, "REJECTED")
    assert seen["nginx"]["dry"][3] == (200, "REJECTED_DRY_RUN")
    assert seen["nginx"]["paged"][1] == (503, "REJECTED", b"busy\n")


def test_limit_req_counts_across_worker_processes(start_gateway, start_nginx, tmp_path):
    root = site(tmp_path)
    seen, pids = {}, {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port = free_port()
        start(CONFIG.format(port=port, root=root, workers=2), port)
        answers = [send(port, "/workers/f.txt") for _ in range(16)]
        seen[name] = [a[:2] for a in answers]
        pids[name] = {a[2] for a in answers}
    assert seen["gateway"] == seen["nginx"]
    assert seen["gateway"][:4] == [(200, "PASSED")] * 4
    assert len(pids["gateway"]) == 2      # both workers answered, from one shared count


def test_zone_state_survives_a_reload(start_gateway, start_nginx, tmp_path):
    """A reload with the same zone keeps its counts, as nginx keeps the shared memory."""
    root = site(tmp_path)
    seen = {}
    for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
        port = free_port()
        server = start(CONFIG.format(port=port, root=root, workers=1), port)
        before = [send(port, "/coded/f.txt")[:2]]
        server.proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)     # let the new workers take over (the answer does not depend on it)
        seen[name] = before + [send(port, "/coded/f.txt")[:2] for _ in range(2)]
    assert seen["gateway"] == seen["nginx"] == [(200, "PASSED"), (429, "REJECTED"), (429, "REJECTED")]


DELAY_CONFIG = """
user root;
worker_processes 1;
error_log error.log info;
pid server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    limit_req_zone $binary_remote_addr zone=wait:1m rate=5r/s;
    upstream echo {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port};
        add_header X-Limit "$limit_req_status" always;
        location / {{ limit_req zone=wait burst=3; proxy_pass http://echo; }}
    }}
}}
"""


def post(body, chunked):
    if chunked:
        framing = b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        framing = b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    return b"POST /up HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + framing


def read_all(sock):
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    limit = [line for line in head.split(b"\r\n") if line.lower().startswith(b"x-limit:")]
    digest = json.loads(body)["body_sha256"] if head.startswith(b"HTTP/1.1 200") else None
    return head.split(b" ")[1], limit[0].split(b": ")[1] if limit else b"", digest


def test_bodies_of_delayed_requests_reach_the_upstream_whole(start_gateway, start_nginx):
    """Requests waiting out a limit_req delay keep their bodies (sent with the head, or after)."""
    backend = EchoBackend()
    bodies = [bytes([65 + i]) * (200_000 * (i % 2) + 10) for i in range(4)]
    try:
        seen = {}
        for name, start in (("nginx", start_nginx), ("gateway", start_gateway)):
            port = free_port()
            start(DELAY_CONFIG.format(port=port, backend=backend.address), port)
            socks = []
            for i, body in enumerate(bodies):
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                data = post(body, chunked=i >= 2)
                sock.sendall(data[:len(data) // 2])    # the rest once the request waits
                socks.append(sock)
            for sock, body, i in zip(socks, bodies, range(4)):
                data = post(body, chunked=i >= 2)
                sock.sendall(data[len(data) // 2:])
            seen[name] = [read_all(sock) for sock in socks]
            for sock in socks:
                sock.close()
    finally:
        backend.stop()
    # Which request came first is the kernel's choice: compare the verdicts as a multiset.
    verdicts = {name: sorted(limit for _, limit, _ in answers) for name, answers in seen.items()}
    assert verdicts["gateway"] == verdicts["nginx"] == [b"DELAYED"] * 3 + [b"PASSED"]
    assert [status for status, _, _ in seen["gateway"]] == [b"200"] * 4
    assert [digest for _, _, digest in seen["gateway"]] == [hashlib.sha256(b).hexdigest() for b in bodies]
    assert [digest for _, _, digest in seen["nginx"]] == [hashlib.sha256(b).hexdigest() for b in bodies]
