"""HTTP/2 to clients (RFC 9113) on the ``h2`` library.

One ``Http2Connection`` per client connection speaks the protocol; each request stream gets
an ``Http2Stream`` (gateway/http/http2_stream.py), an adapter with the interface ``ClientConnection`` offers to handlers
(``send_head``, ``send_body``, ``finish_response``, ``transport.pause_reading``, ...), so every
location type (proxy_pass, static, return, rewrite, unikernel_pass) answers over HTTP/2
without a second pipeline: the HTTP/1.1 head a handler writes becomes a HEADERS frame, its
body DATA frames, within the client's flow-control windows.  Requests go upstream over the
same HTTP/1.1 keep-alive pools as HTTP/1.1 clients' requests.

Two sessions under the same protocol: ``NgHttp2Connection`` on libnghttp2
(_fastpath/h2session.pyx), selected when built, and the class below on the pure-Python ``h2``,
the specification and the twin used with GATEWAY_NO_EXTENSIONS=1 (``Http2ConnectionPy``;
``Http2Connection`` names the selected one at the end of the module).
"""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hpack.exceptions import HPACKError
from hyperframe.frame import GoAwayFrame

from gateway._select import load_fast
from gateway.http.http2_stream import Http2Stream
from gateway.observe.errorlog import log

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# nginx's settings: 64k stream windows (http2_body_preread_size), the connection window
# opened to the maximum at once (NGX_HTTP_V2_MAX_WINDOW).
INITIAL_WINDOW = 65536
MAX_WINDOW = 2 ** 31 - 1
MAX_FRAME = 2 ** 24 - 1         # nginx's SETTINGS_MAX_FRAME_SIZE: frames in, any size
# How often h2's table of streams is rid of closed ones.
CLEANUP_EVERY = 64

_CONFIG = h2.config.H2Configuration(
    client_side=False, header_encoding=None, validate_outbound_headers=False,
    normalize_outbound_headers=False,
    # h2 treats a malformed request as a connection error; nginx, as RFC 9113 8.1.1 says,
    # as the stream's: Http2Stream.start checks the fields itself.
    validate_inbound_headers=False,
    normalize_inbound_headers=True)     # joins cookie crumbs with "; " as nginx does
# h2 queues its own GOAWAY when a frame is refused (type 7, no debug data): replaced by ours.
_H2_GOAWAY_SIZE = 17



class _ServerH2(h2.connection.H2Connection):
    """h2's connection, leaving the concurrent-stream limit to us.

    h2 refuses a stream over SETTINGS_MAX_CONCURRENT_STREAMS before decoding its header
    block, as a connection error; nginx answers RST_STREAM REFUSED_STREAM, and the HPACK
    state must still see every block, so the limit is applied once the stream is decoded.
    """

    headers_stream = 0           # the stream of the last HEADERS frame, decoded or not
    opened = 0

    def __init__(self, config):
        super().__init__(config)
        # A request's header block length as it came ($request_length), by stream, until
        # its RequestReceived is handled.
        self.block_lengths: dict[int, int] = {}

    @property
    def open_inbound_streams(self) -> int:
        # h2 forgets closed streams while counting open ones, a walk over every stream per
        # HEADERS frame: done once every CLEANUP_EVERY streams instead.
        self.opened += 1
        if self.opened % CLEANUP_EVERY == 0:
            self._open_streams(1)
        return 0

    def _receive_headers_frame(self, frame):
        self.headers_stream = frame.stream_id
        if frame.stream_id not in self.streams:     # a request's block, not trailers
            # The block without padding or priority fields, CONTINUATIONs joined (h2 joins
            # their data into this frame): what nginx counts in $request_length.
            self.block_lengths[frame.stream_id] = len(frame.data)
        return super()._receive_headers_frame(frame)


