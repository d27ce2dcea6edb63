"""The one-pass response-head scanner of _fastpath/httpparse.pyx against the twin's composition.

scan_response_head() (C only, reached through the _scan_response_head test hook)
must give what proxy.py computes from parse_response_head(), response_body_framing()
and its HIDDEN_RESPONSE filter loop: the same fields, framing and Connection: close,
or the same exception class and message.
"""

import random
import subprocess
import sys

import pytest

# No skip: CI builds the extensions before the tests, so a missing module is a failure.
from _fastpath import httpparse
from gateway.errors import InvalidUpstreamResponse
from gateway.http import parser_py
from gateway.http.plan import HIDDEN_RESPONSE

MAX_HEAD = 65536

NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 11:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\n"
    b"hello, world\n"
)
NGINX_CHUNKED = (
    b"HTTP/1.1 404 Not Found\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 11:00:00 GMT\r\n"
    b"Content-Type: text/html\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    b"Vary: Accept-Encoding\r\nContent-Encoding: gzip\r\n\r\n"
)
NGINX_REDIRECT = (
    b"HTTP/1.1 301 Moved Permanently\r\nServer: nginx/1.22.1\r\n"
    b"Date: Thu, 26 Nov 2026 11:00:00 GMT\r\nContent-Type: text/html\r\n"
    b"Content-Length: 169\r\nConnection: keep-alive\r\nLocation: http://example.com/a/\r\n"
    b"X-Accel-Redirect: /internal\r\nKeep-Alive: timeout=5\r\n\r\n"
)
APP = (
    b"HTTP/1.0 200 OK\nserver: gunicorn\nset-cookie: a=1; Path=/\nSET-COOKIE: b=2\n"
    b"x-pad: avoid browser bug\ncache-control: no-cache\n\n"
)

LONG_NAME = b"X-" + b"Long" * 20


def status_head(status=b"200 OK", version=b"1.1"):
    return b"HTTP/" + version + b" " + status + b"\r\n"


def fields(*lines, end=b"\r\n"):
    return b"".join(line + end for line in lines) + end


