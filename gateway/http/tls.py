"""TLS termination: server contexts from the ssl_* settings, SNI, and the $ssl_* values.

Contexts are built by the config builder in the master, so a missing or mismatched
certificate fails ``-t`` and a reload, and every reload reads the files again; workers
inherit them when they are forked (before they drop privileges, as nginx's do).
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import warnings

from gateway.errors import ConfigError

# nginx's protocol names, oldest first.  SSLv2 is accepted and never enabled (OpenSSL
# has no SSLv2); SSLv3, TLSv1 and TLSv1.1 also need OpenSSL's security level to allow them.
PROTOCOLS = {
    "SSLv2": None,
    "SSLv3": ssl.TLSVersion.SSLv3,
    "TLSv1": ssl.TLSVersion.TLSv1,
    "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}
# The option that turns off one version inside the [minimum, maximum] range.
_GAP_OPTIONS = {
    ssl.TLSVersion.SSLv3: ssl.OP_NO_SSLv3,
    ssl.TLSVersion.TLSv1: ssl.OP_NO_TLSv1,
    ssl.TLSVersion.TLSv1_1: ssl.OP_NO_TLSv1_1,
    ssl.TLSVersion.TLSv1_2: ssl.OP_NO_TLSv1_2,
    ssl.TLSVersion.TLSv1_3: ssl.OP_NO_TLSv1_3,
}
ALPN = ["http/1.1"]
H2_ALPN = ["h2", "http/1.1"]      # on sockets that speak HTTP/2 (gateway/config/http2.py)
# Where the SNI callback leaves the name the client asked for ($ssl_server_name):
# the server side of Python's SSLObject does not keep it.
SNI_ATTRIBUTE = "gateway_server_name"


def _reason(exc: Exception) -> str:
    if isinstance(exc, ssl.SSLError):
        text = str(exc.reason or (exc.args[1] if len(exc.args) > 1 else exc))
        text = re.sub(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$", "", text)
        return "SSL: " + text.lower().replace("_", " ")
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def _readable(path: str, what: str, file, line) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise ConfigError(f'cannot load {what} "{path}": BIO_new_file() failed '
                          f"({_reason(exc)})", file, line) from None


def _NO_PASSWORD() -> bytes:
    return b""


def _load_pair(ctx: ssl.SSLContext, cert, passwords=None) -> None:
    """One certificate (chain) and its key, with nginx's messages for each failure;
    ``passwords`` (a password file's lines) are tried in order on an encrypted key."""
    pem = _readable(cert.cert, "certificate", cert.file, cert.line)
    if b"-----BEGIN CERTIFICATE-----" not in pem and \
            b"-----BEGIN TRUSTED CERTIFICATE-----" not in pem:
        raise ConfigError(f'cannot load certificate "{cert.cert}": PEM_read_bio_X509_AUX() '
                          "failed (SSL: no start line)", cert.file, cert.line)
    key_pem = _readable(cert.key, "certificate key", cert.key_file, cert.key_line)
    if b"PRIVATE KEY-----" not in key_pem:
        raise ConfigError(f'cannot load certificate key "{cert.key}": '
                          "PEM_read_bio_PrivateKey() failed (SSL: unsupported)",
                          cert.key_file, cert.key_line)
    try:
        if passwords:
            _load_with_passwords(ctx, cert, passwords)
        else:
            # No password file: an encrypted key fails here instead of OpenSSL prompting
            # on a terminal that a daemon (or a reload) does not have.
            ctx.load_cert_chain(cert.cert, cert.key, password=_NO_PASSWORD)
    except ssl.SSLError as exc:
        if "MISMATCH" in (exc.reason or ""):
            raise ConfigError(f'SSL_CTX_use_PrivateKey("{cert.key}") failed '
                              f"({_reason(exc)})", cert.key_file, cert.key_line) from None
        raise ConfigError(f'cannot load certificate key "{cert.key}": '
                          f"PEM_read_bio_PrivateKey() failed ({_reason(exc)})",
                          cert.key_file, cert.key_line) from None
    except OSError as exc:   # the file went away between the two reads
        raise ConfigError(f'cannot load certificate "{cert.cert}": BIO_new_file() failed '
                          f"({_reason(exc)})", cert.file, cert.line) from None


def _load_with_passwords(ctx: ssl.SSLContext, cert, passwords) -> None:
    # nginx's ngx_ssl_load_certificate_key: the next pass phrase after a failed one.
    for password in passwords[:-1]:
        try:
            ctx.load_cert_chain(cert.cert, cert.key, password=password)
            return
        except ssl.SSLError:
            continue
    ctx.load_cert_chain(cert.cert, cert.key, password=passwords[-1])


def _where(tls, name: str) -> tuple:
    return tls.lines.get(name, (None, None))


def _set_protocols(ctx: ssl.SSLContext, names) -> None:
    versions = sorted(v for v in (PROTOCOLS[n] for n in names) if v is not None)
    if not versions:
        versions = [ssl.TLSVersion.TLSv1_2]   # "ssl_protocols SSLv2": nothing OpenSSL offers
    low, high = versions[0], versions[-1]
    with warnings.catch_warnings():
        # Python deprecates the old versions and the OP_NO_* options; nginx still takes them.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = low
        ctx.maximum_version = high
        for version, option in _GAP_OPTIONS.items():
            if low < version < high and version not in versions:
                ctx.options |= option


def server_context(tls) -> ssl.SSLContext:
    """An SSLContext for a server's ``Tls`` settings; ConfigError in nginx's wording."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    for cert in tls.certificates:
        _load_pair(ctx, cert)
    _set_protocols(ctx, tls.protocols)
    try:
        ctx.set_ciphers(tls.ciphers)
    except ssl.SSLError:
        raise ConfigError(f'SSL_CTX_set_cipher_list("{tls.ciphers}") failed '
                          "(SSL: no cipher match)", *_where(tls, "ssl_ciphers")) from None
    # Python prefers the server's order by default; nginx only with ssl_prefer_server_ciphers.
    if tls.prefer_server_ciphers:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if not tls.session_tickets:
        ctx.options |= ssl.OP_NO_TICKET
    if tls.dhparam is not None:
        if not os.access(tls.dhparam, os.R_OK):
            raise ConfigError(f'BIO_new_file("{tls.dhparam}") failed '
                              f"({os.strerror(2)})", *_where(tls, "ssl_dhparam"))
        try:
            ctx.load_dh_params(tls.dhparam)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f'PEM_read_bio_DHparams("{tls.dhparam}") failed '
                              f"({_reason(exc)})", *_where(tls, "ssl_dhparam")) from None
    if tls.ecdh_curve != "auto" and ":" not in tls.ecdh_curve:
        try:
            ctx.set_ecdh_curve(tls.ecdh_curve)
        except (ValueError, ssl.SSLError):
            raise ConfigError(f'SSL_CTX_set1_curves_list("{tls.ecdh_curve}") failed '
                              "(SSL: passed invalid argument)",
                              *_where(tls, "ssl_ecdh_curve")) from None
    if tls.verify or tls.trusted_certificate or tls.crl:
        from gateway.http import client_cert
        client_cert.configure(ctx, tls)
    ctx.set_alpn_protocols(ALPN)
    return ctx


def settings_key(tls) -> tuple:
    """Servers whose settings have equal keys can share one context."""
    return (tuple((c.cert, c.key) for c in tls.certificates), tuple(tls.protocols), tls.ciphers,
            tls.prefer_server_ciphers, tls.session_tickets, tls.dhparam, tls.ecdh_curve,
            tls.verify, tls.verify_depth, tls.client_certificate, tls.trusted_certificate,
            tls.crl)


def select_by_sni(ctx: ssl.SSLContext, router, listen_key, default, http2=False) -> None:
    """Let the name a client asks for pick the server's certificate on this socket.

    nginx's ngx_http_ssl_servername: the server is found by server_name as for Host;
    one without certificates of its own keeps the default server's.  The protocols and
    options stay those of the socket's default server, as in nginx.
    """
    def choose(ssl_object, server_name, _context):
        if not server_name:
            return None
        setattr(ssl_object, SNI_ATTRIBUTE, server_name)
        server = router.select(listen_key, server_name)
        chosen = server.tls.h2_context if http2 else server.tls.context
        if server is not default and chosen is not None:
            ssl_object.context = chosen
            if server.tls.verify or default.tls.verify:
                from gateway.http import client_cert
                client_cert.follow(ssl_object, chosen)
        return None

    ctx.sni_callback = choose


# $ssl_* and $https (variables.py): read from the connection's SSLObject, None on plain HTTP.

def https(r) -> str:
    return "on" if r.ssl_object is not None else ""


def ssl_protocol(r) -> str:
    return (r.ssl_object.version() or "") if r.ssl_object is not None else ""


def ssl_cipher(r) -> str:
    if r.ssl_object is None:
        return ""
    cipher = r.ssl_object.cipher()
    return cipher[0] if cipher else ""


def ssl_server_name(r) -> str:
    return getattr(r.ssl_object, SNI_ATTRIBUTE, "") if r.ssl_object is not None else ""


def ssl_session_reused(r) -> str:
    if r.ssl_object is None:
        return ""
    return "r" if r.ssl_object.session_reused else "."


# Upstream TLS: proxy_pass https://... ----------------------------------------------------

UPSTREAM_PROTOCOLS = ("TLSv1.2", "TLSv1.3")   # nginx 1.27.3's proxy_ssl_protocols


def client_context(verify: bool, trusted: str | None, file=None, line=None, *,
                   protocols=UPSTREAM_PROTOCOLS, ciphers: str = "DEFAULT", certificate=None,
                   passwords=None, crl: str | None = None) -> ssl.SSLContext:
    """The context of connections to https upstreams; names are checked by UpstreamTls.

    Built in nginx's order (ngx_http_proxy_set_ssl), so the first bad setting is the one
    reported: protocols, ciphers, the client certificate, the trusted CAs, the CRL.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False     # nginx checks proxy_ssl_name even without SNI: done below
    ctx.verify_mode = ssl.CERT_REQUIRED if verify else ssl.CERT_NONE
    _set_protocols(ctx, protocols)
    try:
        ctx.set_ciphers(ciphers)
    except ssl.SSLError:
        raise ConfigError(f'SSL_CTX_set_cipher_list("{ciphers}") failed '
                          "(SSL: no cipher match)", file, line) from None
    if certificate is not None:
        _load_pair(ctx, certificate, passwords)
    if verify:
        try:
            ctx.load_verify_locations(cafile=trusted)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f'SSL_CTX_load_verify_locations("{trusted}") failed '
                              f"({_reason(exc)})", file, line) from None
        if crl is not None:
            try:
                # The same X509_LOOKUP_load_file as nginx's ngx_ssl_crl: CRLs (and any
                # certificates) of a PEM file go into the store.
                ctx.load_verify_locations(cafile=crl)
            except (ssl.SSLError, OSError) as exc:
                raise ConfigError(f'X509_LOOKUP_load_file("{crl}") failed '
                                  f"({_reason(exc)})", file, line) from None
            # X509_V_FLAG_CRL_CHECK|X509_V_FLAG_CRL_CHECK_ALL: every certificate of the chain.
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_CRL_CHECK_CHAIN
    ctx.set_alpn_protocols(ALPN)
    return ctx


