"""The proxy module's header directives (ngx_http_proxy_module): which upstream fields are
hidden or passed, how Location, Refresh and Set-Cookie are rewritten, what the request line,
fields and body sent upstream become, and proxy_intercept_errors; read in nginx's wording."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import maps, values
from gateway.config.parser import Directive
from gateway.errors import ConfigError

DIRECTIVES = frozenset({
    "proxy_hide_header", "proxy_pass_header", "proxy_ignore_headers", "proxy_redirect",
    "proxy_cookie_domain", "proxy_cookie_path", "proxy_cookie_flags", "proxy_method",
    "proxy_pass_request_headers",
    "proxy_set_body", "proxy_intercept_errors"})

# proxy_ignore_headers' words (nginx's ngx_http_upstream_ignore_headers_masks), lowercase.
IGNORABLE = ("x-accel-redirect", "x-accel-expires", "x-accel-limit-rate", "x-accel-buffering",
             "x-accel-charset", "expires", "cache-control", "set-cookie", "vary")

# Settings that make a location's proxied responses go through headers.ResponseFilter.
FILTER_SETTINGS = ("expires", "proxy_hide_headers", "proxy_pass_headers",
                   "proxy_cookie_domains", "proxy_cookie_paths", "proxy_cookie_flags")


@dataclass(frozen=True)
class Rewrite:
    """One proxy_redirect / proxy_cookie_domain / proxy_cookie_path rule.

    ``kind``: "prefix" (a template compared with the start of the value), "domain" (a
    template equal to the whole domain, without its leading dot), "regex" (``regex``
    searched in the value, which is replaced whole).
    """

    kind: str
    pattern: str
    replacement: str
    regex: object = None


def read(d: Directive, own: dict, warnings: list, compile_template) -> None:
    """Put one proxy header directive's value in ``own`` (LocationSettings fields)."""
    a, f, ln, n = d.args, d.file, d.line, d.name
    if n in ("proxy_hide_header", "proxy_pass_header"):
        key = n + "s"
        own[key] = own.get(key, ()) + (a[0].lower(),)
    elif n == "proxy_ignore_headers":
        seen = set(own.get(n, ()))
        for word in a:
            lower = word.lower()
            if lower not in IGNORABLE:
                raise ConfigError(f'invalid value "{word}"', f, ln)
            if lower in seen:
                warnings.append(f'duplicate value "{word}" in {f}:{ln}')
            seen.add(lower)
        own[n] = frozenset(seen)
    elif n == "proxy_redirect":
        _redirect(d, own, compile_template)
    elif n in ("proxy_cookie_domain", "proxy_cookie_path"):
        _cookie(d, own, compile_template)
    elif n == "proxy_cookie_flags":
        _cookie_flags(d, own, compile_template)
    elif n in ("proxy_method", "proxy_set_body"):
        compile_template(a[0], f, ln)
        own[n] = a[0]
    elif n in ("proxy_pass_request_headers", "proxy_intercept_errors"):
        own[n] = values.flag(a[0])


def _rule(d: Directive, compile_template, domain: bool) -> Rewrite:
    a, f, ln = d.args, d.file, d.line
    pattern, replacement = a
    if pattern.startswith("~"):
        caseless = pattern.startswith("~*")
        text = pattern[2:] if caseless else pattern[1:]
        compile_template(replacement, f, ln)
        return Rewrite("regex", text, replacement, maps.regex(text, caseless, f, ln))
    if domain:
        # ngx_http_proxy_cookie_domain: a leading dot is no part of either domain.
        pattern = pattern[1:] if pattern.startswith(".") else pattern
        replacement = replacement[1:] if replacement.startswith(".") else replacement
    compile_template(pattern, f, ln)
    compile_template(replacement, f, ln)
    return Rewrite("domain" if domain else "prefix", pattern, replacement)


