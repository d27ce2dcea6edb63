"""$upstream_response_length, $upstream_bytes_received and $upstream_bytes_sent side by side
with real nginx, per try as $upstream_status. ($upstream_queue_time is refused,
as nginx 1.22.1 refuses it.)

The upstream request each server writes differs (header order, Connection), so
$upstream_bytes_sent is checked against the request the echo backend saw; responses that do
not echo the request (big, chunked, an upstream closing early) come back the same from the
backend, so their counts must equal nginx's exactly."""

import contextlib
import re
import socket
import threading
import time

import orjson
import pytest

from tests.http.test_nginx_parity import fetch
from tests.http.test_nginx_parity_maps import running_pair
from tests.support.processes import free_port

pytestmark = pytest.mark.nginx

SITE = r"""
user root;          # the tests' temporary folders are readable by root only
worker_processes 1;
error_log {dir}/error.log notice;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    log_format counts "$request_uri|$upstream_status|$upstream_response_length|"
                      "$upstream_bytes_received|$upstream_bytes_sent|$body_bytes_sent";
    access_log {dir}/counts.log counts;
    upstream app {{ server {backend}; }}
    # A dead peer first, never marked down: every request tries it, then the backup.
    upstream retry {{ server 127.0.0.1:DEAD max_fails=0; server {backend} backup; }}
    server {{
        listen 127.0.0.1:{port} default_server;
        server_name main.test;
        location /up/ {{ proxy_pass http://app; }}
        # HTTP/1.1 upstream: the backend may answer chunked.
        location /up11/ {{ proxy_pass http://app; proxy_http_version 1.1; }}
        location /retry/ {{ proxy_pass http://retry; }}
        location /short/ {{ proxy_pass http://127.0.0.1:SHORT; }}
        location /none {{ return 200 "[$upstream_bytes_sent]"; }}
    }}
}}
"""

# What the early-closing upstream answers: a body of 100 bytes announced, 10 sent.
SHORT_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nX-Short: 1\r\n\r\n" + b"x" * 10


@contextlib.contextmanager
def short_upstream():
    """A loopback upstream that reads a request head, answers SHORT_ANSWER and closes."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            with client:
                client.settimeout(5)
                seen = b""
                while b"\r\n\r\n" not in seen and (chunk := client.recv(65536)):
                    seen += chunk
                client.sendall(SHORT_ANSWER)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        listener.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with short_upstream() as short_port:
        site = SITE.replace("DEAD", str(free_port())).replace("SHORT", str(short_port))
        with running_pair(tmp_path_factory, site, "counts") as both:
            yield both


def _line(server, target, name="counts.log"):
    """The fields after the URI of ``target``'s line in access log ``name`` (logged once the
    response is out)."""
    log = server.dir / name
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in (log.read_text() if log.exists() else "").splitlines():
            if line.startswith(target + "|"):
                return line.split("|")[1:]
        time.sleep(0.02)
    raise AssertionError(f"no log line for {target}")


def _request(port, method, target, body=None):
    """(status, body, fields of the log line) of one request."""
    status, _, content = fetch(port, method, target, {}, body)
    return status, content


def _seen_length(echo: bytes) -> int:
    """The length of the request the echo backend received, rebuilt from its report."""
    seen = orjson.loads(echo)
    head = f"{seen['method']} {seen['target']} HTTP/{seen['version']}\r\n"
    fields = sum(len(name) + len(value) + 4 for name, value in seen["headers"])
    return len(head) + fields + 2 + seen["body_length"]


def _both(pair, method, target, body=None):
    """Each server's (status, client body, log fields) for one request."""
    out = []
    for server in pair:
        status, content = _request(server.port, method, target, body)
        out.append((status, content, _line(server, target)))
    return out


@pytest.mark.parametrize("method, target, body", [
    ("GET", "/up/plain", None),
    ("POST", "/up/post", b"hello=world" * 50),
])
def test_echoed_request_counts(pair, method, target, body):
    """One try: sent = the request the backend saw; received = head + the body relayed."""
    for status, content, fields in _both(pair, method, target, body):
        upstream_status, length, received, sent, body_sent = fields
        assert (status, upstream_status) == (200, "200")
        assert int(length) == len(content) == int(body_sent)
        assert int(received) > int(length)       # the response head came first
        assert int(sent) == _seen_length(content)


@pytest.mark.parametrize("target", ["/up/big?n=5000", "/up11/chunked?n=3000&parts=3",
                                    "/short/closes"])
def test_same_counts_as_nginx(pair, target):
    """Responses that do not echo the request: every response-side count as nginx's."""
    (want_status, want_body, want), (got_status, got_body, got) = _both(pair, "GET", target)
    assert (got_status, got_body) == (want_status, want_body)
    assert got_status == 200
    # The upstream side but $upstream_bytes_sent (our upstream request is not nginx's);
    # $body_bytes_sent differs for the chunked one (nginx joins the chunks it buffered).
    assert got[:3] == want[:3], (got, want)
    assert re.fullmatch(r"\d+", got[3]) and int(got[3]) > 0


def test_retried_try_counts_as_nginx(pair):
    """A dead peer, then the backup: each count per try, the failed try's all zero."""
    results = _both(pair, "GET", "/retry/again")
    for status, content, fields in results:
        upstream_status, length, received, sent, _ = fields
        assert status == 200
        assert upstream_status == "502, 200"
        assert length == f"0, {len(content)}"
        assert received.startswith("0, ") and int(received[3:]) > len(content)
        assert sent == f"0, {_seen_length(content)}"


def test_without_upstream_empty_as_nginx(pair):
    (_, want_body, want), (_, got_body, got) = _both(pair, "GET", "/none")
    assert got_body == want_body == b"[]"
    assert got == want
    assert got[:4] == ["-"] * 4


def test_upstream_queue_time_is_refused_like_nginx(tmp_path):
    """nginx 1.22.1 refuses $upstream_queue_time (its docs list it; open source has no queue)."""
    from tests.config.test_nginx_wording import refused_like_nginx
    expected, error = refused_like_nginx(tmp_path, 'log_format f "$upstream_queue_time";')
    assert error.message == expected == 'unknown "upstream_queue_time" variable'
    assert error.line == 5
