# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of the per-request proxy path.

The specification is gateway/http/connection.py (ClientConnection, BodyReader),
gateway/http/proxy.py (ProxyExchange), gateway/http/upstream_connection.py
(UpstreamConnection, KeepalivePool.take/put) and WorkerApp.dispatch in
gateway/http/server.py: same states, same callbacks, same bytes on the wire.
What differs is only how: typed extension types, C-level calls between them,
one clock read per event, head pieces joined once.
"""

import asyncio
from functools import partial

cimport cython
from _fastpath.numtext cimport decimal, fixed3

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_FromVoidPtr
from cpython.unicode cimport PyUnicode_GET_LENGTH
from libc.string cimport memcmp, memcpy
from libc.time cimport time as c_time

from _fastpath.clock cimport is_native_clock, monotonic

from gateway.errors import (
    BadRequest, GatewayError, HttpError, PayloadTooLarge, RequestTimeout, SslCertificateError,
    SslCertificateMissing, UpstreamError)
from gateway.http import gzip, header_names, limit_rate, request_body, response_heads
from gateway.http import proxy as proxy_py
from gateway.http.headers import keep_challenge, own_lines
from gateway.http.pending_head import PendingHead
from gateway.http.plan import HIDDEN_RESPONSE, NON_IDEMPOTENT, UPSTREAM_STATUS_CONDITIONS
from gateway.http.responses import (
    ADD_HEADER_CODES, CLOSING_ERRORS, SENT_AS_400, error_page, padded, server_and_date,
    status_line_cached)
from gateway.http.rewrite import RewrittenProxyPlan, referrer_context as _referrer
from gateway.http.tunnel import start_tunnel
from gateway.http.upstream_connection import CONNECT_LIMIT
from gateway.http.variables import variable_getter
from gateway.observe.errorlog import log

from _fastpath.httpparse import ChunkedDecoder, parse_response_head, response_body_framing
from _fastpath.httpparse cimport (FRAME_CHUNKED, FRAME_CLOSE, FRAME_ERROR, FRAME_LENGTH,
                                  FRAME_NONE, ResponseHead, parse_request_head,
                                  request_body_framing, scan_response_head,
                                  set_hidden_response, split_target)
from _fastpath.balancing cimport LeastConn, Peer, RoundRobin, Selection
from _fastpath.request cimport Request, header_value
from _fastpath.router cimport LocationRouter
from _fastpath.rewrite cimport Program
from _fastpath.variables cimport Template as CompiledTemplate

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object text)
    void* PyUnicode_DATA(object text)


cdef extern from "<sys/socket.h>" nogil:
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    int MSG_NOSIGNAL
    int MSG_DONTWAIT

# The limits of the Python twins (connection.py, proxy.py).
cdef enum:
    PIPELINE_LIMIT = 64 * 1024
    DISCARD_LIMIT = 64 * 1024
    REPLAY_LIMIT = 1024 * 1024
    PENDING_LIMIT = 256 * 1024
    MAX_RESPONSE_HEAD = 64 * 1024
    CHUNKED_MEMORY_LIMIT = 64 * 1024 * 1024
SHUTDOWN_GRACE = 1.0

# Connection states (connection.py).
cdef enum:
    HEAD, BODY, WAIT, CLOSED

# Exchange states (proxy.py).
cdef enum:
    CONNECTING, WAITING, RELAYING, DONE

# Body framings, as ints instead of the twins' strings (httpparse's codes for responses).
cdef enum:
    F_NONE = FRAME_NONE
    F_LENGTH = FRAME_LENGTH
    F_CHUNKED = FRAME_CHUNKED
    F_CLOSE = FRAME_CLOSE

# Deadline kinds of an exchange.
cdef enum:
    D_CONNECT, D_SEND, D_READ

# Whether heads are kept for $sent_http_*, $upstream_http_* (gateway/http/response_heads.py).
cdef bint _record_heads = False
# Whether request bodies are kept for $request_body (gateway/http/request_body.py).
cdef bint _record_body = False


def record_heads(bint on, bint body=False):
    """Keep the heads sent and received (and bodies read) in request.vars (WorkerApp: when
    the config reads them)."""
    global _record_heads, _record_body
    _record_heads = on
    _record_body = body


cdef bytes KEEP_ALIVE_END = b"Connection: keep-alive\r\n\r\n"
cdef bytes CLOSE_END = b"Connection: close\r\n\r\n"
cdef bytes CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"
set_hidden_response(HIDDEN_RESPONSE)    # the fields scan_response_head leaves out
cdef frozenset _NON_IDEMPOTENT = NON_IDEMPOTENT
cdef frozenset _ADD_HEADER_CODES = ADD_HEADER_CODES


cdef int _framing_code(str kind):
    if kind == "length":
        return F_LENGTH
    if kind == "chunked":
        return F_CHUNKED
    if kind == "close":
        return F_CLOSE
    return F_NONE


cdef dict _native_clocks = {}      # loop class -> whether clock.is_native_clock


# Server and Date lines: the twin's cache asked once per second, not once per response.
cdef long _date_second = -1
cdef bytes _date_full = b""
cdef bytes _date_short = b""


cdef bytes _server_and_date(bint tokens):
    global _date_second, _date_full, _date_short
    cdef long now = <long>c_time(NULL)
    if now != _date_second:
        _date_full = server_and_date.lines(True)
        _date_short = server_and_date.lines(False)
        _date_second = now
    return _date_full if tokens else _date_short


# Status code -> its status line / its proxy_next_upstream condition (None if none):
# lists indexed by the three-digit code, cheaper than dicts keyed by an int object.
cdef list _status_lines = [None] * 1000
cdef list _status_conditions = [UPSTREAM_STATUS_CONDITIONS.get(code) for code in range(1000)]


cdef bytes _status_line(int status):
    if not 0 <= status < 1000:
        return status_line_cached(status)
    line = _status_lines[status]
    if line is None:
        line = _status_lines[status] = status_line_cached(status)
    return <bytes>line


cdef bytes _join(list parts):
    """b"".join(parts) for a list of bytes: one allocation, a memcpy each."""
    cdef Py_ssize_t total = 0, size
    cdef char* out
    for item in parts:
        if type(item) is not bytes:   # bytearray, memoryview: the general join
            return b"".join(parts)
        total += PyBytes_GET_SIZE(item)
    data = PyBytes_FromStringAndSize(NULL, total)
    out = PyBytes_AS_STRING(data)
    for item in parts:
        size = PyBytes_GET_SIZE(item)
        memcpy(out, PyBytes_AS_STRING(item), size)
        out += size
    return data


# The getter of $proxy_host, read directly for the default "Host: $proxy_host".
_PROXY_HOST_GETTER = variable_getter("proxy_host")


cdef str _render(template, request):
    """Template.render (variables.py) without a generator per call."""
    if template.static:
        return template.text
    cdef list parts = template.parts
    if len(parts) == 1:
        value = parts[0](request)
        if type(value) is str:
            return value
    return "".join([p if isinstance(p, str) else p(request) for p in parts])


cdef object _rewritten_target(Request request):
    """RewrittenProxyPlan.upstream_uri after "break" (or with no URI part): the rewritten
    $uri escaped, then $args; None when escape_uri has characters to escape."""
    cdef str uri = request.uri
    cdef Py_UCS4 ch
    for ch in uri:
        # escape_uri's test for "nothing to escape": printable ASCII but " #?%"
        if ch <= 0x20 or ch >= 0x7f or ch == c"#" or ch == c"?" or ch == c"%":
            return None
    args = request.args
    if args:
        uri = uri + "?" + args
    return _utf8(uri)


cdef inline bytes _ascii(str text):
    """An ASCII str's bytes, copied without a codec lookup."""
    return PyBytes_FromStringAndSize(<char*>PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text))


cdef bytes _utf8(str text):
    """text.encode("utf-8", "surrogateescape")."""
    if PyUnicode_IS_ASCII(text):
        return _ascii(text)
    return text.encode("utf-8", "surrogateescape")


cdef bytes _latin1(str text):
    """text.encode("latin-1", "replace")."""
    if PyUnicode_IS_ASCII(text):
        return _ascii(text)
    return text.encode("latin-1", "replace")


cdef bytes _type_line(content_type):
    """b"Content-Type: %s\\r\\n" % content_type, copied once."""
    if type(content_type) is not bytes:
        return b"Content-Type: %s\r\n" % content_type
    cdef Py_ssize_t size = PyBytes_GET_SIZE(content_type)
    line = PyBytes_FromStringAndSize(NULL, 16 + size)
    cdef char* w = PyBytes_AS_STRING(line)
    memcpy(w, b"Content-Type: ", 14)
    memcpy(w + 14, PyBytes_AS_STRING(content_type), size)
    w[14 + size] = 13
    w[15 + size] = 10
    return line


cdef bytes _length_line(Py_ssize_t length):
    """b"Content-Length: %d\\r\\n" % length, without formatting."""
    cdef char buf[48]
    memcpy(buf, b"Content-Length: ", 16)
    cdef int n = decimal(length, buf + 16)
    buf[16 + n] = 13
    buf[17 + n] = 10
    return PyBytes_FromStringAndSize(buf, 18 + n)


cdef object _header_bytes(list headers, bytes key):
    """header_value's value as bytes (repeated fields joined with b", "), or None."""
    cdef object found = None
    cdef tuple item
    for item in headers:
        if <bytes>item[0] == key:
            found = item[2] if found is None else found + b", " + item[2]
    return found


cdef str _host_name(str value):
    """A Host header value as nginx stores $host: lowercase, no port, no trailing dot."""
    cdef Py_ssize_t i, n = len(value), colon = -1, end
    cdef Py_UCS4 ch
    # Fast path for the usual "name" or "name:port" already in lowercase: what the
    # general path below returns for such a value, without its temporary strings.
    for i in range(n):
        ch = value[i]
        if ch == u':':
            if colon < 0:
                colon = i
        elif not (u'a' <= ch <= u'z' or u'0' <= ch <= u'9' or ch == u'.' or ch == u'-'
                  or ch == u'_'):
            break
    else:
        if colon < 0 and n and value[n - 1] != u'.':
            return value
        end = colon if colon >= 0 else n
        while end > 0 and value[end - 1] == u'.':
            end -= 1
        return value[:end]
    if value.isalnum():
        return value.lower()
    host = value.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise BadRequest("client sent invalid host header")
        return host[:end + 1]
    host = host.split(":", 1)[0].rstrip(".")
    if "/" in host or " " in host or "\\" in host:
        raise BadRequest("client sent invalid host header")
    return host


cdef bint _wants_keep_alive(list headers, int version):
    value = header_value(headers, b"connection", False)
    if value is None:
        return version == 11
    tokens = value.lower()
    if version == 11:
        return "close" not in tokens
    return "keep-alive" in tokens


# "host:port" of each peer, made once ($upstream_addr).
cdef dict _PEER_TEXT = {}


cdef str _peer_text(peer):
    text = _PEER_TEXT.get(peer)
    if text is None:
        if len(_PEER_TEXT) > 4096:      # peers of many reloads in one process: start over
            _PEER_TEXT.clear()
        text = _PEER_TEXT[peer] = f"{peer.host}:{peer.port}"
    return <str>text


cdef str _status_text(int status):
    cdef char buf[24]
    cdef int n = decimal(status, buf)
    return buf[:n].decode("ascii")


