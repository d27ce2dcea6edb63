"""The compiled log renderer (_fastpath/logformat.pyx) writes the bytes its specification, the
generated Python renderer of gateway.observe.accesslog.LogFormat, writes."""

import base64
import time

import pytest

from gateway.config.observe import COMBINED, JSON
from gateway.http.request import Request as PyRequest
from gateway.observe.accesslog import LogFormat

try:
    from _fastpath.request import Request as CRequest
except ImportError:     # reported by test_compiled_renderer_is_built
    CRequest = None

# $request_time reads the clock at render: compared apart, to the millisecond it is written in.
FORMATS = [COMBINED, JSON.replace('"request_time":$request_time,', ""),
           '$remote_addr|$server_addr|$scheme|$status|$bytes_sent|$request_length|$connection|'
           '$connection_requests|$http_x_a|$http_cookie|$http_absent|$uri|$args|$remote_port|'
           '$time_iso8601|$request_uri|100%',
           '$upstream_addr|$upstream_status|$upstream_response_time|$upstream_header_time|'
           '$upstream_connect_time']
HEADERS = [
    [(b"host", b"Host", b"example")],
    [(b"host", b"Host", b"x"), (b"user-agent", b"User-Agent", b'q"uo\\te\there \xc3\xa9 \xe9'),
     (b"referer", b"Referer", b"\x01\x1f\x7f"), (b"x-a", b"X-A", b"one"),
     (b"x-a", b"X-A", b"two"), (b"cookie", b"Cookie", b"a=1"), (b"cookie", b"Cookie", b"b=2")],
    # $remote_user: read from Basic credentials (rendered natively only when there are none).
    [(b"host", b"Host", b"x"), (b"authorization", b"Authorization", b"Basic dXNlcjpwYXNz")],
    [(b"authorization", b"Authorization", b"Basic " + base64.b64encode(b'q"\\\xc3\xa9:pw'))],
    [(b"authorization", b"Authorization", b"Bearer abc")],
]
TARGETS = [("/plain", "", "/plain?"), ('/q"b\\c\td\u00e9\x7f', 'x="y"\\z', '/q%22?x="y"\\z')]


def make(cls, headers, target):
    uri, args, request_uri = target
    request = cls("GET", request_uri, uri, args, 11, headers)
    request.remote_addr, request.server_addr, request.remote_port = "127.0.0.1", "127.0.0.2", 5555
    request.status, request.body_bytes_sent, request.bytes_sent = 404, 12, 170
    request.request_length, request.connection_id, request.connection_requests = 77, 9, 3
    request.host = "example"
    # A retried request's tries; a peer name with bytes nginx escapes.
    request.upstream_addr = '127.0.0.1:8080, unix:/tmp/a"b\\c\u00e9'
    request.upstream_status, request.upstream_response_time = "502, 200", "0.001, 0.250"
    request.upstream_header_time = "0.249"
    return request


def test_compiled_renderer_is_built():
    try:
        import _fastpath.logformat  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"_fastpath.logformat is not built ({exc}): run `make extensions`")


@pytest.mark.parametrize("escape", ["default", "json", "none"])
@pytest.mark.parametrize("text", FORMATS)
def test_twins_write_the_same_bytes(text, escape):
    from _fastpath.logformat import CompiledFormat
    fmt = LogFormat(text, escape)
    compiled = CompiledFormat(fmt.ops).render
    for cls in filter(None, (PyRequest, CRequest)):
        for headers in HEADERS:
            for target in TARGETS:
                request = make(cls, headers, target)
                lines = compiled(request), fmt.render_py(request)
                if lines[0] != lines[1]:
                    # $time_local/$time_iso8601 may have crossed a second between the two: again.
                    lines = compiled(request), fmt.render_py(request)
                assert lines[0] == lines[1]


def test_underscored_names_are_http_variables_alike():
    """A kept "X_Y" field (underscores_in_headers on) is $http_x_y, as "X-Y" is (nginx)."""
    from _fastpath.logformat import CompiledFormat
    fmt = LogFormat("$http_x_y|$http_x_z|$http_cookie", "default")
    headers = [(b"x_y", b"X_Y", b"one"), (b"x-y", b"X-Y", b"two"), (b"x-z", b"X-Z", b"three"),
               (b"cookie", b"Cookie", b"a=1"), (b"cookie", b"Cookie", b"b=2")]
    for cls in filter(None, (PyRequest, CRequest)):
        request = make(cls, headers, TARGETS[0])
        request.underscored_names = True
        assert CompiledFormat(fmt.ops).render(request) == fmt.render_py(request) \
            == b"one, two|three|a=1; b=2\n"
        request = make(cls, headers, TARGETS[0])       # not marked: the "-" form alone
        assert CompiledFormat(fmt.ops).render(request) == fmt.render_py(request) \
            == b"two|three|a=1; b=2\n"


