"""HTTP requests to unikernel services: which part becomes the payload, and how a reply becomes a response.

| service | request | operation | response |
| --- | --- | --- | --- |
| echo | any method | ECHO(part) | 200, the bytes back as application/octet-stream |
| kv | GET, HEAD | KV_GET(key) | 200 value (application/octet-stream), 404 if absent or expired |
| kv | PUT, POST | KV_PUT(ttl, key, body) | 204; TTL seconds from `X-TTL` or the `ttl` query argument, 0 = none |
| kv | DELETE | KV_DELETE(key) | 204, 404 if absent |
| static | GET, HEAD | STATIC_GET(path [\\0 If-None-Match]) | 200 with Content-Type and ETag, 304 on a matching If-None-Match, 404 |
| auth | any method | AUTH_VERIFY(bearer token) | 200 with the claims (application/json); 401 otherwise |
| webhook | any method | WEBHOOK_VERIFY(u16 length, signature, body) | 204 valid; 401 wrong or missing, 400 malformed, 413, 503 no key |

The part ("uri", "args", "body" or "header:NAME") is the location's `unikernel_pass` second argument; kv's key
and static's path use it too (default uri; "body" means the URI for kv, whose body is the value). In a
prefix location ending in "/", the URI part loses the location's prefix: `/kv/a` in `location /kv/` is `/a`.
webhook always sends the body; its part names the signature header (any other part means
header:x-hub-signature-256, GitHub's).
"""

from gateway._select import load_fast
from gateway.errors import ServiceRefused as Refused
from gateway.http.responses import error_page, padded
from gateway.observe.errorlog import log
from gateway.unikernel.pool_core import PY_CALL as Call
from gateway.unikernel.wire import MAX_PAYLOAD, Op, Status

OCTETS = b"application/octet-stream"
IDEMPOTENT = frozenset({"GET", "HEAD"})
WEBHOOK_HEADER = "header:x-hub-signature-256"
# Statuses any operation may get, as HTTP statuses.
COMMON_STATUS = {Status.BAD_REQUEST: 400, Status.TOO_LARGE: 413, Status.NO_MEMORY: 507,
                 Status.UNKNOWN_OP: 502, Status.NOT_FOUND: 404}


def _part(request, body, payload):
    if payload == "body":
        return body
    if payload == "args":
        return request.args.encode("latin-1", "replace")
    if payload.startswith("header:"):
        value = request.header(payload[7:].lower())
        return None if value is None else value.encode("latin-1", "replace")
    return _uri(request).encode("utf-8", "surrogateescape")


def _uri(request):
    uri = request.uri
    location = request.location
    if location is not None and location.modifier in ("", "^~") and location.pattern.endswith("/") \
            and uri.startswith(location.pattern):
        return uri[len(location.pattern) - 1:]
    return uri


# Request builders: (request, body, payload spec) -> (op, payload, idempotent, hash key or None). -----
# kv hashes on the entry's key itself, whatever the balance template says: a PUT with "?ttl=" and a
# later GET of the same key must reach the same instance.

def _echo(request, body, spec):
    part = _part(request, body, spec)
    return Op.ECHO, part or b"", True, None


def _kv(request, body, spec):
    key = _part(request, body, "uri" if spec == "body" else spec)
    if not key:
        raise Refused(400)
    method = request.method
    if method in IDEMPOTENT:
        return Op.KV_GET, key, True, key
    if method in ("PUT", "POST"):
        ttl_text = request.header("x-ttl") or _arg(request.args, "ttl") or "0"
        if not ttl_text.isdigit() or int(ttl_text) > 0xFFFFFFFF:
            raise Refused(400)
        if len(key) > 1024:
            raise Refused(414)
        put = int(ttl_text).to_bytes(4, "little") + len(key).to_bytes(2, "little") + key + body
        return Op.KV_PUT, put, False, key
    if method == "DELETE":
        return Op.KV_DELETE, key, False, key
    raise Refused(405, b"Allow: GET, HEAD, PUT, POST, DELETE\r\n")


def _static(request, body, spec):
    if request.method not in IDEMPOTENT:
        raise Refused(405, b"Allow: GET, HEAD\r\n")
    path = _part(request, body, spec) or b"/"
    match = request.header("if-none-match")
    if match:
        path += b"\0" + match.encode("latin-1", "replace")
    return Op.STATIC_GET, path, True, None