def _redirect(d: Directive, own: dict, compile_template) -> None:
    """ngx_http_proxy_redirect: "off", "default" (after proxy_pass), or a rule."""
    a, f, ln = d.args, d.file, d.line
    rules = own.get("proxy_redirect", ())
    if rules is None or (a == ["off"] and rules):
        raise ConfigError('"proxy_redirect" directive is duplicate', f, ln)
    if a == ["off"]:
        own["proxy_redirect"] = None
        return
    if len(a) == 1 and a[0] != "default":
        raise ConfigError(f'invalid parameter "{a[0]}"', f, ln)
    if len(a) == 1:
        proxy_pass = own.get("proxy_pass")
        if proxy_pass is not None and "$" in proxy_pass.args[0]:
            raise ConfigError('"proxy_redirect default" cannot be used with "proxy_pass" '
                              'directive with variables', f, ln)
        if proxy_pass is None:
            raise ConfigError('"proxy_redirect default" should be placed after the '
                              '"proxy_pass" directive', f, ln)
        rule = Rewrite("default", proxy_pass.args[0], "")   # made whole by resolve_default
    else:
        rule = _rule(d, compile_template, False)
    own["proxy_redirect"] = rules + (rule,)


def _cookie(d: Directive, own: dict, compile_template) -> None:
    """ngx_http_proxy_cookie_domain / _path: "off" or a rule."""
    a, f, ln, n = d.args, d.file, d.line, d.name
    key = n + "s"
    rules = own.get(key, ())
    if rules is None or (a == ["off"] and rules):
        raise ConfigError(f'"{n}" directive is duplicate', f, ln)
    if len(a) == 1:
        if a[0] != "off":
            raise ConfigError(f'invalid parameter "{a[0]}"', f, ln)
        own[key] = None
        return
    own[key] = rules + (_rule(d, compile_template, n == "proxy_cookie_domain"),)


@dataclass(frozen=True)
class CookieFlags:
    """One proxy_cookie_flags rule: the cookie (a template compared caseless with its name, or
    a caseless ``regex`` searched in it) and its flag templates (secure, nosecure, httponly,
    nohttponly, samesite=strict|lax|none, nosamesite), read per response."""

    cookie: str
    flags: tuple
    regex: object = None


def _cookie_flags(d: Directive, own: dict, compile_template) -> None:
    """ngx_http_proxy_cookie_flags: "off" or a cookie and up to three flags."""
    a, f, ln = d.args, d.file, d.line
    rules = own.get("proxy_cookie_flags", ())
    if rules is None:
        raise ConfigError('"proxy_cookie_flags" directive is duplicate', f, ln)
    if len(a) == 1:
        if a[0] != "off":
            raise ConfigError(f'invalid parameter "{a[0]}"', f, ln)
        if rules:
            raise ConfigError('"proxy_cookie_flags" directive is duplicate', f, ln)
        own["proxy_cookie_flags"] = None
        return
    cookie, regex = a[0], None
    if cookie.startswith("~"):
        cookie = cookie[1:]
        regex = maps.regex(cookie, True, f, ln)
    else:
        compile_template(cookie, f, ln)
    for flag in a[1:]:
        compile_template(flag, f, ln)
    own["proxy_cookie_flags"] = rules + (CookieFlags(cookie, tuple(a[1:]), regex),)


def default_rule(url: str, location_name: str, uri: str | None) -> Rewrite:
    """nginx's "proxy_redirect default" for ``proxy_pass url`` in ``location location_name``."""
    if uri:
        return Rewrite("prefix", url, location_name)
    return Rewrite("prefix", url + "/", "/")


def resolve_default(own: dict, location_name: str, proxy_pass_uri) -> None:
    """Make this level's "proxy_redirect default" rules whole, with its location's name."""
    rules = own.get("proxy_redirect")
    if not rules:
        return
    own["proxy_redirect"] = tuple(
        default_rule(r.pattern, location_name, proxy_pass_uri(r.pattern))
        if r.kind == "default" else r for r in rules)