class UpstreamTls:
    """How a location connects to an ``https://`` upstream (proxy_ssl_* settings)."""

    __slots__ = ("context", "name", "server_name", "verify")

    def __init__(self, context: ssl.SSLContext, name: str, server_name: bool, verify: bool):
        from gateway.http.variables import compile_template   # variables.py imports this module
        self.context = context
        self.name = compile_template(name)     # proxy_ssl_name, by default $proxy_host
        self.server_name = server_name         # proxy_ssl_server_name: send it as SNI
        self.verify = verify                   # proxy_ssl_verify

    def connect(self, loop, factory, host: str, port: int, request):
        """The coroutine that opens one TLS connection to a peer (for loop.create_connection's place)."""
        name = _without_port(self.name.render(request))
        return self._connect(loop, factory, host, port, name)

    async def _connect(self, loop, factory, host, port, name):
        # nginx sends no SNI for an address literal, nor without proxy_ssl_server_name.
        sni = name if self.server_name and not _is_address(name) else ""
        transport, protocol = await loop.create_connection(
            factory, host, port, ssl=self.context, server_hostname=sni)
        if self.verify and not matches(transport.get_extra_info("peercert"), name):
            transport.abort()
            raise ssl.SSLCertVerificationError(
                f'upstream SSL certificate does not match "{name}"')
        return transport, protocol