# Hand-written heads: (label, head bytes).  Each is checked for GET and HEAD,
# with several hidden tables and max_head values around its size.
TABLE = [
    ("nginx", NGINX),
    ("nginx chunked 404", NGINX_CHUNKED),
    ("nginx redirect", NGINX_REDIRECT),
    ("app, bare LF, HTTP/1.0", APP),
    ("100 continue", status_head(b"100 Continue") + b"\r\n"),
    ("103 early hints", status_head(b"103 Early Hints")
     + fields(b"Link: </a.css>; rel=preload", b"Content-Length: x")),
    ("101 upgrade", status_head(b"101 Switching Protocols")
     + fields(b"Upgrade: websocket", b"Connection: Upgrade", b"Sec-WebSocket-Accept: abc=")),
    ("204 with bad length", status_head(b"204 No Content") + fields(b"Content-Length: -1")),
    ("304 with duplicate length", status_head(b"304 Not Modified")
     + fields(b"Content-Length: 1", b"Content-Length: 1", b"ETag: \"x\"")),
    ("199 with chunked", status_head(b"199 Whatever") + fields(b"Transfer-Encoding: chunked")),
    ("chunked", status_head() + fields(b"Transfer-Encoding: chunked")),
    ("Chunked upper", status_head() + fields(b"transfer-encoding: CHUNKED")),
    ("gzip, chunked", status_head() + fields(b"Transfer-Encoding: gzip, chunked")),
    ("chunked, gzip", status_head() + fields(b"Transfer-Encoding: chunked, gzip")),
    ("chunked trailing comma", status_head() + fields(b"Transfer-Encoding: chunked , ,\t,")),
    ("chunked with tab item", status_head() + fields(b"Transfer-Encoding: gzip,\tchunked\t")),
    ("chunked glued", status_head() + fields(b"Transfer-Encoding: gzip,chunkedx")),
    ("TE empty", status_head() + fields(b"Transfer-Encoding:", b"Content-Length: 5")),
    ("TE commas only", status_head() + fields(b"Transfer-Encoding: , ,")),
    ("TE on two fields", status_head()
     + fields(b"Transfer-Encoding: gzip", b"X-A: b", b"transfer-Encoding: chunked")),
    ("TE two fields, chunked first", status_head()
     + fields(b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip")),
    ("TE two fields, empty last", status_head()
     + fields(b"Transfer-Encoding: chunked", b"Transfer-Encoding: ")),
    ("TE and length", status_head() + fields(b"Content-Length: 10", b"Transfer-Encoding: chunked")),
    ("TE and bad length", status_head() + fields(b"Content-Length: zz", b"Transfer-Encoding: gzip")),
    ("duplicate length", status_head() + fields(b"Content-Length: 5", b"Content-Length: 5")),
    ("duplicate length, odd case", status_head() + fields(b"content-length: 5", b"CONTENT-LENGTH: 6")),
    ("duplicate length with TE", status_head()
     + fields(b"Transfer-Encoding: chunked", b"Content-Length: 5", b"Content-Length: 5")),
    ("length 0", status_head() + fields(b"Content-Length: 0")),
    ("length with spaces", status_head() + fields(b"Content-Length: \t 42 \t")),
    ("length leading zeros", status_head() + fields(b"Content-Length: 0007")),
    ("length +1", status_head() + fields(b"Content-Length: +1")),
    ("length -1", status_head() + fields(b"Content-Length: -1")),
    ("length 1 2", status_head() + fields(b"Content-Length: 1 2")),
    ("length 1,1", status_head() + fields(b"Content-Length: 1,1")),
    ("length empty", status_head() + fields(b"Content-Length:")),
    ("length int64 max", status_head() + fields(b"Content-Length: 9223372036854775807")),
    ("length int64 max + 1", status_head() + fields(b"Content-Length: 9223372036854775808")),
    ("length huge", status_head() + fields(b"Content-Length: " + b"9" * 40)),
    ("length obs-text digit", status_head() + fields(b"Content-Length: \xd9\xa1")),
    ("no framing fields", status_head() + fields(b"Content-Type: text/plain")),
    ("no fields at all", status_head() + b"\r\n"),
    ("mixed-case names", status_head()
     + fields(b"cOnTeNt-TyPe: a", b"X-Request-ID: 7", b"etag: \"1\"", b"CONTENT-length: 3")),
    ("hidden names in odd case", status_head()
     + fields(b"SERVER: x", b"dAtE: y", b"X-Accel-Expires: 0", b"x-ACCEL-buffering: no",
              b"Keep-alive: timeout=5", b"PROXY-connection: close", b"Upgrade: h2c",
              b"TRAILER: x", b"X-Pad: pad", b"X-Accel-Charset: utf-8",
              b"x-accel-limit-rate: 0", b"Transfer-ENCODING: chunked", b"Kept: yes")),
    ("near-hidden names", status_head()
     + fields(b"Dates: 1", b"Serve: 2", b"X-Accel: 3", b"Connections: close",
              b"Connectio: close", b"Upgrade-Insecure: 1")),
    ("connection close", status_head() + fields(b"Connection: close")),
    ("connection Close in list", status_head() + fields(b"Connection: Upgrade, CLOSE")),
    ("connection closed glued", status_head() + fields(b"Connection: xcloseY")),
    ("connection clos", status_head() + fields(b"Connection: clos", b"Connection: e")),
    ("connection second field", status_head()
     + fields(b"Connection: keep-alive", b"connection: close")),
    ("connection empty", status_head() + fields(b"Connection:")),
    ("value spaces and tabs", status_head()
     + fields(b"X-A: \t  a \t b\t  ", b"X-B:\tb", b"X-C:c", b"X-D:    ")),
    ("empty values", status_head() + fields(b"X-Empty:", b"X-Blank: ", b"X-Tab:\t")),
    ("obs-text", status_head(b"200 \xe2\x9c\x93 fine")
     + fields(b"X-Utf8: caf\xc3\xa9", b"X-High: \x80\xff")),
    ("bare LF", status_head().replace(b"\r\n", b"\n") + fields(b"A: 1", b"Content-Length: 2", end=b"\n")),
    ("mixed line ends", b"HTTP/1.1 200 OK\nA: 1\r\nB: 2\n\r\n"),
    ("CR inside value", status_head() + b"X-A: a\rb\r\n\r\n"),
    ("CR CR LF", status_head() + b"X-A: a\r\r\n\r\n"),
    ("HTTP/1.0", status_head(version=b"1.0") + fields(b"Content-Length: 3")),
    ("no reason", b"HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n"),
    ("empty reason", b"HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\n"),
    ("reason with tab", b"HTTP/1.1 200 \tOK\t\r\n\r\n"),
    ("status 999", status_head(b"999 X") + b"\r\n"),
    ("long name not hidden", status_head() + fields(LONG_NAME + b": 1")),
    ("long name hidden", status_head() + fields(LONG_NAME.lower() + b": 1", b"A: b")),
    # Invalid status lines.
    ("HTTP/1.2", b"HTTP/1.2 200 OK\r\n\r\n"),
    ("HTTP/2", b"HTTP/2 200 OK\r\n\r\n"),
    ("lowercase http", b"http/1.1 200 OK\r\n\r\n"),
    ("status 099", b"HTTP/1.1 099 X\r\n\r\n"),
    ("status 20", b"HTTP/1.1 20 OK\r\n\r\n"),
    ("status 2000", b"HTTP/1.1 2000 OK\r\n\r\n"),
    ("status letters", b"HTTP/1.1 2x0 OK\r\n\r\n"),
    ("two spaces", b"HTTP/1.1  200 OK\r\n\r\n"),
    ("no space before reason", b"HTTP/1.1 200OK\r\n\r\n"),
    ("control in reason", b"HTTP/1.1 200 O\x01K\r\n\r\n"),
    ("DEL in reason", b"HTTP/1.1 200 O\x7fK\r\n\r\n"),
    ("HTTP/0.9 style", b"<html>\r\n\r\n"),
    ("empty status line", b"\r\n\r\n"),
    ("ICY", b"ICY 200 OK\r\n\r\n"),
    # Invalid header lines.
    ("space before colon", status_head() + fields(b"Content-Length : 3")),
    ("tab before colon", status_head() + fields(b"Server\t: x")),
    ("no colon", status_head() + fields(b"Server x")),
    ("empty name", status_head() + fields(b": x")),
    ("obs-fold", status_head() + fields(b"X-A: a", b" folded")),
    ("tab obs-fold", status_head() + fields(b"X-A: a", b"\tfolded")),
    ("NUL in value", status_head() + fields(b"X-A: a\x00b")),
    ("control in value", status_head() + fields(b"X-A: a\x1bb")),
    ("DEL in value", status_head() + fields(b"X-A: a\x7f")),
    ("non-token in name", status_head() + fields(b"X(A): 1")),
    ("obs-text in name", status_head() + fields(b"X-\xe9: 1")),
    ("invalid after hidden", status_head() + fields(b"Server: x", b"Bad Line")),
    # Many fields: the span table outgrows its stack array (64), several times.
    ("65 fields", status_head() + fields(*[b"X-F%d: %d" % (i, i) for i in range(65)])),
    ("300 mixed fields", status_head() + fields(
        *[b"Date: d%d" % i if i % 3 == 0 else b"X-F%d: v" % i for i in range(300)],
        b"Content-Length: 300")),
    ("64 hidden then 64 kept", status_head() + fields(
        *([b"Server: s"] * 64 + [b"X-K: k"] * 64))),
    ("1000 fields, invalid last", status_head() + fields(
        *([b"X-F: v"] * 1000 + [b"X F: v"]))),
]

HIDDEN_TABLES = {
    "plan": HIDDEN_RESPONSE,
    "none": frozenset(),
    "custom": frozenset({b"x-a", b"content-length", b"a", LONG_NAME.lower(),
                         b"Server", b"x-f7"}),     # "Server": never matches, as in Python
}


@pytest.fixture
def hidden():
    """Set the scanner's hidden names for one test, then put back what was there."""
    previous = httpparse._set_hidden_response(HIDDEN_RESPONSE)

    def use(names):
        httpparse._set_hidden_response(names)
        return names

    yield use
    httpparse._set_hidden_response(previous)


def reference(buf, max_head, head_request, hidden_names):
    """What proxy.py computes from the pure-Python twin, in the scanner's result shape."""
    head = parser_py.parse_response_head(buf, max_head)
    if head is None:
        return None
    version, status, _reason, headers, consumed = head
    try:
        kind, length = parser_py.response_body_framing(
            status, headers, b"HEAD" if head_request else b"GET")
    except InvalidUpstreamResponse:
        kind, length = "error", 0
    close = False
    lines = []
    for lower, name, value in headers:
        if lower == b"connection" and b"close" in value.lower():
            close = True
        if lower in hidden_names:
            continue
        lines.append(b"%s: %s\r\n" % (name, value))
    return version, status, consumed, kind, length, close, b"".join(lines)


def outcome(fn, *args):
    """fn's result, or the class and message of what it raised."""
    try:
        return "returned", fn(*args)
    except Exception as exc:    # noqa: BLE001 - compared, not handled
        return "raised", type(exc), str(exc)


def check(buf, max_head, head_request, hidden_names, label=""):
    expected = outcome(reference, buf, max_head, head_request, hidden_names)
    got = outcome(httpparse._scan_response_head, buf, max_head, head_request)
    assert got == expected, (label, buf, max_head, head_request)
    return got


@pytest.mark.parametrize("table", sorted(HIDDEN_TABLES))
@pytest.mark.parametrize("label,data", TABLE, ids=[label for label, _ in TABLE])
def test_table(hidden, table, label, data):
    names = hidden(HIDDEN_TABLES[table])
    sizes = {0, 1, 12, len(data) - 1, len(data), len(data) + 1, MAX_HEAD}
    for cut in (data.find(b"\r\n\r\n"), data.find(b"\n\n")):
        if cut >= 0:
            sizes.update({cut, cut + 1, cut + 2, cut + 3, cut + 4, cut + 5})
    for head_request in (False, True):
        for max_head in sorted(size for size in sizes if size >= 0):
            check(data, max_head, head_request, names, label)
        # Trailing body bytes and a following message are not part of the head.
        check(data + b"HTTP/1.1 200 OK\r\n", MAX_HEAD, head_request, names, label)


def test_table_covers_every_framing_and_error(hidden):
    """The table reaches each outcome, so the parity checks above mean something."""
    names = hidden(HIDDEN_RESPONSE)
    seen = set()
    for _label, data in TABLE:
        result = check(data, MAX_HEAD, False, names)
        if result[0] == "raised":
            seen.add(result[2])
        else:
            seen.add(result[1][3])
            if result[1][5]:
                seen.add("connection_close")
    assert seen >= {"none", "length", "chunked", "close", "error", "connection_close",
                    "upstream sent no valid HTTP/1.0 header", "upstream sent invalid header"}


def test_nginx_head(hidden):
    hidden(HIDDEN_RESPONSE)
    assert httpparse._scan_response_head(NGINX, MAX_HEAD, False) == (
        11, 200, len(NGINX) - 13, "length", 13, False,
        b"Content-Type: text/plain\r\nContent-Length: 13\r\n")
    assert httpparse._scan_response_head(NGINX, MAX_HEAD, True)[3:5] == ("none", 0)
    assert httpparse._scan_response_head(NGINX_CHUNKED, MAX_HEAD, False)[3:] == (
        "chunked", 0, True,
        b"Content-Type: text/html\r\nVary: Accept-Encoding\r\nContent-Encoding: gzip\r\n")


def test_too_big(hidden):
    names = hidden(HIDDEN_RESPONSE)
    for data in (NGINX, b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 100, b"HTTP/1.1 200 OK" + b"a" * 100):
        for max_head in range(0, len(data) + 2):
            check(data, max_head, False, names)
    with pytest.raises(InvalidUpstreamResponse, match="upstream sent too big header"):
        httpparse._scan_response_head(NGINX, 100, False)


PREFIX_HEADS = [NGINX, NGINX_CHUNKED, NGINX_REDIRECT, APP,
                status_head(b"100 Continue") + b"\r\n" + NGINX,
                b"HTTP/1.1 200\r\nX-A:\r\nX-B: \t\r\n\r\n",
                status_head() + fields(*[b"X-F%d: %d" % (i, i) for i in range(70)])]


@pytest.mark.parametrize("index", range(len(PREFIX_HEADS)))
def test_every_prefix(hidden, index):
    names = hidden(HIDDEN_RESPONSE)
    data = PREFIX_HEADS[index]
    results = set()
    for cut in range(len(data) + 1):
        for max_head in (MAX_HEAD, len(data) // 2, 20):
            result = check(data[:cut], max_head, cut % 2 == 1, names)
            results.add(result[0] if result[0] == "raised" else result[1] is None)
    assert results == {True, False, "raised"}  # incomplete, complete and too big all seen


# Seeded random heads ---------------------------------------------------------

NAMES = [b"Content-Length", b"content-length", b"Transfer-Encoding", b"TRANSFER-encoding",
         b"Connection", b"connection", b"Server", b"DATE", b"Keep-Alive", b"Upgrade",
         b"X-Accel-Redirect", b"Content-Type", b"Set-Cookie", b"X-A", b"a", b"ETag",
         b"Vary", b"Trailer", b"Proxy-Connection", b"X-Pad", LONG_NAME]
VALUES = [b"", b" ", b"\t", b"0", b"13", b"007", b" 42 ", b"-1", b"+1", b"1 2", b"1,1",
          b"9223372036854775807", b"9223372036854775808", b"9" * 25, b"chunked",
          b"CHUNKED", b"gzip, chunked", b"chunked, gzip", b"chunked,", b", ,", b"gzip",
          b"\tchunked\t", b"close", b"Keep-Alive", b"upgrade, Close", b"xclosex", b"clos",
          b"text/html; charset=utf-8", b"caf\xc3\xa9", b"\x80\xff", b"a\tb", b"  a  b  "]
STATUS = [b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK", b"HTTP/1.1 204 No Content",
          b"HTTP/1.1 304 Not Modified", b"HTTP/1.1 100 Continue", b"HTTP/1.1 101 Switching",
          b"HTTP/1.1 404", b"HTTP/1.1 502 Bad Gateway", b"HTTP/1.1 199 X", b"HTTP/1.1 205 ",
          b"HTTP/1.1 999 \xe2\x9c\x93"]
BAD_STATUS = [b"HTTP/1.1 099 X", b"HTTP/1.2 200 OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 200\x01"]
# Well-formed framing fields, so that valid framings come up as often as errors.
GOOD = [b"Content-Length: 13", b"content-length: 0", b"Transfer-Encoding: chunked",
        b"Transfer-Encoding: gzip", b"Connection: close", b"Connection: keep-alive",
        b"Server: nginx", b"X-A: b"]
NOISE = b"\x00\x01\t\n\r \x7f\x80\xff:,;\"()ACcdekloszt019+-"


def random_head(rng):
    eol = rng.choice([b"\r\n", b"\r\n", b"\n"])
    lines = [rng.choice(STATUS if rng.random() < 0.9 else BAD_STATUS)]
    for _ in range(rng.choice([0, 1, 2, 3, 5, 8, 20, 70])):
        if rng.random() < 0.6:
            lines.append(rng.choice(GOOD))
            continue
        name = rng.choice(NAMES)
        value = rng.choice(VALUES)
        if rng.random() < 0.3:
            value = rng.choice(VALUES) + rng.choice([b",", b" ", b""]) + value
        lines.append(name + rng.choice([b": ", b":", b":\t", b":  "]) + value)
    data = b"".join(line + (eol if rng.random() < 0.9 else rng.choice([b"\r\n", b"\n"]))
                    for line in lines) + eol
    data = bytearray(data)
    for _ in range(rng.choice([0, 0, 0, 0, 1, 1, 2, 4])):
        op = rng.randrange(4)
        # Mostly past the status line: a broken one hides everything after it.
        at = rng.randrange(0 if rng.random() < 0.2 else len(lines[0]), len(data) + 1)
        if op == 0 and at < len(data):
            data[at] = rng.choice(NOISE)
        elif op == 1:
            data[at:at] = bytes([rng.choice(NOISE)])
        elif op == 2 and at < len(data):
            del data[at]
        else:
            data[at:at] = rng.choice(lines[1:] or lines) + eol
    if rng.random() < 0.15:
        del data[rng.randrange(len(data) + 1):]
    if rng.random() < 0.2:
        data += rng.choice([b"body", b"HTTP/1.1 200 OK\r\n\r\n", b"\r\n"])
    return bytes(data)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_heads(hidden, seed):
    rng = random.Random(seed)
    kinds = {}
    for index in range(1500):
        names = hidden(rng.choice(list(HIDDEN_TABLES.values())))
        data = random_head(rng)
        max_head = rng.choice([MAX_HEAD] * 6 + [len(data), len(data) - 1, rng.randrange(64)])
        result = check(data, max_head, rng.random() < 0.2, names, f"seed {seed} #{index}")
        key = result[2] if result[0] == "raised" else (
            "incomplete" if result[1] is None else result[1][3])
        kinds[key] = kinds.get(key, 0) + 1
    # The generator must reach every path often enough to mean something.
    for key in ("incomplete", "none", "length", "chunked", "close", "error",
                "upstream sent too big header", "upstream sent invalid header",
                "upstream sent no valid HTTP/1.0 header"):
        assert kinds.get(key, 0) >= 10, (key, kinds)


def test_nothing_hidden_before_set():
    """A fresh import hides nothing until set_hidden_response() is called."""
    code = ("from _fastpath import httpparse as h\n"
            "r = h._scan_response_head(b'HTTP/1.1 200 OK\\r\\nServer: a\\r\\nDate: b\\r\\n\\r\\n',"
            " 999, False)\n"
            "assert r[6] == b'Server: a\\r\\nDate: b\\r\\n', r\n"
            "assert h._set_hidden_response({b'date'}) == frozenset()\n"
            "assert h._set_hidden_response(set()) == {b'date'}\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hidden_names_must_be_bytes(hidden):
    hidden(HIDDEN_RESPONSE)
    with pytest.raises(TypeError):
        httpparse._set_hidden_response({"date"})
    # A refused table leaves the previous one in place.
    assert httpparse._scan_response_head(NGINX, MAX_HEAD, False)[6] == (
        b"Content-Type: text/plain\r\nContent-Length: 13\r\n")