cdef str _seconds_text(double seconds):
    """f"{seconds:.3f}", as the twin writes it."""
    cdef char buf[48]
    cdef int n = fixed3(seconds, buf)
    return buf[:n].decode("ascii") if n >= 0 else f"{seconds:.3f}"


cdef str _time_or_dash(double seconds):
    """One try's $upstream_connect_time or _header_time: "-" where the try did not get there."""
    return _seconds_text(seconds) if seconds >= 0.0 else "-"


cdef _run_cleanup(Request request):
    """connection.run_cleanup: a request's cleanup, run once."""
    cleanup = request.cleanup
    request.cleanup = None
    cleanup()


cdef class _PlanInfo:
    """What a request reads from a LocationPlan (and its ProxyPlan), as C fields.

    Plans are built once at config load and never change, so this is read once per plan.
    """

    cdef bint is_return, is_proxy, server_tokens
    cdef double keepalive_timeout, client_body_timeout
    cdef long long keepalive_requests, client_max_body_size
    cdef object add_headers, access_logs
    cdef bint records_upstream   # LocationPlan.records_upstream
    cdef object meter       # metrics' LocationMeter (gateway/observe/metrics.py), or None
    cdef object real_ip     # the location's realip settings, or None
    cdef bint gzip          # settings.gzip (send_simple)
    # unikernel_pass plans: gateway.unikernel.dispatch.start_exchange (what WorkerApp._answer calls)
    cdef object unikernel_start
    # location scripts compiled by _fastpath/rewrite.pyx: the script, and its location's
    # content when the compiled exchange proxies it (else None)
    cdef Program program
    cdef object script_content
    cdef _PlanInfo script_content_info
    # proxy plans only
    cdef object proxy, proxy_host, key_template, balancer, pool, uri_replacement
    cdef object http_version, set_headers, next_upstream, tries, next_upstream_timeout
    cdef object request_timeout
    cdef object tls             # UpstreamTls for https:// upstreams, else None
    # A RewrittenProxyPlan (gateway/http/rewrite.py): its upstream_uri is computed here
    # for rewritten requests when it has no URI part (passed_uri None).
    cdef bint rewritten_uri
    cdef object passed_uri
    # headers.ResponseFilter (None: none), and whether every response goes through it
    # (else only those with a Location or Refresh field); proxy_intercept_errors' statuses.
    cdef object response_filter
    cdef bint filter_always
    cdef object intercept
    cdef dict idle, by_peer, connecting, waiting
    cdef frozenset dropped
    # The dropped names (lowercase) by length: dropped_by_length[n] holds those of n
    # bytes (64: longer), so a field is compared with a name of its own length only.
    cdef tuple dropped_by_length
    cdef bint pass_body, keepalive, compiled_balancer
    cdef long long pool_size, pool_max_requests
    cdef double connect_timeout, read_timeout, send_timeout

    def __init__(self, plan):
        kind = plan.kind
        settings = plan.settings
        # A server-level return or rewrite script answers before locations are searched
        # (only server plans are asked); either way WorkerApp._answer takes the request.
        self.is_return = kind == "return" or kind == "rewrite"
        # With gzip on, the Python exchange of gateway/http/gzip.py answers (WorkerApp._answer).
        # Requests the pure-Python exchange builds (proxy_method, proxy_set_body,
        # proxy_pass_request_headers off) go there too.
        self.is_proxy = kind == "proxy" and getattr(plan, "gzip", None) is None \
            and not plan.proxy.python_only
        self.keepalive_timeout = settings.keepalive_timeout
        self.keepalive_requests = settings.keepalive_requests
        self.server_tokens = settings.server_tokens
        self.client_max_body_size = settings.client_max_body_size
        self.client_body_timeout = settings.client_body_timeout
        self.add_headers = plan.add_headers
        self.access_logs = plan.access_logs
        self.records_upstream = getattr(plan, "records_upstream", bool(plan.access_logs))
        self.meter = getattr(plan, "meter", None)
        self.real_ip = getattr(plan, "real_ip", None)
        self.gzip = settings.gzip
        if kind == "unikernel":
            from gateway.unikernel.dispatch import start_exchange
            self.unikernel_start = start_exchange
        if kind == "rewrite" and plan.location is not None and type(plan.program) is Program:
            self.program = plan.program
            content = plan.content
            # What WorkerApp._answer_content would hand to answer_proxy after "break".
            # (WorkerApp.proxy_plan keeps a RewrittenProxyPlan's plan as it is.)
            if content.kind == "proxy" and _plan_info(content).is_proxy and \
                    isinstance(content.proxy, RewrittenProxyPlan):
                self.script_content = content
                self.script_content_info = _plan_info(content)
        if plan.proxy is None:
            return      # composed locations that proxy (kind "compose") have one too
        proxy = self.proxy = plan.proxy
        self.proxy_host = proxy.proxy_host
        self.key_template = proxy.key_template
        self.balancer = proxy.upstream.balancer
        # Compiled round robin and least_conn (not Python subclasses): called at C level.
        self.compiled_balancer = type(self.balancer) in (RoundRobin, LeastConn)
        self.pool = proxy.upstream.pool
        self.uri_replacement = proxy.uri_replacement
        self.http_version = proxy.http_version
        # (name, template, its value as bytes when that is the same for every request:
        # a static text, or exactly "$proxy_host"; else None)
        proxy_host_bytes = (<str>self.proxy_host).encode("latin-1", "replace")
        self.set_headers = [
            (name, CompiledTemplate(template),
             (<str>template.text).encode("latin-1", "replace") if template.static
             else proxy_host_bytes if template.parts == [_PROXY_HOST_GETTER] else None)
            for name, template in proxy.set_headers]
        self.idle = proxy.upstream.pool.idle
        self.by_peer = proxy.upstream.pool.by_peer
        self.connecting = proxy.upstream.pool.connecting
        self.waiting = proxy.upstream.pool.waiting
        self.pool_size = proxy.upstream.pool.size
        self.pool_max_requests = proxy.upstream.pool.max_requests
        self.dropped = proxy.dropped
        self.dropped_by_length = tuple(
            tuple(name for name in self.dropped
                  if len(name) == n or (n == 64 and len(name) > 64))
            for n in range(65))
        self.next_upstream = proxy.next_upstream
        self.tries = proxy.tries
        self.next_upstream_timeout = proxy.next_upstream_timeout
        self.request_timeout = proxy.request_timeout
        self.tls = proxy.tls
        self.rewritten_uri = type(proxy) is RewrittenProxyPlan
        self.passed_uri = proxy.passed_uri if self.rewritten_uri else None
        self.response_filter = proxy.response_filter
        self.filter_always = proxy.response_filter is not None and proxy.response_filter.always
        self.intercept = proxy.intercept
        self.pass_body = proxy.pass_body
        self.keepalive = proxy.keepalive
        self.connect_timeout = proxy.connect_timeout
        self.read_timeout = proxy.read_timeout
        self.send_timeout = proxy.send_timeout


# LocationPlan -> _PlanInfo.  Entries live as long as the worker's config (one per plan).
cdef dict _plan_infos = {}

# rewrite.DONE: a script ended in its location's content ("break" or its end, URI unchanged).
cdef int SCRIPT_DONE = 1
# Where "set $limit_rate" leaves its value in request.vars (limit_rate.py).
cdef object _RATE = limit_rate.RATE


