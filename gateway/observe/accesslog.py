"""Access logs in nginx's log_format language, buffered and flushed by the app's sweep, or sent
to syslog a line at a time."""

from __future__ import annotations

import os
import re
import time

from gateway._select import load_fast
from gateway.http.variables import _NAME as VARIABLE, compile_template
from gateway.observe.errorlog import format_os_error, log
from gateway.observe.syslog import SyslogSender

# Flush early when this much is waiting, so a burst never holds much memory.
FLUSH_AT = 64 * 1024
_compiled = load_fast("logformat")


class LineBuffer:
    """The lines of one log file waiting to be written (compiled twin: _fastpath.logformat)."""

    pending: list
    pending_size: int
    limit: int
    flush_after: float
    oldest: float

    def write(self, line: bytes):
        if not self.pending and self.flush_after:
            self.oldest = time.monotonic()
        self.pending.append(line)
        self.pending_size += len(line)
        if self.pending_size >= self.limit:
            self.flush()

    def flush(self):
        raise NotImplementedError


class AccessLogFile(_compiled.LineBuffer if _compiled else LineBuffer):
    """One log file shared by every location that names it (by path).

    Lines wait in memory: without `buffer=` the app's sweep writes them (every 0.25 s) or
    FLUSH_AT bytes do; with `buffer=SIZE` they are written when SIZE bytes wait, and with
    `flush=TIME` too once the oldest is TIME old (nginx's ngx_http_log_flush).
    """

    def __init__(self, path: str, buffer: int = 0, flush: float = 0.0):
        self.path = path
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.limit = buffer or FLUSH_AT
        self.buffered = bool(buffer)
        self.flush_after = flush
        self.oldest = 0.0            # when the oldest pending line was written (buffer= only)
        self.fd = self._open()

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            log.alert(format_os_error("open", self.path, exc))
            return -1

    def tick(self, now: float):
        """The app's sweep: write what waits, unless buffer= says to keep it longer."""
        if not self.buffered or (self.flush_after and self.pending
                                 and now - self.oldest >= self.flush_after):
            self.flush()

    def flush(self):
        """Write every waiting line now."""
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending.clear()
        self.pending_size = 0
        if self.fd >= 0:
            try:
                os.write(self.fd, data)
            except OSError as exc:
                log.alert(format_os_error("write", self.path, exc))

    def reopen(self):
        self.flush()      # lines logged before the rename belong to the old file
        fd = self._open()
        if fd >= 0:
            if self.fd >= 0:
                os.close(self.fd)
            self.fd = fd

    def close(self):
        self.flush()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class SyslogAccessLog:
    """An ``access_log syslog:...``: every line is one datagram at once, without its newline
    (ngx_http_log_handler; nginx refuses buffer= for syslog, so there is nothing to flush)."""

    def __init__(self, peer):
        self.sender = SyslogSender(peer)

    def write(self, line: bytes):
        failed = self.sender.send(self.sender.peer.severity, line[:-1])
        if failed is not None and self.sender.should_report(time.monotonic()):
            # nginx writes a line per lost datagram; one a second is enough to say the server
            # is unreachable (sender.failures counts them all).
            log.error(self.sender.describe(failed))

    def tick(self, now: float):
        pass

    def flush(self):
        pass

    def reopen(self):
        pass

    def close(self):
        self.sender.close()


# Variables whose values are raw request or response header bytes (kept as latin-1 text); the
# others are UTF-8 (with surrogate escapes for invalid bytes), as gateway/http/parser decodes them.
_HEADER_PREFIXES = ("http_", "sent_http_", "upstream_http_", "cookie_", "upstream_cookie_",
                    "sent_trailer_", "request_body")
# Variables that never hold a byte nginx escapes: nginx's own log ops ($status, $time_local, ...)
# and numbers; their values skip the escaping check.
_PLAIN = frozenset({
    "status", "time_local", "time_iso8601", "msec", "request_time", "bytes_sent",
    "body_bytes_sent", "request_length", "remote_addr", "remote_port", "server_addr",
    "server_port", "connection", "connection_requests", "pid", "upstream_response_time",
    "upstream_connect_time", "upstream_header_time", "upstream_status", "scheme",
    "upstream_response_length", "upstream_bytes_received", "upstream_bytes_sent",
    "connection_time", "pipe", "tcpinfo_rtt", "tcpinfo_rttvar",
    "tcpinfo_snd_cwnd", "tcpinfo_rcv_space",
})