class Http2Connection(asyncio.Protocol):
    """One client connection speaking HTTP/2: frames in, streams dispatched, frames out."""

    def __init__(self, app, listen_key, ssl_object=None):
        self.app = app
        self.listen_key = listen_key
        self.ssl_object = ssl_object
        self.transport = None
        self.h2 = None
        self.streams: dict[int, Http2Stream] = {}
        self.id = 0
        self.requests_served = 0
        self.request = None          # stub_status and the app's sweep read these two
        self.buffer = b""
        self.writing_paused = False
        self.closed = False
        self.in_events = False
        self.flush_scheduled = False
        self.dirty: list[Http2Stream] = []
        self.goaway_stream = -1      # the last stream id of a GOAWAY we sent, -1 before
        self.deadline = 0.0
        self.max_streams = 128
        self.field_limit = 0
        self.server = None

    # Protocol interface -------------------------------------------------

    def connection_made(self, transport):
        app = self.app
        self.transport = transport
        self.accepted = app.clock()     # $connection_time
        self.id = app.next_connection_id()
        peer = transport.get_extra_info("peername") or ("", 0)
        self.remote_addr, self.remote_port = peer[0], peer[1]
        local = transport.get_extra_info("sockname") or ("", 0)
        self.server_addr, self.server_port = local[0], local[1]
        self.listen_key = app.listen_key_for(self.listen_key, self.server_addr)
        if len(app.connections) >= app.max_connections:
            app.connections_refused()
            self.closed = True
            transport.abort()
            return
        app.connections.add(self)
        server = self.server = app.default_server(self.listen_key)
        self.max_streams = getattr(server, "http2_max_concurrent_streams", 128)
        number, size = server.large_client_header_buffers
        # nginx limits a field's encoded length to one buffer: at best (5-bit Huffman
        # codes) that decodes to 8/5 as many bytes.
        self.field_limit = size * 8 // 5
        # nginx's header_limit: the whole decoded list within large_client_header_buffers.
        self.h2 = self._open_session(number * size)
        self._arm(server.client_header_timeout)
        self._write()
        if app.shutting_down:
            self.shutdown(True)

    def _open_session(self, list_limit):
        """h2's state machine with nginx's settings; the SETTINGS frame queued."""
        h2c = _ServerH2(_CONFIG)
        h2c.decoder.max_header_list_size = list_limit
        h2c.local_settings = h2.settings.Settings(client=False, initial_values={
            SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams,
            SettingCodes.INITIAL_WINDOW_SIZE: INITIAL_WINDOW,
            SettingCodes.MAX_FRAME_SIZE: MAX_FRAME,
        })
        h2c.initiate_connection()
        h2c.max_inbound_frame_size = MAX_FRAME     # at once, not after the ACK: as nginx
        h2c.increment_flow_control_window(MAX_WINDOW - 65535)
        return h2c

    def data_received(self, data):
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._connection_error(exc)
            return
        self.in_events = True
        try:
            for event in events:
                handler = _EVENTS.get(type(event))
                if handler is not None:
                    handler(self, event)
        finally:
            self.in_events = False
        self._flush()

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.closed = True
        self.app.connection_closed(self)
        for stream in list(self.streams.values()):
            stream.reset_by_peer()
        self.streams.clear()

    def pause_writing(self):
        self.writing_paused = True
        for stream in list(self.streams.values()):
            stream.pause()

    def resume_writing(self):
        self.writing_paused = False
        for stream in list(self.streams.values()):
            stream.flush()
        self._write()

    # Events -------------------------------------------------------------

    def _request_received(self, event):
        length = self.h2.block_lengths.pop(event.stream_id, 0)
        self._request(event.stream_id, event.headers, event.stream_ended is not None, None,
                      length)

    def _request(self, stream_id, headers, ended, split=None, length=0):
        if self.goaway_stream >= 0 and stream_id > self.goaway_stream:
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        if len(self.streams) >= self.max_streams:
            log.info(f"*{self.id} concurrent streams exceeded {len(self.streams)}, "
                     f"client: {self.remote_addr}")
            self.h2.reset_stream(stream_id, ErrorCodes.REFUSED_STREAM)
            return
        self.deadline = 0.0
        self.requests_served += 1
        stream = Http2Stream(self, stream_id)
        self.streams[stream_id] = stream
        if split is None:
            stream.start(headers, ended, length)
        else:   # (method, path, authority, scheme, block length, bad name, odd names): C session
            stream.start_split(split[0], split[1], split[2], split[3], headers, split[4], ended,
                               split[5], split[6])
        if self.requests_served >= self.server.settings.keepalive_requests:
            self._goaway()       # nginx's keepalive_requests for HTTP/2 (1.19.7+)

    def _data_received(self, event):
        self._data(event.stream_id, event.data, event.flow_controlled_length)

    def _data(self, stream_id, data, flow_length):
        stream = self.streams.get(stream_id)
        if stream is None or stream.body is None:
            # Data after the answer (or for a refused stream): give the window back.
            self._acknowledge(stream_id, flow_length)
            return
        stream.body_data(data, flow_length)

    def _stream_ended(self, event):
        self._ended(event.stream_id)

    def _ended(self, stream_id):
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.body_end()

    def _stream_reset(self, event):
        self._reset(event.stream_id)

    def _reset(self, stream_id):
        stream = self.streams.pop(stream_id, None)
        if stream is not None:
            stream.reset_by_peer()
        self._check_idle()

    def _window_updated(self, event):
        self._window(event.stream_id)

    def _window(self, stream_id):
        if stream_id == 0:
            for stream in list(self.streams.values()):
                stream.flush()
        else:
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.flush()

    def _settings_changed(self, event):
        if SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            for stream in list(self.streams.values()):
                stream.flush()

    def _terminated(self, event):
        # The client will open no more streams; those in progress still finish.
        if self.goaway_stream < 0:
            self.goaway_stream = self.h2.highest_inbound_stream_id
        self._check_idle()

    # Writing ------------------------------------------------------------

    def _acknowledge(self, stream_id, length):
        if length:
            try:
                self.h2.acknowledge_received_data(length, stream_id)
            except h2.exceptions.ProtocolError:
                pass

    def schedule_flush(self, stream):
        """A stream has frames to send: sent once the current callback is done."""
        self.dirty.append(stream)
        if not self.in_events and not self.flush_scheduled:
            self.flush_scheduled = True
            self.app.loop.call_soon(self._flush)

    def _flush(self):
        self.flush_scheduled = False
        dirty, self.dirty = self.dirty, []
        for stream in dirty:
            stream.flush()
        self._write()

    def _write(self):
        if self.closed:
            return
        data = self.h2.data_to_send()
        if data:
            self.transport.write(data)

    def stream_done(self, stream):
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
        self._check_idle()

    def _check_idle(self):
        if self.streams or self.closed:
            return
        if self.goaway_stream >= 0:
            self._write()
            self.close()
            return
        settings = self.server.settings
        self._arm(settings.keepalive_timeout)

    def _arm(self, timeout):
        self.deadline = self.app.clock() + timeout if timeout > 0 else 0.0

    # Ending -------------------------------------------------------------

    def _goaway(self, error_code=ErrorCodes.NO_ERROR):
        """GOAWAY naming the last stream we take; h2's state machine is left open so that
        the streams in progress can still be read and written (h2 would refuse every
        frame after its own close_connection)."""
        if self.goaway_stream >= 0:
            return
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.goaway_stream = self.h2.highest_inbound_stream_id
        frame.error_code = error_code
        self._write()
        if not self.closed:
            self.transport.write(frame.serialize())

    def _connection_error(self, exc):
        """A frame h2 refused: GOAWAY with nginx's code, then close (RFC 9113 5.4.1)."""
        h2c = self.h2
        code = getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR)
        last = h2c.highest_inbound_stream_id
        if isinstance(exc.__cause__, HPACKError):
            # nginx names the stream whose header block failed; a block that does not
            # decode is COMPRESSION_ERROR (RFC 9113 4.3), one over the limits (an HPACK
            # bomb) ENHANCE_YOUR_CALM, h2's DenialOfServiceError.
            last = max(last, h2c.headers_stream)
            if not isinstance(exc, h2.exceptions.DenialOfServiceError):
                code = ErrorCodes.COMPRESSION_ERROR
        if log.enabled("info"):
            log.info(f"*{self.id} "
                     f"client sent invalid HTTP/2 input ({exc}), client: {self.remote_addr}")
        data = h2c.data_to_send()
        if data[-_H2_GOAWAY_SIZE + 3:-_H2_GOAWAY_SIZE + 4] == b"\x07":
            data = data[:-_H2_GOAWAY_SIZE]
        self.fail(code, last, data)

    def fail(self, code, last=None, before=b""):
        """Close the connection with GOAWAY ``code`` (after ``before``, frames already made)."""
        if self.closed:
            return
        frame = GoAwayFrame(0)
        frame.last_stream_id = self.h2.highest_inbound_stream_id if last is None else last
        frame.error_code = code
        self.goaway_stream = frame.last_stream_id
        self.transport.write(before + frame.serialize())
        self.close()

    def close(self):
        if not self.closed:
            self.closed = True
            self.transport.close()

    def check_deadline(self, now: float):
        """The app's sweep: streams' own timeouts, then the idle and header timeouts."""
        for stream in list(self.streams.values()):
            stream.check_deadline(now)
        if self.deadline and now >= self.deadline and not self.streams:
            self.deadline = 0.0
            self._goaway()
            self.close()

    def shutdown(self, graceful: bool):
        """Graceful: GOAWAY with the last stream id, close when its streams are done."""
        if not graceful:
            if not self.closed:
                self.closed = True
                self.transport.abort()
            return
        self._goaway()
        self._check_idle()


