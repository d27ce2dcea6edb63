"""Property tests of the HTTP/1.x parser twins on generated and mutated messages.

Strategies build structurally valid request heads, response heads and chunked
bodies, then mutate them (byte flips, truncation, CR/LF variations, obs-fold,
bare CR, NUL, non-ASCII, huge, negative and duplicate framing fields).  The
properties: gateway/http/parser_py.py and _fastpath/httpparse.pyx agree exactly
(same value, or same exception class and status); they raise nothing but the
project's error classes; and on valid input they agree with llhttp (through
httptools) on method, target, version, fields and body framing, except where
we differ on purpose (each place is skipped below with its reason).

Longer runs: `.venv/bin/pytest --hypothesis-profile=fuzz tests/http/test_parser_properties.py`.
"""

import re
import string

import httptools
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.errors import BadRequest, HttpError, InvalidUpstreamResponse
from gateway.http import parser_py
from tests.http.conftest import load_parser

httpparse = load_parser("cython")

LIMITS = ((8192, 65536), (64, 256), (16, 48))    # (max_line, max_head) pairs


def outcome(call, *args, errors=HttpError):
    """The value, or the exception class, its HTTP status and message; fails on a foreign error."""
    try:
        return ("ok", call(*args))
    except errors as exc:
        return ("error", type(exc).__name__, exc.status, str(exc))


def same(name, *args, errors=HttpError):
    """Call name() in both twins; they must agree; return the outcome."""
    expected = outcome(getattr(parser_py, name), *args, errors=errors)
    got = outcome(getattr(httpparse, name), *args, errors=errors)
    assert got == expected, args
    return got


# Building valid messages ---------------------------------------------------

TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
# Field names that change llhttp's framing or connection handling; framing
# fields are added on purpose by framing_fields(), the others are left out.
SPECIAL_NAMES = {b"content-length", b"transfer-encoding", b"connection", b"upgrade",
                 b"proxy-connection", b"keep-alive"}
# Methods llhttp knows (it refuses other tokens; we take any RFC 9110 token).
LLHTTP_METHODS = [b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH",
                  b"PROPFIND", b"MKCOL", b"PURGE", b"REPORT", b"SEARCH"]

