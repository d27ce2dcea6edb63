"""The proxy_ssl_* directives that shape the upstream TLS context (ngx_http_proxy_module).

Each is inherited on its own, as nginx merges them field by field; the context is built
for a location with ``proxy_pass https://...`` (ProxyBuilder._upstream_tls), so a file
that cannot be loaded fails there, as nginx's ngx_http_proxy_set_ssl does at merge time.
"""

from __future__ import annotations

from gateway.config import values
from gateway.config.parser import Directive
from gateway.errors import ConfigError
from gateway.config.tls import TLS_PROTOCOLS

DIRECTIVES = frozenset({
    "proxy_ssl_certificate", "proxy_ssl_certificate_key", "proxy_ssl_password_file",
    "proxy_ssl_ciphers", "proxy_ssl_protocols", "proxy_ssl_crl", "proxy_ssl_verify_depth",
})
_PATHS = {"proxy_ssl_certificate", "proxy_ssl_certificate_key", "proxy_ssl_crl"}


def read(d: Directive, own: dict, full_path, warnings: list[str]) -> None:
    """Put one directive's value in ``own``; ``full_path`` makes a name absolute (conf prefix)."""
    a, f, ln, n = d.args, d.file, d.line, d.name
    if n in _PATHS:
        if "$" in a[0] and n != "proxy_ssl_crl":
            # nginx loads such a pair for each request.
            raise ConfigError(f'"{n}" with variables is not supported by this gateway', f, ln)
        own[n] = full_path(a[0])
    elif n == "proxy_ssl_password_file":
        own["proxy_ssl_passwords"] = read_passwords(full_path(a[0]), f, ln)
    elif n == "proxy_ssl_ciphers":
        own[n] = a[0]
    elif n == "proxy_ssl_protocols":
        for v in a:
            if v not in TLS_PROTOCOLS:
                raise ConfigError(f'invalid value "{v}"', f, ln)
        # nginx's bitmask slot: a repeated directive adds its versions.
        own[n] = tuple(dict.fromkeys((*own.get(n, ()), *a)))
    elif n == "proxy_ssl_verify_depth":
        values.number(n, a[0], f, ln)
        # Python's ssl cannot set SSL_CTX_set_verify_depth: chains of any length are verified.
        warnings.append(f'"{n}" directive is accepted but not acted on in {f}:{ln}')


def read_passwords(path: str, file: str, line: int) -> tuple[bytes, ...]:
    """A password file's pass phrases, one a line, tried in order (ngx_ssl_read_password_file)."""
    try:
        with open(path, "rb") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(f'open() "{path}" failed ({exc.errno}: {exc.strerror})',
                          file, line) from None
    lines = [ln[:-1] if ln.endswith(b"\r") else ln for ln in text.split(b"\n")]
    # nginx skips empty lines; a file without any gives one empty pass phrase.
    return tuple(ln for ln in lines if ln) or (b"",)
