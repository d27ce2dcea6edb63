"""underscores_in_headers and ignore_invalid_headers side by side with real nginx.

The same request fields (`X_Y`, `X.W`: names nginx calls invalid; `X-Z`: a valid one) go to a
proxied location and to a `return` of `$http_x_y`, over HTTP/1.1 and HTTP/2 (prior knowledge),
to three virtual servers: nginx's defaults (such fields dropped and logged at `info`),
`underscores_in_headers on` and `ignore_invalid_headers off`. Compared: the fields the echo
backend saw, the answers, and the error log's words for each dropped field.
"""

from __future__ import annotations

import json
import re
import socket
import time

import h2.config
import h2.connection
import h2.events
import pytest

from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

SITE = r"""
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    access_log off;
    default_type text/plain;
    upstream app {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        listen 127.0.0.1:{h2port} http2 default_server;
        server_name plain.test;
        location /p/ {{ proxy_pass http://app; }}
        location /len {{ return 200 "$request_length"; }}
        location /v {{ return 200 "[$http_x_y|$http_x_z]"; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{h2port} http2;
        server_name under.test;
        underscores_in_headers on;
        location /p/ {{ proxy_pass http://app; }}
        location /v {{ return 200 "[$http_x_y|$http_x_z]"; }}
    }}
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{h2port} http2;
        server_name lax.test;
        ignore_invalid_headers off;
        location /p/ {{ proxy_pass http://app; }}
        location /v {{ return 200 "[$http_x_y|$http_x_z]"; }}
    }}
}}
"""

HOSTS = ["plain.test", "under.test", "lax.test"]
FIELDS = [("X_Y", "v1"), ("X-Z", "v2"), ("X.W", "v3")]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """nginx and the gateway, each with an HTTP/1.1 port and an HTTP/2 one (``h2port``): nginx
    1.22 speaks only HTTP/2 on a plain ``listen ... http2``."""
    from tests.support.processes import EchoBackend, Gateway, Nginx
    backend = EchoBackend("underscores")
    started = []
    try:
        for kind in (Nginx, Gateway):
            folder = tmp_path_factory.mktemp(kind.__name__.lower())
            port, h2port = free_port(), free_port()
            server = kind(folder, SITE.format(dir=folder, backend=backend.address, port=port,
                                              h2port=h2port), port)
            server.h2port = h2port
            started.append(server)
        yield started
    finally:
        for server in reversed(started):
            server.stop()
        backend.stop()


def http1(port, target, lines) -> tuple[int, bytes]:
    """One HTTP/1.1 request whose field lines are ``lines`` as they are; (status, body)."""
    data = (f"GET {target} HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in lines)
            + "Connection: close\r\n\r\n").encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def http2(port, target, authority, fields) -> tuple[int, bytes]:
    """One HTTP/2 request (prior knowledge) with these regular fields; (status, body)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding="latin-1", validate_outbound_headers=False,
        normalize_outbound_headers=False))
    conn.initiate_connection()
    pseudo = [(":method", "GET"), (":path", target), (":scheme", "http")]
    if authority:
        pseudo.append((":authority", authority))
    status, body = 0, b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        conn.send_headers(1, pseudo + list(fields), end_stream=True)
        sock.sendall(conn.data_to_send())
        done = False
        while not done:
            data = sock.recv(65536)
            if not data:
                raise AssertionError("connection closed before the stream ended")
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                    done = True
            sock.sendall(conn.data_to_send())
    return status, body


def seen(body: bytes) -> list:
    """The fields the echo backend received, but the proxy's own."""
    return [(k, v) for k, v in json.loads(body)["headers"] if k not in ("host", "connection")]


def invalid_lines(server, since: int) -> list[str]:
    """The "client sent invalid header" lines logged after byte ``since``, without time and pid."""
    log = server.dir / "error.log"
    deadline = time.monotonic() + 2
    found: list[str] = []
    while time.monotonic() < deadline:
        text = log.read_bytes()[since:].decode("latin-1")
        found = [re.sub(r"^.*?\[info\] \d+#\d+: \*\d+ ", "", line)
                 for line in text.splitlines() if "client sent invalid header" in line]
        if found:
            break
        time.sleep(0.05)
    return found


def words(lines: list[str]) -> list[str]:
    """Logged lines up to their ", client: ..." tail."""
    return [line.split(", client:")[0] for line in lines]


def log_size(server) -> int:
    log = server.dir / "error.log"
    return log.stat().st_size if log.exists() else 0