token = st.text(TCHAR, min_size=1, max_size=12).map(str.encode)
field_name = token.filter(lambda n: n.lower() not in SPECIAL_NAMES)
# VCHAR, then SP/HTAB only inside the value; obs-text is a byte >= 0x80.
vchar = st.sampled_from([bytes([c]) for c in range(0x21, 0x7f)])
obs_text = st.sampled_from([bytes([c]) for c in range(0x80, 0x100)])
value_byte = st.one_of(vchar, vchar, vchar, st.sampled_from([b" ", b"\t"]), obs_text)
field_value = st.lists(value_byte, max_size=24).map(b"".join).map(lambda v: v.strip(b" \t"))
ows = st.sampled_from([b"", b" ", b"  ", b"\t", b" \t"])
pchar = st.sampled_from([c.encode() for c in string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"]
                        + [b"%2F", b"%41", b"%c3%a9"])
segment = st.lists(pchar, max_size=8).map(b"".join)
path = st.lists(segment, min_size=1, max_size=4).map(lambda segs: b"/" + b"/".join(segs))
query = st.one_of(st.just(b""), st.lists(st.one_of(pchar, st.just(b"/"), st.just(b"?")),
                                          max_size=10).map(lambda q: b"?" + b"".join(q)))
origin_target = st.builds(lambda p, q: p + q, path, query)
absolute_target = st.builds(lambda host, port, target: b"http://" + host + port + target,
                            st.sampled_from([b"example.com", b"a.b-c", b"127.0.0.1", b"[::1]"]),
                            st.sampled_from([b"", b":80", b":8080"]), origin_target)
target = st.one_of(origin_target, origin_target, absolute_target)


@st.composite
def fields(draw, value=field_value):
    """A list of (name, value) pairs without framing or connection fields."""
    return draw(st.lists(st.tuples(field_name, value), max_size=6))


@st.composite
def framing_fields(draw, allow_chunked=True):
    """The framing fields of a message: (fields, "none"|"length"|"chunked", length)."""
    kinds = ["none", "length", "chunked"] if allow_chunked else ["none", "length"]
    kind = draw(st.sampled_from(kinds))
    if kind == "length":
        length = draw(st.integers(0, 40))
        name = draw(st.sampled_from([b"Content-Length", b"content-length", b"CONTENT-LENGTH"]))
        return [(name, str(length).encode())], kind, length
    if kind == "chunked":
        name = draw(st.sampled_from([b"Transfer-Encoding", b"transfer-encoding"]))
        return [(name, draw(st.sampled_from([b"chunked", b"Chunked", b"CHUNKED"])))], kind, 0
    return [], kind, 0


def field_lines(pairs, eol=b"\r\n", spaces=(b" ", b"")):
    """Serialise (name, value) pairs, OWS around values taken in turn from spaces."""
    out = []
    for i, (name, value) in enumerate(pairs):
        before = spaces[i % len(spaces)]
        after = spaces[(i + 1) % len(spaces)] if value else b""
        out.append(name + b":" + before + value + after + eol)
    return b"".join(out)


@st.composite
def chunked_body(draw, ext=True, trailer=True):
    """A valid chunked body: (wire bytes, decoded payload)."""
    parts = []
    payload = []
    for data in draw(st.lists(st.binary(min_size=1, max_size=20), max_size=4)):
        size = draw(st.sampled_from(["%x", "%X", "%04x", "0%x"])) % len(data)
        extension = b""
        if ext and draw(st.booleans()):
            extension = b";" + draw(token)
            if draw(st.booleans()):
                extension += b"=" + draw(token)
        parts.append(size.encode() + extension + b"\r\n" + data + b"\r\n")
        payload.append(data)
    last = draw(st.sampled_from([b"0", b"000"]))
    trailers = draw(fields()) if trailer else []
    parts.append(last + b"\r\n" + field_lines(trailers) + b"\r\n")
    return b"".join(parts), b"".join(payload)


@st.composite
def request_messages(draw, methods=st.one_of(st.sampled_from(LLHTTP_METHODS), token),
                     eols=(b"\r\n", b"\n")):
    """A valid request: (head, body, method, target, version, header pairs, framing, payload)."""
    method = draw(methods)
    tgt = b"*" if method == b"OPTIONS" and draw(st.booleans()) else draw(target)
    version = draw(st.sampled_from([10, 11]))
    eol = draw(st.sampled_from(eols))
    pairs = draw(fields())
    framing, kind, length = draw(framing_fields(allow_chunked=version == 11))
    at = draw(st.integers(0, len(pairs)))
    pairs[at:at] = framing
    spaces = draw(st.lists(ows, min_size=1, max_size=3))
    head = (method + b" " + tgt + b" HTTP/1." + str(version - 10).encode() + eol
            + field_lines(pairs, eol, spaces) + eol)
    if kind == "chunked":
        body, payload = draw(chunked_body())
    else:
        payload = body = draw(st.binary(min_size=length, max_size=length))
    return head, body, method, tgt, version, pairs, (kind, length), payload


@st.composite
def response_messages(draw, eols=(b"\r\n", b"\n")):
    """A valid response: (head, body, version, status, reason, header pairs, framing, payload)."""
    version = draw(st.sampled_from([10, 11]))
    status = draw(st.integers(100, 999))
    reason = draw(st.lists(value_byte, max_size=16).map(b"".join).map(lambda r: r.strip(b" \t")))
    eol = draw(st.sampled_from(eols))
    pairs = draw(fields())
    framing, kind, length = draw(framing_fields())
    at = draw(st.integers(0, len(pairs)))
    pairs[at:at] = framing
    line = b"HTTP/1." + str(version - 10).encode() + b" " + str(status).encode()
    if reason or draw(st.booleans()):
        line += b" " + reason
    head = line + eol + field_lines(pairs, eol, draw(st.lists(ows, min_size=1, max_size=3))) + eol
    if kind == "chunked":
        body, payload = draw(chunked_body())
    else:
        payload = body = draw(st.binary(min_size=length, max_size=length))
    return head, body, version, status, reason, pairs, (kind, length), payload


# Mutating them -------------------------------------------------------------

INSERTS = [b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"\x00", b"\x7f", b"\x80", b"\xff", b" ", b"\t",
           b"\r\n ", b"\r\n\t", b":", b";", b",", b"HTTP/1.1", b"HTTP/1.2", b"HTTP/0.9",
           b"Content-Length: 5\r\n", b"Content-Length: 5\r\n", b"Content-Length: -1\r\n",
           b"Content-Length: 99999999999999999999\r\n", b"Content-Length: 9223372036854775808\r\n",
           b"Content-Length: 1, 1\r\n", b"Content-Length: +3\r\n", b"Content-Length:\r\n",
           b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: gzip\r\n",
           b"Transfer-Encoding: chunked, chunked\r\n", b"Transfer-Encoding: identity\r\n",
           b"transfer-encoding: ,chunked\r\n", b"X: a\rb\r\n", b"X : y\r\n", b" X: y\r\n",
           b"ffffffffffffffff", b"fffffffffffffffff", b"-1", b"0x10", b"\xc3\xa9", b"caf\xc3\xa9"]


@st.composite
def mutated(draw, valid):
    """Bytes of valid (a strategy of bytes) with one to four mutations applied."""
    data = bytearray(draw(valid))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "crlf", "lf", "cr"]))
        at = draw(st.integers(0, len(data)))
        if op == "flip" and data:
            data[min(at, len(data) - 1)] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(INSERTS))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 8))]
        elif op == "crlf":
            data = bytearray(bytes(data).replace(b"\r\n", b"\n", draw(st.integers(1, 3))))
        elif op == "lf":
            data = bytearray(bytes(data).replace(b"\n", b"\r\n", draw(st.integers(1, 3))))
        elif op == "cr":
            data = bytearray(bytes(data).replace(b"\r\n", b"\r", 1))
    return bytes(data)


