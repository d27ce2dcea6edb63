"""nginx-style ``$variables``: compiled once at config load, rendered per request."""

from __future__ import annotations

import importlib
import os
import re
import socket
import time

from gateway import __version__
from gateway.errors import ConfigError
from gateway.http import auth_basic, captures, limit_rate, request_body, response_heads

_NAME = re.compile(r"\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")
_UNCLOSED = re.compile(r"\$\{([A-Za-z0-9_]*)(?![A-Za-z0-9_]*\})")


def _host(r):
    return r.host or r.server_name


class _Elsewhere:
    """A getter of a module only some configurations load (gateway/http/tls.py): imported by
    variable_getter when a template names it, so while the configuration loads, never during a
    request (a worker that switched to `user` may not be able to read the module's files)."""

    __slots__ = ("module", "name")

    def __init__(self, module, name):
        self.module, self.name = module, name

    def load(self):
        return getattr(importlib.import_module(f"gateway.http.{self.module}"), self.name)


def _arg(name):
    prefix = name + "="

    def get(r):
        # nginx compares argument names case-insensitively and returns the raw value.
        for part in r.args.split("&"):
            if part[:len(prefix)].lower() == prefix:
                return part[len(prefix):]
            if part.lower() == name:
                return ""
        return ""
    return get


def _http(name):
    lower = name.replace("_", "-")

    def get(r):
        return r.header(lower) or ""
    if lower == name:
        return get
    key = name.encode("latin-1")

    def get_underscored(r):
        # nginx compares a field's name with "-" read as "_" (ngx_http_variable_unknown_header):
        # X-Y and X_Y are both $http_x_y, once underscores_in_headers lets X_Y in.
        if not getattr(r, "underscored_names", False):
            return r.header(lower) or ""
        found = None
        for field_lower, _name, value in r.headers:
            if len(field_lower) == len(key) and field_lower.replace(b"-", b"_") == key:
                text = value.decode("latin-1")
                found = text if found is None else found + ", " + text
        return found or ""
    return get_underscored


def _cookie(name):
    def get(r):
        raw = r.header("cookie") or ""
        for part in raw.split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                return value
        return ""
    return get


def binary_address(text):
    """$binary_remote_addr: 4 or 16 bytes, as latin-1 characters."""
    try:
        return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET,
                                text).decode("latin-1")
    except OSError:
        return ""


def _private(r, name):
    values = getattr(r, "vars", None)
    return values.get(name, "") if values else ""


def _document_root(r):
    location = r.location if r.location is not None else r.server
    return location.settings.root if location is not None else ""


def _realpath_root(r):
    root = _document_root(r)
    return os.path.realpath(root) if root else ""


def _proxy_port(r):
    """$proxy_port: the port of the proxy_pass target once proxying ("80"/"443" by default)."""
    host = r.proxy_host
    if not host:
        return ""
    if ":" in host and not host.endswith("]"):
        return host.rpartition(":")[2]
    where = r.location if r.location is not None else r.server
    target = where.settings.proxy_pass if where is not None else None
    return "443" if target is not None and target.ssl else "80"


def _request_id(r):
    """$request_id: 32 random hex digits, drawn once per request."""
    values = getattr(r, "vars", None)
    if values is None:
        values = r.vars = {}
    found = values.get(" request_id")
    if found is None:
        found = values[" request_id"] = os.urandom(16).hex()
    return found


def _request_completion(r):
    """$request_completion: "OK" once the response went out whole (the log phase), else empty.

    Kept from its first reading, as nginx caches it: read by ``return`` it stays empty."""
    values = getattr(r, "vars", None)
    if values is None:
        values = r.vars = {}
    found = values.get(" request_completion")
    if found is None:
        found = values[" request_completion"] = \
            "OK" if r.bytes_sent and r.status not in (408, 499) else ""
    return found


_request_completion.logs_empty = True     # found, empty: logged as "" (nginx)


def _request_filename(r):
    """$request_filename: the file root/alias maps $uri to (ngx_http_map_uri_to_path)."""
    from gateway.http.static import request_filename
    where = r.location if r.location is not None else r.server
    return request_filename(r, where) if where is not None else ""


def _upstream_counts(index):
    """$upstream_bytes_received (0), _bytes_sent (1), $upstream_response_length (2): per try,
    joined like $upstream_status (ngx_http_upstream_response_length_variable)."""
    def get(r):
        tries = getattr(r, "upstream_bytes", None)
        return ", ".join([str(counts[index]) for counts in tries]) if tries else ""
    return get


