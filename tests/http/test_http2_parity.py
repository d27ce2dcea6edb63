"""The two HTTP/2 sessions side by side: libnghttp2 (_fastpath/h2session.pyx) and h2 (the twin).

Two gateways from one config, one with the compiled session (and the compiled stream,
_fastpath/h2stream.pxi) and one with GATEWAY_NO_EXTENSIONS=1 (h2 and http2_stream.py), are fed the same client frames (valid, cut at every byte, malformed,
an HPACK bomb, too many streams, a flow-control stall); what the upstream received (the echo
backend answers with it: what the handler saw) and what the client got must be the same.
Compared: frame kinds, stream ids, error codes, END_STREAM, status, fields but Date, bodies,
SETTINGS values and the connection window opened at once.  Not compared: when stream
WINDOW_UPDATEs are sent and how DATA is cut into frames, which RFC 9113 leaves to the server
(nghttp2 and h2 choose differently); the flow-control test checks the windows instead.
"""

from __future__ import annotations

import importlib
import itertools
import json
import socket
import time

import h2.connection
import hpack
import pytest
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame,
                              PingFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from tests.http.test_http2 import MALFORMED, PREFACE, _headers
from tests.support.processes import EchoBackend, Gateway, free_port

pytestmark = pytest.mark.nginx

SITE = """
error_log {dir}/error.log info;
pid {dir}/server.pid;
events {{ worker_connections 64; }}
http {{
    access_log off;
    upstream app {{ server {backend}; keepalive 8; }}
    server {{
        listen 127.0.0.1:{h2c} http2;
        location / {{ return 200 "$server_protocol|$request|$host|$http2|$http_cookie\\n"; }}
        location /len {{ return 200 "$request_length"; }}
        location /proxy/ {{
            proxy_pass http://app/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
    server {{
        listen 127.0.0.1:{limited} http2;
        http2_max_concurrent_streams 2;
        location / {{ proxy_pass http://app/; }}
    }}
}}
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    # The compiled session must exist, or both gateways would run h2 and agree trivially.
    importlib.import_module("_fastpath.h2session")
    backend = EchoBackend("app")
    started = {}
    try:
        for name, flag in (("nghttp2", "0"), ("h2", "1")):
            tmp = tmp_path_factory.mktemp(name)
            ports = {"h2c": free_port(), "limited": free_port()}
            config = SITE.format(dir=tmp, backend=backend.address, **ports)
            started[name] = (Gateway(tmp, config, ports["h2c"],
                                     env={"GATEWAY_NO_EXTENSIONS": flag}), ports)
        yield {name: ports for name, (_, ports) in started.items()}
    finally:
        for process, _ in started.values():
            process.stop()
        backend.stop()


def exchange(port, payload, streams=(), cut=False, window_updates=()):
    """Send the preface, SETTINGS and ``payload`` (one byte per write when ``cut``); read until
    every stream in ``streams`` ended or was reset, or a GOAWAY, or EOF.  What came back,
    without WINDOW_UPDATE timing and DATA frame boundaries."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = PREFACE + SettingsFrame(0).serialize() + payload
    if cut:
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
            time.sleep(0.0005)
    else:
        sock.sendall(data)
    decoder = hpack.Decoder()
    got = {"settings": None, "connection_window": None, "streams": {}, "frames": []}
    waiting, buffer = set(streams), b""
    pending_updates = list(window_updates)
    with sock:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                got["frames"].append("EOF")
                return got
            buffer += chunk
            while len(buffer) >= 9:
                frame, length = Frame.parse_frame_header(memoryview(buffer[:9]))
                if len(buffer) < 9 + length:
                    break
                frame.parse_body(memoryview(buffer[9:9 + length]))
                buffer = buffer[9 + length:]
                stream = got["streams"].setdefault(frame.stream_id, {}) if frame.stream_id else None
                if isinstance(frame, SettingsFrame):
                    if "ACK" not in frame.flags:
                        got["settings"] = dict(frame.settings)
                        ack = SettingsFrame(0)
                        ack.flags.add("ACK")
                        sock.sendall(ack.serialize())
                elif isinstance(frame, WindowUpdateFrame):
                    if frame.stream_id == 0 and got["connection_window"] is None:
                        got["connection_window"] = frame.window_increment
                elif isinstance(frame, HeadersFrame):
                    fields = [(k, v) for k, v in decoder.decode(frame.data) if k != "date"]
                    stream.setdefault("heads", []).append(fields)
                elif isinstance(frame, DataFrame):
                    stream["body"] = stream.get("body", b"") + frame.data
                    stream["received"] = stream.get("received", 0) + frame.flow_controlled_length
                    if stream["received"] > stream.get("granted", 65535):
                        stream["over_window"] = True
                    if pending_updates and stream["received"] == stream.get("granted", 65535):
                        # The window is spent: the server must stop until we give more.
                        update = pending_updates.pop(0)
                        stream["granted"] = stream.get("granted", 65535) + update
                        sock.sendall(_window_update(frame.stream_id, update)
                                     + _window_update(0, update))
                elif isinstance(frame, RstStreamFrame):
                    got["frames"].append(("RST_STREAM", frame.stream_id, frame.error_code))
                    waiting.discard(frame.stream_id)
                elif isinstance(frame, GoAwayFrame):
                    got["frames"].append(("GOAWAY", frame.last_stream_id, frame.error_code))
                    return got
                elif isinstance(frame, PingFrame):
                    got["frames"].append(("PING", frame.opaque_data, "ACK" in frame.flags))
                if stream is not None and "END_STREAM" in frame.flags:
                    stream["ended"] = True
                    waiting.discard(frame.stream_id)
                if streams and not waiting:
                    return got


