"""HTTP/2 to clients, side by side with real nginx: one config, the same clients, the same answers.

Clients: curl (--http2 over TLS with ALPN, --http2-prior-knowledge in cleartext), httpx with
its h2 support, the h2 library driven by hand (flow control, concurrent streams, GOAWAY), and
frames written byte by byte for malformed input (hyperframe, hpack).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import httpx
import pytest
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame,
                              PingFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from tests.support.certs import Certificates
from tests.support.processes import EchoBackend, Gateway, Nginx, free_port

pytestmark = pytest.mark.nginx

CURL = shutil.which("curl") or "/usr/bin/curl"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BIG = 300_000

SITE = """
user root;          # the tests' temporary folders are readable by root only
worker_processes 1;
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 64; }}
http {{
    log_format proto '$server_protocol "$request" $status '
                     '$upstream_response_length|$upstream_bytes_received|$upstream_bytes_sent|$pipe';
    access_log {dir}/access.log proto;
    default_type text/plain;
    upstream app {{ server {backend}; keepalive 8; }}
    limit_conn_zone $server_name zone=perhost:1m;
    ssl_certificate {cert.cert};
    ssl_certificate_key {cert.key};
    server {{
        listen 127.0.0.1:{h2c} http2;
        listen 127.0.0.1:{tls} ssl http2;
        server_name a.test;
        location / {{ return 200 "$server_protocol|$request|$host|$scheme|$https|$http2\\n"; }}
        location /proxy/ {{
            proxy_pass http://app/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /files/ {{ alias {files}/; }}
        location /counted/ {{
            limit_conn perhost 1;
            proxy_pass http://app/;
        }}
        location /len {{ return 200 "$request_length\n"; }}
        location /lenproxy/ {{
            proxy_pass http://app/;
            add_header X-Request-Length $request_length;
        }}
        location /moved {{ return 301 /elsewhere; }}
        location /connvars {{
            return 200 "$pipe|$connection_time|$tcpinfo_rtt|$tcpinfo_rttvar|$tcpinfo_snd_cwnd|$tcpinfo_rcv_space";
        }}
    }}
    server {{
        listen 127.0.0.1:{tls} ssl;
        server_name b.test;
        ssl_certificate {cert_b.cert};
        ssl_certificate_key {cert_b.key};
        location / {{ return 200 "b|$server_protocol|$ssl_server_name\n"; }}
    }}
    server {{
        listen 127.0.0.1:{limited} http2;
        http2_max_concurrent_streams 2;
        location / {{ proxy_pass http://app/; }}
    }}
    server {{
        listen 127.0.0.1:{idle} http2;
        keepalive_timeout 1s;
        location / {{ return 204; }}
    }}
    server {{
        listen 127.0.0.1:{tls1} ssl;
        location / {{ return 200 "$server_protocol|$http2\\n"; }}
    }}
    server {{
        listen 127.0.0.1:{plain};
        location / {{ return 200 "plain\\n"; }}
    }}
}}
"""


@dataclass
class Site:
    name: str
    ports: dict
    dir: object
    process: object

    def __getattr__(self, port):
        return self.ports[port]


def _ports():
    return {k: free_port() for k in ("h2c", "tls", "limited", "idle", "tls1", "plain")}


def _start(kind, tmp, backend, certs, files, ports):
    config = SITE.format(dir=tmp, backend=backend.address, cert=certs.a, cert_b=certs.b,
                         files=files, **ports)
    return kind(tmp, config, ports["plain"])


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    made = Certificates(tmp_path_factory.mktemp("certs"))
    made.a = made.issue("a", "a.test")
    made.b = made.issue("b", "b.test")
    return made


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    (root / "big.bin").write_bytes(bytes(range(256)) * (BIG // 256))
    return root


@pytest.fixture(scope="module")
def backend():
    echo = EchoBackend("app")
    yield echo
    echo.stop()


@pytest.fixture(scope="module")
def sites(tmp_path_factory, certs, files, backend):
    started = {}
    try:
        for name, kind in (("gateway", Gateway), ("nginx", Nginx)):
            tmp = tmp_path_factory.mktemp(name)
            ports = _ports()
            started[name] = Site(name, ports, tmp,
                                 _start(kind, tmp, backend, certs, files, ports))
        yield started
    finally:
        for site in started.values():
            site.process.stop()


def both(sites, call):
    """call(site) on the gateway, then on nginx; an exception says which one it came from."""
    answers = []
    for name in ("gateway", "nginx"):
        try:
            answers.append(call(sites[name]))
        except Exception as exc:
            exc.add_note(f"(raised while testing {name})")
            raise
    return tuple(answers)


def curl(*args) -> subprocess.CompletedProcess:
    return subprocess.run([CURL, "-sS", "--max-time", "10", *args], capture_output=True,
                          text=True, timeout=20)


# curl: prior knowledge and ALPN --------------------------------------------------------

def test_prior_knowledge_in_cleartext(sites):
    ours, theirs = both(sites, lambda s: curl(
        "--http2-prior-knowledge", "-w", "%{http_version} %{response_code}",
        f"http://127.0.0.1:{s.h2c}/x?a=1"))
    assert theirs.returncode == 0, theirs.stderr
    assert ours.stdout == theirs.stdout == "HTTP/2.0|GET /x?a=1 HTTP/2.0|127.0.0.1|http||h2c\n2 200"


def test_http11_on_a_cleartext_http2_socket(sites):
    """Without the preface the connection is read as HTTP/1.1 (nginx 1.25's rule; nginx 1.22
    takes only HTTP/2 on such a socket, so this one is the gateway's alone)."""
    answer = curl("-w", "%{http_version}", f"http://127.0.0.1:{sites['gateway'].h2c}/z")
    assert answer.stdout == "HTTP/1.1|GET /z HTTP/1.1|127.0.0.1|http||\n1.1"


def test_alpn_chooses_h2_over_tls_and_http11_where_http2_is_off(sites, certs):
    def run(site):
        h2 = curl("--http2", "--cacert", certs.ca_file, "--resolve",
                  f"a.test:{site.tls}:127.0.0.1", "-w", "%{http_version}",
                  f"https://a.test:{site.tls}/y")
        h1 = curl("--http2", "-k", "-w", "%{http_version}", f"https://127.0.0.1:{site.tls1}/")
        return h2.stdout, h1.stdout
    ours, theirs = both(sites, run)
    assert ours == theirs == ("HTTP/2.0|GET /y HTTP/2.0|a.test|https|on|h2\n2",
                              "HTTP/1.1|\n1.1")


def test_sni_to_a_server_with_its_own_certificate_still_offers_h2(sites, certs):
    """SNI switches the TLS context; the one switched to must offer h2 by ALPN too."""
    ours, theirs = both(sites, lambda s: curl(
        "--http2", "--cacert", certs.ca_file, "--resolve", f"b.test:{s.tls}:127.0.0.1",
        "-w", "%{http_version}", f"https://b.test:{s.tls}/").stdout)
    assert ours == theirs == "b|HTTP/2.0|b.test\n2"


def test_redirects_and_static_files_over_h2(sites, files):
    def run(site):
        moved = curl("--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
                     f"http://127.0.0.1:{site.h2c}/moved")
        big = subprocess.run([CURL, "-sS", "--http2-prior-knowledge",
                              f"http://127.0.0.1:{site.h2c}/files/big.bin"],
                             capture_output=True, timeout=20)
        head = {line.split(": ", 1)[0]: line.split(": ", 1)[1]
                for line in moved.stdout.splitlines()[1:] if ": " in line}
        location = head["location"].replace(str(site.h2c), "PORT")
        return moved.stdout.splitlines()[0], location, hashlib.sha256(big.stdout).digest()
    ours, theirs = both(sites, run)
    assert ours == theirs
    assert ours[0].startswith("HTTP/2 301")
    assert ours[2] == hashlib.sha256((files / "big.bin").read_bytes()).digest()


def test_the_access_log_says_http2(sites):
    for site in sites.values():
        curl("--http2-prior-knowledge", f"http://127.0.0.1:{site.h2c}/logged")
    # The gateway writes its log every quarter second: wait for the line, not for a time.
    _wait_for(lambda: 'HTTP/2.0 "GET /logged HTTP/2.0" 200' in
              (sites["gateway"].dir / "access.log").read_text())
    assert 'HTTP/2.0 "GET /logged HTTP/2.0" 200' in (sites["nginx"].dir / "access.log").read_text()


def test_limit_conn_counts_a_stream_until_it_ends(sites):
    # One stream at a time on one connection, within a limit of one: each ends before the
    # next starts, so none is refused (a stream that never gave its count back made every
    # later one a 503). httpx, not curl: curl 7.88 fails a second prior-knowledge URL.
    def statuses(site):
        with httpx.Client(http1=False, http2=True, timeout=10) as client:
            return [client.get(f"http://127.0.0.1:{site.h2c}/counted/{i}").status_code
                    for i in range(4)]
    ours, theirs = both(sites, statuses)
    assert ours == theirs == [200, 200, 200, 200]


def test_request_length_counts_the_header_block_as_it_came_and_the_body(sites):
    # nginx counts the HPACK-coded block (not the decoded fields) and the DATA bytes read.
    # One curl request per new connection: the same block for both (Host, not the port).
    def lengths(site):
        head = curl("--http2-prior-knowledge", "-H", "Host: a.test", "-H", "X-Long: " + "v" * 300,
                    f"http://127.0.0.1:{site.h2c}/len").stdout
        body = curl("--http2-prior-knowledge", "-H", "Host: a.test", "-d", "b" * 1000,
                    "-o", "/dev/null", "-D", "-", f"http://127.0.0.1:{site.h2c}/lenproxy/x").stdout
        proxied = re.search(r"(?im)^x-request-length: (\d+)", body)
        return head.strip(), proxied and proxied.group(1)
    ours, theirs = both(sites, lengths)
    assert ours == theirs
    assert int(theirs[0]) < 340 and int(theirs[1]) > 1000     # coded (decoded: ~400), and the body


def test_connection_variables_over_h2(sites, certs):
    """Never pipelined ("."); $connection_time and $tcpinfo_* of the form nginx gives."""
    def run(site):
        h2c = curl("--http2-prior-knowledge", f"http://127.0.0.1:{site.h2c}/connvars")
        tls = curl("--http2", "--cacert", certs.ca_file, "--resolve",
                   f"a.test:{site.tls}:127.0.0.1", f"https://a.test:{site.tls}/connvars")
        return h2c.stdout, tls.stdout
    for answer in both(sites, run):
        for body in answer:
            assert re.fullmatch(r"\.\|\d+\.\d{3}\|\d+\|\d+\|\d+\|\d+", body), answer


def test_upstream_counts_over_h2_logged_as_nginx(sites):
    """A proxied response the backend sends the same to both: the same response-side counts."""
    lines = []
    for name in ("gateway", "nginx"):
        site = sites[name]
        curl("--http2-prior-knowledge", f"http://127.0.0.1:{site.h2c}/proxy/big?n=1234")
        log = site.dir / "access.log"
        _wait_for(lambda: "/proxy/big?n=1234 " in log.read_text())
        line = [x for x in log.read_text().splitlines() if "/proxy/big?n=1234 " in x][-1]
        lines.append(line.rpartition(" ")[2].split("|"))
    ours, theirs = lines
    assert ours[:2] == theirs[:2] and ours[0] == "1234", lines
    assert int(ours[2]) > 0 and ours[3] == theirs[3] == ".", lines


def _wait_for(condition, tries=200):
    for _ in range(tries):
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition never held")


# httpx: many streams on one connection, through the upstream keep-alive pool -------------

def test_streams_multiplexed_onto_the_upstream_pool(sites):
    async def run(site):
        # Cleartext HTTP/2 with prior knowledge: httpx's transport without HTTP/1.1.
        transport = httpx.AsyncHTTPTransport(http2=True, http1=False)
        async with httpx.AsyncClient(transport=transport,
                                     base_url=f"http://127.0.0.1:{site.h2c}") as client:
            answers = await asyncio.gather(*[
                client.post(f"/proxy/echo/{i}?q={i}", content=b"b" * (i * 1000),
                            headers={"x-n": str(i), "cookie": "a=1"})
                for i in range(20)])
        out = []
        for answer in answers:
            assert answer.http_version == "HTTP/2"
            echo = answer.json()
            headers = dict(echo["headers"])
            out.append((answer.status_code, echo["method"], echo["target"], echo["version"],
                        echo["body_length"], headers.get("x-n"), headers.get("cookie"),
                        headers.get("content-length"), headers.get("host")))
        return out
    ours, theirs = both(sites, lambda s: asyncio.run(run(s)))
    assert ours == theirs
    assert ours[3] == (200, "POST", "/echo/3?q=3", "1.1", 3000, "3", "a=1", "3000", "app")


def test_a_request_body_larger_than_the_stream_window_reaches_the_upstream(sites, tmp_path):
    """900 KB through 64 KiB stream windows, reopened as the upstream takes the bytes; with
    and without content-length (read whole, then sent with one)."""
    body = bytes(range(256)) * 3600
    upload = tmp_path / "upload.bin"
    upload.write_bytes(body)

    def run(site):
        out = []
        for extra in ((), ("-H", "Content-Length:")):
            answer = curl("--http2-prior-knowledge", "--data-binary", f"@{upload}", *extra,
                          f"http://127.0.0.1:{site.h2c}/proxy/echo")
            echo = json.loads(answer.stdout)
            out.append((echo["body_length"], echo["body_sha256"],
                        dict(echo["headers"]).get("content-length")))
        return out
    ours, theirs = both(sites, run)
    digest = hashlib.sha256(body).hexdigest()
    assert ours == theirs == [(len(body), digest, str(len(body)))] * 2


# The h2 library by hand: flow control, concurrent streams, GOAWAY --------------------------

class H2Client:
    """A blocking HTTP/2 client over one socket, driven event by event."""

    def __init__(self, port, window=65535):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
                                         h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.h2.initiate_connection()
        self.flush()
        self.events = []
        self.closed = False

    def flush(self):
        self.sock.sendall(self.h2.data_to_send())

    def request(self, path, end=True, method="GET", extra=()):
        stream_id = self.h2.get_next_available_stream_id()
        self.h2.send_headers(stream_id, [(":method", method), (":scheme", "http"),
                                         (":authority", "a.test"), (":path", path), *extra],
                             end_stream=end)
        self.flush()
        return stream_id

    def receive(self):
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return []
        events = self.h2.receive_data(data)
        self.events.extend(events)
        self.flush()
        return events

    def until(self, condition):
        while not condition():
            if not self.receive() and self.closed:
                raise AssertionError(f"connection closed; events: {self.events}")

    def of(self, kind, stream_id=None):
        return [e for e in self.events if isinstance(e, kind)
                and (stream_id is None or getattr(e, "stream_id", None) == stream_id)]

    def close(self):
        self.sock.close()


def test_an_answer_before_end_stream_does_not_reset_a_complete_body(sites):
    """Every byte of the content-length is in, END_STREAM is still to come (clients such as
    httpx send it in a frame of its own): the gateway may answer already, but must not reset the
    stream, or the client fails a request it completed. (nginx reads a body to END_STREAM before
    it proxies, so it never answers first: the gateway alone is checked.)"""
    client = H2Client(sites["gateway"].h2c)
    stream = client.request("/proxy/echo", end=False, method="POST",
                            extra=[("content-length", "5")])
    client.h2.send_data(stream, b"hello")
    client.flush()
    client.until(lambda: client.of(h2.events.StreamEnded, stream) or client.of(h2.events.StreamReset))
    assert not client.of(h2.events.StreamReset)
    client.h2.send_data(stream, b"", end_stream=True)       # the END_STREAM, late but legal
    client.flush()
    echo = json.loads(b"".join(e.data for e in client.of(h2.events.DataReceived, stream)))
    assert (echo["method"], echo["body_length"]) == ("POST", 5)
    after = client.request("/x")                             # the connection is still good
    client.until(lambda: client.of(h2.events.StreamEnded, after))
    assert dict(client.of(h2.events.ResponseReceived, after)[0].headers)[b":status"] == b"200"
    assert not client.of(h2.events.StreamReset) and not client.of(h2.events.ConnectionTerminated)
    client.close()


def test_flow_control_windows_are_respected(sites):
    """A 4 KiB stream window: the server must wait for WINDOW_UPDATEs (the client's h2
    refuses any DATA beyond the window, so overshooting fails here)."""
    def run(site):
        client = H2Client(site.h2c, window=4096)
        stream = client.request(f"/proxy/big?n={BIG}")
        received = 0
        while not client.of(h2.events.StreamEnded, stream):
            for event in client.receive():
                if isinstance(event, h2.events.DataReceived):
                    received += len(event.data)
                    assert received <= BIG
                    client.h2.acknowledge_received_data(event.flow_controlled_length, stream)
            client.flush()
        status = dict(client.of(h2.events.ResponseReceived, stream)[0].headers)[b":status"]
        client.close()
        return status, received
    ours, theirs = both(sites, run)
    assert ours == theirs == (b"200", BIG)


def test_streams_over_http2_max_concurrent_streams_are_refused(sites):
    def run(site):
        client = H2Client(site.limited)
        client.until(lambda: client.of(h2.events.RemoteSettingsChanged))
        advertised = client.h2.remote_settings.max_concurrent_streams
        # Open one stream more than advertised (the client's h2 would refuse to).
        client.h2.remote_settings.max_concurrent_streams = 100
        client.h2.remote_settings.acknowledge()
        # Bodies without content-length are read whole before going upstream: the streams
        # stay open until their END_STREAM.
        streams = [client.request("/echo", end=False, method="POST") for _ in range(3)]
        client.until(lambda: client.of(h2.events.StreamReset))
        (reset,) = client.of(h2.events.StreamReset)
        for stream in streams[:2]:
            client.h2.send_data(stream, b"done", end_stream=True)
        client.flush()
        client.until(lambda: len(client.of(h2.events.StreamEnded)) == 2)
        statuses = [dict(e.headers)[b":status"] for e in client.of(h2.events.ResponseReceived)]
        client.close()
        return advertised, reset.stream_id, int(reset.error_code), statuses
    ours, theirs = both(sites, run)
    assert ours == theirs == (2, 5, 7, [b"200", b"200"])     # 7: REFUSED_STREAM


# Malformed input: the connection (or the stream) is closed with nginx's error code ------

def _frames(port, payload, until_eof=True):
    """Send the preface, SETTINGS and ``payload``; the frames that come back until the server
    closes (or until a response or a RST_STREAM when ``until_eof`` is False)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(PREFACE + SettingsFrame(0).serialize() + payload)
    buffer, frames = b"", []
    decoder = hpack.Decoder()
    with sock:
        while True:
            data = sock.recv(65536)
            if not data:
                return frames
            buffer += data
            while len(buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(buffer[:9]))
                if len(buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(buffer[9:9 + length]))
                buffer = buffer[9 + length:]
                if isinstance(frame, GoAwayFrame):
                    frames.append(("GOAWAY", frame.last_stream_id, frame.error_code))
                elif isinstance(frame, RstStreamFrame):
                    frames.append(("RST_STREAM", frame.stream_id, frame.error_code))
                elif isinstance(frame, HeadersFrame):
                    frames.append(("HEADERS", frame.stream_id,
                                   dict(decoder.decode(frame.data))[":status"]))
                if not until_eof and frames:
                    return frames


def _headers(extra=(), pseudo=None, raw=None, stream_id=1):
    frame = HeadersFrame(stream_id)
    fields = pseudo if pseudo is not None else [
        (":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/")]
    frame.data = raw if raw is not None else hpack.Encoder().encode([*fields, *extra])
    frame.flags.add("END_HEADERS")
    frame.flags.add("END_STREAM")
    return frame.serialize()


def _window_update(stream_id, increment):
    frame = WindowUpdateFrame(stream_id)
    frame.window_increment = increment
    return frame.serialize()


def _hpack_bomb():
    """One 4000-byte field put in the dynamic table, then referenced 3000 times: 12 MB of
    headers from 4 KB on the wire."""
    encoder = hpack.Encoder()
    first = encoder.encode([(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                            (":path", "/"), ("x-bomb", "a" * 4000)])
    return _headers(raw=first + b"\xbe" * 3000)      # 0xbe: dynamic table entry 62


def _continuation_alone():
    frame = ContinuationFrame(1)
    frame.data = b""
    frame.flags.add("END_HEADERS")
    return frame.serialize()


MALFORMED = {
    # case: (payload, what both servers answer; 1 PROTOCOL_ERROR, 3 FLOW_CONTROL_ERROR,
    #        9 COMPRESSION_ERROR, 11 ENHANCE_YOUR_CALM)
    "data on stream 0": (b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x", ("GOAWAY", 0, 1)),
    "headers on an even stream": (_headers(stream_id=2), ("GOAWAY", 0, 1)),
    "continuation without headers": (_continuation_alone(), ("GOAWAY", 0, 1)),
    "hpack index out of range": (_headers(raw=b"\xff\xff\xff\xff\x0f"), ("GOAWAY", 1, 9)),
    "hpack index past the table": (_headers(raw=b"\xbf"), ("GOAWAY", 1, 9)),
    "hpack bomb": (_hpack_bomb(), ("GOAWAY", 1, 11)),
    "header list over large_client_header_buffers": (
        _headers([(f"x-h{i}", "a" * 2000) for i in range(20)]), ("GOAWAY", 1, 11)),
    "one field over a buffer": (_headers([("x-big", "a" * 20000)]), ("GOAWAY", 1, 11)),
    "window overflow": (_headers() + _window_update(0, 2 ** 31 - 1), ("GOAWAY", 1, 3)),
}


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_input_closes_the_connection_with_nginx_code(sites, case):
    payload, expected = MALFORMED[case]
    ours, theirs = both(sites, lambda s: [f for f in _frames(s.h2c, payload) if f[0] == "GOAWAY"])
    assert ours == theirs == [expected]


@pytest.mark.parametrize("case, payload, expected", [
    ("uppercase field name", _headers([("X-Upper", "1")]), ("RST_STREAM", 1, 1)),
    ("space in a field name", _headers([("x y", "1")]), ("RST_STREAM", 1, 1)),
    ("colon in a field name", _headers([("x:y", "1")]), ("RST_STREAM", 1, 1)),
    ("DEL in a field name", _headers([("x\x7fy", "1")]), ("RST_STREAM", 1, 1)),
    ("underscore in a field name (dropped)", _headers([("x_y", "1")]), ("HEADERS", 1, "200")),
    ("no :path", _headers(pseudo=[(":method", "GET"), (":scheme", "http")]), ("HEADERS", 1, "400")),
    ("within the limits", _headers([(f"x-h{i}", "a" * 2000) for i in range(14)]),
     ("HEADERS", 1, "200")),
])
def test_malformed_requests_are_stream_errors(sites, case, payload, expected):
    ours, theirs = both(sites, lambda s: _frames(s.h2c, payload, until_eof=False))
    assert ours == theirs == [expected]


# GOAWAY on a graceful stop -------------------------------------------------------------

def test_an_idle_connection_is_closed_with_goaway_after_keepalive_timeout(sites):
    def run(site):
        client = RawClient(site.idle)
        client.send_request(1)
        frames = []
        while (frame := client.next_frame()) is not None:
            frames.append(frame)
        client.sock.close()
        return [type(f).__name__ for f in frames if isinstance(f, (HeadersFrame, GoAwayFrame))], \
            [(f.last_stream_id, f.error_code) for f in frames if isinstance(f, GoAwayFrame)]
    ours, theirs = both(sites, run)
    assert ours == theirs == (["HeadersFrame", "GoAwayFrame"], [(1, 0)])


class RawClient:
    """Frames by hand: h2's own state machine refuses every frame once a GOAWAY is in."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(PREFACE + SettingsFrame(0).serialize())
        self.buffer = b""
        self.decoder = hpack.Decoder()

    def send(self, frame):
        self.sock.sendall(frame.serialize())

    def send_request(self, stream_id, method="GET", path="/", end=True):
        headers = HeadersFrame(stream_id)
        headers.data = hpack.Encoder().encode([(":method", method), (":scheme", "http"),
                                               (":authority", "a"), (":path", path)])
        headers.flags.add("END_HEADERS")
        if end:
            headers.flags.add("END_STREAM")
        self.send(headers)

    def next_frame(self):
        """The next frame, None at EOF."""
        while True:
            if len(self.buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
                if len(self.buffer) >= 9 + length:
                    frame.parse_body(memoryview(self.buffer[9:9 + length]))
                    self.buffer = self.buffer[9 + length:]
                    if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
                        ack = SettingsFrame(0)
                        ack.flags.add("ACK")
                        self.send(ack)
                    return frame
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data

    def until(self, kind):
        while True:
            frame = self.next_frame()
            assert frame is not None, f"closed before a {kind.__name__}"
            if isinstance(frame, kind):
                return frame


@pytest.mark.parametrize("kind", [Gateway, Nginx], ids=["gateway", "nginx"])
def test_graceful_stop_sends_goaway_and_finishes_the_streams_in_progress(
        tmp_path, kind, backend, certs, files):
    site = _start(kind, tmp_path, backend, certs, files, ports := _ports())
    try:
        client = RawClient(ports["h2c"])
        client.send_request(1, "POST", "/proxy/echo", end=False)
        client.until(SettingsFrame)
        ping = PingFrame(0)      # answered once the stream above is read: then stop
        ping.opaque_data = b"12345678"
        client.send(ping)
        client.until(PingFrame)
        site.proc.send_signal(signal.SIGQUIT)
        goaway = client.until(GoAwayFrame)
        assert (goaway.last_stream_id, goaway.error_code) == (1, 0)
        # The stream named in the GOAWAY is still served; then the connection closes.
        data = DataFrame(1)
        data.data = b"last words"
        data.flags.add("END_STREAM")
        client.send(data)
        status, body = None, b""
        while (frame := client.next_frame()) is not None:
            if isinstance(frame, HeadersFrame):
                status = dict(client.decoder.decode(frame.data))[":status"]
            elif isinstance(frame, DataFrame):
                body += frame.data
        assert status == "200"
        assert json.loads(body)["body_length"] == len(b"last words")
        client.sock.close()
    finally:
        site.stop()


@pytest.mark.qemu
def test_unikernel_pass_over_http2(tmp_path):
    """A location type with its own handler (a QEMU echo guest) answers a stream unchanged."""
    from tests.support.processes import ROOT
    image = ROOT / "unikernels" / "build" / "echo.elf"
    port = free_port()
    gateway = Gateway(tmp_path, f"""
error_log {tmp_path}/error.log info;
pid {tmp_path}/gateway.pid;
events {{}}
http {{
    access_log off;
    unikernel echo {{ image {image}; }}
    server {{ listen 127.0.0.1:{port} http2; location /echo/ {{ unikernel_pass echo; }} }}
}}
""", port)
    try:
        answer = curl("--http2-prior-knowledge", "-w", " %{http_version} %{response_code}",
                      f"http://127.0.0.1:{port}/echo/over-h2")
        assert answer.stdout == "/over-h2 2 200"
    finally:
        gateway.stop()
