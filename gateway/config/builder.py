"""Build the typed ``Config`` from the directive tree, applying nginx's merge rules."""

from __future__ import annotations

import ipaddress
import os
import re
import socket

from gateway.config import compose, maps, rewrite, values
from gateway.config.model import (
    AccessLog, AddHeader, Balance, Certificate, Config, ErrorLog, ErrorPage, HealthCheck, Http, Listen,
    Location, LocationSettings, ProxyPass, Return, Server, Tls, UnikernelPass, UnikernelPool,
    Upstream, UpstreamServer)
from gateway.config.parser import Directive, ParsedConfig
from gateway.errors import ConfigError, UnikernelError
from gateway.unikernel.tunables import Tunables

COMBINED = ('$remote_addr - $remote_user [$time_local] "$request" $status '
            '$body_bytes_sent "$http_referer" "$http_user_agent"')
NEXT_UPSTREAM = {"error", "timeout", "invalid_header", "http_500", "http_502", "http_503",
                 "http_504", "http_403", "http_404", "http_429", "non_idempotent", "off"}
LOG_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")
LISTEN_UNSUPPORTED = {"http2", "quic", "proxy_protocol", "spdy", "accept_filter",
                      "setfib"}
LISTEN_IGNORED = {"bind", "deferred", "fastopen", "rcvbuf", "sndbuf", "so_keepalive"}
REDIRECT_CODES = (301, 302, 303, 307, 308)
# Settings a nested level never inherits (content handlers and per-location paths).
NOT_INHERITED = {"proxy_pass", "unikernel_pass", "stub_status", "alias", "try_files", "return_", "rewrite",
                 "internal"}
DEFAULT_TYPES = {"html": "text/html", "gif": "image/gif", "jpg": "image/jpeg"}
SERVER_FIELDS = ("client_header_timeout", "client_header_buffer_size",
                 "large_client_header_buffers")
TLS_PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
_SESSION_CACHE = re.compile(r"^(off|none|builtin|builtin:\d+|shared:[^:]+:\d+[kKmM]?)$")


def _compile(text: str, file: str, line: int) -> None:
    """Check a template's variables now, so that a typo fails at load."""
    try:
        from gateway.http.variables import compile_template
    except ImportError:      # the variables module belongs to another part of the tree
        return
    compile_template(text, file, line)


def _resolve(host: str, port: int) -> list[str]:
    """All addresses of ``host``, IPv4 first; [] when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return []
    v4 = [i[4][0] for i in infos if i[0] == socket.AF_INET]
    v6 = [i[4][0] for i in infos if i[0] == socket.AF_INET6]
    return list(dict.fromkeys(v4 + v6))


def _split_host_port(text: str) -> tuple[str | None, str | None]:
    """``"[::1]:80"`` -> ("::1", "80"); ``"host"`` -> ("host", None); bad brackets -> None host."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None, None
        host, rest = text[1:end], text[end + 1:]
        if rest and not rest.startswith(":"):
            return None, None
        return host, rest[1:] if rest else None
    if ":" in text:
        host, port = text.rsplit(":", 1)
        return host, port
    return text, None


def _show(key: tuple[str, int]) -> str:
    host, port = key
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _dump(path: str, text: str) -> str:
    """One file in ``-T`` form, as nginx prints it (one newline added, even without a last one)."""
    return f"# configuration file {path}:\n{text}\n"


def _valid_port(port: str) -> int | None:
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return int(port)


