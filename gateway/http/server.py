"""One worker's HTTP application: listeners, routing, handlers, timers, logs."""

from __future__ import annotations

import asyncio
import functools
import itertools
import os

from gateway.errors import GatewayError, HttpError
from gateway.http import (captures, errorpages, gzip, limit_rate, phases, protocol,
                          request_body, response_heads, rewrite, static, trailers)
from gateway.http.file_sender import FileSender
from gateway.http.headers import static_add_headers
from gateway.http.maps import install_variables
from gateway.http.mime import content_type
from gateway.http.plan import LocationPlan
from gateway.http.protocol import ClientConnection, TlsClientConnection
from gateway.http.proxy_protocol import ProxyProtocolReader
from gateway.http.proxy import ProxyExchange
from gateway.http.responses import ERROR_PAGE_CODES, error_page, padded
from gateway.http.upstream_connection import UpstreamRuntime
from gateway.observe.accesslog import AccessLogs
from gateway.observe import statedir, stub_status
from gateway.observe.errorlog import log
from gateway.process.listeners import ListenOptions, listen_options
from gateway.routing.router import LocationRouter, ServerRouter
from gateway.upstream import build_balancer, start_health_checks

# How often timeouts are checked and logs flushed: the granularity of every timeout.
SWEEP_INTERVAL = 0.25
# How often metrics and status_json publish this worker's counts for the others.
OBSERVE_INTERVAL = 1.0
# nginx stops after 10 internal redirects ("rewrite or internal redirection cycle").
MAX_INTERNAL_REDIRECTS = 10
# Files up to this size are read and written in one go.
SMALL_FILE = 256 * 1024

REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# Server plans that answer before any location is searched: a return, or a rewrite script.
BEFORE_LOCATIONS = frozenset({"return", "rewrite"})
# How long closing a TLS connection may take: flushing what is still buffered, then the
# client's close_notify (uvloop's default; idle connections are aborted at shutdown instead).
TLS_SHUTDOWN_TIMEOUT = 30.0
# A graceful stop waits this long for handshakes of connections accepted before it.
HANDSHAKE_GRACE = 1.0


