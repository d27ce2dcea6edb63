"""Config building for the observability directives: log_format, access_log, metrics, status_json,
status_page.

nginx's ngx_http_log_module gives the wording of every error here (`nginx -t` agrees); `metrics`,
`status_json` and `status_page` are this gateway's own content handlers, written like `stub_status`.
"""

from __future__ import annotations

from gateway.config import syslog, values
from gateway.config.model import AccessLog
from gateway.errors import ConfigError

COMBINED = ('$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
            '"$http_referer" "$http_user_agent"')

# The ready-made `json` format (README "Logs"): one JSON object per line, nginx's JSON escaping.
# A config that defines its own `log_format json` replaces it, so nginx configs keep working.
JSON = ('{"time":"$time_iso8601","remote_addr":"$remote_addr","remote_user":"$remote_user",'
        '"request":"$request","status":$status,"body_bytes_sent":$body_bytes_sent,'
        '"request_time":$request_time,"http_host":"$host","http_referer":"$http_referer",'
        '"http_user_agent":"$http_user_agent","upstream_addr":"$upstream_addr",'
        '"upstream_status":"$upstream_status","upstream_response_time":"$upstream_response_time"}')

ESCAPES = ("default", "json", "none")
PREDEFINED = {"combined": (COMBINED, "default"), "json": (JSON, "json")}
STATUS_JSON_URI = "/status.json"      # what `status_page;` polls when not told


def log_formats(http_block, compile_template) -> tuple[dict[str, str], dict[str, str]]:
    """Every log_format of an http block: ({name: template text}, {name: escape})."""
    texts = {name: text for name, (text, _) in PREDEFINED.items()}
    escapes = {name: escape for name, (_, escape) in PREDEFINED.items()}
    defined = set()
    for e in http_block:
        if e.name != "log_format":
            continue
        name, args = e.args[0], e.args[1:]
        if name in defined or name == "combined":
            raise ConfigError(f'duplicate "log_format" name "{name}"', e.file, e.line)
        escape = "default"
        if args[0].startswith("escape="):
            escape = args[0][len("escape="):]
            if escape not in ESCAPES:
                raise ConfigError(f'unknown log format escaping "{escape}"', e.file, e.line)
            args = args[1:]
        text = "".join(args)
        compile_template(text, e.file, e.line)
        defined.add(name)
        texts[name], escapes[name] = text, escape
    return texts, escapes


def access_log(d, formats, escapes, path, compile_template, warnings) -> AccessLog:
    """One `access_log PATH [FORMAT [buffer=SIZE] [flush=TIME] [gzip[=LEVEL]] [if=COND]]`
    (not "off"); PATH may be `syslog:...` (gateway/config/syslog.py), never buffered."""
    a = d.args
    peer = syslog.parse(a[0], d.file, d.line) if syslog.is_syslog(a[0]) else None
    if peer is None:
        compile_template(a[0], d.file, d.line)
    fmt_name = "combined"
    rest = a[1:]
    if rest:
        fmt_name, rest = rest[0], rest[1:]
    if fmt_name not in formats:
        raise ConfigError(f'unknown log format "{fmt_name}"', d.file, d.line)
    buffer, flush, condition = 0, 0.0, None
    for param in rest:
        if param.startswith("buffer="):
            buffer = values.parse_size(param[7:]) or 0
            if not buffer:
                raise ConfigError(f'invalid buffer size "{param[7:]}"', d.file, d.line)
        elif param.startswith("flush="):
            flush = values.parse_time(param[6:], long_units=False) or 0.0
            if not flush:
                raise ConfigError(f'invalid flush time "{param[6:]}"', d.file, d.line)
        elif param == "gzip" or param.startswith("gzip="):
            level = param[5:]
            if level and not (level.isdigit() and 1 <= int(level) <= 9):
                raise ConfigError(f'invalid compression level "{level}"', d.file, d.line)
            buffer = buffer or 64 * 1024       # nginx: gzip implies a 64k buffer
            warnings.append(f'access_log parameter "{param}" is accepted but not acted on '
                            f'(the log is written uncompressed) in {d.file}:{d.line}')
        elif param.startswith("if="):
            condition = param[3:]
            compile_template(condition, d.file, d.line)
        else:
            raise ConfigError(f'invalid parameter "{param}"', d.file, d.line)
    if flush and not buffer:
        raise ConfigError("no buffer is defined for access_log "
                          f'"{a[0]}"', d.file, d.line)
    if peer is not None:
        if buffer:          # gzip too, as it implies a buffer
            raise ConfigError("logs to syslog cannot be buffered", d.file, d.line)
        return AccessLog(a[0], formats[fmt_name], escapes[fmt_name], condition=condition,
                         syslog=peer)
    return AccessLog(path(a[0]), formats[fmt_name], escapes[fmt_name], buffer, flush, condition)


def status_page(d) -> str:
    """`status_page [URI]`: the status_json URI the page polls (a path on the same server)."""
    uri = d.args[0] if d.args else STATUS_JSON_URI
    # A path keeps the browser's fetch on the page's own origin (no CORS to configure); the URI
    # is written into the page, so characters HTML or JS would need quoted are refused.
    if not uri.startswith("/") or any(c in uri for c in "\"'<>` \t"):
        raise ConfigError(f'invalid parameter "{uri}"', d.file, d.line)
    return uri