def _connection_time(r):
    """$connection_time: seconds since the connection was accepted, "%d.%03d" as nginx."""
    conn = getattr(r, "connection", None)
    if conn is None:
        return ""
    ms = max(int((time.monotonic() - conn.accepted) * 1000), 0)
    return "%d.%03d" % (ms // 1000, ms % 1000)


def _tcpinfo(offset):
    """$tcpinfo_*: a u32 of the client socket's struct tcp_info (getsockopt TCP_INFO)."""
    def get(r):
        conn = getattr(r, "connection", None)
        transport = conn.transport if conn is not None else None
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            return ""
        try:
            info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        except OSError:
            return ""
        return str(int.from_bytes(info[offset:offset + 4], "little")) if len(info) >= 104 else ""
    return get


def _forwarded_for(r):
    previous = r.header("x-forwarded-for")
    return f"{previous}, {r.remote_addr}" if previous else r.remote_addr


class _Clock:
    """Formats times once per second, as nginx caches its time strings."""

    def __init__(self):
        self._second = -1
        self._local = self._iso = ""

    def _refresh(self):
        now = int(time.time())
        if now != self._second:
            self._second = now
            tm = time.localtime(now)
            self._local = time.strftime("%d/%b/%Y:%H:%M:%S %z", tm)
            self._iso = time.strftime("%Y-%m-%dT%H:%M:%S", tm) + _iso_zone(tm)

    def local(self, _r):
        self._refresh()
        return self._local

    def iso8601(self, _r):
        self._refresh()
        return self._iso


def _iso_zone(tm):
    zone = time.strftime("%z", tm)
    return zone[:3] + ":" + zone[3:]


# Where gateway/http/gzip.py leaves $gzip_ratio in request.vars: no configuration variable has it.
GZIP_RATIO = ("gzip", "ratio")
# Where gateway/http/proxy_cache.py leaves $upstream_cache_status in request.vars.
UPSTREAM_CACHE_STATUS = ("upstream", "cache_status")

_clock = _Clock()
_hostname = socket.gethostname()

# Request-independent and request-dependent variables by name.
_SIMPLE = {
    "host": _host,
    "request_uri": lambda r: r.request_uri,
    "uri": lambda r: r.uri,
    "document_uri": lambda r: r.uri,
    "args": lambda r: r.args,
    "query_string": lambda r: r.args,
    "is_args": lambda r: "?" if r.args else "",
    "remote_addr": lambda r: r.remote_addr,
    "remote_port": lambda r: str(r.remote_port) if r.remote_port else "",     # none after realip
    "realip_remote_addr": lambda r: getattr(r, "realip_addr", None) or r.remote_addr,
    "realip_remote_port": lambda r: str(getattr(r, "realip_port", None) or r.remote_port or ""),
    "remote_user": lambda r: auth_basic.credentials(r)[0],
    "binary_remote_addr": lambda r: binary_address(r.remote_addr),
    "server_addr": lambda r: r.server_addr,
    "server_port": lambda r: str(r.server_port),
    "server_name": lambda r: r.server_name,
    "server_protocol": lambda r: r.protocol,
    "scheme": lambda r: r.scheme,
    "request_method": lambda r: r.method,
    "request": lambda r: f"{r.method} {r.request_uri} {r.protocol}",
    "request_length": lambda r: str(r.request_length),
    "content_length": lambda r: r.header("content-length") or "",
    "content_type": lambda r: r.header("content-type") or "",
    "proxy_add_x_forwarded_for": _forwarded_for,
    "proxy_host": lambda r: r.proxy_host,
    "proxy_port": _proxy_port,
    "request_id": _request_id,
    "request_completion": _request_completion,
    "request_filename": _request_filename,
    # The gateway never writes a request body to a file (nginx: client_body_in_file_only).
    "request_body_file": lambda r: "",
    "request_body": request_body.getter,
    "document_root": _document_root,
    "realpath_root": _realpath_root,
    "status": lambda r: str(r.status).zfill(3),
    "body_bytes_sent": lambda r: str(r.body_bytes_sent),
    "bytes_sent": lambda r: str(r.bytes_sent),
    # start_time is the loop's clock (CLOCK_MONOTONIC, as uvloop and the compiled path read it).
    "request_time": lambda r: f"{max(time.monotonic() - r.start_time, 0.0):.3f}",
    "msec": lambda r: f"{time.time():.3f}",
    "time_local": _clock.local,
    "time_iso8601": _clock.iso8601,
    "upstream_addr": lambda r: r.upstream_addr,
    "upstream_status": lambda r: r.upstream_status,
    "upstream_response_time": lambda r: r.upstream_response_time,
    "upstream_connect_time": lambda r: r.upstream_connect_time,
    "upstream_header_time": lambda r: r.upstream_header_time,
    "upstream_bytes_received": _upstream_counts(0),
    "upstream_bytes_sent": _upstream_counts(1),
    "upstream_response_length": _upstream_counts(2),
    "unikernel_cache_status": lambda r: getattr(r, "cache_status", None) or "",
    # Set by gateway/http/proxy_cache.py; without proxy_cache nginx's value is not found.
    "upstream_cache_status": lambda r: (getattr(r, "vars", None) or {}).get(
        UPSTREAM_CACHE_STATUS, ""),
    "gzip_ratio": lambda r: (getattr(r, "vars", None) or {}).get(GZIP_RATIO, ""),
    "limit_rate": limit_rate.variable,
    "connection": lambda r: str(r.connection_id),
    "connection_requests": lambda r: str(r.connection_requests),
    "connection_time": _connection_time,
    # "p" for a request read from bytes left after the previous one; never over HTTP/2.
    "pipe": lambda r: "p" if getattr(r, "pipelined", False) else ".",
    # struct tcp_info (linux/tcp.h): tcpi_rtt, tcpi_rttvar, tcpi_snd_cwnd, tcpi_rcv_space.
    "tcpinfo_rtt": _tcpinfo(68),
    "tcpinfo_rttvar": _tcpinfo(72),
    "tcpinfo_snd_cwnd": _tcpinfo(80),
    "tcpinfo_rcv_space": _tcpinfo(96),
    "pid": lambda r: str(os.getpid()),
    "hostname": lambda r: _hostname,
    "nginx_version": lambda r: __version__,
    "gateway_version": lambda r: __version__,
}

# TLS termination: empty on plain HTTP connections, as in nginx.
_SIMPLE.update({
    "https": _Elsewhere("tls", "https"),
    "ssl_protocol": _Elsewhere("tls", "ssl_protocol"),
    "ssl_cipher": _Elsewhere("tls", "ssl_cipher"),
    "ssl_server_name": _Elsewhere("tls", "ssl_server_name"),
    "ssl_session_reused": _Elsewhere("tls", "ssl_session_reused"),
    **{name: _Elsewhere("client_cert", name) for name in (
        "ssl_client_verify", "ssl_client_s_dn", "ssl_client_i_dn", "ssl_client_serial",
        "ssl_client_fingerprint", "ssl_client_cert", "ssl_client_raw_cert",
        "ssl_client_v_start", "ssl_client_v_end", "ssl_client_v_remain")},
})

# ngx_http_referer_module: "1" unless valid_referers accepts the Referer.
_SIMPLE["invalid_referer"] = _Elsewhere("referer", "invalid_referer")
# ngx_http_secure_link_module: checked links.
_SIMPLE["secure_link"] = _Elsewhere("secure_link", "secure_link")
_SIMPLE["secure_link_expires"] = _Elsewhere("secure_link", "secure_link_expires")

# The HTTP/2 module's $http2: "h2" over TLS, "h2c" in cleartext, empty for HTTP/1.x.
_SIMPLE["http2"] = lambda r: ("h2" if r.ssl_object is not None else "h2c") if r.version == 20 else ""

# limit_req and limit_conn keep their verdict in request.vars (gateway/http/limit_req.py).
_SIMPLE.update({
    "limit_req_status": lambda r: _private(r, " limit_req"),
    "limit_conn_status": lambda r: _private(r, " limit_conn"),
})


def _proxy_protocol(field, number=False):
    """$proxy_protocol_*: what the connection's PROXY header said, empty without one."""
    def get(r):
        addresses = getattr(r, "proxy_protocol", None)
        if addresses is None:
            return ""
        value = getattr(addresses, field)
        return (str(value) if value else "") if number else value
    return get


# listen ... proxy_protocol (gateway/http/proxy_protocol.py).
_SIMPLE.update({
    "proxy_protocol_addr": _proxy_protocol("addr"),
    "proxy_protocol_port": _proxy_protocol("port", True),
    "proxy_protocol_server_addr": _proxy_protocol("server_addr"),
    "proxy_protocol_server_port": _proxy_protocol("server_port", True),
})

_PREFIXED = (("arg_", _arg), ("http_", _http), ("cookie_", _cookie),
             # Response fields (gateway/http/response_heads.py): recorded only when used.
             ("sent_http_", response_heads.sent_getter),
             ("sent_trailer_", response_heads.trailer_getter),
             ("upstream_http_", response_heads.upstream_getter),
             ("upstream_cookie_", response_heads.upstream_cookie_getter),
             ("upstream_trailer_", response_heads.upstream_trailer_getter))

# Variables the configuration defines (map, split_clients, set, named regex captures):
# name -> evaluator (a callable of the request with a ``volatile`` attribute) or None for
# a variable that only ``set`` or a capture gives a value.  Each process installs its
# configuration's with use_user_variables() before compiling any template.
_user_evaluators: dict = {}


def user_variables() -> dict:
    """A copy of the variables now known (to restore them with use_user_variables)."""
    return dict(_user_evaluators)


def use_user_variables(evaluators: dict) -> None:
    """Make the configuration's own variables known: name -> evaluator or None."""
    _user_evaluators.clear()
    _user_evaluators.update(evaluators)


def _user(name):
    def get(r):
        evaluate = _user_evaluators.get(name)
        if evaluate is None:        # only a regex's (?<name>...) group sets it
            return captures.named(r, name)
        # Evaluated when a request first reads it, then kept for the request (nginx's
        # cached indexed variables), unless the map is "volatile".
        values = getattr(r, "vars", None)
        if values is None:
            values = r.vars = {}
        elif name in values:
            return values[name]
        value = evaluate(r)
        if not evaluate.volatile:
            values[name] = value
        return value
    # A map or split_clients always has a value, even an empty one (not nginx's "-").
    get.logs_empty = getattr(_user_evaluators.get(name), "always_found", False)
    # A name with no evaluator at all is a named regex capture.
    get.capture = name in _user_evaluators and _user_evaluators[name] is None
    get.user_name = name        # read by the compiled templates (_fastpath/variables.pyx)
    return get


def _capture(number: int):
    """``$1``..``$9``: a group of the last regex that matched (gateway/http/captures.py)."""
    def get(r):
        return captures.numbered(r, number)
    get.capture = True
    get.number = number         # read by the compiled templates (_fastpath/variables.pyx)
    return get


_CASE_KEPT = ("cookie_", "upstream_cookie_")


def variable_getter(name: str):
    """The function that reads variable ``name`` from a request, or None if unknown."""
    getter = _SIMPLE.get(name)
    if isinstance(getter, _Elsewhere):
        getter = _SIMPLE[name] = getter.load()
    if getter is not None:
        if getter is request_body.getter:
            request_body._wanted[0] = True
        return getter
    if name in _user_evaluators:
        return _user(name)
    for prefix, make in _PREFIXED:
        if name.startswith(prefix) and len(name) > len(prefix):
            suffix = name[len(prefix):]
            return make(suffix if prefix in _CASE_KEPT else suffix.lower())
    return None


class Template:
    """A string with ``$variables``; ``render(request)`` fills them in."""

    __slots__ = ("text", "parts", "static", "single")

    def __init__(self, text: str, parts: list):
        self.text = text
        self.parts = parts
        self.static = all(isinstance(p, str) for p in parts)
        # One variable and nothing else ("$uri"): its getter, called without a join.
        self.single = parts[0] if len(parts) == 1 and not self.static else None

    def render(self, request) -> str:
        if self.static:
            return self.text
        single = self.single
        if single is not None:
            return single(request)
        return "".join([p if p.__class__ is str else p(request) for p in self.parts])

    def __repr__(self):
        return f"Template({self.text!r})"


def compile_template(text: str, file: str | None = None, line: int | None = None) -> Template:
    """Compile ``text``; an unknown variable is a ConfigError in nginx's wording."""
    unclosed = _UNCLOSED.search(text)
    if unclosed is not None:
        raise ConfigError(f'the closing bracket in "{unclosed.group(1)}" variable is missing',
                          file, line)
    parts: list = []
    pos = 0
    for match in _NAME.finditer(text):
        if "$" in text[pos:match.start()]:
            raise ConfigError("invalid variable name", file, line)
        if match.start() > pos:
            parts.append(text[pos:match.start()])
        name = match.group(1) or match.group(2)
        if match.group(2) and "1" <= name[0] <= "9":
            # nginx's script compiler: "$1".."$9" is one digit, what follows is text
            # ("$10" is $1 then "0"); "$0" and "${1}" are names, and unknown.
            parts.append(_capture(int(name[0])))
            if len(name) > 1:
                parts.append(name[1:])
            pos = match.end()
            continue
        getter = variable_getter(name)
        if getter is None:
            raise ConfigError(f'unknown "{name}" variable', file, line)
        parts.append(getter)
        pos = match.end()
    if "$" in text[pos:]:
        raise ConfigError("invalid variable name", file, line)
    if pos < len(text):
        parts.append(text[pos:])
    if all(isinstance(p, str) for p in parts):
        return Template(text, [text])
    return Template(text, parts)



def is_builtin(name: str) -> bool:
    """Whether ``name`` is one of nginx's own variables that the config may not redefine."""
    return name in _SIMPLE and name not in _CHANGEABLE


# nginx's built-in variables that "set" may assign (NGX_HTTP_VAR_CHANGEABLE).
_CHANGEABLE = frozenset({"args", "query_string", "limit_rate", "invalid_referer"})