def _auth(request, body, spec):
    value = _part(request, body, spec)
    if value is None:
        raise Refused(401, b'WWW-Authenticate: Bearer\r\n')
    scheme, _, token = value.partition(b" ")
    if token and scheme.lower() == b"bearer":
        value = token.strip()
    return Op.AUTH_VERIFY, value, True, None


def _webhook(request, body, spec):
    if not spec.startswith("header:"):
        spec = WEBHOOK_HEADER
    sig = _part(request, body, spec)
    if sig is None:
        raise Refused(401)
    if len(sig) > 0xFFFF:
        raise Refused(400)
    return Op.WEBHOOK_VERIFY, len(sig).to_bytes(2, "little") + sig + body, True, None


def _arg(args, name):
    for pair in args.split("&"):
        key, _, value = pair.partition("=")
        if key == name:
            return value
    return None


# Reply readers: (request, status, payload) -> (http status, body, content type, extra header lines). ---

def _echo_reply(request, status, payload):
    if status == Status.OK:
        return 200, payload, OCTETS, b""
    return COMMON_STATUS.get(status, 502), None, None, b""


def _kv_reply(request, status, payload):
    if status == Status.OK:
        if request.method in IDEMPOTENT:
            return 200, payload, OCTETS, b""
        return 204, b"", None, b""
    return COMMON_STATUS.get(status, 502), None, None, b""


def _static_reply(request, status, payload):
    if status not in (Status.OK, Status.NOT_MODIFIED):
        return COMMON_STATUS.get(status, 502), None, None, b""
    try:
        type_len = payload[0]
        ctype = payload[1:1 + type_len]
        etag_len = payload[1 + type_len]
        etag = payload[2 + type_len:2 + type_len + etag_len]
        content = payload[2 + type_len + etag_len:]
    except IndexError:
        return 502, None, None, b""
    extra = b"ETag: %s\r\n" % etag
    if status == Status.NOT_MODIFIED:
        return 304, b"", None, extra
    return 200, content, ctype, extra


def _auth_reply(request, status, payload):
    if status == Status.OK:
        return 200, payload, b"application/json", b""
    if status in (Status.UNAUTHORIZED, Status.EXPIRED, Status.NOT_YET_VALID, Status.BAD_REQUEST):
        return 401, None, None, b'WWW-Authenticate: Bearer error="invalid_token"\r\n'
    if status == Status.NO_KEY:
        return 503, None, None, b""
    return COMMON_STATUS.get(status, 502), None, None, b""


def _webhook_reply(request, status, payload):
    if status == Status.OK:
        return 204, b"", None, b""
    if status == Status.UNAUTHORIZED:
        return 401, None, None, b""     # a shared secret, not an HTTP auth scheme: no WWW-Authenticate
    if status == Status.NO_KEY:
        return 503, None, None, b""
    return COMMON_STATUS.get(status, 502), None, None, b""


SERVICES = {
    "echo": (_echo, _echo_reply),
    "kv": (_kv, _kv_reply),
    "static": (_static, _static_reply),
    "auth": (_auth, _auth_reply),
    "webhook": (_webhook, _webhook_reply),
}


def build_request(service, request, body, spec):
    """(op, payload, idempotent, hash key or None) for a request to `service`; Refused if it cannot go."""
    return SERVICES[service][0](request, body, spec)


def read_reply(service, request, status, payload):
    """(http status, body or None for an error page, content type, extra header lines) for a reply."""
    return SERVICES[service][1](request, status, payload)


def start_exchange(conn, request, plan, app):
    """Answer a request of a `unikernel_pass` location: its exchange becomes the connection's handler."""
    pools = app.unikernels
    name = plan.unikernel.pool
    exchange = PyUnikernelExchange(conn, request, plan, app, pools.pools[name], pools.services[name],
                                   pools.keys[name])
    conn.handler = exchange
    exchange.start()