@pytest.mark.parametrize("host", HOSTS)
def test_http1_fields_as_nginx(pair, host):
    """Host first: the virtual server's settings apply to every field after it."""
    lines = [f"Host: {host}", *(f"{k}: {v}" for k, v in FIELDS)]
    answers = []
    for server in pair:
        since = log_size(server)
        status, body = http1(server.port, "/p/echo", lines)
        _vstatus, text = http1(server.port, "/v", lines)
        answers.append((status, seen(body), text, invalid_lines(server, since)))
    nginx, gateway = answers
    assert gateway == nginx
    status, fields, text, logged = nginx
    expected = {"plain.test": ([("x-z", "v2")], b"[|v2]"),
                "under.test": ([("x_y", "v1"), ("x-z", "v2")], b"[v1|v2]"),
                "lax.test": ([("x_y", "v1"), ("x-z", "v2"), ("x.w", "v3")], b"[v1|v2]")}[host]
    assert (status, fields, text) == (200, *expected)
    if host == "plain.test":
        assert words(logged) == ['client sent invalid header line: "X_Y: v1" while reading client '
                          'request headers', 'client sent invalid header line: "X.W: v3" while '
                          'reading client request headers'] * 2
    elif host == "under.test":
        assert words(logged) == ['client sent invalid header line: "X.W: v3" while reading client '
                          'request headers'] * 2


def test_http1_fields_before_host_take_the_default_servers_settings(pair):
    """nginx reads a line with the settings of the server chosen so far: the default server's
    until Host names another."""
    lines = ["X_Y:  v1  ", "Host: under.test", "x_y: v4", "X-Z: v2"]
    answers = []
    for server in pair:
        since = log_size(server)
        status, body = http1(server.port, "/p/echo", lines)
        answers.append((status, seen(body), invalid_lines(server, since)))
    assert answers[1] == answers[0]
    status, fields, logged = answers[0]
    assert (status, fields) == (200, [("x_y", "v4"), ("x-z", "v2")])
    assert words(logged) == ['client sent invalid header line: "X_Y:  v1" while reading client '
                             'request headers']


def test_http1_absolute_target_names_the_server(pair):
    lines = ["X_Y: v1", "Host: plain.test"]
    answers = []
    for server in pair:
        status, body = http1(server.port, "http://under.test/p/echo", lines)
        answers.append((status, seen(body)))
    assert answers[1] == answers[0] == (200, [("x_y", "v1")])


def test_dropped_fields_count_in_request_length(pair):
    """HTTP/1.1 only: on HTTP/2 nginx counts the HPACK-coded block, the gateway decoded fields."""
    lines = ["Host: plain.test", "X_Y: " + "a" * 100, "X-Z: v2"]
    answers = [http1(server.port, "/len", lines) for server in pair]
    assert answers[1] == answers[0]
    assert int(answers[0][1]) > 100


def test_http1_control_bytes_in_a_name_are_a_400(pair):
    for server in pair:
        assert http1(server.port, "/v", ["Host: plain.test", "X\x7fY: v"])[0] == 400
        assert http1(server.port, "/v", ["Host: lax.test", "X\x01Y: v"])[0] == 400


@pytest.mark.parametrize("host", HOSTS)
def test_http2_fields_as_nginx(pair, host):
    fields = [(k.lower(), v) for k, v in FIELDS]
    answers = []
    for server in pair:
        since = log_size(server)
        status, body = http2(server.h2port, "/p/echo", host, fields)
        _vstatus, text = http2(server.h2port, "/v", host, fields)
        answers.append((status, seen(body), text, invalid_lines(server, since)))
    nginx, gateway = answers
    assert gateway == nginx
    status, seen_fields, text, logged = nginx
    expected = {"plain.test": ([("x-z", "v2")], b"[|v2]"),
                "under.test": ([("x_y", "v1"), ("x-z", "v2")], b"[v1|v2]"),
                "lax.test": ([("x_y", "v1"), ("x-z", "v2"), ("x.w", "v3")], b"[v1|v2]")}[host]
    assert (status, seen_fields, text) == (200, *expected)
    if host == "plain.test":
        assert words(logged) == ['client sent invalid header: "x_y" while reading client request '
                          'headers', 'client sent invalid header: "x.w" while reading client '
                          'request headers'] * 2


def test_http2_host_field_without_authority(pair):
    """No :authority: the fields before a host field are read under the default server's."""
    fields = [("x_y", "v1"), ("host", "under.test"), ("x_y", "v4")]
    answers = []
    for server in pair:
        status, body = http2(server.h2port, "/p/echo", None, fields)
        answers.append((status, seen(body)))
    assert answers[1] == answers[0] == (200, [("x_y", "v4")])