cdef inline bint _dropped(_PlanInfo info, bytes lower):
    """lower in info.dropped, compared only with names of its length, without hashing."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(lower)
    for name in <tuple>(info.dropped_by_length[n if n < 64 else 64]):
        if PyBytes_GET_SIZE(<bytes>name) == n and \
                memcmp(PyBytes_AS_STRING(<bytes>name), PyBytes_AS_STRING(lower), n) == 0:
            return True
    return False


cdef inline char* _put(char* w, bytes item, const char* after, Py_ssize_t after_size):
    """Copy item then after[:after_size] to w; the position after them."""
    cdef Py_ssize_t size = PyBytes_GET_SIZE(item)
    memcpy(w, PyBytes_AS_STRING(item), size)
    w += size
    if after_size:
        memcpy(w, after, after_size)
    return w + after_size


cdef _PlanInfo _plan_info(plan):
    info = _plan_infos.get(plan)
    if info is None:
        info = _plan_infos[plan] = _PlanInfo(plan)
    return <_PlanInfo>info


# Request methods as received -> their str, decoded once.
cdef dict _method_names = {}


cdef class _ServerInfo:
    """What a request reads from a server block, as C fields (servers never change)."""

    cdef object server, plan, router, server_name
    cdef object real_ip     # the server's realip settings (gateway/http/realip.py), or None
    cdef bint verify_client     # ssl_verify_client is not off
    cdef _PlanInfo plan_info
    cdef Py_ssize_t header_line, header_total   # large_client_header_buffers
    cdef double client_header_timeout

    def __init__(self, server):
        self.server = server    # kept alive: _server_infos is keyed by its id
        number, size = server.large_client_header_buffers
        self.header_line = size
        self.header_total = size * number
        self.client_header_timeout = server.client_header_timeout
        self.plan = server.plan
        self.real_ip = getattr(server.plan, "post_read_real_ip", None)
        self.verify_client = bool(server.tls.verify)
        self.router = server.router
        self.plan_info = _plan_info(server.plan) if server.plan is not None else None
        names = server.server_names
        self.server_name = names[0] if names else ""


# id(server) -> _ServerInfo, as _plan_infos (Server, a dataclass, is not hashable).
cdef dict _server_infos = {}


cdef _ServerInfo _server_info(server):
    key = PyLong_FromVoidPtr(<void*>server)     # id(server), without calling id()
    info = _server_infos.get(key)
    if info is None:
        info = _server_infos[key] = _ServerInfo(server)
    return <_ServerInfo>info


# App class -> whether its dispatch is WorkerApp.dispatch, which _dispatch below mirrors.
cdef dict _mirrored_dispatch = {}


cdef bint _dispatch_mirrored(app):
    cls = type(app)
    known = _mirrored_dispatch.get(cls)
    if known is None:
        from gateway.http.server import WorkerApp   # not at import: server.py imports us
        known = _mirrored_dispatch[cls] = getattr(cls, "dispatch", None) is WorkerApp.dispatch
    return known


cdef class BodyReader:
    """Takes a request body off the connection buffer: Content-Length or chunked."""

    cdef public str kind
    cdef public long long remaining
    cdef public object decoder
    cdef public bint done
    cdef public long long limit
    cdef public double timeout
    cdef public long long received
    cdef int framing

    def __init__(self, str kind, long long length):
        self.kind = kind
        self.framing = _framing_code(kind)
        self.remaining = length
        self.decoder = ChunkedDecoder() if self.framing == F_CHUNKED else None
        self.done = self.framing == F_LENGTH and length == 0
        self.limit = 0
        self.timeout = 60.0
        self.received = 0

    cpdef tuple consume(self, bytes data):
        """Return (bytes used from data, list of body pieces)."""
        cdef Py_ssize_t take, size
        if self.done or not data:
            return 0, None
        size = len(data)
        if self.framing == F_LENGTH:
            take = self.remaining if self.remaining < size else size
            self.remaining -= take
            self.done = self.remaining == 0
            self.received += take
            return take, [data if take == size else data[:take]]
        used, pieces = self.decoder.feed(data, True)
        self.done = self.decoder.done
        if pieces:
            for piece in pieces:
                self.received += len(piece)
        if self.limit and self.received > self.limit:
            raise PayloadTooLarge(f"client intended to send too large chunked body: "
                                  f"{self.received}+ bytes")
        return used, pieces


# Writes straight to the socket --------------------------------------------------
#
# A transport's write() costs about a thousand instructions of uvloop bookkeeping
# before the one send the kernel sees.  When the transport holds no bytes of its own,
# a send() on its socket is that same system call: what the kernel takes at once is
# sent, and only a remainder (or an error) goes through write(), which then buffers,
# applies flow control and reports errors exactly as before.  Order is kept because
# nothing is sent directly while the transport may still hold earlier bytes.
#
# The socket stays open until the protocol's connection_lost() has returned (uvloop
# and asyncio close it after calling it), and direct sends stop before: on close(),
# on EOF (the transport then closes itself) and in connection_lost().

cdef enum:
    FD_UNKNOWN = -2     # not looked up yet
    FD_NONE = -1        # no direct sends on this transport

# Transport class -> whether its socket may be written directly (uvloop's and
# asyncio's TCP transports; not test fakes or TLS).
cdef dict _direct_transports = {}


cdef int _socket_fd(transport) except -2:
    """The socket of a known TCP transport, else FD_NONE."""
    cls = type(transport)
    known = _direct_transports.get(cls)
    if known is None:
        import asyncio.selector_events
        import uvloop.loop
        known = _direct_transports[cls] = cls is uvloop.loop.TCPTransport or \
            cls is asyncio.selector_events._SelectorSocketTransport
    if not known:
        return FD_NONE
    sock = transport.get_extra_info("socket")
    if sock is None:
        return FD_NONE
    return sock.fileno()


cdef class _Sender:
    """The write side of a stream connection: direct sends while its transport holds nothing."""

    cdef public object transport
    cdef object write           # transport.write, looked up once
    cdef int fd                 # FD_UNKNOWN, FD_NONE or the socket
    cdef bint buffered          # the transport may hold bytes of an earlier write
    cdef long writes

    cdef _attach_transport(self, transport):
        self.transport = transport
        self.write = transport.write
        self.fd = FD_UNKNOWN

    cdef _stop_direct(self):
        self.fd = FD_NONE

    cdef _write(self, data):
        cdef Py_ssize_t size, sent
        self.writes += 1
        if self.fd == FD_UNKNOWN and self.writes >= 2:
            # Looked up once a connection carries a second write: a connection used
            # for one response only never pays for it.
            self.fd = _socket_fd(self.transport)
        if self.fd >= 0 and type(data) is bytes:
            if self.buffered:
                if self.transport.get_write_buffer_size():
                    self.write(data)
                    return
                self.buffered = False
            size = PyBytes_GET_SIZE(data)
            if size == 0:
                return
            sent = send(self.fd, PyBytes_AS_STRING(data), size, MSG_NOSIGNAL | MSG_DONTWAIT)
            if sent == size:
                return
            if sent > 0:
                data = data[sent:]
        self.buffered = True
        self.write(data)

    def send(self, data):
        """Write data after everything written before it (what _write does, for Python)."""
        self._write(data)


def _allow_direct_sends(cls):
    """Test hook: let sends go straight to the socket of transports of class cls."""
    _direct_transports[cls] = True


cdef class ClientConnection(_Sender):
    """Reads requests, hands them to a handler, writes responses in order."""

    cdef public object app
    cdef public object listen_key
    cdef public bytes buffer
    cdef public int state
    cdef public double deadline
    cdef public int timeout_status
    cdef public Request request
    cdef public object handler
    cdef public BodyReader body
    cdef public bint keep_alive
    cdef public long requests_served
    cdef public object id
    cdef public object remote_addr
    cdef public object remote_port
    cdef public object server_addr
    cdef public object server_port
    cdef public bint reading_paused
    cdef public bint writing_paused
    cdef public bint response_started
    cdef public bint closing_after_response
    cdef public bint discarding
    cdef public bint in_read_loop
    cdef public object ssl_object   # set by TlsClientConnection
    cdef public object pending_head  # PendingHead of a head that arrives in pieces
    cdef public object proxy_protocol   # ProxyAddresses, set by ProxyProtocolReader
    cdef public object pacer    # limit_rate's Pacer of the response going out (limit_rate.py)
    cdef public double accepted     # the loop's clock at connection_made ($connection_time)
    # The previous request ended with bytes of the next one already read: that one is
    # pipelined ($pipe, nginx's hc->pipeline).
    cdef bint leftover
    cdef bint draining      # the app is shutting down: no keep-alive (app.shutting_down)
    cdef object default     # app.default_server(listen_key): fixed for the app's life
    cdef _ServerInfo default_info
    cdef object clock       # app.clock: the loop's time()
    cdef bint native_clock  # it is a real loop's: read CLOCK_MONOTONIC directly instead
    cdef double event_now   # set while an event that already read the clock finishes
    cdef bint own_dispatch  # the app's dispatch is WorkerApp's: answer proxy plans here
    # The Host value of the previous request, its $host and the server it chose.
    cdef bytes last_host_value
    cdef object last_host, last_server
    cdef _ServerInfo last_info
    # The location (or server) whose plan info was looked up last, and that info.
    cdef object where_obj
    cdef object where_limits    # where_obj's LimitExceptPlan (limit_except.py), else None
    cdef object last_location, last_plan    # the previous request's location and its plan
    cdef _PlanInfo last_plan_info
    cdef _PlanInfo where_info

    def __init__(self, app, listen_key):
        self._init(app, listen_key)

    cdef _init(self, app, listen_key):
        self.app = app
        self.listen_key = listen_key
        self.own_dispatch = _dispatch_mirrored(app)
        self.clock = app.clock
        self.native_clock = is_native_clock(self.clock, _native_clocks)
        self.transport = None
        self.buffer = b""
        self.pending_head = None
        self.state = HEAD
        self.deadline = 0.0
        self.timeout_status = 0
        self.request = None
        self.handler = None
        self.body = None
        self.keep_alive = False
        self.requests_served = 0
        self.id = 0
        self.remote_addr = ""
        self.remote_port = 0
        self.server_addr = ""
        self.server_port = 0

    cdef inline double _now(self):
        return monotonic() if self.native_clock else self.clock()

    # Protocol interface -------------------------------------------------

    def connection_made(self, transport):
        self._attach_transport(transport)
        self.accepted = self._now()
        self.id = self.app.next_connection_id()
        # No TCP_NODELAY here: uvloop and asyncio set it on every TCP transport already.
        peer = transport.get_extra_info("peername") or ("", 0)
        self.remote_addr, self.remote_port = peer[0], peer[1]
        key = self.listen_key
        if key[0] in ("0.0.0.0", "::") or (":" in key[0] and "." in key[0]):
            local = transport.get_extra_info("sockname") or ("", 0)
            self.server_addr, self.server_port = local[0], local[1]
            self.listen_key = self.app.listen_key_for(key, self.server_addr)
        else:
            # A socket bound to one address: that address is the local one, known
            # without asking the transport (nginx skips getsockname() the same way).
            self.server_addr, self.server_port = key[0], key[1]
        app = self.app
        server = self.default = app.default_server(self.listen_key)
        self.default_info = _server_info(server)
        connections = app.connections
        if len(connections) >= app.max_connections:
            # nginx's behaviour too: over worker_connections, new connections are dropped.
            app.connections_refused()
            self.state = CLOSED
            transport.abort()
            return
        connections.add(self)
        self._arm(server.client_header_timeout, 408)
        if app.shutting_down:     # accepted as the app began to shut down
            self.draining = True

    def data_received(self, bytes data):
        if self.state == CLOSED:
            return
        if self.pending_head is not None:
            # The rest of a head that arrives in pieces; self.buffer keeps its beginning.
            try:
                data = self.pending_head.add(data)
            except HttpError as exc:
                self._reject(exc)
                return
            if data is not None:
                self.buffer = data
                self._read_requests()
            return
        self.buffer = self.buffer + data if self.buffer else data
        if self.state == HEAD:
            self._read_requests()
        elif self.state == BODY:
            self._read_body()
        elif len(self.buffer) > PIPELINE_LIMIT and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def eof_received(self):
        self._stop_direct()     # returning False below: the transport closes itself
        if self.state == BODY and self.body is not None and not self.body.done:
            if self.handler is not None:
                self.handler.client_aborted()
        elif self.state == HEAD:
            self.close()
        return False

    def connection_lost(self, exc):
        self._stop_direct()
        self.state = CLOSED
        self.app.connection_closed(self)
        handler = self.handler
        self.handler = None
        if handler is not None:
            handler.client_aborted()
        cdef Request request = self.request
        if request is not None:
            if request.cleanup is not None:
                _run_cleanup(request)     # a request that never finished
            request.connection = None

    def pause_writing(self):
        self.writing_paused = True
        if self.handler is not None:
            self.handler.client_write_paused()

    def resume_writing(self):
        self.writing_paused = False
        if self.handler is not None and (self.pacer is None or not self.pacer.delayed):
            self.handler.client_write_resumed()

    # Reading requests ----------------------------------------------------

    cdef _read_requests(self):
        # Iterative, not recursive: pipelined requests answered synchronously loop here.
        cdef _ServerInfo limits
        if self.in_read_loop:
            return
        self.in_read_loop = True
        try:
            limits = self.default_info
            while self.state == HEAD and self.buffer:
                try:
                    head = parse_request_head(self.buffer, limits.header_line,
                                              limits.header_total)
                    if head is None:
                        if self.pending_head is None:
                            self.pending_head = PendingHead(self.buffer, limits.header_line,
                                                       limits.header_total)
                        else:
                            self.pending_head.settle(self.buffer)
                        return
                    self.pending_head = None
                    self._start_request(head)
                except HttpError as exc:
                    self._reject(exc)
                    return
        finally:
            self.in_read_loop = False

    cdef _start_request(self, tuple head):
        cdef bytes target, method
        cdef list headers
        cdef int version
        cdef Py_ssize_t consumed
        cdef _ServerInfo sinfo = None
        cdef bint odd_names
        method, target, version, headers, consumed, odd_names = head
        raw = self.buffer[:consumed] if odd_names else None
        self.buffer = b"" if consumed == PyBytes_GET_SIZE(self.buffer) else self.buffer[consumed:]
        uri, args, request_uri = split_target(target)
        cdef Request request = Request.__new__(Request)
        name = _method_names.get(method)
        if name is None:
            name = method.decode("latin-1")
            if len(_method_names) < 64:     # the usual few; clients cannot grow it further
                _method_names[method] = name
        request._init(name, request_uri, uri, args, version, headers)
        request.raw_method = method
        cdef bint origin_form = PyBytes_GET_SIZE(target) > 0 and PyBytes_AS_STRING(target)[0] == b"/"
        if origin_form:
            request.raw_target = target      # $request_uri is this target, decoded
        request.start_time = self._now()
        request.request_length = consumed
        request.remote_addr = self.remote_addr
        request.remote_port = self.remote_port
        request.server_addr = self.server_addr
        request.server_port = self.server_port
        request.connection_id = self.id
        request.connection = self
        if self.leftover:
            request.pipelined = True
        if self.ssl_object is not None:
            request.scheme = "https"
            request.ssl_object = self.ssl_object
        if self.proxy_protocol is not None:
            request.proxy_protocol = self.proxy_protocol
        self.requests_served += 1
        request.connection_requests = self.requests_served
        self.request = request
        self.response_started = False
        self.closing_after_response = False

        # One pass over the fields for the few that matter here, by lowercase name.
        cdef tuple item
        cdef const char* lower
        cdef Py_ssize_t n
        cdef int hosts = 0
        cdef bint has_connection = False, has_framing = False
        host = None
        for item in headers:
            n = PyBytes_GET_SIZE(<bytes>item[0])
            lower = PyBytes_AS_STRING(<bytes>item[0])
            if n == 4 and memcmp(lower, b"host", 4) == 0:
                hosts += 1
                host = item[2]
            elif n == 10 and memcmp(lower, b"connection", 10) == 0:
                has_connection = True
            elif (n == 14 and memcmp(lower, b"content-length", 14) == 0) or \
                    (n == 17 and memcmp(lower, b"transfer-encoding", 17) == 0):
                has_framing = True
        if hosts > 1:
            host = _header_bytes(headers, b"host")    # joined, as the twin reads it
        if version == 11 and host is None:
            raise BadRequest('client sent HTTP/1.1 request without "Host" header')
        if not origin_form and b"://" in target[:16]:
            # RFC 9112 3.2.2: an absolute-form target's authority replaces Host.
            request.host = _host_name(target.split(b"/", 3)[2].decode("latin-1"))
            server = self.app.server_router.select(self.listen_key, request.host or None)
        elif host is not None:
            if host == self.last_host_value:
                # The server for this socket and Host, found for the previous request.
                request.host = self.last_host
                server = self.last_server
                sinfo = self.last_info
            else:
                if b"," in host:
                    raise BadRequest('client sent duplicate host header')
                request.host = _host_name(host.decode("latin-1"))
                server = self.app.server_router.select(self.listen_key, request.host or None)
                sinfo = _server_info(server)
                self.last_host_value = host
                self.last_host = request.host
                self.last_server = server
                self.last_info = sinfo
        else:
            server = self.app.server_router.select(self.listen_key, None)
        request.server = server
        if sinfo is None:
            sinfo = _server_info(server)
        request.server_name = sinfo.server_name
        if odd_names:
            headers = header_names.screen_http1(
                request, raw, not origin_form and b"://" in target[:16],
                self.default_info.server, server)
        if sinfo.verify_client and self.ssl_object is not None and self.certificate_refused():
            return
        if sinfo.real_ip is not None:
            sinfo.real_ip.apply(request)     # nginx's post-read phase: the server's settings
        self.keep_alive = _wants_keep_alive(headers, version) if has_connection else version == 11

        if has_framing:
            kind, length = request_body_framing(headers, version)
        else:
            kind, length = "none", 0
        if kind != "none":
            self.state = BODY
            self.body = BodyReader(kind, length)
        else:
            self.state = WAIT
            self.body = None
        self.deadline = 0.0
        if self.own_dispatch:
            self._dispatch(request, sinfo)
        else:
            self.app.dispatch(self, request)
        if self.state == BODY:
            self._read_body()

    cdef _dispatch(self, Request request, _ServerInfo sinfo):
        """WorkerApp.dispatch (server.py), with proxy plans answered by ProxyExchange below."""
        cdef _PlanInfo info
        cdef bint redirect = False
        app = self.app
        splan = sinfo.plan
        if sinfo.plan_info.is_return:
            plan = splan    # a server-level return runs before location matching
        else:
            router = sinfo.router
            if type(router) is LocationRouter:
                location = (<LocationRouter>router).locate(request.uri, &redirect)
            else:
                location, redirect = router.find(request.uri)
            if redirect:
                # nginx's auto_redirect: "/api" -> "/api/" for a proxied "location /api/".
                target = request.uri + "/" + ("?" + request.args if request.args else "")
                request.location = location
                self.send_simple(301, error_page(301), b"text/html", b"Location: %s\r\n"
                                 % app.absolute_url(request, target).encode("latin-1", "replace"))
                return
            request.location = location
            if location is None:
                plan = splan
            elif location is self.last_location:
                plan = self.last_plan       # the previous request's location: same plan
            else:
                plan = location.plan
                self.last_location = location
                self.last_plan = plan
                self.last_plan_info = _plan_info(plan)
        info = self.last_plan_info if plan is self.last_plan and plan is not None \
            else _plan_info(plan)
        if info.real_ip is not None:
            info.real_ip.apply(request)     # nginx's preaccess phase: the location's settings
        if info.keepalive_timeout <= 0 or self.requests_served >= info.keepalive_requests:
            self.keep_alive = False
        self.set_body_limit(info.client_max_body_size, info.client_body_timeout)
        try:
            if info.is_proxy:
                self._answer_proxy(request, plan, info)
            elif info.program is not None:
                self._answer_script(request, plan, info)
            elif info.unikernel_start is not None:
                info.unikernel_start(self, request, plan, app)
            else:
                app._answer(self, request, plan, 0)
        except HttpError:
            raise
        except GatewayError as exc:
            log.error(f"*{request.connection_id} {exc}, client: {request.remote_addr}, request: "
                      f'"{request.method} {request.request_uri}"')
            self.send_error(500)
        except Exception as exc:   # a bug must cost one request, not the worker
            log.alert(f"unexpected {type(exc).__name__}: {exc} while handling "
                      f'"{request.method} {request.request_uri}"')
            if not self.response_started:
                self.send_error(500)
            else:
                self.close()

    cdef _answer_script(self, Request request, plan, _PlanInfo info):
        """WorkerApp._answer_rewrite for a location's script (server.py): a script that ends
        in its location's proxy content is answered here, any other end by the app."""
        cdef Program program = info.program
        cdef int end = program.execute(request)
        active = program.state.active
        if end == SCRIPT_DONE and active is None and info.script_content_info is not None and \
                (request.vars is None or _RATE not in <dict>request.vars):
            self._answer_proxy(request, info.script_content, info.script_content_info)
        else:
            self.app.answer_script_end(self, request, plan, end, program.state.value, active, 0)

    def answer_proxy(self, Request request, plan):
        """Proxy with ``plan`` chosen outside _dispatch (after a rewrite script)."""
        self._answer_proxy(request, plan, _plan_info(plan))

    cdef _answer_proxy(self, Request request, plan, _PlanInfo info):
        if self.state == BODY and request.version == 11:
            expect = header_value(request.headers, b"expect", False)
            if expect is not None and expect.lower() == "100-continue":
                self.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
        cdef ProxyExchange exchange = ProxyExchange.__new__(ProxyExchange)
        exchange.setup(self, request, plan, info, self.app)
        self.handler = exchange
        exchange._start(request.start_time)    # read in this same callback

    def proxy_exchange(self, Request request, plan):
        """A ProxyExchange for `plan`'s upstream, not started yet (the caller may hand it body
        pieces first): how a composed location proxies once its parts have passed."""
        if plan.proxy.cache is not None:
            from gateway.http.proxy_cache import cache_exchange
            cached = cache_exchange(self, request, plan, self.app)
            self.handler = cached
            return cached
        if plan.proxy.python_only and getattr(plan, "gzip", None) is None:
            plain = proxy_py.ProxyExchange(self, request, plan, self.app)
            self.handler = plain
            return plain
        if getattr(plan, "gzip", None) is not None:
            gzipped = plan.gzip.exchange_class(self, request, plan, self.app)
            self.handler = gzipped
            return gzipped
        cdef ProxyExchange exchange = ProxyExchange.__new__(ProxyExchange)
        exchange.setup(self, request, plan, _plan_info(plan), self.app)
        self.handler = exchange
        return exchange

    cdef _read_body(self):
        body = self.body
        try:
            used, pieces = body.consume(self.buffer)
        except HttpError as exc:
            self._reject(exc)
            return
        self.buffer = self.buffer[used:] if used < len(self.buffer) else b""
        handler = self.handler
        if pieces and handler is not None:
            handler.client_body(pieces)
        if body.done:
            self.state = WAIT
            self.deadline = 0.0
            if handler is not None:
                handler.client_body_end()
            elif self.discarding:
                self.discarding = False
                self._next_request()
        elif self.state == BODY:
            self._arm(body.timeout, 408)

    cpdef set_body_limit(self, long long limit, double timeout):
        """Apply the location's client_max_body_size and client_body_timeout."""
        body = self.body
        if body is None:
            return
        body.timeout = timeout
        body.limit = limit if limit or body.framing != F_CHUNKED else CHUNKED_MEMORY_LIMIT
        if limit and body.framing == F_LENGTH and body.remaining > limit:
            raise PayloadTooLarge(
                f"client intended to send too large body: {body.remaining} bytes")
        self._arm(timeout, 408)

    cpdef bint body_pending(self):
        return self.state == BODY

    # Writing responses ---------------------------------------------------

    cpdef send_head(self, int status, header_lines, add_headers=None, body=b"", own=None):
        """Write a status line, our Server/Date, the header lines, Connection, then ``body``.

        Head and a body already at hand go out in one write: one system call per response.
        ``own``: (our Server line, our Date line) when the upstream's replace one of them.
        """
        self._send_parts(status, [None, None, header_lines], add_headers, body, own)

    cdef Request _begin_response(self, int status):
        """The request, its status set; keep-alive decided for the response now starting."""
        cdef Request request = self.request
        request.status = status
        self.response_started = True
        if self.closing_after_response or self.draining or \
                (self.state == BODY and not self._body_discardable()):
            self.keep_alive = False
        return request

    cdef _send_parts(self, int status, list parts, add_headers, body, own=None):
        """send_head with the header lines as pieces after two free slots, joined once."""
        cdef Request request = self._begin_response(status)
        parts[0] = _status_line(status)
        parts[1] = _server_and_date(self._server_tokens(request))
        if own is not None:
            parts[1] = own_lines(parts[1], own[0], own[1])
        if add_headers:
            if _record_heads:       # $sent_http_* in add_header: the fields so far
                response_heads.record(request, response_heads.SENT, parts[2])
            parts.append(self._render_add_headers(status, add_headers))
        parts.append(KEEP_ALIVE_END if self.keep_alive else CLOSE_END)
        if body:
            parts.append(body)
            request.body_bytes_sent += len(body)
        data = _join(parts)
        request.bytes_sent += len(data)
        if _record_heads:
            response_heads.record(request, response_heads.SENT, data)
        if self.pacer is None:
            self._write(data)
        else:
            self.pacer.write(data)

    cdef _send_relayed_head(self, int status, bytes fields, bytes extra, add_headers,
                            const char* tail, Py_ssize_t tail_size, object own):
        """_send_parts for an upstream's head: the same bytes, without a list of parts.

        Status line, Server/Date, the relayed ``fields``, ``extra`` (a framing line or
        None), the add_header lines, Connection, then ``tail[:tail_size]`` (a body that
        came with the head), measured first and copied once into one write.
        """
        cdef Request request = self._begin_response(status)
        cdef Py_ssize_t total
        cdef char* w
        line = _status_line(status)
        server_date = _server_and_date(self._server_tokens(request))
        if own is not None:     # proxy_pass_header Server or Date, and the upstream sent it
            server_date = own_lines(server_date, own[0], own[1])
        if _record_heads:       # $sent_http_* in add_header: the fields so far
            response_heads.record(request, response_heads.SENT, fields)
        added = self._render_add_headers(status, add_headers) if add_headers else b""
        end = KEEP_ALIVE_END if self.keep_alive else CLOSE_END
        if extra is None:
            extra = b""
        total = (PyBytes_GET_SIZE(line) + PyBytes_GET_SIZE(server_date)
                 + PyBytes_GET_SIZE(fields) + PyBytes_GET_SIZE(extra)
                 + PyBytes_GET_SIZE(added) + PyBytes_GET_SIZE(end) + tail_size)
        data = PyBytes_FromStringAndSize(NULL, total)
        w = PyBytes_AS_STRING(data)
        w = _put(w, line, NULL, 0)
        w = _put(w, server_date, NULL, 0)
        w = _put(w, fields, NULL, 0)
        w = _put(w, extra, NULL, 0)
        w = _put(w, added, NULL, 0)
        w = _put(w, end, tail, tail_size)
        request.body_bytes_sent += tail_size
        request.bytes_sent += total
        if _record_heads:
            response_heads.record(request, response_heads.SENT, data)
        if self.pacer is None:
            self._write(data)
        else:
            self.pacer.write(data)

    cdef bytes _render_add_headers(self, int status, add_headers):
        out = []
        applies = status in _ADD_HEADER_CODES
        for name, template, always in add_headers:
            if applies or always:
                value = _render(template, self.request)
                if value:
                    out.append(b"%s: %s\r\n" % (name, value.encode("latin-1", "replace")))
        return b"".join(out)

    cpdef send_raw(self, data):
        """Bytes that are neither head nor body (100 Continue, a last chunk), in order."""
        if self.pacer is None:
            self._write(data)
        else:
            self.pacer.write(data)

    cpdef send_body(self, data):
        cdef Request request = self.request
        request.body_bytes_sent += len(data)
        request.bytes_sent += len(data)
        if self.pacer is None:
            self._write(data)
        else:
            self.pacer.write(data)

    def write_now(self, data):
        """Write to the socket now, past the pacer (gateway/http/limit_rate.py)."""
        self._write(data)

    def send_simple(self, int status, body=b"", content_type=b"text/html",
                    extra=b"", add_headers=None, bint empty_type=False):
        """A complete response with an in-memory body."""
        self._send_simple(status, body, content_type, extra, add_headers, empty_type)

    cdef _send_simple(self, int status, body, content_type, extra, add_headers, bint empty_type):
        cdef Request request = self.request
        cdef _PlanInfo info
        if body:
            # where.settings.gzip of the request's location, else its server (gzip.simple compresses).
            info = self._where_info(request)
            if info is not None:
                compress = info.gzip
            else:
                where = request.location if request.location is not None else request.server
                compress = where is not None and where.settings.gzip
            if compress:
                extra = gzip.simple(self, status, body, content_type, extra, add_headers)
                if extra is None:
                    return      # sent compressed
        # The twin's header lines, as pieces after _send_parts' two free slots: joined once there.
        parts = [None, None]
        if content_type is not None and (body or empty_type):
            parts.append(_type_line(content_type))
        if status != 204 and status != 304 and not 100 <= status < 200:
            parts.append(_length_line(len(body)))
        parts.append(extra)
        self._send_parts(status, parts, add_headers, body if request.method != "HEAD" else b"")
        self.finish_response()

    cpdef send_error(self, int status, add_headers=None):
        """nginx's error page for ``status``; closes after errors that leave input unread."""
        if status in CLOSING_ERRORS:
            self.closing_after_response = True
        app = self.app
        if getattr(app, "error_pages_in_use", False) and app.answer_error_page(self, status):
            return      # error_page (gateway/http/errorpages.py) answered instead
        tokens = self._server_tokens(self.request)
        cdef int sent = 400 if status in SENT_AS_400 else status
        self.send_simple(sent, padded(self.request, sent, error_page(status, tokens)),
                         b"text/html", b"", add_headers)

    cdef bint _body_discardable(self):
        body = self.body
        return body.framing == F_LENGTH and body.remaining <= DISCARD_LIMIT

    cpdef finish_response(self):
        """The current response is complete: log it and go on with the next request."""
        if self.pacer is not None and self.pacer.holds_finish():
            return      # once the bytes limit_rate holds are sent
        cdef Request request = self.request
        self.handler = None
        cdef _PlanInfo where
        if request is not None:
            # WorkerApp.log_request, inlined: the access logs of the location, else the server.
            where = self._where_info(request)
            if where is not None:
                logs = where.access_logs
                if logs:
                    for file, fmt in logs:
                        file.write(fmt.render(request))
                if where.meter is not None:
                    where.meter.record(request)
            if request.cleanup is not None:
                _run_cleanup(request)
            request.connection = None     # no cycle with self.request once logged
        self.leftover = PyBytes_GET_SIZE(self.buffer) > 0
        if self.state == CLOSED:
            return
        if not self.keep_alive:
            self.close()
        elif self.state == BODY:
            if self._body_discardable():
                self.discarding = True    # _read_body goes on once the body is in
            else:
                self.close()
        else:
            self._next_request()

    cdef _next_request(self):
        cdef Request request = self.request
        cdef long long keepalive_requests
        cdef double keepalive_timeout
        self.request = None
        self.body = None
        self.state = HEAD
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        cdef _PlanInfo where = self._where_info(request)
        if where is None:
            location = request.location
            settings = location.settings if location is not None else request.server.settings
            keepalive_requests = settings.keepalive_requests
            keepalive_timeout = settings.keepalive_timeout
        else:
            keepalive_requests = where.keepalive_requests
            keepalive_timeout = where.keepalive_timeout
        if self.requests_served >= keepalive_requests:
            self.close()
            return
        if self.buffer:
            self._arm(_server_info(request.server).client_header_timeout, 408)
            self._read_requests()
        else:
            self._arm(keepalive_timeout, 0)

    cdef bint _server_tokens(self, Request request):
        """server_tokens of the request's location, else of its server (on when neither)."""
        cdef _PlanInfo info = self._where_info(request)
        if info is not None:
            return info.server_tokens
        where = request.location if request.location is not None else request.server
        return where.settings.server_tokens if where is not None else True

    cdef _PlanInfo _where_info(self, Request request):
        """The plan info of the request's location, else of its server (None without one)."""
        where = request.location
        if where is None:
            where = request.server
        if where is not self.where_obj:
            plan = getattr(where, "plan", None) if where is not None else None
            self.where_limits = plan if plan is not None and plan.kind == "limit_except" else None
            self.where_info = _plan_info(plan) if plan is not None else None
            self.where_obj = where
        if self.where_limits is not None:
            # limit_except: the log phase uses the plan of the request's method (access_log).
            return _plan_info(self.where_limits.select(request.method))
        return self.where_info

    cpdef close(self):
        if self.state != CLOSED:
            self.state = CLOSED
            self._stop_direct()
            self.transport.close()

    # Errors and timeouts -------------------------------------------------

    cdef _reject(self, exc):
        """Answer a request we cannot take, then close (the input is in an unknown state)."""
        self.pending_head = None
        if self.request is None:
            request = Request("", "", "", "", 10, [])
            request.remote_addr = self.remote_addr
            request.server = self.app.default_server(self.listen_key)
            request.start_time = self._now()
            request.connection = self
            self.request = request
        if self.response_started or self.state == CLOSED:
            self.close()
            return
        if log.enabled("info"):
            log.info(f"*{self.id} "
                     f"{exc.detail} while reading client request, client: {self.remote_addr}")
        self.state = WAIT
        self.keep_alive = False
        handler = self.handler
        self.handler = None
        if handler is not None:
            handler.cancel()
        self.send_error(exc.status)

    def certificate_refused(self):
        """nginx's check of the client certificate against the server Host chose; True
        once the request is answered with 495 or 496 (the twin's, in connection.py)."""
        from gateway.http import client_cert
        refused = client_cert.refusal(self.ssl_object, self.request.server.tls.verify)
        if refused is None:
            return False
        status, text = refused
        self._reject((SslCertificateError if status == 495 else SslCertificateMissing)(text))
        return True

    cdef _arm(self, double timeout, int status):
        cdef double now = self.event_now if self.event_now > 0.0 else self._now()
        self.deadline = now + timeout if timeout > 0 else 0.0
        self.timeout_status = status

    def check_deadline(self, double now):
        """Called by the app's sweep: enforce header, body and keep-alive timeouts."""
        handler = self.handler
        if handler is not None:
            handler.check_deadline(now)
        if self.deadline == 0.0 or now < self.deadline or self.state == CLOSED:
            return
        self.deadline = 0.0
        if self.timeout_status and (self.buffer or self.state == BODY or self.request is not None):
            self._reject(RequestTimeout("client timed out"))
        else:
            self.close()

    def shutdown(self, bint graceful):
        """Close now if idle (or if not graceful); otherwise after the current response."""
        self.draining = True
        if not graceful:
            self.close()
            return
        self.keep_alive = False
        if self.state == HEAD and not self.buffer:
            # Idle, just accepted or between keep-alive requests: a request may be on its way
            # (a client reusing its connection cannot know we stop, and closing under it resets
            # it). A short grace: a request that comes is answered with Connection: close.
            grace = self._now() + SHUTDOWN_GRACE
            if self.deadline == 0.0 or self.deadline > grace:
                self.deadline = grace


