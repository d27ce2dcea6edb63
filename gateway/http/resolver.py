"""The name servers of ``resolver``, asked as nginx's resolver asks them (ngx_resolver.c).

Used by ``proxy_pass`` with variables when the rendered host is a name that no ``upstream``
declares (gateway/http/proxy_vars.py).  One UDP socket per name server, connected, read by
the event loop; queries and answers are DNS messages made and parsed by dnspython.  As nginx:

- A and AAAA are asked at once (``ipv4=``/``ipv6=`` turn either off); the addresses are the
  IPv4 ones, then the IPv6 ones; a CNAME without addresses is followed.
- Good answers are kept for the smallest TTL among them, or ``valid=``; failures are not kept.
- Requests for a name being resolved wait for the same queries; each waits at most its
  ``resolver_timeout`` (then ``110: Operation timed out``).
- An unanswered query is sent again every 5 seconds, to the next name server.
- A server's FORMERR or unknown rcode is logged and the query left to time out; NXDOMAIN,
  SERVFAIL, NOTIMP and REFUSED fail the name at once.

Not done: queries over TCP for truncated answers, and IPv6 name servers' scope ids.
"""

from __future__ import annotations

import random
import socket

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from gateway.observe.errorlog import log

TIMEDOUT = 110                 # ETIMEDOUT, as nginx reports a resolver timeout
RESEND_INTERVAL = 5.0          # nginx's r->resend_timeout
CACHE_LIMIT = 4096             # names kept; client input can name many
CNAME_LIMIT = 8                # CNAMEs followed for one name

_ERRORS = {1: "Format error", 2: "Server failure", 3: "Host not found", 4: "Unimplemented",
           5: "Operation refused", TIMEDOUT: "Operation timed out"}


def strerror(code: int) -> str:
    """ngx_resolver_strerror's text for a resolver failure code."""
    return _ERRORS.get(code, "Unknown error")


class _Lookup:
    """A name being resolved: its queries in flight and the requests waiting for it."""

    __slots__ = ("name", "pending", "addresses", "ttl", "code", "waiters", "server",
                 "resend", "cnames")

    def __init__(self, name: str):
        self.name = name
        self.pending: dict[int, tuple] = {}     # query id -> (record type, wire, asked name)
        self.addresses: dict[int, list] = {}    # record type -> addresses, once answered
        self.ttl: float | None = None
        self.code = 0                           # the last failure's code
        self.waiters: list[_Waiter] = []
        self.server = 0
        self.resend = None
        self.cnames = 0


class _Waiter:
    """One request waiting for a name: cancel() when its client goes away."""

    __slots__ = ("resolver", "lookup", "callback", "timer")

    def __init__(self, resolver, lookup, callback, timeout):
        self.resolver = resolver
        self.lookup = lookup
        self.callback = callback
        self.timer = resolver.loop.call_later(timeout, self._timed_out)

    def _timed_out(self):
        self.fail(TIMEDOUT)

    def fail(self, code: int):
        self.cancel()
        self.callback(None, code)

    def cancel(self):
        self.timer.cancel()
        lookup = self.lookup
        if self in lookup.waiters:
            lookup.waiters.remove(self)
            if not lookup.waiters:
                self.resolver._forget(lookup)