request_bytes = request_messages().map(lambda m: m[0] + m[1])
response_bytes = response_messages().map(lambda m: m[0] + m[1])
chunked_bytes = chunked_body().map(lambda b: b[0])


# The twins agree and raise only the project's errors -----------------------

def check_request(data):
    """Both twins on one request, at every limit; then their body framing."""
    for max_line, max_head in LIMITS:
        result = same("parse_request_head", data, max_line, max_head)
        if result[0] == "ok" and result[1] is not None:
            _method, _target, version, headers, _consumed, _odd = result[1]
            same("request_body_framing", headers, version, errors=(BadRequest, HttpError))


def check_response(data):
    """Both twins on one response head; then their body framing for each request method."""
    for max_head in (65536, 256, 48):
        result = same("parse_response_head", data, max_head, errors=InvalidUpstreamResponse)
        if result[0] == "ok" and result[1] is not None:
            _version, status, _reason, headers, _consumed = result[1]
            for method in (b"GET", b"HEAD", "HEAD"):
                same("response_body_framing", status, headers, method,
                     errors=InvalidUpstreamResponse)


@given(request_bytes)
def test_valid_requests_agree(data):
    check_request(data)
    assert parser_py.parse_request_head(data, 8192, 65536) is not None


@given(mutated(request_bytes))
def test_mutated_requests_agree(data):
    check_request(data)


