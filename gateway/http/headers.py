"""Response header edits of nginx's headers module (expires) and of its proxy module
(proxy_hide_header/proxy_pass_header, proxy_redirect, proxy_cookie_domain/_path).

Plans build these once at config load; a location that configures none of them carries
nothing, so a plain proxied response never reaches this module (see ResponseFilter.always).
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_tz, mktime_tz

from gateway.config import headers as config
from gateway.config.proxy_headers import default_rule
from gateway.http import errorpages
from gateway.http.maps import set_captures
from gateway.http.plan import HIDDEN_RESPONSE
from gateway.http.responses import ADD_HEADER_CODES
from gateway.http.static import http_date
from gateway.http.variables import Template, compile_template

EPOCH_VALUES = ("Thu, 01 Jan 1970 00:00:01 GMT", "no-cache")
MAX_VALUES = ("Thu, 31 Dec 2037 23:55:55 GMT", "max-age=315360000")   # 10 years
# Fields nginx never relays whatever proxy_pass_header says (its own framing and hop-by-hop).
NEVER_PASSED = frozenset({b"connection", b"keep-alive", b"transfer-encoding",
                          b"proxy-connection", b"upgrade", b"trailer"})


# expires -------------------------------------------------------------------

def _next_time(seconds: int, now: int) -> int:
    """nginx's ngx_next_time: the next local time of day ``seconds`` after midnight."""
    tm = list(time.localtime(now))
    tm[3], tm[4], tm[5] = seconds // 3600, seconds % 3600 // 60, seconds % 60
    tm[8] = -1
    later = int(time.mktime(tuple(tm)))
    if later - now > 0:
        return later
    tm[2] += 1                       # mktime() normalizes the 32nd of a month
    return int(time.mktime(tuple(tm)))


def expires_values(setting, request, last_modified: int | None):
    """ngx_http_set_expires: the (Expires, Cache-Control) values, None when it sets none."""
    configured = setting
    if setting.template is not None:
        text = setting.template.render(request)
        setting, error = config.parse_value(text, setting.mode == config.MODIFIED)
        if setting is None:
            return None              # "off", or not a valid value: nothing set (nginx)
    mode, seconds = setting.mode, setting.seconds
    if mode == config.EPOCH:
        return EPOCH_VALUES
    if mode == config.MAX:
        return MAX_VALUES
    now = int(time.time())
    if seconds == 0 and mode != config.DAILY:
        return http_date(now), "max-age=0"
    if mode == config.DAILY:
        expires = _next_time(seconds, now)
        max_age = expires - now
    elif mode == config.ACCESS or last_modified is None:
        expires, max_age = now + seconds, seconds
    else:
        expires = last_modified + seconds
        max_age = expires - now
    if configured.seconds < 0 or max_age < 0:
        return http_date(expires), "no-cache"
    return http_date(expires), f"max-age={max_age}"


class ExpiresPlan:
    """A location's expires setting, compiled."""

    __slots__ = ("mode", "seconds", "template")

    def __init__(self, setting):
        self.mode = setting.mode
        self.seconds = setting.seconds
        self.template = compile_template(setting.template) if setting.template else None

    def values(self, request, last_modified: int | None = None):
        return expires_values(self, request, last_modified)

    def add_header_entries(self, last_modified: int | None = None) -> list:
        """Expires and Cache-Control as add_header entries (name, template, always), for
        answers the gateway makes itself (files, return): they carry neither field."""
        def field(index):
            return lambda request: (self.values(request, last_modified) or ("", ""))[index]
        return [(b"Expires", Template("expires", [field(0)]), False),
                (b"Cache-Control", Template("expires", [field(1)]), False)]

    @property
    def uses_last_modified(self) -> bool:
        return self.mode == config.MODIFIED