_EVENTS = {
    h2.events.RequestReceived: Http2Connection._request_received,
    h2.events.DataReceived: Http2Connection._data_received,
    h2.events.StreamEnded: Http2Connection._stream_ended,
    h2.events.StreamReset: Http2Connection._stream_reset,
    h2.events.WindowUpdated: Http2Connection._window_updated,
    h2.events.RemoteSettingsChanged: Http2Connection._settings_changed,
    h2.events.ConnectionTerminated: Http2Connection._terminated,
}


class NgHttp2Connection(Http2Connection):
    """Http2Connection on libnghttp2 (_fastpath/h2session.pyx): frames, HPACK and windows in C,
    one Python call per request head, body chunk, reset or window update."""

    def _open_session(self, list_limit):
        return _h2session.H2Session(self.max_streams, list_limit, self.field_limit,
                                    INITIAL_WINDOW, MAX_FRAME)

    def data_received(self, data):
        if self.closed:
            return
        session = self.h2
        try:
            events = session.receive(data)
        except _h2session.SessionError as exc:
            if log.enabled("info"):
                log.info(f"*{self.id} "
                         f"client sent invalid HTTP/2 input ({exc}), client: {self.remote_addr}")
            self.fail(exc.error_code, exc.last_stream_id)
            return
        self.in_events = True
        try:
            for event in events:
                kind = event[0]
                if kind == _DATA:
                    self._data(event[1], event[2], event[3])
                elif kind == _REQUEST:
                    self._request(event[1], event[2], event[3], event[4])
                elif kind == _ENDED:
                    self._ended(event[1])
                elif kind == _CLOSED:
                    self._reset(event[1])
                elif kind == _WINDOW:
                    self._window(event[1])
                elif kind == _SETTINGS:
                    self._window(0)
                elif kind == _GOAWAY:
                    self._terminated(None)
        finally:
            self.in_events = False
        self._flush()
        if session.done:        # nghttp2 answered a connection error with its GOAWAY
            self.close()