# ngx_http_log_escape: bytes below 0x20, '"', '\\' and 0x7f and above become \xHH.
_DEFAULT_ESCAPES = [chr(b) if 0x20 <= b < 0x7f and b not in (0x22, 0x5c) else "\\x%02X" % b
                    for b in range(256)]
# ngx_escape_json: '"' and '\\' get a backslash, control bytes \n \r \t \b \f or \u00XX; the
# rest (0x7f and UTF-8 bytes too) is copied.
_JSON_CONTROL = {0x0a: b"\\n", 0x0d: b"\\r", 0x09: b"\\t", 0x08: b"\\b", 0x0c: b"\\f"}
_JSON_ESCAPES = re.compile(rb'[\x00-\x1f"\\\\]')


def _raw(value: str, header: bool) -> bytes:
    """The bytes a variable's text stands for (see _HEADER_PREFIXES)."""
    if header:
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            pass
    return value.encode("utf-8", "surrogateescape")


def _json_byte(match) -> bytes:
    byte = match.group()[0]
    if byte in (0x22, 0x5c):
        return b"\\" + match.group()
    return _JSON_CONTROL.get(byte) or b"\\u%04x" % byte


def escape_default(value: str, header: bool = False) -> str:
    """nginx's default log escaping of one variable's value."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    return "".join([_DEFAULT_ESCAPES[b] for b in _raw(value, header)])


def escape_json(value: str, header: bool = False) -> str:
    """nginx's escape=json of one variable's value (raw bytes kept as surrogate escapes)."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return value
    raw = _JSON_ESCAPES.sub(_json_byte, _raw(value, header))
    return raw.decode("utf-8", "surrogateescape")


def escape_none(value: str, header: bool = False) -> str:
    """escape=none: the value's bytes as they are."""
    if value.isascii():
        return value
    return _raw(value, header).decode("utf-8", "surrogateescape")


_ESCAPERS = {"default": escape_default, "json": escape_json, "none": escape_none}


# Variables the compiled renderer (_fastpath/logformat.pyx) reads without a Python call.
_INT_ATTRS = {"body_bytes_sent": "body_bytes_sent", "bytes_sent": "bytes_sent",
              "request_length": "request_length", "connection": "connection_id",
              "connection_requests": "connection_requests"}
_STR_ATTRS = ("remote_addr", "server_addr", "scheme")
_ESCAPE_CODES = {"default": 0, "json": 1, "none": 2}


class LogFormat:
    """A compiled log_format.

    With the default escaping an empty value is written as "-" (nginx's "not found"; a map's
    empty value stays empty, as in nginx); with escape=json or none it is left empty.
    The format becomes one generated function, `"literal%s..." % (value, ...)` (render_py, the
    specification), and the ops that _fastpath/logformat.pyx renders in C (render, when built):
    a line is rendered per request (bench: `python -m bench.instructions
    --systems gateway,gateway+access_log`).
    """

    __slots__ = ("render", "render_py", "ops", "uses_upstream_tries")

    def __init__(self, text: str, escape: str = "default"):
        all_names = [m.group(1) or m.group(2) for m in VARIABLE.finditer(text)]
        # The proxy formats these only for formats that show them (LocationPlan.records_upstream).
        self.uses_upstream_tries = not (UPSTREAM_TRIES.isdisjoint(all_names)
                                        and UPSTREAM_COUNTS.isdisjoint(all_names))
        names = iter(all_names)
        escaper = _ESCAPERS[escape]
        pattern, values, namespace, ops = [], [], {"_esc": escaper}, []
        for part in compile_template(text).parts:
            if isinstance(part, str):
                pattern.append(part.replace("%", "%%"))
                ops.append((0, part.encode("utf-8", "surrogateescape")))
                continue
            name = next(names)
            i = len(values)
            namespace[f"_g{i}"] = part
            empty = "" if escape != "default" or getattr(part, "logs_empty", False) else "-"
            header = name.startswith(_HEADER_PREFIXES)
            if name in _PLAIN:
                values.append(f"(_g{i}(r) or {empty!r})")
            else:
                values.append(f"(_esc(v, {header}) if (v := _g{i}(r)) else {empty!r})")
            pattern.append("%s")
            ops.append(_op(name, part, escape, escaper, header, empty))
        pattern.append("\n")
        ops.append((0, b"\n"))
        namespace["_pattern"] = "".join(pattern)
        source = (f"def render(r):\n"
                  f"    line = _pattern % ({''.join(v + ', ' for v in values)})\n"
                  f"    try:\n"
                  f"        return line.encode('utf-8', 'surrogateescape')\n"
                  f"    except UnicodeEncodeError:\n"
                  f"        return line.encode('utf-8', 'replace')\n")
        exec(compile(source, f"<log_format {text[:40]!r}>", "exec"), namespace)
        self.render_py = namespace["render"]
        self.ops = ops
        self.render = _compiled.CompiledFormat(ops).render if _compiled else self.render_py