def test_request_time():
    from _fastpath.logformat import CompiledFormat
    fmt = LogFormat("$request_time", "default")
    request = make(PyRequest, HEADERS[0], TARGETS[0])
    request.start_time = time.monotonic() - 0.5
    before = time.monotonic() - request.start_time
    python, compiled = float(fmt.render_py(request)), float(CompiledFormat(fmt.ops).render(request))
    after = time.monotonic() - request.start_time
    # Both read the clock between `before` and `after` and write milliseconds, rounded.
    for value in (python, compiled):
        assert before - 0.0005 <= value <= after + 0.0005


def test_only_formats_showing_upstream_tries_ask_the_proxy_to_record_them():
    assert LogFormat(JSON).uses_upstream_tries
    assert LogFormat("$upstream_header_time").uses_upstream_tries
    assert not LogFormat(COMBINED).uses_upstream_tries
    assert not LogFormat("$status $request $http_upstream").uses_upstream_tries


@pytest.mark.parametrize("status,size", [(0, 0), (7, 1), (200, 10**15), (499, 9), (1000, 123456789)])
def test_numbers_are_written_as_the_twin_writes_them(status, size):
    from _fastpath.logformat import CompiledFormat
    fmt = LogFormat("$status $body_bytes_sent $connection_requests", "default")
    for cls in filter(None, (PyRequest, CRequest)):
        request = make(cls, HEADERS[0], TARGETS[0])
        request.status, request.body_bytes_sent = status, size
        assert CompiledFormat(fmt.ops).render(request) == fmt.render_py(request)


@pytest.mark.parametrize("flush_after", [0.0, 5.0])
def test_the_compiled_line_buffer_keeps_the_twins_accounting(tmp_path, flush_after):
    from _fastpath.logformat import LineBuffer as CLineBuffer
    from gateway.observe.accesslog import LineBuffer as PyLineBuffer
    seen = {}
    for base in (CLineBuffer, PyLineBuffer):
        class Sink(base):
            def __init__(self):
                self.pending, self.pending_size, self.limit = [], 0, 10
                self.flush_after, self.oldest, self.flushed = flush_after, 0.0, []

            def flush(self):
                self.flushed.append(b"".join(self.pending))
                self.pending.clear()
                self.pending_size = 0
        sink = Sink()
        before = time.monotonic()
        for line in (b"abc\n", b"defg\n", b"hi\n", b"j\n"):
            sink.write(line)
        assert (sink.oldest >= before) == bool(flush_after)
        seen[base] = (sink.flushed, sink.pending, sink.pending_size)
    assert seen[CLineBuffer] == seen[PyLineBuffer] == ([b"abc\ndefg\nhi\n"], [b"j\n"], 2)


from hypothesis import given, strategies as st  # noqa: E402


@given(st.one_of(st.floats(min_value=0.0, max_value=2e9, allow_nan=False),
                 st.integers(0, 10**9).map(lambda ms: ms / 1000 + 0.0005),     # near ties
                 st.floats(min_value=-5.0, max_value=0.0), st.sampled_from([float("inf"), 1e300])))
def test_seconds_are_written_as_python_writes_them(seconds):
    from _fastpath.logformat import format_seconds
    assert format_seconds(seconds) == f"{seconds:.3f}"


@given(st.integers(-2**63, 2**63 - 1))
def test_integers_are_written_as_python_writes_them(value):
    from _fastpath.logformat import format_integer
    assert format_integer(value) == str(value)


def test_host_falls_back_to_the_server_name():
    from _fastpath.logformat import CompiledFormat
    for escape in ("default", "json"):
        fmt = LogFormat('"$host"', escape)
        for cls in filter(None, (PyRequest, CRequest)):
            request = make(cls, HEADERS[0], TARGETS[0])
            for host, server_name in (("", "srv\u00e9"), ("", ""), ('h"st', "srv")):
                request.host, request.server_name = host, server_name
                assert CompiledFormat(fmt.ops).render(request) == fmt.render_py(request)
