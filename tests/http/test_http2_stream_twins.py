"""Http2Stream's twins (gateway/http/http2_stream.py and _fastpath/h2stream.pxi) as objects.

Their behaviour on the wire is compared side by side with nginx and with each other by
test_http2.py, test_http2_parity.py and test_nginx_parity_http2_stream.py (each run with and
without the compiled path); here, what the wire cannot show.
"""

from __future__ import annotations

import gc
import weakref

import pytest

from gateway.http import http2_stream, protocol


class _App:
    def clock(self):
        return 0.0

    def dispatch(self, conn, request):      # not WorkerApp's: the stream routes nothing
        raise AssertionError("not called")


class _Connection:
    """What a stream reads of its HTTP/2 connection when it is made."""
    app = _App()
    listen_key = ("127.0.0.1", 8080)
    id = 7
    remote_addr, remote_port = "127.0.0.1", 40000
    server_addr, server_port = "127.0.0.1", 8080
    ssl_object = None


def _classes():
    yield pytest.param(http2_stream.Http2StreamPy, id="python")
    if protocol.IMPLEMENTATION == "cython":
        yield pytest.param(http2_stream.Http2Stream, id="compiled")


def test_the_compiled_twin_is_selected_with_the_compiled_path():
    expected = "_fastpath.proxyproto" if protocol.IMPLEMENTATION == "cython" \
        else "gateway.http.http2_stream"
    assert http2_stream.Http2Stream.__module__ == expected


@pytest.mark.parametrize("cls", list(_classes()))
def test_a_stream_is_freed_without_the_cyclic_collector(cls):
    # A stream referring to itself (its transport) lived until the cyclic collector ran,
    # and every request's objects with it: CPU in gc_collect_main under load.
    gc.disable()
    try:
        stream = cls(_Connection(), 1)
        assert stream.transport.is_closing() is False     # the stream, through its proxy
        alive = weakref.ref(stream)
        del stream
        assert alive() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("cls", list(_classes()))
def test_the_stream_reads_the_connection_it_belongs_to(cls):
    stream = cls(_Connection(), 5)
    assert (stream.stream_id, stream.id, stream.remote_addr, stream.remote_port,
            stream.server_port, stream.requests_served, stream.keep_alive) == \
        (5, 7, "127.0.0.1", 40000, 8080, 1, True)
    assert stream.get_write_buffer_size() == 0