def _window_update(stream_id, increment):
    frame = WindowUpdateFrame(stream_id)
    frame.window_increment = increment
    return frame.serialize()


def _request(stream_id, path, method="GET", extra=(), end=True):
    frame = HeadersFrame(stream_id)
    frame.data = hpack.Encoder().encode([(":method", method), (":scheme", "http"),
                                         (":authority", "a.test"), (":path", path), *extra])
    frame.flags.add("END_HEADERS")
    if end:
        frame.flags.add("END_STREAM")
    return frame.serialize()


def _data(stream_id, data, end=False):
    frame = DataFrame(stream_id)
    frame.data = data
    if end:
        frame.flags.add("END_STREAM")
    return frame.serialize()


def _ping():
    frame = PingFrame(0)
    frame.opaque_data = b"parity!!"
    return frame.serialize()


def both(pair, port_name, payload, **kwargs):
    return [exchange(pair[name][port_name], payload, **kwargs) for name in ("nghttp2", "h2")]


def _echo(answer, stream_id):
    """What the upstream received for a stream (the echo backend's JSON), less its port."""
    echo = json.loads(answer["streams"][stream_id]["body"])
    echo["headers"] = [h for h in echo["headers"] if h[0] != "host"]
    return echo


# Valid input, whole and cut at every byte ------------------------------------------------

VALID = (_request(1, "/hello?x=1", extra=[("cookie", "a=1"), ("cookie", "b=2")]) + _ping()
         + _request(3, "/proxy/echo?y=2", "POST", [("content-type", "text/plain")], end=False)
         + _data(3, b"part one, ") + _data(3, b"part two", end=True))


@pytest.mark.parametrize("cut", [False, True], ids=["whole", "every-byte"])
def test_the_same_frames_give_the_same_answers(pair, cut):
    ours, theirs = both(pair, "h2c", VALID, streams=(1, 3), cut=cut)
    for answer in (ours, theirs):
        # nginx's settings and its connection window, opened at once.
        assert answer["settings"][SettingsFrame.INITIAL_WINDOW_SIZE] == 65536
        assert answer["settings"][SettingsFrame.MAX_FRAME_SIZE] == 2 ** 24 - 1
        assert answer["settings"][SettingsFrame.MAX_CONCURRENT_STREAMS] == 128
        assert answer["connection_window"] == 2 ** 31 - 1 - 65535
        assert ("PING", b"parity!!", True) in answer["frames"]
    # h2 also lists settings at their defaults (HEADER_TABLE_SIZE 4096, ENABLE_PUSH 0, ...):
    # the same in effect, so only the three nginx sends are compared.
    keys = (SettingsFrame.INITIAL_WINDOW_SIZE, SettingsFrame.MAX_FRAME_SIZE,
            SettingsFrame.MAX_CONCURRENT_STREAMS)
    assert [ours["settings"][k] for k in keys] == [theirs["settings"][k] for k in keys]
    assert ours["frames"] == theirs["frames"]
    assert ours["streams"][1] == theirs["streams"][1]
    assert ours["streams"][1]["body"] == b"HTTP/2.0|GET /hello?x=1 HTTP/2.0|a.test|h2c|a=1; b=2\n"
    # What the handler sent upstream: the same method, target, fields and body.
    assert _echo(ours, 3) == _echo(theirs, 3)
    assert _echo(ours, 3)["body_length"] == len(b"part one, part two")
    for answer in (ours, theirs):
        assert answer["streams"][3]["heads"][0][0] == (":status", "200")
        assert answer["streams"][3]["ended"]