class Resolver:
    """The runtime of one ``resolver`` line in one worker."""

    def __init__(self, config, loop):
        self.config = config
        self.loop = loop
        self.types = ([dns.rdatatype.A] if config.ipv4 else []) + \
            ([dns.rdatatype.AAAA] if config.ipv6 else [])
        self.sockets: list = [None] * len(config.servers)
        self.cache: dict[str, tuple[float, list]] = {}
        self.lookups: dict[str, _Lookup] = {}
        self.queries: dict[int, _Lookup] = {}
        self.next_server = 0
        # (name, port, addresses) -> UpstreamRuntime, made by gateway/http/proxy_vars.py.
        self.upstreams: dict = {}

    def cached(self, name: str) -> list | None:
        """The addresses of ``name`` while its answer is valid, else None."""
        entry = self.cache.get(name.lower())
        if entry is None:
            return None
        if entry[0] < self.loop.time():
            del self.cache[name.lower()]
            return None
        return entry[1]

    def resolve(self, name: str, timeout: float, callback) -> _Waiter:
        """Ask for ``name``; ``callback(addresses, 0)`` or ``callback(None, code)`` follows
        (never from inside this call). Returns the waiter, to cancel."""
        name = name.lower()
        lookup = self.lookups.get(name)
        if lookup is None:
            lookup = _Lookup(name)
            try:
                for rdtype in self.types:
                    self._query(lookup, name, rdtype)
            except (dns.exception.DNSException, ValueError):    # not a name DNS can carry
                self._forget(lookup)
                waiter = _Waiter(self, lookup, callback, timeout)
                self.loop.call_soon(waiter.fail, dns.rcode.FORMERR)
                return waiter
            self.lookups[name] = lookup
            lookup.server = self.next_server
            self.next_server = (self.next_server + 1) % len(self.config.servers)
            if not self._send_all(lookup):      # as nginx: the next server at once, once
                lookup.server = (lookup.server + 1) % len(self.config.servers)
                self._send_all(lookup)
        waiter = _Waiter(self, lookup, callback, timeout)
        lookup.waiters.append(waiter)
        return waiter

    def close(self):
        for index, sock in enumerate(self.sockets):
            if sock is not None:
                self.loop.remove_reader(sock.fileno())
                sock.close()
                self.sockets[index] = None
        for lookup in list(self.lookups.values()):
            for waiter in list(lookup.waiters):
                waiter.cancel()

    # Queries -------------------------------------------------------------------

    def _query(self, lookup: _Lookup, asked: str, rdtype) -> None:
        message = dns.message.make_query(asked, rdtype)
        ident = random.getrandbits(16)
        while ident in self.queries:
            ident = random.getrandbits(16)
        message.id = ident
        lookup.pending[ident] = (rdtype, message.to_wire(), dns.name.from_text(asked))
        self.queries[ident] = lookup

    def _send_all(self, lookup: _Lookup) -> bool:
        """Send every query of ``lookup`` to its server; again in 5 s, to the next one.
        False when the server could not be sent to."""
        sent = False
        sock = self._socket(lookup.server)
        if sock is not None:
            try:
                for _, wire, _ in lookup.pending.values():
                    sock.send(wire)
                sent = True
            except OSError as exc:      # full, or refused earlier: the resend tries again
                log.error(f"send() failed ({exc.errno}: {exc.strerror}) while resolving, "
                          f"resolver: {_show(self.config.servers[lookup.server])}")
        if lookup.resend is not None:
            lookup.resend.cancel()
        lookup.resend = self.loop.call_later(RESEND_INTERVAL, self._resend, lookup)
        return sent

    def _resend(self, lookup: _Lookup) -> None:
        lookup.resend = None
        if self.lookups.get(lookup.name) is lookup and lookup.pending:
            lookup.server = (lookup.server + 1) % len(self.config.servers)
            self._send_all(lookup)

    def _socket(self, index: int):
        sock = self.sockets[index]
        if sock is None:
            address, port = self.config.servers[index]
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.connect((address, port))
            except OSError as exc:
                sock.close()
                log.error(f"connect() failed ({exc.errno}: {exc.strerror}), "
                          f"resolver: {_show((address, port))}")
                return None
            self.loop.add_reader(sock.fileno(), self._readable, sock)
            self.sockets[index] = sock
        return sock

    def _forget(self, lookup: _Lookup) -> None:
        """No request waits any more: the lookup's queries are dropped (late answers ignored)."""
        if self.lookups.get(lookup.name) is lookup:
            del self.lookups[lookup.name]
        for ident in lookup.pending:
            self.queries.pop(ident, None)
        lookup.pending.clear()
        if lookup.resend is not None:
            lookup.resend.cancel()
            lookup.resend = None

    # Answers -------------------------------------------------------------------

    def _readable(self, sock) -> None:
        for _ in range(64):
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:     # ICMP port unreachable and the like: the resend tries again
                return
            self._answer(data)

    def _answer(self, data: bytes) -> None:
        try:
            message = dns.message.from_wire(data)
        except (dns.exception.DNSException, ValueError):
            log.error("invalid DNS response")
            return
        lookup = self.queries.get(message.id)
        if lookup is None or not message.flags & dns.flags.QR:
            log.error(f"unexpected DNS response for query id:{message.id}")
            return
        rdtype, _, asked = lookup.pending[message.id]
        question = message.question
        if len(question) != 1 or question[0].rdtype != rdtype or question[0].name != asked:
            log.error(f"unexpected DNS response for query id:{message.id}")
            return
        code = message.rcode()
        if code == dns.rcode.FORMERR or code > dns.rcode.REFUSED:
            log.error(f"DNS error ({code}: {strerror(code)}), query id:{message.id}, "
                      f'name:"{lookup.name}"')
            return      # as nginx: the query is left to time out
        del lookup.pending[message.id]
        del self.queries[message.id]
        addresses, ttl, cname = [], None, None
        if not code:
            for rrset in message.answer:
                if rrset.rdtype == rdtype:
                    addresses.extend(rdata.address for rdata in rrset)
                    ttl = rrset.ttl if ttl is None else min(ttl, rrset.ttl)
                elif rrset.rdtype == dns.rdatatype.CNAME and rrset.name == asked:
                    cname = rrset[0].target
            if not addresses and cname is not None and lookup.cnames < CNAME_LIMIT:
                lookup.cnames += 1
                self._query(lookup, cname.to_text(omit_final_dot=True), rdtype)
                self._send_all(lookup)
                return
        if addresses:
            lookup.addresses[rdtype] = addresses
            lookup.ttl = ttl if lookup.ttl is None else min(lookup.ttl, ttl)
        else:
            lookup.code = code or dns.rcode.NXDOMAIN
        if not lookup.pending:
            self._done(lookup)

    def _done(self, lookup: _Lookup) -> None:
        found = [a for rdtype in self.types for a in lookup.addresses.get(rdtype, ())]
        waiters = list(lookup.waiters)
        lookup.waiters.clear()
        self._forget(lookup)
        if found:
            valid = self.config.valid or lookup.ttl or 0
            if len(self.cache) >= CACHE_LIMIT:
                self._trim()
            self.cache[lookup.name] = (self.loop.time() + valid, found)
        for waiter in waiters:
            waiter.timer.cancel()
            waiter.callback(found or None, 0 if found else lookup.code)

    def _trim(self) -> None:
        now = self.loop.time()
        for name in [n for n, (expires, _) in self.cache.items() if expires < now]:
            del self.cache[name]
        while len(self.cache) >= CACHE_LIMIT:
            del self.cache[next(iter(self.cache))]


def _show(server: tuple[str, int]) -> str:
    address, port = server
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