def parse_http_time(value) -> int | None:
    """A Last-Modified value as seconds since the epoch (ngx_parse_http_time), or None."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    parsed = parsedate_tz(value)
    return None if parsed is None else int(mktime_tz(parsed))


def static_add_headers(plan, headers):
    """The add_header entries for a file answer: expires bound to its Last-Modified."""
    expires = getattr(plan, "expires", None)
    if expires is None or not expires.uses_last_modified:
        return plan.add_headers
    last_modified = next((parse_http_time(v) for k, v in headers
                          if k.lower() == "last-modified"), None)
    own = plan.add_headers[2:]          # the first two are expires' (LocationPlan)
    return expires.add_header_entries(last_modified) + own


# proxy_redirect, proxy_cookie_domain, proxy_cookie_path ---------------------

class Rule:
    """One compiled Rewrite (gateway/config/proxy_headers.py)."""

    __slots__ = ("kind", "pattern", "replacement", "regex")

    def __init__(self, rewrite):
        self.kind = rewrite.kind
        self.pattern = compile_template(rewrite.pattern) if rewrite.kind != "regex" else None
        self.replacement = compile_template(rewrite.replacement)
        self.regex = rewrite.regex

    def apply(self, request, value: str, prefix: int) -> str | None:
        """The value rewritten from ``prefix`` on, None when the rule does not match."""
        if self.kind == "regex":
            match = self.regex.search(value[prefix:])
            if match is None:
                return None
            set_captures(request, match)
            return value[:prefix] + self.replacement.render(request)
        pattern = self.pattern.render(request)
        if self.kind == "domain":
            # ngx_http_proxy_rewrite_domain_handler: the whole domain, caseless, its dot kept.
            if value[prefix:prefix + 1] == ".":
                prefix += 1
            if value[prefix:].lower() != pattern.lower():
                return None
            return value[:prefix] + self.replacement.render(request)
        if not value.startswith(pattern, prefix):
            return None
        return value[:prefix] + self.replacement.render(request) + value[prefix + len(pattern):]


def _first(rules, request, value: str, prefix: int = 0) -> str | None:
    for rule in rules:
        result = rule.apply(request, value, prefix)
        if result is not None:
            return result
    return None


def _parse_cookie(value: str) -> list:
    """ngx_http_proxy_parse_cookie: [name, value or None] per "; " separated part."""
    attrs = []
    for part in value.split(";"):
        part = part.lstrip(" ")
        name, eq, rest = part.partition("=")
        attrs.append([name.rstrip(" "), rest.strip(" ") if eq else None])
    return attrs


_REFRESH_URL = re.compile(r"url=", re.IGNORECASE)

# proxy_cookie_flags' words (ngx_http_proxy_cookie_flags_masks) and their bits.
_SECURE, _NOSECURE, _HTTPONLY, _NOHTTPONLY = 1, 2, 4, 8
_STRICT, _LAX, _NONE, _NOSAMESITE = 16, 32, 64, 128
_FLAG_BITS = {"secure": _SECURE, "nosecure": _NOSECURE, "httponly": _HTTPONLY,
              "nohttponly": _NOHTTPONLY, "samesite=strict": _STRICT, "samesite=lax": _LAX,
              "samesite=none": _NONE, "nosamesite": _NOSAMESITE}
_SAMESITE = ((_STRICT, "strict", "Strict"), (_LAX, "lax", "Lax"), (_NONE, "none", "None"))


class CookieFlagsRule:
    """One proxy_cookie_flags rule, its templates compiled."""

    __slots__ = ("cookie", "regex", "flags")

    def __init__(self, rule):
        self.regex = rule.regex
        self.cookie = compile_template(rule.cookie) if rule.regex is None else None
        self.flags = tuple(compile_template(flag) for flag in rule.flags)

    def matches(self, request, name: str) -> bool:
        if self.regex is not None:
            found = self.regex.search(name)
            if found is not None:
                set_captures(request, found)
            return found is not None
        return self.cookie.render(request).lower() == name.lower()

    def bits(self, request) -> int:
        """The flags' bits; a word nginx does not know is passed over (it logs it at debug)."""
        bits = 0
        for flag in self.flags:
            bits |= _FLAG_BITS.get(flag.render(request).lower(), 0)
        return bits