def _length_requests():
    """Stream 1: a HEADERS frame with padding and priority fields; stream 3: a block split
    over HEADERS and two CONTINUATION frames. Each block's length as it came."""
    fields = [(":method", "GET"), (":scheme", "http"), (":authority", "a.test"),
              (":path", "/len"), ("x-filler", "f" * 200)]
    padded_block = hpack.Encoder().encode(fields)
    padded = HeadersFrame(1)
    padded.data = padded_block
    padded.pad_length = 17
    for flag in ("END_HEADERS", "END_STREAM", "PADDED", "PRIORITY"):
        padded.flags.add(flag)
    padded.depends_on, padded.stream_weight = 0, 15
    split_block = hpack.Encoder().encode(fields)
    first = HeadersFrame(3)
    first.data = split_block[:50]
    first.flags.add("END_STREAM")
    middle = ContinuationFrame(3)
    middle.data = split_block[50:100]
    last = ContinuationFrame(3)
    last.data = split_block[100:]
    last.flags.add("END_HEADERS")
    payload = padded.serialize() + first.serialize() + middle.serialize() + last.serialize()
    return payload, len(padded_block), len(split_block)


def test_request_length_is_the_block_as_it_came_alike(pair):
    # nginx's $request_length: the header block without padding or priority fields, its
    # CONTINUATION frames included (and the DATA bytes, test_http2.py compares with nginx).
    payload, padded_length, split_length = _length_requests()
    ours, theirs = both(pair, "h2c", payload, streams=(1, 3))
    bodies = [(answer["streams"][1]["body"], answer["streams"][3]["body"])
              for answer in (ours, theirs)]
    assert bodies[0] == bodies[1] == (b"%d" % padded_length, b"%d" % split_length)


# Malformed input, limits, too many streams ------------------------------------------------

@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_input_is_refused_alike(pair, case):
    payload, expected = MALFORMED[case]
    ours, theirs = both(pair, "h2c", payload)
    assert ours["frames"] == theirs["frames"]
    assert [f for f in ours["frames"] if f[0] == "GOAWAY"] == [expected]


@pytest.mark.parametrize("payload, expected", [
    (_headers([("X-Upper", "1")]), ("RST_STREAM", 1, 1)),
    (_headers([("x y", "1")]), ("RST_STREAM", 1, 1)),
    (_headers([("x:y", "1")]), ("RST_STREAM", 1, 1)),
    (_headers(pseudo=[(":method", "GET"), (":scheme", "http")]), ("HEADERS", "400")),
], ids=["uppercase field name", "space in a field name", "colon in a field name", "no :path"])
def test_malformed_requests_are_stream_errors_alike(pair, payload, expected):
    ours, theirs = both(pair, "h2c", payload, streams=(1,))
    assert ours["frames"] == theirs["frames"]
    assert ours["streams"].get(1, {}).get("heads") == theirs["streams"].get(1, {}).get("heads")
    if expected[0] == "RST_STREAM":
        assert ours["frames"] == [expected]
    else:
        assert dict(ours["streams"][1]["heads"][0])[":status"] == expected[1]


def test_streams_over_the_limit_are_refused_alike(pair):
    payload = b"".join(_request(i, "/echo", "POST", end=False) for i in (1, 3, 5))
    payload += _data(1, b"one", end=True) + _data(3, b"three", end=True)
    ours, theirs = both(pair, "limited", payload, streams=(1, 3, 5))
    assert ours["frames"] == theirs["frames"] == [("RST_STREAM", 5, 7)]     # REFUSED_STREAM
    assert ours["settings"][SettingsFrame.MAX_CONCURRENT_STREAMS] == 2
    assert [_echo(ours, i)["body_length"] for i in (1, 3)] == [3, 5]
    assert [_echo(theirs, i)["body_length"] for i in (1, 3)] == [3, 5]


# Flow control -------------------------------------------------------------------------

def test_a_flow_control_stall_is_waited_out_alike(pair):
    """A 65535-byte stream window for a 200000-byte answer: the server stops when it is spent
    and goes on only as WINDOW_UPDATEs come, never past the window."""
    updates = [30000, 50000, 60000]
    n = 65535 + sum(updates)
    ours, theirs = both(pair, "h2c", _request(1, f"/proxy/big?n={n}"), streams=(1,),
                        window_updates=updates)
    for answer in (ours, theirs):
        stream = answer["streams"][1]
        assert stream.get("ended") and not stream.get("over_window")
        assert len(stream["body"]) == n
    assert ours["streams"][1]["body"] == theirs["streams"][1]["body"]
    assert ours["frames"] == theirs["frames"] == []


# The session alone, byte by byte (no socket coalescing the writes) ----------------------