# C entry points for _fastpath/ukpath.pyx (declared in proxyproto.pxd): the compiled connection's
# methods without Python's argument passing; any other connection (HTTP/2 streams) by its methods.

cdef bint conn_body_pending(conn) except -1:
    """conn.body_pending()."""
    if isinstance(conn, ClientConnection):
        return (<ClientConnection>conn).body_pending()
    return conn.body_pending()


cdef int conn_set_handler(conn, handler) except -1:
    """conn.handler = handler."""
    if isinstance(conn, ClientConnection):
        (<ClientConnection>conn).handler = handler
    else:
        conn.handler = handler
    return 0


cdef conn_send_simple(conn, int status, body, content_type, extra, add_headers):
    """conn.send_simple(status, body, content_type, extra, add_headers)."""
    if isinstance(conn, ClientConnection):
        (<ClientConnection>conn)._send_simple(status, body, content_type, extra, add_headers, False)
    else:
        conn.send_simple(status, body, content_type, extra, add_headers)


cdef class TlsClientConnection(ClientConnection):
    """A client connection on a ``listen ... ssl`` socket (connection.py's twin).

    Never a direct send: bytes written to the socket here would bypass the encryption,
    whatever transport class carries them.  Decided once, when the connection is made.
    """

    def connection_made(self, transport):
        self.ssl_object = transport.get_extra_info("ssl_object")
        self.app.handshakes.pop(self, None)
        ClientConnection.connection_made(self, transport)
        self._stop_direct()
        if self.app.shutting_down and self.state != CLOSED:
            self.shutdown(True)      # accepted before a graceful stop, handshake done after it

    cpdef close(self):
        # Idle between requests (keep-alive or header timeout): send close_notify and close
        # at once, as nginx does, instead of waiting for the client's close_notify.
        if self.state == HEAD and not self.buffer and \
                not self.transport.get_write_buffer_size():
            self.state = CLOSED
            self.transport.close()       # writes the close_notify alert
            self.transport.abort()       # and does not wait for the answer
            return
        ClientConnection.close(self)

    def shutdown(self, bint graceful):
        # A fast stop does not flush or wait for the client's close_notify.
        if not graceful and self.state != CLOSED:
            self.state = CLOSED
            self.transport.abort()
            return
        ClientConnection.shutdown(self, graceful)