class WorkerApp:
    """Everything one worker process serves, built once from the config."""

    def __init__(self, config, loop):
        self.config = config
        self.loop = loop
        self.clock = loop.time
        self.connections: set[ClientConnection] = set()
        self.max_connections = max(config.worker_connections, 1)
        self._refusals_logged = 0.0
        self.servers: list[asyncio.AbstractServer] = []
        self.shutting_down = False
        self._shutdown_at = 0.0
        # TLS connections accepted and still in their handshake (not yet in ``connections``)
        # -> when they were accepted.  A failed handshake never reports back: _sweep drops
        # entries older than any handshake may last.
        self.handshakes: dict = {}
        self._handshake_limit = 0.0     # the longest ssl_handshake_timeout of our sockets
        self._ids = itertools.count(1)
        # stub_status's counts (gateway/observe/stub_status.py): none of them per request.
        self.accepted = self.refused = self.requests_closed = 0
        self.stub_status_used = False
        # metrics and status_json (gateway/observe/): counted in the log phase, published by _sweep.
        self.meter = self.status_json_used = None
        self._observed_due = 0.0
        if statedir.wanted(config):
            from gateway.observe.metrics import Meter
            statedir.create(config)     # a no-op under a master, which made it already
            self.meter = Meter()
        self._sweeper = None
        self._closed = asyncio.Event()
        self.http2 = None                # gateway.http.http2 when a socket speaks HTTP/2
        self.access_logs = AccessLogs()
        self.health = None
        self.mirrors = None              # gateway/http/mirror.py's subrequests, on first use
        http = config.http
        # The configuration's own variables before any template is compiled (issue 11).
        install_variables(http.variables if http else {})
        self.unikernels = None
        if http and http.unikernels:
            # Imported only when configured: plain proxies never load the QEMU side.
            from gateway.unikernel.dispatch import start_exchange
            from gateway.unikernel.service import UnikernelPools, make_handler
            from gateway.process.privileges import resolve
            self.unikernels = UnikernelPools(http.unikernels, loop, config.prefix)
            self.make_unikernel_handler = make_handler
            self.start_unikernel = start_exchange
            if resolve(config) is None:
                # QEMU boots (~30 ms) while the rest is built below. A worker that switches to `user`
                # launches in start(), after the switch, so its QEMUs never run as root.
                self.unikernels.launch()
        try:
            self._build(config, http)
        except BaseException:
            if self.unikernels is not None:
                self.unikernels.stop()
            raise

    def _build(self, config, http):
        """Upstreams, routers and every location's plan."""
        self.upstreams = {
            name: UpstreamRuntime(upstream, build_balancer(upstream), self.loop)
            for name, upstream in (http.upstreams.items() if http else ())
        }
        servers = http.servers if http else []
        self.server_router = ServerRouter(servers)
        self.listen_keys = frozenset(self.server_router.listen_keys())
        self._default_servers = {}
        self._rewritten_twins = {}    # proxy plan -> its copy for rewritten URIs
        self.resolvers = {}           # resolver config -> its runtime (gateway/http/resolver.py)
        self.error_pages_in_use = False   # set by _plan: connections ask answer_error_page
        self.cache_zones = []         # proxy_cache_path runtimes, swept by _sweep
        if http and http.cache_paths:
            from gateway.http.proxy_cache import zone_for
            self.cache_zones = [zone_for(path) for path in http.cache_paths.values()]
        for server in servers:
            self._building = server
            server.router = LocationRouter(server.locations)
            server.plan = self._plan(None, server.settings)
            for location in _walk(server.locations):
                location.plan = self._plan(location, location.settings)
                limits = location.limit_except
                if limits is not None:
                    from gateway.http.limit_except import LimitExceptPlan   # only configs using it
                    location.plan = LimitExceptPlan(
                        location.plan, self._plan(limits.location, limits.location.settings),
                        limits.methods)
        # $sent_http_*, $upstream_http_* and the like: heads are kept only when read.
        record_heads = getattr(protocol, "record_heads", None)
        if record_heads is not None:
            record_heads(response_heads.wanted(), request_body.wanted())

    def _plan(self, location, settings) -> LocationPlan:
        logs = self.access_logs.resolve(settings.access_logs)
        plan = LocationPlan(location, settings, self.upstreams, logs)
        if self.meter is not None:      # counted in the log phase (gateway/observe/metrics.py)
            plan.meter = self.meter.location(self._building, location)
        if settings.status_json:
            self.status_json_used = True
        if plan.kind == "stub_status":
            self.stub_status_used = True
        if settings.rewrite is not None:
            plan = rewrite.rewrite_plan(plan, location, settings, self._plan)
            plan.content = _checked(plan.content, settings)   # checks run after the script
        else:
            plan = _checked(plan, settings)
        if settings.internal:
            plan = errorpages.InternalPlan(plan)
        if settings.error_pages:
            self.error_pages_in_use = True
        return plan

    # Lifecycle (the interface the process model drives) -------------------

    async def start(self, sockets):
        """Serve on already bound, listening sockets: {listen key: [socket, ...]}."""
        if self.unikernels is not None:
            await self.unikernels.start()
        tls_contexts = self.config.http.tls_listens if self.config.http else {}
        http2_keys = self.config.http.http2_listens if self.config.http else ()
        if http2_keys:    # imported only when configured: HTTP/1.1-only workers never load h2
            from gateway.http import http2
            self.http2 = http2
        proxied = {listen.key for server in (self.config.http.servers if self.config.http else ())
                   for listen in server.listens if listen.proxy_protocol}
        # uvloop listens again with the backlog it is given: the one the master listened with.
        backlogs = {key: options.backlog for key, options in listen_options(self.config).items()}
        for key, socks in sockets.items():
            context = tls_contexts.get(key)
            backlog = backlogs.get(key, ListenOptions.backlog)
            for sock in socks:
                if key in proxied:
                    server = await self.loop.create_server(
                        lambda key=key: ProxyProtocolReader(
                            self, key, lambda: ClientConnection(self, key)),
                        sock=sock, backlog=backlog)
                elif context is None and key in http2_keys:
                    server = await self.loop.create_server(
                        lambda key=key: self.http2.PrefaceSniffer(
                            self, key, lambda: ClientConnection(self, key)),
                        sock=sock, backlog=backlog)
                elif context is None:
                    server = await self.loop.create_server(
                        lambda key=key: ClientConnection(self, key), sock=sock, backlog=backlog)
                else:
                    server = await self._serve_tls(key, sock, context, backlog)
                self.servers.append(server)
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)
        balancers = [u.balancer for u in self.upstreams.values() if u.config.health_check]
        if balancers:
            self.health = start_health_checks(balancers, self.loop)

    async def _serve_tls(self, key, sock, context, backlog):
        # nginx cuts a stalled handshake with the default server's client_header_timeout.
        default = self.default_server(key)
        self._handshake_limit = max(self._handshake_limit, default.client_header_timeout)
        h2 = key in self.config.http.http2_listens
        from gateway.http.tls import select_by_sni     # only TLS configs load it
        select_by_sni(context, self.server_router, key, default, h2)
        return await self.loop.create_server(
            lambda: self._tls_connection(key, h2), sock=sock, backlog=backlog,
            ssl=context, ssl_handshake_timeout=default.client_header_timeout,
            ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT)

    def _tls_connection(self, key, h2=False):
        if h2:      # ALPN decides once the handshake is done
            conn = self.http2.AlpnChooser(self, key, lambda: TlsClientConnection(self, key))
        else:
            conn = TlsClientConnection(self, key)
        self.handshakes[conn] = self.clock()
        return conn

    def _handshakes_pending(self) -> bool:
        return bool(self.handshakes) and self.clock() - self._shutdown_at < HANDSHAKE_GRACE

    def _forget_failed_handshakes(self, now):
        oldest = now - self._handshake_limit - SWEEP_INTERVAL
        for conn in [c for c, accepted in self.handshakes.items() if accepted < oldest]:
            del self.handshakes[conn]

    def shutdown(self, graceful: bool):
        """Stop accepting; finish in-flight requests when graceful, else drop everything."""
        if self.shutting_down and graceful:
            return
        self.shutting_down = True
        # A fast stop drops handshakes in progress too.
        self._shutdown_at = self.clock() - (0.0 if graceful else HANDSHAKE_GRACE)
        for server in self.servers:
            server.close()
        if self.health is not None:
            self.health.stop()
            self.health = None
        for conn in list(self.connections):
            conn.shutdown(graceful)
        if self.mirrors is not None and not graceful:
            self.mirrors.stop()
        # Not at once: a connection accepted in this loop iteration gets its connection_made
        # in the next one (uvloop schedules it); checked now, the worker would exit under it.
        self.loop.call_soon(self._check_closed)

    async def wait_closed(self):
        await self._closed.wait()

    def reopen_logs(self):
        self.access_logs.reopen()

    def _check_closed(self):
        if self.shutting_down and not self.connections and not self._handshakes_pending():
            for upstream in self.upstreams.values():
                upstream.pool.close_all()
            for resolver in self.resolvers.values():
                resolver.close()
            if self.unikernels is not None:
                self.unikernels.stop()
                self.unikernels = None
            if self.stub_status_used:
                stub_status.publish(self)     # the last counts, before the master folds them in
            if self.meter is not None:
                self._publish_observed()
            self.access_logs.close()
            if self._sweeper is not None:
                self._sweeper.cancel()
                self._sweeper = None
            self._closed.set()

    def _sweep(self):
        now = self.clock()
        if self.stub_status_used:
            stub_status.publish(self)
        if self.meter is not None and now >= self._observed_due:
            self._publish_observed()
        for conn in list(self.connections):
            conn.check_deadline(now)
        for upstream in self.upstreams.values():
            upstream.pool.expire(now)
        if self.handshakes:
            self._forget_failed_handshakes(now)
        self.access_logs.tick(now)
        for zone in self.cache_zones:
            zone.tick(now)
        if self.shutting_down:
            self._check_closed()
        if not self._closed.is_set():
            self._sweeper = self.loop.call_later(SWEEP_INTERVAL, self._sweep)

    def _publish_observed(self):
        self._observed_due = self.clock() + OBSERVE_INTERVAL
        self.meter.publish(self)
        if self.status_json_used:
            from gateway.observe import status_json
            status_json.publish(self)

    # Per connection and request --------------------------------------------

    def next_connection_id(self) -> int:
        self.accepted += 1
        return next(self._ids)

    def default_server(self, listen_key):
        server = self._default_servers.get(listen_key)
        if server is None:
            server = self._default_servers[listen_key] = self.server_router.default(listen_key)
        return server

    def listen_key_for(self, socket_key, local_addr):
        """The listen key that picks servers: an address-specific one on a wildcard socket."""
        if socket_key[0] in ("0.0.0.0", "::"):
            specific = (local_addr, socket_key[1])
            if specific in self.listen_keys:
                return specific
        return socket_key

    def connections_refused(self):
        self.refused += 1
        now = self.clock()
        if now - self._refusals_logged >= 1.0:   # at most one line a second under a flood
            self._refusals_logged = now
            log.alert(f"{self.max_connections} worker_connections are not enough")

    def connection_closed(self, conn):
        self.connections.discard(conn)
        self.requests_closed += conn.requests_served
        if self.shutting_down:
            self._check_closed()

    def log_request(self, request):
        plan = request.location.plan if request.location is not None else \
            (request.server.plan if request.server is not None else None)
        if plan is None:
            return
        if plan.kind == "limit_except":     # the log phase too uses the block's location
            plan = plan.select(request.method)
        for file, fmt in plan.access_logs:
            file.write(fmt.render(request))
        if plan.meter is not None:
            plan.meter.record(request)

    def dispatch(self, conn: ClientConnection, request):
        """Route a request whose head was read and start answering it.

        _fastpath/proxyproto.pyx mirrors this method (``_dispatch``) for proxied
        locations: change both together; tests/http/test_protocol_parity.py compares them.
        """
        server = request.server
        if server.plan.kind in BEFORE_LOCATIONS:
            plan = server.plan    # a server-level return or script runs before location matching
        else:
            location, redirect = server.router.find(request.uri)
            if redirect:
                self._auto_redirect(conn, request, location)
                return
            request.location = location
            plan = location.plan if location is not None else server.plan
        settings = plan.settings
        real_ip = getattr(plan, "real_ip", None)
        if real_ip is not None:
            real_ip.apply(request)      # nginx's preaccess phase: the location's settings
        if settings.keepalive_timeout <= 0 or conn.requests_served >= settings.keepalive_requests:
            conn.keep_alive = False
        conn.set_body_limit(settings.client_max_body_size, settings.client_body_timeout)
        try:
            self._answer(conn, request, plan, 0)
        except HttpError:
            raise
        except GatewayError as exc:
            log.error(f"*{request.connection_id} {exc}, client: {request.remote_addr}, request: "
                      f'"{request.method} {request.request_uri}"')
            conn.send_error(500)
        except Exception as exc:   # a bug must cost one request, not the worker
            log.alert(f"unexpected {type(exc).__name__}: {exc} while handling "
                      f'"{request.method} {request.request_uri}"')
            if not conn.response_started:
                conn.send_error(500)
            else:
                conn.close()

    def _answer(self, conn, request, plan, redirects):
        kind = plan.kind
        if kind == "rewrite":    # the script first (the most common kind to come this way)
            self._answer_rewrite(conn, request, plan, redirects)
            return
        if kind == "phases":     # limit_req, limit_conn, allow/deny, auth_basic first
            if getattr(conn, "subrequest", False):
                # nginx runs no access phase for subrequests (auth_request's).
                self._answer(conn, request, plan.content, redirects)
                return
            phases.run(self, conn, request, plan, redirects)
            return
        if kind == "compose":
            from gateway.unikernel.compose import Composition
            handler = Composition(conn, request, plan, self)
            conn.handler = handler
            handler.start()
            return
        self.run_content(conn, request, plan, kind, redirects)

    def run_content(self, conn, request, plan, kind, redirects=0):
        """Run the location's content handler (for a composed location: once its parts passed)."""
        if kind == "proxy":
            if conn.body_pending() and request.version == 11 and \
                    (request.header("expect") or "").lower() == "100-continue":
                conn.send_raw(b"HTTP/1.1 100 Continue\r\n\r\n")
            if plan.proxy.cache is not None:
                from gateway.http.proxy_cache import cache_exchange
                exchange = cache_exchange(conn, request, plan, self)
            elif plan.gzip is None:
                exchange = ProxyExchange(conn, request, plan, self)
            else:       # gzip, or sub_filter (gateway/http/sub_filter.py)
                exchange = plan.gzip.exchange_class(conn, request, plan, self)
            conn.handler = exchange
            exchange.start()
        elif kind == "proxy_vars":
            self._answer_variable_proxy(conn, request, plan, redirects)
        elif kind == "return":
            self._answer_return(conn, request, plan)
        elif kind == "static":
            self._answer_static(conn, request, plan, redirects)
        elif kind == "stub_status":
            self._answer_stub_status(conn, request, plan)
        elif kind in ("metrics", "status_json", "status_page"):
            self._answer_observed(conn, request, plan, kind)
        elif kind == "rewrite":
            self._answer_rewrite(conn, request, plan, redirects)
        elif kind == "internal":
            self._answer_internal(conn, request, plan, redirects)
        elif kind == "limit_except":
            self._answer_limited(conn, request, plan, redirects)
        elif kind == "mirror":
            from gateway.http import mirror
            mirror.run(self, conn, request, plan, redirects)
        else:
            self.start_unikernel(conn, request, plan, self)

    def _answer_limited(self, conn, request, plan, redirects):
        """nginx's find-config phase for a location with limit_except: the plan for the
        request's method, from its rewrite phase on (realip's preaccess step included)."""
        plan = plan.select(request.method)
        real_ip = getattr(plan, "real_ip", None)
        if real_ip is not None:
            real_ip.apply(request)
        self._answer_content(conn, request, plan, redirects)

    # Rewrite module (gateway/http/rewrite.py) -----------------------------

    def _answer_rewrite(self, conn, request, plan, redirects):
        """Run a server's or a location's script, then answer as it decided.

        _fastpath/proxyproto.pyx mirrors this (``_answer_script``) for location scripts
        that end in their own proxy content; it hands every other end to the method below.
        """
        end, value, active = plan.program.run(request)
        self.answer_script_end(conn, request, plan, end, value, active, redirects)

    def answer_script_end(self, conn, request, plan, end, value, active, redirects):
        """Answer as a script that ran decided: (end, value, active) as Program.run returns."""
        if end == rewrite.ANSWER:
            if active is not None:   # an "if" location whose condition held: its headers
                value = rewrite.with_headers_of(value, active)
            self._answer_return(conn, request, value)
            return
        if end == rewrite.REDIRECT:
            code, url = value
            conn.send_simple(code, error_page(code), b"text/html", b"Location: %s\r\n"
                             % self.absolute_url(request, url).encode("latin-1", "replace"),
                             (active or plan).add_headers)
            return
        if plan.location is None:
            # A server script ran before location matching; now the locations are searched.
            self._find_location(conn, request, redirects, after_server=True)
        elif end == rewrite.FIND:
            if redirects >= MAX_INTERNAL_REDIRECTS:
                log.error(f'*{request.connection_id} rewrite or internal redirection cycle '
                          f'while processing '
                          f'"{request.uri}"{rewrite.client_context(request)}')
                conn.send_error(500)
                return
            self._find_location(conn, request, redirects + 1, after_server=False)
        else:
            self._answer_content(conn, request, active or plan.content, redirects)

    def _auto_redirect(self, conn, request, location):
        """nginx's auto_redirect: "/api" -> "/api/" for a proxied "location /api/"."""
        target = request.uri + "/" + ("?" + request.args if request.args else "")
        request.location = location
        conn.send_simple(301, error_page(301), b"text/html", b"Location: %s\r\n"
                         % self.absolute_url(request, target).encode("latin-1", "replace"))

    def _find_location(self, conn, request, redirects, after_server):
        """nginx's find-config phase for a URI a script set (or after the server script)."""
        server = request.server
        captures.before_search(request)
        if after_server:
            location, redirect = server.router.find(request.uri)
            if redirect:
                self._auto_redirect(conn, request, location)
                return
        else:
            location = server.router.match(request.uri)
        request.location = location
        captures.location_found(request)
        if location is not None:
            plan = location.plan
        else:
            plan = server.plan.content if server.plan.kind == "rewrite" else server.plan
        settings = plan.settings
        if settings.keepalive_timeout <= 0 or conn.requests_served >= settings.keepalive_requests:
            conn.keep_alive = False
        conn.set_body_limit(settings.client_max_body_size, settings.client_body_timeout)
        self._answer_reached(conn, request, plan, redirects)

    def _answer_reached(self, conn, request, plan, redirects):
        """Answer with a location's plan reached from inside (a script or an error page)."""
        kind = plan.kind
        if kind == "rewrite":
            self._answer_rewrite(conn, request, plan, redirects)
        elif kind == "internal":
            self._answer_internal(conn, request, plan, redirects)
        else:
            self._answer_content(conn, request, plan, redirects)

    # error_page and internal (gateway/http/errorpages.py) ---------------

    def _answer_internal(self, conn, request, plan, redirects):
        if not errorpages.is_internal(request):
            conn.send_error(404, plan.add_headers)    # nginx: 404 from outside
            return
        self._answer_reached(conn, request, plan.content, redirects)

    def answer_error_page(self, conn, status) -> bool:
        """Answer ``status`` with the error_page configured for it; False if there is none."""
        request = conn.request
        if request is None or request.server is None or conn.response_started:
            return False
        where = request.location if request.location is not None else request.server
        page = errorpages.choose(request, where.settings, status)
        if page is None:
            return False
        uri = errorpages.target(page, request)
        server = request.server
        captures.before_search(request)
        if uri.startswith("/"):
            if request.method != "HEAD":
                request.method = "GET"
            request.uri, _, request.args = uri.partition("?")
            request.rewritten = "last"
            location = server.router.match(request.uri)
        elif uri.startswith("@"):
            location = server.router.named(uri[1:])
            if location is None:
                log.error(f'*{request.connection_id} named location "{uri}" not found'
                          f'{rewrite.client_context(request)}')
                return False
        else:
            errorpages.clear_status(request)
            code = page.overwrite if page.overwrite in REDIRECT_CODES else 302
            conn.send_simple(code, error_page(code), b"text/html", b"Location: %s\r\n"
                             % uri.encode("latin-1", "replace"), where.plan.add_headers)
            return True
        request.location = location
        captures.location_found(request)
        if location is not None:
            plan = location.plan
        else:
            plan = server.plan.content if server.plan.kind == "rewrite" else server.plan
        self._answer_reached(conn, request, plan, 0)
        return True

    def _answer_content(self, conn, request, plan, redirects):
        """The content phase for a plan reached through a script."""
        if plan.kind == "proxy":
            plan = self.proxy_plan(request, plan)
            answer_proxy = getattr(conn, "answer_proxy", None)
            if answer_proxy is not None and plan.gzip is None and not plan.proxy.python_only \
                    and limit_rate.RATE not in (getattr(request, "vars", None) or ()):
                # the compiled connection proxies itself
                answer_proxy(request, plan)
                return
        self._answer(conn, request, plan, redirects)

    def _answer_variable_proxy(self, conn, request, plan, redirects):
        """proxy_pass with variables: the plain proxy plan for the URL this request renders."""
        twin, failure = plan.variable_proxy.plan_for(self, plan, request)
        if twin is None:
            if not isinstance(failure, tuple):     # a name for the resolver first
                from gateway.http.proxy_vars import Resolving
                Resolving(self, conn, request, plan, redirects, failure)
                return
            message, status = failure
            log.error(f"*{request.connection_id} {message}{rewrite.client_context(request)}")
            conn.send_error(status, plan.add_headers)
            return
        self._answer_content(conn, request, twin, redirects)

    def resolver(self, config):
        """The runtime of a ``resolver`` line, made on first use."""
        runtime = self.resolvers.get(config)
        if runtime is None:
            from gateway.http.resolver import Resolver      # only configs with a resolver
            runtime = self.resolvers[config] = Resolver(config, self.loop)
        return runtime

    def proxy_plan(self, request, plan):
        """The proxy plan to answer with: its twin for rewritten URIs once a script changed it."""
        if getattr(request, "rewritten", None) and \
                not isinstance(plan.proxy, rewrite.RewrittenProxyPlan) and \
                not getattr(plan.proxy, "follows_rewrites", False):
            twin = self._rewritten_twins.get(plan)
            if twin is None:
                twin = self._rewritten_twins[plan] = rewrite.rewritten_twin(plan)
            return twin
        return plan

    def _answer_stub_status(self, conn, request, plan):
        if request.method not in ("GET", "HEAD"):
            conn.send_error(405, plan.add_headers)
            return
        conn.send_simple(200, stub_status.render(self), b"text/plain", b"", plan.add_headers)

    def _answer_observed(self, conn, request, plan, kind):
        if request.method not in ("GET", "HEAD"):
            conn.send_error(405, plan.add_headers)
            return
        if kind == "metrics":
            from gateway.observe import metrics
            body, ctype = self.meter.render(self), metrics.CONTENT_TYPE
        elif kind == "status_page":
            from gateway.observe import status_page
            body, ctype = plan.page, status_page.CONTENT_TYPE
        else:
            from gateway.observe import status_json
            body, ctype = status_json.render(self), status_json.CONTENT_TYPE
        conn.send_simple(200, body, ctype, b"", plan.add_headers)

    def _answer_return(self, conn, request, plan):
        code = plan.return_code
        override = errorpages.status_override(request)
        if override is not None:
            code = override
        elif plan.return_text is None and code >= 300 and code != 444 and \
                plan.settings.error_pages and self.answer_error_page(conn, code):
            return      # "return CODE;" is an error nginx's error_page may answer
        if code == 444:      # nginx's "close the connection without a response"
            request.status = 444
            conn.keep_alive = False
            conn.close()
            conn.finish_response()
            return
        if code == 204:     # nginx's header filter: no body, no Content-Type, no length
            conn.send_simple(204, b"", None, b"", plan.add_headers)
            return
        text = plan.return_text.render(request) if plan.return_text is not None else None
        send_simple = conn.send_simple
        if plan.settings.add_trailers:
            send_simple = functools.partial(trailers.send_simple, conn, plan.settings)
        if code in REDIRECT_CODES and text is not None:
            location = self.absolute_url(request, text)
            send_simple(code, error_page(code, plan.settings.server_tokens), b"text/html",
                        b"Location: %s\r\n" % location.encode("latin-1", "replace"),
                        plan.add_headers)
        elif text is not None:
            settings = plan.settings
            ctype = content_type(request.uri, settings.types, settings.default_type)
            send_simple(code, text.encode("utf-8"), ctype.encode("latin-1"), b"",
                        plan.add_headers)
        elif code in ERROR_PAGE_CODES:
            body = padded(request, code, error_page(code, plan.settings.server_tokens))
            send_simple(code, body, b"text/html", b"", plan.add_headers)
        elif code < 300:
            ctype = plan.settings.default_type.encode("latin-1")
            send_simple(code, b"", ctype, b"", plan.add_headers, empty_type=True)
        else:
            send_simple(code, b"", None, b"", plan.add_headers)

    def absolute_url(self, request, target: str) -> str:
        """nginx's absolute_redirect: a relative redirect gets scheme, host and port."""
        if not target.startswith("/"):
            return target
        where = request.location if request.location is not None else request.server
        settings = where.settings if where is not None else None
        port = request.server_port
        if settings is None:
            host = request.host or request.server_name or request.server_addr
        else:
            if not settings.absolute_redirect:
                return target
            if settings.server_name_in_redirect:
                host = request.server_name or request.server_addr
            else:
                host = request.host or request.server_addr
            if not settings.port_in_redirect:
                port = None
        default_port = 443 if request.scheme == "https" else 80
        suffix = "" if port is None or port == default_port else f":{port}"
        return f"{request.scheme}://{host}{suffix}{target}"

    def _answer_static(self, conn, request, plan, redirects):
        location = plan.location or _ServerLocation(plan.settings)
        result, vary = None, False
        if plan.settings.gzip_static != "off":
            result, vary = gzip.serve_static_gz(request, location)
        if result is not None:
            pass
        elif plan.gzip is not None and request.header("range") is not None \
                and (plan.gzip.sub is not None or plan.gzip.request_ok(request)):
            # nginx's gzip filter runs before its range filter: a file it compresses is
            # sent whole, so the ranges count only when it does not compress this one.
            result = static.serve_static(request, location, ranges=False)
            if not isinstance(result, static.FileResponse) or \
                    not _whole_file(plan.gzip, request, result):
                result = static.serve_static(request, location)
        else:
            result = static.serve_static(request, location)
        if vary and plan.settings.gzip_vary and isinstance(result, static.FileResponse):
            result.headers.append(("Vary", "Accept-Encoding"))
        if isinstance(result, static.InternalRedirect):
            self._internal_redirect(conn, request, result, redirects)
        elif isinstance(result, static.ErrorStatus):
            if plan.settings.add_trailers and not result.headers:
                trailers.send_error(conn, plan.settings, result.status, plan.add_headers)
            elif plan.settings.add_trailers:
                trailers.send_simple(conn, plan.settings, result.status,
                                     padded(request, result.status, error_page(result.status)),
                                     b"text/html", _header_lines(result.headers), plan.add_headers)
            elif result.headers:
                conn.send_simple(result.status,
                                 padded(request, result.status, error_page(result.status)),
                                 b"text/html", _header_lines(result.headers), plan.add_headers)
            else:
                conn.send_error(result.status, plan.add_headers)
        elif isinstance(result, static.BytesResponse):
            self._send_static_bytes(conn, request, plan, result.status, result.headers, result.body)
        elif isinstance(result, static.FileResponse):
            self._send_file(conn, request, plan, result)
        else:       # an autoindex listing, a large multipart answer: each sends itself
            result.send(conn, request, plan)

    def _internal_redirect(self, conn, request, redirect, redirects):
        uri = redirect.uri
        if redirects >= MAX_INTERNAL_REDIRECTS:
            log.error(f'*{request.connection_id} rewrite or internal redirection cycle while '
                      f'internally redirecting to "{uri}"{rewrite.client_context(request)}')
            conn.send_error(500)
            return
        server = request.server
        errorpages.mark_internal(request)
        captures.before_search(request)
        if uri.startswith("@"):
            location = server.router.named(uri[1:])
            if location is None:
                log.error(f'named location "{uri}" not found')
                conn.send_error(500)
                return
        else:
            if redirect.args is not None:
                # try_files' fallback: the URI as written, its "?args" replacing ours.
                request.uri = uri.partition("?")[0]
                request.args = redirect.args
            else:
                request.uri = uri
            location = server.router.match(request.uri)
        request.location = location
        captures.location_found(request)
        plan = location.plan if location is not None else server.plan
        self._answer(conn, request, plan, redirects + 1)

    def _send_static_bytes(self, conn, request, plan, status, headers, body):
        status, headers = _error_page_status(request, status, headers)
        lines = _header_lines(headers)
        if plan.settings.add_trailers and trailers.expected(plan.settings, request, status):
            lines = trailers.chunked_lines(conn, lines)
            body = trailers.chunk(body) + trailers.last_chunk(plan.settings, request, status)
        conn.send_head(status, lines, static_add_headers(plan, headers))
        if body and request.method != "HEAD":
            conn.send_body(body)
        conn.finish_response()

    def _send_file(self, conn, request, plan, result):
        status, headers = _error_page_status(request, result.status, result.headers)
        deflate = None
        if plan.gzip is not None:
            if plan.gzip.sub is not None and self._send_filtered_file(conn, request, plan,
                                                                      result, status, headers):
                return
            deflate, vary = gzip.static_decision(plan.gzip, request, result)
            if deflate is not None:
                headers = gzip.compressed_headers(request, headers, vary)
            elif vary and ("Vary", "Accept-Encoding") not in headers:
                headers = headers + [("Vary", "Accept-Encoding")]
        lines = _header_lines(headers)
        add_headers = static_add_headers(plan, headers)
        chunks = trailing = None
        if plan.settings.add_trailers and trailers.expected(plan.settings, request, status):
            if deflate is None:
                lines = trailers.chunked_lines(conn, lines)
                chunks = trailers.ChunkWriter(conn, plan.settings, status)
            else:       # gzipped: its writer ends the body with the trailers
                trailing = (plan.settings, status)
        if request.method == "HEAD" or (result.length == 0 and deflate is None):
            conn.send_head(status, lines, add_headers)
            if chunks is not None:
                chunks.end()
            conn.finish_response()
            return
        try:
            handle = open(result.path, "rb")
        except OSError:
            conn.send_error(404 if not os.path.exists(result.path) else 403, plan.add_headers)
            return
        if plan.settings.limit_rate or limit_rate.RATE in (getattr(request, "vars", None) or ()):
            limit_rate.start(conn, request, plan.settings)
        conn.send_head(status, lines, add_headers)
        sender = FileSender(conn, handle, result.offset, result.length)
        if deflate is not None:
            sender.writer = gzip.GzipWriter(conn, deflate, trailing)
        elif chunks is not None:
            sender.writer = chunks
        conn.handler = sender
        sender.send()


    def _send_filtered_file(self, conn, request, plan, result, status, headers) -> bool:
        """A file through sub_filter (gateway/http/sub_filter.py); False if it does not apply."""
        from gateway.http import sub_filter
        filtered = sub_filter.file_filter(conn, request, plan, status, headers, result.length)
        if filtered is None:
            return False
        headers, make_writer = filtered
        trailing = None
        if plan.settings.add_trailers and trailers.expected(plan.settings, request, status):
            trailing = (plan.settings, status)
        writer = make_writer(trailing)
        lines = _header_lines(headers)
        add_headers = static_add_headers(plan, headers)
        if request.method == "HEAD":
            conn.send_head(status, lines, add_headers)
            conn.finish_response()
            return True
        try:
            handle = open(result.path, "rb")
        except OSError:
            conn.send_error(404 if not os.path.exists(result.path) else 403, plan.add_headers)
            return True
        if plan.settings.limit_rate or limit_rate.RATE in (getattr(request, "vars", None) or ()):
            limit_rate.start(conn, request, plan.settings)
        conn.send_head(status, lines, add_headers)
        sender = FileSender(conn, handle, result.offset, result.length)
        sender.writer = writer
        conn.handler = sender
        sender.send()
        return True