def upstream_handshake_error(exc: BaseException) -> str | None:
    """nginx's words for a failed TLS handshake with an upstream; None for other failures."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", None)
        if code:    # nginx checks SSL_get_verify_result once the handshake is done
            return (f"upstream SSL certificate verify error: ({code}:{exc.verify_message}) "
                    "while SSL handshaking to upstream")
        return f"{exc.args[0]} while SSL handshaking to upstream"     # UpstreamTls's name check
    if isinstance(exc, ssl.SSLError):
        return f"SSL_do_handshake() failed ({_reason(exc)}) while SSL handshaking to upstream"
    return None


def _without_port(name: str) -> str:
    if name.startswith("["):
        return name[1:name.find("]")] if "]" in name else name
    return name.rsplit(":", 1)[0] if name.count(":") == 1 else name


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def matches(cert: dict | None, name: str) -> bool:
    """Whether a verified peer certificate is for ``name`` (OpenSSL's X509_check_host rules:
    subjectAltName first, the common name only without DNS names; "*" as a whole left label)."""
    if not cert:
        return False
    sans = cert.get("subjectAltName", ())
    if _is_address(name):
        wanted = ipaddress.ip_address(name)
        return any(kind == "IP Address" and ipaddress.ip_address(value.strip()) == wanted
                   for kind, value in sans)
    patterns = [value for kind, value in sans if kind == "DNS"]
    if not patterns:
        patterns = [value for rdn in cert.get("subject", ()) for key, value in rdn
                    if key == "commonName"]
    host = name.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern == host:
            return True
        if pattern.startswith("*.") and "." in host and \
                host.split(".", 1)[1] == pattern[2:] and pattern.count(".") >= 2:
            return True
    return False