include "h2stream.pxi"


# The keep-alive pool --------------------------------------------------------
# KeepalivePool (upstream_connection.py) stays the owner of the idle connections;
# take and put are done here on its own containers so both twins share one pool.

cdef object _pool_take(_PlanInfo info, peer):
    cdef list stack = info.by_peer.get(peer)
    if not stack:
        return None
    cdef dict idle = info.idle
    while stack:
        conn = stack.pop()
        del idle[conn]
        if type(conn) is UpstreamConnection:
            if (<UpstreamConnection>conn).closed or \
                    (<UpstreamConnection>conn).transport.is_closing():
                continue
            (<UpstreamConnection>conn).reused = True
            return conn
        if conn.closed or conn.transport.is_closing():
            continue
        conn.reused = True
        return conn
    return None


cdef _pool_put(_PlanInfo info, conn, double now):
    if type(conn) is not UpstreamConnection:
        info.pool.put(conn, now)
        return
    cdef UpstreamConnection up = <UpstreamConnection>conn
    up.exchange = None
    cdef long long size = info.pool_size
    # A transport that is closing is not checked here: take() skips it, and its
    # connection_lost() takes it out of the pool.
    if size <= 0 or up.closed or up.requests >= info.pool_max_requests:
        up.close()
        return
    if info.waiting:        # a request waits for a connection (KeepalivePool.put)
        waiter = info.pool.next_waiter(up.peer)
        if waiter is not None:
            up.reused = True
            waiter.take_connection(up, now)
            return
    up.idle_since = now
    cdef dict idle = info.idle
    idle[up] = None
    cdef dict by_peer = info.by_peer
    cdef list stack = by_peer.get(up.peer)
    if stack is None:
        stack = by_peer[up.peer] = []
    stack.append(up)
    if len(idle) > size:
        info.pool.over_size()