class _ServerLocation:
    """Stands in for a location when a request matches none (server-level settings)."""

    modifier = ""
    pattern = "/"

    def __init__(self, settings):
        self.settings = settings


def _checked(plan, settings):
    """``plan`` behind its mirrors (nginx's precontent phase), both behind its checks."""
    if settings.mirrors:
        from gateway.http import mirror     # only configs with mirrors load it
        plan = mirror.wrap(plan, settings)
    return phases.wrap(plan, settings)


def _whole_file(gzip_plan, request, result) -> bool:
    """Whether a file is sent whole whatever Range asks: nginx's gzip and sub filters run
    before its range filter, and a body either of them changes has no ranges."""
    if gzip_plan.sub is not None:
        from gateway.http import sub_filter
        if sub_filter.file_filter(None, request, None, result.status, result.headers,
                                  result.length, gzip_plan.sub) is not None:
            return True
    return gzip.static_decision(gzip_plan, request, result)[0] is not None


def _error_page_status(request, status, headers):
    """The status of an error page's answer.

    nginx's header filter drops Last-Modified unless the status is 200, 206 or 304, and its
    range filter announces Accept-Ranges only on a 200.
    """
    override = errorpages.status_override(request)
    if override is None:
        return status, headers
    headers = headers + errorpages.kept_headers(request)   # an auth_basic challenge
    if override == status:
        return status, headers
    if override not in (200, 206, 304):
        headers = [(k, v) for k, v in headers if k.lower() != "last-modified"]
    if override != 200:
        headers = [(k, v) for k, v in headers if k.lower() != "accept-ranges"]
    return override, headers


def _header_lines(headers) -> bytes:
    return b"".join(b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in headers)


def _walk(locations):
    for location in locations:
        yield location
        yield from _walk(location.children)