def _edit_cookie_flags(attrs: list, bits: int) -> None:
    """ngx_http_proxy_edit_cookie_flags on [name, value] pairs: a flag already there is kept
    (SameSite set to the wanted value), a "no..." one is taken out, the others added."""
    for attr in attrs[1:]:
        key = attr[0].lower()
        if key == "secure":
            if bits & _SECURE:
                bits &= ~_SECURE
            elif bits & _NOSECURE:
                attr[0] = None
        elif key == "httponly":
            if bits & _HTTPONLY:
                bits &= ~_HTTPONLY
            elif bits & _NOHTTPONLY:
                attr[0] = None
        elif key == "samesite":
            for bit, word, shown in _SAMESITE:
                if bits & bit:
                    bits &= ~bit
                    if (attr[1] or "").lower() != word:
                        attr[0], attr[1] = "SameSite", shown
                    break
            else:
                if bits & _NOSAMESITE:
                    attr[0] = None
    if bits & _SECURE:
        attrs.append(["Secure", None])
    if bits & _HTTPONLY:
        attrs.append(["HttpOnly", None])
    for bit, _word, shown in _SAMESITE:
        if bits & bit:
            attrs.append(["SameSite", shown])
            break


class ResponseFilter:
    """How one proxy location edits its upstream's response fields.

    ``always``: whether every response goes through ``apply``; when only redirect rules
    are set, only responses that carry Location or Refresh do.
    """

    __slots__ = ("hidden", "passes_server", "passes_date", "expires", "redirects",
                 "cookie_domains", "cookie_paths", "cookie_flags", "always")

    def __init__(self, settings, expires: ExpiresPlan | None, location_name: str | None):
        hides = {n.encode("latin-1") for n in settings.proxy_hide_headers}
        passes = {n.encode("latin-1") for n in settings.proxy_pass_headers} - NEVER_PASSED
        self.hidden = frozenset((HIDDEN_RESPONSE | hides) - passes)
        self.passes_server = b"server" not in self.hidden
        self.passes_date = b"date" not in self.hidden
        self.expires = expires
        redirect = settings.proxy_redirect
        target = settings.proxy_pass
        if redirect == "default":
            # Unset everywhere: nginx's implicit "proxy_redirect default", when it can be made.
            redirect = ()
            if target is not None and not target.has_variables and location_name is not None:
                redirect = (default_rule(target.url, location_name, target.uri),)
        self.redirects = tuple(Rule(r) for r in redirect or ())
        self.cookie_domains = tuple(Rule(r) for r in settings.proxy_cookie_domains or ())
        self.cookie_paths = tuple(Rule(r) for r in settings.proxy_cookie_paths or ())
        self.cookie_flags = tuple(CookieFlagsRule(r) for r in settings.proxy_cookie_flags or ())
        self.always = bool(expires is not None or self.hidden != HIDDEN_RESPONSE
                           or self.cookie_domains or self.cookie_paths or self.cookie_flags)

    @property
    def needed(self) -> bool:
        return self.always or bool(self.redirects)

    def apply(self, request, status: int, headers, absolute_url):
        """(the upstream's ``headers`` (lower, name, value) as relayed, whether our own Server
        line goes out, whether our own Date line does).  Hop-by-hop fields stay in the
        result for the caller's framing checks (it never relays them)."""
        out = []
        hidden = self.hidden
        has_server = has_date = False
        expires_at = control_at = -1
        last_modified = None
        for item in headers:
            lower, name, value = item
            if lower in hidden and lower not in NEVER_PASSED:
                continue
            if lower == b"location" and self.redirects and value:
                rewritten = _first(self.redirects, request, value.decode("latin-1"))
                if rewritten is not None:
                    # nginx's header filter then makes a relative one absolute.
                    item = (lower, name, absolute_url(request, rewritten).encode("latin-1", "replace"))
            elif lower == b"refresh" and self.redirects:
                text = value.decode("latin-1")
                found = _REFRESH_URL.search(text)
                if found is not None:
                    rewritten = _first(self.redirects, request, text, found.end())
                    if rewritten is not None:
                        item = (lower, name, rewritten.encode("latin-1", "replace"))
            elif lower == b"set-cookie" and (self.cookie_domains or self.cookie_paths
                                             or self.cookie_flags):
                rewritten = self._cookie(request, value.decode("latin-1"))
                if rewritten is not None:
                    item = (lower, name, rewritten.encode("latin-1", "replace"))
            elif lower == b"server":
                has_server = True
            elif lower == b"date":
                has_date = True
            elif lower == b"expires":
                expires_at = len(out)       # nginx's headers_out.expires: the last one
            elif lower == b"cache-control":
                if control_at >= 0:
                    if self.expires is not None and status in ADD_HEADER_CODES:
                        continue            # the expires filter clears all but the first
                else:
                    control_at = len(out)
            elif lower == b"last-modified" and last_modified is None:
                last_modified = parse_http_time(value)
            out.append(item)
        if self.expires is not None and status in ADD_HEADER_CODES:
            found = self.expires.values(request, last_modified)
            if found is not None:
                expires, control = (v.encode("latin-1") for v in found)
                if expires_at >= 0:
                    out[expires_at] = out[expires_at][:2] + (expires,)
                else:
                    out.append((b"expires", b"Expires", expires))
                if control_at >= 0:
                    out[control_at] = out[control_at][:2] + (control,)
                else:
                    out.append((b"cache-control", b"Cache-Control", control))
        return out, not has_server, not has_date

    def fields(self, request, status: int, headers, absolute_url):
        """apply() as the relayed lines in one bytes object (the compiled exchange's form)."""
        out, server, date = self.apply(request, status, headers, absolute_url)
        return b"".join([b"%s: %s\r\n" % (name, value) for lower, name, value in out
                         if lower not in NEVER_PASSED]), server, date

    def _cookie(self, request, value: str) -> str | None:
        attrs = _parse_cookie(value)
        if attrs[0][1] is None:
            return None
        changed = False
        for attr in attrs[1:]:
            key = attr[0].lower()
            if attr[1] is None:
                continue
            if key == "domain" and self.cookie_domains:
                new = _first(self.cookie_domains, request, attr[1])
                if new is not None:
                    attr[1], changed = new, True
            elif key == "path" and self.cookie_paths:
                new = _first(self.cookie_paths, request, attr[1])
                if new is not None:
                    attr[1], changed = new, True
        if self.cookie_flags:
            name = attrs[0][0]
            for rule in self.cookie_flags:
                if rule.matches(request, name):
                    bits = rule.bits(request)
                    if bits:
                        _edit_cookie_flags(attrs, bits)
                        changed = True
                    break
        if not changed:
            return None
        return "; ".join(k if v is None else f"{k}={v}" for k, v in attrs if k is not None)


def has_redirect_field(headers) -> bool:
    """Whether an upstream's fields hold Location or Refresh (what proxy_redirect edits)."""
    for lower, _name, _value in headers:
        if lower == b"location" or lower == b"refresh":
            return True
    return False


def keep_challenge(request, headers) -> None:
    """An intercepted 401 keeps the upstream's WWW-Authenticate (nginx does)."""
    for lower, name, value in headers:
        if lower == b"www-authenticate":
            errorpages.keep_header(request, name.decode("latin-1"), value.decode("latin-1"))
            return


def own_lines(server_date: bytes, server: bool, date: bool) -> bytes:
    """Our "Server: ..\\r\\nDate: ..\\r\\n" lines, less those the upstream's replace."""
    if server and date:
        return server_date
    lines = server_date.split(b"\r\n")
    kept = [line + b"\r\n" for line in lines if line and
            ((server and line.startswith(b"Server:")) or (date and line.startswith(b"Date:")))]
    return b"".join(kept)