def _session_events(chunks):
    """Every event H2Session gives for ``chunks`` fed in order (stream bodies joined)."""
    from _fastpath.h2session import DATA, H2Session
    session = H2Session(128, 64 * 1024, 32 * 1024, 65536, 2 ** 24 - 1)
    session.data_to_send()
    events, bodies = [], {}
    for chunk in chunks:
        for event in session.receive(chunk):
            if event[0] == DATA:
                bodies[event[1]] = bodies.get(event[1], b"") + event[2]
            else:
                events.append(event)
    return events, bodies, session


def test_the_session_gives_the_same_events_for_input_cut_at_every_byte():
    big = _request(5, "/big", extra=[("x-long", "v" * 20000)])    # over 16384: SETTINGS in force
    data = PREFACE + SettingsFrame(0).serialize() + VALID + _settings_ack() + big
    whole = _session_events([data])
    cut = _session_events([data[i:i + 1] for i in range(len(data))])
    assert whole[:2] == cut[:2]
    events, bodies, session = whole
    kinds = [(e[0], e[1]) for e in events if e[0] in (1, 3)]      # REQUEST, ENDED
    assert kinds == [(1, 1), (1, 3), (3, 3), (1, 5)]
    first = next(e for e in events if e[:2] == (1, 1))
    fields, split = first[2], first[4]
    assert split[:4] == (b"GET", b"/hello?x=1", b"a.test", b"http") and not split[5]
    assert fields == [(b"cookie", b"cookie", b"a=1; b=2")]
    assert bodies == {3: b"part one, part two"}
    assert not session.done


def _settings_ack():
    ack = SettingsFrame(0)
    ack.flags.add("ACK")
    return ack.serialize()


def test_the_compiled_session_is_selected_unless_disabled():
    import os
    import subprocess
    import sys
    code = "import gateway.http.http2 as m; print(m.Http2Connection.__name__)"
    names = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, GATEWAY_NO_EXTENSIONS=flag), check=True
                            ).stdout.strip() for flag in ("0", "1")]
    assert names == ["NgHttp2Connection", "Http2Connection"]


def _frames(data):
    """(kind, stream id, flags, payload) of each frame in ``data``."""
    out = []
    while data:
        frame, length = Frame.parse_frame_header(data[:9])
        frame.parse_body(memoryview(data[9:9 + length]))
        out.append((type(frame).__name__, frame.stream_id, frame.flags,
                    getattr(frame, "data", b"")))
        data = data[9 + length:]
    return out


def _feed(session, data):
    if isinstance(session, h2.connection.H2Connection):
        session.receive_data(data)
    else:
        session.receive(data)


@pytest.mark.parametrize("size", [100, 70000], ids=["within-the-window", "beyond-the-window"])
def test_trailers_follow_the_queued_body_alike(size):
    """add_trailer over HTTP/2: the body handed to the session, then the trailer fields with
    END_STREAM. nghttp2 sends HEADERS ahead of queued DATA unless the trailers go through the
    data provider: both sessions must frame the whole body first, then the trailers."""
    from _fastpath.h2session import H2Session
    from gateway.http.http2 import _CONFIG, _ServerH2

    opened = b""
    for stream_id in (0, 1):
        update = WindowUpdateFrame(stream_id)
        update.window_increment = 100000
        opened += update.serialize()
    results = []
    for session in (H2Session(128, 64 * 1024, 32 * 1024, 65536, 2 ** 24 - 1),
                    _ServerH2(config=_CONFIG)):
        if isinstance(session, _ServerH2):
            session.initiate_connection()
        session.data_to_send()
        _feed(session, PREFACE + SettingsFrame(0).serialize() + _request(1, "/tr")
              + _settings_ack())
        session.data_to_send()
        session.send_headers(1, [(b":status", b"200")])
        sent, body = b"", b"x" * size
        while body:
            window = session.local_flow_control_window(1)
            if not window:      # the client's 65,535 bytes are queued: it opens more
                sent += session.data_to_send()
                _feed(session, opened)
                continue
            frame = min(window, session.max_outbound_frame_size)
            session.send_data(1, body[:frame])
            body = body[frame:]
        session.send_headers(1, [(b"x-sum", b"42")], end_stream=True)
        frames = [f for f in _frames(sent + session.data_to_send())
                  if f[0] in ("HeadersFrame", "DataFrame")]
        results.append((b"".join(f[3] for f in frames if f[0] == "DataFrame"),
                        [kind for kind, _ in itertools.groupby(f[0] for f in frames)],
                        [f[0] for f in frames if "END_STREAM" in f[2]]))
    assert results[0] == results[1] == \
        (b"x" * size, ["HeadersFrame", "DataFrame", "HeadersFrame"], ["HeadersFrame"])
