"""Building the ssl_* directives (ngx_http_ssl_module): each inherited on its own."""

from __future__ import annotations

import os
import re

from gateway.config import http2, values
from gateway.config.model import Certificate, Http, Tls
from gateway.config.parser import Directive
from gateway.errors import ConfigError

TLS_PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
# ssl_verify_client's values, by nginx's numbers (3 lets an unverifiable chain through).
VERIFY_CLIENT = ("off", "on", "optional", "optional_no_ca")
_SESSION_CACHE = re.compile(r"^(off|none|builtin|builtin:\d+|shared:[^:]+:\d+[kKmM]?)$")


class TlsBuilder:
    """The Builder's part for TLS (a mixin: it uses the Builder's paths and warnings)."""

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
            elif n == "ssl_verify_client":
                if a[0] not in VERIFY_CLIENT:
                    raise ConfigError(f'invalid value "{a[0]}"', f, ln)
                own["verify"] = VERIFY_CLIENT.index(a[0])
            elif n == "ssl_verify_depth":
                own["verify_depth"] = values.number(n, a[0], f, ln)
            elif n in ("ssl_client_certificate", "ssl_trusted_certificate", "ssl_crl"):
                own[n[4:]] = self._path(a[0], self._conf_dir())
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
        if tls.verify and certs and tls.client_certificate is None and tls.verify != 3:
            # nginx checks this only for servers that have certificates (a context).
            raise ConfigError("no ssl_client_certificate for ssl_verify_client")
        tls.certificates = [Certificate(c, k, cf, cl, kf, kl)
                            for (c, cf, cl), (k, kf, kl) in zip(certs, keys)]
        return tls

    def _build_tls(self, http: Http) -> None:
        """Load every server's certificates (as nginx does even without an ssl listen),
        then give each ``listen ... ssl`` socket its default server's context."""
        if not any(server.tls.certificates or any(listen.ssl for listen in server.listens)
                   for server in http.servers):
            return      # no TLS: the runtime module (and its ssl contexts) is not even imported
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
        http2.add_alpn(http, tls_module.server_context, tls_module.H2_ALPN)