@given(request_messages().map(lambda m: m[0]), st.integers(0, 255))
def test_request_one_byte_changed_anywhere(head, byte):
    """The byte at every position of a valid head replaced by one byte value, in turn."""
    for at in range(len(head)):
        data = head[:at] + bytes([byte]) + head[at + 1:]
        same("parse_request_head", data, 8192, 65536)


@given(response_messages().map(lambda m: m[0]), st.integers(0, 255))
def test_response_one_byte_changed_anywhere(head, byte):
    """The byte at every position of a valid head replaced by one byte value, in turn."""
    for at in range(len(head)):
        data = head[:at] + bytes([byte]) + head[at + 1:]
        same("parse_response_head", data, 65536, errors=InvalidUpstreamResponse)


@given(st.binary(max_size=80))
def test_any_bytes_as_request(data):
    check_request(data)
    check_request(b"GET / HTTP/1.1\r\n" + data)


@given(response_bytes)
def test_valid_responses_agree(data):
    check_response(data)
    assert parser_py.parse_response_head(data, 65536) is not None


@given(mutated(response_bytes))
def test_mutated_responses_agree(data):
    check_response(data)


@given(st.binary(max_size=80))
def test_any_bytes_as_response(data):
    check_response(data)
    check_response(b"HTTP/1.1 200 OK\r\n" + data)


@given(st.lists(st.tuples(st.sampled_from([b"content-length", b"transfer-encoding", b"x"]),
                          st.sampled_from([b"0", b"7", b"-1", b"+1", b"", b"1 1", b"1,1",
                                           b"9223372036854775807", b"9223372036854775808",
                                           b"9" * 30, b"\xd9\xa1", b"chunked", b"gzip",
                                           b"gzip, chunked", b"chunked, gzip", b",", b" chunked ",
                                           b"identity", b"chunked,chunked", b"CHUNKED"])),
                max_size=4),
       st.sampled_from([10, 11]), st.sampled_from([100, 101, 199, 200, 204, 304, 404, 999]))
def test_framing_fields_agree(pairs, version, status):
    headers = [(name, name, value) for name, value in pairs]
    same("request_body_framing", headers, version)
    for method in (b"GET", b"HEAD", "HEAD", b"POST"):
        same("response_body_framing", status, headers, method, errors=InvalidUpstreamResponse)


dot_target_piece = st.sampled_from([b"/", b".", b"..", b"/./", b"/../", b"//", b"%2e", b"%2E%2e",
                                    b"%2F", b"%25", b"%3F", b"%23", b"%00", b"%zz", b"%", b"?", b"#",
                                    b"a", b"\xc3\xa9", b"\xff", b"\x00", b";", b"[::1]", b":"])


@given(st.one_of(target, mutated(target),
                 st.lists(dot_target_piece, max_size=12).map(b"".join),
                 st.lists(dot_target_piece, max_size=12).map(lambda p: b"/" + b"".join(p)),
                 st.lists(dot_target_piece, max_size=8).map(lambda p: b"http://h" + b"".join(p))))
def test_split_target_agrees(data):
    result = same("split_target", data, errors=BadRequest)
    if result[0] == "ok":
        uri, _args, request_uri = result[1]
        assert uri.startswith("/") or uri == "*"
        assert "/../" not in uri + "/" and "/./" not in uri + "/" and "//" not in uri


# Chunked bodies ------------------------------------------------------------

def decode_in_pieces(module, data, cuts):
    """Feed data cut at cuts: (payload, consumed, done, error outcome or None)."""
    decoder = module.ChunkedDecoder()
    payload = []
    consumed = 0
    start = 0
    try:
        for end in list(cuts) + [len(data)]:
            count, pieces = decoder.feed(data[start:end], True)
            assert 0 <= count <= end - start
            consumed += count
            payload.extend(pieces)
            if decoder.done:
                break
            assert count == end - start        # a decoder that is not done takes everything
            start = end
    except BadRequest as exc:
        return b"".join(payload), consumed, decoder.done, (type(exc).__name__, exc.status, str(exc))
    return b"".join(payload), consumed, decoder.done, None