cdef class UpstreamConnection(_Sender):
    """One TCP connection to a peer; forwards events to the exchange using it."""

    cdef public object pool
    cdef public object peer
    cdef public object exchange
    cdef public bint reused
    cdef public long requests
    cdef public double idle_since
    cdef public bint closed

    def __init__(self, pool, peer):
        self.pool = pool
        self.peer = peer
        self.transport = None
        self.exchange = None

    def connection_made(self, transport):
        self._attach_transport(transport)     # TCP_NODELAY: set by uvloop and asyncio already

    def data_received(self, data):
        exchange = self.exchange
        if exchange is None:
            self.close()   # an idle connection must stay silent
        elif type(exchange) is ProxyExchange:
            (<ProxyExchange>exchange).upstream_data(data)
        else:
            exchange.upstream_data(data)

    def eof_received(self):
        self._stop_direct()     # returning False below: the transport closes itself
        if self.exchange is not None:
            self.exchange.upstream_eof()
        else:
            self.close()
        return False

    def connection_lost(self, exc):
        self._stop_direct()
        self.closed = True
        exchange = self.exchange
        self.exchange = None
        if exchange is not None:
            exchange.upstream_lost(exc)
        else:
            self.pool.forget(self)

    def pause_writing(self):
        if self.exchange is not None:
            self.exchange.upstream_write_paused()

    def resume_writing(self):
        if self.exchange is not None:
            self.exchange.upstream_write_resumed()

    cpdef close(self):
        if not self.closed:
            self.closed = True
            self.exchange = None
            self.pool.forget(self)
            if self.transport is not None:
                self._stop_direct()
                self.transport.close()


# Proxying -------------------------------------------------------------------

cdef class TlsUpstreamConnection(UpstreamConnection):
    """A connection to an ``https://`` upstream: never a direct send (it would skip TLS)."""

    def connection_made(self, transport):
        UpstreamConnection.connection_made(self, transport)
        self._stop_direct()


cdef inline list _appended(list items, value):
    """items with value appended; a new list when items is None (made on first use)."""
    if items is None:
        return [value]
    items.append(value)
    return items


