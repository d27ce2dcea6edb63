"""Build the typed ``Config`` from the directive tree, applying nginx's merge rules."""

from __future__ import annotations

import ipaddress
import os

from gateway.config import (access, compose, geo, gzip, headers, http2, limit_except,
                            limit_rate, limits, maps, mirror, observe, proxy_cache, proxy_headers,
                            proxy_ssl, random_index, referer, resolver, rewrite, secure_link,
                            static_files, sub_filter, syslog, values)
from gateway.config.listen import ListenBuilder
from gateway.config.proxy import ProxyBuilder, proxy_pass_uri
from gateway.config.tls import TlsBuilder
from gateway.config.unikernel import UnikernelBuilder
from gateway.config.upstream import UpstreamBuilder
from gateway.config.model import (
    AccessLog, AddHeader, Config, ErrorLog, ErrorPage, Http, LimitExcept, Listen, Location,
    LocationSettings, ProxyPass, Return, Server, UnikernelPass)
from gateway.config.parser import Directive, ParsedConfig
from gateway.errors import ConfigError

NEXT_UPSTREAM = {"error", "timeout", "invalid_header", "http_500", "http_502", "http_503",
                 "http_504", "http_403", "http_404", "http_429", "non_idempotent", "off"}
LOG_LEVELS = ("debug", "info", "notice", "warn", "error", "crit", "alert", "emerg")
REDIRECT_CODES = (301, 302, 303, 307, 308)
# Settings a nested level never inherits (content handlers and per-location paths).
NOT_INHERITED = {"proxy_pass", "unikernel_pass", "stub_status", "metrics", "status_json", "status_page",
                 "alias", "try_files", "return_", "rewrite", "internal"}
DEFAULT_TYPES = {"html": "text/html", "gif": "image/gif", "jpg": "image/jpeg"}
SERVER_FIELDS = ("client_header_timeout", "client_header_buffer_size",
                 "large_client_header_buffers", "underscores_in_headers",
                 "ignore_invalid_headers")


def _dump(path: str, text: str) -> str:
    """One file in ``-T`` form, as nginx prints it (one newline added, even without a last one)."""
    return f"# configuration file {path}:\n{text}\n"