class Builder:
    """Walks the tree once; one method per block kind."""

    def __init__(self, parsed: ParsedConfig, file: str, prefix: str, root_prefix: str):
        self.parsed = parsed
        self.file = file
        self.prefix = prefix
        self.root_prefix = root_prefix
        self.warnings: list[str] = []
        self.pending_proxy: list[tuple[ProxyPass, str, str | None, str, int]] = []
        self.pending_unikernel: list[tuple[UnikernelPass, str, int]] = []
        self.pending_parts: list[tuple[str, object]] = []
        self.listens_with_options: set[int] = set()
        self.upstream_tls_contexts: dict = {}     # (verify, trusted file) -> client SSLContext

    # Helpers --------------------------------------------------------------

    def _path(self, path: str, base: str | None = None) -> str:
        if os.path.isabs(path) or path.startswith("$"):
            return path
        return os.path.normpath(os.path.join(base or self.prefix, path))

    def _warn_ignored(self, d: Directive) -> bool:
        if d.spec is not None and d.spec.ignored:
            self.warnings.append(f'"{d.name}" directive is accepted but not acted on '
                                 f'in {d.file}:{d.line}')
            return True
        return False

    # Main -----------------------------------------------------------------

    def build(self) -> Config:
        """Produce the final Config."""
        cfg = Config(file=self.file, prefix=self.prefix)
        has_events = False
        for d in self.parsed.tree:
            if self._warn_ignored(d):
                continue
            a, f, ln = d.args, d.file, d.line
            if d.name == "user":
                cfg.user = (a[0], a[1] if len(a) > 1 else None)
            elif d.name == "worker_processes":
                if a[0] == "auto":
                    cfg.worker_processes = os.cpu_count() or 1
                elif a[0].isdigit():
                    cfg.worker_processes = int(a[0])
                else:
                    raise ConfigError('"worker_processes" directive invalid value', f, ln)
            elif d.name == "pid":
                cfg.pid = self._path(a[0])
            elif d.name == "daemon":
                cfg.daemon = values.flag(a[0])
            elif d.name == "master_process":
                cfg.master_process = values.flag(a[0])
            elif d.name == "error_log":
                cfg.error_logs.append(self._error_log(d))
            elif d.name == "events":
                has_events = True
                for e in d.block:
                    if self._warn_ignored(e):
                        continue
                    if e.name == "worker_connections":
                        cfg.worker_connections = values.number(e.name, e.args[0], e.file, e.line)
            elif d.name == "http":
                cfg.http = self._http_in_isolation(d)
        if not has_events:
            raise ConfigError('no "events" section in configuration')
        cfg.warnings = self.warnings
        cfg.text = "".join(_dump(path, text) for path, text in self.parsed.files)
        return cfg

    def _error_log(self, d: Directive) -> ErrorLog:
        path = d.args[0]
        if path.startswith("syslog:") or path.startswith("memory:"):
            raise ConfigError(f'error_log "{path}" is not supported by this gateway',
                              d.file, d.line)
        level = "error"
        if len(d.args) > 1:
            level = d.args[1]
        for i, word in enumerate(d.args[1:]):
            if word not in LOG_LEVELS:
                raise ConfigError(f'invalid log level "{word}"', d.file, d.line)
            if i:
                raise ConfigError(f'duplicate log level "{word}"', d.file, d.line)
        return ErrorLog("stderr" if path == "stderr" else self._path(path), level)

    # http -----------------------------------------------------------------

    def _http(self, d: Directive) -> Http:
        http = Http(log_formats={"combined": COMBINED})
        self.http = http
        http.variables = self._variables(d)
        for e in d.block:
            if e.name == "log_format":
                name = e.args[0]
                if name in http.log_formats:
                    raise ConfigError(f'duplicate "log_format" name "{name}"', e.file, e.line)
                fmt = "".join(e.args[1:])
                if e.args[1].startswith("escape="):
                    escape = e.args[1][len("escape="):]
                    if escape not in ("default", "json", "none"):
                        raise ConfigError(f'unknown log format escaping "{escape}"',
                                          e.file, e.line)
                    fmt = "".join(e.args[2:])
                _compile(fmt, e.file, e.line)
                http.log_formats[name] = fmt
        own, server_own = self._settings(d.block)
        self.http_tls = self._tls_own(d.block)
        for e in d.block:
            if e.name == "upstream":
                self._upstream(e)
            elif e.name == "unikernel":
                self._unikernel(e)
        for e in d.block:
            if e.name == "server":
                http.servers.append(self._server(e, own, server_own))
        self._check_listens(http.servers)
        self._build_tls(http)
        self._resolve_proxy_passes()
        self._resolve_unikernel_passes()
        return http

    def _http_in_isolation(self, d: Directive) -> Http:
        """_http, leaving the process's known variables as they were (a running worker's)."""
        from gateway.http import variables
        known = variables.user_variables()
        try:
            return self._http(d)
        finally:
            variables.use_user_variables(known)

    def _variables(self, d: Directive) -> dict:
        """The variables the configuration defines (map, split_clients, set, captures)."""
        from gateway.http import variables
        declared = maps.declared_variables(d.block)
        for name, e in declared.items():
            if e is not None and variables.is_builtin(name):
                raise ConfigError(f'the duplicate "{name}" variable', e.file, e.line)
        variables.use_user_variables(dict.fromkeys(declared))
        definitions: dict = {}
        for name, e in declared.items():
            if e is None:
                definitions[name] = None
            elif e.name == "set":
                definitions[name] = "set"
            elif e.name == "map":
                definitions[name] = maps.map_block(e, _compile)
            else:
                definitions[name] = maps.split_clients_block(e, _compile)
        return definitions

    # Settings shared by http, server and location ------------------------

    def _settings(self, block: list[Directive],
                  script_return: bool | None = None) -> tuple[dict, dict]:
        """Values set directly at this level: (LocationSettings fields, Server fields).

        ``script_return``: whether ``return`` belongs to the level's rewrite script (by
        default, when the level has other rewrite-module directives).
        """
        if script_return is None:
            script_return = rewrite.has_script(block)
        own: dict = {}
        server_own: dict = {}
        lists: dict[str, list] = {}
        for d in block:
            if self._warn_ignored(d):
                continue
            a, f, ln, n = d.args, d.file, d.line, d.name
            if n in ("root", "alias", "index", "try_files"):
                for arg in a:
                    _compile(arg, f, ln)
            if n == "root":
                if "alias" in own:
                    raise ConfigError('"root" directive is duplicate, "alias" directive was '
                                      'specified earlier', f, ln)
                own["root"] = self._path(a[0], self.root_prefix)
            elif n == "alias":
                if "root" in own:
                    raise ConfigError('"alias" directive is duplicate, "root" directive was '
                                      'specified earlier', f, ln)
                own["alias"] = self._path(a[0], self.root_prefix)
            elif n == "index":
                lists.setdefault("index", []).extend(a)
            elif n == "try_files":
                own["try_files"] = list(a)
            elif n == "return":
                answer = self._return(d)
                if not script_return:
                    own["return_"] = answer
            elif n in ("rewrite_log", "uninitialized_variable_warn", "recursive_error_pages",
                       "absolute_redirect", "port_in_redirect", "server_name_in_redirect"):
                own[n] = values.flag(a[0])
            elif n == "error_page":
                lists.setdefault("error_pages", []).append(self._error_page(d))
            elif n == "internal":
                own["internal"] = True
            elif n == "add_header":
                if len(a) == 3 and a[2] != "always":
                    raise ConfigError(f'invalid parameter "{a[2]}"', f, ln)
                _compile(a[1], f, ln)
                lists.setdefault("add_headers", []).append(AddHeader(a[0], a[1], len(a) == 3))
            elif n == "proxy_set_header":
                _compile(a[1], f, ln)
                lists.setdefault("proxy_set_headers", []).append((a[0], a[1]))
            elif n == "access_log":
                logs = lists.setdefault("access_logs", [])
                if a[0] != "off":
                    logs.append(self._access_log(d))
            elif n == "types":
                # Several types blocks at one level add up, as in nginx.
                own["types"] = {**own.get("types", {}), **self._types(d)}
            elif n == "default_type":
                own["default_type"] = a[0]
            elif n in ("client_max_body_size",):
                own[n] = values.size(n, a[0], f, ln)
            elif n in ("client_body_timeout", "proxy_connect_timeout", "proxy_read_timeout",
                       "proxy_send_timeout", "proxy_next_upstream_timeout",
                       "proxy_request_timeout"):
                own[n] = values.time(n, a[0], f, ln)
            elif n == "keepalive_timeout":
                own[n] = values.time(n, a[0], f, ln)
                if len(a) > 1:
                    values.time(n, a[1], f, ln)
            elif n in ("keepalive_requests", "proxy_next_upstream_tries"):
                own[n] = values.number(n, a[0], f, ln)
            elif n in ("proxy_buffering", "proxy_request_buffering", "proxy_pass_request_body",
                       "etag"):
                own[n] = values.flag(a[0])
            elif n == "server_tokens":
                if a[0] not in ("on", "off", "build"):
                    raise ConfigError(f'invalid value "{a[0]}"', f, ln)
                own[n] = a[0] != "off"
            elif n == "proxy_http_version":
                if a[0] not in ("1.0", "1.1"):
                    raise ConfigError(f'invalid value "{a[0]}"', f, ln)
                own[n] = a[0]
            elif n == "proxy_next_upstream":
                for v in a:
                    if v not in NEXT_UPSTREAM:
                        raise ConfigError(f'invalid value "{v}"', f, ln)
                own[n] = frozenset() if "off" in a else frozenset(a)
            elif n in ("proxy_ssl_verify", "proxy_ssl_server_name"):
                own[n] = values.flag(a[0])
            elif n == "proxy_ssl_trusted_certificate":
                own[n] = self._path(a[0], self._conf_dir())
            elif n == "proxy_ssl_name":
                _compile(a[0], f, ln)
                own[n] = a[0]
            elif n == "proxy_pass":
                own["proxy_pass"] = d
            elif n == "unikernel_pass":
                own["unikernel_pass"] = d
            elif n == "set_real_ip_from":
                try:
                    ipaddress.ip_network(a[0], strict=False)
                except ValueError:
                    if a[0] != "unix:":
                        raise ConfigError(f'host not found in set_real_ip_from "{a[0]}"', f, ln) from None
                if a[0] != "unix:":     # we listen on no unix sockets: nothing to trust there
                    lists.setdefault("set_real_ip_from", []).append(a[0])
            elif n == "real_ip_header":
                if a[0] == "proxy_protocol":
                    raise ConfigError('real_ip_header "proxy_protocol" is not supported by this gateway '
                                      '(no "listen ... proxy_protocol")', f, ln)
                own[n] = a[0]
            elif n == "real_ip_recursive":
                own[n] = values.flag(a[0])
            elif n == "stub_status":
                if a and a[0] not in ("on", "off"):      # nginx before 1.7.5 wrote "stub_status on"
                    raise ConfigError(f'invalid parameter "{a[0]}"', f, ln)
                own[n] = not a or a[0] == "on"
            elif n in ("unikernel_auth", "unikernel_cache", "unikernel_body"):
                part = own[n] = compose.build_part(d, _compile)
                if part is not None:
                    self.pending_parts.append((n, part))
            elif n == "error_log":
                self._error_log(d)
                self.warnings.append(f'"error_log" directive is accepted but not acted on '
                                     f'in {f}:{ln}')
            elif n == "client_header_timeout":
                server_own[n] = values.time(n, a[0], f, ln)
            elif n == "client_header_buffer_size":
                server_own[n] = values.size(n, a[0], f, ln)
            elif n == "large_client_header_buffers":
                size = values.parse_size(a[1])
                if not a[0].isdigit() or int(a[0]) == 0 or not size:
                    raise ConfigError(f'"{n}" directive invalid value', f, ln)
                server_own[n] = (int(a[0]), size)
        if "proxy_pass" in own and "unikernel_pass" in own:
            d = own["unikernel_pass"]
            raise ConfigError('"unikernel_pass" directive is duplicate', d.file, d.line)
        own.update(lists)
        return own, server_own

    def _return(self, d: Directive) -> Return:
        a = d.args
        if len(a) == 1 and not a[0].isdigit():
            # "return URL" is a 302 when the argument is a URL (nginx checks these prefixes).
            if a[0].startswith(("http://", "https://", "$scheme")):
                _compile(a[0], d.file, d.line)
                return Return(302, a[0])
            raise ConfigError(f'invalid return code "{a[0]}"', d.file, d.line)
        if not a[0].isdigit() or int(a[0]) > 999:
            raise ConfigError(f'invalid return code "{a[0]}"', d.file, d.line)
        text = a[1] if len(a) > 1 else None
        if text is not None:
            _compile(text, d.file, d.line)
        return Return(int(a[0]), text)

    @staticmethod
    def _error_page(d: Directive) -> ErrorPage:
        """nginx's ngx_http_core_error_page, with its messages."""
        a, f, ln = d.args, d.file, d.line
        overwrite, codes_end = -1, len(a) - 1
        if a[-2].startswith("="):
            if len(a) == 2:
                raise ConfigError(f'invalid value "{a[-2]}"', f, ln)
            if len(a[-2]) > 1:
                if not a[-2][1:].isdigit():
                    raise ConfigError(f'invalid value "{a[-2]}"', f, ln)
                overwrite = int(a[-2][1:])
            else:
                overwrite = 0
            codes_end = len(a) - 2
        _compile(a[-1], f, ln)
        codes = []
        for word in a[:codes_end]:
            if not word.isdigit() or int(word) == 499:
                raise ConfigError(f'invalid value "{word}"', f, ln)
            if not 300 <= int(word) <= 599:
                raise ConfigError(f'value "{word}" must be between 300 and 599', f, ln)
            codes.append(int(word))
        return ErrorPage(frozenset(codes), a[-1], overwrite)

    def _access_log(self, d: Directive) -> AccessLog:
        a = d.args
        if a[0].startswith("syslog:"):
            raise ConfigError(f'access_log "{a[0]}" is not supported by this gateway',
                              d.file, d.line)
        _compile(a[0], d.file, d.line)
        fmt_name = "combined"
        rest = a[1:]
        if rest and "=" not in rest[0] and rest[0] != "gzip":
            fmt_name, rest = rest[0], rest[1:]
        if fmt_name not in self.http.log_formats:
            raise ConfigError(f'unknown log format "{fmt_name}"', d.file, d.line)
        for param in rest:
            if param.startswith("if="):
                raise ConfigError('access_log parameter "if=" is not supported by this '
                                  'gateway', d.file, d.line)
            if not param.startswith(("buffer=", "flush=", "gzip")):
                raise ConfigError(f'invalid parameter "{param}"', d.file, d.line)
            self.warnings.append(f'access_log parameter "{param}" is accepted but not acted '
                                 f'on in {d.file}:{d.line}')
        return AccessLog(self._path(a[0]), self.http.log_formats[fmt_name])

    def _types(self, d: Directive) -> dict[str, str]:
        types: dict[str, str] = {}
        for t in d.block:
            for ext in t.args:
                ext = ext.lower()
                if ext in types and types[ext] != t.name:
                    self.warnings.append(f'duplicate extension "{ext}", content type: "{t.name}", '
                                         f'previous content type: "{types[ext]}" in '
                                         f'{t.file}:{t.line}')
                types[ext] = t.name
        return types

    @staticmethod
    def _merge(parent: dict, own: dict, keep_return: bool = False) -> dict:
        merged = {k: v for k, v in parent.items()
                  if k not in NOT_INHERITED or (keep_return and k == "return_")}
        merged.update(own)
        return merged

    def _location_settings(self, merged: dict, uri_forbidden: bool) -> LocationSettings:
        """Final settings of one level; ``uri_forbidden`` for regex and named locations."""
        kw = dict(merged)
        if "root" not in kw:
            kw["root"] = self._path("html", self.root_prefix)
        if "types" not in kw:
            # nginx's ngx_http_core_default_types, used when no level has a types block.
            kw["types"] = DEFAULT_TYPES
        pp = kw.pop("proxy_pass", None)
        up = kw.pop("unikernel_pass", None)
        headers = kw.pop("proxy_set_headers", [])
        settings = LocationSettings(**kw)
        # nginx sends the user's headers plus its defaults (Host, Connection) unless overridden.
        user_names = {name.lower() for name, _ in headers}
        settings.proxy_set_headers = list(headers) + [
            h for h in LocationSettings().proxy_set_headers if h[0].lower() not in user_names]
        if settings.return_ is None:
            if pp is not None:
                settings.proxy_pass = self._proxy_pass(pp, uri_forbidden)
                if settings.proxy_pass.ssl:
                    settings.proxy_pass.tls = self._upstream_tls(settings, pp)
            elif up is not None:
                settings.unikernel_pass = self._unikernel_pass(up)
        return settings

    # rewrite module -------------------------------------------------------

    def _script(self, block: list[Directive], merged: dict, loc: Location | None):
        """The rewrite script of a server (``loc`` None) or location block, or None."""
        if not rewrite.has_script(block):
            return None
        reader = rewrite.ScriptReader(_compile, self._return,
                                      lambda d: self._if_location(d, merged, loc))
        return reader.script(block, loc is None, merged.get("rewrite_log", False))

    def _if_location(self, d: Directive, merged: dict, loc: Location) -> tuple:
        """An ``if`` in a location: an anonymous nested location (nginx's "if" location)."""
        own, _ = self._settings(d.block, script_return=True)
        # Unlike a named nested location, it keeps the location's content handler.
        if_merged = {**merged, **own}
        if_merged.pop("rewrite", None)
        if_merged.pop("internal", None)     # checked once, for the location itself
        uri_forbidden = "proxy_pass" in own or loc.regex is not None or loc.modifier == "@"
        settings = self._location_settings(if_merged, uri_forbidden)
        location = Location(loc.modifier, loc.pattern, settings, regex=loc.regex,
                            file=d.file, line=d.line)
        return settings, location

    # server ---------------------------------------------------------------

    def _server(self, d: Directive, http_own: dict, http_server_own: dict) -> Server:
        own, server_own = self._settings(d.block)
        merged = self._merge(http_own, own)
        listens: list[Listen] = []
        names: list[str] = []
        for e in d.block:
            if e.name == "listen":
                listens.extend(self._listen(e))
            elif e.name == "server_name":
                names.extend(n if n.startswith("~") else n.lower() for n in e.args)
        if not listens:
            port = 80 if os.geteuid() == 0 else 8000
            listens = [Listen("0.0.0.0", port, file=d.file, line=d.line)]
        # A server-level return runs in nginx's server rewrite phase, before any
        # location is chosen: every location of the server therefore answers with it.
        locations = self._locations(d.block, merged, None)
        settings = self._location_settings(merged, False)
        settings.rewrite = self._script(d.block, merged, None)
        server = Server(listens=listens, server_names=names or [""], locations=locations,
                        settings=settings, file=d.file, line=d.line)
        for key, value in {**http_server_own, **server_own}.items():
            setattr(server, key, value)
        tls_own = self._tls_own(d.block)
        server.tls = self._tls({**self.http_tls, **tls_own,
                                "lines": {**self.http_tls.get("lines", {}),
                                          **tls_own.get("lines", {})}})
        return server

    def _listen(self, d: Directive) -> list[Listen]:
        addr, f, ln = d.args[0], d.file, d.line
        if addr.startswith("unix:"):
            raise ConfigError('"listen" on a unix socket is not supported by this gateway',
                              f, ln)
        if not addr:
            raise ConfigError('no host in "" of the "listen" directive', f, ln)
        if addr.isdigit():
            host, port_text = "*", addr
        else:
            host, port_text = _split_host_port(addr)
            if host is None:
                raise ConfigError(f'invalid host in "{addr}" of the "listen" directive', f, ln)
            if port_text is None:
                port_text = "80"
        port = _valid_port(port_text)
        if port is None:
            raise ConfigError(f'invalid port in "{addr}" of the "listen" directive', f, ln)
        opts = {"default_server": False, "reuseport": False, "backlog": 511, "ipv6only": True,
                "ssl": False}
        socket_opts = False
        for p in d.args[1:]:
            socket_opts = socket_opts or p == "reuseport" or p.startswith(("backlog=", "ipv6only="))
            if p in ("default_server", "default"):
                opts["default_server"] = True
            elif p == "reuseport":
                opts["reuseport"] = True
            elif p.startswith("backlog="):
                v = p[len("backlog="):]
                if not v.isdigit() or int(v) == 0:
                    raise ConfigError(f'invalid backlog "{p}"', f, ln)
                opts["backlog"] = int(v)
            elif p in ("ipv6only=on", "ipv6only=off"):
                opts["ipv6only"] = p == "ipv6only=on"
            elif p == "ssl":
                opts["ssl"] = True
            elif p in LISTEN_UNSUPPORTED:
                raise ConfigError(f'"listen" parameter "{p}" is not supported by this gateway',
                                  f, ln)
            elif p.split("=", 1)[0] in LISTEN_IGNORED:
                self.warnings.append(f'"listen" parameter "{p}" is accepted but not acted on '
                                     f'in {f}:{ln}')
            else:
                raise ConfigError(f'invalid parameter "{p}"', f, ln)
        if host == "*":
            hosts = ["0.0.0.0"]
        else:
            try:
                hosts = [str(ipaddress.ip_address(host))]
            except ValueError:
                hosts = _resolve(host, port)
                if not hosts:
                    raise ConfigError(f'host not found in "{addr}" of the "listen" directive',
                                      f, ln) from None
        listens = [Listen(h, port, file=f, line=ln, **opts) for h in hosts]
        if socket_opts:
            self.listens_with_options.update(id(x) for x in listens)
        return listens

    def _check_listens(self, servers: list[Server]) -> None:
        """nginx's per-socket rules; socket options are copied to every server on it."""
        defaults: set[tuple[str, int]] = set()
        with_options: dict[tuple[str, int], Listen] = {}
        names: set[tuple[tuple[str, int], str]] = set()
        for server in servers:
            own: set[tuple[str, int]] = set()
            for listen in server.listens:
                where = _show(listen.key)
                for name in server.server_names:
                    # nginx keeps the first server for a name and ignores the others.
                    if (listen.key, name) in names and listen.key not in own:
                        self.warnings.append(f'conflicting server name "{name}" on {where}, '
                                             'ignored')
                    names.add((listen.key, name))
                if listen.key in own:
                    raise ConfigError(f"a duplicate listen {where}", listen.file, listen.line)
                own.add(listen.key)
                if listen.default_server:
                    if listen.key in defaults:
                        raise ConfigError(f"a duplicate default server for {where}",
                                          listen.file, listen.line)
                    defaults.add(listen.key)
                if id(listen) in self.listens_with_options:
                    if listen.key in with_options:
                        raise ConfigError(f"duplicate listen options for {where}",
                                          listen.file, listen.line)
                    with_options[listen.key] = listen
        # nginx ORs "ssl" over every listen of one address: one ssl listen makes the socket TLS.
        tls_keys = {listen.key for server in servers for listen in server.listens if listen.ssl}
        for server in servers:
            for listen in server.listens:
                listen.ssl = listen.key in tls_keys
                src = with_options.get(listen.key)
                if src is not None:
                    listen.reuseport, listen.backlog = src.reuseport, src.backlog
                    listen.ipv6only = src.ipv6only

    # TLS ------------------------------------------------------------------

    def _tls_own(self, block: list[Directive]) -> dict:
        """The ssl_* directives set directly at one level; each is inherited on its own."""
        own: dict = {}
        lines: dict = {}
        for d in block:
            a, f, ln, n = d.args, d.file, d.line, d.name
            if not n.startswith("ssl_") or (d.spec is not None and d.spec.ignored):
                continue
            lines[n] = (f, ln)
            if n in ("ssl_certificate", "ssl_certificate_key", "ssl_dhparam"):
                if a[0].startswith("data:") or "$" in a[0]:
                    raise ConfigError(f'"{n}" with "{a[0]}" is not supported by this gateway',
                                      f, ln)
                path = self._path(a[0], self._conf_dir())
                if n == "ssl_dhparam":
                    own["dhparam"] = path
                else:
                    own.setdefault(n, []).append((path, f, ln))
            elif n == "ssl_protocols":
                for v in a:
                    if v not in TLS_PROTOCOLS:
                        raise ConfigError(f'invalid value "{v}"', f, ln)
                # nginx's bitmask slot: a repeated directive adds its versions.
                own["protocols"] = tuple(dict.fromkeys((*own.get("protocols", ()), *a)))
            elif n == "ssl_ciphers":
                own["ciphers"] = a[0]
            elif n == "ssl_prefer_server_ciphers":
                own["prefer_server_ciphers"] = values.flag(a[0])
            elif n == "ssl_session_tickets":
                own["session_tickets"] = values.flag(a[0])
            elif n == "ssl_session_timeout":
                own["session_timeout"] = values.time(n, a[0], f, ln)
                if own["session_timeout"] != Tls.session_timeout:
                    # OpenSSL's own default is nginx's 5m; Python's ssl cannot change it.
                    self.warnings.append(f'"ssl_session_timeout" other than 5m is accepted but '
                                         f'not acted on in {f}:{ln}')
            elif n == "ssl_session_cache":
                for v in a:
                    if not _SESSION_CACHE.match(v):
                        raise ConfigError(f'invalid session cache "{v}"', f, ln)
                own["session_cache"] = " ".join(a)
            elif n == "ssl_ecdh_curve":
                if ":" in a[0]:
                    self.warnings.append(f'"ssl_ecdh_curve" with several curves is accepted '
                                         f'but not acted on in {f}:{ln}')
                own["ecdh_curve"] = a[0]
        if lines:
            own["lines"] = lines
        return own

    def _conf_dir(self) -> str:
        """nginx's conf prefix: ssl files are relative to the main file's directory."""
        return os.path.dirname(self.file) if os.path.isabs(self.file) else self.prefix

    @staticmethod
    def _tls(merged: dict) -> Tls:
        """A server's Tls: certificates and keys inherited separately, paired by position."""
        certs = merged.pop("ssl_certificate", [])
        keys = merged.pop("ssl_certificate_key", [])
        lines = merged.pop("lines")
        if certs and len(keys) < len(certs):
            raise ConfigError(f'no "ssl_certificate_key" is defined for certificate '
                              f'"{certs[-1][0]}"', certs[-1][1], certs[-1][2])
        tls = Tls(**merged, lines=lines)
        tls.certificates = [Certificate(c, k, cf, cl, kf, kl)
                            for (c, cf, cl), (k, kf, kl) in zip(certs, keys)]
        return tls

    def _build_tls(self, http: Http) -> None:
        """Load every server's certificates (as nginx does even without an ssl listen),
        then give each ``listen ... ssl`` socket its default server's context."""
        from gateway.http import tls as tls_module
        built: dict = {}
        for server in http.servers:
            tls = server.tls
            if tls.certificates:
                key = tls_module.settings_key(tls)
                if key not in built:
                    built[key] = tls_module.server_context(tls)
                tls.context = built[key]
        defaults: dict = {}
        for server in http.servers:
            for listen in server.listens:
                if listen.default_server:
                    defaults.setdefault(listen.key, server)
        for server in http.servers:
            for listen in server.listens:
                if not listen.ssl or listen.key in http.tls_listens:
                    continue
                default = defaults.get(listen.key, server)
                if default.tls.context is None:
                    raise ConfigError(f'no "ssl_certificate" is defined for the "listen ... ssl" '
                                      f'directive in {default.file}:{default.line}')
                # Its own context per socket: the SNI callback set on it names the socket.
                http.tls_listens[listen.key] = tls_module.server_context(default.tls)

    # location -------------------------------------------------------------

    def _locations(self, block: list[Directive], parent_merged: dict,
                   parent: Location | None, in_regex: bool = False) -> list[Location]:
        out: list[Location] = []
        for d in block:
            if d.name != "location":
                continue
            modifier, pattern = self._location_name(d)
            self._check_nesting(d, modifier, pattern, parent)
            for other in out:
                if self._same_location(other, modifier, pattern):
                    raise ConfigError(f'duplicate location "{pattern}"', d.file, d.line)
            own, _ = self._settings(d.block)
            keep_return = parent is None
            merged = self._merge(parent_merged, own, keep_return=keep_return)
            regex = None
            if modifier in ("~", "~*"):
                try:
                    regex = re.compile(pattern, re.IGNORECASE if modifier == "~*" else 0)
                except re.error as exc:
                    raise ConfigError(f'invalid regular expression "{pattern}": {exc}',
                                      d.file, d.line) from None
            is_regex = in_regex or regex is not None
            loc = Location(modifier, pattern, LocationSettings(), regex=regex,
                           file=d.file, line=d.line)
            loc.settings = self._location_settings(merged, regex is not None or modifier == "@")
            loc.settings.rewrite = self._script(d.block, merged, loc)
            loc.children = self._locations(d.block, merged, loc, is_regex)
            out.append(loc)
        return out

    @staticmethod
    def _location_name(d: Directive) -> tuple[str, str]:
        a = d.args
        if len(a) == 2:
            if a[0] not in ("=", "~", "~*", "^~"):
                raise ConfigError(f'invalid location modifier "{a[0]}"', d.file, d.line)
            return a[0], a[1]
        name = a[0]
        for mod in ("=", "~*", "~", "^~"):
            if name.startswith(mod) and (mod != "~" or not name.startswith("~*")):
                return mod, name[len(mod):]
        if name.startswith("@"):
            return "@", name
        return "", name

    @staticmethod
    def _check_nesting(d: Directive, modifier: str, pattern: str,
                       parent: Location | None) -> None:
        if parent is None:
            return
        f, ln = d.file, d.line
        if parent.modifier == "=":
            raise ConfigError(f'location "{pattern}" cannot be inside the exact location '
                              f'"{parent.pattern}"', f, ln)
        if parent.modifier == "@":
            raise ConfigError(f'location "{pattern}" cannot be inside the named location '
                              f'"{parent.pattern}"', f, ln)
        if modifier == "@":
            raise ConfigError(f'named location "{pattern}" can be on the server level only',
                              f, ln)
        # nginx compares the raw text even when the parent is a regex.
        if modifier in ("", "^~", "=") and not pattern.startswith(parent.pattern):
            raise ConfigError(f'location "{pattern}" is outside location "{parent.pattern}"',
                              f, ln)

    @staticmethod
    def _same_location(other: Location, modifier: str, pattern: str) -> bool:
        if other.pattern != pattern:
            return False
        # nginx lets regexes and named locations repeat; prefix and exact ones may not.
        kinds = {"": "prefix", "^~": "prefix", "=": "exact"}
        kind = kinds.get(modifier, "other")
        return kinds.get(other.modifier, "other") == kind != "other"

    # proxy_pass -----------------------------------------------------------

    def _proxy_pass(self, d: Directive, no_uri_allowed: bool) -> ProxyPass:
        url, f, ln = d.args[0], d.file, d.line
        lower = url.lower()
        secure = lower.startswith("https://")
        if not lower.startswith("http://") and not secure:
            raise ConfigError("invalid URL prefix", f, ln)
        rest = url[len("https://" if secure else "http://"):]
        if "$" in url and secure:
            raise ConfigError('"https" with variables in proxy_pass is not supported by this '
                              'gateway', f, ln)
        if "$" in url:
            _compile(url, f, ln)
            authority = rest.split("/", 1)[0]
            uri = rest[len(authority):] or None
            return ProxyPass(url, "", uri, authority, has_variables=True)
        if rest.startswith("unix:"):
            raise ConfigError("proxy_pass to a unix socket is not supported by this gateway",
                              f, ln)
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=-1)
        authority, uri = (rest, None) if cut < 0 else (rest[:cut], rest[cut:])
        if uri is not None and no_uri_allowed:
            raise ConfigError('"proxy_pass" cannot have URI part in location given by regular '
                              'expression, or inside named location, or inside "if" statement, '
                              'or inside "limit_except" block', f, ln)
        host, port = _split_host_port(authority)
        if host is None:
            raise ConfigError(f'invalid host in upstream "{authority}"', f, ln)
        if not host:
            raise ConfigError(f'no host in upstream "{authority}"', f, ln)
        if port is not None and _valid_port(port) is None:
            raise ConfigError(f'invalid port in upstream "{authority}"', f, ln)
        pp = ProxyPass(url, "", uri, authority, ssl=secure)
        self.pending_proxy.append((pp, host, port, f, ln))
        return pp

    def _upstream_tls(self, settings: LocationSettings, d: Directive):
        """proxy_ssl_*: the client context (shared by equal settings) and how names are used."""
        from gateway.http import tls as tls_module
        trusted = settings.proxy_ssl_trusted_certificate
        if settings.proxy_ssl_verify and trusted is None:
            raise ConfigError("no proxy_ssl_trusted_certificate for proxy_ssl_verify",
                              d.file, d.line)
        key = (settings.proxy_ssl_verify, trusted)
        contexts = self.upstream_tls_contexts
        if key not in contexts:
            contexts[key] = tls_module.client_context(*key, d.file, d.line)
        return tls_module.UpstreamTls(contexts[key], settings.proxy_ssl_name or "$proxy_host",
                                      settings.proxy_ssl_server_name, settings.proxy_ssl_verify)

    def _resolve_proxy_passes(self) -> None:
        upstreams = self.http.upstreams
        for pp, host, port, f, ln in self.pending_proxy:
            named = upstreams.get(host)
            if named is not None and not named.implicit:
                if port is not None:
                    raise ConfigError(f'upstream "{host}" may not have port {port}', f, ln)
                pp.upstream = host
                continue
            portnum = int(port) if port is not None else (443 if pp.ssl else 80)
            name = f"{host}:{portnum}"
            if name not in upstreams:
                addrs = _resolve(host, portnum)
                if not addrs:
                    raise ConfigError(f'host not found in upstream "{host}"', f, ln)
                upstreams[name] = Upstream(
                    name, [UpstreamServer(name, a, portnum) for a in addrs],
                    implicit=True, file=f, line=ln)
            pp.upstream = name

    # upstream -------------------------------------------------------------

    def _upstream(self, d: Directive) -> None:
        name = d.args[0]
        if name in self.http.upstreams:
            raise ConfigError(f'duplicate upstream "{name}"', d.file, d.line)
        up = Upstream(name, [], file=d.file, line=d.line)
        method_set = False
        for e in d.block:
            if self._warn_ignored(e):
                continue
            a, f, ln, n = e.args, e.file, e.line, e.name
            if n == "server":
                servers = self._upstream_server(e)
                # nginx checks this when it reads the server line: a backup server listed
                # before the method is accepted (and then ignored by that method).
                if servers[0].backup and up.balance.method in ("hash", "ip_hash", "random"):
                    raise ConfigError('balancing method does not support parameter "backup"',
                                      f, ln)
                up.servers.extend(servers)
            elif n == "keepalive":
                if not a[0].isdigit() or int(a[0]) == 0:
                    raise ConfigError(f'invalid value "{a[0]}" in "keepalive" directive', f, ln)
                up.keepalive = int(a[0])
            elif n == "keepalive_timeout":
                up.keepalive_timeout = values.time(n, a[0], f, ln)
            elif n == "keepalive_requests":
                up.keepalive_requests = values.number(n, a[0], f, ln)
            elif n in ("least_conn", "ip_hash", "hash", "random", "least_time"):
                if method_set:
                    self.warnings.append(f"load balancing method redefined in {f}:{ln}")
                method_set = True
                up.balance = self._balance(e)
            elif n == "health_check":
                up.health_check = self._health_check(e)
        if not up.servers:
            # nginx notices this when the block closes, so it names the "}" line.
            raise ConfigError("no servers are inside upstream", d.file, d.end_line)
        if all(s.backup for s in up.servers):
            raise ConfigError(f'no servers in upstream "{name}"', d.file, d.line)
        self.http.upstreams[name] = up

    def _balance(self, e: Directive) -> Balance:
        a, f, ln = e.args, e.file, e.line
        if e.name in ("least_conn", "ip_hash"):
            return Balance(e.name)
        if e.name == "hash":
            if len(a) == 2 and a[1] != "consistent":
                raise ConfigError(f'invalid parameter "{a[1]}"', f, ln)
            _compile(a[0], f, ln)
            return Balance("hash", key=a[0], consistent=len(a) == 2)
        if e.name == "random":
            if not a:
                return Balance("random")
            if a[0] != "two":
                raise ConfigError(f'invalid parameter "{a[0]}"', f, ln)
            if len(a) == 2 and a[1] != "least_conn":
                raise ConfigError(f'invalid parameter "{a[1]}"', f, ln)
            return Balance("random", two=True)
        # least_time header|last_byte [inflight]
        if a[0] not in ("header", "last_byte") or (len(a) == 2 and a[1] != "inflight"):
            bad = a[0] if a[0] not in ("header", "last_byte") else a[1]
            raise ConfigError(f'invalid parameter "{bad}"', f, ln)
        return Balance("least_time", least_time=a[0])

    def _upstream_server(self, e: Directive) -> list[UpstreamServer]:
        addr, f, ln = e.args[0], e.file, e.line
        if addr.startswith("unix:"):
            raise ConfigError("upstream servers on unix sockets are not supported by this "
                              "gateway", f, ln)
        opts: dict = {}
        for p in e.args[1:]:
            key, _, v = p.partition("=")
            if key == "weight" and v.isdigit() and int(v) > 0:
                opts["weight"] = int(v)
            elif key == "max_fails" and v.isdigit():
                opts["max_fails"] = int(v)
            elif key == "max_conns" and v.isdigit():
                opts["max_conns"] = int(v)
            elif key == "fail_timeout" and values.parse_time(v) is not None:
                opts["fail_timeout"] = values.parse_time(v)
            elif p in ("backup", "down"):
                opts[p] = True
            else:
                raise ConfigError(f'invalid parameter "{p}"', f, ln)
        host, port_text = _split_host_port(addr)
        if host is None:
            raise ConfigError(f'invalid host in upstream "{addr}"', f, ln)
        if not host:
            raise ConfigError(f'no host in upstream "{addr}"', f, ln)
        port = 80 if port_text is None else _valid_port(port_text)
        if port is None:
            raise ConfigError(f'invalid port in upstream "{addr}"', f, ln)
        addrs = _resolve(host, port)
        if not addrs:
            raise ConfigError(f'host not found in upstream "{addr}"', f, ln)
        return [UpstreamServer(addr, a, port, **opts) for a in addrs]

    def _health_check(self, e: Directive) -> HealthCheck:
        hc = HealthCheck()
        for p in e.args:
            key, _, v = p.partition("=")
            if key in ("interval", "timeout") and values.parse_time(v):
                setattr(hc, key, values.parse_time(v))
            elif key in ("fails", "passes") and v.isdigit() and int(v) > 0:
                setattr(hc, key, int(v))
            elif key == "uri" and v.startswith("/"):
                hc.uri = v
            else:
                raise ConfigError(f'invalid parameter "{p}"', e.file, e.line)
        return hc

    # unikernel ------------------------------------------------------------

    def _unikernel(self, d: Directive) -> None:
        name = d.args[0]
        if name in self.http.unikernels:
            raise ConfigError(f'duplicate unikernel "{name}"', d.file, d.line)
        pool = UnikernelPool(name, "", file=d.file, line=d.line)
        for e in d.block:
            a, f, ln, n = e.args, e.file, e.line, e.name
            bad = ConfigError(f'invalid value "{a[-1]}" in "{n}" directive', f, ln)
            if n == "image":
                pool.image = self._path(a[0]) if "/" in a[0] else a[0]
            elif n == "instances":
                # MIN may be 0 (a pool that scales to zero); MAX must allow one worker.
                if not all(x.isdigit() for x in a) or int(a[-1]) < max(1, int(a[0])):
                    raise bad
                pool.min_instances, pool.max_instances = int(a[0]), int(a[-1])
            elif n == "memory":
                size = values.parse_size(a[0])
                if not size or size < 1024 * 1024:
                    raise bad
                pool.memory_mb = size // (1024 * 1024)
            elif n == "transport":
                if a[0] not in ("auto", "tap", "socketpair"):
                    raise bad
                pool.transport = a[0]
            elif n == "accel":
                if a[0] not in ("auto", "kvm", "tcg"):
                    raise bad
                pool.accel = a[0]
            elif n == "balance":
                pool.balance = self._pool_balance(e)
            elif n == "setting":
                if any(c.isspace() for c in a[1]):
                    # Guest settings travel on the kernel command line, split at spaces.
                    raise bad
                pool.settings[a[0]] = a[1]
                try:
                    Tunables.split({a[0]: a[1]})
                except UnikernelError as exc:
                    raise ConfigError(exc.args[0], f, ln) from exc
        if not pool.image:
            raise ConfigError(f'no "image" is defined in unikernel "{name}"', d.file, d.line)
        self.http.unikernels[name] = pool

    def _pool_balance(self, e: Directive) -> Balance:
        a, f, ln = e.args, e.file, e.line
        if a[0] in ("round_robin", "least_conn") and len(a) == 1:
            return Balance(a[0])
        if a[0] == "hash" and len(a) >= 2:
            if len(a) == 3 and a[2] != "consistent":
                raise ConfigError(f'invalid parameter "{a[2]}"', f, ln)
            _compile(a[1], f, ln)
            return Balance("hash", key=a[1], consistent=len(a) == 3)
        if a[0] == "hash":
            raise ConfigError('invalid number of arguments in "balance" directive', f, ln)
        raise ConfigError(f'invalid parameter "{a[0] if len(a) == 1 else a[1]}"', f, ln)

    def _unikernel_pass(self, d: Directive) -> UnikernelPass:
        payload = d.args[1] if len(d.args) > 1 else "uri"
        if payload not in ("uri", "body", "args") and not (
                payload.startswith("header:") and len(payload) > len("header:")):
            raise ConfigError(f'invalid parameter "{payload}"', d.file, d.line)
        up = UnikernelPass(d.args[0], payload)
        self.pending_unikernel.append((up, d.file, d.line))
        return up

    def _resolve_unikernel_passes(self) -> None:
        for up, f, ln in self.pending_unikernel:
            if up.pool not in self.http.unikernels:
                raise ConfigError(f'host not found in unikernel "{up.pool}"', f, ln)
        for name, part in self.pending_parts:
            compose.check_pool(name, part, self.http.unikernels)