def _select():
    """The compiled session unless disabled or not built (GATEWAY_NO_EXTENSIONS=1: h2)."""
    global _h2session, _REQUEST, _DATA, _ENDED, _CLOSED, _WINDOW, _SETTINGS, _GOAWAY
    fast = load_fast("h2session")
    if fast is None:
        return Http2Connection
    _h2session = fast
    _REQUEST, _DATA, _ENDED, _CLOSED = fast.REQUEST, fast.DATA, fast.ENDED, fast.CLOSED
    _WINDOW, _SETTINGS, _GOAWAY = fast.WINDOW, fast.SETTINGS, fast.GOAWAY
    return NgHttp2Connection


Http2ConnectionPy = Http2Connection
Http2Connection = _select()


class PrefaceSniffer(asyncio.Protocol):
    """A cleartext ``listen ... http2`` socket: HTTP/2 with prior knowledge when the
    first bytes are the connection preface, HTTP/1.1 otherwise (nginx 1.25's rule)."""

    __slots__ = ("app", "listen_key", "http1", "transport", "seen")

    def __init__(self, app, listen_key, http1_factory):
        self.app = app
        self.listen_key = listen_key
        self.http1 = http1_factory()
        self.transport = None
        self.seen = b""

    def connection_made(self, transport):
        self.transport = transport
        self.http1.connection_made(transport)      # counted, timed out as HTTP/1.1 until known

    def data_received(self, data):
        seen = self.seen + data
        if PREFACE.startswith(seen):
            self.seen = seen            # a prefix of the preface so far: wait for more
            return
        transport = self.transport
        if seen.startswith(PREFACE):
            self.app.connections.discard(self.http1)
            self.app.accepted -= 1      # one connection, counted once
            protocol = Http2Connection(self.app, self.listen_key)
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
        else:
            protocol = self.http1
            transport.set_protocol(protocol)
        protocol.data_received(seen)

    def eof_received(self):
        return self.http1.eof_received()

    def connection_lost(self, exc):
        self.http1.connection_lost(exc)

    def pause_writing(self):
        self.http1.pause_writing()

    def resume_writing(self):
        self.http1.resume_writing()


class AlpnChooser(asyncio.Protocol):
    """A TLS connection on an HTTP/2 socket until its handshake is done: then the protocol
    ALPN chose (h2, else HTTP/1.1) takes the transport over."""

    __slots__ = ("app", "listen_key", "http1_factory")

    def __init__(self, app, listen_key, http1_factory):
        self.app = app
        self.listen_key = listen_key
        self.http1_factory = http1_factory

    def connection_made(self, transport):
        self.app.handshakes.pop(self, None)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            protocol = Http2Connection(self.app, self.listen_key, ssl_object)
        else:
            protocol = self.http1_factory()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)

    def connection_lost(self, exc):
        self.app.handshakes.pop(self, None)