class UnikernelExchange:
    """Answers one request from a pool: the handler the client connection calls back (like ProxyExchange)."""

    __slots__ = ("conn", "request", "plan", "app", "pool", "service", "body", "body_size", "call",
                 "deadline", "done", "key")

    def __init__(self, conn, request, plan, app, pool, service, key):
        self.conn = conn
        self.request = request
        self.plan = plan
        self.app = app
        self.pool = pool
        self.service = SERVICES[service]    # service: its name
        self.key = key
        self.body = []
        self.body_size = 0
        self.call = None
        self.deadline = 0.0
        self.done = False

    # Events from the client -------------------------------------------------

    def start(self):
        """Send the request now, or once its body is in."""
        conn = self.conn
        if not conn.body_pending():
            self._submit()
        elif self.request.version == 11 and (self.request.header("expect") or "").lower() == "100-continue":
            conn.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")

    def client_body(self, pieces):
        if self.done:
            return
        for piece in pieces:
            self.body_size += len(piece)
            self.body.append(piece)
        if self.body_size > MAX_PAYLOAD:
            self._answer_error(413)

    def client_body_end(self):
        if not self.done and self.call is None:
            self._submit()

    def client_aborted(self):
        if self.done:
            return
        self.request.status = self.request.status or 499
        self.cancel()
        self.conn.finish_response()

    def cancel(self):
        """Stop without answering (the connection answers by itself)."""
        if not self.done:
            self.done = True
            if self.call is not None:
                self.pool.cancel(self.call)

    def client_write_paused(self):
        pass    # the whole response is written at once

    def client_write_resumed(self):
        pass

    def check_deadline(self, now):
        if self.done or self.call is None or now < self.deadline:
            return
        self.pool.cancel(self.call)
        self._log(f'unikernel "{self.pool.name}" timed out after {self.pool.tunables.request_timeout:g}s')
        self._answer_error(504)

    # Events from the pool ------------------------------------------------------

    def unikernel_reply(self, status, payload):
        """The reply Message's status and payload."""
        if self.done:
            return
        self.done = True
        code, body, ctype, extra = self.service[1](self.request, status, payload)
        if body is None:
            self.conn.send_error(code, self.plan.add_headers)
        else:
            self.conn.send_simple(code, body, ctype, extra, self.plan.add_headers)

    def unikernel_failed(self, status, why):
        """No instance could answer."""
        if self.done:
            return
        self._log(why)
        self._answer_error(status)

    # Helpers ----------------------------------------------------------------------

    def _submit(self):
        body = self.body
        if body:
            body = b"".join(body)
            self.body = []
        else:
            body = b""
        try:
            op, payload, idempotent, key = self.service[0](self.request, body, self.plan.unikernel.payload)
        except Refused as exc:
            self.done = True
            if exc.extra:
                self.conn.send_simple(exc.status,
                                      padded(self.request, exc.status, error_page(exc.status)),
                                      b"text/html", exc.extra,
                                      self.plan.add_headers)
            else:
                self.conn.send_error(exc.status, self.plan.add_headers)
            return
        if len(payload) > MAX_PAYLOAD:
            self._answer_error(413)
            return
        if self.key is None:
            key = None      # the pool does not hash
        elif key is None:
            key = self.key.render(self.request).encode("utf-8", "surrogateescape")
        self.call = Call(op, payload, key, idempotent, self)
        self.deadline = self.app.clock() + self.pool.tunables.request_timeout
        self.pool.submit(self.call)

    def _answer_error(self, status):
        if self.done:
            return
        self.done = True
        if self.call is not None:
            self.pool.cancel(self.call)
        self.conn.send_error(status, self.plan.add_headers)

    def _log(self, detail):
        request = self.request
        log.error(f'*{request.connection_id} {detail}, client: {request.remote_addr}, '
                  f'server: {request.server_name}, '
                  f'request: "{request.method} {request.request_uri} {request.protocol}"')


# The pure-Python code above is the specification; _fastpath/ukpath.pyx compiles the exchange and the
# services (same names, same results) when it is built.
PyUnikernelExchange = UnikernelExchange
PY = (UnikernelExchange, start_exchange, build_request, read_reply)
FAST = load_fast("ukpath")
if FAST is not None:
    UnikernelExchange, start_exchange = FAST.UnikernelExchange, FAST.start_exchange
    build_request, read_reply = FAST.build_request, FAST.read_reply
IMPLEMENTATION = "compiled" if FAST is not None else "python"
