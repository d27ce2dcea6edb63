"""limit_rate and add_trailer on HTTP/2 streams, side by side with real nginx.

nginx paces each stream by itself (its write filter runs on the stream's fake connection) and
sends add_trailer's fields as a HEADERS frame with END_STREAM after the last DATA frame,
keeping the Content-Length (its HTTP/2 header filter runs before the chunked one). The client
is the h2 library driven by hand, so the frames themselves are compared.
"""

from __future__ import annotations

import gzip
import socket
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest

from tests.http.test_nginx_parity_maps import running_pair

pytestmark = pytest.mark.nginx

SIZE = 300 * 1024
SITE = r"""
user root;          # the tests' temporary folders are readable by root only
worker_processes 1;
error_log {dir}/error.log notice;
pid {dir}/server.pid;
events {{ worker_connections 128; }}
http {{
    default_type text/plain;
    types {{ text/plain txt; }}
    log_format rate "$uri $limit_rate $status $body_bytes_sent $sent_trailer_x_t";
    access_log {dir}/h2.log rate;
    upstream app {{ server {backend}; }}
    server {{
        listen 127.0.0.1:{port} http2;
        server_name main.test;
        root {dir}/html;
        limit_rate_after 50k;

        location /paced/ {{ proxy_pass http://app; limit_rate 100k; }}
        location /setvar/ {{ set $limit_rate 100k; proxy_pass http://app; }}
        location /accel/ {{ proxy_pass http://app; }}
        location /files/ {{ limit_rate 100k; }}
        location /fast/ {{ proxy_pass http://app; }}

        location /tr/ {{
            add_trailer X-T "t-$status";
            add_trailer X-Empty "";
            add_trailer X-Always "a-$uri" always;
            proxy_pass http://app;
        }}
        location /trfiles/ {{ add_trailer X-T "t-$status"; alias {dir}/html/files/; }}
        location /trret {{ add_trailer X-T "t-$status"; return 200 "text\n"; }}
        location /trret404 {{ add_trailer X-T "t-$status"; return 404 "nope\n"; }}
        location /trnone {{ add_trailer X-T "$arg_v"; return 200 "text\n"; }}
        location /trgz/ {{
            gzip on;
            gzip_types text/plain;
            add_trailer X-T "t-$status";
            proxy_pass http://app;
        }}
        location /trgzret {{
            gzip on;
            add_trailer X-T "t-$status";
            default_type text/html;
            return 200 "<html>$request_uri and some more text to compress</html>\n";
        }}
    }}
}}
"""


def _files(folder):
    (folder / "html" / "files").mkdir(parents=True)
    (folder / "html" / "files" / "big.txt").write_bytes(b"z" * SIZE)
    (folder / "html" / "files" / "a.txt").write_bytes(b"file text\n" * 1000)
    (folder / "html" / "files" / "empty.txt").write_bytes(b"")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    with running_pair(tmp_path_factory, SITE, "h2stream", _files) as both:
        yield both


class Answer:
    """One stream's answer: status, fields, body, trailers and the frames that carried it."""

    def __init__(self):
        self.headers: dict = {}
        self.body = b""
        self.trailers = None
        self.events: list = []      # ("headers"|"data"|"trailers", ended) in order
        self.elapsed = 0.0


