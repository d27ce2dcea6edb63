"""A request head that arrives in pieces: the same decisions as the whole head, as soon as the
whole head would give them, for linear work (gateway/http/pending_head.py).

The client connections of both twins are driven over fake transports (tests/http/test_protocol_parity.py).
"""

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.http import connection as py_connection
from gateway.http import parser, pending_head
from tests.http.test_parser_properties import mutated, request_bytes
from tests.http.test_protocol_parity import Harness, compiled_class

CLASSES = {"python": lambda: py_connection.ClientConnection, "cython": compiled_class}


async def deliver(conn_class, tmp_path, pieces):
    """Everything the connection wrote and closed, to the client and upstream, for these pieces."""
    harness = Harness(conn_class, tmp_path)
    for piece in pieces:
        await harness.send(piece)
    merged = []     # a body relayed as it arrives comes in as many writes as pieces: join them
    for event in harness.transcript()[0]:
        if merged and event[1] == "write" and merged[-1][:2] == event[:2]:
            merged[-1] = (*event[:2], merged[-1][2] + event[2])
        else:
            merged.append(event)
    return merged


def cut(data, points):
    """data in pieces at the given cut points."""
    edges = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(edges, edges[1:]) if b > a]


@pytest.mark.parametrize("kind", sorted(CLASSES))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(request_bytes, mutated(request_bytes)),
       points=st.lists(st.integers(0, 10_000), max_size=12), bytewise=st.booleans())
def test_pieces_decide_as_the_whole_head(kind, tmp_path_factory, data, points, bytewise):
    conn_class = CLASSES[kind]()
    pieces = [data[i:i + 1] for i in range(len(data))] if bytewise else cut(data, points)
    whole = asyncio.run(deliver(conn_class, tmp_path_factory.mktemp("whole"), [data]))
    split = asyncio.run(deliver(conn_class, tmp_path_factory.mktemp("split"), pieces))
    assert split == whole


@pytest.mark.parametrize("kind", sorted(CLASSES))
async def test_a_bad_line_is_answered_before_the_head_ends(kind, tmp_path):
    harness = Harness(CLASSES[kind](), tmp_path)
    for piece in (b"GET / HTTP/1.1\r\nHost: parity.test\r\nBad ", b"Li", b"ne\r\n"):
        await harness.send(piece)
    written = b"".join(e[2] for e in harness.events if e[:2] == ("client", "write"))
    assert written.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert ("client", "close") in [e[:2] for e in harness.events]


@pytest.mark.parametrize("kind", sorted(CLASSES))
async def test_a_too_long_line_is_answered_before_the_head_ends(kind, tmp_path):
    harness = Harness(CLASSES[kind](), tmp_path)
    await harness.send(b"GET / HTTP/1.1\r\nHost: parity.test\r\nX-Long: ")
    for _ in range(82):                     # 8,200 bytes: over the 8k of large_client_header_buffers
        await harness.send(b"v" * 100)
    written = b"".join(e[2] for e in harness.events if e[:2] == ("client", "write"))
    assert written.startswith(b"HTTP/1.1 431 ") or written.startswith(b"HTTP/1.1 400 "), written[:40]


async def test_a_head_sent_a_byte_at_a_time_costs_linear_work(tmp_path, monkeypatch):
    """Each byte of a 30 KB head is looked at a bounded number of times: the whole head is
    parsed at most twice, and the lines that arrive are checked once each."""
    head = (b"GET /ret HTTP/1.1\r\nHost: parity.test\r\n"
            + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 90) for i in range(300)) + b"\r\n")
    parsed, checked = [], []
    real_parse, real_check = parser.parse_request_head, pending_head.check_request_head_lines
    monkeypatch.setattr(parser, "parse_request_head",
                        lambda buf, *a: parsed.append(len(buf)) or real_parse(buf, *a))
    monkeypatch.setattr(pending_head, "check_request_head_lines",
                        lambda chunk, *a: checked.append(len(chunk)) or real_check(chunk, *a))
    harness = Harness(py_connection.ClientConnection, tmp_path)
    harness.app.default_server(harness.client.listen_key).large_client_header_buffers = (4, 32768)
    for i in range(len(head)):
        harness.client.data_received(head[i:i + 1])
    written = b"".join(e[2] for e in harness.events if e[:2] == ("client", "write"))
    assert written.startswith(b"HTTP/1.1 200 OK\r\n"), written[:60]
    assert len(parsed) <= 3 and sum(parsed) <= 3 * len(head), parsed[:10]
    assert sum(checked) <= 2 * len(head)