# $upstream_* variables made from the proxy's record of its tries (ProxyExchange._record).
UPSTREAM_TRIES = frozenset({"upstream_addr", "upstream_status", "upstream_response_time",
                            "upstream_header_time", "upstream_connect_time"})
# Read by getters from the same record (Request.upstream_bytes, gateway/http/variables.py).
UPSTREAM_COUNTS = frozenset({"upstream_response_length", "upstream_bytes_received",
                             "upstream_bytes_sent"})


def _op(name, getter, escape, escaper, header, empty) -> tuple:
    """How _fastpath/logformat.pyx renders one variable (see its op kinds)."""
    blank = empty.encode()
    if name == "status":
        return (2,)
    if name in _INT_ATTRS:
        return (3, _INT_ATTRS[name])
    if name in ("time_local", "time_iso8601"):
        return (4, name, getter)
    if name == "request_time":
        return (6,)
    if name in _STR_ATTRS or name in UPSTREAM_TRIES:
        # Text the request holds: plain (no byte nginx escapes) except a peer's name, checked.
        plain = name in _PLAIN or name in _STR_ATTRS
        return (7, name, blank, -1 if plain else _ESCAPE_CODES[escape])
    if name == "request":
        return (8, _ESCAPE_CODES[escape])
    if name == "host":
        return (10, _ESCAPE_CODES[escape], blank)
    if name == "remote_user":      # "-" without a Python call when there is no Authorization
        return (9, getter, escaper, header, blank)
    if getattr(getter, "__qualname__", "") == "_http.<locals>.get":     # $http_NAME
        lower = name[len("http_"):].replace("_", "-").lower().encode("latin-1")
        return (5, lower, _ESCAPE_CODES[escape], blank, lower == b"cookie")
    return (1, getter, None if name in _PLAIN else escaper, header, blank)


class ConditionalFormat:
    """A format behind ``access_log ... if=CONDITION``: no line (b"") when the condition is
    empty or "0", as ngx_http_log_handler skips it. Logs without if= never get here."""

    __slots__ = ("format", "condition", "uses_upstream_tries")

    def __init__(self, fmt: LogFormat, condition: str):
        self.format = fmt
        self.condition = compile_template(condition)
        names = {m.group(1) or m.group(2) for m in VARIABLE.finditer(condition)}
        self.uses_upstream_tries = fmt.uses_upstream_tries or not (
            UPSTREAM_TRIES.isdisjoint(names) and UPSTREAM_COUNTS.isdisjoint(names))

    def render(self, request) -> bytes:
        value = self.condition.render(request)
        if not value or value == "0":
            return b""
        return self.format.render(request)


class NonEmptyLines:
    """A log file's writer that drops the empty line a ConditionalFormat gives for a skip."""

    __slots__ = ("file",)

    def __init__(self, file):
        self.file = file

    def write(self, line: bytes):
        if line:
            self.file.write(line)


class AccessLogs:
    """Every access log file of a worker, opened once per distinct path (a syslog target once
    per distinct `syslog:...` text: one socket per worker)."""

    def __init__(self):
        self.files: dict[str, AccessLogFile] = {}
        self.formats: dict[tuple[str, str], LogFormat] = {}

    def resolve(self, specs) -> list[tuple[AccessLogFile, LogFormat]]:
        """The (file, format) pairs for a location's access_log settings."""
        out = []
        for spec in specs:
            file = self.files.get(spec.path)
            if file is None:
                peer = getattr(spec, "syslog", None)
                file = self.files[spec.path] = (
                    SyslogAccessLog(peer) if peer is not None
                    else AccessLogFile(spec.path, spec.buffer, spec.flush))
            key = (spec.format, spec.escape)
            fmt = self.formats.get(key)
            if fmt is None:
                fmt = self.formats[key] = LogFormat(spec.format, spec.escape)
            condition = getattr(spec, "condition", None)
            if condition is not None:
                fmt, file = ConditionalFormat(fmt, condition), NonEmptyLines(file)
            out.append((file, fmt))
        return out

    def flush(self):
        """Write every waiting line now."""
        for file in self.files.values():
            file.flush()

    def tick(self, now: float):
        """The app's sweep: write the lines that should not wait longer."""
        for file in self.files.values():
            file.tick(now)

    def reopen(self):
        for file in self.files.values():
            file.reopen()

    def close(self):
        for file in self.files.values():
            file.close()