def h2_get(port, target, extra=(), method="GET") -> Answer:
    """One request on a fresh prior-knowledge connection; the stream's frames as they came."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=True, header_encoding="latin-1"))
    conn.initiate_connection()
    # Wide windows: only the server's pace (or its absence) decides the timing.
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2 ** 24})
    conn.increment_flow_control_window(2 ** 30)
    answer = Answer()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        conn.send_headers(1, [(":method", method), (":path", target), (":scheme", "http"),
                              (":authority", "main.test"), *extra], end_stream=True)
        sock.sendall(conn.data_to_send())
        done = False
        while not done:
            data = sock.recv(65536)
            if not data:
                raise AssertionError("connection closed before the stream ended")
            for event in conn.receive_data(data):
                ended = getattr(event, "stream_ended", None) is not None
                if isinstance(event, h2.events.ResponseReceived):
                    answer.headers = {k: v for k, v in event.headers}
                    answer.events.append(("headers", ended))
                elif isinstance(event, h2.events.DataReceived):
                    answer.body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, 1)
                    answer.events.append(("data", ended))
                elif isinstance(event, h2.events.TrailersReceived):
                    answer.trailers = {k: v for k, v in event.headers}
                    answer.events.append(("trailers", ended))
                elif isinstance(event, h2.events.StreamEnded):
                    done = True
                elif isinstance(event, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {event.error_code}")
            sock.sendall(conn.data_to_send())
    answer.elapsed = time.monotonic() - started
    return answer


def _frames(answer: Answer) -> list:
    """The kinds of frames, consecutive DATA frames as one (sizes and splits may differ)."""
    kinds = []
    for kind, ended in answer.events:
        if kinds and kind == "data" and kinds[-1][0] == "data" and not kinds[-1][1]:
            kinds[-1] = (kind, ended)
        else:
            kinds.append((kind, ended))
    return kinds


def _timed(port, target):
    # nginx counts whole seconds since the request's second began (see
    # test_nginx_parity_limit_rate.py): start early in a second.
    while time.time() % 1 > 0.2:
        time.sleep(0.02)
    return h2_get(port, target)


def _log_lines(server, count):
    log = server.dir / "h2.log"
    deadline = time.monotonic() + 5
    lines = []
    while time.monotonic() < deadline:
        lines = (log.read_text() if log.exists() else "").splitlines()
        if len(lines) >= count:
            break
        time.sleep(0.05)
    return lines


# limit_rate -------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    f"/paced/big?n={SIZE}", f"/setvar/big?n={SIZE}",
    f"/accel/text?n={SIZE}&X-Accel-Limit-Rate=102400", "/files/big.txt"])
def test_each_stream_is_paced_like_nginx(pair, target):
    nginx, gateway = pair
    want = _timed(nginx.port, target)
    got = _timed(gateway.port, target)
    assert got.headers[":status"] == want.headers[":status"] == "200"
    assert len(got.body) == len(want.body) == SIZE and got.body == want.body
    # nginx: 150k at once (limit_rate_after 50k, then a second's worth), then 100k a second.
    assert want.elapsed >= 1.5, want.elapsed
    assert got.elapsed >= 1.5, got.elapsed
    assert abs(got.elapsed - want.elapsed) < 0.5, (got.elapsed, want.elapsed)


def test_unpaced_stream_is_not_slowed(pair):
    for server in pair:
        answer = _timed(server.port, f"/fast/big?n={SIZE}")
        assert len(answer.body) == SIZE and answer.elapsed < 1.0, (server, answer.elapsed)


def test_streams_of_one_connection_are_paced_each_on_its_own(pair):
    """Two paced streams at once take as long as one: the rate is per stream, not shared."""
    for server in pair:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2 ** 24})
        conn.increment_flow_control_window(2 ** 30)
        while time.time() % 1 > 0.2:
            time.sleep(0.02)
        started = time.monotonic()
        received = {1: 0, 3: 0}
        ended = set()
        with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
            for stream_id in (1, 3):
                conn.send_headers(stream_id, [(":method", "GET"),
                                              (":path", f"/paced/big?n={SIZE}"),
                                              (":scheme", "http"), (":authority", "main.test")],
                                  end_stream=True)
            sock.sendall(conn.data_to_send())
            while len(ended) < 2:
                data = sock.recv(65536)
                assert data
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.DataReceived):
                        received[event.stream_id] += len(event.data)
                        conn.acknowledge_received_data(event.flow_controlled_length,
                                                       event.stream_id)
                    elif isinstance(event, h2.events.StreamEnded):
                        ended.add(event.stream_id)
                sock.sendall(conn.data_to_send())
        elapsed = time.monotonic() - started
        assert received == {1: SIZE, 3: SIZE}
        assert 1.5 <= elapsed < 2.8, (server, elapsed)


def test_limit_rate_variable_over_http2_in_the_log(pair):
    targets = ["/paced/big?n=10", "/setvar/big?n=10", "/accel/text?n=10&X-Accel-Limit-Rate=5000",
               "/fast/big?n=10", "/files/a.txt"]
    logs = []
    for server in pair:
        before = len(_log_lines(server, 0))
        for target in targets:
            assert h2_get(server.port, target).headers[":status"] == "200"
        logs.append(_log_lines(server, before + len(targets))[-len(targets):])
    assert logs[1] == logs[0], logs
    assert logs[0][0].startswith("/paced/big 102400 ")


# add_trailer ------------------------------------------------------------------------------

TRAILER_TARGETS = [
    "/tr/big?n=100", "/tr/big?n=0", "/tr/chunked?n=3000&parts=3", "/tr/status/404/x",
    "/trfiles/a.txt", "/trfiles/empty.txt", "/trfiles/missing.txt", "/trret", "/trret404",
    "/trnone", "/trnone?v=1", "/trgz/text?n=5000", "/trgz/text?n=5000&chunked=3",
    "/trgzret",
]
COMPARED = ("content-length", "content-type", "content-encoding", "vary", ":status")


@pytest.mark.parametrize("target", TRAILER_TARGETS)
def test_trailers_as_a_last_headers_frame_like_nginx(pair, target):
    nginx, gateway = pair
    extra = [("accept-encoding", "gzip")] if "gz" in target else []
    want = h2_get(nginx.port, target, extra)
    got = h2_get(gateway.port, target, extra)
    # Error pages name each server (nginx/1.22.1 or the gateway): their lengths differ.
    compared = [k for k in COMPARED if k != "content-length" or want.headers[":status"] < "300"]
    assert {k: got.headers.get(k) for k in compared} == \
        {k: want.headers.get(k) for k in compared}
    if int(want.headers[":status"]) < 300:
        assert got.body == want.body
        if want.headers.get("content-encoding") == "gzip":
            assert gzip.decompress(got.body)
    assert got.trailers == want.trailers
    assert _frames(got) == _frames(want)


def test_head_over_http2_has_no_trailers(pair):
    for server in pair:
        answer = h2_get(server.port, "/tr/big?n=100", method="HEAD")
        assert answer.headers["content-length"] == "100"
        assert answer.trailers is None and answer.events == [("headers", True)]
