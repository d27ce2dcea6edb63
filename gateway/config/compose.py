"""Building `unikernel_auth`, `unikernel_cache` and `unikernel_body`: the parts of a request that
unikernel pools work on, concurrently, before the location's content handler runs.

    unikernel_auth  POOL [token=TEMPLATE] [fail=closed|open] [timeout=T] [set_header NAME=CLAIM ...];
    unikernel_cache POOL [key=TEMPLATE] [ttl=T] [methods=GET,HEAD] [max_size=SIZE]
                         [fail=bypass|closed] [timeout=T];
    unikernel_body  POOL [signature=TEMPLATE] [fail=closed|open] [timeout=T];
    unikernel_auth off;     (likewise for the others: switches off an inherited part)
"""

from __future__ import annotations

import re

from gateway.config import values
from gateway.config.model import AuthPart, BodyPart, CachePart
from gateway.errors import ConfigError
from gateway.unikernel.wire import MAX_PAYLOAD

# A field name (RFC 9110 token) and a claim name we pass on.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_METHOD = re.compile(r"^[A-Z]+$")
# Room in a kv value for the entry's own header (status, time, Vary) next to head and body.
_ENTRY_OVERHEAD = 4096
# Stored entries travel as one kv value: a key and its header share the 1 MiB payload.
MAX_CACHE_SIZE = MAX_PAYLOAD - _ENTRY_OVERHEAD


def build_part(d, compile_template):
    """The AuthPart, CachePart or BodyPart of one directive, or None for `off`."""
    args, f, ln = d.args, d.file, d.line
    if args[0] == "off":
        if len(args) > 1:
            raise ConfigError(f'invalid number of arguments in "{d.name}" directive', f, ln)
        return None
    if "=" in args[0]:
        raise ConfigError(f'invalid pool name "{args[0]}" in "{d.name}" directive', f, ln)
    build = {"unikernel_auth": _auth, "unikernel_cache": _cache, "unikernel_body": _body}[d.name]
    return build(d, compile_template)


def _options(d, allowed, compile_template, tail=None):
    """KEY=VALUE arguments after the pool name; `tail` names a keyword that takes the rest."""
    opts, rest = {}, []
    args = d.args[1:]
    for i, arg in enumerate(args):
        if tail is not None and arg == tail:
            rest = args[i + 1:]
            if not rest:
                raise ConfigError(f'invalid number of arguments in "{d.name}" directive', d.file, d.line)
            break
        key, eq, value = arg.partition("=")
        if not eq or key not in allowed or key in opts:
            raise ConfigError(f'invalid parameter "{arg}"', d.file, d.line)
        opts[key] = value
    for key in ("token", "key", "signature"):
        if key in opts:
            compile_template(opts[key], d.file, d.line)
    return opts, rest


def _fail(d, opts, choices, default):
    value = opts.get("fail", default)
    if value not in choices:
        raise ConfigError(f'invalid value "fail={value}" in "{d.name}" directive', d.file, d.line)
    return value


def _time(d, opts, default):
    if "timeout" not in opts:
        return default
    seconds = values.parse_time(opts["timeout"], long_units=False)
    if not seconds:
        raise ConfigError(f'invalid value "timeout={opts["timeout"]}" in "{d.name}" directive',
                          d.file, d.line)
    return seconds


def _auth(d, compile_template):
    opts, rest = _options(d, {"token", "fail", "timeout"}, compile_template, tail="set_header")
    claims = []
    for arg in rest:
        name, eq, claim = arg.partition("=")
        if not eq or not _TOKEN.match(name) or not _TOKEN.match(claim):
            raise ConfigError(f'invalid parameter "{arg}"', d.file, d.line)
        claims.append((name, claim))
    return AuthPart(d.args[0], token=opts.get("token", AuthPart.token), claim_headers=claims,
                    fail=_fail(d, opts, ("closed", "open"), "closed"),
                    timeout=_time(d, opts, AuthPart.timeout), file=d.file, line=d.line)


def _cache(d, compile_template):
    opts, _ = _options(d, {"key", "ttl", "methods", "max_size", "fail", "timeout"}, compile_template)
    part = CachePart(d.args[0], file=d.file, line=d.line)
    part.key = opts.get("key", part.key)
    if "ttl" in opts:
        ttl = values.parse_time(opts["ttl"])
        if ttl is None or ttl < 1:
            raise ConfigError(f'invalid value "ttl={opts["ttl"]}" in "{d.name}" directive', d.file, d.line)
        part.ttl = ttl
    if "methods" in opts:
        methods = frozenset(m for m in opts["methods"].split(",") if m)
        if not methods or not all(_METHOD.match(m) for m in methods) or not methods <= {"GET", "HEAD"}:
            # Only a GET's answer is stored, and a HEAD is answered from it: other methods change state.
            raise ConfigError(f'invalid value "methods={opts["methods"]}" in "{d.name}" directive',
                              d.file, d.line)
        part.methods = methods
    if "max_size" in opts:
        size = values.parse_size(opts["max_size"])
        if not size or size > MAX_CACHE_SIZE:
            raise ConfigError(f'invalid value "max_size={opts["max_size"]}" in "{d.name}" directive '
                              f'(at most {MAX_CACHE_SIZE} bytes)', d.file, d.line)
        part.max_size = size
    part.fail = _fail(d, opts, ("bypass", "closed"), "bypass")
    part.timeout = _time(d, opts, part.timeout)
    return part


def _body(d, compile_template):
    opts, _ = _options(d, {"signature", "fail", "timeout"}, compile_template)
    return BodyPart(d.args[0], signature=opts.get("signature", BodyPart.signature),
                    fail=_fail(d, opts, ("closed", "open"), "closed"),
                    timeout=_time(d, opts, BodyPart.timeout), file=d.file, line=d.line)


# The service each part speaks to, by the stem of the pool's image.
_SERVICE = {"unikernel_auth": "auth", "unikernel_cache": "kv", "unikernel_body": "webhook"}


def check_pool(directive, part, pools):
    """Once every pool is known: the part's pool exists, runs the right service, and shards keys."""
    pool = pools.get(part.pool)
    if pool is None:
        raise ConfigError(f'host not found in unikernel "{part.pool}"', part.file, part.line)
    service = _SERVICE[directive]
    stem = pool.image.rsplit("/", 1)[-1].split(".", 1)[0]
    if stem != service:
        raise ConfigError(f'"{directive}" needs a unikernel running "{service}", but "{part.pool}" '
                          f'runs "{stem}"', part.file, part.line)
    if directive == "unikernel_cache" and pool.balance.method != "hash" and pool.max_instances > 1:
        # Each entry lives on one instance: without a hash every lookup could ask another one.
        raise ConfigError(f'"{directive}" needs "balance hash $request_uri consistent;" in unikernel '
                          f'"{part.pool}"', part.file, part.line)