class Builder(ListenBuilder, TlsBuilder, ProxyBuilder, UpstreamBuilder, UnikernelBuilder):
    """Walks the tree once; one method per block kind.  The http core's blocks are built here,
    each other module's in its own file (listen.py, tls.py, proxy.py, upstream.py, unikernel.py)."""

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
        self.upstream_tls_contexts: dict = {}     # proxy_ssl_* settings -> client SSLContext
        self.pending_limits: list = []            # limit_req and limit_conn, given zones at the end
        self.server_names: tuple = ([""], ())     # the server being built: names, name regexes
        self.http_end: tuple = (None, None)       # where http's "}" is: nginx merges there
        self.cache_paths: dict = {}               # proxy_cache_path zones of the http block

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
            elif d.name == "worker_rlimit_nofile":
                cfg.worker_rlimit_nofile = values.number(d.name, a[0], f, ln)
            elif d.name == "worker_shutdown_timeout":
                cfg.worker_shutdown_timeout = values.time(d.name, a[0], f, ln)
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
        if path.startswith("memory:"):
            raise ConfigError(f'error_log "{path}" is not supported by this gateway',
                              d.file, d.line)
        peer = syslog.parse(path, d.file, d.line) if syslog.is_syslog(path) else None
        level = "error"
        if len(d.args) > 1:
            level = d.args[1]
        for i, word in enumerate(d.args[1:]):
            if word not in LOG_LEVELS:
                raise ConfigError(f'invalid log level "{word}"', d.file, d.line)
            if i:
                raise ConfigError(f'duplicate log level "{word}"', d.file, d.line)
        if peer is not None:
            return ErrorLog(path, level, peer)
        return ErrorLog("stderr" if path == "stderr" else self._path(path), level)

    # http -----------------------------------------------------------------

    def _http(self, d: Directive) -> Http:
        http = Http()
        self.http = http
        self.http_end = (d.file, d.end_line)
        http.variables = self._variables(d)
        http.log_formats, http.log_escapes = observe.log_formats(d.block, values.check_template)
        limit_zones = limits.zones(d.block, values.check_template)
        self.cache_paths = http.cache_paths = proxy_cache.paths(
            d.block, proxy_cache.base_path(self.prefix))
        own, server_own = self._settings(d.block)
        self.http_tls = self._tls_own(d.block)
        self.http2_own = http2.level(d.block, self.warnings)
        for e in d.block:
            if e.name == "upstream":
                self._upstream(e)
            elif e.name == "unikernel":
                self._unikernel(e)
        for e in d.block:
            if e.name == "server":
                http.servers.append(self._server(e, own, server_own))
        limits.resolve(self.pending_limits, limit_zones)
        self._check_listens(http.servers)
        http.http2_listens = http2.sockets(http.servers)
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
        """The variables the configuration defines (map, split_clients, geo, set, captures)."""
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
            elif e.name in ("set", "auth_request_set"):
                definitions[name] = e.name
            elif e.name == "map":
                definitions[name] = maps.map_block(e, values.check_template)
            elif e.name == "geo":
                definitions[name] = geo.geo_block(
                    e, self.warnings, lambda source: variables.variable_getter(source) is not None)
            else:
                definitions[name] = maps.split_clients_block(e, values.check_template)
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
            if n.startswith("gzip") or n == "postpone_gzipping":
                gzip.read(d, own, self.warnings)
                continue
            if n in ("root", "alias", "index", "try_files"):
                for arg in a:
                    values.check_template(arg, f, ln)
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
                       "absolute_redirect", "port_in_redirect", "server_name_in_redirect",
                       "log_not_found", "msie_padding"):
                own[n] = values.flag(a[0])
            elif n == "error_page":
                lists.setdefault("error_pages", []).append(self._error_page(d))
            elif n == "internal":
                own["internal"] = True
            elif n == "add_header":
                if len(a) == 3 and a[2] != "always":
                    raise ConfigError(f'invalid parameter "{a[2]}"', f, ln)
                values.check_template(a[1], f, ln)
                lists.setdefault("add_headers", []).append(AddHeader(a[0], a[1], len(a) == 3))
            elif n == "expires":
                headers.read(d, own, values.check_template)
            elif n in limit_rate.DIRECTIVES:
                limit_rate.read(d, own, lists, values.check_template)
            elif n in resolver.DIRECTIVES:
                resolver.read(d, own)
            elif n in proxy_cache.DIRECTIVES:
                proxy_cache.read(d, own, lists, self.warnings, values.check_template)
            elif n in proxy_headers.DIRECTIVES:
                proxy_headers.read(d, own, self.warnings, values.check_template)
            elif n == "proxy_set_header":
                values.check_template(a[1], f, ln)
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
            elif n == "if_modified_since":
                if a[0] not in ("off", "exact", "before"):
                    raise ConfigError(f'invalid value "{a[0]}"', f, ln)
                own[n] = a[0]
            elif n == "max_ranges":
                own[n] = values.number(n, a[0], f, ln)
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
            elif n in proxy_ssl.DIRECTIVES:
                proxy_ssl.read(d, own, lambda path: self._path(path, self._conf_dir()),
                               self.warnings)
            elif n == "proxy_ssl_name":
                values.check_template(a[0], f, ln)
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
                own[n] = a[0]
            elif n == "real_ip_recursive":
                own[n] = values.flag(a[0])
            elif n in limits.LEVEL_DIRECTIVES:
                limits.level_setting(d, own, lists, self.pending_limits)
            elif n in referer.DIRECTIVES:
                referer.read(d, own)
            elif n in random_index.DIRECTIVES:
                random_index.read(d, own)
            elif n in mirror.DIRECTIVES:
                mirror.read(d, own)
            elif n in secure_link.DIRECTIVES:
                secure_link.read(d, own, values.check_template)
            elif n in sub_filter.DIRECTIVES:
                sub_filter.read(d, own, lists, self.warnings, values.check_template)
            elif n in static_files.DIRECTIVES:
                static_files.level_setting(d, own, values.check_template)
            elif n in access.DIRECTIVES:
                access.level_setting(d, own, lists, values.check_template,
                                     lambda path: self._path(path, self._conf_dir()), self.warnings)
            elif n in ("metrics", "status_json"):
                own[n] = True
            elif n == "status_page":
                own[n] = observe.status_page(d)
            elif n == "stub_status":
                if a and a[0] not in ("on", "off"):      # nginx before 1.7.5 wrote "stub_status on"
                    raise ConfigError(f'invalid parameter "{a[0]}"', f, ln)
                own[n] = not a or a[0] == "on"
            elif n in ("unikernel_auth", "unikernel_cache", "unikernel_body"):
                part = own[n] = compose.build_part(d, values.check_template)
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
            elif n in ("underscores_in_headers", "ignore_invalid_headers"):
                server_own[n] = a[0] == "on"
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
                values.check_template(a[0], d.file, d.line)
                return Return(302, a[0])
            raise ConfigError(f'invalid return code "{a[0]}"', d.file, d.line)
        if not a[0].isdigit() or int(a[0]) > 999:
            raise ConfigError(f'invalid return code "{a[0]}"', d.file, d.line)
        text = a[1] if len(a) > 1 else None
        if text is not None:
            values.check_template(text, d.file, d.line)
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
        values.check_template(a[-1], f, ln)
        codes = []
        for word in a[:codes_end]:
            if not word.isdigit() or int(word) == 499:
                raise ConfigError(f'invalid value "{word}"', f, ln)
            if not 300 <= int(word) <= 599:
                raise ConfigError(f'value "{word}" must be between 300 and 599', f, ln)
            codes.append(int(word))
        return ErrorPage(frozenset(codes), a[-1], overwrite)

    def _access_log(self, d: Directive) -> AccessLog:
        return observe.access_log(d, self.http.log_formats, self.http.log_escapes, self._path,
                                  values.check_template, self.warnings)

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
        if settings.proxy_cache is not None:
            proxy_cache.resolve((settings,), self.cache_paths)
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
        reader = rewrite.ScriptReader(values.check_template, self._return,
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

    def _limit_except(self, d: Directive, merged: dict, loc: Location) -> LimitExcept:
        """A ``limit_except`` block: the nameless location nginx uses for the other methods."""
        own, _ = self._settings(d.block)
        # Only its own proxy_pass is held to nginx's "cannot have URI part"; an inherited one
        # passed its location's check.
        settings = self._location_settings(limit_except.inherit(merged, own), "proxy_pass" in own)
        nameless = Location(loc.modifier, loc.pattern, settings, regex=loc.regex,
                            capture_regexes=loc.capture_regexes, file=d.file, line=d.line)
        return LimitExcept(limit_except.methods(d.args, d.file, d.line), nameless)

    # server ---------------------------------------------------------------

    def _server(self, d: Directive, http_own: dict, http_server_own: dict) -> Server:
        own, server_own = self._settings(d.block)
        merged = self._merge(http_own, own)
        listens: list[Listen] = []
        names: list[str] = []
        capture_regexes: list = []
        for e in d.block:
            if e.name == "listen":
                listens.extend(self._listen(e))
            elif e.name == "server_name":
                for n in e.args:
                    if n.startswith("~"):
                        capture_regexes.append(maps.regex(n[1:], True, e.file, e.line))
                names.extend(n if n.startswith("~") else n.lower() for n in e.args)
        self.server_names = (names or [""], tuple(capture_regexes))
        referer.resolve(merged, own, http_own, *self.server_names, self.http_end)
        secure_link.resolve(merged, own, self.http_end)
        if not listens:
            port = 80 if os.geteuid() == 0 else 8000
            listens = [Listen("0.0.0.0", port, file=d.file, line=d.line)]
        # A server-level return runs in nginx's server rewrite phase, before any
        # location is chosen: every location of the server therefore answers with it.
        locations = self._locations(d.block, merged, None)
        settings = self._location_settings(merged, False)
        settings.rewrite = self._script(d.block, merged, None)
        server = Server(listens=listens, server_names=names or [""], locations=locations,
                        settings=settings, capture_regexes=tuple(capture_regexes),
                        file=d.file, line=d.line)
        for key, value in {**http_server_own, **server_own}.items():
            setattr(server, key, value)
        tls_own = self._tls_own(d.block)
        server.tls = self._tls({**self.http_tls, **tls_own,
                                "lines": {**self.http_tls.get("lines", {}),
                                          **tls_own.get("lines", {})}})
        http2.apply(server, self.http2_own, http2.level(d.block, self.warnings))
        return server

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
            proxy_headers.resolve_default(own, pattern, proxy_pass_uri)
            keep_return = parent is None
            merged = self._merge(parent_merged, own, keep_return=keep_return)
            referer.resolve(merged, own, parent_merged, *self.server_names, self.http_end)
            secure_link.resolve(merged, own, self.http_end)
            regex = None
            if modifier in ("~", "~*"):
                regex = maps.regex(pattern, modifier == "~*", d.file, d.line)
            is_regex = in_regex or regex is not None
            around = parent.capture_regexes if parent is not None else ()
            loc = Location(modifier, pattern, LocationSettings(), regex=regex,
                           capture_regexes=around + ((regex,) if regex is not None else ()),
                           file=d.file, line=d.line)
            loc.settings = self._location_settings(merged, regex is not None or modifier == "@")
            loc.settings.rewrite = self._script(d.block, merged, loc)
            loc.children = self._locations(d.block, merged, loc, is_regex)
            for e in d.block:
                if e.name == "limit_except":
                    loc.limit_except = self._limit_except(e, merged, loc)
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