cuts_of = st.lists(st.integers(0, 400), max_size=6).map(sorted)


@given(chunked_body(), st.binary(max_size=8), cuts_of)
def test_chunked_random_splits_match_whole(body, after, cuts):
    wire, payload = body
    data = wire + after
    cuts = [min(c, len(data)) for c in cuts]
    for module in (parser_py, httpparse):
        whole = decode_in_pieces(module, data, [])
        assert whole == (payload, len(wire), True, None)
        assert decode_in_pieces(module, data, cuts) == whole


@given(chunked_body(), st.binary(max_size=4))
def test_chunked_split_at_every_byte(body, after):
    wire, payload = body
    data = wire + after
    for module in (parser_py, httpparse):
        for at in range(len(data) + 1):
            assert decode_in_pieces(module, data, [at]) == (payload, len(wire), True, None), at
        assert decode_in_pieces(module, data, range(1, len(data))) == \
            (payload, len(wire), True, None)


@given(mutated(chunked_bytes), cuts_of)
def test_mutated_chunked_agree(data, cuts):
    cuts = [min(c, len(data)) for c in cuts]
    result = decode_in_pieces(parser_py, data, cuts)
    assert decode_in_pieces(httpparse, data, cuts) == result
    # Where the body ends, or the error, does not depend on the cuts (the
    # bytes decoded before an error may: the decoder hands out what it has).
    whole = decode_in_pieces(parser_py, data, [])
    assert (whole[2], whole[3] is None) == (result[2], result[3] is None)
    if whole[3] is None:
        assert whole == result


@given(chunked_body(), st.integers(0, 255))
def test_chunked_one_byte_changed_anywhere_agree(body, byte):
    """The byte at every position of a valid body replaced by one byte value, in turn."""
    wire, _payload = body
    for at in range(len(wire)):
        data = wire[:at] + bytes([byte]) + wire[at + 1:]
        assert decode_in_pieces(httpparse, data, [at]) == decode_in_pieces(parser_py, data, [at])


# llhttp (httptools) as an oracle on valid messages -------------------------

class Recorder:
    """httptools callbacks, recorded."""

    def __init__(self):
        self.url = b""
        self.headers = []
        self.head_done = False
        self.body = b""
        self.complete = False

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        if not self.head_done:          # llhttp reports trailer fields here too
            self.headers.append((name, value))

    def on_headers_complete(self):
        self.head_done = True

    def on_body(self, body):
        self.body += body

    def on_message_complete(self):
        self.complete = True


def llhttp(parser_class, data):
    """(parser, recorder) after feeding data to llhttp."""
    recorder = Recorder()
    parser = parser_class(recorder)
    parser.feed_data(data)
    return parser, recorder


# Where we differ from llhttp on purpose, the generators stay inside what both
# define:
# * bare LF line ends: we take them (RFC 9112 2.2, nginx); llhttp's strict mode
#   refuses them.  The oracle messages use CRLF only.
# * methods: we take any RFC 9110 token, llhttp only the methods it knows.
# * field values: llhttp keeps trailing whitespace in the value it reports;
#   RFC 9112 5 excludes OWS from the field value, so we strip it.  The oracle's
#   values are compared with their trailing SP/HTAB removed.
# * Transfer-Encoding in an HTTP/1.0 request: a 400 for us (RFC 9112 6.1 lets a
#   server treat it as faulty framing), llhttp reads a chunked body.  Left out.
# * 101 responses: llhttp stops at an upgrade; we relay the head and frame the
#   body as any other 1xx (none).  Left out.
# * 1xx statuses other than 100, 102 and 103: llhttp reads a body by their
#   Content-Length or Transfer-Encoding; RFC 9112 6.3 says every 1xx response
#   ends with its head, as we frame it.  Left out.

