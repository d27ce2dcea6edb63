"""``$secure_link`` and ``$secure_link_expires`` (ngx_http_secure_link_module).

With ``secure_link`` and ``secure_link_md5``: the expression gives "HASH[,EXPIRES]", HASH the
base64url MD5 of the md5 expression; ``$secure_link`` is "1" when they match, "0" when they
match but EXPIRES (seconds since the epoch) has passed, else not found (empty). With
``secure_link_secret``: the URI is "/PREFIX/HEX-MD5/LINK" and ``$secure_link`` is LINK when
HEX-MD5 is the MD5 of LINK followed by the secret.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import time

from gateway.http.variables import compile_template

_BASE64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_EXPIRES = " secure_link_expires"        # where $secure_link leaves the EXPIRES it read
_EXPIRES_READ = " secure_link_expires read"
_VALUE = " secure_link"
_templates: dict = {}


def _render(text: str, request) -> str:
    template = _templates.get(text)
    if template is None:
        template = _templates[text] = compile_template(text)
    return template.render(request)


def secure_link(r) -> str:
    """The variable's getter; kept for the request once read, as nginx caches it."""
    values = getattr(r, "vars", None)
    if values is None:
        values = r.vars = {}
    else:
        found = values.get(_VALUE)
        if found is not None:
            return found
    where = r.location if r.location is not None else r.server
    settings = where.settings if where is not None else None
    if settings is None:
        value = ""
    elif settings.secure_link_secret is not None:
        value = _old(r, settings.secure_link_secret.encode("latin-1"))
    elif settings.secure_link is None or settings.secure_link_md5 is None:
        value = ""
    else:
        value = _checked(r, settings, values)
    values[_VALUE] = value
    return value


def secure_link_expires(r) -> str:
    """The EXPIRES part $secure_link read (when it was a positive number), else empty.

    Kept from its first reading, as nginx caches it: read before $secure_link, it stays empty."""
    values = getattr(r, "vars", None)
    if values is None:
        values = r.vars = {}
    found = values.get(_EXPIRES_READ)
    if found is None:
        found = values[_EXPIRES_READ] = values.get(_EXPIRES, "")
    return found


def _checked(r, settings, values) -> str:
    link = _render(settings.secure_link, r)
    expires = 0
    comma = link.find(",")
    if comma >= 0:
        digits = link[comma + 1:]
        # ngx_atotm: digits only, at least one; 0 (or an overflow) is no link at all.
        if not digits.isdigit() or not digits.isascii() or len(digits) > 19 \
                or int(digits) > 0x7FFFFFFFFFFFFFFF or int(digits) == 0:
            return ""
        expires = int(digits)
        values[_EXPIRES] = digits
        link = link[:comma]
    if len(link) > 24:
        return ""
    digest = _base64url(link.encode("latin-1", "replace"))
    if digest is None or len(digest) != 16:
        return ""
    md5 = hashlib.md5(_render(settings.secure_link_md5, r).encode("latin-1", "replace")).digest()
    if not hmac.compare_digest(digest, md5):
        return ""
    return "0" if expires and expires < int(time.time()) else "1"


def _base64url(text: bytes) -> bytes | None:
    """nginx's ngx_decode_base64url: stops at "=", spare bits ignored, None if malformed."""
    end = text.find(b"=")
    if end >= 0:
        text = text[:end]
    if any(c not in _BASE64URL for c in text) or len(text) % 4 == 1:
        return None
    text = text.replace(b"-", b"+").replace(b"_", b"/")
    try:
        return binascii.a2b_base64(text + b"=" * (-len(text) % 4))
    except binascii.Error:
        return None


def _old(r, secret: bytes) -> str:
    """secure_link_secret: "/PREFIX/HEX-MD5/LINK" of the request line's URI."""
    uri = r.request_uri
    first = uri.find("/", 1)
    if first < 0:
        return ""
    second = uri.find("/", first + 1)
    if second < 0:
        return ""
    hexed, link = uri[first + 1:second], uri[second + 1:]
    if len(hexed) != 32 or not link:
        return ""
    if not all(c in "0123456789abcdefABCDEF" for c in hexed):
        return ""
    expected = bytes.fromhex(hexed)
    md5 = hashlib.md5(link.encode("latin-1", "replace") + secret).digest()
    return link if hmac.compare_digest(expected, md5) else ""