@cython.freelist(64)
cdef class ProxyExchange:
    """One client request on its way to an upstream and back."""

    cdef public ClientConnection conn
    cdef public Request request
    cdef public object plan
    cdef public object proxy
    cdef public object loop
    cdef public object app
    cdef public object peers
    cdef public object next_peer
    cdef public object peer
    cdef public object upstream
    cdef public int state
    cdef public bytes head
    cdef public list body_parts
    cdef public long long body_size
    cdef public bint body_complete
    cdef public bint replayable
    cdef public bint request_sent
    cdef public int tries
    cdef public double started
    cdef public double try_started
    cdef public double deadline
    cdef int deadline_kind
    cdef public bytes response_buffer
    cdef int framing
    cdef public long long remaining
    cdef public object decoder
    cdef public bint wrap_chunks
    cdef public bint reusable
    cdef public bint client_paused
    cdef public bint upstream_paused
    cdef public object connect_future
    cdef public double header_time
    # Each try's peer, status and time ($upstream_addr, _status, _response_time): the
    # first in C fields, later ones in lists made only for a retry.
    cdef object peer0
    cdef int status0
    cdef double time0
    cdef int n_peers, n_statuses, n_times
    cdef list more_peers, more_statuses, more_times
    # The current try's bytes read and written ($upstream_bytes_received, _sent) and
    # where its response body began ($upstream_response_length); earlier tries' as
    # tuples in a list made only for a retry. C integers: no object per chunk.
    cdef long long received, sent, head_bytes
    cdef bint has_body
    cdef list earlier_bytes
    # The current try's connect and header times ($upstream_connect_time, _header_time;
    # -1: not reached), earlier tries' as tuples in a list made only for a retry.
    cdef double try_connect, try_header
    cdef list earlier_times
    cdef public bint buffer_body
    cdef public bint fresh_retry_done
    cdef _PlanInfo info
    cdef bint head_request
    cdef bint bodiless      # no request body goes upstream: head ends with its blank line
    cdef public bint waiting    # for a connection from the pool (KeepalivePool.wait)

    def __init__(self, ClientConnection conn, Request request, plan, app):
        self.setup(conn, request, plan, _plan_info(plan), app)

    cdef setup(self, ClientConnection conn, Request request, plan, _PlanInfo info, app):
        self.conn = conn
        self.request = request
        self.plan = plan
        self.info = info
        self.proxy = info.proxy
        self.app = app
        request.proxy_host = info.proxy_host
        if info.compiled_balancer:
            self.peers = (<RoundRobin>info.balancer).new_selection()
        else:
            key_template = info.key_template
            key = _render(key_template, request) if key_template is not None else None
            self.peers = info.balancer.select(key)
        self.state = CONNECTING
        # Body pieces held for sending or replaying (None: the request has no body).
        self.body_parts = [] if conn.body is not None else None
        self.body_complete = conn.state != BODY
        # Chunked bodies are read whole and sent with a Content-Length, as nginx does.
        self.buffer_body = conn.body is not None and conn.body.framing == F_CHUNKED
        self.replayable = True
        self.started = request.start_time    # read in this same callback
        self.try_started = self.started
        self.try_connect = self.try_header = -1.0
        self.deadline_kind = D_CONNECT
        self.response_buffer = b""
        self.framing = F_NONE
        cdef str method = request.method
        self.head_request = method == "HEAD"
        # No body to announce: the head gets its final CRLF in the same join (the twin
        # adds it in _head_with_length).
        self.bodiless = conn.body is None or not info.pass_body
        self.head = self._build_head(self.bodiless)

    cpdef start(self):
        self._start(self.conn._now())

    cdef _start(self, double now):
        if self.buffer_body and not self.body_complete:
            return   # client_body_end() starts the first try
        self._try_next_peer(now)

    # Building the upstream request ---------------------------------------

    cdef bytes _build_head(self, bint end):
        """The request line and fields for the upstream, measured first, then copied once."""
        cdef Request request = self.request
        cdef _PlanInfo info = self.info
        cdef list values = None     # the rendered set-header values after the first
        cdef object first = None    # the first rendered value, when some vary
        cdef tuple item
        cdef Py_ssize_t total
        cdef char* w
        target = None
        if info.uri_replacement is None or \
                (info.rewritten_uri and info.passed_uri is None and not request.rewritten):
            # ProxyPlan.upstream_uri's first case: $request_uri, which is the raw target
            # decoded; encoded back it is the raw target itself.
            raw = request.raw_target
            target = raw if raw is not None else \
                (<str>request.request_uri).encode("utf-8", "surrogateescape")
        elif info.rewritten_uri and (info.passed_uri is None or request.rewritten == "break"):
            target = _rewritten_target(request)
        if target is None:
            target = _utf8(info.proxy.upstream_uri(request))
        method = request.raw_method
        if method is None:
            method = (<str>request.method).encode("latin-1")
        version = info.http_version
        total = PyBytes_GET_SIZE(method) + PyBytes_GET_SIZE(target) + PyBytes_GET_SIZE(version) + 4
        for item in info.set_headers:
            value = item[2]
            if value is None:
                text = (<CompiledTemplate>item[1]).render(request)
                value = _latin1(text) if text else b""
                if first is None:
                    first = value
                elif values is None:
                    values = [value]
                else:
                    values.append(value)
            if PyBytes_GET_SIZE(value):
                total += PyBytes_GET_SIZE(item[0]) + PyBytes_GET_SIZE(value) + 4
        headers = request.headers
        for item in headers:
            if not _dropped(info, <bytes>item[0]):
                total += PyBytes_GET_SIZE(item[1]) + PyBytes_GET_SIZE(item[2]) + 4
        if end:
            total += 2
        data = PyBytes_FromStringAndSize(NULL, total)
        w = PyBytes_AS_STRING(data)
        w = _put(w, method, b" ", 1)
        w = _put(w, target, b" ", 1)
        w = _put(w, version, b"\r\n", 2)
        cdef Py_ssize_t k = -1
        for item in info.set_headers:
            value = item[2]
            if value is None:
                value = first if k < 0 else values[k]
                k += 1
            if PyBytes_GET_SIZE(value):
                w = _put(w, item[0], b": ", 2)
                w = _put(w, value, b"\r\n", 2)
        for item in headers:
            if not _dropped(info, <bytes>item[0]):
                w = _put(w, item[1], b": ", 2)
                w = _put(w, item[2], b"\r\n", 2)
        if end:
            w[0] = 13
            w[1] = 10
        return data

    cdef bytes _head_with_length(self):
        if self.bodiless:
            return self.head       # ended by _build_head already
        body = self.conn.body
        length = self.body_size if self.buffer_body else body.remaining + body.received
        return self.head + b"Content-Length: %d\r\n\r\n" % length

    # Choosing and reaching a peer ----------------------------------------

    cdef object _take_peer(self):
        if self.next_peer is not None:
            peer = self.next_peer
            self.next_peer = None
            return peer
        return self._next_peer()

    cdef object _next_peer(self):
        """next(self.peers, None), straight from a compiled balancer's selection."""
        if type(self.peers) is Selection:
            return (<Selection>self.peers).next_peer()
        return next(self.peers, None)

    # ``now`` below is the loop's clock read once in the current event (nginx too reads
    # the time once per event-loop iteration), not once per step.

    cdef _try_next_peer(self, double now):
        peer = self._take_peer()
        if peer is None:
            self._give_up(502, "no live upstreams")
            return
        self.tries += 1
        self._connect(peer, True, now)

    cdef _connect(self, peer, bint allow_cached, double now):
        self.peer = peer
        self.try_started = now
        self._note_peer(peer)
        self._get_connection(peer, allow_cached, False, now)

    cdef _get_connection(self, peer, bint allow_cached, bint waited, double now):
        """Take an idle connection to ``peer``, else open one, else wait for one (``waited``:
        the pool's turn after a wait, within the connect timeout armed when it began)."""
        cdef _PlanInfo info = self.info
        pool = info.pool
        cached = _pool_take(info, peer) if allow_cached and info.keepalive else None
        if cached is not None:
            self._attach(cached, now)
            return
        self.state = CONNECTING
        if not waited:
            self._arm_at(info.connect_timeout, D_CONNECT, now)
        if info.keepalive and info.connecting.get(peer, 0) >= CONNECT_LIMIT:
            self.waiting = True
            pool.wait(peer, self)
            return
        pool.connect_started(peer)
        if self.loop is None:
            self.loop = self.app.loop
        if info.tls is None:
            connecting = self.loop.create_connection(
                partial(UpstreamConnection, pool, peer), peer.host, peer.port)
        else:
            connecting = info.tls.connect(self.loop, partial(TlsUpstreamConnection, pool, peer),
                                          peer.host, peer.port, self.request)
        future = asyncio.ensure_future(connecting)
        self.connect_future = future
        future.add_done_callback(partial(pool.connect_done, peer))
        future.add_done_callback(self._connected)

    def connect_waited(self, peer):
        """The pool lets this waiting exchange open its connection now (or take one)."""
        self._get_connection(peer, True, True, self.conn._now())

    def take_connection(self, upstream, double now):
        """The pool hands this waiting exchange a connection another request gave back."""
        self._attach(upstream, now)

    def _connected(self, future):
        if future is not self.connect_future:
            if not future.cancelled() and future.exception() is None:
                future.result()[1].close()
            return
        self.connect_future = None
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._fail(0, 502, proxy_py.connect_error_text(exc, self.proxy.tls))
            return
        self._attach(future.result()[1], self.conn._now())

    cdef _upstream_write(self, data):
        self.sent += PyBytes_GET_SIZE(data) if type(data) is bytes else len(data)
        upstream = self.upstream
        if type(upstream) is UpstreamConnection:
            (<UpstreamConnection>upstream)._write(data)
        else:
            upstream.transport.write(data)

    cdef _attach(self, upstream, double now):
        self.upstream = upstream
        self.try_connect = now - self.try_started
        if type(upstream) is UpstreamConnection:
            (<UpstreamConnection>upstream).exchange = self
            (<UpstreamConnection>upstream).requests += 1
        else:
            upstream.exchange = self
            upstream.requests += 1
        self.state = WAITING
        self.response_buffer = b""
        self.request_sent = True
        self._upstream_write(self._head_with_length())
        if self.info.pass_body and self.body_parts:
            for part in self.body_parts:
                self._upstream_write(part)
        if not self.replayable and self.body_parts is not None:
            self.body_parts = []
        self._arm_at(self.info.read_timeout, D_READ, now)
        if self.client_paused and self.conn.transport is not None:
            self.client_paused = False
            self.conn.transport.resume_reading()

    # Events from the client ---------------------------------------------

    def client_body(self, pieces):
        streaming = self.upstream is not None and not self.buffer_body
        pass_body = self.info.pass_body
        for piece in pieces:
            self.body_size += len(piece)
            if streaming:
                if pass_body:
                    self._upstream_write(piece)
                if self.replayable:
                    if self.body_size <= REPLAY_LIMIT:
                        self.body_parts.append(piece)
                    else:
                        self.replayable = False
                        self.body_parts = []
            else:
                # No connection yet (or a chunked body read whole): hold the bytes.
                self.body_parts.append(piece)
                if self.body_size > REPLAY_LIMIT and not self.buffer_body:
                    self.replayable = False
        if not streaming and not self.buffer_body and not self.client_paused \
                and sum(map(len, self.body_parts)) > PENDING_LIMIT:
            self.client_paused = True
            self.conn.transport.pause_reading()

    def client_body_end(self):
        self.body_complete = True
        if _record_body:
            request_body.keep(self.request, self.body_parts, self.body_size)
        if self.buffer_body and self.state == CONNECTING and self.upstream is None \
                and self.connect_future is None and self.tries == 0:
            self._try_next_peer(self.conn._now())

    def client_aborted(self):
        """The client went away: drop the try and log the request as nginx's 499."""
        if self.state == DONE:
            return
        self.request.status = self.request.status or 499
        self.cancel()
        self._record()
        self.conn.finish_response()

    cpdef cancel(self):
        """Stop without touching the client connection (it answers by itself)."""
        if self.state != DONE:
            self._finish_upstream(False, False)
            self.state = DONE

    def client_write_paused(self):
        if self.upstream is not None and not self.upstream_paused:
            self.upstream_paused = True
            self.upstream.transport.pause_reading()

    def client_write_resumed(self):
        if self.upstream is not None and self.upstream_paused:
            self.upstream_paused = False
            self.upstream.transport.resume_reading()
        self._arm(self.info.read_timeout, D_READ)

    # Events from the upstream -------------------------------------------

    def upstream_write_paused(self):
        if not self.client_paused and self.conn.transport is not None:
            self.client_paused = True
            self.conn.transport.pause_reading()
        self._arm(self.info.send_timeout, D_SEND)

    def upstream_write_resumed(self):
        if self.client_paused:
            self.client_paused = False
            self.conn.transport.resume_reading()
        self._arm(self.info.read_timeout, D_READ)

    cpdef upstream_data(self, bytes data):
        self.received += PyBytes_GET_SIZE(data)
        if self.state == RELAYING:
            self._arm(self.info.read_timeout, D_READ)
            self._relay(data)
            return
        if self.state != WAITING:
            return
        if self.response_buffer:
            self.response_buffer += data
        else:
            self.response_buffer = data
        try:
            self._read_response_head()
        except (HttpError, UpstreamError) as exc:
            self._fail(2, 502, f"upstream sent invalid header: {exc}")

    cdef _read_response_head(self):
        cdef ResponseHead head
        cdef bytes buffer
        while True:
            buffer = self.response_buffer
            # parse_response_head, response_body_framing and the hidden-field filter of
            # the twin in one pass: the relayed fields come back as one bytes object.
            fields = scan_response_head(buffer, MAX_RESPONSE_HEAD, self.head_request, &head)
            if fields is None:
                return
            self.response_buffer = b""
            if _record_heads:
                response_heads.record(self.request, response_heads.UPSTREAM, buffer)
            if 100 <= head.status < 200 and head.status != 101:
                self.response_buffer = buffer[head.consumed:]   # interim: not relayed
                continue
            self._start_response(&head, <bytes>fields, buffer)
            return

    cdef _start_response(self, ResponseHead* head, bytes fields, bytes buffer):
        cdef double now = self.conn._now()
        cdef int status = head.status
        cdef long long length
        cdef Py_ssize_t start = head.consumed, size = PyBytes_GET_SIZE(buffer) - head.consumed
        self.header_time = self.try_header = now - self.try_started
        if status == 101:
            if header_value(self.request.headers, b"upgrade", False) is not None:
                self._upgrade(buffer, start)
                return
            self.conn.keep_alive = False    # switched protocols, yet not asked to: no reuse
        cdef _PlanInfo info = self.info
        condition = _status_conditions[status]     # scan_response_head: 100..999
        if condition is not None and condition in info.next_upstream \
                and self._may_retry(condition, now):
            self._note_status(status)
            self._note_time(now - self.try_started)
            self._finish_upstream(status >= 500 or status == 429, False)
            peer = self.next_peer
            self.next_peer = None
            self.tries += 1
            self._connect(peer, True, now)
            return
        cdef Request request = self.request
        self._note_status(status)
        if info.intercept is not None and status in info.intercept:
            self._intercept(status, buffer)
            return
        self.has_body = True
        self.head_bytes = self.received - size
        own = None
        if info.response_filter is not None and (info.filter_always or head.redirect_field):
            # The location edits the upstream's fields (gateway/http/headers.py).
            fields, own_server, own_date = info.response_filter.fields(
                request, status, parse_response_head(buffer, MAX_RESPONSE_HEAD)[3],
                self.app.absolute_url)
            if not (own_server and own_date):
                own = (own_server, own_date)
        cdef int kind = head.framing
        if kind == FRAME_ERROR:
            # The twin's response_body_framing raises here: raise the same exception.
            headers = parse_response_head(buffer, MAX_RESPONSE_HEAD)[3]
            response_body_framing(status, headers, request.method)
        length = head.length
        cdef bint upstream_close = head.version == 10 or head.connection_close or status == 101
        cdef bytes extra = None     # a Transfer-Encoding line of ours after the fields
        cdef ClientConnection conn = self.conn
        if head.accel_limit_rate:
            limit_rate.start_accel(conn, request, buffer[:head.consumed])
        if kind == FRAME_CHUNKED:
            if request.version == 11:
                extra = CHUNKED_LINE
            else:
                conn.keep_alive = False
            self.decoder = ChunkedDecoder()
        elif kind == FRAME_CLOSE:
            if request.version == 11 and not self.head_request:
                extra = CHUNKED_LINE
                self.wrap_chunks = True
            else:
                conn.keep_alive = False
            upstream_close = True
        self.framing = kind
        self.remaining = length
        self.reusable = not upstream_close and info.keepalive
        self.state = RELAYING
        if kind == FRAME_LENGTH and 0 < length <= size:
            # The whole body came with the head: answer with a single write.
            if size > length:
                self.reusable = False
            self.remaining = 0
            conn._send_relayed_head(status, fields, extra, info.add_headers,
                                    PyBytes_AS_STRING(buffer) + start, length, own)
            self._complete_at(now)
            return
        conn._send_relayed_head(status, fields, extra, info.add_headers, NULL, 0, own)
        if kind == FRAME_NONE or (kind == FRAME_LENGTH and length == 0):
            self._complete_at(now)
        elif size:
            self._relay(buffer[start:])

    cdef _intercept(self, int status, bytes buffer):
        """proxy_intercept_errors: the location's error_page answers instead (nginx's
        ngx_http_upstream_intercept_errors); the upstream's body is not read."""
        self._note_time(self.conn._now() - self.try_started)
        self._finish_upstream(False, False)
        self.state = DONE
        self._record()
        if status == 401:
            keep_challenge(self.request, parse_response_head(buffer, MAX_RESPONSE_HEAD)[3])
        self.conn.send_error(status, self.info.add_headers)

    cdef _relay(self, bytes data):
        cdef int kind = self.framing
        cdef ClientConnection conn = self.conn
        cdef Py_ssize_t size = len(data)
        if kind == F_LENGTH:
            if size >= self.remaining:
                if size > self.remaining:
                    self.reusable = False   # bytes after the body: do not trust the connection
                    data = data[:self.remaining]
                self.remaining = 0
                conn.send_body(data)
                self._complete()
                return
            self.remaining -= size
            conn.send_body(data)
        elif kind == F_CHUNKED:
            try:
                if self.request.version == 11:
                    used, _ = self.decoder.feed(data, False)
                    conn.send_body(data[:used] if used < size else data)
                else:
                    used, pieces = self.decoder.feed(data, True)
                    for piece in pieces or ():
                        conn.send_body(piece)
            except HttpError:
                self._abort("upstream sent invalid chunked response")
                return
            if self.decoder.done:
                if used < size:
                    self.reusable = False
                self._complete()
        elif kind == F_CLOSE:
            if self.wrap_chunks:
                conn.send_body(b"%x\r\n%s\r\n" % (size, data))
            else:
                conn.send_body(data)

    cdef _upgrade(self, bytes buffer, Py_ssize_t start):
        """101 to a request that asked for an upgrade: the connections become a tunnel."""
        self._note_status(101)
        self.state = RELAYING
        self.deadline = 0.0
        headers = parse_response_head(buffer, MAX_RESPONSE_HEAD)[3]
        start_tunnel(self, headers, buffer[start:])

    def tunnelled(self, long long received, long long sent):
        """The tunnel's bytes from and to the upstream: the try's counts, not its response."""
        self.received += received
        self.head_bytes += received
        self.sent += sent

    def tunnel_closed(self, detail):
        """The tunnel ended (tunnel.py): close the upstream connection, never pool it; log."""
        if self.state == DONE:
            return
        if detail:
            self._log_upstream_error(detail, self.peer, "info")    # nginx's level for these
        self.reusable = False
        self._complete()

    def upstream_eof(self):
        if self.state == RELAYING and self.framing == F_CLOSE:
            if self.wrap_chunks:
                self.conn.send_raw(b"0\r\n\r\n")
            self.reusable = False
            self._complete()
        elif self.state == RELAYING:
            self._abort("upstream prematurely closed connection while reading upstream")
        elif self.state == WAITING:
            self._fail(0, 502, "upstream prematurely closed connection while reading "
                       "response header from upstream")

    def upstream_lost(self, exc):
        if self.state == WAITING:
            detail = f"recv() failed ({exc})" if exc else "upstream prematurely closed connection"
            self._fail(0, 502, f"{detail} while reading response header from upstream")
        elif self.state == RELAYING:
            self._abort("upstream connection lost while reading upstream")

    # Outcomes -----------------------------------------------------------

    cdef _complete(self):
        self._complete_at(self.conn._now())

    cdef _complete_at(self, double now):
        self._note_time(now - self.try_started)
        self._finish_upstream_at(False, self.reusable and self.body_complete, now)
        self.state = DONE
        if self.info.records_upstream:
            self._record()
        cdef ClientConnection conn = self.conn
        conn.event_now = now        # the clock of this event, for the keep-alive deadline
        try:
            conn.finish_response()
        finally:
            conn.event_now = 0.0

    cdef _finish_upstream(self, bint failed, bint reuse):
        self._finish_upstream_at(failed, reuse, self.conn._now())

    cdef _finish_upstream_at(self, bint failed, bint reuse, double now):
        """Report the try to the balancer and put the connection back or close it."""
        self.deadline = 0.0
        self.waiting = False
        if self.connect_future is not None:
            self.connect_future.cancel()
            self.connect_future = None
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            if self.upstream_paused:
                self.upstream_paused = False
                upstream.transport.resume_reading()
            if reuse:
                _pool_put(self.info, upstream, now)
            else:
                upstream.close()
        if self.peer is not None:
            header_time = self.header_time or None
            if self.info.compiled_balancer:
                (<RoundRobin>self.info.balancer).finish(
                    <Peer>self.peer, failed, header_time, now - self.try_started)
            else:
                self.info.balancer.release(self.peer, failed, header_time,
                                           now - self.try_started)
            self.peer = None

    cdef bint _may_retry(self, str condition, double now):
        """Whether nginx's rules allow another try; fetches the next peer if so."""
        cdef _PlanInfo info = self.info
        next_upstream = info.next_upstream
        if condition not in next_upstream or not self.replayable:
            return False
        if self.request_sent and self.request.method in _NON_IDEMPOTENT \
                and "non_idempotent" not in next_upstream:
            return False
        if info.tries and self.tries >= info.tries:
            return False
        if info.next_upstream_timeout and now - self.started >= info.next_upstream_timeout:
            return False
        if self.next_peer is None:
            self.next_peer = self._next_peer()
        return self.next_peer is not None

    cdef _fail(self, int which, int status, str detail):
        """A try failed before any response byte reached the client.

        ``which``: 0 "error", 1 "timeout", 2 "invalid_header" (proxy_next_upstream).
        """
        condition = "error" if which == 0 else ("timeout" if which == 1 else "invalid_header")
        if self.state == RELAYING or self.state == DONE:
            self._abort(detail)
            return
        upstream = self.upstream
        stale = (which == 0 and upstream is not None and upstream.reused
                 and not self.fresh_retry_done
                 and self.request.method not in _NON_IDEMPOTENT)
        peer = self.peer
        self._log_upstream_error(detail, peer)
        if stale:
            # The peer closed an idle keep-alive connection: not the peer's fault, and
            # the balancer's choice (and its connection count) stays as it is.
            self.fresh_retry_done = True
            upstream.close()
            self.upstream = None
            self._drop_last_peer()
            self._connect(peer, False, self.conn._now())
            return
        cdef double now = self.conn._now()
        self._note_status(status)
        self._note_time(now - self.try_started)
        self._finish_upstream_at(True, False, now)
        if self._may_retry(condition, now):
            self.tries += 1
            peer = self.next_peer
            self.next_peer = None
            self._connect(peer, True, now)
            return
        self._give_up(status, detail)

    cdef _give_up(self, int status, str detail):
        self.state = DONE
        if not self.n_peers:
            log.error(f'*{self.request.connection_id} {detail} while connecting to upstream, '
                      f'client: {self.request.remote_addr}, '
                      f'request: "{self.request.method} {self.request.request_uri}"')
        self._record()
        self.conn.send_error(status, self.info.add_headers)

    cdef _abort(self, str detail):
        """The response already started: all we can do is cut the connection."""
        self._log_upstream_error(detail, self.peer)
        self._finish_upstream(True, False)
        self.state = DONE
        self._record()
        self.conn.keep_alive = False
        self.conn.close()
        self.conn.finish_response()

    cdef _log_upstream_error(self, str detail, peer, str level="error"):
        cdef Request request = self.request
        if not log.enabled(level):
            return
        where = f"{peer.host}:{peer.port}" if peer is not None else "-"
        getattr(log, level)(f'*{request.connection_id} {detail}, client: {request.remote_addr}, '
                            f'server: {request.server_name}, '
                            f'request: "{request.method} {request.request_uri} {request.protocol}", '
                            f'upstream: "{"https" if self.proxy.tls else "http"}://{where}'
                            f'{self.proxy.upstream_uri(request)}", '
                            f'host: "{request.host}"{_referrer(request)}')

    cdef _note_peer(self, peer):
        if self.n_peers == 0:
            self.peer0 = peer
        else:
            self.more_peers = _appended(self.more_peers, peer)
            self.earlier_bytes = _appended(self.earlier_bytes, self._try_bytes())
            self.earlier_times = _appended(self.earlier_times, (self.try_connect, self.try_header))
            self.received = self.sent = self.head_bytes = 0
            self.has_body = False
        self.try_connect = self.try_header = -1.0
        self.n_peers += 1

    cdef _drop_last_peer(self):
        """Forget the try on a stale keep-alive connection: the retry takes its place."""
        self.n_peers -= 1
        self.received = self.sent = self.head_bytes = 0
        self.has_body = False
        self.try_connect = self.try_header = -1.0
        if self.n_peers == 0:
            self.peer0 = None
        else:
            self.more_peers.pop()
            self.try_connect, self.try_header = self.earlier_times.pop()
            # The try before it is the current one again.
            self.received, self.sent, length = self.earlier_bytes.pop()
            if length:
                self.has_body = True
                self.head_bytes = self.received - length

    cdef tuple _try_bytes(self):
        """(bytes received, bytes sent, response length) of the current try."""
        return (self.received, self.sent, self.received - self.head_bytes if self.has_body else 0)

    cdef object _bytes_per_try(self):
        if self.n_peers == 0:
            return None
        if self.earlier_bytes is None:
            return [self._try_bytes()]
        return self.earlier_bytes + [self._try_bytes()]

    cdef _note_status(self, int status):
        if self.n_statuses == 0:
            self.status0 = status
        else:
            self.more_statuses = _appended(self.more_statuses, status)
        self.n_statuses += 1

    cdef _note_time(self, double seconds):
        if self.n_times == 0:
            self.time0 = seconds
        else:
            self.more_times = _appended(self.more_times, seconds)
        self.n_times += 1

    @property
    def addresses(self):
        """The peer of each try, in order (the twin's list)."""
        return ([self.peer0] if self.n_peers else []) + (self.more_peers or [])

    @property
    def statuses(self):
        return ([self.status0] if self.n_statuses else []) + (self.more_statuses or [])

    @property
    def times(self):
        return ([self.time0] if self.n_times else []) + (self.more_times or [])

    cdef _record(self):
        """Fill the $upstream_* variables (only needed by access logs)."""
        cdef Request request = self.request
        if self.n_times < self.n_peers:     # cut short: nginx times the try at finalizing
            self._note_time(self.conn._now() - self.try_started)
        if self.n_peers == 1 and self.n_statuses == 1 and self.n_times == 1:
            # One try, the usual case: the same strings as below, without the joins.
            request.upstream_addr = _peer_text(self.peer0)
            request.upstream_status = _status_text(self.status0)
            request.upstream_response_time = _seconds_text(self.time0)
            request.upstream_connect_time = _time_or_dash(self.try_connect)
            request.upstream_header_time = _time_or_dash(self.try_header)
            request.upstream_bytes = self._bytes_per_try()
            return
        request.upstream_addr = ", ".join([f"{p.host}:{p.port}" for p in self.addresses])
        request.upstream_status = ", ".join(map(str, self.statuses))
        request.upstream_response_time = ", ".join([f"{t:.3f}" for t in self.times])
        times = (self.earlier_times or []) + [(self.try_connect, self.try_header)] \
            if self.n_peers else []
        request.upstream_connect_time = ", ".join([_time_or_dash(c) for c, h in times])
        request.upstream_header_time = ", ".join([_time_or_dash(h) for c, h in times])
        request.upstream_bytes = self._bytes_per_try()

    # Timeouts --------------------------------------------------------------

    cdef _arm(self, double timeout, int kind):
        self._arm_at(timeout, kind, self.conn._now())

    cdef _arm_at(self, double timeout, int kind, double now):
        self.deadline = now + timeout if timeout > 0 else 0.0
        self.deadline_kind = kind

    def check_deadline(self, double now):
        if self.state == DONE:
            return
        limit = self.info.request_timeout
        if limit and self.state != RELAYING and now - self.started >= limit:
            # The whole-exchange deadline: no retry can fit in what is left.
            detail = "upstream timed out (proxy_request_timeout) waiting for the response"
            self._log_upstream_error(detail, self.peer)
            self._finish_upstream(False, False)
            self._give_up(504, detail)
            return
        if self.deadline == 0.0 or now < self.deadline:
            return
        kind = self.deadline_kind
        self.deadline = 0.0
        if kind == D_CONNECT:
            if self.connect_future is not None:
                self.connect_future.cancel()
                self.connect_future = None
            self._fail(1, 504, "upstream timed out (110: Connection timed out) "
                       "while connecting to upstream")
        elif kind == D_SEND:
            self._fail(1, 504, "upstream timed out while sending request to upstream")
        else:
            self._fail(1, 504, "upstream timed out (110: Connection timed out) "
                       "while reading response header from upstream")