def llhttp_takes_framing(head):
    """False where llhttp's framing is stricter than RFC 9110's: see below."""
    # llhttp refuses "Transfer-Encoding: chunked" followed by OWS holding an
    # HTAB (it allows SP alone); RFC 9110 5.5 makes HTAB as much OWS as SP.
    return re.search(rb"chunked[ \t]*\t", head, re.IGNORECASE) is None


@given(request_messages(methods=st.sampled_from(LLHTTP_METHODS), eols=(b"\r\n",)))
def test_requests_agree_with_llhttp(message):
    head, body, method, tgt, version, pairs, framing, payload = message
    ours = parser_py.parse_request_head(head + body, 8192, 65536)
    assert ours is not None
    assert ours[:3] == (method, tgt, version)
    assert ours[4] == len(head)
    assert parser_py.request_body_framing(ours[3], version) == framing
    assume(llhttp_takes_framing(head))

    parser, seen = llhttp(httptools.HttpRequestParser, head + body)
    assert parser.get_method() == method
    assert seen.url == tgt
    assert parser.get_http_version() == f"1.{version - 10}"
    assert [(name, value.rstrip(b" \t")) for name, value in seen.headers] == \
        [(name, value) for _lower, name, value in ours[3]]
    assert (seen.body, seen.complete) == (payload, True)


@given(response_messages(eols=(b"\r\n",)), st.binary(min_size=1, max_size=8))
def test_responses_agree_with_llhttp(message, extra):
    head, body, version, status, reason, pairs, framing, payload = message
    assume(status in (100, 102, 103) or status >= 200)
    assume(llhttp_takes_framing(head))
    ours = parser_py.parse_response_head(head + body, 65536)
    assert ours is not None
    assert ours[:3] == (version, status, reason)
    assert ours[4] == len(head)
    kind, length = parser_py.response_body_framing(status, ours[3], b"GET")

    parser, seen = llhttp(httptools.HttpResponseParser, head if kind == "none" else head + body)
    assert parser.get_status_code() == status
    assert parser.get_http_version() == f"1.{version - 10}"
    assert [(name, value.rstrip(b" \t")) for name, value in seen.headers] == \
        [(name, value) for _lower, name, value in ours[3]]
    if kind == "none":
        assert (seen.body, seen.complete) == (b"", True)
    elif kind == "close":
        # The body runs to the end of the connection: more bytes are body too.
        parser.feed_data(extra)
        assert (seen.body, seen.complete) == (body + extra, False)
    else:
        assert (kind, length) == framing
        assert (seen.body, seen.complete) == (payload, True)


@given(chunked_body())
def test_chunked_payload_agrees_with_llhttp(body):
    wire, payload = body
    head = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
    _parser, seen = llhttp(httptools.HttpRequestParser, head + wire)
    assert (seen.body, seen.complete) == (payload, True)
    assert decode_in_pieces(httpparse, wire, []) == (payload, len(wire), True, None)


@pytest.mark.parametrize("data, max_line", [
    (b"\x00" * 17, 16),
    (b"GET / HTTP/1.1\r\n" + b"X" * 17, 16),
])
def test_unterminated_long_line_same_message(data, max_line):
    """Found by this module: the twins named an unterminated over-long line differently."""
    assert same("parse_request_head", data, max_line, 65536)[0] == "error"


@pytest.mark.parametrize("data", [
    b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",                # obs-fold (RFC 9112 5.2)
    b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",                  # bare CR
    b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",                # NUL
    b"GET / HTTP/1.1\r\nX : a\r\n\r\n",                    # space before the colon
])
def test_llhttp_refuses_what_we_refuse(data):
    """Where both define the answer for invalid heads: both refuse."""
    with pytest.raises(httptools.HttpParserError):
        llhttp(httptools.HttpRequestParser, data)
    assert same("parse_request_head", data, 8192, 65536)[:2] == ("error", "BadRequest")
